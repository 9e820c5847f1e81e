"""Evaluates a learned optimizer against tuned baselines on fresh test problems (absl entry point).

    python -m l2l_tf.evaluate --flagfile=flags/quadratic.flags --optimizer_path=quadratic \
        --output_dir=results

Writes `<output_dir>/<figure_name>.json` (the results schema of `l2l_tf.evaluation.results`),
`<figure_name>.png` and TensorBoard curves under `<output_dir>/tensorboard/<figure_name>`; with
`--sweep_hidden_units`, the architecture sweep of paper Fig. 6 (`l2l_tf.commands`).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position
from l2l_tf import commands  # pylint: disable=wrong-import-position

FLAGS = cli.FLAGS
flags.DEFINE_string("figure_name", "evaluation", "Name of the results files.")


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  cli.configure_tensorflow()
  commands.evaluate_from_flags(FLAGS.figure_name, FLAGS.output_dir, FLAGS.optimizer_path)


if __name__ == "__main__":
  app.run(main)
