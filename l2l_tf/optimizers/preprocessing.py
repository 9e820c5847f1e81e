"""Gradient preprocessing for the learned optimizer (paper Sec. 2.1 and Appendix A).

Each preprocessing maps a flat gradient vector `g` of shape [n] to network inputs of shape [n, d]
(or [d, n] with `feature_major=True`, for `lstm.FeatureMajorLSTM`).
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


def make_preprocessing(config):
  """Builds a preprocessing from its config dict (or a name: "identity", "log_and_sign")."""
  if isinstance(config, str):
    config = {"name": config}
  config = dict(config)
  name = config.pop("name")
  if name == "identity":
    return Identity(**config)
  if name == "log_and_sign":
    return LogAndSign(**config)
  raise errors.ConfigError(f"Unknown preprocessing {name!r}; use 'identity' or 'log_and_sign'.")
