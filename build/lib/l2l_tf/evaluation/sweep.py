"""The architecture sweep of paper Fig. 6: final loss against the optimizee's hidden units."""

from pathlib import Path

import numpy as np

from l2l_tf.evaluation import results as results_lib


def final_losses(results: dict, hidden_sizes) -> dict:
  """One architecture's entry: every optimizer's final mean loss, its 95% CI and learning rate."""
  return {"hidden_sizes": list(hidden_sizes), "optimizers": {
      name: {"final_mean": c["mean"][-1], "ci95_low": c["ci95_low"][-1],
             "ci95_high": c["ci95_high"][-1], "learning_rate": c["learning_rate"],
             "divergence_rate": c.get("divergence_rate", 0.0)}
      for name, c in results["optimizers"].items()}}


def plot_sweep(results: dict, path, learned: str = "LSTM") -> Path:
  """One panel per number of hidden layers: final loss (log) against hidden units (log2), with
  95% CI error bars; the trained architecture is marked by a dashed vertical line and the learned
  optimizer's final loss there by a dotted horizontal line."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  layer_counts = sorted({len(e["hidden_sizes"]) for e in results["sweep"]})
  fig, axes = plt.subplots(1, len(layer_counts), figsize=(5 * len(layer_counts), 4), dpi=120,
                           squeeze=False, sharey=True)
  trained = results["trained_hidden_sizes"]
  trained_loss = None
  for e in results["sweep"]:
    if e["hidden_sizes"] == trained and learned in e["optimizers"]:
      trained_loss = e["optimizers"][learned]["final_mean"]
  names = list(results["sweep"][0]["optimizers"])
  for ax, count in zip(axes[0], layer_counts):
    entries = [e for e in results["sweep"] if len(e["hidden_sizes"]) == count]
    widths = np.array([e["hidden_sizes"][0] for e in entries])
    for i, name in enumerate(names):
      mean = np.array([e["optimizers"][name]["final_mean"] for e in entries])
      low = np.array([e["optimizers"][name]["ci95_low"] for e in entries])
      high = np.array([e["optimizers"][name]["ci95_high"] for e in entries])
      is_learned = entries[0]["optimizers"][name]["learning_rate"] is None
      ax.errorbar(widths, mean, yerr=[mean - low, high - mean], fmt="o-" if is_learned else "s--",
                  color=f"C{i}", label=name, capsize=3, linewidth=2 if is_learned else 1.2)
    if len(trained) == count:
      ax.axvline(trained[0], color="gray", linestyle="--", linewidth=1)
    if trained_loss is not None:
      ax.axhline(trained_loss, color="gray", linestyle=":", linewidth=1)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(widths)
    ax.set_xticklabels([str(w) for w in widths])
    ax.set_xlabel("hidden units per layer")
    ax.set_title(f"{count} hidden layer{'s' if count > 1 else ''}", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
  axes[0][0].set_ylabel(f"final loss (step {results['steps'][-1]})")
  axes[0][0].legend(fontsize=8)
  fig.suptitle(f"{results['figure']}: {results['num_test_problems']} test runs per point, "
               "95% CI", fontsize=9)
  return results_lib.save_figure(fig, path)
