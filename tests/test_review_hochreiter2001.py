"""Issue 8 (figure review_hochreiter2001): task H, the 2001 meta-LSTM, examples to tau."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import meta, optimizers, problems
from l2l_tf_experiments.review import comparison, figures, hochreiter2001, speed, task_h

REPO = Path(__file__).resolve().parent.parent
PRETRAINED = REPO / "l2l_tf_experiments" / "review" / "pretrained"
SGD_MLP = comparison.SGD_MLP


# ---- task H -----------------------------------------------------------------------------------


def test_task_h_ranges_moments_and_target_variance():
  task = task_h.TaskH()
  s = task.streams("train", 4000, 25, seed=3)
  a, x, y = s["a"].numpy().astype(np.float64), s["x"].numpy(), s["y"].numpy()
  assert a.shape == (4000, 6) and x.shape == (4000, 25, 2) and y.shape == (4000, 25)
  # Ranges: U[-1, 1] for coefficients and inputs, and they fill the range.
  for v in (a, x):
    assert v.min() >= -1.0 and v.max() <= 1.0 and v.min() < -0.99 and v.max() > 0.99
  # Moments of U[-1, 1]: mean 0, variance 1/3 (tolerances ~5 standard errors).
  for v in (a, x):
    assert abs(v.mean()) < 5 * np.sqrt(1 / 3 / v.size)
    assert abs(v.var() - 1 / 3) < 5 * np.sqrt((1 / 5 - 1 / 9) / v.size)
  # Coefficients independent of each other.
  corr = np.corrcoef(a.T) - np.eye(6)
  assert np.abs(corr).max() < 0.07
  # Targets are a . phi(x), mean 0 and variance 98/135 (analytic).
  np.testing.assert_allclose(y, np.einsum("nlk,nk->nl", task_h.features(x).numpy(), a),
                             rtol=1e-5, atol=1e-5)
  assert task.target_variance == pytest.approx(98 / 135, rel=1e-12)
  assert task.threshold() == pytest.approx(0.05 * 98 / 135, rel=1e-12)
  assert abs(y.mean()) < 0.03
  assert y.var() == pytest.approx(98 / 135, rel=0.05)
  # Per function, E_x[y^2 | a] = a^T Sigma_phi a.
  sigma = task_h.feature_second_moment()
  phi = task_h.features(x.reshape(-1, 2)).numpy()
  np.testing.assert_allclose(phi.T @ phi / phi.shape[0], sigma, atol=0.01)
  assert np.mean(np.einsum("nk,kl,nl->n", a, sigma, a)) == pytest.approx(98 / 135, rel=0.03)


def test_task_h_splits_are_disjoint_and_draws_reproducible():
  task = task_h.TaskH()
  train = task.streams("train", 5, 3, seed=0)["a"].numpy()
  np.testing.assert_array_equal(train, task.streams("train", 5, 3, seed=0)["a"].numpy())
  for other in (task.streams("valid", 5, 3, seed=0), task.streams("test", 5, 3, seed=0),
                task.streams("train", 5, 3, seed=0, index=1)):
    assert not np.any(np.isclose(train[:, None, :], other["a"].numpy()[None, :, :]).all(-1))


def test_probe_rule_is_exact_for_quadratic_predictors():
  task = task_h.TaskH()
  problem = task_h.OnlineRegression("linear", num_examples=3, probe_order=4)
  instance = task.streams("test", 7, 3, seed=1)
  w = tf.random.stateless_normal([7, 6], seed=[1, 2])
  exact = np.einsum("nk,kl,nl->n", (w - instance["a"]).numpy(), task_h.feature_second_moment(),
                    (w - instance["a"]).numpy())
  np.testing.assert_allclose(problem.probe_mse([w], instance).numpy(), exact, rtol=1e-4)


def test_online_regression_loss_is_the_error_on_example_step_and_sgd_is_lms():
  task = task_h.TaskH()
  problem = task_h.OnlineRegression("linear", num_examples=4)
  instance = task.streams("test", 3, 4, seed=2)
  w = tf.random.stateless_normal([3, 6], seed=[3, 4])
  phi = task_h.features(instance["x"]).numpy()
  for t in range(4):
    expected = (np.einsum("nk,nk->n", phi[:, t], w.numpy()) - instance["y"].numpy()[:, t]) ** 2
    np.testing.assert_allclose(problem.loss([w], instance, t).numpy(), expected, rtol=1e-5)
  # One library-SGD step on the loss of example 0 is the LMS rule w + 2 lr (y - w.phi) phi.
  fn = speed.make_online_curves_fn(problem, optimizers.SGD(0.1), 1)
  errors, mse = fn(instance, [w])
  err = instance["y"].numpy()[:, 0] - np.einsum("nk,nk->n", phi[:, 0], w.numpy())
  w1 = w.numpy() + 2 * 0.1 * err[:, None] * phi[:, 0]
  np.testing.assert_allclose(errors.numpy()[:, 0], err ** 2, rtol=1e-5)
  a = instance["a"].numpy()
  sigma = task_h.feature_second_moment()
  np.testing.assert_allclose(mse.numpy()[:, 1], np.einsum("nk,kl,nl->n", w1 - a, sigma, w1 - a),
                             rtol=1e-4)
  mlp = task_h.OnlineRegression("mlp", num_examples=4)
  params = mlp.initial_params(instance, problems.split_seed(0, "test"))
  assert [tuple(p.shape) for p in params] == [(3, 2, 20), (3, 20), (3, 20), (3,)]
  assert mlp.num_parameters() == 81 == sum(int(np.prod(p.shape[1:])) for p in params)


# ---- the 2001 meta-LSTM -----------------------------------------------------------------------


def sigmoid(z):
  return 1.0 / (1.0 + np.exp(-z))


def numpy_lstm_step(w, b, u, h, c, forget_gate, clip=None, forget_bias=1.0):
  """Reference: Hochreiter & Schmidhuber 1997 (no forget gate) / Gers et al. 2000 cell."""
  z = np.concatenate([u, h], axis=1) @ w + b
  if forget_gate:
    i, j, f, o = np.split(z, 4, axis=1)
    c = sigmoid(f + forget_bias) * c + sigmoid(i) * np.tanh(j)
  else:
    i, j, o = np.split(z, 3, axis=1)
    c = c + sigmoid(i) * np.tanh(j)
  if clip is not None:
    c = np.clip(c, -clip, clip)
  return sigmoid(o) * np.tanh(c), c


@pytest.mark.parametrize("forget_gate,clip", [(False, None), (False, 0.5), (True, None)])
def test_lstm_cell_matches_numpy_reference(forget_gate, clip):
  cell = hochreiter2001.LSTMCell(3, 5, forget_gate=forget_gate, cell_clip=clip, seed=4,
                                 dtype=tf.float64)
  assert cell.w.shape == (8, (4 if forget_gate else 3) * 5)
  cell.b.assign(np.random.default_rng(0).normal(size=cell.b.shape))
  rng = np.random.default_rng(1)
  state = cell.initial_state(4)
  h, c = np.zeros([4, 5]), np.zeros([4, 5])
  for _ in range(6):  # Several steps, so the cell state accumulates (and clips).
    u = rng.normal(size=[4, 3]) * 2
    out, state = cell(tf.constant(u), state)
    h, c = numpy_lstm_step(cell.w.numpy(), cell.b.numpy(), u, h, c, forget_gate, clip)
    np.testing.assert_allclose(out.numpy(), h, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(state.cell.numpy(), c, rtol=1e-10, atol=1e-12)
  if clip is not None:
    assert np.abs(c).max() == pytest.approx(clip)
  elif not forget_gate:
    assert np.abs(c).max() > 1.0  # The 1997 cell integrates without decay.


def test_no_forget_cell_equals_coordinatewise_lstm_core():
  """The same 1997 cell as `CoordinatewiseLSTM(forget_gate=False)`, with its unused f block."""
  cell = hochreiter2001.LSTMCell(3, 4, forget_gate=False, cell_clip=2.0, seed=5,
                                 dtype=tf.float64)
  cell.b.assign(np.linspace(-1, 1, 12))
  lstm = optimizers.CoordinatewiseLSTM(hidden_sizes=(4,), forget_gate=False, cell_clip=2.0,
                                       extra_inputs=2, dtype=tf.float64)
  w_i, w_j, w_o = np.split(cell.w.numpy(), 3, axis=1)
  b_i, b_j, b_o = np.split(cell.b.numpy(), 3)
  weights = dict(lstm.meta_parameters())
  weights["gate_weights/0"] = tf.constant(np.concatenate([w_i, w_j, 0 * w_i, w_o], axis=1))
  weights["gate_biases/0"] = tf.constant(np.concatenate([b_i, b_j, 0 * b_i, b_o]))
  u = tf.constant(np.random.default_rng(2).normal(size=[6, 3]))
  h0 = tf.constant(np.random.default_rng(3).normal(size=[6, 4]))
  c0 = tf.constant(np.random.default_rng(4).normal(size=[6, 4]))
  _, ((h_ref, c_ref),), _ = lstm._core(weights, u, ((h0, c0),))  # pylint: disable=protected-access
  out, state = cell(u, hochreiter2001.snt.LSTMState(hidden=h0, cell=c0))
  np.testing.assert_allclose(out.numpy(), h_ref.numpy(), rtol=1e-12)
  np.testing.assert_allclose(state.cell.numpy(), c_ref.numpy(), rtol=1e-12)


def test_meta_lstm_parameter_count():
  model = hochreiter2001.MetaLSTM()
  assert model.num_weights() == 5089 == 3 * 32 * (3 + 32) + 3 * 32 + 32 * 48 + 48 + 48 + 1
  assert sum(int(np.prod(v.shape)) for v in model.trainable_variables) == 5089
  assert hochreiter2001.MetaLSTM(forget_gate=True).num_weights() == 6241


def test_meta_lstm_prediction_only_sees_earlier_targets():
  model = hochreiter2001.MetaLSTM(lstm_cells=6, hidden_units=5)
  s = task_h.TaskH().streams("test", 2, 7, seed=0)
  y_changed = s["y"].numpy().copy()
  y_changed[:, 4] += 10.0
  base = model(s["x"], s["y"]).numpy()
  changed = model(s["x"], tf.constant(y_changed)).numpy()
  np.testing.assert_array_equal(base[:, :5], changed[:, :5])  # yhat_0..4 do not see y_4.
  assert np.all(np.abs(base[:, 5] - changed[:, 5]) > 0)
  # probe_curves' online errors are the same predictions.
  pts, w = task_h.probe_points(3)
  errors, mse = hochreiter2001.probe_curves(model, s, 7, tf.constant(pts, tf.float32),
                                            tf.constant(w, tf.float32))
  np.testing.assert_allclose(errors.numpy(), (base - s["y"].numpy()) ** 2, rtol=1e-5, atol=1e-6)
  assert mse.shape == (2, 8)


TINY = dict(batch_size=32, sequence_length=20, learning_rate=3e-3, validation_every=100,
            num_validation_functions=64, checkpoint_every=100)


def test_tiny_meta_training_beats_its_untrained_self_and_the_zero_predictor(tmp_path):
  model = hochreiter2001.MetaLSTM(lstm_cells=8, hidden_units=8, seed=1)
  task = task_h.TaskH()
  held_out = task.streams("test", 256, 20, seed=0)

  def late_mse():  # Examples 10..19 of held-out functions.
    return float(np.mean((model(held_out["x"], held_out["y"]).numpy()
                          - held_out["y"].numpy())[:, 10:] ** 2))

  untrained = late_mse()
  config = hochreiter2001.MetaTrainConfig(num_updates=300, **TINY)
  summary = hochreiter2001.MetaLSTMTrainer(model, config, tmp_path, log_fn=lambda m: None).train()
  assert summary["updates"] == 300 and summary["skipped_updates"] == 0
  trained = late_mse()
  zero_predictor = float(np.mean(held_out["y"].numpy()[:, 10:] ** 2))
  assert trained < 0.7 * untrained
  # E[y | x] = 0, so beating the zero predictor needs information from earlier examples.
  assert trained < 0.6 * zero_predictor


def test_meta_training_resumes_exactly_and_exports(tmp_path):
  config = dict(TINY, sequence_length=5, batch_size=4, num_validation_functions=4,
                validation_every=2, checkpoint_every=2)
  make = lambda: hochreiter2001.MetaLSTM(lstm_cells=3, hidden_units=3)
  straight = make()
  hochreiter2001.MetaLSTMTrainer(straight, hochreiter2001.MetaTrainConfig(num_updates=6, **config),
                                 tmp_path / "a", log_fn=lambda m: None).train()
  first = make()
  hochreiter2001.MetaLSTMTrainer(first, hochreiter2001.MetaTrainConfig(num_updates=4, **config),
                                 tmp_path / "b", log_fn=lambda m: None).train()
  resumed = make()  # A fresh process would start from initial weights like this.
  messages = []
  trainer = hochreiter2001.MetaLSTMTrainer(
      resumed, hochreiter2001.MetaTrainConfig(num_updates=6, **config), tmp_path / "b",
      log_fn=messages.append)
  trainer.train()
  assert any("Resuming" in m for m in messages)
  for a, b in zip(straight.trainable_variables, resumed.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-6, atol=1e-7)
  exported, metadata = hochreiter2001.load_meta_lstm(trainer.export(tmp_path / "export"))
  assert metadata["updates_trained"] == 6 and exported.num_weights() == resumed.num_weights()
  with pytest.raises(meta.TrainingError, match="different settings"):
    hochreiter2001.MetaLSTMTrainer(
        make(), hochreiter2001.MetaTrainConfig(num_updates=6, **dict(config, batch_size=5)),
        tmp_path / "b")


# ---- examples to tau --------------------------------------------------------------------------


def test_examples_to_tau_on_hand_made_curves():
  nan, tau = float("nan"), 0.05
  curves = np.array([
      [1.0, 0.5, 0.01, 0.02, 0.01],   # below from n = 2 on
      [1.0, 0.01, 0.2, 0.01, 0.01],   # dips at 1, back above at 2: stays below from 3
      [0.01, 0.01, 0.01, 0.01, 0.01],  # below from the start
      [1.0, 0.01, 0.01, 0.01, 0.06],  # above at the end of the budget: never
      [1.0, 0.01, nan, 0.01, 0.01],   # non-finite counts as above
      [1.0, 0.5, 0.3, 0.2, 0.05],     # exactly tau counts as below
  ])
  np.testing.assert_array_equal(speed.examples_to_tau(curves, tau), [2, 3, 0, np.inf, 3, 4])
  np.testing.assert_array_equal(speed.first_reach(curves, tau), [2, 1, 0, 1, 1, 4])
  assert speed.mean_curve_crossing(curves[:3], tau) == 3


def test_median_ci_uses_order_statistics_and_allows_never():
  values = np.arange(1, 101, dtype=float)[::-1]
  median, low, high = speed.median_ci(values)
  assert (median, low, high) == (50.5, 40, 61)  # Ranks 40 and 61: the textbook n = 100 interval.
  values[:60] = np.inf  # 60% never reach tau: the median is "never".
  assert speed.median_ci(values)[0] == np.inf
  summary = speed.summarize_examples(values, budget=100)
  assert summary["never_fraction"] == 0.6 and summary["budget"] == 100


def test_ratio_of_medians_and_its_bootstrap_ci():
  rng = np.random.default_rng(0)
  fast = rng.uniform(20, 40, size=400)
  slow = fast * 10
  r = speed.ratio_of_medians(slow, fast, num_resamples=300)
  assert r["value"] == pytest.approx(10.0)
  assert r["ci95_low"] == pytest.approx(10.0) and r["ci95_high"] == pytest.approx(10.0)
  r = speed.ratio_of_medians(rng.uniform(200, 400, size=400), fast, num_resamples=300)
  assert r["ci95_low"] < r["value"] < r["ci95_high"]
  assert 8 < r["value"] < 12


# ---- shipped models and the entry point -------------------------------------------------------


def test_shipped_models_load_with_the_documented_sizes():
  model, metadata = hochreiter2001.load_meta_lstm(PRETRAINED / "review_meta_lstm")
  assert model.num_weights() == 5089 and not model.cell.forget_gate
  assert "l2l_tf_experiments.review.run" in metadata["command"]
  forget, _ = hochreiter2001.load_meta_lstm(PRETRAINED / "review_meta_lstm_forget")
  assert forget.cell.forget_gate
  l2l = optimizers.load_optimizer(PRETRAINED / "review_h_l2l")
  assert sum(int(v.shape.num_elements()) for v in l2l.trainable_variables) == 5061
  # Not mistaken for an optimizer: the meta-LSTM directory has no config.json.
  with pytest.raises(optimizers.OptimizerLoadError):
    optimizers.load_optimizer(PRETRAINED / "review_meta_lstm")
  # The figure's defaults are these models.
  assert figures.FLAGS["review_meta_lstm_path"].default == str(PRETRAINED / "review_meta_lstm")


def test_entry_point_retrains_and_writes_figure_and_results(tmp_path):
  args = ["--figure=review_hochreiter2001", f"--output_dir={tmp_path}", "--retrain",
          "--threads=1", "--progress=false", "--review_lstm_cells=3", "--review_hidden_units=3",
          "--review_meta_updates=2", "--review_meta_batch_size=4", "--review_sequence_length=6",
          "--review_validation_every=2", "--review_l2l_epochs=1", "--review_l2l_horizon=4",
          "--review_l2l_truncation=2", "--review_l2l_meta_batch_size=2",
          "--review_l2l_validation_every=1", "--review_num_test_functions=5",
          "--review_num_valid_functions=3", "--review_budget=12", "--review_lr_grid=0.05,0.2",
          "--review_probe_order=3", "--review_bootstrap=20"]
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-m", "l2l_tf_experiments.review.run", *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((tmp_path / "review_hochreiter2001.json").read_text())
  assert (tmp_path / "review_hochreiter2001.png").read_bytes()[:4] == b"\x89PNG"
  assert results["steps"] == list(range(13))
  names = set(results["optimizers"])
  assert len(names) == 5 and names == set(results["examples_to_tau"])
  for curve in results["optimizers"].values():
    assert len(curve["mean"]) == 13
  assert results["tau"] == pytest.approx(0.05 * 98 / 135)
  assert set(results["tuned_learning_rates"][SGD_MLP]["validation_scores"]) == {
      "0.05", "0.2"}
  assert results["ratios"]["primary"]["numerator"] == SGD_MLP
  assert "l2l_tf_experiments.review.run" in results["command"]
  assert (tmp_path / "train" / "meta_lstm" / "export" / "meta_lstm.npz").is_file()
  assert (tmp_path / "train" / "h_l2l" / "optimizer" / "weights.npz").is_file()
  bad = subprocess.run([sys.executable, "-m", "l2l_tf_experiments.review.run", "--figure=nope",
                        f"--output_dir={tmp_path}"], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
  assert bad.returncode == 1 and "Unknown --figure=nope" in bad.stderr
  assert "choose one of: review_hochreiter2001, review_forget_gate, " in bad.stderr
  assert "Traceback" not in bad.stderr

