"""Task H: streams of examples of random 2-d quadratic functions (seed_systems.md Sec. 0.2, 1.2).

A function is f(x) = a . phi(x) with phi(x) = (x1^2, x2^2, x1 x2, x1, x2, 1), its six coefficients
a ~ U[-1, 1]^6 i.i.d. and the inputs x ~ U[-1, 1]^2 i.i.d. (the ranges are the design note's
reconstruction [R] of Hochreiter, Younger & Conwell 2001, whose exact ranges were not found). A
learner sees the examples (x_j, y_j = f(x_j)) one at a time, without noise.

Two consumers:

* the 2001 meta-LSTM (`l2l_tf_experiments.review.hochreiter2001`) reads a stream as a sequence;
* `OnlineRegression` wraps a stream as a `l2l_tf.problems.Problem` for the "reverse direction"
  (design note Sec. 1.6): an explicit regressor (linear in phi, or a 2-20-1 tanh MLP) trained
  online, one example per optimizee step, by any library optimizer (the L2L LSTM, SGD, ...).

Every draw is stateless: `TaskH.streams(split, ...)` seeds with `l2l_tf.problems.split_seed`, so
training, validation and test functions are disjoint by construction.
"""

from typing import Dict, List, Tuple

import numpy as np
import tensorflow as tf

from l2l_tf.problems import base

# phi_k(x) = x1^p * x2^q with (p, q) = EXPONENTS[k].
EXPONENTS = ((2, 0), (0, 2), (1, 1), (1, 0), (0, 1), (0, 0))
NUM_FEATURES = len(EXPONENTS)


def features(x: tf.Tensor) -> tf.Tensor:
  """phi(x) = (x1^2, x2^2, x1 x2, x1, x2, 1) of inputs [..., 2]; returns [..., 6]."""
  x1, x2 = x[..., 0], x[..., 1]
  return tf.stack([x1 * x1, x2 * x2, x1 * x2, x1, x2, tf.ones_like(x1)], axis=-1)


def uniform_moment(k: int, half_width: float = 1.0) -> float:
  """E[u^k] for u ~ U[-half_width, half_width]: half_width^k / (k + 1) for even k, else 0."""
  return 0.0 if k % 2 else half_width ** k / (k + 1)


def feature_second_moment(input_range: float = 1.0) -> np.ndarray:
  """Sigma_phi = E[phi(x) phi(x)^T] for x ~ U[-r, r]^2, exactly (6 x 6).

  The expected squared error of a linear-in-phi predictor w is (w - a)^T Sigma_phi (w - a).
  """
  sigma = np.zeros([NUM_FEATURES, NUM_FEATURES])
  for i, (p1, q1) in enumerate(EXPONENTS):
    for j, (p2, q2) in enumerate(EXPONENTS):
      sigma[i, j] = uniform_moment(p1 + p2, input_range) * uniform_moment(q1 + q2, input_range)
  return sigma


def probe_points(order: int = 8, input_range: float = 1.0) -> Tuple[np.ndarray, np.ndarray]:
  """A Gauss-Legendre product rule for the mean over x ~ U[-r, r]^2.

  `sum_i weights[i] * g(points[i])` equals E[g(x)] exactly for polynomials of degree <= 2 order - 1
  in each coordinate (so exactly for the squared error of any quadratic predictor when order >= 3),
  and is a very accurate quadrature for smooth predictors such as a tanh MLP.

  Returns:
    `(points [order^2, 2], weights [order^2])`, the weights summing to 1.
  """
  nodes, w = np.polynomial.legendre.leggauss(int(order))
  x1, x2 = np.meshgrid(nodes * input_range, nodes * input_range, indexing="ij")
  points = np.stack([x1.ravel(), x2.ravel()], axis=-1)
  weights = np.outer(w, w).ravel() / 4.0
  return points, weights


class TaskH:
  """Random 2-d quadratics f(x) = a . phi(x) presented as example streams.

  Coefficients a ~ U[-coefficient_range, coefficient_range]^6 and inputs
  x ~ U[-input_range, input_range]^2, all i.i.d. (defaults: both ranges 1, i.e. U[-1, 1]). Targets
  y = f(x) are noise-free. With the default ranges E[y] = 0 and Var[y] = 98/135 ~= 0.726
  (`target_variance`).
  """

  def __init__(self, coefficient_range: float = 1.0, input_range: float = 1.0,
               dtype=tf.float32):
    if not coefficient_range > 0 or not input_range > 0:
      raise ValueError(f"ranges must be positive, got coefficient_range={coefficient_range}, "
                       f"input_range={input_range}.")
    self.coefficient_range = float(coefficient_range)
    self.input_range = float(input_range)
    self.dtype = tf.as_dtype(dtype)

  @property
  def target_variance(self) -> float:
    """Var[y] over functions and inputs: (c^2 / 3) * trace(Sigma_phi) (a_k i.i.d., mean 0)."""
    return (self.coefficient_range ** 2 / 3.0) * float(
        np.trace(feature_second_moment(self.input_range)))

  def threshold(self, fraction: float = 0.05) -> float:
    """tau = fraction * Var[y], the MSE threshold of the "examples to learn" metric (Sec. 1.5)."""
    return float(fraction) * self.target_variance

  def sample(self, num: int, length: int, seed: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Draws `num` functions with `length` examples each.

    Args:
      num: number of functions (one stream each).
      length: examples per stream.
      seed: a stateless seed (shape [2] int); see `streams` for split-separated seeds.

    Returns:
      `{"a": [num, 6] coefficients, "x": [num, length, 2] inputs, "y": [num, length] targets}`.

    Raises:
      ValueError: num or length is not positive.
    """
    if int(num) <= 0 or int(length) <= 0:
      raise ValueError(f"num and length must be positive, got {num}, {length}.")
    c, r = self.coefficient_range, self.input_range
    a = tf.random.stateless_uniform([num, NUM_FEATURES], seed=base.fold_in(seed, 0),
                                    minval=-c, maxval=c, dtype=self.dtype)
    x = tf.random.stateless_uniform([num, length, 2], seed=base.fold_in(seed, 1),
                                    minval=-r, maxval=r, dtype=self.dtype)
    y = tf.einsum("nlk,nk->nl", features(x), a)
    return {"a": a, "x": x, "y": y}

  def streams(self, split: str, num: int, length: int, seed: int = 0,
              index: int = 0) -> Dict[str, tf.Tensor]:
    """`sample` with the seed `split_seed(seed, split, index)`: disjoint train/valid/test draws."""
    return self.sample(num, length, base.split_seed(seed, split, index))

  def get_config(self) -> dict:
    return {"coefficient_range": self.coefficient_range, "input_range": self.input_range}


class OnlineRegression(base.Problem):
  """The reverse direction on task H: a regressor trained online, one example per step.

  Instance = one stream of task H (`TaskH.sample`). Optimizee step t sees example t only:

      loss(theta_t, instance, t) = (g(x_t; theta_t) - y_t)^2,

  so the library's trajectory (theta_{t+1} = theta_t + update(grad of that loss)) is online
  learning, and its loss at step t is the prequential error: the error on example t of the
  regressor trained on examples 0..t-1. Summed over t it is the 2001 meta-objective, which the
  library's `MetaTrainer` (paper Eq. 3 with w_t = 1) then minimises.

  Models:
    "linear": g(x) = w . phi(x) on the true features (the oracle-feature learner; with SGD it is
      the LMS rule); theta_0 = 0.
    "mlp": g(x) = w2 . tanh(W1 x + b1) + b2, 2-hidden_size-1; weights ~ N(0, 1 / fan_in), biases 0.

  Args:
    model: "linear" or "mlp".
    num_examples: examples per stream; `loss` may be called for steps 0..num_examples - 1, so a
      run of T optimizee steps (which also evaluates f(theta_T)) needs num_examples >= T + 1.
    hidden_size: hidden units of the MLP.
    task: the function distribution (default `TaskH()`).
    probe_order: order of the Gauss-Legendre rule of `probe_mse`.
  """

  name = "task_h_online"

  def __init__(self, model: str = "mlp", num_examples: int = 101, hidden_size: int = 20,
               task: TaskH = None, probe_order: int = 8):
    if model not in ("linear", "mlp"):
      raise ValueError(f"model must be 'linear' or 'mlp', got {model!r}.")
    if int(num_examples) <= 0 or int(hidden_size) <= 0:
      raise ValueError(f"num_examples and hidden_size must be positive, got {num_examples}, "
                       f"{hidden_size}.")
    self.model = model
    self.num_examples = int(num_examples)
    self.hidden_size = int(hidden_size)
    self.task = task or TaskH()
    self.dtype = self.task.dtype
    self.probe_order = int(probe_order)
    points, weights = probe_points(self.probe_order, self.task.input_range)
    self.probes = tf.constant(points, self.dtype)
    self.probe_weights = tf.constant(weights, self.dtype)

  @property
  def param_names(self) -> List[str]:
    if self.model == "linear":
      return ["linear/w"]
    return ["hidden/w", "hidden/b", "output/w", "output/b"]

  def num_parameters(self) -> int:
    """Parameters per regressor: 6 (linear) or 4 h + 1 (2-h-1 MLP; 81 for h = 20)."""
    return NUM_FEATURES if self.model == "linear" else 4 * self.hidden_size + 1

  def sample_instances(self, num, seed):
    return self.task.sample(num, self.num_examples, seed)

  def initial_params(self, instance, seed):
    num = tf.shape(instance["y"])[0]
    if self.model == "linear":
      return [tf.zeros([num, NUM_FEATURES], self.dtype)]
    h = self.hidden_size
    w1 = tf.random.stateless_normal([num, 2, h], seed=base.fold_in(seed, 0), dtype=self.dtype,
                                    stddev=2.0 ** -0.5)
    w2 = tf.random.stateless_normal([num, h], seed=base.fold_in(seed, 1), dtype=self.dtype,
                                    stddev=h ** -0.5)
    return [w1, tf.zeros([num, h], self.dtype), w2, tf.zeros([num], self.dtype)]

  def predict(self, params, x: tf.Tensor) -> tf.Tensor:
    """g(x; theta) for inputs x [num, P, 2] (P inputs per instance); returns [num, P]."""
    if self.model == "linear":
      (w,) = params
      return tf.einsum("npk,nk->np", features(x), w)
    w1, b1, w2, b2 = params
    hidden = tf.tanh(tf.einsum("npd,ndh->nph", x, w1) + b1[:, None, :])
    return tf.einsum("nph,nh->np", hidden, w2) + b2[:, None]

  def loss(self, params, instance, step):
    """Squared error on example `step` of each instance's stream, shape [num]."""
    x = tf.gather(instance["x"], step, axis=1)[:, None, :]
    y = tf.gather(instance["y"], step, axis=1)
    return tf.square(self.predict(params, x)[:, 0] - y)

  def probe_mse(self, params, instance) -> tf.Tensor:
    """E_x[(g(x; theta) - f(x))^2] per instance [num], by the Gauss-Legendre probe rule."""
    num = tf.shape(instance["a"])[0]
    x = tf.tile(self.probes[None], [num, 1, 1])
    target = tf.einsum("pk,nk->np", features(self.probes), instance["a"])
    return tf.reduce_sum(tf.square(self.predict(params, x) - target) * self.probe_weights, -1)

  def get_config(self):
    return {"name": self.name, "model": self.model, "num_examples": self.num_examples,
            "hidden_size": self.hidden_size, "task": self.task.get_config(),
            "probe_order": self.probe_order}
