"""Meta-training: the meta-gradient against finite differences, resume, non-finite steps."""

import json

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import meta, optimizers, problems


def small_setup(second_derivatives, truncation=2):
  problem = problems.Quadratic(num_dims=3, dtype=tf.float64, init_stddev=1.0)
  opt = optimizers.CoordinatewiseLSTM(hidden_sizes=(3,), seed=7, dtype=tf.float64,
                                      output_scale=0.1)
  config = meta.TrainConfig(num_epochs=1, horizon=truncation, truncation=truncation,
                            meta_batch_size=2, second_derivatives=second_derivatives,
                            num_validation_problems=2)
  return problem, opt, config


def meta_loss_and_grad(trainer, instance, params):
  with tf.GradientTape() as tape:
    loss, _, _ = trainer._truncation_loss(params, trainer.optimizer.initial_state(params),
                                          instance, tf.constant(0))
  return loss, tape.gradient(loss, trainer.meta_vars)


def finite_difference(fn, variables, eps=1e-6, picks=6, seed=0):
  """Central differences of fn() for `picks` random coordinates of each variable."""
  rng = np.random.default_rng(seed)
  result = []
  for v in variables:
    flat_size = int(np.prod(v.shape))
    for index in rng.choice(flat_size, size=min(picks, flat_size), replace=False):
      idx = np.unravel_index(index, v.shape)
      original = v.numpy()
      plus, minus = original.copy(), original.copy()
      plus[idx] += eps
      minus[idx] -= eps
      v.assign(plus)
      f_plus = float(fn())
      v.assign(minus)
      f_minus = float(fn())
      v.assign(original)
      result.append((v, idx, (f_plus - f_minus) / (2 * eps)))
  return result


def test_meta_gradient_with_second_derivatives_matches_finite_differences(tmp_path):
  problem, opt, config = small_setup(second_derivatives=True)
  trainer = meta.MetaTrainer(problem, opt, config, tmp_path)
  instance, params = problem.sample(2, problems.split_seed(0, "train"))
  _, grads = meta_loss_and_grad(trainer, instance, params)
  by_var = {id(v): g.numpy() for v, g in zip(trainer.meta_vars, grads)}
  checks = finite_difference(lambda: meta_loss_and_grad(trainer, instance, params)[0],
                             trainer.meta_vars)
  for v, idx, fd in checks:
    np.testing.assert_allclose(by_var[id(v)][idx], fd, rtol=1e-5, atol=1e-8)


def test_meta_gradient_without_second_derivatives_treats_gradients_as_constants(tmp_path):
  """d grad_t / d phi = 0 (paper Fig. 2): equals finite differences of the 2-step unroll in which
  the optimizer is fed the unperturbed run's gradients as constants."""
  problem, opt, config = small_setup(second_derivatives=False)
  trainer = meta.MetaTrainer(problem, opt, config, tmp_path)
  instance, params0 = problem.sample(2, problems.split_seed(0, "train"))
  _, grads = meta_loss_and_grad(trainer, instance, params0)

  # Record the gradients of the unperturbed 2-step trajectory.
  recorded = []
  params, state = params0, opt.initial_state(params0)
  for _ in range(2):
    with tf.GradientTape() as tape:
      tape.watch(params)
      loss = problem.loss(params, instance, 0)
    g = tape.gradient(loss, params)
    recorded.append(g)
    updates, state = opt.step(g, state)
    params = [p + u for p, u in zip(params, updates)]

  def frozen_gradient_loss():
    params, state = params0, opt.initial_state(params0)
    total = 0.0
    for t in range(2):
      updates, state = opt.step(recorded[t], state)
      params = [p + u for p, u in zip(params, updates)]
      total += tf.reduce_mean(problem.loss(params, instance, 0))
    return total

  by_var = {id(v): g.numpy() for v, g in zip(trainer.meta_vars, grads)}
  for v, idx, fd in finite_difference(frozen_gradient_loss, trainer.meta_vars):
    np.testing.assert_allclose(by_var[id(v)][idx], fd, rtol=1e-5, atol=1e-8)
  # ...and it differs from the full derivative, which the second-derivative path gives.
  problem2, opt2, config2 = small_setup(second_derivatives=True)
  trainer2 = meta.MetaTrainer(problem2, opt2, config2, tmp_path / "second")
  _, full = meta_loss_and_grad(trainer2, instance, params0)
  assert not np.allclose(np.concatenate([g.numpy().ravel() for g in grads]),
                         np.concatenate([g.numpy().ravel() for g in full]), rtol=1e-3)


def tiny_trainer(output_dir, num_epochs, **overrides):
  problem = problems.Quadratic(num_dims=4)
  opt = optimizers.CoordinatewiseLSTM(hidden_sizes=(5,), seed=3)
  settings = dict(num_epochs=num_epochs, horizon=10, truncation=5, meta_batch_size=4,
                  meta_learning_rate=1e-2, validation_every=3, num_validation_problems=8,
                  checkpoint_every=2)
  settings.update(overrides)
  return meta.MetaTrainer(problem, opt, meta.TrainConfig(**settings), output_dir,
                          log_fn=lambda m: None)


def weights(trainer):
  return [v.numpy().copy() for v in trainer.meta_vars]


def test_resume_after_interruption_matches_uninterrupted_run(tmp_path):
  tf.config.experimental.enable_op_determinism()
  straight = tiny_trainer(tmp_path / "straight", 9)
  straight.train(progress=False)

  interrupted = tiny_trainer(tmp_path / "resumed", 9)
  original_sample = interrupted.problem.sample
  calls = {"n": 0}

  def crash_at_epoch_7(num, seed):
    calls["n"] += 1
    if calls["n"] == 8:  # Epoch index 7: after the checkpoint at epoch 6, before the next one.
      raise KeyboardInterrupt
    return original_sample(num, seed)

  interrupted.problem.sample = crash_at_epoch_7
  with pytest.raises(KeyboardInterrupt):
    interrupted.train(progress=False)
  assert int(interrupted.epoch.numpy()) == 7

  resumed = tiny_trainer(tmp_path / "resumed", 9)
  assert resumed.resumed_from is not None and int(resumed.epoch.numpy()) == 6
  resumed.train(progress=False)
  for a, b in zip(weights(straight), weights(resumed)):
    np.testing.assert_array_equal(a, b)
  assert float(straight.best_score.numpy()) == float(resumed.best_score.numpy())
  exported = optimizers.load_optimizer(tmp_path / "resumed")
  assert len(exported.trainable_variables) == len(resumed.meta_vars)


def test_changed_settings_in_existing_run_are_refused(tmp_path):
  tiny_trainer(tmp_path, 2).train(progress=False)
  tiny_trainer(tmp_path, 4)  # More epochs: a resume, accepted.
  with pytest.raises(meta.TrainingError, match="different settings"):
    tiny_trainer(tmp_path, 4, meta_learning_rate=0.5)


def test_non_finite_meta_steps_are_skipped_then_stop_training(tmp_path):
  trainer = tiny_trainer(tmp_path, 5, max_consecutive_nonfinite=2)
  trainer.train(progress=False)  # A good checkpoint at epoch 5.
  before = weights(trainer)
  trainer.config.num_epochs = 10
  original_loss = trainer.problem.loss
  trainer.problem.loss = lambda params, instance, step: original_loss(params, instance, step) * np.nan
  trainer._meta_step = tf.function(trainer._meta_step_impl)
  with pytest.raises(meta.TrainingError, match="consecutive non-finite"):
    trainer.train(progress=False)
  for a, b in zip(before, weights(trainer)):
    np.testing.assert_array_equal(a, b)
  assert int(trainer.skipped_steps.numpy()) == 2
  # Every checkpoint written holds the last good meta-parameters.
  restored = tiny_trainer(tmp_path, 10)
  for a, b in zip(before, weights(restored)):
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("field,value,message", [
    ("horizon", 0, "horizon must be positive"),
    ("truncation", -1, "truncation must be positive"),
    ("truncation", 30, "does not divide"),
    ("meta_learning_rate", 0.0, "meta_learning_rate"),
    ("recompute_chunk", 3, "must divide --truncation=5"),
    ("recompute_chunk", -1, "must divide"),
])
def test_bad_settings_are_rejected(tmp_path, field, value, message):
  with pytest.raises(meta.TrainingError, match=message):
    tiny_trainer(tmp_path, 1, **{field: value})


def test_gradient_checkpointing_trains_to_the_same_meta_parameters(tmp_path):
  plain = tiny_trainer(tmp_path / "plain", 4)
  plain.train(progress=False)
  recomputed = tiny_trainer(tmp_path / "recomputed", 4, recompute_chunk=1)
  recomputed.train(progress=False)
  assert recomputed._truncation_loss != plain._truncation_loss  # pylint: disable=protected-access
  for a, b in zip(weights(plain), weights(recomputed)):
    np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6)
  # Checkpointing is not a setting of the run: a run can resume with it switched on or off.
  tiny_trainer(tmp_path / "plain", 6, recompute_chunk=5)
  with pytest.raises(meta.TrainingError, match="first-order only"):
    tiny_trainer(tmp_path / "x", 1, recompute_chunk=5, second_derivatives=True)


def test_validation_under_xla_gives_the_same_curve_and_resumes_either_way(tmp_path):
  plain = tiny_trainer(tmp_path / "plain", 3)
  xla = tiny_trainer(tmp_path / "xla", 3, validation_jit_compile=True)
  run = xla._validation_sets[0][2]  # pylint: disable=protected-access
  assert run is not plain._validation_sets[0][2]  # pylint: disable=protected-access
  curve = xla.validation_losses()
  assert curve.shape == (11,) and np.all(np.isfinite(curve))
  np.testing.assert_allclose(curve, plain.validation_losses(), rtol=1e-4)
  xla.train(progress=False)
  # An execution setting, not part of the run: it resumes with XLA switched off.
  resumed = tiny_trainer(tmp_path / "xla", 4)
  assert int(resumed.epoch.numpy()) == 3


def test_training_without_progress_bar_logs_each_validation(tmp_path):
  trainer = tiny_trainer(tmp_path / "run", 6)
  lines = []
  trainer.log = lines.append
  trainer.train(progress=False)
  epoch_lines = [line for line in lines if line.startswith("epoch ")]
  assert [line.split(":")[0] for line in epoch_lines] == ["epoch 3/6", "epoch 6/6"], lines
  best = float(trainer.best_score.numpy())
  assert f"best {best:.4g} (epoch {int(trainer.best_epoch.numpy())})" in epoch_lines[-1]


def test_meta_step_validation_and_diagnostics_trace_once(tmp_path):
  """New problems, epochs and truncation starts are new tensor values, not new signatures: over a
  whole run and further meta-steps each compiled function traces once."""
  trainer = tiny_trainer(tmp_path, 6)  # 6 epochs x 2 truncations; validations at 0, 3 and 6.
  trainer.train(progress=False)
  # pylint: disable-next=protected-access
  compiled = (trainer._meta_step, trainer._validation_sets[0][2], trainer._diagnostics_fn)
  for seed in range(3):
    instance, params = trainer.problem.sample(4, problems.split_seed(0, "train", 10 + seed))
    compiled[0](params, trainer.optimizer.initial_state(params), instance,
                tf.constant(5 * seed, tf.int32))
  for fn in compiled:
    assert fn.experimental_get_tracing_count() == 1, fn


def test_a_failing_histogram_is_reported_and_does_not_end_the_run(tmp_path):
  """TensorBoard histograms are for inspection: if building them fails (e.g. AutoGraph read a
  source file edited during the run), the run says so and goes on to its last epoch."""
  trainer = tiny_trainer(tmp_path, 3)
  lines = []
  trainer.log = lines.append

  def broken(*unused_args):
    raise TypeError("Iterating over a symbolic `tf.Tensor` is not allowed.")

  trainer._diagnostics_fn = broken  # pylint: disable=protected-access
  trainer.train(progress=False)
  assert int(trainer.epoch.numpy()) == 3
  skipped = [line for line in lines if "histograms skipped" in line]
  assert len(skipped) == 2 and "TypeError: Iterating" in skipped[0], lines  # Epochs 0 and 3.


def test_meta_learning_rate_cosine_decay_is_per_epoch_resumes_and_changes_the_run(tmp_path):
  """--meta_lr_decay_epochs: the rate of each epoch follows the cosine to the final fraction and
  stays there; a run killed and resumed ends as the uninterrupted one (the rate comes from the
  epoch); the schedule is part of the run's identity only when set."""
  config = meta.TrainConfig(meta_learning_rate=0.01, meta_lr_decay_epochs=4,
                            meta_lr_final_fraction=0.2)
  rates = [config.meta_learning_rate_at(e) for e in range(7)]
  np.testing.assert_allclose(rates, [0.01, 0.01 * (0.2 + 0.8 * (1 + np.cos(np.pi / 4)) / 2),
                                     0.006, 0.01 * (0.2 + 0.8 * (1 - np.cos(np.pi / 4)) / 2),
                                     0.002, 0.002, 0.002])
  assert meta.TrainConfig(meta_learning_rate=0.01).meta_learning_rate_at(50) == 0.01
  with pytest.raises(meta.TrainingError, match="--meta_lr_final_fraction in"):
    meta.TrainConfig(meta_lr_decay_epochs=4, meta_lr_final_fraction=1.5).validate()
  with pytest.raises(meta.TrainingError, match="no effect without --meta_lr_decay_epochs"):
    meta.TrainConfig(meta_lr_final_fraction=0.5).validate()

  tf.config.experimental.enable_op_determinism()
  decay = dict(meta_lr_decay_epochs=4, meta_lr_final_fraction=0.2, validation_every=2)
  straight = tiny_trainer(tmp_path / "straight", 6, **decay)
  straight.train(progress=False)
  assert float(straight.meta_optimizer.learning_rate.numpy()) == pytest.approx(0.002)
  tiny_trainer(tmp_path / "resumed", 3, **decay).train(progress=False)
  resumed = tiny_trainer(tmp_path / "resumed", 6, **decay)
  assert int(resumed.epoch.numpy()) == 3
  resumed.train(progress=False)
  for a, b in zip(weights(straight), weights(resumed)):
    np.testing.assert_array_equal(a, b)
  constant = tiny_trainer(tmp_path / "constant", 6, validation_every=2)
  constant.train(progress=False)
  assert any(not np.array_equal(a, b) for a, b in zip(weights(straight), weights(constant)))
  identity = lambda d: json.loads((tmp_path / d / "run_config.json").read_text())["train"]
  assert identity("straight")["meta_lr_decay_epochs"] == 4
  assert "meta_lr_decay_epochs" not in identity("constant")
  assert "meta_lr_final_fraction" not in identity("constant")
  with pytest.raises(meta.TrainingError,  # Another schedule is another run.
                     match="meta_lr_decay_epochs: requested None, saved 4"):
    tiny_trainer(tmp_path / "straight", 6, validation_every=2)
