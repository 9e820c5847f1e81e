"""Gradient checkpointing over truncation chunks (issue 6): meta-training memory for time.

Without it, the meta-gradient of one truncation keeps every unrolled step's activations: about
1.6 KB per coordinate and step (docs/performance.md), so 10^6 coordinates at K = 20 need ~30 GB.
`checkpointed_truncation_loss` keeps only the chunk boundaries and recomputes one chunk at a time
in the backward pass: measured 46-70% less activation memory for 44-48% more CPU time. Enable it
with `TrainConfig.recompute_chunk` (`--recompute_chunk` of l2l_tf.train).

Two things make it work with this library (evidence in docs/performance.md): the optimizee
gradient inside a recomputed chunk comes from `tf.gradients` (a `GradientTape` is silenced by the
recomputation's stop-recording), and the recomputation is ordered by control dependencies on
every incoming gradient (`tf.recompute_grad` alone let chunks overlap under Grappler; the
benchmark, `benchmarks/scaling.py`, measures it as the alternative).
"""

import functools

import tensorflow as tf
# pylint: disable-next=g-direct-tensorflow-import
from tensorflow.python.eager import record

from l2l_tf.meta import unroll
from l2l_tf import errors


def checkpoint_control_deps(fn):
  """Like `tf.recompute_grad(fn)`, but the recomputation waits on every incoming gradient.

  `tf.recompute_grad` orders a chunk's recomputation after its first output's gradient only,
  through an arithmetic data dependency; with Grappler's default passes the recomputations of
  several chunks still end up alive together (measured: more memory than no checkpointing). Here
  the recomputation's inputs carry control dependencies on all output gradients, i.e. on the
  backward pass of the following chunk. Graph mode only; not for XLA (which drops control edges).
  """
  @tf.custom_gradient
  def inner(*args):
    with record.stop_recording():
      result = fn(*args)

    def grad(*d_result, variables=None):
      variables = list(variables or [])
      waits = [d for d in d_result if d is not None]
      with tf.control_dependencies(waits):
        inputs = [tf.identity(a) for a in args]
      with tf.GradientTape() as tape:
        tape.watch(inputs)
        tape.watch(variables)
        recomputed = fn(*inputs)
      grads = tape.gradient(recomputed, inputs + variables, output_gradients=list(d_result),
                            unconnected_gradients=tf.UnconnectedGradients.ZERO)
      return grads[:len(inputs)], grads[len(inputs):]

    return result, grad

  return inner


def checkpointed_truncation_loss(problem, optimizer, truncation: int, chunk: int,
                                 weighting: str = "uniform"):
  """A drop-in `MetaTrainer._truncation_loss` that recomputes each chunk of `chunk` steps.

  The K steps are cut into K / chunk Python-level chunks, each a `tf.range` loop wrapped in
  `checkpoint_control_deps`: the backward pass keeps only the chunk boundaries (theta and the LSTM
  state) and reruns one chunk's forward at a time. The meta-loss and its gradient are those of
  `MetaTrainer._truncation_loss` (the same weights w_t); first-order only (the optimizee gradient
  is cut from the graph, as without `second_derivatives`).

  Args:
    problem, optimizer: the optimizee family and the learned optimizer.
    truncation: K, the steps of one truncation.
    chunk: steps per chunk; must divide K.
    weighting: the meta-loss weighting (`unroll.meta_loss_term`).

  Returns:
    `truncation_loss(params, state, instance, start_step) -> (meta_loss, params, state)`.

  Raises:
    ValueError: `chunk` does not divide the truncation.
  """
  k = truncation
  if chunk <= 0 or k % chunk:
    raise errors.ConfigError(f"The recompute chunk {chunk} must divide the truncation {k}.")
  # tf.gradients: a GradientTape inside the chunk would be silenced by the stop-recording.
  step_fn = functools.partial(unroll.optimizee_step, graph_gradients=True)

  def truncation_loss(params, state, instance, start_step):
    num_params = len(params)
    structure = state
    meta_loss = tf.zeros([], params[0].dtype)
    for c in range(k // chunk):

      def chunk_fn(*flat, first=c * chunk):
        chunk_params = list(flat[:num_params])
        chunk_state = tf.nest.pack_sequence_as(structure, list(flat[num_params:]))
        loss = tf.zeros([], chunk_params[0].dtype)
        for i in tf.range(chunk):
          t = first + i
          losses, chunk_params, chunk_state = step_fn(
              problem, optimizer, chunk_params, chunk_state, instance, start_step + t)
          loss += tf.where(t > 0, unroll.meta_loss_term(losses, weighting), tf.zeros_like(loss))
        return chunk_params + tf.nest.flatten(chunk_state) + [loss]

      out = checkpoint_control_deps(chunk_fn)(*(list(params) + tf.nest.flatten(state)))
      params = list(out[:num_params])
      state = tf.nest.pack_sequence_as(structure, list(out[num_params:-1]))
      meta_loss += out[-1]
    meta_loss += unroll.meta_loss_term(problem.loss(params, instance, start_step + k), weighting)
    return meta_loss, params, state

  return truncation_loss
