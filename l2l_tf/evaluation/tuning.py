"""Learning-rate search for the hand-designed baselines, on validation problems only."""

import math
from typing import Any, Callable, Dict, Sequence, Tuple

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

  def score():
    losses = curves.evaluate_losses(problem, optimizer, instance, params, num_steps,
                                    chunk_size=chunk_size, jit_compile=jit_compile)
    return float(np.mean(losses[:, -1])) if np.all(np.isfinite(losses)) else math.inf

  return search_learning_rate(optimizer, grid, score)


def search_learning_rate(optimizer, grid: Sequence[float], score: Callable[[], Any],
                         diverged: Callable[[Any], bool] = lambda s: not math.isfinite(s)
                         ) -> Tuple[float, Dict[float, Any]]:
  """The grid search behind every tuned learning rate: the rate with the smallest `score()`.

  Args:
    optimizer: has a `learning_rate` variable, assigned each rate before `score()` runs.
    grid: the rates to try.
    score: runs the optimizer on validation problems at its current rate; returns a number or a
      tuple (compared in order; ties go to the smaller rate).
    diverged: whether a score means the validation runs diverged.

  Returns:
    `(best_rate, {rate: score})`; the optimizer is left at the best rate.

  Raises:
    RuntimeError: the runs diverged at every rate.
  """
  scores = {}
  for lr in grid:
    optimizer.learning_rate.assign(lr)
    scores[lr] = score()
  best = min(grid, key=lambda lr: (scores[lr], lr))
  if diverged(scores[best]):
    raise RuntimeError(f"{type(optimizer).__name__} diverged at every learning rate in {list(grid)}.")
  optimizer.learning_rate.assign(best)
  return best, scores
