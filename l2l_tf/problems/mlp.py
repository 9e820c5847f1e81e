"""The paper's MNIST optimizee (Sec. 3.2): an MLP classifier trained on random minibatches.

f(theta) is the mean softmax cross-entropy of an MLP 784 -> 20 (sigmoid) -> 10 on a minibatch of
128 images drawn uniformly with replacement at every step; every instance has its own minibatch
stream and its own random theta_0. Hidden layers and activation are options (paper Fig. 5, 6).
"""

import copy
from typing import Sequence

import numpy as np
import tensorflow as tf

from l2l_tf.problems import base
from l2l_tf import errors

ACTIVATIONS = {"sigmoid": tf.sigmoid, "relu": tf.nn.relu}
_GOLDEN = 0x9E3779B97F4A7C15


def _splitmix64(x: tf.Tensor) -> tf.Tensor:
  """A counter-based hash (SplitMix64 finaliser) on uint64: reproducible minibatch indices."""
  x = x + tf.constant(_GOLDEN, tf.uint64)
  x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(30, tf.uint64)))
  x = x * tf.constant(0xBF58476D1CE4E5B9, tf.uint64)
  x = tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(27, tf.uint64)))
  x = x * tf.constant(0x94D049BB133111EB, tf.uint64)
  return tf.bitwise.bitwise_xor(x, tf.bitwise.right_shift(x, tf.constant(31, tf.uint64)))


def minibatch_indices(keys: tf.Tensor, step, batch_size: int, num_examples: int) -> tf.Tensor:
  """[num, batch_size] indices drawn uniformly with replacement, a pure function of each
  instance's int64 key and the step (also used by the conv optimizee, `problems.conv`)."""
  key = tf.bitcast(keys, tf.uint64)[:, None]
  step = tf.cast(tf.cast(step, tf.int64), tf.uint64)
  j = tf.cast(tf.range(batch_size, dtype=tf.int64), tf.uint64)[None, :]
  mixed = _splitmix64(_splitmix64(tf.bitwise.bitwise_xor(key, _splitmix64(step))) + j)
  return tf.cast(mixed % tf.constant(num_examples, tf.uint64), tf.int32)


def stream_keys(num, seed) -> dict:
  """The instances of a minibatch problem: one 64-bit key per instance names its minibatch
  stream (`minibatch_indices`)."""
  return {"key": tf.random.stateless_uniform([num], seed=seed, minval=None, maxval=None,
                                             dtype=tf.int64)}


class MLPClassifier(base.Problem):
  """Cross-entropy of an MLP on minibatches of a fixed image set.

  Args:
    images: uint8 [N, D] (or [N, 28, 28]) pixels, scaled by 1/255 when used, or float [N, D].
    labels: int [N] class labels in [0, num_classes).
    hidden_sizes: hidden layer widths; () is multinomial logistic regression.
    activation: "sigmoid" (the paper's training optimizee) or "relu" (paper Fig. 5 right).
    batch_size: minibatch size (128 in the paper).
    init_stddev: theta_0 ~ N(0, init_stddev^2) for weights and biases (DeepMind's code: 0.01).
    num_classes: output units.
    name: the problem's name in configs ("mnist", "fashion_mnist", ...).
    data_config: how the data was obtained (recorded in `get_config`).
  """

  def __init__(self, images, labels, hidden_sizes: Sequence[int] = (20,),
               activation: str = "sigmoid", batch_size: int = 128, init_stddev: float = 0.01,
               num_classes: int = 10, name: str = "mlp", data_config=None):
    images = np.asarray(images)
    self.num_examples = images.shape[0]
    images = images.reshape(self.num_examples, -1)
    if len(labels) != self.num_examples or self.num_examples == 0:
      raise errors.ConfigError(f"{self.num_examples} images but {len(labels)} labels.")
    self._scale = 1.0 / 255.0 if images.dtype == np.uint8 else 1.0
    self.images = tf.constant(images)
    self.labels = tf.constant(np.asarray(labels, np.int32))
    self.input_size = images.shape[1]
    self.num_classes = int(num_classes)
    self.name = name
    self.data_config = dict(data_config or {})
    self._set(hidden_sizes, activation, batch_size, init_stddev)

  def _set(self, hidden_sizes, activation, batch_size, init_stddev):
    if activation not in ACTIVATIONS:
      raise errors.ConfigError(
          f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}.")
    if batch_size <= 0:
      raise errors.ConfigError(f"batch_size must be positive, got {batch_size}.")
    if any(int(h) <= 0 for h in hidden_sizes):
      raise errors.ConfigError(f"hidden_sizes must be positive, got {list(hidden_sizes)}.")
    self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
    self.activation = activation
    self.batch_size = int(batch_size)
    self.init_stddev = float(init_stddev)

  def variant(self, hidden_sizes, activation, batch_size, init_stddev) -> "MLPClassifier":
    """The same data with other settings, sharing this problem's image constants (the members of
    a problem family would otherwise each hold a copy of the data set)."""
    other = copy.copy(self)
    other._set(hidden_sizes, activation, batch_size, init_stddev)  # pylint: disable=protected-access
    return other

  @property
  def layer_sizes(self):
    return (self.input_size,) + self.hidden_sizes + (self.num_classes,)

  @property
  def param_names(self):
    names = []
    for layer in range(len(self.layer_sizes) - 1):
      names += [f"linear_{layer}/w", f"linear_{layer}/b"]
    return names

  def num_params(self) -> int:
    sizes = self.layer_sizes
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))

  def sample_instances(self, num, seed):
    return stream_keys(num, seed)

  def initial_params(self, instance, seed):
    num = tf.shape(instance["key"])[0]
    params = []
    sizes = self.layer_sizes
    for layer, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
      w_seed = base.fold_in(seed, 2 * layer)
      b_seed = base.fold_in(seed, 2 * layer + 1)
      params.append(self.init_stddev * tf.random.stateless_normal([num, fan_in, fan_out], w_seed))
      params.append(self.init_stddev * tf.random.stateless_normal([num, fan_out], b_seed))
    return params

  def minibatch_indices(self, instance, step) -> tf.Tensor:
    """[num, batch_size] example indices of `step`'s minibatch for every instance."""
    return minibatch_indices(instance["key"], step, self.batch_size, self.num_examples)

  def logits(self, params, inputs):
    """inputs [num, B, D] -> logits [num, B, classes] of every instance's MLP."""
    x = inputs
    act = ACTIVATIONS[self.activation]
    num_layers = len(params) // 2
    for layer in range(num_layers):
      w, b = params[2 * layer], params[2 * layer + 1]
      x = tf.matmul(x, w) + b[:, None, :]
      if layer < num_layers - 1:
        x = act(x)
    return x

  def loss(self, params, instance, step):
    idx = self.minibatch_indices(instance, step)
    dtype = params[0].dtype
    inputs = tf.cast(tf.gather(self.images, idx), dtype) * tf.constant(self._scale, dtype)
    labels = tf.gather(self.labels, idx)
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, self.logits(params, inputs))
    return tf.reduce_mean(xent, axis=-1)

  def get_config(self):
    return {"name": self.name, "hidden_sizes": list(self.hidden_sizes),
            "activation": self.activation, "batch_size": self.batch_size,
            "init_stddev": self.init_stddev, **self.data_config}
