"""The results file every figure writes (its plots: `l2l_tf.evaluation.plots`).

Schema (extra keys may follow):

    {"figure": str, "steps": [0, 1, ..., T], "num_test_problems": int, "seed": int,
     "optimizers": {NAME: {"mean": [...], "ci95_low": [...], "ci95_high": [...],
                           "learning_rate": float | null, "divergence_rate": float, ...}}}

`mean[t]` is the mean test loss after t optimizee steps (t = 0: the initial loss).
"""

import json
import os
from pathlib import Path

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
  return write_json(results, path)


def write_json(results: dict, path) -> Path:
  """Writes any figure's results as JSON, atomically (`write_results` checks the curves' schema
  first; figures of another kind, e.g. Neural Art's images, write theirs directly)."""
  path = Path(path)
  tmp = path.with_name(f".{path.name}.tmp")
  with open(tmp, "w") as f:
    json.dump(results, f, indent=1, allow_nan=True)
  os.replace(tmp, path)
  return path


def read_results(path) -> dict:
  with open(path) as f:
    return json.load(f)


def log_results_to_tensorboard(results: dict, logdir) -> None:
  """Writes each optimizer's mean curve as a scalar series `<figure>/<optimizer>` over steps."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  writer = tf.summary.create_file_writer(str(logdir))
  with writer.as_default():
    for name, curve in results["optimizers"].items():
      for step, value in zip(results["steps"], curve["mean"]):
        tf.summary.scalar(f"{results['figure']}/{name}", value, step=step)
  writer.flush()
