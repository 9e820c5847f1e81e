"""Prints the README tables from results files (absl entry point).

    python -m l2l_tf.report results/quadratic.json [more.json ...]

Given both review figures' results (review_forget_gate, review_hochreiter2001) it also prints the
review's side-by-side table.

For each figure: every optimizer's mean loss at the final step with its 95% CI and tuned learning
rate, the ratio of the learned optimizer's final loss to the best baseline's next to the paper's,
and whether the learned optimizer is below every baseline at every step.
"""

import json
import sys

from absl import app

# Values read off the paper's figures (see the design spec); +-10% from pixel reading.
PAPER_FINAL = {
    "quadratic": {"LSTM": 0.040, "best baseline": 0.052},
    "mnist": {"LSTM": 0.25, "best baseline": 0.32},
    "mnist_200_steps": {"LSTM": 0.21, "best baseline": 0.26},
    "mnist_40_units": {"LSTM": 0.19, "best baseline": 0.30},
    "mnist_2_layers": {"LSTM": 0.32, "best baseline": 0.70},
    "mnist_relu": {"LSTM": 2.3, "best baseline": 0.35},
}


def best_baseline(optimizers: dict, final=lambda c: c["mean"][-1]):
  """`(name, entry)` of the tuned baseline (learning_rate set) with the lowest final loss, or
  `(None, None)` without baselines; `final` reads an entry's final loss."""
  baselines = {n: c for n, c in optimizers.items() if c["learning_rate"] is not None}
  if not baselines:
    return None, None
  name = min(baselines, key=lambda n: final(baselines[n]))
  return name, baselines[name]


def figure_table(results: dict, learned: str = "LSTM") -> str:
  """A markdown table and a verdict line for one results dict."""
  curves = results["optimizers"]
  final = results["steps"][-1]
  lines = [f"**{results['figure']}**: {results['num_test_problems']} test problems, step {final}",
           "", "| optimizer | learning rate | mean loss at final step | 95% CI | diverged |",
           "|---|---|---|---|---|"]
  for name, c in curves.items():
    lr = "learned" if c["learning_rate"] is None else f"{c['learning_rate']:g}"
    lines.append(f"| {name} | {lr} | {c['mean'][-1]:.4g} | [{c['ci95_low'][-1]:.4g}, "
                 f"{c['ci95_high'][-1]:.4g}] | {c.get('divergence_rate', 0.0):.1%} |")
  baselines = {n: c for n, c in curves.items() if c["learning_rate"] is not None}
  best_name, best = best_baseline(curves)
  if learned in curves and best is not None:
    ratio = curves[learned]["mean"][-1] / best["mean"][-1]
    paper = PAPER_FINAL.get(results["figure"])
    paper_text = (f"; paper: {paper['LSTM']:g} / {paper['best baseline']:g} = "
                  f"{paper['LSTM'] / paper['best baseline']:.2f}") if paper else ""
    behind = [t for t in range(1, len(results["steps"]))
              if curves[learned]["mean"][t] >= min(c["mean"][t] for c in baselines.values())]
    lines += ["", f"{learned} / best baseline ({best_name}) at step {final}: "
              f"{curves[learned]['mean'][-1]:.4g} / {best['mean'][-1]:.4g} = "
              f"**{ratio:.2f}**{paper_text}.",
              f"{learned} below every tuned baseline at every step 1..{final}: "
              + ("**yes**" if not behind else
                 f"**no** (not below at {len(behind)} steps, first at step {behind[0]})") + "."]
  lines += paired_comparisons(results, learned)
  return "\n".join(lines)


def paper_summary(results_list, learned: str = "LSTM") -> str:
  """One row per figure with paper values: the learned optimizer's and the best tuned baseline's
  final loss, their ratio, the paper's ratio and whether ours is at least as good (ReLU: the
  paper's LSTM fails, so the question there is whether ours fails too)."""
  lines = ["| figure | LSTM at the last step [95% CI] | best tuned baseline [95% CI] | "
           "LSTM / best baseline | paper | met? |", "|---|---|---|---|---|---|"]
  for results in results_list:
    paper = PAPER_FINAL.get(results["figure"])
    curves = results["optimizers"]
    if not paper or learned not in curves:
      continue
    best, theirs = best_baseline(curves)
    mine = curves[learned]
    ratio = mine["mean"][-1] / theirs["mean"][-1]
    paper_ratio = paper["LSTM"] / paper["best baseline"]
    if paper_ratio > 1:
      met = "the LSTM fails too" if ratio > 1 else "no: ours does not fail"
    else:
      met = "yes" if ratio <= paper_ratio else "**no**"
    lines.append(
        f"| {results['figure']} (step {results['steps'][-1]}) | {mine['mean'][-1]:.4g} "
        f"[{mine['ci95_low'][-1]:.4g}, {mine['ci95_high'][-1]:.4g}] | {best} (lr "
        f"{theirs['learning_rate']:g}) {theirs['mean'][-1]:.4g} [{theirs['ci95_low'][-1]:.4g}, "
        f"{theirs['ci95_high'][-1]:.4g}] | **{ratio:.2f}** | {paper['LSTM']:g} / "
        f"{paper['best baseline']:g} = {paper_ratio:.2f} | {met} |")
  return "\n".join(lines)


def sweep_table(results: dict, learned: str = "LSTM") -> str:
  """The architecture sweep (paper Fig. 6): per optimizee architecture, the learned optimizer's
  final loss, the best tuned baseline's, and their ratio; the trained architecture marked."""
  lines = [f"**{results['figure']}**: {results['num_test_problems']} test problems per "
           f"architecture, step {results['steps'][-1]}; the LSTM was meta-trained on "
           f"{' x '.join(map(str, results['trained_hidden_sizes']))} hidden units", "",
           f"| hidden layers x units | {learned} [95% CI] | best baseline [95% CI] | ratio |",
           "|---|---|---|---|"]
  for e in results["sweep"]:
    opts = e["optimizers"]
    best, theirs = best_baseline(opts, final=lambda c: c["final_mean"])
    arch = f"{len(e['hidden_sizes'])} x {e['hidden_sizes'][0]}"
    if e["hidden_sizes"] == results["trained_hidden_sizes"]:
      arch += " (trained)"
    mine = opts[learned]
    lines.append(f"| {arch} | {mine['final_mean']:.4g} [{mine['ci95_low']:.4g}, "
                 f"{mine['ci95_high']:.4g}] | {best} (lr {theirs['learning_rate']:g}) "
                 f"{theirs['final_mean']:.4g} [{theirs['ci95_low']:.4g}, "
                 f"{theirs['ci95_high']:.4g}] | {mine['final_mean'] / theirs['final_mean']:.2f} |")
  return "\n".join(lines)


def paired_comparisons(results: dict, reference: str = "LSTM") -> list:
  """For every other learned optimizer: its final loss minus `reference`'s on the same test
  problems, mean and normal-approximation 95% CI of the paired differences."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  curves = results["optimizers"]
  if reference not in curves or "final_losses" not in curves[reference]:
    return []
  base = np.asarray(curves[reference]["final_losses"], np.float64)
  lines = []
  for name, c in curves.items():
    if name == reference or c["learning_rate"] is not None or "final_losses" not in c:
      continue
    diff = np.asarray(c["final_losses"], np.float64) - base
    diff = diff[np.isfinite(diff)]
    half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
    verdict = ("lower than" if diff.mean() + half < 0 else
               "higher than" if diff.mean() - half > 0 else "not distinguishable from")
    lines.append(f"{name} - {reference} at step {results['steps'][-1]} (paired over "
                 f"{len(diff)} test problems): {diff.mean():+.4g} [{diff.mean() - half:+.4g}, "
                 f"{diff.mean() + half:+.4g}]: {name} is **{verdict}** {reference}.")
  return [""] + lines if lines else []


def main(argv):
  if len(argv) < 2:
    print("usage: python -m l2l_tf.report RESULTS.json [...]", file=sys.stderr)
    sys.exit(1)
  by_figure = {}
  for path in argv[1:]:
    try:
      with open(path) as f:
        results = json.load(f)
    except (OSError, ValueError) as e:
      print(f"error: cannot read {path}: {e}. Run l2l_tf.reproduce first.", file=sys.stderr)
      sys.exit(1)
    by_figure[results["figure"]] = results
    if results["figure"] == "review_forget_gate":
      from l2l_tf_experiments.review import forget_gate  # pylint: disable=g-import-not-at-top
      print(forget_gate.table_lines(results))
    elif results["figure"] == "review_hochreiter2001":
      from l2l_tf_experiments.review import speed  # pylint: disable=g-import-not-at-top
      print(speed.table_lines(results))
    elif "sweep" in results:
      print(sweep_table(results))
    else:
      print(figure_table(results))
    print()
  with_paper = [r for f, r in by_figure.items() if f in PAPER_FINAL]
  if len(with_paper) > 1:
    print("Against the paper:\n")
    print(paper_summary(with_paper))
    print()
  if {"review_forget_gate", "review_hochreiter2001"} <= set(by_figure):
    from l2l_tf_experiments.review import forget_gate  # pylint: disable=g-import-not-at-top
    print("The review's side-by-side table:\n")
    print(forget_gate.side_by_side_table(by_figure["review_forget_gate"],
                                         by_figure["review_hochreiter2001"]))


if __name__ == "__main__":
  app.run(main)
