"""Makes a comparison's runs the winning runs of a finished meta learning-rate search.

    python -m l2l_tf_experiments.review.adopt_search \\
        --search_dir=training/memories_q_search_clip/srwm \\
        --search_dir=training/memories_q_search_las/srwm \\
        --train_dir=training/memories_q_clip/train/fast_weights \\
        --run_problem=quadratic --run_variant=srwm

With several `--search_dir` (searches of one variant that differ in more than the rate, e.g. its
inputs), the one whose winner has the lowest validation score is taken
(`ablation.best_search`). Its runs at the winning rate, one per seed, are copied to
`<train_dir>/<problem>_<variant>_s<seed>` (`ablation.adopt_search_runs`), where
`reproduce --retrain` finds them done. The chosen search's flags must also be the variant's
flags in the figure's settings (e.g. `memories.SETTINGS`): a test checks that for the shipped
figures.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position
from l2l_tf_experiments.review import ablation  # pylint: disable=wrong-import-position

flags.DEFINE_multi_string("search_dir", None, "A finished search's directory (with "
                          "search.json); repeat to choose the best of several.")
flags.DEFINE_string("train_dir", None, "Where the comparison's runs live (reproduce's "
                    "<output_dir>/train/<figure's subdirectory>).")
flags.DEFINE_string("run_problem", None, "The problem part of the run names, e.g. quadratic.")
flags.DEFINE_string("run_variant", None, "The variant's key in the run names, e.g. srwm.")
flags.DEFINE_bool("replace", False, "Move a different run already at a destination aside to "
                  "<run>.replaced instead of refusing.")
FLAGS = flags.FLAGS


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  for name in ("search_dir", "train_dir", "run_problem", "run_variant"):
    if not getattr(FLAGS, name):
      raise cli.UsageError(f"--{name} is required (see `python -m "
                           "l2l_tf_experiments.review.adopt_search --help`).")
  try:
    chosen = ablation.best_search(FLAGS.search_dir)
    runs = ablation.adopt_search_runs(chosen, FLAGS.train_dir, FLAGS.run_problem,
                                      FLAGS.run_variant, replace=FLAGS.replace)
  except ValueError as e:
    raise cli.UsageError(str(e)) from e
  print(f"chosen: {chosen}")
  for seed, run in sorted(runs.items()):
    print(f"seed {seed}: {run}")


if __name__ == "__main__":
  app.run(main)
