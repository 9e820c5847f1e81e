"""Reproduces one paper figure: PNG + JSON from the shipped trained optimizer (absl entry point).

    python -m l2l_tf.reproduce --figure=quadratic --output_dir=results [--retrain]

The figure's settings are `flags/<figure>.flags`; flags given on the command line override them.
`--retrain` first meta-trains the optimizer with those settings (into
`<output_dir>/train/<figure>`, resumable) and evaluates that instead of the shipped one.
The review figures (`review_hochreiter2001`, `review_forget_gate`) are delegated to
`l2l_tf_experiments.review.run`, with the same flags.
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position
from l2l_tf import evaluate  # pylint: disable=wrong-import-position
from l2l_tf import train  # pylint: disable=wrong-import-position
from l2l_tf_experiments.review import run as review_run  # pylint: disable=wrong-import-position

FLAGS = cli.FLAGS
flags.DEFINE_string("figure", None, "Figure to reproduce: the name of a flagfile in flags/.")
flags.DEFINE_bool("retrain", False, "Meta-train the optimizer first instead of using the shipped "
                  "one.")


def available_figures():
  """The paper figures (one flagfile each in flags/) and the review figures (l2l_tf_experiments.review.run)."""
  return sorted([p.stem for p in cli.FLAGS_DIR.glob("*.flags")] + list(review_run.FIGURES))


def expand_flagfile(path: Path):
  """The flags of a flagfile, with nested `--flagfile=flags/...` resolved against the repository
  (so figures work from any directory); later lines override earlier ones, as in absl."""
  args = []
  for line in path.read_text().splitlines():
    line = line.strip()
    if not line or line.startswith(("#", "//")):
      continue
    if line.startswith("--flagfile="):
      nested = Path(line.split("=", 1)[1])
      args += expand_flagfile(nested if nested.is_absolute() else cli.REPO_ROOT / nested)
    else:
      args.append(line)
  return args


def with_figure_flagfile(argv):
  """Puts the flags of `flags/<figure>.flags` first, so explicit flags override the figure's."""
  figure = None
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith("--figure="):
      figure = arg.split("=", 1)[1]
    elif arg == "--figure" and i + 1 < len(argv):
      figure = argv[i + 1]
  path = cli.FLAGS_DIR / f"{figure}.flags"
  if figure and path.is_file():
    return [argv[0]] + expand_flagfile(path) + argv[1:]
  return argv


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  figures = available_figures()
  if FLAGS.figure not in figures:
    raise cli.UsageError(f"Unknown --figure={FLAGS.figure}; choose one of: {', '.join(figures)}.")
  review = FLAGS.figure in review_run.FIGURES
  if review:
    review_run.check_flags()
  output_dir = cli.require_writable_dir(FLAGS.output_dir)
  cli.configure_tensorflow()
  if review:
    review_run.reproduce_review_figure(output_dir)
    return
  optimizer_path = FLAGS.optimizer_path
  if FLAGS.retrain:
    summary = train.train_from_flags(output_dir / "train" / FLAGS.figure)
    optimizer_path = summary["optimizer_dir"]
  evaluate.evaluate_from_flags(FLAGS.figure, output_dir, optimizer_path,
                               expected_config=cli.optimizer_config())


if __name__ == "__main__":
  app.run(main, argv=with_figure_flagfile(sys.argv))
