"""The results file every figure writes, and the paper-style plot drawn from it.

Schema (extra keys may follow):

    {"figure": str, "steps": [0, 1, ..., T], "num_test_problems": int, "seed": int,
     "optimizers": {NAME: {"mean": [...], "ci95_low": [...], "ci95_high": [...],
                           "learning_rate": float | null, "divergence_rate": float, ...}}}

`mean[t]` is the mean test loss after t optimizee steps (t = 0: the initial loss).
"""

import json
import os
from pathlib import Path

import numpy as np

from l2l_tf import errors

REQUIRED_KEYS = ("figure", "steps", "num_test_problems", "seed", "optimizers")
CURVE_KEYS = ("mean", "ci95_low", "ci95_high", "learning_rate")


def write_results(results: dict, path) -> Path:
  """Validates and writes `results` as JSON, atomically."""
  missing = [k for k in REQUIRED_KEYS if k not in results]
  if missing:
    raise errors.ConfigError(f"results lack {missing}")
  for name, curve in results["optimizers"].items():
    lacking = [k for k in CURVE_KEYS if k not in curve]
    if lacking:
      raise errors.ConfigError(f"results for {name} lack {lacking}")
    if len(curve["mean"]) != len(results["steps"]):
      raise errors.ConfigError(f"results for {name}: {len(curve['mean'])} values for "
                              f"{len(results['steps'])} steps")
  path = Path(path)
  tmp = path.with_name(f".{path.name}.tmp")
  with open(tmp, "w") as f:
    json.dump(results, f, indent=1, allow_nan=True)
  os.replace(tmp, path)
  return path


def read_results(path) -> dict:
  with open(path) as f:
    return json.load(f)


def plot_results(results: dict, path, title: str = None, step_range=None) -> Path:
  """Paper-style figure: log-scale mean loss against step with 95% CI bands; learned optimizers
  solid, hand-designed ones dashed (paper Fig. 4)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top

  steps = np.asarray(results["steps"])
  lo, hi = step_range or (steps[0], steps[-1])
  keep = (steps >= lo) & (steps <= hi)
  fig, ax = plt.subplots(figsize=(5.5, 4.2), dpi=120)
  for i, (name, curve) in enumerate(results["optimizers"].items()):
    learned = curve.get("learning_rate") is None
    mean = np.asarray(curve["mean"], np.float64)[keep]
    label = name if learned else f"{name} (lr={curve['learning_rate']:g})"
    color = f"C{i}"
    ax.plot(steps[keep], mean, "-" if learned else "--", color=color, label=label,
            linewidth=2.0 if learned else 1.4)
    low = np.maximum(np.asarray(curve["ci95_low"], np.float64)[keep], 1e-12)
    ax.fill_between(steps[keep], low, np.asarray(curve["ci95_high"])[keep], color=color,
                    alpha=0.2, linewidth=0)
  ax.set_yscale("log")
  ax.set_xlabel("step")
  ax.set_ylabel("loss")
  ax.set_xlim(lo, hi)
  ax.set_title(title or f"{results['figure']} (mean of {results['num_test_problems']} test "
               "problems, 95% CI)", fontsize=9)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=8)
  return save_figure(fig, path)


def save_figure(fig, path) -> Path:
  """Writes a matplotlib figure to `path` atomically (a temporary name, then a rename), closes it."""
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  fig.tight_layout()
  path = Path(path)
  tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
  fig.savefig(tmp)
  plt.close(fig)
  os.replace(tmp, path)
  return path


def log_results_to_tensorboard(results: dict, logdir) -> None:
  """Writes each optimizer's mean curve as a scalar series `<figure>/<optimizer>` over steps."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  writer = tf.summary.create_file_writer(str(logdir))
  with writer.as_default():
    for name, curve in results["optimizers"].items():
      for step, value in zip(results["steps"], curve["mean"]):
        tf.summary.scalar(f"{results['figure']}/{name}", value, step=step)
  writer.flush()
