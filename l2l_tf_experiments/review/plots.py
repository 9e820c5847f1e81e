"""The review's plots: task H's learning curves and the forget-gate ablation's horizons.

Drawn with the library's plot helpers (`l2l_tf.evaluation.plots`) from the results of the figures
`review_hochreiter2001` and `review_forget_gate`.
"""

from pathlib import Path

import numpy as np

from l2l_tf.evaluation import plots


def task_h_plot(results: dict, path) -> Path:
  """E_n against n (log-log) per learner with 95% CI bands; tau dashed; medians n* marked."""
  plt = plots.pyplot()
  steps = np.asarray(results["steps"])
  keep = steps >= 1
  fig, ax = plt.subplots(figsize=(7.0, 4.8), dpi=120)
  tau = results["tau"]
  # Two decades below tau is enough to read the metric; LMS on the true features goes on to
  # float32 round-off (~1e-15) and would squash every other curve.
  bottom = tau / 300
  for i, (name, curve) in enumerate(results["optimizers"].items()):
    color = f"C{i}"
    entry = results["examples_to_tau"][name]
    median = entry["median"]
    label = plots.curve_label(name, curve)
    label += (f"; n*={median:g}" if np.isfinite(median) else "; n*: never") + \
        f" (budget {entry['budget']})"
    plots.plot_curve(ax, steps, curve, keep, color, label, floor=bottom, linewidths=(1.8, 1.3))
    if np.isfinite(median) and median >= 1:
      ax.plot([median], [tau], "o", color=color, markersize=6)
  ax.axhline(tau, color="k", linestyle=":", linewidth=1.0,
             label=f"tau = {results['tau_fraction']:g} Var[y] = {tau:.4f}")
  ax.axvline(results["meta_budget"], color="gray", linestyle="-.", linewidth=0.8,
             label=f"meta-LSTM training length ({results['meta_budget']})")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_ylim(bottom=bottom)
  ax.set_xlabel("examples seen n")
  ax.set_ylabel("MSE of the current predictor, E_n")
  ax.set_title(f"Task H: learning a new 2-d quadratic ({results['num_test_problems']} test "
               "functions, mean, 95% CI; dots: median n*)", fontsize=8)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=6.5, loc="lower left")
  return plots.save_figure(fig, path)


def ablation_plot(results: dict, path) -> Path:
  """One panel per problem: mean test loss at 1x/2x/4x the horizon, per seed (dots) and the mean
  over seeds with its 95% CI (error bars); tuned Adam dashed."""
  plt = plots.pyplot()
  panels = results["problems"]
  fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.2), dpi=120,
                           squeeze=False)
  for ax, (problem, entry) in zip(axes[0], panels.items()):
    horizons = entry["horizons"]
    x = np.arange(len(horizons))
    for i, (name, rows) in enumerate(entry["table"].items()):
      color = f"C{i}"
      means = np.array([rows[str(h)]["mean"] for h in horizons])
      if rows[str(horizons[0])].get("ci_over") == "test problems":  # A tuned baseline.
        ax.plot(x, means, "--s", color=color, label=name + " per horizon", markersize=4)
        continue
      offset = (i - 0.5) * 0.08
      low = np.array([rows[str(h)]["ci95_low"] for h in horizons])
      high = np.array([rows[str(h)]["ci95_high"] for h in horizons])
      ax.errorbar(x + offset, means, yerr=[np.maximum(means - low, 0), np.maximum(high - means, 0)],
                  fmt="-o", color=color, capsize=3,
                  label=f"{name} ({len(rows[str(horizons[0])]['per_seed'])} seeds)")
      for j, h in enumerate(horizons):
        seeds = np.asarray(rows[str(h)]["per_seed"], np.float64)
        ax.plot(np.full(seeds.shape, x[j] + offset + 0.03), seeds, ".", color=color, alpha=0.5,
                markersize=4)
    ax.set_xticks(x, [f"{h // entry['horizon']}x ({h} steps)" for h in horizons])
    ax.set_yscale("log")
    ax.set_xlabel("evaluation length (meta-trained on T = "
                  f"{entry['horizon']} steps, {entry['num_epochs']} epochs)")
    ax.set_ylabel("mean test loss at the last step")
    ax.set_title(f"{problem}: {entry['num_test_problems']} test problems; "
                 "mean over seeds, 95% CI", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5)
  return plots.save_figure(fig, path)
