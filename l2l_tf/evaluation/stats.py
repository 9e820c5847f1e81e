"""95% confidence intervals of means: normal approximation over test runs, Student t over seeds."""

import math
from typing import Sequence

import numpy as np

from l2l_tf import errors

# The standard normal's 0.975 quantile, as every results file has used it.
Z_975 = 1.96


def half_width(values, quantile: float = Z_975, axis: int = 0):
  """`quantile * s / sqrt(n)` along `axis`: the half-width of a CI of the mean of n >= 2 values
  (s: the sample standard deviation)."""
  values = np.asarray(values, np.float64)
  return quantile * values.std(axis=axis, ddof=1) / np.sqrt(values.shape[axis])


def t_quantile_975(df: int) -> float:
  """The 0.975 quantile of Student's t with `df` degrees of freedom (bisection on its CDF)."""
  if df < 1:
    raise errors.ConfigError(f"df must be >= 1, got {df}")
  log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

  def cdf(t, n=4000):  # Simpson's rule for the density on [0, t].
    xs = np.linspace(0.0, t, n + 1)
    pdf = np.exp(log_norm - (df + 1) / 2 * np.log1p(xs ** 2 / df))
    h = t / n
    return 0.5 + h / 3 * (pdf[0] + pdf[-1] + 4 * pdf[1:-1:2].sum() + 2 * pdf[2:-1:2].sum())

  lo, hi = 0.0, 700.0
  for _ in range(60):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if cdf(mid) < 0.975 else (lo, mid)
  return (lo + hi) / 2


def mean_ci_over_seeds(values: Sequence[float], non_negative: bool = False) -> dict:
  """Mean and Student-t 95% CI of per-seed values, the seed being the unit of replication
  (non-finite seeds are counted, not averaged; one finite seed: an infinite CI); with
  `non_negative` (losses) the CI's lower end is clipped at 0."""
  values = np.asarray(values, np.float64)
  finite = values[np.isfinite(values)]
  entry = {"per_seed": [float(v) for v in values], "num_seeds": int(values.size),
           "non_finite_seeds": int(values.size - finite.size)}
  if finite.size == 0:
    return dict(entry, mean=math.nan, ci95_low=math.nan, ci95_high=math.nan)
  mean = float(finite.mean())
  half = half_width(finite, t_quantile_975(finite.size - 1)) if finite.size > 1 else math.inf
  low = max(mean - half, 0.0) if non_negative and np.all(finite >= 0) else mean - half
  return dict(entry, mean=mean, ci95_low=low, ci95_high=mean + half)


def paired_difference(values, reference) -> dict:
  """Mean and normal-approximation 95% CI of the paired differences values - reference (matched
  by index, e.g. the same test problems; pairs with a non-finite value are counted, not averaged;
  one finite pair: an infinite CI)."""
  diff = np.asarray(values, np.float64) - np.asarray(reference, np.float64)
  finite = diff[np.isfinite(diff)]
  entry = {"num_pairs": int(diff.size), "non_finite_pairs": int(diff.size - finite.size)}
  if finite.size == 0:
    return dict(entry, mean=math.nan, ci95_low=math.nan, ci95_high=math.nan)
  mean = float(finite.mean())
  half = float(half_width(finite)) if finite.size > 1 else math.inf
  return dict(entry, mean=mean, ci95_low=mean - half, ci95_high=mean + half)
