"""Optimizees as pure functions: sampling instances and initial parameters, and the loss.

Every tensor has a leading axis over `num` independent instances, so a meta-batch of problems (or a
whole test set) runs as one vectorised computation. `loss` returns one value per instance.
"""

import abc
from typing import Any, List, Sequence, Tuple

import tensorflow as tf

from l2l_tf import errors

Instance = Any  # A nest of tensors with leading axis [num]: the problem's constants (W, y, seeds).

# Seeds are pairs [seed, stream]; the stream separates training, validation and test problems.
SPLITS = {"train": 0, "valid": 1, "test": 2}


def split_seed(seed: int, split: str, index: int = 0) -> tf.Tensor:
  """A stateless-RNG seed for problem `index` of `split`; disjoint across splits."""
  if split not in SPLITS:
    raise errors.ConfigError(f"split must be one of {sorted(SPLITS)}, got {split!r}.")
  return tf.constant([int(seed), SPLITS[split] * (1 << 40) + int(index)], tf.int64)


def fold_in(seed: tf.Tensor, value) -> tf.Tensor:
  """Derives a new seed from `seed` and an integer (or integer tensor) `value`."""
  value = tf.cast(value, tf.int64)
  return tf.random.experimental.stateless_fold_in(seed, value)


class Problem(abc.ABC):
  """A distribution over optimizees f(theta; instance)."""

  name = "problem"

  @property
  @abc.abstractmethod
  def param_names(self) -> List[str]:
    """One name per parameter tensor (used to assign parameter groups to optimizer nets)."""

  @abc.abstractmethod
  def sample_instances(self, num: int, seed: tf.Tensor) -> Instance:
    """Draws `num` independent problem instances."""

  @abc.abstractmethod
  def initial_params(self, instance: Instance, seed: tf.Tensor) -> List[tf.Tensor]:
    """theta_0 for every instance: tensors with leading axis [num]."""

  @abc.abstractmethod
  def loss(self, params: Sequence[tf.Tensor], instance: Instance, step: tf.Tensor) -> tf.Tensor:
    """f(theta) per instance, shape [num]. `step` selects the minibatch of stochastic problems."""

  def sample(self, num: int, seed: tf.Tensor) -> Tuple[Instance, List[tf.Tensor]]:
    """Instances and their initial parameters from one seed."""
    instance = self.sample_instances(num, fold_in(seed, 0))
    return instance, self.initial_params(instance, fold_in(seed, 1))

  def get_config(self) -> dict:
    return {"name": self.name}
