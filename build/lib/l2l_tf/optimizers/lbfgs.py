"""L-BFGS with a fixed step size, in the common interface: what NTM-BFGS imitates (paper App. D).

The step function sees only gradients, so there is no line search: the update is
`-learning_rate * H_t g_t`, with H_t the L-BFGS inverse-Hessian estimate from the last `memory`
pairs s_k = theta_{k+1} - theta_k (the previous updates) and y_k = g_{k+1} - g_k, by the two-loop
recursion (Nocedal & Wright, Algorithm 7.4) with H_0 = (s^T y / y^T y) I. Pairs with
s^T y <= 1e-10 |s| |y| (no positive curvature) are skipped, keeping H positive definite. With
learning_rate 1 on a quadratic it is exact L-BFGS with unit steps.

Inner products are taken per problem instance: every tensor's leading axis indexes independent
instances (the library's convention), or, with `instance_axis=False`, all coordinates form one.
"""

from typing import Optional

import tensorflow as tf

from l2l_tf.optimizers import baselines
from l2l_tf import errors


class LBFGS(baselines._Baseline):  # pylint: disable=protected-access
  """Limited-memory BFGS with a tunable fixed step size (no line search)."""

  _name = "lbfgs"

  def __init__(self, learning_rate: float = 1.0, memory: int = 10, instance_axis: bool = True,
               name: Optional[str] = None):
    super().__init__(learning_rate, name)
    if memory <= 0:
      raise errors.ConfigError(f"LBFGS: memory must be positive, got {memory}.")
    self.memory = int(memory)
    self.instance_axis = bool(instance_axis)

  def _dot(self, a, b):
    """Per-instance inner products of two lists of tensors: shape [B] (or [1])."""
    total = 0.0
    for x, y in zip(a, b):
      prod = x * y
      if self.instance_axis:
        total += tf.reduce_sum(tf.reshape(prod, [tf.shape(prod)[0], -1]), axis=1)
      else:
        total += tf.reshape(tf.reduce_sum(prod), [1])
    return total

  def _scale(self, coef, tensors):
    """coef [B] times each tensor (broadcast over the non-instance axes)."""
    out = []
    for t in tensors:
      c = coef if self.instance_axis else coef[0]
      if self.instance_axis:
        c = tf.reshape(c, tf.concat([tf.shape(c), tf.ones([tf.rank(t) - 1], tf.int32)], 0))
      out.append(c * t)
    return out

  def initial_state(self, params):
    dtype = params[0].dtype if params else tf.float32
    zeros = lambda: [tf.zeros_like(p) for p in params]
    m = self.memory
    batch = tf.shape(params[0])[:1] if self.instance_axis else tf.constant([1])
    return {"s": [[tf.zeros_like(p) for p in params] for _ in range(m)],
            "y": [[tf.zeros_like(p) for p in params] for _ in range(m)],
            "valid": tf.zeros(tf.concat([[m], batch], 0), dtype),
            "prev_grads": zeros(), "prev_update": zeros(),
            "started": tf.zeros([], dtype)}

  def step(self, grads, state):
    m = self.memory
    # Store the newest pair (s, y) from the previous step, shifting out the oldest.
    s_new = state["prev_update"]
    y_new = [g - p for g, p in zip(grads, state["prev_grads"])]
    sy = self._dot(s_new, y_new)
    norms = tf.sqrt(self._dot(s_new, s_new) * self._dot(y_new, y_new))
    ok = tf.cast(tf.logical_and(sy > 1e-10 * norms, sy > 0), sy.dtype) * state["started"]
    s_hist = state["s"][1:] + [s_new]
    y_hist = state["y"][1:] + [y_new]
    valid = tf.concat([state["valid"][1:], ok[None]], axis=0)  # [m, B]

    # Two-loop recursion, newest pair first; invalid pairs contribute nothing.
    q = list(grads)
    alphas = [None] * m
    rhos = [None] * m
    for k in reversed(range(m)):
      sy_k = self._dot(s_hist[k], y_hist[k])
      rho = tf.where(valid[k] > 0, 1.0 / tf.where(valid[k] > 0, sy_k, tf.ones_like(sy_k)), 0.0)
      rhos[k] = rho
      alphas[k] = rho * self._dot(s_hist[k], q)
      q = [a - b for a, b in zip(q, self._scale(alphas[k], y_hist[k]))]
    # H_0 = gamma I with gamma from the newest valid pair (1 before any).
    gamma = tf.ones_like(sy)
    for k in range(m):
      yy = self._dot(y_hist[k], y_hist[k])
      cand = self._dot(s_hist[k], y_hist[k]) / tf.where(yy > 0, yy, tf.ones_like(yy))
      gamma = tf.where(valid[k] > 0, cand, gamma)
    r = self._scale(gamma, q)
    for k in range(m):
      beta = rhos[k] * self._dot(y_hist[k], r)
      r = [a + b for a, b in zip(r, self._scale(alphas[k] - beta, s_hist[k]))]
    updates = [-self._lr(g.dtype) * d for g, d in zip(grads, r)]
    new_state = {"s": s_hist, "y": y_hist, "valid": valid, "prev_grads": list(grads),
                 "prev_update": updates, "started": tf.ones_like(state["started"])}
    return updates, new_state

  def _extra_config(self):
    return {"memory": self.memory, "instance_axis": self.instance_axis}


baselines.BASELINES["lbfgs"] = LBFGS
baselines.LEGEND_NAMES["lbfgs"] = "L-BFGS"
