"""The unrolled optimizee trajectory theta_{t+1} = theta_t + g_t (paper Eq. 1 and Fig. 2)."""

import weakref
from typing import Callable

import tensorflow as tf

from l2l_tf.optimizers import base as optimizers_base
from l2l_tf.problems import base as problems_base


def optimizee_step(problem: problems_base.Problem, optimizer: optimizers_base.Optimizer,
                   params, state, instance, step, second_derivatives: bool = False,
                   graph_gradients: bool = False, diagnostics: bool = False):
  """One optimizee step: f(theta_t) and its gradient, then theta_{t+1} = theta_t + g_t.

  The gradient is cut from the graph (`tf.stop_gradient`) unless `second_derivatives`: the paper
  drops the dashed edges of its Fig. 2, assuming d grad_t / d phi = 0, which avoids
  Hessian-vector products of f. The loss itself stays differentiable with respect to theta_t.

  With `graph_gradients` the gradient comes from `tf.gradients` instead of a `GradientTape`
  (graph mode only): inside a recomputed chunk (`l2l_tf.meta.recompute`) tape recording is
  stopped, so a tape would record nothing.

  With `diagnostics` the optimizer's `diagnostics` replaces its `step` (the same update, plus
  the LSTM's gate activations), for inspection and the trainer's TensorBoard histograms.

  Returns:
    `(losses [num], new_params, new_state)` with `losses` = f(theta_t) per instance; with
    `diagnostics` also a dict with the step's "grads", "updates" and "gates".
  """
  if graph_gradients:
    losses = problem.loss(params, instance, step)
    grads = tf.gradients(losses, params)
  else:
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(params)
      losses = problem.loss(params, instance, step)
    grads = tape.gradient(losses, params)  # Summing over instances keeps them independent.
  if not second_derivatives:
    grads = [tf.stop_gradient(g) for g in grads]
  if diagnostics:
    updates, state, gates = optimizer.diagnostics(grads, state)
  else:
    updates, state = optimizers_base.call_step(optimizer, grads, state, losses)
  new_params = [p + u for p, u in zip(params, updates)]
  if diagnostics:
    return losses, new_params, state, {"grads": grads, "updates": updates, "gates": gates}
  return losses, new_params, state


META_LOSS_WEIGHTINGS = ("uniform", "log")
# Below this a loss counts as this in the log meta-loss (a quadratic can reach 0).
_LOG_FLOOR = 1e-12


def meta_loss_terms(losses: tf.Tensor, weighting: str = "uniform") -> tf.Tensor:
  """One step's meta-loss terms per instance: f(theta_t) (the paper's w_t = 1, "uniform") or
  log f(theta_t) ("log": every step's relative progress counts alike, late steps of small loss as
  much as early ones, and a constant factor of f drops out of the gradient)."""
  if weighting == "log":
    return tf.math.log(tf.maximum(losses, tf.cast(_LOG_FLOOR, losses.dtype)))
  return losses


def meta_loss_term(losses: tf.Tensor, weighting: str = "uniform") -> tf.Tensor:
  """One step's term of the meta-loss: the mean over instances of `meta_loss_terms`."""
  return tf.reduce_mean(meta_loss_terms(losses, weighting))


def trajectory(problem, optimizer, instance, params, state, num_steps: int, start_step=0):
  """Runs the optimizer for `num_steps` steps (no meta-gradient; compile with `tf.function`).

  Returns:
    `(losses [num_steps + 1, num], params, state)`; `losses[t]` is f(theta_t), t = 0..num_steps,
    each evaluated on the minibatch of step `start_step + t` for stochastic problems.
  """
  start_step = tf.convert_to_tensor(start_step, tf.int32)
  losses = tf.TensorArray(params[0].dtype, size=num_steps + 1)
  for t in tf.range(num_steps):
    loss_t, params, state = optimizee_step(problem, optimizer, params, state, instance,
                                           start_step + t)
    losses = losses.write(t, loss_t)
  losses = losses.write(num_steps, problem.loss(params, instance, start_step + num_steps))
  return losses.stack(), params, state


_TRAJECTORY_FNS = weakref.WeakKeyDictionary()


def make_trajectory_fn(problem, optimizer, num_steps: int, jit_compile: bool = False,
                       feature_major: bool = True) -> Callable:
  """A compiled `(instance, params) -> losses [num_steps + 1, num]` from a fresh optimizer state.

  Hyperparameters held in variables (the baselines' learning rates) are read at call time, so one
  function serves a whole learning-rate search without retracing; the function is cached per
  (optimizer, problem, num_steps, jit_compile, feature_major).

  With `feature_major`, a plain `CoordinatewiseLSTM` runs as its `FeatureMajorLSTM` view (the
  same update rule, meta-parameters and code, another state layout; faster, most of all under
  XLA: docs/performance.md). The state never leaves this function.
  """
  from l2l_tf.optimizers import lstm  # pylint: disable=g-import-not-at-top
  cache = _TRAJECTORY_FNS.setdefault(optimizer, {})
  use_view = bool(feature_major and lstm.FeatureMajorLSTM.supports(optimizer))
  key = (id(problem), int(num_steps), bool(jit_compile), use_view)
  if key in cache and cache[key][0]() is problem:
    return cache[key][1]
  stepper = lstm.FeatureMajorLSTM(optimizer) if use_view else optimizer

  @tf.function(jit_compile=jit_compile, reduce_retracing=True)
  def run(instance, params):
    state = stepper.initial_state(params)
    losses, _, _ = trajectory(problem, stepper, instance, params, state, num_steps)
    return losses

  cache[key] = (weakref.ref(problem), run)
  return run
