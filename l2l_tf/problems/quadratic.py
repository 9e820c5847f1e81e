"""Quadratic optimizees (paper Sec. 3.1) and the 1-d x^2 of DeepMind's convergence test."""


import tensorflow as tf

from l2l_tf.problems import base
from l2l_tf import errors


class Quadratic(base.Problem):
  """f(theta) = ||W theta - y||^2 with theta in R^d (paper Sec. 3.1, Fig. 4 left).

  `family="paper"`: W (d x d) and y (d) i.i.d. standard Gaussian, one function per instance, the
  loss the plain sum of squares.
  `family="deepmind"`: DeepMind's code (`problems.quadratic`): W, y ~ U[0, 1), and each instance is
  the mean over `num_averaged` (128) such functions of one shared theta.

  theta_0 ~ N(0, init_stddev^2) per coordinate (DeepMind's code uses 0.01; the paper says only
  "i.i.d. Gaussian").
  """

  name = "quadratic"
  param_names = ["theta"]

  def __init__(self, num_dims: int = 10, family: str = "paper", num_averaged: int = 128,
               init_stddev: float = 0.01, dtype=tf.float32):
    if num_dims <= 0:
      raise errors.ConfigError(f"num_dims must be positive, got {num_dims}.")
    if family not in ("paper", "deepmind"):
      raise errors.ConfigError(f"family must be 'paper' or 'deepmind', got {family!r}.")
    self.num_dims = int(num_dims)
    self.family = family
    self.num_averaged = int(num_averaged)
    self.init_stddev = float(init_stddev)
    self.dtype = tf.as_dtype(dtype)


  def sample_instances(self, num, seed):
    d = self.num_dims
    if self.family == "paper":
      shape = [num]
      draw = tf.random.stateless_normal
    else:
      shape = [num, self.num_averaged]
      draw = tf.random.stateless_uniform
    w = draw(shape + [d, d], seed=base.fold_in(seed, 0), dtype=self.dtype)
    y = draw(shape + [d], seed=base.fold_in(seed, 1), dtype=self.dtype)
    return {"w": w, "y": y}

  def initial_params(self, instance, seed):
    num = tf.shape(instance["y"])[0]
    return [self.init_stddev * tf.random.stateless_normal(
        [num, self.num_dims], seed=seed, dtype=self.dtype)]

  def loss(self, params, instance, step=None):
    (theta,) = params
    w, y = instance["w"], instance["y"]
    if self.family == "paper":
      residual = tf.linalg.matvec(w, theta) - y
      return tf.reduce_sum(tf.square(residual), axis=-1)
    residual = tf.linalg.matvec(w, theta[:, None, :]) - y
    return tf.reduce_mean(tf.reduce_sum(tf.square(residual), axis=-1), axis=-1)

  def get_config(self):
    return {"name": self.name, "num_dims": self.num_dims, "family": self.family,
            "num_averaged": self.num_averaged, "init_stddev": self.init_stddev}


class Square(base.Problem):
  """f(x) = x^2 for a scalar x starting at `init` (DeepMind's `simple` problem)."""

  name = "square"
  param_names = ["x"]

  def __init__(self, init: float = 1.0, dtype=tf.float32):
    self.init = float(init)
    self.dtype = tf.as_dtype(dtype)


  def sample_instances(self, num, seed):
    return {"count": tf.zeros([num], self.dtype)}

  def initial_params(self, instance, seed):
    return [tf.fill(tf.shape(instance["count"]), tf.constant(self.init, self.dtype))]

  def loss(self, params, instance, step=None):
    return tf.square(params[0])

  def get_config(self):
    return {"name": self.name, "init": self.init}
