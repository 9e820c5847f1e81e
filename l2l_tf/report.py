"""Prints the README tables from results files (absl entry point).

    python -m l2l_tf.report results/quadratic.json [more.json ...]

Each file's table is its figure's (`l2l_tf.evaluation.figures`; tables in
`l2l_tf.evaluation.tables` and the experiments' own tables modules); then the summaries over
several figures whose figures are given (e.g. with several paper figures, one row each against
the paper; with both review figures, the review's side-by-side table).
"""

import json
import sys

from absl import app


def main(argv):
  from l2l_tf.evaluation import figures  # pylint: disable=g-import-not-at-top
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
    by_figure[results["figure"]] = results
    print(registry.table(results))
    print()
  for title, table in registry.summary_tables(by_figure):
    print(f"{title}:\n")
    print(table)
    print()


if __name__ == "__main__":
  app.run(main)
