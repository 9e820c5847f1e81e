"""Gradient preprocessing for the learned optimizer (paper Sec. 2.1 and Appendix A).

Each preprocessing maps a flat gradient vector `g` of shape [n] to network inputs of shape [n, d]
(or [d, n] with `feature_major=True`, for `lstm.FeatureMajorLSTM`). A stateful one
(`NormalizedMoments`, `state_size` > 0) also carries a per-coordinate state [n, state_size]
([state_size, n] feature-major) from step to step, kept in the optimizer's state.
"""

import math

import numpy as np
import tensorflow as tf

from l2l_tf import errors


class Identity:
  """x = s * g: the gradient itself, optionally rescaled by a constant (paper Sec. 2.1)."""

  def __init__(self, scale: float = 1.0):
    self.scale = float(scale)

  @property
  def output_size(self) -> int:
    return 1

  def __call__(self, g: tf.Tensor, feature_major: bool = False) -> tf.Tensor:
    return (self.scale * g)[None] if feature_major else (self.scale * g)[:, None]

  def get_config(self) -> dict:
    return {"name": "identity", "scale": self.scale}


class LogAndSign:
  """The paper's Appendix A preprocessing, with parameter p > 0 (p = 10 in all the paper's runs).

      g -> (log|g| / p, sgn(g))   if |g| >= exp(-p)
      g -> (-1, exp(p) * g)       otherwise

  With `clamped=True` it is instead the form of DeepMind's code (`preprocess.LogAndSign(k)`, used
  there with k = 5): (max(log(|g| + eps) / p, -1), clip(g * exp(p), -1, 1)). The two agree except
  for the float epsilon inside the log.
  """

  def __init__(self, p: float = 10.0, clamped: bool = False, scale: float = 1.0):
    if p <= 0:
      raise errors.ConfigError(f"LogAndSign needs p > 0, got p={p}.")
    self.p = float(p)
    self.clamped = bool(clamped)
    self.scale = float(scale)

  @property
  def output_size(self) -> int:
    return 2

  def __call__(self, g: tf.Tensor, feature_major: bool = False) -> tf.Tensor:
    g = self.scale * g
    p = tf.constant(self.p, g.dtype)
    exp_p = tf.constant(math.exp(self.p), g.dtype)
    abs_g = tf.abs(g)
    if self.clamped:
      eps = tf.constant(np.finfo(g.dtype.as_numpy_dtype).eps, g.dtype)
      log_part = tf.maximum(tf.math.log(abs_g + eps) / p, -1.0)
      sign_part = tf.clip_by_value(g * exp_p, -1.0, 1.0)
    else:
      threshold = tf.constant(math.exp(-self.p), g.dtype)
      large = abs_g >= threshold
      # The log is taken of a value that is never below the threshold, so it (and its gradient,
      # used with second derivatives) stays finite where the other branch is selected.
      log_part = tf.where(large, tf.math.log(tf.maximum(abs_g, threshold)) / p,
                          -tf.ones_like(g))
      sign_part = tf.where(large, tf.sign(g), exp_p * g)
    return tf.stack([log_part, sign_part], axis=0 if feature_major else -1)

  def get_config(self) -> dict:
    return {"name": "log_and_sign", "p": self.p, "clamped": self.clamped, "scale": self.scale}


class NormalizedMoments:
  """Scale-free inputs: the gradient and momenta at several timescales, each divided by the root
  of a running second moment (issue 14).

  With m_k = EMA_{beta_k}(g), v = EMA_{beta_2}(g^2) and their bias corrections m^_k, v^ (Adam's):

      x = (g, m^_1, ..., m^_K) / (sqrt(v^) + epsilon)

  The normalised gradient and momentum are RNNprop's inputs (Lv et al. 2017, "Learning gradient
  descent: better generalization and longer horizons"); momenta at several timescales are those
  of Wichrowska et al. 2017 ("Learned optimizers that scale and generalize"). Multiplying the
  objective by any c > 0 leaves x unchanged (up to epsilon), so the learned rule cannot key its
  step size to the loss scale it was trained on, the failure of the paper's LSTM on ReLU nets.

  The state per coordinate is (m_1, ..., m_K, v, t), t the number of steps taken.
  """

  def __init__(self, momentum_decays=(0.5, 0.9, 0.99), second_moment_decay: float = 0.999,
               epsilon: float = 1e-8):
    self.momentum_decays = tuple(float(b) for b in momentum_decays)
    self.second_moment_decay = float(second_moment_decay)
    self.epsilon = float(epsilon)
    if any(not 0 <= b < 1 for b in self.momentum_decays + (self.second_moment_decay,)):
      raise errors.ConfigError(f"NormalizedMoments decays must be in [0, 1), got "
                               f"{list(self.momentum_decays)} and {self.second_moment_decay}.")
    if not self.epsilon > 0:
      raise errors.ConfigError(f"NormalizedMoments needs epsilon > 0, got {self.epsilon}.")

  @property
  def output_size(self) -> int:
    return 1 + len(self.momentum_decays)

  @property
  def state_size(self) -> int:
    return len(self.momentum_decays) + 2

  def __call__(self, g: tf.Tensor, state: tf.Tensor, feature_major: bool = False):
    """Returns `(inputs, new_state)` for gradients g [n] and the state of the previous step."""
    axis = 0 if feature_major else 1
    parts = tf.unstack(state, axis=axis)
    momenta, v, t = parts[:-2], parts[-2], parts[-1] + 1.0
    decays = self.momentum_decays
    momenta = [b * m + (1.0 - b) * g for b, m in zip(decays, momenta)]
    b2 = self.second_moment_decay
    v = b2 * v + (1.0 - b2) * tf.square(g)
    denominator = tf.sqrt(v / (1.0 - tf.pow(b2, t))) + self.epsilon
    features = [g] + [m / (1.0 - tf.pow(b, t)) for b, m in zip(decays, momenta)]
    inputs = tf.stack([f / denominator for f in features], axis=axis)
    return inputs, tf.stack(momenta + [v, t], axis=axis)

  def get_config(self) -> dict:
    return {"name": "normalized_moments", "momentum_decays": list(self.momentum_decays),
            "second_moment_decay": self.second_moment_decay, "epsilon": self.epsilon}


PREPROCESSINGS = {"identity": Identity, "log_and_sign": LogAndSign,
                  "normalized_moments": NormalizedMoments}


def make_preprocessing(config):
  """Builds a preprocessing from its config dict (or a name, e.g. "log_and_sign")."""
  if isinstance(config, str):
    config = {"name": config}
  config = dict(config)
  name = config.pop("name")
  if name not in PREPROCESSINGS:
    raise errors.ConfigError(f"Unknown preprocessing {name!r}; use one of "
                             f"{', '.join(PREPROCESSINGS)}.")
  return PREPROCESSINGS[name](**config)
