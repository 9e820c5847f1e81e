"""The coordinatewise LSTM optimizer: size, cell equations, coordinatewise structure, groups."""

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import optimizers


def num_params(module):
  return sum(int(np.prod(v.shape)) for v in module.trainable_variables)


def test_paper_parameter_counts():
  assert num_params(optimizers.CoordinatewiseLSTM()) == 5061
  assert num_params(optimizers.CoordinatewiseLSTM(
      preprocessing={"name": "log_and_sign"})) == 5141


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def numpy_lstm_step(opt, x, state, forget_gate=True):
  """Independent transcription of the cell equations in the module docstring."""
  new_state = []
  h_in = x
  for layer, (h, c) in enumerate(state):
    w = opt.gate_weights[layer].numpy()
    b = opt.gate_biases[layer].numpy()
    z = np.concatenate([h_in, h], 1) @ w + b
    hidden = h.shape[1]
    i, j, f, o = (z[:, k * hidden:(k + 1) * hidden] for k in range(4))
    if forget_gate:
      c = sigmoid(f + 1.0) * c + sigmoid(i) * np.tanh(j)
    else:
      c = c + sigmoid(i) * np.tanh(j)
    h = sigmoid(o) * np.tanh(c)
    new_state.append((h, c))
    h_in = h
  out = h_in @ opt.output_weights.numpy() + opt.output_bias.numpy()
  return out[:, 0] * opt.output_scale, new_state


@pytest.mark.parametrize("forget_gate", [True, False])
def test_cell_matches_numpy_reference(forget_gate):
  opt = optimizers.CoordinatewiseLSTM(hidden_sizes=(6, 4), output_scale=0.3, seed=5,
                                      forget_gate=forget_gate, dtype=tf.float64)
  rng = np.random.default_rng(0)
  grads = [tf.constant(rng.normal(size=(3, 2))), tf.constant(rng.normal(size=(5,)))]
  state = opt.initial_state(grads)
  np_state = [(np.zeros((11, h)), np.zeros((11, h))) for h in (6, 4)]
  for _ in range(3):
    updates, state = opt.step(grads, state)
    flat = np.concatenate([g.numpy().ravel() for g in grads])
    expected, np_state = numpy_lstm_step(opt, flat[:, None], np_state, forget_gate)
    got = np.concatenate([u.numpy().ravel() for u in updates])
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_coordinatewise_permutation_equivariance():
  opt = optimizers.CoordinatewiseLSTM(seed=1)
  rng = np.random.default_rng(2)
  g = rng.normal(size=50).astype(np.float32)
  perm = rng.permutation(50)
  state = opt.initial_state([tf.constant(g)])
  for _ in range(2):
    u, state = opt.step([tf.constant(g)], state)
  state_p = opt.initial_state([tf.constant(g[perm])])
  for _ in range(2):
    up, state_p = opt.step([tf.constant(g[perm])], state_p)
  np.testing.assert_allclose(up[0].numpy(), u[0].numpy()[perm], rtol=1e-5, atol=1e-7)


def test_meta_parameter_count_does_not_depend_on_problem_size():
  opt = optimizers.CoordinatewiseLSTM()
  before = num_params(opt)
  opt.step([tf.zeros([1000])], opt.initial_state([tf.zeros([1000])]))
  assert num_params(opt) == before


def test_grouped_optimizer_routes_each_group_to_its_net():
  conv = optimizers.CoordinatewiseLSTM(hidden_sizes=(4,), seed=1, name="conv")
  fc = optimizers.CoordinatewiseLSTM(hidden_sizes=(4,), seed=2, name="fc")
  grouped = optimizers.GroupedOptimizer({"conv": conv, "fc": fc}, ["conv", "fc", "conv"])
  grads = [tf.fill([2, 2], 0.5), tf.fill([3], 0.5), tf.fill([4], 0.5)]
  updates, state = grouped.step(grads, grouped.initial_state(grads))
  conv_updates, _ = conv.step([grads[0], grads[2]], conv.initial_state([grads[0], grads[2]]))
  fc_updates, _ = fc.step([grads[1]], fc.initial_state([grads[1]]))
  np.testing.assert_allclose(updates[0].numpy(), conv_updates[0].numpy())
  np.testing.assert_allclose(updates[2].numpy(), conv_updates[1].numpy())
  np.testing.assert_allclose(updates[1].numpy(), fc_updates[0].numpy())
  assert not np.allclose(updates[0].numpy()[0, 0], updates[1].numpy()[0])
  assert state["conv"][0][0].shape == (8, 4) and state["fc"][0][0].shape == (3, 4)
  assert len(grouped.trainable_variables) == len(conv.trainable_variables) * 2


def test_grouped_optimizer_rejects_bad_assignment():
  with pytest.raises(ValueError, match="not among"):
    optimizers.GroupedOptimizer({"a": optimizers.SGD()}, ["a", "b"])
  with pytest.raises(ValueError, match="assigned no parameter"):
    optimizers.GroupedOptimizer({"a": optimizers.SGD(), "b": optimizers.SGD()}, ["a"])


def test_load_rejects_mismatched_architecture(tmp_path):
  opt = optimizers.CoordinatewiseLSTM(hidden_sizes=(8,))
  optimizers.save_optimizer(opt, tmp_path / "opt")
  with pytest.raises(optimizers.OptimizerLoadError, match="hidden_sizes"):
    optimizers.load_optimizer(tmp_path / "opt", expected_config=optimizers.CoordinatewiseLSTM(
        hidden_sizes=(20, 20)).get_config())
  with pytest.raises(optimizers.OptimizerLoadError, match="No saved optimizer"):
    optimizers.load_optimizer(tmp_path / "missing")


def test_load_rejects_tampered_weights(tmp_path):
  opt = optimizers.CoordinatewiseLSTM(hidden_sizes=(8,))
  path = optimizers.save_optimizer(opt, tmp_path / "opt")
  with np.load(path / "weights.npz") as data:
    weights = {k: data[k] for k in data.files}
  weights.pop(sorted(weights)[0])
  np.savez(path / "weights.npz", **weights)
  with pytest.raises(optimizers.OptimizerLoadError, match="missing"):
    optimizers.load_optimizer(path)


# ---- the feature-major view: the same core, another state layout ---------------------


@pytest.mark.parametrize("kwargs", [
    {}, {"forget_gate": False}, {"forget_gate": False, "cell_clip": 0.5},
    {"preprocessing": {"name": "log_and_sign", "p": 10.0}, "output_scale": 0.1,
     "hidden_sizes": (7, 5)}])
def test_feature_major_view_steps_like_the_lstm(kwargs):
  opt = optimizers.CoordinatewiseLSTM(seed=3, **kwargs)
  view = optimizers.lstm.FeatureMajorLSTM(opt)
  assert view.get_config() == opt.get_config()
  rng = np.random.default_rng(0)
  params = [tf.constant(rng.normal(size=(4, 3)), tf.float32), tf.constant([0.5], tf.float32)]
  state, view_state = opt.initial_state(params), view.initial_state(params)
  assert view_state[0][0].shape == (opt.hidden_sizes[0], 16)  # 13 coordinates padded to 16.
  for t in range(4):
    grads = [tf.constant(rng.normal(size=p.shape) * 10.0 ** (t - 2), tf.float32) for p in params]
    if t == 3:  # A non-finite gradient gives a NaN update in both.
      grads[1] = tf.constant([np.inf], tf.float32)
    updates, state = opt.step(grads, state)
    view_updates, view_state = view.step(grads, view_state)
    for u, v in zip(updates, view_updates):
      np.testing.assert_allclose(v.numpy(), u.numpy(), rtol=2e-5, atol=1e-6)
    for (h, c), (vh, vc) in zip(state, view_state):
      np.testing.assert_allclose(vh.numpy()[:, :13].T, h.numpy(), rtol=2e-5, atol=1e-6)
      np.testing.assert_allclose(vc.numpy()[:, :13].T, c.numpy(), rtol=2e-5, atol=1e-6)
  assert np.isnan(view_updates[1].numpy()).all()


def test_feature_major_view_refuses_information_sharing():
  assert not optimizers.lstm.FeatureMajorLSTM.supports(
      optimizers.CoordinatewiseLSTM(num_global_cells=(2, 2)))
  with pytest.raises(ValueError, match="plain coordinatewise LSTM"):
    optimizers.lstm.FeatureMajorLSTM(optimizers.CoordinatewiseLSTM(num_global_cells=(2, 2)))


def test_trajectories_use_the_view_and_match_the_coordinate_major_step():
  from l2l_tf import problems  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import curves  # pylint: disable=g-import-not-at-top
  from l2l_tf.meta import unroll  # pylint: disable=g-import-not-at-top
  problem = problems.Quadratic(num_dims=5)
  opt = optimizers.CoordinatewiseLSTM(seed=1, output_scale=0.1)
  instance, params = problem.sample(6, problems.split_seed(0, "test"))
  reference = unroll.make_trajectory_fn(problem, opt, 30, feature_major=False)(
      instance, params).numpy()
  plain = curves.evaluate_losses(problem, opt, instance, params, 30)
  fast = curves.evaluate_losses(problem, opt, instance, params, 30, chunk_size=3,
                                jit_compile=True)
  assert np.isfinite(reference).all() and np.ptp(reference, axis=0).min() > 1e-3  # Not flat.
  np.testing.assert_allclose(plain, reference.T, rtol=1e-4, atol=1e-6)
  np.testing.assert_allclose(fast, reference.T, rtol=1e-4, atol=1e-6)
  keys = [k for k in unroll._TRAJECTORY_FNS[opt]]  # pylint: disable=protected-access
  # (problem, steps, jit_compile, view): the reference without the view, both curves with it.
  assert {k[2:] for k in keys} == {(False, False), (False, True), (True, True)}
