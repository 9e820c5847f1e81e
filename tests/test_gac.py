"""LSTM + global averaging cells (paper Appendix D) against a NumPy reference."""

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import optimizers
from tests import helpers


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def numpy_gac_step(opt, x, state, ids, num_global):
  """The cell equations, then the last `num_global[layer]` outputs averaged per instance."""
  new_state = []
  h_in = x
  for layer, (h, c) in enumerate(state):
    z = np.concatenate([h_in, h], 1) @ opt.gate_weights[layer].numpy()
    z = z + opt.gate_biases[layer].numpy()
    hidden = h.shape[1]
    i, j, f, o = (z[:, k * hidden:(k + 1) * hidden] for k in range(4))
    c = sigmoid(f + 1.0) * c + sigmoid(i) * np.tanh(j)
    h = sigmoid(o) * np.tanh(c)
    g = num_global[layer]
    if g:
      for instance in np.unique(ids):
        rows = ids == instance
        h[rows, hidden - g:] = h[rows, hidden - g:].mean(axis=0)
    new_state.append((h, c))
    h_in = h
  out = h_in @ opt.output_weights.numpy() + opt.output_bias.numpy()
  return out[:, 0] * opt.output_scale, new_state


def test_global_averaging_matches_numpy_reference():
  opt = optimizers.CoordinatewiseLSTM(hidden_sizes=(6, 4), num_global_cells=(2, 1), seed=4,
                                      dtype=tf.float64, output_scale=0.5)
  rng = np.random.default_rng(0)
  grads = [tf.constant(rng.normal(size=(3, 2, 2))), tf.constant(rng.normal(size=(3, 5)))]
  # Flat order: tensor 0 (instance-major, 4 coordinates each), then tensor 1 (5 each).
  ids = np.concatenate([np.repeat(np.arange(3), 4), np.repeat(np.arange(3), 5)])
  state = opt.initial_state(grads)
  np_state = [(np.zeros((27, h)), np.zeros((27, h))) for h in (6, 4)]
  for _ in range(3):
    updates, state = opt.step(grads, state)
    flat = np.concatenate([g.numpy().ravel() for g in grads])
    expected, np_state = numpy_gac_step(opt, flat[:, None], np_state, ids, (2, 1))
    got = np.concatenate([u.numpy().ravel() for u in updates])
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


def test_instances_do_not_see_each_other():
  """Changing instance 1's gradients leaves instance 0's updates unchanged."""
  opt = optimizers.CoordinatewiseLSTM(hidden_sizes=(5,), num_global_cells=2, seed=1)
  g, g2 = helpers.two_instance_gradients(1, 7, 10.0)
  u1, _ = opt.step([g], opt.initial_state([g]))
  u2, _ = opt.step([g2], opt.initial_state([g2]))
  np.testing.assert_allclose(u1[0].numpy()[0], u2[0].numpy()[0], rtol=1e-6)
  # ...but within an instance the coordinates do share information.
  g3 = g.numpy().copy()
  g3[0, 0] *= 10
  u3, _ = opt.step([tf.constant(g3)], opt.initial_state([tf.constant(g3)]))
  assert not np.allclose(u1[0].numpy()[0, 1:], u3[0].numpy()[0, 1:])


def test_config_name_and_round_trip(tmp_path):
  opt = optimizers.CoordinatewiseLSTM(hidden_sizes=(5, 5), num_global_cells=(1, 2))
  config = opt.get_config()
  assert config["name"] == "lstm_gac" and config["num_global_cells"] == [1, 2]
  assert "num_global_cells" not in optimizers.CoordinatewiseLSTM().get_config()
  optimizers.save_optimizer(opt, tmp_path / "gac")
  loaded = optimizers.load_optimizer(tmp_path / "gac")
  assert loaded.num_global_cells == (1, 2)


def test_bad_global_cell_counts():
  with pytest.raises(ValueError, match="num_global_cells"):
    optimizers.CoordinatewiseLSTM(hidden_sizes=(4,), num_global_cells=5)
  with pytest.raises(ValueError, match="num_global_cells"):
    optimizers.CoordinatewiseLSTM(hidden_sizes=(4, 4), num_global_cells=(1,))


def test_gac_meta_trains(tmp_path):
  opt = optimizers.CoordinatewiseLSTM(hidden_sizes=(8,), num_global_cells=2)
  summary = helpers.tiny_meta_train(opt, tmp_path)
  assert np.isfinite(summary["best_validation_final_loss"])
  assert optimizers.load_optimizer(tmp_path).shares_information


def test_keras_optimizer_rejects_global_averaging(tmp_path):
  from l2l_tf.keras_optimizer import LearnedOptimizer  # pylint: disable=g-import-not-at-top
  optimizers.save_optimizer(
      optimizers.CoordinatewiseLSTM(hidden_sizes=(4,), num_global_cells=1), tmp_path / "gac")
  with pytest.raises(ValueError, match="lstm_gac"):
    LearnedOptimizer.from_pretrained(str(tmp_path / "gac"))
