"""Episodic Relative Entropy Policy Search (Peters, Muelling & Altun 2010; Deisenroth, Neumann &
Peters 2013, Sec. 2.4.2) over the parameters of a policy: the meta-learner of the step-size
controller (Daniel, Taylor & Nowozin 2016).

The search distribution is a Gaussian N(mu, Sigma). Given samples w_k from it and their returns
R_k, REPS finds the new distribution maximising the expected return subject to KL(new || sampled)
<= epsilon. Its solution weighs sample k by exp(R_k / lambda), where the temperature lambda
minimises the convex dual

    g(lambda) = lambda epsilon + lambda log( (1/N) sum_k exp(R_k / lambda) );

mu and Sigma are then fitted to the weighted samples (weighted maximum likelihood).
"""

import math

import numpy as np

from l2l_tf import errors


def dual(temperature: float, returns: np.ndarray, epsilon: float) -> float:
  """g(lambda) (computed stably: max R + lambda log mean exp((R - max R) / lambda))."""
  top = returns.max()
  return float(temperature * epsilon + top
               + temperature * math.log(np.mean(np.exp((returns - top) / temperature))))


def temperature(returns: np.ndarray, epsilon: float, iterations: int = 200) -> float:
  """The lambda > 0 minimising the dual: golden-section search on log lambda (g is convex in
  lambda, so unimodal in log lambda)."""
  spread = float(returns.max() - returns.min())
  if spread == 0.0:
    return math.inf  # Equal returns: every sample gets the same weight.
  lo, hi = math.log(spread * 1e-6), math.log(spread * 1e6)
  ratio = (math.sqrt(5.0) - 1.0) / 2.0
  g = lambda x: dual(math.exp(x), returns, epsilon)
  a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
  ga, gb = g(a), g(b)
  for _ in range(iterations):
    if ga < gb:
      hi, b, gb = b, a, ga
      a = hi - ratio * (hi - lo)
      ga = g(a)
    else:
      lo, a, ga = a, b, gb
      b = lo + ratio * (hi - lo)
      gb = g(b)
  return math.exp((lo + hi) / 2.0)


def update(samples: np.ndarray, returns: np.ndarray, epsilon: float, min_std: float = 0.0):
  """One REPS step: `(mean, cov, info)` of the new search distribution.

  Args:
    samples: [N, D] policy parameters drawn from the current distribution.
    returns: [N] their returns (higher is better); non-finite ones count as the worst.
    epsilon: the KL bound.
    min_std: a floor on the standard deviation of every direction (keeps searching).

  Returns:
    The weighted mean [D] and covariance [D, D]; info: the temperature, the KL of the sample
    weights from uniform (<= epsilon up to the search's tolerance) and the effective number of
    samples.
  """
  samples = np.asarray(samples, np.float64)
  returns = np.asarray(returns, np.float64)
  if samples.ndim != 2 or returns.shape != (samples.shape[0],) or samples.shape[0] < 2:
    raise errors.ConfigError(f"REPS needs samples [N, D] and returns [N] with N >= 2, got "
                             f"{samples.shape} and {returns.shape}.")
  if not epsilon > 0:
    raise errors.ConfigError(f"REPS' KL bound epsilon must be > 0, got {epsilon}.")
  finite = np.isfinite(returns)
  if not finite.any():
    raise errors.ConfigError("Every return is non-finite; nothing to learn from.")
  returns = np.where(finite, returns, returns[finite].min())
  lam = temperature(returns, epsilon)
  logits = np.zeros_like(returns) if math.isinf(lam) else (returns - returns.max()) / lam
  weights = np.exp(logits)
  weights /= weights.sum()
  mean = weights @ samples
  centred = samples - mean
  cov = (weights[:, None] * centred).T @ centred
  cov = cov / max(1.0 - float(np.sum(weights ** 2)), 1e-12)  # Unbiased weighted estimate.
  cov = 0.5 * (cov + cov.T) + np.eye(samples.shape[1]) * min_std ** 2
  n = samples.shape[0]
  kl = float(np.sum(weights * np.log(np.maximum(weights * n, 1e-300))))
  return mean, cov, {"temperature": lam, "kl": kl,
                     "effective_samples": float(1.0 / np.sum(weights ** 2))}
