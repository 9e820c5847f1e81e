"""Learning-rate search for the hand-designed baselines, on validation problems only."""

import math
from typing import Dict, Sequence, Tuple

import numpy as np

from l2l_tf.evaluation import curves

# Half-decades from 1e-5 to 10: the paper-reproduction grid {1, 0.3, 0.1, ..., 1e-5}, widened.
DEFAULT_LEARNING_RATE_GRID = tuple(
    float(f"{m}e{e}") for e in range(-5, 2) for m in (1, 3))[:-1]


def tune_learning_rate(problem, optimizer, instance, params, num_steps: int,
                       grid: Sequence[float] = DEFAULT_LEARNING_RATE_GRID,
                       chunk_size: int = 0, jit_compile: bool = False
                       ) -> Tuple[float, Dict[float, float]]:
  """Chooses `optimizer.learning_rate` by the best mean final loss on the given VALIDATION problems.

  A rate at which any validation run diverges scores +inf. The optimizer's learning-rate variable is
  left at the chosen value.

  Returns:
    `(best_rate, {rate: score})`.
  """
  scores = {}
  for lr in grid:
    optimizer.learning_rate.assign(lr)
    losses = curves.evaluate_losses(problem, optimizer, instance, params, num_steps,
                                    chunk_size=chunk_size, jit_compile=jit_compile)
    final = losses[:, -1]
    scores[lr] = float(np.mean(final)) if np.all(np.isfinite(losses)) else math.inf
  best = min(grid, key=lambda lr: (scores[lr], lr))
  if not math.isfinite(scores[best]):
    raise RuntimeError(f"{type(optimizer).__name__} diverged at every learning rate in {list(grid)}.")
  optimizer.learning_rate.assign(best)
  return best, scores
