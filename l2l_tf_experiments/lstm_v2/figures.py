"""LSTM v2's figures (issue 14): the plugin `l2l_tf.evaluation.figures` finds.

    python -m l2l_tf.reproduce --figure=mnist_v2_ablation --output_dir=results [--retrain]

`mnist_v2_ablation` (`ablation`): LSTM v2 and one row per part of its meta-training switched off,
each meta-trained at the same budget (`ablation.NUM_EPOCHS` epochs) and seed, evaluated on the
optimizees of the figures `mnist`, `mnist_relu`, `mnist_2_layers` and `mnist_40_units` for 100
and 200 steps beside the four tuned baselines. Without `--retrain` it evaluates the shipped runs
in `l2l_tf_experiments/lstm_v2/pretrained/mnist_v2_ablation/`; with it, it meta-trains them first
into `<output_dir>/train/mnist_v2_ablation/` (resumable, one `l2l_tf.train` process per run).
"""

import time
from pathlib import Path

import numpy as np
from absl import flags

from l2l_tf import cli
from l2l_tf.evaluation import figures as figures_lib

FLAGS = cli.FLAGS
PRETRAINED = Path(__file__).resolve().parent / "pretrained"

flags.DEFINE_integer("v2_ablation_seeds", 1, "mnist_v2_ablation: meta-training seeds 0..n-1 per "
                     "row (one: about 40 CPU-minutes per row here).")
flags.DEFINE_list("v2_ablation_problems", ["mnist", "mnist_relu", "mnist_2_layers",
                                           "mnist_40_units"],
                  "mnist_v2_ablation: the optimizees it evaluates on "
                  "(l2l_tf_experiments.lstm_v2.ablation.SETTINGS).")
flags.DEFINE_string("v2_ablation_path", str(PRETRAINED / "mnist_v2_ablation"),
                    "mnist_v2_ablation: directory of the shipped runs, one sub-directory per run, "
                    "evaluated without --retrain.")
flags.DEFINE_integer("v2_ablation_num_test_problems", 0, "mnist_v2_ablation: test problems per "
                     "seed (0: the setting's, 100).")
flags.DEFINE_integer("v2_ablation_num_validation_problems", 0, "mnist_v2_ablation: validation "
                     "problems for the baselines' tuning (0: the setting's, 32).")
_FLAGS = ("v2_ablation_seeds", "v2_ablation_problems", "v2_ablation_path",
          "v2_ablation_num_test_problems", "v2_ablation_num_validation_problems")


def plot(results: dict, path) -> Path:
  """One panel per optimizee: every row's mean test loss per step (all seeds' runs pooled) and the
  tuned baselines' (dashed)."""
  from l2l_tf.evaluation import plots  # pylint: disable=g-import-not-at-top
  plt = plots.pyplot()
  panels = results["problems"]
  fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0), dpi=120,
                           squeeze=False)
  for ax, (problem, entry) in zip(axes[0], panels.items()):
    for i, (name, curve) in enumerate(entry["curves"].items()):
      mean = np.asarray(curve["mean"], np.float64)
      tuned = curve.get("learning_rate") is not None
      ax.plot(np.arange(mean.size), mean, "--" if tuned else "-", color=f"C{i % 10}",
              linewidth=1.0 if tuned else 1.4, label=name)
    ax.set_yscale("log")
    ax.set_xlabel("optimizee step")
    ax.set_ylabel("mean test loss")
    ax.set_title(f"{problem}: {entry['num_test_problems']} test problems per seed", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=5.5)
  fig.suptitle("LSTM v2 ablation:\none part of its meta-training off per row (same budget)",
               fontsize=8)
  return plots.save_figure(fig, path)


def run_ablation(output_dir: Path, retrain: bool) -> dict:
  """The figure mnist_v2_ablation, from the shipped runs or, with `retrain`, new ones."""
  from l2l_tf_experiments.lstm_v2 import ablation  # pylint: disable=g-import-not-at-top
  from l2l_tf_experiments.review import ablation as ablation_lib  # pylint: disable=g-import-not-at-top
  from l2l_tf_experiments.review import figures as review_figures  # pylint: disable=g-import-not-at-top
  start = time.process_time()
  cli.require_positive("v2_ablation_seeds")
  problems = list(FLAGS.v2_ablation_problems)
  unknown = [p for p in problems if p not in ablation.PROBLEMS]
  if unknown or not problems:
    raise cli.UsageError(f"--v2_ablation_problems: unknown {unknown or problems}; choose from "
                         f"{', '.join(ablation.PROBLEMS)}.")
  seeds = list(range(FLAGS.v2_ablation_seeds))
  train_dir = output_dir / "train" / ablation.FIGURE
  if retrain:
    ablation.train_all(seeds, train_dir, cli.REPO_ROOT, log_fn=review_figures.log_stderr)
  dirs = ablation_lib.optimizer_dirs(problems, seeds, train_dir if retrain else
                                     Path(FLAGS.v2_ablation_path), retrain, ablation.SETTINGS,
                                     ablation.VARIANTS)
  ablation_lib.check_dirs(dirs, retrain, "v2_ablation_path", "ablation optimizer",
                          "the ablation")
  results = ablation.ablation(dirs, FLAGS.seed, FLAGS.data_dir, cli.learning_rate_grid(),
                              FLAGS.v2_ablation_num_test_problems,
                              FLAGS.v2_ablation_num_validation_problems,
                              command=cli.command_line(), log_fn=review_figures.log_stderr)
  return review_figures.write_figure(results, output_dir, plot, ablation.table, start)


def _runs() -> tuple:
  """The shipped runs the figure evaluates (the default seeds)."""
  from l2l_tf_experiments.lstm_v2 import ablation  # pylint: disable=g-import-not-at-top
  from l2l_tf_experiments.review import ablation as ablation_lib  # pylint: disable=g-import-not-at-top
  dirs = ablation_lib.optimizer_dirs(ablation.PROBLEMS[:1],
                                     range(FLAGS["v2_ablation_seeds"].default),
                                     PRETRAINED / "mnist_v2_ablation", False, ablation.SETTINGS,
                                     ablation.VARIANTS)
  return tuple(str(path) for runs in dirs[ablation.PROBLEMS[0]].values()
               for path in runs.values())


def _table(results: dict) -> str:
  from l2l_tf_experiments.lstm_v2 import ablation  # pylint: disable=g-import-not-at-top
  return ablation.table(results)


def figures():
  """LSTM v2's figures (the plugin interface of `l2l_tf.evaluation.figures`)."""
  return [figures_lib.Figure(
      "mnist_v2_ablation", run_ablation, table=_table, datasets=("mnist",), requires=_runs(),
      flags=_FLAGS + ("seed", "data_dir", "learning_rate_grid"), tags=("mnist", "lstm_v2"),
      description="Issue 14: LSTM v2 and one row per part of its meta-training switched off "
      "(same budget), on the MLPs of the figures mnist, mnist_relu, mnist_2_layers and "
      "mnist_40_units, at 100 and 200 steps, beside the four tuned baselines.")]
