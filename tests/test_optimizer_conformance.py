"""One conformance suite that every optimizer, learned or hand-designed, must pass."""

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import optimizers


def make_lstm(**kw):
  return optimizers.CoordinatewiseLSTM(**kw)


FACTORIES = {
    "sgd": lambda: optimizers.SGD(0.1),
    "rmsprop": lambda: optimizers.RMSprop(0.01),
    "adam": lambda: optimizers.Adam(0.01),
    "nag": lambda: optimizers.NAG(0.01),
    "lbfgs": lambda: optimizers.LBFGS(0.1, memory=3, instance_axis=False),
    "ntm_bfgs": lambda: optimizers.NTMBFGS(hidden_sizes=(6,), num_global_cells=1,
                                           instance_axis=False, seed=2),
    "ntm_lbfgs": lambda: optimizers.NTMBFGS(hidden_sizes=(6,), memory="window", window=4,
                                            instance_axis=False, seed=2),
    "lstm": lambda: make_lstm(seed=3),
    "lstm_log_and_sign": lambda: make_lstm(preprocessing={"name": "log_and_sign", "p": 10.0},
                                           output_scale=0.1, seed=1),
    "lstm_no_forget_gate": lambda: make_lstm(hidden_sizes=(7,), forget_gate=False, seed=2),
    "lstm_feature_major": lambda: optimizers.lstm.FeatureMajorLSTM(
        make_lstm(hidden_sizes=(6, 5), preprocessing={"name": "log_and_sign", "p": 10.0},
                  seed=6)),
    "lstm_normalized_moments": lambda: make_lstm(
        hidden_sizes=(5,), preprocessing={"name": "normalized_moments"}, output_scale=0.1,
        seed=7),
    "lstm_normalized_moments_feature_major": lambda: optimizers.lstm.FeatureMajorLSTM(
        make_lstm(hidden_sizes=(5,), preprocessing={"name": "normalized_moments"}, seed=8)),
    "linear_zeros": lambda: make_lstm(hidden_sizes=(), initializer="zeros"),
    "lstm_gac": lambda: make_lstm(hidden_sizes=(6, 5), num_global_cells=(2, 1),
                                  instance_axis=False, seed=5),
    "fast_weights_delta": lambda: optimizers.FastWeightOptimizer(fast_size=3, hidden_size=5,
                                                                 seed=2),
    "fast_weights_additive": lambda: optimizers.FastWeightOptimizer(
        fast_size=4, hidden_size=3, rule="additive", preprocessing="identity", seed=3),
    "srwm": lambda: optimizers.SelfReferentialOptimizer(fast_size=3, seed=4),
    "srwm_sign_descent": lambda: optimizers.SelfReferentialOptimizer(
        fast_size=3, init="sign_descent", preprocessing="identity", seed=5),
    "mlp_rule": lambda: optimizers.StatelessMLPRule(hidden_sizes=(5,), instance_axis=False,
                                                    seed=6),
    "grouped": lambda: optimizers.GroupedOptimizer(
        {"a": make_lstm(hidden_sizes=(5,), seed=4, name="a"), "b": optimizers.Adam(0.1)},
        ["a", "b", "a"]),
}


def sample_params(dtype=tf.float32):
  rng = np.random.default_rng(1)
  shapes = [(3, 4), (4,), (2, 1, 3)]
  return [tf.constant(rng.normal(size=s), dtype) for s in shapes]


@pytest.fixture(params=sorted(FACTORIES))
def optimizer(request):
  return FACTORIES[request.param]()


def step_of(opt, grads, state, loss=1.5):
  """`opt.step` through `call_step`: an optimizer that reads the loss (`uses_loss`) gets one."""
  return optimizers.base.call_step(opt, grads, state, tf.constant(loss))


def run_steps(opt, params, steps=3):
  state = opt.initial_state(params)
  all_updates = []
  for i in range(steps):
    grads = [tf.sin(p * (i + 1.0)) for p in params]
    updates, state = step_of(opt, grads, state, 2.0 / (i + 1))
    params = [p + u for p, u in zip(params, updates)]
    all_updates.append(updates)
  return all_updates, state, params


def test_updates_have_shapes_and_dtypes_of_grads(optimizer):
  params = sample_params()
  updates, _, _ = run_steps(optimizer, params)
  for step_updates in updates:
    assert len(step_updates) == len(params)
    for u, p in zip(step_updates, params):
      assert u.shape == p.shape
      assert u.dtype == p.dtype
      assert np.all(np.isfinite(u.numpy()))


def test_step_is_pure(optimizer):
  params = sample_params()
  state = optimizer.initial_state(params)
  grads = [tf.cos(p) for p in params]
  before = [v.numpy().copy() for v in optimizer.variables]
  first, state_a = step_of(optimizer, grads, state)
  second, state_b = step_of(optimizer, grads, state)
  for a, b in zip(first, second):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  tf.nest.map_structure(lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()),
                        state_a, state_b)
  for b, v in zip(before, optimizer.variables):
    np.testing.assert_array_equal(b, v.numpy())


def test_initial_state_is_a_reset(optimizer):
  params = sample_params()
  fresh = optimizer.initial_state(params)
  run_steps(optimizer, params)
  again = optimizer.initial_state(params)
  tf.nest.map_structure(lambda a, b: np.testing.assert_array_equal(a.numpy(), b.numpy()),
                        fresh, again)
  first, _, _ = run_steps(optimizer, params, 1)
  second, _, _ = run_steps(optimizer, params, 1)
  for a, b in zip(first[0], second[0]):
    np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_state_changes_updates_over_steps(optimizer):
  """Same gradient twice: stateful optimizers may differ, but nothing is NaN and steps move."""
  params = sample_params()
  updates, _, _ = run_steps(optimizer, params, 2)
  moved = any(np.any(u.numpy() != 0) for u in updates[1])
  if isinstance(optimizer, optimizers.CoordinatewiseLSTM) and optimizer.initializer == "zeros":
    assert not moved  # An all-zero net proposes zero updates until meta-trained.
  else:
    assert moved


def test_compiles_with_tf_function(optimizer):
  params = sample_params()

  @tf.function
  def step(grads, state):
    return step_of(optimizer, grads, state)

  state = optimizer.initial_state(params)
  grads = [tf.cos(p) for p in params]
  eager_updates, _ = step_of(optimizer, grads, state)
  graph_updates, _ = step(grads, state)
  for a, b in zip(eager_updates, graph_updates):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-7)


def test_config_round_trip(optimizer, tmp_path):
  params = sample_params()
  rebuilt = optimizers.make_optimizer(optimizer.get_config())
  if optimizer.trainable_variables:
    optimizers.save_optimizer(optimizer, tmp_path / "opt")
    rebuilt = optimizers.load_optimizer(tmp_path / "opt")
  a, _, _ = run_steps(optimizer, params)
  b, _, _ = run_steps(rebuilt, params)
  # A few float32 ULPs apart at most (reductions may be ordered differently between two runs
  # of the same weights, as seen on one machine: 1.08e-6 relative); a wrong weight or setting
  # moves the updates by far more.
  for ua, ub in zip(a[-1], b[-1]):
    np.testing.assert_allclose(ua.numpy(), ub.numpy(), rtol=1e-5, atol=1e-7)
