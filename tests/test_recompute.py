"""Gradient checkpointing (`l2l_tf.meta.recompute`): the plain meta-loss and meta-gradient."""

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import meta, optimizers, problems
from l2l_tf.meta import recompute

# The checkpointed truncation loss is a drop-in for the trainer's own, compared here.
# pylint: disable=protected-access


def loss_and_meta_gradient(truncation_loss, variables, params, state, instance):
  """Meta-loss, final theta and meta-gradient of one truncation (graph mode: tf.gradients)."""

  @tf.function
  def run(params, state, instance):
    with tf.GradientTape() as tape:
      loss, final_params, _ = truncation_loss(params, state, instance, tf.constant(0))
    return loss, final_params, tape.gradient(loss, variables)

  return run(params, state, instance)


@pytest.mark.parametrize("chunk", [1, 2, 4])
def test_checkpointed_truncation_has_the_plain_meta_gradient(tmp_path, chunk):
  problem = problems.Quadratic(num_dims=3)
  optimizer = optimizers.CoordinatewiseLSTM(hidden_sizes=(4,), output_scale=0.1)
  config = meta.TrainConfig(num_epochs=1, horizon=4, truncation=4, num_validation_problems=1)
  trainer = meta.MetaTrainer(problem, optimizer, config, tmp_path, log_fn=lambda message: None)
  instance, params = problem.sample(2, problems.split_seed(0, "train", 0))
  state = optimizer.initial_state(params)
  checkpointed = recompute.checkpointed_truncation_loss(problem, optimizer, 4, chunk)
  plain_loss, plain_params, plain_grads = loss_and_meta_gradient(
      trainer._truncation_loss, trainer.meta_vars, params, state, instance)
  loss, final_params, grads = loss_and_meta_gradient(checkpointed, trainer.meta_vars, params,
                                                     state, instance)
  np.testing.assert_allclose(loss.numpy(), plain_loss.numpy(), rtol=1e-5)
  np.testing.assert_allclose(final_params[0].numpy(), plain_params[0].numpy(), rtol=1e-5)
  assert all(g is not None for g in grads)
  assert max(float(tf.reduce_max(tf.abs(g))) for g in plain_grads) > 1e-4  # Not vacuous.
  for got, want in zip(grads, plain_grads):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-7)


def test_checkpoint_wrapper_gives_the_gradients_of_inputs_and_captured_variables():
  weights = tf.Variable(tf.random.stateless_normal([3, 2], seed=[1, 2]))

  def fn(x, y):
    z = tf.tanh(tf.matmul(x, weights)) * y
    return [z, tf.reduce_sum(z * z)]

  x = tf.random.stateless_normal([4, 3], seed=[3, 4])
  y = tf.random.stateless_normal([4, 2], seed=[5, 6])

  @tf.function
  def grads(wrap):
    with tf.GradientTape() as tape:
      tape.watch([x, y])
      z, total = wrap(fn)(x, y)
      loss = tf.reduce_sum(tf.sin(z)) + total
    return tape.gradient(loss, [x, y, weights])

  for got, want in zip(grads(recompute.checkpoint_control_deps), grads(lambda f: f)):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("chunk", [0, 3, -2])
def test_a_chunk_that_does_not_divide_the_truncation_is_refused(chunk):
  problem = problems.Quadratic(num_dims=3)
  optimizer = optimizers.CoordinatewiseLSTM(hidden_sizes=(4,))
  with pytest.raises(ValueError, match="must divide the truncation 4"):
    recompute.checkpointed_truncation_loss(problem, optimizer, 4, chunk)
