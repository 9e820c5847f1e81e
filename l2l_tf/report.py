"""Prints the README tables from results files (absl entry point).

    python -m l2l_tf.report results/quadratic.json [more.json ...]
    python -m l2l_tf.report --plot [--plot_first_step=N] results/quadratic.json
    python -m l2l_tf.report --paired results/neural_art.json

With `--plot`, each curve or sweep figure's PNG is also drawn again from its results file, beside
it (`<name>.png`, as `reproduce` draws it; e.g. after a change of the plotting code), without
running anything.

Each file's table is its figure's (`l2l_tf.evaluation.figures`; tables in
`l2l_tf.evaluation.tables` and the experiments' own tables modules); then the summaries over
several figures whose figures are given (e.g. with several paper figures, one row each against
the paper; with both review figures, the review's side-by-side table).
"""

import json
import sys
from pathlib import Path

from absl import app
from absl import flags

from l2l_tf import cli  # pylint: disable=unused-import  # --plot_first_step, as reproduce's.

FLAGS = flags.FLAGS
flags.DEFINE_bool("paired", False, "Also print, for a figure's curves, every learned optimizer's "
                  "final loss minus every tuned baseline's, paired over the test problems.")
flags.DEFINE_bool("plot", False, "Also draw each curve or sweep figure's PNG again from its results "
                  "file, beside it.")


def main(argv):
  from l2l_tf.evaluation import figures, tables  # pylint: disable=g-import-not-at-top
  if len(argv) < 2:
    print("usage: python -m l2l_tf.report RESULTS.json [...]", file=sys.stderr)
    sys.exit(1)
  registry = figures.registry()
  by_figure = {}
  for path in argv[1:]:
    try:
      with open(path) as f:
        results = json.load(f)
    except (OSError, ValueError) as e:
      print(f"error: cannot read {path}: {e}. Run l2l_tf.reproduce first.", file=sys.stderr)
      sys.exit(1)
    plot = FLAGS.is_parsed() and FLAGS.plot
    has_curves = "optimizers" in results and "steps" in results
    if plot and "sweep" not in results and not has_curves:
      print(f"error: {path} has no loss curves to plot (figure {results.get('figure')!r}); its "
            "PNG is drawn by `python -m l2l_tf.reproduce` only.", file=sys.stderr)
      sys.exit(1)
    by_figure[results["figure"]] = results
    print(registry.table(results))
    print()
    if FLAGS.is_parsed() and FLAGS.paired and has_curves:
      print(tables.paired_against_baselines(results))
      print()
    if plot:
      print(f"wrote {replot(results, Path(path))}")
      print()
  for title, table in registry.summary_tables(by_figure):
    print(f"{title}:\n")
    print(table)
    print()


def replot(results: dict, path: Path) -> Path:
  """Draws the PNG of a curve (or sweep) results file beside it, as `reproduce` does."""
  from l2l_tf.evaluation import plots  # pylint: disable=g-import-not-at-top
  png = path.with_suffix(".png")
  if "sweep" in results:
    return plots.plot_sweep(results, png)
  return plots.plot_results(results, png,
                            step_range=(FLAGS.plot_first_step, results["steps"][-1]))


if __name__ == "__main__":
  app.run(main)
