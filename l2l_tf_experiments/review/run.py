"""Reproduces the review's figures (absl entry point of the experiment).

    python -m l2l_tf_experiments.review.run --figure=review_hochreiter2001 --output_dir=results
    python -m l2l_tf_experiments.review.run --figure=review_forget_gate --output_dir=results

The same as `python -m l2l_tf.reproduce --figure=...` for these two figures only; their flags and
what they do: `l2l_tf_experiments.review.figures`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position
from l2l_tf import commands  # pylint: disable=wrong-import-position
from l2l_tf_experiments.review import figures  # pylint: disable=wrong-import-position

cli.define_figure_flags()


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  commands.reproduce_from_flags([f.name for f in figures.figures()])


if __name__ == "__main__":
  app.run(main)
