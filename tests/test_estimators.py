"""Issue 18: the meta-gradient estimators (l2l_tf.meta.estimators): the particles run the same
optimizer as the plain unroll, the ES combination on hand-made cases, ES and PES unbiased against
the exact whole-run gradient where tbptt is not, and a PES run resumed mid-run goes on with the
same particles and accumulated perturbations as an uninterrupted one."""

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import meta, optimizers, problems
from l2l_tf.meta import estimators, unroll
from l2l_tf.problems import base as problems_base


def tiny_setup(num=4, dims=6, hidden=(4,)):
  problem = problems.Quadratic(num_dims=dims)
  optimizer = optimizers.CoordinatewiseLSTM(hidden_sizes=hidden, output_scale=0.1, seed=3)
  instance, params = problem.sample(num, problems_base.split_seed(0, "train", 0))
  return problem, optimizer, instance, params


def flat(tensors):
  return np.concatenate([np.asarray(t).ravel() for t in tensors])


def test_particles_with_unperturbed_weights_follow_the_plain_unroll():
  problem, optimizer, instance, params = tiny_setup()
  n = 3
  particles = estimators.Particles(problem, optimizer, n)
  weights = [tf.tile(v[None], [n] + [1] * v.shape.rank) for v in optimizer.trainable_variables]
  tiled = estimators.tile_particles(params, n)
  state = particles.initial_state(weights, tiled)
  losses, out_params, _ = particles.run(weights, tiled, state,
                                        estimators.tile_particles(instance, n), 0, 5, "uniform")
  expected, expected_params, _ = estimators.truncation_loss(
      problem, optimizer, params, optimizer.initial_state(params), instance, 0, 5)
  np.testing.assert_allclose(losses.numpy(), [float(expected)] * n, rtol=1e-5)
  for p, e in zip(out_params, expected_params):
    np.testing.assert_allclose(p.numpy()[:4], e.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(p.numpy()[8:], e.numpy(), rtol=1e-5, atol=1e-6)


def test_particles_use_their_own_weights():
  """Particle 1 with output weights x2 makes updates x2 (the LSTM's output is linear in them)."""
  problem, optimizer, instance, params = tiny_setup(num=1)
  weights = []
  for v in optimizer.trainable_variables:
    w = tf.stack([v, v])
    if v is optimizer.output_weights or v is optimizer.output_bias:
      w = tf.stack([v, 2.0 * v])
    weights.append(w)
  particles = estimators.Particles(problem, optimizer, 2)
  tiled = estimators.tile_particles(params, 2)
  state = particles.initial_state(weights, tiled)
  _, new, _ = particles.step(weights, tiled, state, estimators.tile_particles(instance, 2), 0)
  update = new[0].numpy() - tiled[0].numpy()
  np.testing.assert_allclose(update[1], 2.0 * update[0], rtol=1e-5)
  assert np.abs(update[0]).max() > 0


def test_es_combine_by_hand():
  d = [tf.constant([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0], [0.0, -2.0]])]  # +eps then -eps.
  losses = tf.constant([3.0, 5.0, 1.0, 4.0])
  cfg = estimators.ESConfig(population=4, sigma=0.5, antithetic=True)
  loss, (g,) = estimators.es_combine(cfg, losses, d)
  # pair 0: (3 - 1) / (2 * 0.5) * [1, 0] = [2, 0]; pair 1: (5 - 4) / 1 * [0, 2] = [0, 2]; mean.
  np.testing.assert_allclose(g.numpy(), [1.0, 1.0])
  assert float(loss) == pytest.approx(13.0 / 4)
  # A diverged particle drops its pair; the mean is over the pairs left.
  loss, (g,) = estimators.es_combine(cfg, tf.constant([3.0, np.nan, 1.0, 4.0]), d)
  np.testing.assert_allclose(g.numpy(), [2.0, 0.0])
  # Independent perturbations against the mean of the others (leave-one-out baseline).
  cfg = estimators.ESConfig(population=2, sigma=1.0, antithetic=False)
  _, (g,) = estimators.es_combine(cfg, tf.constant([3.0, 1.0]), [tf.constant([[1.0], [1.0]])])
  np.testing.assert_allclose(g.numpy(), [((3 - 1) + (1 - 3)) / 2.0])
  loss, _ = estimators.es_combine(cfg, tf.constant([np.inf, np.nan]), [tf.ones([2, 1])])
  assert np.isnan(float(loss))


def test_es_config_errors_say_what_to_do():
  with pytest.raises(Exception, match="must be even"):
    estimators.ESConfig(population=5).validate()
  with pytest.raises(Exception, match="es_sigma"):
    estimators.ESConfig(sigma=0.0).validate()


def test_tbptt_over_one_truncation_with_second_derivatives_is_the_exact_gradient():
  problem, optimizer, instance, params = tiny_setup()
  loss, exact = estimators.full_gradient(problem, optimizer, instance, params, 12)
  one = estimators.TruncatedBPTT(problem, optimizer, 12, second_derivatives=True)
  loss_1, grads_1 = one.run_gradient(instance, params, 12)
  assert float(loss_1) == pytest.approx(float(loss), rel=1e-6)
  np.testing.assert_allclose(flat(grads_1), flat(exact), rtol=1e-4, atol=1e-5)


def test_es_and_pes_are_unbiased_where_truncated_bptt_is_not():
  """Mean of 16 ES / PES estimates (200 particles each) against the exact whole-run gradient
  (second derivatives, no truncation), projected on it: 1 for an unbiased estimator."""
  problem, optimizer, instance, params = tiny_setup()
  horizon, truncation = 20, 5
  _, exact = estimators.full_gradient(problem, optimizer, instance, params, horizon)
  g = flat(exact)
  projection = lambda e: float(flat(e) @ g / (g @ g))
  cfg = estimators.ESConfig(population=200, sigma=0.01)
  es = estimators.EvolutionStrategies(problem, optimizer, horizon, cfg)
  pes = estimators.PersistentES(problem, optimizer, truncation, cfg, (instance, params))
  es_sum, pes_sum, seeds = 0.0, 0.0, 16
  for s in range(seeds):
    es_sum += flat(es.gradient(instance, params, tf.constant([s, 1], tf.int64))[1]) / seeds
    pes.reset(instance, params)
    for k in range(horizon // truncation):
      _, grads = pes.gradient(instance, k * truncation, tf.constant([s, 100 + k], tf.int64))
      pes_sum += flat(grads) / seeds
  assert projection([es_sum]) == pytest.approx(1.0, abs=0.1)
  assert projection([pes_sum]) == pytest.approx(1.0, abs=0.1)
  tbptt = estimators.TruncatedBPTT(problem, optimizer, truncation, second_derivatives=True)
  assert abs(projection(tbptt.run_gradient(instance, params, horizon)[1]) - 1.0) > 0.3


def es_trainer(tmp_path, estimator, num_epochs, name="run"):
  config = meta.TrainConfig(num_epochs=num_epochs, horizon=6, truncation=2, meta_batch_size=2,
                            meta_learning_rate=1e-2, validation_every=3,
                            num_validation_problems=4, checkpoint_every=1, estimator=estimator,
                            es_population=4, es_sigma=0.05)
  optimizer = optimizers.CoordinatewiseLSTM(hidden_sizes=(3,), output_scale=0.1, seed=1)
  return meta.MetaTrainer(problems.Quadratic(num_dims=3), optimizer, config, tmp_path / name,
                          log_fn=lambda m: None)


@pytest.mark.parametrize("estimator", ["es", "pes"])
def test_trainer_runs_es_and_pes(tmp_path, estimator):
  trainer = es_trainer(tmp_path, estimator, 6)
  before = flat(trainer.meta_vars)
  summary = trainer.train(progress=False)
  assert summary["epochs"] == 6
  assert not np.allclose(flat(trainer.meta_vars), before)
  assert np.isfinite(summary["best_validation_final_loss"])
  assert (tmp_path / "run" / "optimizer" / "weights.npz").exists()
  import json  # pylint: disable=g-import-not-at-top
  identity = json.loads((tmp_path / "run" / "run_config.json").read_text())["train"]
  assert identity["estimator"] == estimator and identity["es_population"] == 4


def test_pes_resumed_mid_run_has_the_same_accumulators_and_ends_the_same(tmp_path):
  straight = es_trainer(tmp_path, "pes", 6, "straight")
  straight.train(progress=False)

  first = es_trainer(tmp_path, "pes", 4, "resumed")  # Stops at run 1, truncation 1 of 3.
  first.train(progress=False)
  saved = flat(first.estimator.accumulated)
  saved_params = flat(first.estimator.params)
  assert np.abs(saved).max() > 0  # Mid-run: the accumulators hold perturbations.
  del first
  second = es_trainer(tmp_path, "pes", 6, "resumed")  # New objects, from the checkpoint.
  assert second.resumed_from is not None
  np.testing.assert_array_equal(flat(second.estimator.accumulated), saved)
  np.testing.assert_array_equal(flat(second.estimator.params), saved_params)
  second.train(progress=False)
  np.testing.assert_array_equal(flat(second.meta_vars), flat(straight.meta_vars))
  np.testing.assert_array_equal(flat(second.estimator.accumulated),
                                flat(straight.estimator.accumulated))


def test_unsupported_settings_are_refused_with_what_to_change(tmp_path):
  config = meta.TrainConfig(num_epochs=1, horizon=4, truncation=2, estimator="pes",
                            second_derivatives=True)
  with pytest.raises(meta.TrainingError, match="drop --second_derivatives"):
    config.validate()
  config = meta.TrainConfig(num_epochs=1, horizon=4, truncation=2, estimator="es",
                            recompute_chunk=1)
  with pytest.raises(meta.TrainingError, match="recompute_chunk=0"):
    meta.MetaTrainer(problems.Quadratic(num_dims=2), optimizers.CoordinatewiseLSTM((2,)),
                     config, tmp_path / "x", log_fn=lambda m: None)
  with pytest.raises(meta.TrainingError, match="estimator must be one of"):
    meta.TrainConfig(estimator="reinforce").validate()


def test_meta_loss_terms_are_per_instance():
  losses = tf.constant([1.0, np.e])
  np.testing.assert_allclose(unroll.meta_loss_terms(losses, "log").numpy(), [0.0, 1.0],
                             atol=1e-6)
  assert float(unroll.meta_loss_term(losses, "log")) == pytest.approx(0.5)


def test_mlp_rule_matches_a_numpy_transcription():
  rule = optimizers.StatelessMLPRule(hidden_sizes=(5,), preprocessing="identity",
                                     output_scale=0.1, seed=2)
  rng = np.random.default_rng(0)
  params = [tf.constant(rng.normal(size=(2, 3)), tf.float32),
            tf.constant(rng.normal(size=(2, 2, 2)), tf.float32)]
  grads = [tf.constant(rng.normal(size=p.shape), tf.float32) for p in params]
  state = rule.initial_state(params)
  losses0, losses1 = np.array([4.0, 2.0]), np.array([1.0, 3.0])
  _, state = optimizers.base.call_step(rule, grads, state, tf.constant(losses0, tf.float32))
  updates, _ = optimizers.base.call_step(rule, grads, state, tf.constant(losses1, tf.float32))
  w0, b0, w1, b1 = (v.numpy() for v in (rule.weights[0], rule.biases[0], rule.weights[1],
                                        rule.biases[1]))
  first, _ = optimizers.base.call_step(rule, grads, rule.initial_state(params),
                                       tf.constant(losses0, tf.float32))
  for g, p, u0, u in zip(grads, params, first, updates):
    g, p = g.numpy(), p.numpy()
    theta = p + u0.numpy()  # The rule's copy of theta after its first update.
    relative = np.log(losses1 / losses0).reshape((2,) + (1,) * (g.ndim - 1)) * np.ones_like(g)
    x = np.stack([g.ravel(), theta.ravel(), relative.ravel()], axis=1)
    expected = 0.1 * np.tanh(np.tanh(x @ w0 + b0) @ w1 + b1)[:, 0]
    np.testing.assert_allclose(u.numpy().ravel(), expected, rtol=1e-5, atol=1e-6)
  with pytest.raises(Exception, match="reads the optimizee's loss"):
    rule.step(grads, rule.initial_state(params))


def test_es_trains_the_mlp_rule_and_init_from_copies_a_saved_optimizer(tmp_path):
  config = meta.TrainConfig(num_epochs=3, horizon=6, truncation=2, meta_batch_size=2,
                            meta_learning_rate=1e-2, validation_every=3,
                            num_validation_problems=4, estimator="es", es_population=4)
  rule = optimizers.StatelessMLPRule(hidden_sizes=(4,), seed=1)
  trainer = meta.MetaTrainer(problems.Quadratic(num_dims=3), rule, config, tmp_path / "a",
                             log_fn=lambda m: None)
  summary = trainer.train(progress=False)
  saved = optimizers.load_optimizer(summary["optimizer_dir"])
  # A new run from it starts at its meta-parameters (the seed may differ).
  fresh = optimizers.StatelessMLPRule(hidden_sizes=(4,), seed=7)
  import dataclasses  # pylint: disable=g-import-not-at-top
  second = meta.MetaTrainer(problems.Quadratic(num_dims=3), fresh,
                            dataclasses.replace(config, init_from=summary["optimizer_dir"]),
                            tmp_path / "b", log_fn=lambda m: None)
  np.testing.assert_array_equal(flat(second.meta_vars), flat(saved.trainable_variables))
  other = optimizers.StatelessMLPRule(hidden_sizes=(6,), seed=1)
  with pytest.raises(meta.TrainingError, match="another architecture"):
    meta.MetaTrainer(problems.Quadratic(num_dims=3), other,
                     dataclasses.replace(config, init_from=summary["optimizer_dir"]),
                     tmp_path / "c", log_fn=lambda m: None)


def test_shipped_pes_optimizer_is_the_paper_lstm_fine_tuned_at_a_1000_step_horizon():
  from l2l_tf.evaluation import figures  # pylint: disable=g-import-not-at-top
  from l2l_tf.optimizers import serialization  # pylint: disable=g-import-not-at-top
  registry = figures.registry()
  figure = registry.get("mnist_long_horizon")
  assert "pretrained:mnist_pes" in figure.requires and figure.missing() == []
  pes = optimizers.load_optimizer("pretrained:mnist_pes")
  paper = optimizers.load_optimizer("pretrained:mnist")
  assert pes.get_config() == paper.get_config()
  # Same shapes (it was initialised from `mnist`), different values (PES moved them).
  a, b = flat(pes.trainable_variables), flat(paper.trainable_variables)
  assert a.shape == b.shape and not np.allclose(a, b)
  _, saved = serialization.read_config("pretrained:mnist_pes")
  train = saved["metadata"]["train"]
  assert (train["estimator"], train["horizon"], train["init_from"]) == (
      "pes", 1000, "pretrained:mnist")
