"""Coordinatewise learned optimizers whose memory is a fast weight matrix, not LSTM cells (the
review's comparison; seed_systems.md sections 3 and 7).

Both keep the paper's structure: one small network, shared by every coordinate of the optimizee
(the meta-parameters), runs on each coordinate's preprocessed gradient, and each coordinate keeps
its own state. What differs is the state.

`FastWeightOptimizer` (Schmidhuber 1992, the fast-weight programmer): per coordinate a fast matrix
W [d, d]. A slow net (one tanh layer) maps the coordinate's inputs (the preprocessed gradient and
the previous read) to a key k, a value v, a query q and a write strength beta; keys and queries
pass through a softmax (so a read never grows with the number of writes, Schlag et al. 2021).

* `rule="additive"` (1992): W <- W + beta * v phi(k)^T.
* `rule="delta"` (Schlag, Irie & Schmidhuber 2021): W <- W + beta * (v - W phi(k)) phi(k)^T, which
  replaces the value stored under a key instead of adding to it.

The read o = W phi(q) (after the write) is the next step's extra input; the update is a linear
readout of it, times `output_scale`.

`SelfReferentialOptimizer` (Schmidhuber 1993 in the form of Irie et al. 2022, the modern SRWM):
per coordinate one matrix W [1 + 2d + 4, d] that maps phi(x) (x: a linear projection of the inputs,
phi a softmax) to the update y, its own query q and key k, and four write strengths (one per block
of its rows: y, q, k, beta); it then modifies itself with the delta rule
W <- W + sigma(beta_rows) * (W phi(q) - W phi(k)) phi(k)^T. The initial W is a meta-parameter, the
same for every coordinate; the state is each coordinate's change of it (zero at the start, so the
meta-gradient reaches the initial matrix through every step).

With `init="sign_descent"` (issue 19) the SRWM starts as sign descent instead of a random rule.
With the default `init="normal"` (every meta-parameter drawn at random), phi sums to 1, so the
first update is a convex combination of row 0 of W0: nearly the same value, of one sign, for every
coordinate whatever its gradient. On MNIST that untrained rule keeps the loss above ln 10 for 80
steps, and meta-training from it learns the rule that does nothing (training/README.md). The
`sign_descent` start instead ties two features of phi to the sign input s (the preprocessing's
last output: sgn(g) for 'log_and_sign'): column 0 of the input projection is +gain * s, column 1
is -gain * s (their other weights and biases zero); row 0 of W0 is zero but -1 on feature 0 and +1
on feature 1, so y = phi_1 - phi_0 = -sgn(g) * (a value in (0, 1)); the four write-strength rows
of W0 are shifted by -3 (sigmoid about 0.05: little self-modification at the start). Every other
meta-parameter is drawn as in `normal`.

Both are coordinatewise: a coordinate's update depends on its own gradients only.
"""

from typing import Optional

import numpy as np
import sonnet as snt
import tensorflow as tf

from l2l_tf.optimizers import base
from l2l_tf.optimizers import lstm as lstm_lib
from l2l_tf.optimizers import preprocessing as preprocessing_lib
from l2l_tf import errors

RULES = ("additive", "delta")


def _stateless_preprocessing(config):
  pre = preprocessing_lib.make_preprocessing(config)
  if getattr(pre, "state_size", 0):
    raise errors.ConfigError(
        f"preprocessing {pre.get_config()['name']!r} keeps a state; the fast-weight optimizers "
        "take a stateless one: 'log_and_sign' or 'identity'.")
  return pre


def _weight(shape, seed, dtype, name, scale=None):
  fan_in = shape[0]
  init = snt.initializers.TruncatedNormal(stddev=scale or 1.0 / np.sqrt(fan_in), seed=seed)
  return tf.Variable(init(shape, dtype), name=name)


def _bias(size, dtype, name):
  return tf.Variable(tf.zeros([size], dtype), name=name)


def _softmax_rows(x):
  return tf.nn.softmax(x, axis=-1)


class FastWeightOptimizer(base.Optimizer):
  """A fast-weight programmer per coordinate (see the module docstring).

  Args:
    fast_size: d, the fast matrix is d x d per coordinate (state: d * d + d floats).
    hidden_size: width of the slow net's tanh layer.
    rule: "additive" or "delta".
    preprocessing: a stateless preprocessing config ("log_and_sign", "identity").
    output_scale: multiplies the proposed update (as the LSTM's).
    seed, dtype, name: as for `CoordinatewiseLSTM`.
  """

  def __init__(self, fast_size: int = 8, hidden_size: int = 20, rule: str = "delta",
               preprocessing="log_and_sign", output_scale: float = 0.1, seed: int = 0,
               dtype=tf.float32, name: Optional[str] = None):
    super().__init__(name=name or "fast_weights")
    if rule not in RULES:
      raise errors.ConfigError(f"rule must be one of {', '.join(RULES)}, got {rule!r}.")
    if fast_size < 1 or hidden_size < 1:
      raise errors.ConfigError(f"fast_size and hidden_size must be positive, got {fast_size} "
                               f"and {hidden_size}.")
    self.fast_size, self.hidden_size, self.rule = int(fast_size), int(hidden_size), rule
    self.preprocessing = _stateless_preprocessing(preprocessing)
    self.output_scale = float(output_scale)
    self.seed = int(seed)
    self.dtype = tf.as_dtype(dtype)
    d = self.fast_size
    num_inputs = self.preprocessing.output_size + d
    with self.name_scope:
      self.slow_w1 = _weight([num_inputs, self.hidden_size], seed, self.dtype, "slow_w1")
      self.slow_b1 = _bias(self.hidden_size, self.dtype, "slow_b1")
      self.slow_w2 = _weight([self.hidden_size, 3 * d + 1], seed + 1, self.dtype, "slow_w2")
      self.slow_b2 = _bias(3 * d + 1, self.dtype, "slow_b2")
      self.read_w = _weight([d, 1], seed + 2, self.dtype, "read_w")
      self.read_b = _bias(1, self.dtype, "read_b")

  def initial_state(self, params):
    n = base.num_coordinates(params)
    d = self.fast_size
    return {"fast": tf.zeros([n, d, d], self.dtype), "read": tf.zeros([n, d], self.dtype)}

  def step(self, grads, state):
    g = base.flatten_coordinates(grads)
    d = self.fast_size
    x = tf.concat([self.preprocessing(tf.cast(g, self.dtype)), state["read"]], axis=1)
    hidden = tf.tanh(tf.matmul(x, self.slow_w1) + self.slow_b1)
    out = tf.matmul(hidden, self.slow_w2) + self.slow_b2
    key = _softmax_rows(out[:, :d])
    value = out[:, d:2 * d]
    query = _softmax_rows(out[:, 2 * d:3 * d])
    beta = tf.sigmoid(out[:, 3 * d:])  # [n, 1]
    fast = state["fast"]
    if self.rule == "delta":
      value = value - tf.einsum("nij,nj->ni", fast, key)
    fast = fast + beta[:, :, None] * value[:, :, None] * key[:, None, :]
    read = tf.einsum("nij,nj->ni", fast, query)
    update = self.output_scale * (tf.matmul(read, self.read_w) + self.read_b)[:, 0]
    update = lstm_lib.propagate_non_finite(tf.cast(update, g.dtype), g)
    return base.unflatten_coordinates(update, grads), {"fast": fast, "read": read}

  def get_config(self) -> dict:
    return {"name": "fast_weights", "fast_size": self.fast_size,
            "hidden_size": self.hidden_size, "rule": self.rule,
            "preprocessing": self.preprocessing.get_config(),
            "output_scale": self.output_scale, "seed": self.seed, "dtype": self.dtype.name}


SRWM_INITS = ("normal", "sign_descent")


class SelfReferentialOptimizer(base.Optimizer):
  """A self-referential weight matrix per coordinate (see the module docstring).

  Args:
    fast_size: d, the matrix is (1 + 2d + 4) x d per coordinate.
    preprocessing: a stateless preprocessing config.
    output_scale: multiplies the proposed update.
    init: "normal" (every meta-parameter random) or "sign_descent" (starts as sign descent; the
      module docstring). Needs d >= 2.
    seed, dtype, name: as for `CoordinatewiseLSTM`.
  """

  NUM_BLOCKS = 4  # Rows producing y, q, k and the write strengths.
  SIGN_GAIN = 3.0  # sign_descent: the sign input's weight onto features 0 and 1.
  STRENGTH_SHIFT = -3.0  # sign_descent: added to the write-strength rows of W0.

  def __init__(self, fast_size: int = 8, preprocessing="log_and_sign",
               output_scale: float = 0.1, init: str = "normal", seed: int = 0,
               dtype=tf.float32, name: Optional[str] = None):
    super().__init__(name=name or "srwm")
    if fast_size < 1:
      raise errors.ConfigError(f"fast_size must be positive, got {fast_size}.")
    if init not in SRWM_INITS:
      raise errors.ConfigError(f"init must be one of {', '.join(SRWM_INITS)}, got {init!r}.")
    if init == "sign_descent" and fast_size < 2:
      raise errors.ConfigError(f"init='sign_descent' ties two features of phi to the sign "
                               f"input, so it needs fast_size >= 2; got {fast_size}.")
    self.init = init
    self.fast_size = int(fast_size)
    self.preprocessing = _stateless_preprocessing(preprocessing)
    self.output_scale = float(output_scale)
    self.seed = int(seed)
    self.dtype = tf.as_dtype(dtype)
    d = self.fast_size
    rows = 1 + 2 * d + self.NUM_BLOCKS
    num_inputs = self.preprocessing.output_size + 1  # And the previous update proposal.
    with self.name_scope:
      self.in_w = _weight([num_inputs, d], seed, self.dtype, "in_w")
      self.in_b = _bias(d, self.dtype, "in_b")
      # phi(x) sums to 1, so a row of W0 maps to outputs of that row's scale.
      self.initial_matrix = _weight([rows, d], seed + 1, self.dtype, "initial_matrix", scale=1.0)
    block = np.concatenate([np.zeros(1), np.ones(d), 2 * np.ones(d), 3 * np.ones(4)])
    self._row_block = tf.constant(block.astype(np.int32))
    if init == "sign_descent":
      self._start_as_sign_descent()

  def _start_as_sign_descent(self):
    sign_input = self.preprocessing.output_size - 1
    in_w = self.in_w.numpy()
    in_w[:, :2] = 0.0
    in_w[sign_input, 0], in_w[sign_input, 1] = self.SIGN_GAIN, -self.SIGN_GAIN
    self.in_w.assign(in_w)
    matrix = self.initial_matrix.numpy()
    matrix[0] = 0.0
    matrix[0, 0], matrix[0, 1] = -1.0, 1.0
    matrix[-self.NUM_BLOCKS:] += self.STRENGTH_SHIFT
    self.initial_matrix.assign(matrix)

  @property
  def num_rows(self) -> int:
    return 1 + 2 * self.fast_size + self.NUM_BLOCKS

  def initial_state(self, params):
    n = base.num_coordinates(params)
    return {"delta": tf.zeros([n, self.num_rows, self.fast_size], self.dtype),
            "proposal": tf.zeros([n, 1], self.dtype)}

  def step(self, grads, state):
    g = base.flatten_coordinates(grads)
    d = self.fast_size
    x = tf.concat([self.preprocessing(tf.cast(g, self.dtype)), state["proposal"]], axis=1)
    phi = _softmax_rows(tf.matmul(x, self.in_w) + self.in_b)  # [n, d]
    matrix = self.initial_matrix[None] + state["delta"]  # [n, rows, d]
    out = tf.einsum("nrj,nj->nr", matrix, phi)
    y = out[:, :1]
    query = _softmax_rows(out[:, 1:1 + d])
    key = _softmax_rows(out[:, 1 + d:1 + 2 * d])
    strengths = tf.sigmoid(out[:, 1 + 2 * d:])  # [n, 4]
    beta_rows = tf.gather(strengths, self._row_block, axis=1)  # [n, rows]
    v_new = tf.einsum("nrj,nj->nr", matrix, query)
    v_old = tf.einsum("nrj,nj->nr", matrix, key)
    delta = state["delta"] + (beta_rows * (v_new - v_old))[:, :, None] * key[:, None, :]
    update = lstm_lib.propagate_non_finite(tf.cast(self.output_scale * y[:, 0], g.dtype), g)
    return base.unflatten_coordinates(update, grads), {"delta": delta, "proposal": y}

  def get_config(self) -> dict:
    # `init` only when not the default, so the configs of runs from before it still match.
    return {"name": "srwm", "fast_size": self.fast_size,
            "preprocessing": self.preprocessing.get_config(),
            "output_scale": self.output_scale, "seed": self.seed, "dtype": self.dtype.name,
            **({"init": self.init} if self.init != "normal" else {})}
