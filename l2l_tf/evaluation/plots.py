"""Every plot of the library, drawn from results (or, for the Appendix B view, from arrays).

Matplotlib is imported on first use with its file-only backend ("Agg"), so importing this module
costs nothing and plots work without a display.
"""

import io
import os
import textwrap
from pathlib import Path

import numpy as np


def pyplot():
  """`matplotlib.pyplot`, drawing to files only (the "Agg" backend)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def curve_label(name: str, curve: dict) -> str:
  """A legend entry: the name, a tuned baseline's learning rate, and the share of runs that
  diverged if any did (the curve is the mean of the others)."""
  notes = [] if curve.get("learning_rate") is None else [f"lr={curve['learning_rate']:g}"]
  if curve.get("divergence_rate"):
    notes.append(f"{curve['divergence_rate']:.0%} diverged, not in the mean")
  return f"{name} ({'; '.join(notes)})" if notes else name


def plot_curve(ax, steps, curve: dict, keep, color, label: str, floor: float = 1e-12,
               linewidths=(2.0, 1.4)):
  """One results curve at the steps where `keep` holds: the mean, solid for a learned optimizer
  (no learning rate) and dashed for a tuned one, in `linewidths`, with its 95% CI band (the lower
  end raised to `floor` for log axes)."""
  learned = curve.get("learning_rate") is None
  mean = np.asarray(curve["mean"], np.float64)[keep]
  ax.plot(steps[keep], mean, "-" if learned else "--", color=color, label=label,
          linewidth=linewidths[0] if learned else linewidths[1])
  low = np.maximum(np.asarray(curve["ci95_low"], np.float64)[keep], floor)
  ax.fill_between(steps[keep], low, np.asarray(curve["ci95_high"])[keep], color=color, alpha=0.2,
                  linewidth=0)


def plot_results(results: dict, path, title: str = None, step_range=None) -> Path:
  """Paper-style figure: log-scale mean loss against step with 95% CI bands; learned optimizers
  solid, hand-designed ones dashed (paper Fig. 4)."""
  plt = pyplot()
  steps = np.asarray(results["steps"])
  lo, hi = step_range or (steps[0], steps[-1])
  keep = (steps >= lo) & (steps <= hi)
  fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
  for i, (name, curve) in enumerate(results["optimizers"].items()):
    plot_curve(ax, steps, curve, keep, f"C{i}", curve_label(name, curve))
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("loss")
  ax.set_xlim(lo, hi)
  text = (title or f"{results['figure']} (mean of {results['num_test_problems']} test problems, "
          "95% CI)") + stand_in_note(results.get("problem", {}))
  ax.set_title("\n".join(textwrap.fill(line, 72) for line in text.splitlines()), fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  return save_figure(fig, path)


def stand_in_note(problem_config: dict) -> str:
  """A second title line for results on a stand-in (e.g. Neural Art without ImageNet VGG-19)."""
  if not problem_config.get("stand_in"):
    return ""
  return f"\n{problem_config.get('network_description', 'STAND-IN feature network')}"


def plot_neural_art_images(panels, path, title: str) -> Path:
  """Paper Fig. 9: per setting and content image, a row of content, style and each optimizer's
  final image (its final loss under it)."""
  plt = pyplot()
  names = list(panels[0]["images"])
  rows = [(panel, j) for panel in panels for j in range(len(panel["indices"]))]
  cols = 2 + len(names)
  fig, axes = plt.subplots(len(rows), cols, figsize=(1.7 * cols, 1.8 * len(rows)), dpi=110,
                           squeeze=False)
  for r, (panel, j) in enumerate(rows):
    cells = [("content", panel["content"][j], ""), ("style", panel["style"], "")]
    cells += [(name, panel["images"][name][j], f"f = {panel['final_losses'][name][j]:.3g}")
              for name in names]
    for c, (name, image, note) in enumerate(cells):
      ax = axes[r, c]
      ax.imshow(np.clip(image, 0.0, 1.0), interpolation="nearest")
      ax.set_xticks([])
      ax.set_yticks([])
      if name == "Adam":
        name = f"Adam (lr={panel['adam_learning_rate']:g})"
      ax.set_title(name if r == 0 or j == 0 else "", fontsize=7)
      ax.set_xlabel(note, fontsize=7)
    axes[r, 0].set_ylabel(panel["label"] if j == 0 else "", fontsize=7)
  text = title + stand_in_note(panels[0]["problem"])
  width = max(40, int(cols * 17))  # Characters that fit the figure's width at this font size.
  fig.suptitle("\n".join(textwrap.fill(line, width) for line in text.splitlines()), fontsize=8)
  return save_figure(fig, path)


def plot_sweep(results: dict, path, learned: str = "LSTM") -> Path:
  """One panel per number of hidden layers: final loss (log) against hidden units (log2), with
  95% CI error bars; the trained architecture is marked by a dashed vertical line and the learned
  optimizer's final loss there by a dotted horizontal line."""
  plt = pyplot()
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
  return save_figure(fig, path)


def appendix_b_figure(gradients, proposals) -> bytes:
  """The paper's Appendix B view as PNG bytes: per coordinate, gradients above update proposals.

  Args:
    gradients: [num_steps, k] gradient of each shown coordinate at each step.
    proposals: legend label -> [num_steps, k] updates proposed from those gradients.

  Returns:
    The PNG file's bytes.
  """
  plt = pyplot()
  k = gradients.shape[1]
  fig, axes = plt.subplots(2, k, figsize=(3.2 * k, 5), sharex=True, squeeze=False)
  steps = range(gradients.shape[0])
  for j in range(k):
    axes[0, j].plot(steps, gradients[:, j], color="black", lw=1)
    axes[0, j].set_title(f"coordinate {j}")
    for label, values in proposals.items():
      axes[1, j].plot(steps, values[:, j], lw=1, label=label)
    axes[1, j].axhline(0, color="gray", lw=0.5)
    axes[1, j].set_xlabel("step")
  axes[0, 0].set_ylabel("gradient")
  axes[1, 0].set_ylabel("update")
  axes[1, 0].legend(fontsize="small")
  fig.tight_layout()
  buffer = io.BytesIO()
  fig.savefig(buffer, format="png", dpi=80)
  plt.close(fig)
  return buffer.getvalue()


def save_figure(fig, path) -> Path:
  """Writes a matplotlib figure to `path` atomically (a temporary name, then a rename); closes
  it."""
  plt = pyplot()
  fig.tight_layout()
  path = Path(path)
  tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
  fig.savefig(tmp)
  plt.close(fig)
  os.replace(tmp, path)
  return path
