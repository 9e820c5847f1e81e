"""Evaluates a learned optimizer against tuned baselines on fresh test problems (absl entry point).

    python -m l2l_tf.evaluate --flagfile=flags/quadratic.flags --optimizer_path=quadratic \
        --output_dir=results

Writes `<output_dir>/<figure_name>.json` (the results schema of `l2l_tf.evaluation.results`),
`<figure_name>.png` and TensorBoard curves under `<output_dir>/tensorboard/<figure_name>`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position

FLAGS = cli.FLAGS
flags.DEFINE_string("figure_name", "evaluation", "Name of the results files.")


def evaluate_from_flags(figure: str, output_dir, optimizer_path, expected_config=None) -> dict:
  """Runs the comparison the flags describe and writes JSON, PNG and TensorBoard logs.

  With `--sweep_hidden_units` it is the architecture sweep of paper Fig. 6 instead (see
  `sweep_from_flags`)."""
  if FLAGS.sweep_hidden_units:
    return sweep_from_flags(figure, output_dir, optimizer_path, expected_config)
  from l2l_tf import evaluation, optimizers  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import compare, results as results_lib  # pylint: disable=g-import-not-at-top
  cli.require_positive("num_steps", "num_test_problems", "num_validation_problems")
  if not 0 <= FLAGS.plot_first_step < FLAGS.num_steps:
    raise cli.UsageError(f"--plot_first_step must be in [0, --num_steps), got "
                         f"{FLAGS.plot_first_step}.")
  if FLAGS.eval_chunk_size < 0:
    raise cli.UsageError(f"--eval_chunk_size must be >= 0, got {FLAGS.eval_chunk_size}.")
  output_dir = cli.require_writable_dir(output_dir)
  grid = cli.learning_rate_grid()
  problem = cli.make_problem("test")
  learned = {}
  provenance = {}
  sources = [(FLAGS.learned_name, optimizer_path, expected_config)] if optimizer_path else []
  for entry in FLAGS.learned_optimizers:
    name, sep, path = entry.partition("=")
    if not sep or not name or not path:
      raise cli.UsageError(f"--learned_optimizers entries take the form NAME=PATH, got {entry!r}.")
    sources.append((name, path, None))
  for name, path, expected in sources:
    learned[name] = optimizers.load_optimizer(path, expected)
    resolved, saved = optimizers.serialization.read_config(path)
    provenance[name] = {"path": str(resolved), "metadata": saved.get("metadata", {})}
  results = compare.compare(
      problem, learned, FLAGS.baselines, FLAGS.num_steps, FLAGS.num_test_problems,
      FLAGS.num_validation_problems, FLAGS.seed, figure, grid, FLAGS.eval_chunk_size,
      FLAGS.jit_compile, FLAGS.progress,
      extra={"command": cli.command_line(), "learned_optimizers": provenance},
      validation_problem=cli.make_problem("valid"))
  results_lib.write_results(results, output_dir / f"{figure}.json")
  evaluation.plot_results(results, output_dir / f"{figure}.png",
                          step_range=(FLAGS.plot_first_step, FLAGS.num_steps))
  results_lib.log_results_to_tensorboard(results, output_dir / "tensorboard" / figure)
  print(compare.final_step_table(results))
  print(f"wrote {output_dir / (figure + '.json')} and {output_dir / (figure + '.png')}")
  return results


def sweep_from_flags(figure: str, output_dir, optimizer_path, expected_config=None) -> dict:
  """Final loss against the MLP optimizee's architecture (paper Fig. 6), for the learned optimizer
  (trained on one architecture) and the baselines tuned anew for every architecture."""
  from l2l_tf import optimizers  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import compare, results as results_lib, sweep  # pylint: disable=g-import-not-at-top
  if FLAGS.problem not in ("mnist", "fashion_mnist"):
    raise cli.UsageError("--sweep_hidden_units needs an MLP problem (--problem=mnist).")
  cli.require_positive("num_steps", "num_test_problems", "num_validation_problems")
  units = cli.int_list("sweep_hidden_units")
  layers = cli.int_list("sweep_num_layers")
  output_dir = cli.require_writable_dir(output_dir)
  grid = cli.learning_rate_grid()
  learned = {}
  if optimizer_path:
    learned[FLAGS.learned_name] = optimizers.load_optimizer(optimizer_path, expected_config)
  entries = []
  trained = cli.int_list("optimizee_hidden_sizes")
  core = None
  for num_layers in layers:
    for width in units:
      hidden = [width] * num_layers
      res = compare.compare(
          cli.make_problem("test", hidden_sizes=hidden), learned, FLAGS.baselines,
          FLAGS.num_steps, FLAGS.num_test_problems, FLAGS.num_validation_problems, FLAGS.seed,
          f"{figure} {num_layers}x{width}", grid, FLAGS.eval_chunk_size, FLAGS.jit_compile,
          FLAGS.progress, validation_problem=cli.make_problem("valid", hidden_sizes=hidden))
      entries.append(sweep.final_losses(res, hidden))
      if hidden == trained:
        core = res
      print(f"{num_layers} x {width}: " + ", ".join(
          f"{n} {c['mean'][-1]:.4g}" for n, c in res["optimizers"].items()))
  if core is None:
    raise cli.UsageError(f"The sweep must include the trained architecture "
                         f"--optimizee_hidden_sizes={','.join(map(str, trained))}.")
  results = dict(core, figure=figure, sweep=entries, trained_hidden_sizes=trained,
                 command=cli.command_line())
  results_lib.write_results(results, output_dir / f"{figure}.json")
  sweep.plot_sweep(results, output_dir / f"{figure}.png")
  print(f"wrote {output_dir / (figure + '.json')} and {output_dir / (figure + '.png')}")
  return results


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  cli.configure_tensorflow()
  evaluate_from_flags(FLAGS.figure_name, FLAGS.output_dir, FLAGS.optimizer_path)


if __name__ == "__main__":
  app.run(main)
