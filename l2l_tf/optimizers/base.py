"""The one interface every optimizer implements, learned or hand-designed.

An optimizer is a pair of pure functions over the whole list of parameter tensors (optax style):

    state = opt.initial_state(params)
    updates, state = opt.step(grads, state)
    params = [p + u for p, u in zip(params, updates)]

`step` never assigns a `tf.Variable`: the unrolled optimizee trajectory must stay differentiable with
respect to the optimizer's meta-parameters (its Sonnet variables), which `step` only reads.

Convention for meta-training and evaluation: every parameter tensor has a leading axis over
independent problem instances (the meta-batch). Coordinatewise optimizers ignore it; optimizers that
share information between coordinates reduce over the other axes only.
"""

import abc
from typing import Any, List, Sequence, Tuple

import sonnet as snt
import tensorflow as tf

State = Any  # A nest (tuple / dict / list) of tensors, as understood by `tf.nest`.


@snt.allow_empty_variables
class Optimizer(snt.Module, abc.ABC):
  """Base class: an update rule with optional meta-parameters (the module's variables)."""

  @abc.abstractmethod
  def initial_state(self, params: Sequence[tf.Tensor]) -> State:
    """Returns the optimizer state for a fresh optimizee run on `params`."""

  @abc.abstractmethod
  def step(self, grads: Sequence[tf.Tensor],
           state: State) -> Tuple[List[tf.Tensor], State]:
    """Maps gradients and state to additive parameter updates and the next state.

    Args:
      grads: one gradient tensor per parameter tensor, in the order of `initial_state`'s params.
      state: the state from `initial_state` or the previous `step`.

    Returns:
      `(updates, new_state)`: `updates[i]` has the shape and dtype of `grads[i]`; the new
      parameters are `params[i] + updates[i]`.
    """

  # Optimizers that also read the optimizee's loss (one value per instance) set this; they then
  # implement `step(grads, state, losses=...)` (`call_step` passes it). The learned update rules
  # of the paper see gradients only, and so does the Keras optimizer.
  uses_loss = False

  @property
  def is_learned(self) -> bool:
    """True for optimizers with meta-parameters (trainable variables)."""
    return bool(self.trainable_variables)

  def saved_module(self) -> "Optimizer":
    """What `save_optimizer` writes (config and meta-parameters): the optimizer itself, or for a
    view (another state layout of an optimizer, `lstm.FeatureMajorLSTM`) the viewed optimizer."""
    return self

  def get_config(self) -> dict:
    """A JSON-serialisable description from which `l2l_tf.optimizers.make_optimizer` rebuilds it."""
    raise NotImplementedError(
        f"{type(self).__name__} cannot be described as a config; it cannot be saved by "
        "l2l_tf.optimizers.save_optimizer.")


def call_step(optimizer: Optimizer, grads, state, losses=None):
  """`optimizer.step(grads, state)`, passing the optimizee's losses [num] to an optimizer that
  reads them (`uses_loss`; as a constant: the paper's first-order meta-gradient treats the
  optimizer's inputs as such)."""
  if getattr(optimizer, "uses_loss", False):
    if losses is None:
      raise ValueError(f"{type(optimizer).__name__} reads the optimizee's loss; pass losses.")
    return optimizer.step(grads, state, losses=tf.stop_gradient(losses))
  return optimizer.step(grads, state)


def flatten_coordinates(tensors: Sequence[tf.Tensor]) -> tf.Tensor:
  """Concatenates all coordinates of `tensors` into one vector (the coordinatewise batch)."""
  return tf.concat([tf.reshape(t, [-1]) for t in tensors], axis=0)


def unflatten_coordinates(flat: tf.Tensor,
                          like: Sequence[tf.Tensor]) -> List[tf.Tensor]:
  """Inverse of `flatten_coordinates`: splits `flat` into tensors shaped like `like`."""
  sizes = [tf.size(t) for t in like]
  pieces = tf.split(flat, sizes, axis=0)
  return [tf.reshape(p, tf.shape(t)) for p, t in zip(pieces, like)]


def num_coordinates(tensors: Sequence[tf.Tensor]) -> tf.Tensor:
  """The total number of scalar coordinates in `tensors` (a scalar int32 tensor)."""
  return tf.add_n([tf.size(t) for t in tensors])
