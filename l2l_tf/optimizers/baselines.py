"""Hand-designed baselines in the common interface, with the Torch7 `optim` defaults the paper used.

Hyperparameters are non-trainable `tf.Variable`s so that one compiled evaluation loop serves a whole
learning-rate search (assign, do not retrace). `step` only reads them.
"""

from typing import Optional

import tensorflow as tf

from l2l_tf.optimizers import base
from l2l_tf import errors


class _Baseline(base.Optimizer):
  """Shared plumbing: a learning rate variable and config round trip."""

  _name = ""

  def __init__(self, learning_rate: float, name: Optional[str] = None):
    super().__init__(name=name or self._name)
    if not learning_rate > 0:
      raise errors.ConfigError(
          f"{type(self).__name__}: learning_rate must be > 0, got {learning_rate}.")
    with self.name_scope:
      self.learning_rate = tf.Variable(float(learning_rate), trainable=False, dtype=tf.float64,
                                       name="learning_rate")

  def _lr(self, dtype):
    return tf.cast(self.learning_rate, dtype)

  def initial_state(self, params):
    """One zero slot per parameter tensor (RMSprop's mean square, NAG's velocity)."""
    return [tf.zeros_like(p) for p in params]

  def get_config(self) -> dict:
    config = {"name": self._name, "learning_rate": float(self.learning_rate.numpy())}
    config.update(self._extra_config())
    return config

  def _extra_config(self) -> dict:
    return {}


class SGD(_Baseline):
  """theta <- theta - lr * g (Torch7 `optim.sgd` without momentum; default lr 1e-3)."""

  _name = "sgd"

  def __init__(self, learning_rate: float = 1e-3, name: Optional[str] = None):
    super().__init__(learning_rate, name)

  def initial_state(self, params):
    return ()

  def step(self, grads, state):
    return [-self._lr(g.dtype) * g for g in grads], state


class RMSprop(_Baseline):
  """Torch7 `optim.rmsprop`: m <- a m + (1 - a) g^2; theta <- theta - lr g / (sqrt(m) + eps)."""

  _name = "rmsprop"

  def __init__(self, learning_rate: float = 1e-2, alpha: float = 0.99, epsilon: float = 1e-8,
               name: Optional[str] = None):
    super().__init__(learning_rate, name)
    self.alpha = float(alpha)
    self.epsilon = float(epsilon)

  def step(self, grads, state):
    updates, new_state = [], []
    for g, m in zip(grads, state):
      m = self.alpha * m + (1.0 - self.alpha) * tf.square(g)
      updates.append(-self._lr(g.dtype) * g / (tf.sqrt(m) + self.epsilon))
      new_state.append(m)
    return updates, new_state

  def _extra_config(self):
    return {"alpha": self.alpha, "epsilon": self.epsilon}


class Adam(_Baseline):
  """Torch7 `optim.adam` (Kingma & Ba): bias-corrected step size lr sqrt(1 - b2^t) / (1 - b1^t)."""

  _name = "adam"

  def __init__(self, learning_rate: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
               epsilon: float = 1e-8, name: Optional[str] = None):
    super().__init__(learning_rate, name)
    self.beta1 = float(beta1)
    self.beta2 = float(beta2)
    self.epsilon = float(epsilon)

  def initial_state(self, params):
    dtype = params[0].dtype if params else tf.float32
    return {"t": tf.zeros([], dtype),
            "m": [tf.zeros_like(p) for p in params],
            "v": [tf.zeros_like(p) for p in params]}

  def step(self, grads, state):
    t = state["t"] + 1.0
    beta1, beta2 = tf.constant(self.beta1, t.dtype), tf.constant(self.beta2, t.dtype)
    step_size = (self._lr(t.dtype) * tf.sqrt(1.0 - tf.pow(beta2, t)) / (1.0 - tf.pow(beta1, t)))
    updates, ms, vs = [], [], []
    for g, m, v in zip(grads, state["m"], state["v"]):
      m = self.beta1 * m + (1.0 - self.beta1) * g
      v = self.beta2 * v + (1.0 - self.beta2) * tf.square(g)
      updates.append(-tf.cast(step_size, g.dtype) * m / (tf.sqrt(v) + self.epsilon))
      ms.append(m)
      vs.append(v)
    return updates, {"t": t, "m": ms, "v": vs}

  def _extra_config(self):
    return {"beta1": self.beta1, "beta2": self.beta2, "epsilon": self.epsilon}


class NAG(_Baseline):
  """Nesterov's accelerated gradient, Torch7 `optim.nag` (Sutskever et al. 2013), momentum 0.9.

  Torch's `nag` moves x by mu*v before evaluating the gradient there, then sets
  v <- mu v - lr g and x <- x + v. In a pure step(grads) interface the gradient is taken at the
  current parameters, so we carry the look-ahead point p = x + mu v as the parameters:

      v <- mu v - lr g(p),    p <- p + mu v_new - lr g(p)

  which visits exactly the points at which Torch evaluates f and its gradient (tested).
  """

  _name = "nag"

  def __init__(self, learning_rate: float = 1e-3, momentum: float = 0.9,
               name: Optional[str] = None):
    super().__init__(learning_rate, name)
    self.momentum = float(momentum)

  def step(self, grads, state):
    updates, velocities = [], []
    for g, v in zip(grads, state):
      lr = self._lr(g.dtype)
      v = self.momentum * v - lr * g
      updates.append(self.momentum * v - lr * g)
      velocities.append(v)
    return updates, velocities

  def _extra_config(self):
    return {"momentum": self.momentum}


BASELINES = {"sgd": SGD, "rmsprop": RMSprop, "adam": Adam, "nag": NAG}
# The paper's legend names.
LEGEND_NAMES = {"sgd": "SGD", "rmsprop": "RMSprop", "adam": "Adam", "nag": "NAG"}
