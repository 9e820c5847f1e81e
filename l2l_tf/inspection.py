"""Runs a trained optimizer on one problem and logs what it does to TensorBoard (entry point).

    python -m l2l_tf.inspection --optimizer=quadratic --problem=quadratic --logdir=inspect/quadratic \
        --num_steps=100
    tensorboard --logdir=inspect

Per step: the loss; histograms of the updates, of the effective learning rate -update/gradient
(the SGD learning rate that would give the same step; negative: a step uphill), of every LSTM
layer's cell state c and gate activations; the mean and standard deviation of |c| per layer as
scalars. At the end, the paper's Appendix B view as an image (also written to
`<logdir>/appendix_b.png`): for a few coordinates, the gradient over the steps above the learned
optimizer's update proposals and those SGD and Adam would make from the same gradients.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position
from l2l_tf import errors  # pylint: disable=wrong-import-position

FLAGS = cli.FLAGS
flags.DEFINE_string("logdir", None, "TensorBoard log directory to write.")
flags.DEFINE_integer("num_coordinates", 4, "Coordinates shown in the Appendix B figure.")
flags.DEFINE_float("sgd_learning_rate", 0.01, "SGD's learning rate in the Appendix B figure.")
flags.DEFINE_float("adam_learning_rate", 0.01, "Adam's learning rate in the Appendix B figure.")

# Gradients smaller than this are left out of the effective learning rate (-update / gradient).
MIN_ABS_GRADIENT = 1e-12


def inspect_optimizer(optimizer, problem, logdir, num_steps: int, seed: int = 0,
                      num_coordinates: int = 4, sgd_learning_rate: float = 0.01,
                      adam_learning_rate: float = 0.01) -> dict:
  """Runs `optimizer` on one test instance of `problem` and logs to TensorBoard in `logdir`.

  Args:
    optimizer: a `CoordinatewiseLSTM` (it needs `diagnostics`, which returns the LSTM state).
    problem: an `l2l_tf.problems.Problem`.
    logdir: the TensorBoard directory (created).
    num_steps: optimizee steps.
    seed: selects the problem instance and its initial parameters.
    num_coordinates: coordinates in the Appendix B figure (the first ones of the flat vector).
    sgd_learning_rate: SGD's learning rate in the figure.
    adam_learning_rate: Adam's learning rate in the figure.

  Returns:
    {"losses": [num_steps + 1], "figure": path of the PNG, "coordinates": [k]}.

  Raises:
    ValueError: an optimizer without `diagnostics` or bad arguments.
  """
  from pathlib import Path  # pylint: disable=g-import-not-at-top

  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from l2l_tf import optimizers, problems  # pylint: disable=g-import-not-at-top
  from l2l_tf.meta import unroll  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import plots  # pylint: disable=g-import-not-at-top
  from l2l_tf.optimizers import base  # pylint: disable=g-import-not-at-top

  if not hasattr(optimizer, "diagnostics"):
    raise errors.ConfigError(f"{type(optimizer).__name__} has no LSTM state to inspect; inspect a "
                            "coordinatewise LSTM optimizer.")
  if num_steps <= 0 or num_coordinates <= 0:
    raise errors.ConfigError("num_steps and num_coordinates must be positive.")
  instance, params = problem.sample(1, problems.split_seed(seed, "test"))
  state = optimizer.initial_state(params)
  sgd, adam = optimizers.SGD(sgd_learning_rate), optimizers.Adam(adam_learning_rate)

  @tf.function
  def one_step(params, state, step):
    losses, new_params, new_state, info = unroll.optimizee_step(
        problem, optimizer, params, state, instance, step, diagnostics=True)
    return (tf.reduce_sum(losses), info["grads"], new_params, info["updates"], new_state,
            info["gates"])

  logdir = Path(logdir)
  writer = tf.summary.create_file_writer(str(logdir))
  flat_params = base.flatten_coordinates(params)
  k = min(num_coordinates, int(flat_params.shape[0]))
  history = {"gradient": [], "learned": []}
  losses = []
  with writer.as_default():
    for t in range(num_steps):
      loss, grads, params, updates, state, gates = one_step(params, state,
                                                            tf.constant(t, tf.int32))
      losses.append(float(loss))
      g = base.flatten_coordinates(grads)
      u = base.flatten_coordinates(updates)
      history["gradient"].append(g[:k].numpy())
      history["learned"].append(u[:k].numpy())
      tf.summary.scalar("loss", loss, step=t)
      tf.summary.histogram("updates", u, step=t)
      usable = tf.abs(g) > MIN_ABS_GRADIENT
      tf.summary.histogram("effective_learning_rate",
                           -tf.boolean_mask(u, usable) / tf.boolean_mask(g, usable), step=t,
                           description="-update / gradient per coordinate (|gradient| > 1e-12)")
      for layer, ((_, c), layer_gates) in enumerate(zip(state, gates)):
        abs_c = tf.abs(c)
        tf.summary.scalar(f"cell_state/layer{layer}/mean_abs", tf.reduce_mean(abs_c), step=t)
        tf.summary.scalar(f"cell_state/layer{layer}/std_abs", tf.math.reduce_std(abs_c), step=t)
        tf.summary.histogram(f"cell_state/layer{layer}", c, step=t)
        for name, values in zip(("input", "forget", "output"), layer_gates):
          tf.summary.histogram(f"gates/layer{layer}_{name}", values, step=t)
    final = float(tf.reduce_sum(problem.loss(params, instance, tf.constant(num_steps, tf.int32))))
    losses.append(final)
    tf.summary.scalar("loss", final, step=num_steps)

    gradients = np.stack(history["gradient"])  # [num_steps, k]
    proposals = {"LSTM": np.stack(history["learned"])}
    for label, baseline in ((f"SGD (lr {sgd_learning_rate:g})", sgd),
                            (f"Adam (lr {adam_learning_rate:g})", adam)):
      baseline_state = baseline.initial_state([tf.zeros([k])])
      steps = []
      for grad in gradients:
        (update,), baseline_state = baseline.step([tf.constant(grad)], baseline_state)
        steps.append(update.numpy())
      proposals[label] = np.stack(steps)
    png = plots.appendix_b_figure(gradients, proposals)
    figure_path = logdir / "appendix_b.png"
    figure_path.write_bytes(png)
    tf.summary.image("appendix_b/updates_vs_gradient",
                     tf.image.decode_png(png, channels=4)[None], step=num_steps,
                     description="Per coordinate: the gradient (top) and the update proposals of "
                                 "the learned optimizer, SGD and Adam on the same gradients.")
  writer.flush()
  writer.close()
  return {"losses": losses, "figure": str(figure_path), "coordinates": list(range(k))}




def main(argv):
  """The entry point (wrapped by `cli.run_main` when run)."""
  cli.require_no_arguments(argv)
  cli.require_optimizer_path()
  if not FLAGS.logdir:
    raise cli.UsageError("--logdir is required.")
  cli.require_positive("num_steps", "num_coordinates")
  cli.configure_tensorflow()
  from l2l_tf.optimizers import serialization  # pylint: disable=g-import-not-at-top
  optimizer, _, _ = serialization.load_coordinatewise(FLAGS.optimizer_path, FLAGS.group)
  result = inspect_optimizer(
      optimizer, cli.make_problem("test"), FLAGS.logdir, FLAGS.num_steps, FLAGS.seed,
      FLAGS.num_coordinates, FLAGS.sgd_learning_rate, FLAGS.adam_learning_rate)
  losses = result["losses"]
  print(f"loss {losses[0]:.5g} -> {losses[-1]:.5g} in {FLAGS.num_steps} steps; wrote "
        f"{FLAGS.logdir} (tensorboard --logdir={FLAGS.logdir}) and {result['figure']}")


if __name__ == "__main__":
  app.run(cli.run_main(main))
