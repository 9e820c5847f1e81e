"""Reproduces one figure: PNG + JSON from the shipped trained optimizer (absl entry point).

    python -m l2l_tf.reproduce --figure=quadratic --output_dir=results [--retrain]
    python -m l2l_tf.reproduce --list_figures [--tags=paper,mnist] [--runnable]

The figures are those of the registry (`l2l_tf.evaluation.figures`): a paper figure's settings are
`flags/<figure>.flags`, and flags given on the command line override them; `--retrain` first
meta-trains the optimizer with those settings (into `<output_dir>/train/<figure>`, resumable) and
evaluates that instead of the shipped one. The experiments beside the library register their own
figures (e.g. `review_hochreiter2001`, `review_forget_gate`) with their own flags. A flag that
only other figures read is refused.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position
from l2l_tf import commands  # pylint: disable=wrong-import-position
from l2l_tf.evaluation import figures  # pylint: disable=wrong-import-position

FLAGS = cli.FLAGS
cli.define_figure_flags()
flags.DEFINE_bool("list_figures", False, "Print the figures' names, one a line, and exit.")
flags.DEFINE_list("tags", [], "With --list_figures: only the figures with every one of these tags "
                  "(e.g. paper,mnist).")
flags.DEFINE_bool("runnable", False, "With --list_figures: only the figures that run from what is "
                  "shipped; each other one is named on stderr with the reason (e.g. its optimizer "
                  "is not trained yet).")
flags.DEFINE_bool("list_datasets", False, "Print the data sets --figure needs (comma-separated; "
                  "empty if none) and exit.")


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  registry = figures.registry()
  if FLAGS.list_figures:
    names = registry.names(FLAGS.tags)
    if FLAGS.runnable:
      for name in list(names):
        reasons = registry.get(name).missing()
        if reasons:
          names.remove(name)
          print(f"skipped {name}: {'; '.join(reasons)}", file=sys.stderr)
    print("\n".join(names))
  elif FLAGS.list_datasets:
    if FLAGS.figure not in registry.figures:
      raise cli.UsageError(f"Unknown --figure={FLAGS.figure}; choose one of: "
                           f"{', '.join(registry.names())}.")
    print(",".join(registry.get(FLAGS.figure).datasets))
  else:
    commands.reproduce_from_flags()


if __name__ == "__main__":
  app.run(main, argv=figures.with_figure_flagfile(sys.argv))
