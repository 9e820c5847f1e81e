"""The "k times faster than backprop" measurement on task H (seed_systems.md Sec. 1.5).

Definitions (owned by the project; the 2001 papers' own definition was not found):

* A learner's predictor after n labelled examples (n = 0, 1, ..., B) has the mean squared error
  E_n = E_x[(pred_n(x) - f(x))^2] over the input distribution x ~ U[-1, 1]^2, computed with a
  Gauss-Legendre probe rule (`task_h.probe_points`; exact for quadratic predictors). E_n is the
  "running MSE": it measures the predictor the learner holds at that point, without the noise of
  a single next example.
* tau = 5% of the target variance Var[y] = 98/135 (so tau ~= 0.0363).
* Examples to tau for one function: n* = min{n : E_m <= tau for every m in [n, B]}, the number of
  examples after which the MSE is below tau and STAYS below it for the rest of the budget B. If
  E_B > tau (or the run diverged: non-finite values count as above tau), the function never
  reached tau within the budget: n* = inf.
* Over test functions: the median of n* (inf sorts last, so a median exists while fewer than half
  never reach tau) with a distribution-free order-statistic 95% CI, and the never-reached fraction.
* Speed-up of learner A over learner B: median n*(B) / median n*(A) on the same test functions,
  with a paired bootstrap 95% CI (functions resampled with replacement).

Online learners (SGD on a 2-20-1 MLP, LMS on the true features, the L2L optimizer) run through the
library's `unroll.optimizee_step` on `task_h.OnlineRegression`, so every library optimizer runs
unchanged.
"""

import math
from typing import Dict, Sequence, Tuple

import numpy as np
import tensorflow as tf

from l2l_tf.evaluation import curves
from l2l_tf.evaluation import tuning
from l2l_tf.meta import unroll


def examples_to_tau(curves: np.ndarray, tau: float) -> np.ndarray:
  """n* per run: the first n after which curves[:, m] <= tau for all m >= n (inf: never).

  Args:
    curves: [F, B + 1], curves[:, n] = E_n (non-finite values count as above tau).
    tau: the threshold.

  Returns:
    float array [F]: n* in 0..B, or inf when curves[:, B] > tau.
  """
  curves = np.asarray(curves, np.float64)
  if curves.ndim != 2 or curves.shape[1] == 0:
    raise ValueError(f"curves must be [runs, steps] with steps >= 1, got shape {curves.shape}.")
  above = ~(curves <= tau)  # NaN is "above".
  budget = curves.shape[1] - 1
  # Index of the last step above tau, -1 when there is none.
  last_above = np.where(above.any(axis=1),
                        budget - np.argmax(above[:, ::-1], axis=1), -1)
  return np.where(last_above == budget, np.inf, last_above + 1.0)


def first_reach(curves: np.ndarray, tau: float) -> np.ndarray:
  """The first n with curves[:, n] <= tau (inf: never), without requiring it to stay below."""
  below = np.asarray(curves, np.float64) <= tau
  return np.where(below.any(axis=1), np.argmax(below, axis=1).astype(np.float64), np.inf)


def _binomial_cdf_half(k: int, n: int) -> float:
  """P(Bin(n, 1/2) <= k), exactly (integer arithmetic)."""
  if k < 0:
    return 0.0
  return sum(math.comb(n, i) for i in range(min(k, n) + 1)) / 2 ** n


def median_ci(values, confidence: float = 0.95) -> Tuple[float, float, float]:
  """The median and a distribution-free CI of it from order statistics.

  With sorted values v_(1) <= ... <= v_(n), [v_(l), v_(n-l+1)] covers the median with probability
  1 - 2 P(Bin(n, 1/2) <= l - 1); l is the largest rank with coverage >= `confidence` (for n too
  small for any such l, the CI is [min, max]). inf values are allowed and sort last.

  Returns:
    `(median, low, high)`.
  """
  v = np.sort(np.asarray(values, np.float64))
  n = v.size
  if n == 0:
    raise ValueError("median_ci needs at least one value.")
  alpha = 1.0 - confidence
  l = 1
  while l + 1 <= (n + 1) // 2 and _binomial_cdf_half(l, n) <= alpha / 2:
    l += 1
  return float(_median_with_inf(v)), float(v[l - 1]), float(v[n - l])


def _median_with_inf(sorted_values: np.ndarray) -> float:
  """The median of sorted values that may hold inf (inf when an infinite value is a middle one)."""
  n = sorted_values.size
  lo, hi = sorted_values[(n - 1) // 2], sorted_values[n // 2]
  return hi if not np.isfinite(hi) else 0.5 * (lo + hi)


def ratio_of_medians(numerator, denominator, num_resamples: int = 2000, seed: int = 0,
                     confidence: float = 0.95) -> Dict[str, float]:
  """median(numerator) / median(denominator) with a paired bootstrap percentile CI.

  Both arrays hold n* of two learners on the SAME functions (index i = function i); a resample
  draws function indices with replacement and recomputes the ratio. inf entries are allowed; a
  ratio with an infinite numerator median is inf.

  Returns:
    `{"value", "ci95_low", "ci95_high", "num_resamples"}`.
  """
  num = np.asarray(numerator, np.float64)
  den = np.asarray(denominator, np.float64)
  if num.shape != den.shape or num.ndim != 1 or num.size == 0:
    raise ValueError(f"numerator and denominator must be equal-length vectors, got {num.shape}, "
                     f"{den.shape}.")

  def ratio(a, b):
    ma, mb = _median_with_inf(np.sort(a)), _median_with_inf(np.sort(b))
    if not np.isfinite(mb):
      return np.nan
    return np.inf if mb == 0 or not np.isfinite(ma) else ma / mb

  rng = np.random.default_rng(seed)
  idx = rng.integers(0, num.size, size=(num_resamples, num.size))
  samples = np.sort([ratio(num[i], den[i]) for i in idx])
  samples = samples[~np.isnan(samples)]
  alpha = 1.0 - confidence
  if samples.size == 0:
    low = high = float("nan")
  else:
    low = float(samples[int(np.floor(alpha / 2 * (samples.size - 1)))])
    high = float(samples[int(np.ceil((1 - alpha / 2) * (samples.size - 1)))])
  return {"value": float(ratio(num, den)), "ci95_low": low, "ci95_high": high,
          "num_resamples": int(num_resamples)}


def summarize_examples(n_star, budget: int) -> dict:
  """Median with its 95% CI, never-reached fraction, and quartiles of n* over functions."""
  n_star = np.asarray(n_star, np.float64)
  median, low, high = median_ci(n_star)
  v = np.sort(n_star)
  quartiles = [float(v[int(np.floor(0.25 * (v.size - 1)))]),
               float(v[int(np.ceil(0.75 * (v.size - 1)))])]
  return {"median": median, "ci95_low": low, "ci95_high": high,
          "never_fraction": float(np.mean(~np.isfinite(n_star))), "quartiles": quartiles,
          "budget": int(budget), "num_functions": int(n_star.size)}


def mean_curve_crossing(curves: np.ndarray, tau: float) -> float:
  """The design note's Sec. 1.4 variant: n* of the MEAN curve over functions (one number)."""
  return float(examples_to_tau(np.nanmean(np.where(np.isfinite(curves), curves, np.nan),
                                          axis=0, keepdims=True), tau)[0])


# ---- online learners through the library ------------------------------------------------------


def make_online_curves_fn(problem, optimizer, num_examples: int):
  """A compiled `(instance, params) -> (online_errors [F, N], probe_mse [F, N + 1])`.

  Runs `optimizer` on `problem` (a `task_h.OnlineRegression`) for N optimizee steps, one example
  per step, from a fresh optimizer state. probe_mse[:, n] is E_n of theta_n (trained on examples
  0..n-1); online_errors[:, n] is the loss on example n at theta_n (the prequential error).
  Hyperparameters in variables (baselines' learning rates) are read at call time.
  """

  @tf.function(reduce_retracing=True)
  def run(instance, params):
    state = optimizer.initial_state(params)
    errors = tf.TensorArray(params[0].dtype, size=num_examples)
    mses = tf.TensorArray(params[0].dtype, size=num_examples + 1)
    for t in tf.range(num_examples):
      mses = mses.write(t, problem.probe_mse(params, instance))
      losses, params, state = unroll.optimizee_step(problem, optimizer, params, state, instance,
                                                    t)
      errors = errors.write(t, losses)
    mses = mses.write(num_examples, problem.probe_mse(params, instance))
    return tf.transpose(errors.stack()), tf.transpose(mses.stack())

  return run


def tuning_score(probe_mse: np.ndarray, tau: float) -> Tuple[float, float]:
  """(median n*, mean log10 E_n over the run): smaller is better, compared in that order."""
  n_star = examples_to_tau(probe_mse, tau)
  finite = np.all(np.isfinite(probe_mse))
  log_area = float(np.mean(np.log10(np.maximum(probe_mse, 1e-30)))) if finite else math.inf
  return float(_median_with_inf(np.sort(n_star))), log_area


def tune_learning_rate(problem, optimizer, instance, params, num_examples: int,
                       grid: Sequence[float], tau: float, chunk_size: int = 0
                       ) -> Tuple[float, Dict[float, Tuple[float, float]]]:
  """Chooses `optimizer.learning_rate` on VALIDATION functions for the metric itself (the
  library's grid search, `l2l_tf.evaluation.tuning.search_learning_rate`).

  Score per rate: the median n* over the validation functions, ties (e.g. all inf) broken by the
  mean log10 E_n over the run. The optimizer's learning rate is left at the chosen value.

  Returns:
    `(best_rate, {rate: (median n*, mean log10 E_n)})`.

  Raises:
    RuntimeError: every rate diverged.
  """
  fn = make_online_curves_fn(problem, optimizer, num_examples)

  def score():
    _, mse = curves.run_in_chunks(fn, instance, params, chunk_size)
    return tuning_score(mse, tau)

  # The run diverged when its log-area score is infinite (a median n* of inf is "never").
  return tuning.search_learning_rate(optimizer, grid, score,
                                     diverged=lambda s: not math.isfinite(s[1]))
