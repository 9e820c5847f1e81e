"""The review's tables: examples to tau (task H), the forget-gate ablation, the side-by-side table.

Built with the library's table helpers (`l2l_tf.evaluation.tables`) from the results files of the
figures `review_hochreiter2001` and `review_forget_gate`.
"""

import math
from typing import Optional

from l2l_tf.evaluation.tables import ci_cell, header, row
from l2l_tf_experiments.review import comparison
from l2l_tf_experiments.review import forget_gate


def task_h_table(results: dict) -> str:
  """The examples-to-tau table of a review_hochreiter2001 results dict, and its ratios."""
  lines = header(["learner", "budget", "median n* [95% CI]", "never reached",
                  "first reach, median", "mean-curve crossing"])
  for name, e in results["examples_to_tau"].items():
    lines.append(row([name, e["budget"], ci_cell(e["median"], e["ci95_low"], e["ci95_high"], "g"),
                      f"{e['never_fraction']:.1%}", f"{e['first_reach']['median']:g}",
                      f"{e['mean_curve_crossing']:g}"]))
  lines.append("")
  for key, r in results["ratios"].items():
    lines.append(f"ratio ({key}) {r['numerator']} / {r['denominator']} (medians): "
                 f"{ci_cell(r['value'], r['ci95_low'], r['ci95_high'], '.3g')}")
  return "\n".join(lines)


def _mean_ci(entry: dict, spec: str = ".4g") -> str:
  return ci_cell(entry["mean"], entry["ci95_low"], entry["ci95_high"], spec)


def ablation_table(results: dict) -> str:
  """Per problem and horizon, each variant's mean over seeds [95% CI], the paired difference and
  tuned Adam, from a review_forget_gate results dict."""
  lines = header(["problem", "evaluated for", "L2L LSTM, forget gate", "L2L LSTM, no forget gate",
                  "no forget - forget (paired)", "Adam (tuned)"])
  names = [v for v, _, _ in forget_gate.VARIANTS]
  for problem, entry in results["problems"].items():
    for h in entry["horizons"]:
      cells = []
      for n in names:
        e = entry["table"].get(n, {}).get(str(h))
        cells.append(f"{_mean_ci(e)}; {e['seeds_below_adam']}/{e['num_seeds']} seeds below Adam"
                     if e else "-")
      diff = entry["difference_no_forget_minus_forget"].get(str(h))
      adam = entry["table"][forget_gate.ADAM][str(h)]
      lines.append(row([problem, f"{h // entry['horizon']}x T = {h}", *cells,
                        _mean_ci(diff) if diff else "-",
                        f"{_mean_ci(adam)} (lr {adam['learning_rate']:g})"]))
  return "\n".join(lines)


# The review's side-by-side table (seed_systems.md Sec. 0.3): its systems' names in task H.
H_LEARNERS = {"L2L LSTM, forget gate (2000)": comparison.L2L,
              comparison.META_LSTM: comparison.META_LSTM,
              comparison.META_LSTM_FORGET: comparison.META_LSTM_FORGET,
              "online SGD (tuned)": comparison.SGD_MLP}
COLUMNS = (("quadratic", 1), ("quadratic", 2), ("quadratic", 4), ("mnist", 1), ("mnist", 2),
           ("mnist", 4), ("mnist_relu", 1))
SHORT_NAMES = {"quadratic": "Q", "mnist": "M", "mnist_relu": "M-ReLU"}


# The memories' rows of the side-by-side table (review_fast_weights_*, issue 19): their systems.
MEMORY_ROWS = {
    "LSTM": "L2L LSTM, the memories' control (own meta learning rate)",
    "Fast weights": "fast weights, additive (Schmidhuber 1992)",
    "Fast weights (delta)": "fast weights, delta rule (Schlag et al. 2021)",
    "SRWM": "self-referential weight matrix (Schmidhuber 1993; Irie et al. 2022)",
    "NTM-L-BFGS": "NTM-L-BFGS, unit-norm delta memory (paper App. D)",
}


def side_by_side_table(ablation: dict, hochreiter: dict, step_size: dict = None,
                       ssa_results: dict = None, memories=()) -> str:
  """The review's side-by-side table from the results of review_forget_gate and
  review_hochreiter2001: columns Q@100/200/400 (quadratic), M@100/200/400 (MNIST), M-ReLU@100,
  H (median examples to tau), meta-training cost. Learned rows: mean over meta-training seeds
  [95% t-CI over seeds]; Adam: mean over test problems [95% CI]. With the results of
  review_step_size_control and review_ssa, their rows follow (`_controller_rows`); with those of
  review_fast_weights_quadratic and/or _mnist (`memories`), a row per memory (`MEMORY_ROWS`)."""
  problems = ablation["problems"]
  lines = header(["system"] + [f"{SHORT_NAMES[p]}@{m * problems[p]['horizon']}" if p in problems
                               else f"{SHORT_NAMES[p]}@{m}x" for p, m in COLUMNS]
                 + ["H: median examples to MSE < tau [95% CI]", "meta-training cost"])
  systems = ([forget_gate.ADAM] + [v for v, _, _ in forget_gate.VARIANTS]
             + [comparison.META_LSTM, comparison.META_LSTM_FORGET, "online SGD (tuned)"])
  for system in systems:
    cells = [_ablation_cell(problems, p, m, system) for p, m in COLUMNS]
    lines.append(row([system] + cells + [_h_cell(hochreiter, system),
                                         _cost(problems, hochreiter, system)]))
  lines += _controller_rows(problems, step_size, ssa_results)
  if memories:
    # Each memory figure's problems under its own key (review_fast_weights_quadratic: quadratic,
    # _mnist: mnist); their horizons are the forget-gate figure's, so the columns are the same.
    merged = {p: e for results in memories for p, e in results["problems"].items()}
    for system, label in MEMORY_ROWS.items():
      if any(system in e["table"] for e in merged.values()):
        lines.append(row([label] + [_ablation_cell(merged, p, m, system) for p, m in COLUMNS]
                         + ["not measured", _cost(merged, None, system)]))
  return "\n".join(lines)


def _controller_rows(problems: dict, step_size: dict, ssa_results: dict) -> list:
  """Rows of the step-size controller (started from the tuned fixed rate; in brackets the worst
  mean over the initial-learning-rate sweep) and of SSA's frozen policies, at step 100; columns
  they were not run for: "-"."""
  out = []
  columns = [f"{SHORT_NAMES[p]}@{m * problems[p]['horizon']}" if p in problems else
             f"{SHORT_NAMES[p]}@{m}x" for p, m in COLUMNS]
  if step_size:
    for legend in ("SGD", "RMSprop"):
      cells = {}
      costs = []
      for problem, e in step_size["problems"].items():
        name = f"{legend} + controller"
        curve = next(c for n, c in e["curves"].items() if n.startswith(name + " from lr"))
        worst = max(r["mean"] for r in e["sweep"][name])
        cells[f"{SHORT_NAMES[problem]}@{e['horizon']}"] = (
            f"{ci_cell(curve['mean'][-1], curve['ci95_low'][-1], curve['ci95_high'][-1], '.3g')}"
            f" (from tuned lr; worst start {worst:.3g})")
        m = e["models"][name]
        costs.append(f"{SHORT_NAMES[problem]}: {m['optimizee_gradients']:.3g} optimizee "
                     f"gradients (REPS, {m['meta_training_cpu_seconds']:.0f} CPU-s)")
      out.append(row([f"{legend} + step-size controller (Daniel et al. 2016)"]
                     + [cells.get(c, "-") for c in columns] + ["not measured", "; ".join(costs)]))
  if ssa_results:
    for i, run in enumerate(ssa_results["ssa_runs"]):
      name = next(n for n in ssa_results["optimizers"] if n.startswith(f"SSA seed {i}:"))
      c = ssa_results["optimizers"][name]
      cells = {f"Q@{ssa_results['steps'][-1]}": ci_cell(c["mean"][-1], c["ci95_low"][-1],
                                                        c["ci95_high"][-1], ".3g")}
      out.append(row([f"SSA frozen policy, {name}"] + [cells.get(col, "-") for col in columns]
                     + ["not measured", f"Q: {run['optimizee_gradients']:.3g} optimizee "
                        f"gradients (lifelong, {run['cpu_seconds']:.0f} CPU-s)"]))
  return out


def _ablation_cell(problems: dict, problem: str, multiple: int, system: str) -> str:
  entry = problems.get(problem)
  if not entry or system not in entry["table"]:
    return "-"
  e = entry["table"][system].get(str(multiple * entry["horizon"]))
  if e is None:
    return "-"
  text = _mean_ci(e, ".3g")
  if system == forget_gate.ADAM:
    text += f" (lr {e['learning_rate']:g})"
  return text


def _h_cell(hochreiter: dict, system: str) -> str:
  entry = hochreiter["examples_to_tau"].get(H_LEARNERS.get(system, ""))
  if entry is None:
    return "not measured"
  if not math.isfinite(entry["median"]):
    return f"never ({entry['never_fraction']:.0%} never reach tau)"
  return (f"{ci_cell(entry['median'], entry['ci95_low'], entry['ci95_high'], 'g')} "
          f"(budget {entry['budget']}, {entry['never_fraction']:.0%} never)")


def _cost(problems: dict, hochreiter: Optional[dict], system: str) -> str:
  """Meta-training cost: optimizee gradients per seed (ablation), examples or gradients (H: the
  task-H results, None for systems not run on it)."""
  parts = []
  for problem in ("quadratic", "mnist"):
    entry = problems.get(problem)
    runs = [m for k, m in entry["models"].items() if k.startswith(system + " / ")] if entry else []
    if runs:
      per_run = sorted({m["optimizee_gradients"] for m in runs})
      parts.append(f"{SHORT_NAMES[problem]}: {'/'.join(f'{v:.3g}' for v in per_run)} optimizee "
                   f"gradients per seed")
  model = ({} if hochreiter is None else
           hochreiter["models"].get(H_LEARNERS.get(system, ""), {}).get("metadata", {}))
  if "num_updates" in model.get("train", {}):
    t = model["train"]
    parts.append(f"H: {t['num_updates'] * t['batch_size'] * t['sequence_length']:.3g} "
                 "training examples")
  elif "epochs_trained" in model:
    t = model["train"]
    parts.append(f"H: {model['epochs_trained'] * t['meta_batch_size'] * t['horizon']:.3g} "
                 "optimizee gradients")
  return "; ".join(parts) or "0"


def memories_table(results: dict) -> str:
  """Per problem and horizon, each learned optimizer's mean over seeds [95% CI], its paired
  difference from the LSTM [95% CI], its seeds below the best tuned baseline and its meta-training
  cost; then the tuned baselines; from a review_fast_weights_* results dict."""
  lines = header(["problem", "steps", "optimizer", "mean at the last step [95% CI]",
                  "minus LSTM, paired over seeds [95% CI]", "seeds below the best baseline",
                  "meta-training cost per seed (optimizee gradients)"])
  for problem, entry in results["problems"].items():
    reference = entry.get("reference")
    for h in entry["horizons"]:
      for name, rows in entry["table"].items():
        e = rows[str(h)]
        if e.get("ci_over") == "test problems":
          lines.append(row([problem, h, name, f"{_mean_ci(e)} (lr {e['learning_rate']:g})",
                            "-", "-", "0 (tuned on validation problems)"]))
          continue
        diff = entry["difference_minus_reference"].get(name, {}).get(str(h))
        costs = sorted({m["optimizee_gradients"] for k, m in entry["models"].items()
                        if k.startswith(name + " / ")})
        lines.append(row([problem, h, name, _mean_ci(e),
                          _mean_ci(diff) if diff else ("(reference)" if name == reference
                                                       else "-"),
                          f"{e.get('seeds_below_best_baseline', '-')}/{e['num_seeds']}",
                          "/".join(f"{c:.3g}" for c in costs)]))
  return "\n".join(lines)
