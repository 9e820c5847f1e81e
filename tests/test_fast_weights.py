"""The fast-weight and self-referential optimizers against NumPy transcriptions of their rules."""

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import errors, meta, optimizers, problems


def softmax(x):
  e = np.exp(x - x.max(axis=-1, keepdims=True))
  return e / e.sum(axis=-1, keepdims=True)


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def log_and_sign(g, p=10.0):
  big = np.abs(g) >= np.exp(-p)
  log = np.where(big, np.log(np.abs(g) + 1e-30) / p, -1.0)
  sign = np.where(big, np.sign(g), np.exp(p) * g)
  return np.stack([log, sign], axis=1)


def values(module):
  return {v.name.split("/")[-1].split(":")[0]: v.numpy().astype(np.float64)
          for v in module.trainable_variables}


def numpy_fast_weights(module, grads_sequence):
  w = values(module)
  d = module.fast_size
  n = grads_sequence[0].size
  fast, read = np.zeros((n, d, d)), np.zeros((n, d))
  out_updates = []
  for g in grads_sequence:
    x = np.concatenate([log_and_sign(g), read], axis=1)
    out = np.tanh(x @ w["slow_w1"] + w["slow_b1"]) @ w["slow_w2"] + w["slow_b2"]
    key, value, query = softmax(out[:, :d]), out[:, d:2 * d], softmax(out[:, 2 * d:3 * d])
    beta = sigmoid(out[:, 3 * d:])
    if module.rule == "delta":
      value = value - np.einsum("nij,nj->ni", fast, key)
    fast = fast + beta[:, :, None] * np.einsum("ni,nj->nij", value, key)
    read = np.einsum("nij,nj->ni", fast, query)
    out_updates.append(module.output_scale * (read @ w["read_w"] + w["read_b"])[:, 0])
  return out_updates


def numpy_srwm(module, grads_sequence):
  w = values(module)
  d = module.fast_size
  n = grads_sequence[0].size
  delta, proposal = np.zeros((n, 1 + 2 * d + 4, d)), np.zeros((n, 1))
  blocks = [0] + [1] * d + [2] * d + [3] * 4
  out_updates = []
  for g in grads_sequence:
    x = np.concatenate([log_and_sign(g), proposal], axis=1)
    phi = softmax(x @ w["in_w"] + w["in_b"])
    matrix = w["initial_matrix"][None] + delta
    out = np.einsum("nrj,nj->nr", matrix, phi)
    y, q, k = out[:, :1], softmax(out[:, 1:1 + d]), softmax(out[:, 1 + d:1 + 2 * d])
    beta = sigmoid(out[:, 1 + 2 * d:])[:, blocks]
    change = np.einsum("nrj,nj->nr", matrix, q) - np.einsum("nrj,nj->nr", matrix, k)
    delta = delta + np.einsum("nr,nj->nrj", beta * change, k)
    proposal = y
    out_updates.append(module.output_scale * y[:, 0])
  return out_updates


def gradient_sequence(num_steps=4, n=7, seed=0):
  rng = np.random.default_rng(seed)
  return [rng.normal(size=n) * 10.0 ** rng.uniform(-4, 1, size=n) for _ in range(num_steps)]


def library_updates(module, grads_sequence):
  grads = [tf.constant(g, tf.float64) for g in grads_sequence]
  state = module.initial_state([grads[0]])
  out = []
  for g in grads:
    (update,), state = module.step([g], state)
    out.append(update.numpy())
  return out


@pytest.mark.parametrize("make,transcription", [
    (lambda: optimizers.FastWeightOptimizer(fast_size=3, hidden_size=4, rule="delta", seed=1,
                                            dtype=tf.float64, output_scale=0.5), numpy_fast_weights),
    (lambda: optimizers.FastWeightOptimizer(fast_size=4, hidden_size=3, rule="additive", seed=2,
                                            dtype=tf.float64), numpy_fast_weights),
    (lambda: optimizers.SelfReferentialOptimizer(fast_size=3, seed=3, dtype=tf.float64,
                                                 output_scale=0.5), numpy_srwm),
    (lambda: optimizers.SelfReferentialOptimizer(fast_size=4, seed=3, dtype=tf.float64,
                                                 init="sign_descent"), numpy_srwm),
], ids=["fast_weights_delta", "fast_weights_additive", "srwm", "srwm_sign_descent"])
def test_updates_match_a_numpy_transcription(make, transcription):
  module = make()
  grads = gradient_sequence()
  for got, want in zip(library_updates(module, grads), transcription(module, grads)):
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("name", ["fast_weights", "srwm"])
def test_meta_gradients_reach_every_meta_parameter_and_training_runs(name, tmp_path):
  problem = problems.Quadratic(num_dims=3)
  opt = optimizers.make_optimizer({"name": name, "fast_size": 3, "seed": 5})
  config = meta.TrainConfig(num_epochs=2, horizon=6, truncation=3, meta_batch_size=4,
                            meta_learning_rate=1e-2, validation_every=2,
                            num_validation_problems=4, checkpoint_every=2)
  trainer = meta.MetaTrainer(problem, opt, config, tmp_path, log_fn=lambda m: None)
  instance, params = problem.sample(4, problems.split_seed(0, "train"))
  with tf.GradientTape() as tape:
    loss, _, _ = trainer._truncation_loss(  # pylint: disable=protected-access
        params, opt.initial_state(params), instance, tf.constant(0))
  grads = tape.gradient(loss, trainer.meta_vars)
  for v, g in zip(trainer.meta_vars, grads):
    assert g is not None and np.any(g.numpy() != 0), v.name
  before = [v.numpy().copy() for v in opt.trainable_variables]
  summary = trainer.train(progress=False)
  assert np.isfinite(summary["best_validation_final_loss"])
  assert any(not np.array_equal(b, v.numpy()) for b, v in zip(before, opt.trainable_variables))
  loaded = optimizers.load_optimizer(summary["optimizer_dir"])
  assert loaded.get_config() == opt.get_config()


def test_bad_settings_are_refused_with_what_to_do():
  with pytest.raises(errors.ConfigError, match="rule must be one of additive, delta"):
    optimizers.FastWeightOptimizer(rule="hebbian")
  with pytest.raises(errors.ConfigError, match="stateless one"):
    optimizers.SelfReferentialOptimizer(preprocessing={"name": "normalized_moments"})
  with pytest.raises(errors.ConfigError, match="must be positive"):
    optimizers.FastWeightOptimizer(fast_size=0)
  with pytest.raises(errors.ConfigError, match="init must be one of normal, sign_descent"):
    optimizers.SelfReferentialOptimizer(init="zeros")
  with pytest.raises(errors.ConfigError, match="needs fast_size >= 2"):
    optimizers.SelfReferentialOptimizer(fast_size=1, init="sign_descent")


def test_srwm_sign_descent_start_is_its_transcription_and_descends_on_every_coordinate():
  """The `sign_descent` start changes only the documented entries of a `normal` draw: the input
  projection's columns 0, 1 (+-3 on the sign input, zero elsewhere), row 0 of W0
  ([-1, +1, 0, ...]) and the four write-strength rows (shifted by -3). Its first update is
  opposite in sign to every coordinate's gradient, the untrained `normal` start's is not."""
  normal = optimizers.SelfReferentialOptimizer(fast_size=5, seed=7, dtype=tf.float64)
  before = values(normal)
  changed = optimizers.SelfReferentialOptimizer(fast_size=5, seed=7, dtype=tf.float64)
  for v, w in zip(changed.trainable_variables, normal.trainable_variables):
    v.assign(w)
  changed._start_as_sign_descent()  # pylint: disable=protected-access
  want_in_w = before["in_w"].copy()
  want_in_w[:, :2] = 0.0
  want_in_w[1, :2] = [3.0, -3.0]  # log_and_sign's second output is the sign.
  want_matrix = before["initial_matrix"].copy()
  want_matrix[0] = [-1.0, 1.0, 0.0, 0.0, 0.0]
  want_matrix[-4:] -= 3.0
  np.testing.assert_array_equal(values(changed)["in_w"], want_in_w)
  np.testing.assert_array_equal(values(changed)["initial_matrix"], want_matrix)
  np.testing.assert_array_equal(values(changed)["in_b"], before["in_b"])
  sign = optimizers.SelfReferentialOptimizer(fast_size=5, seed=7, dtype=tf.float64,
                                             init="sign_descent")
  np.testing.assert_array_equal(values(sign)["in_w"][:, :2], want_in_w[:, :2])
  np.testing.assert_array_equal(values(sign)["initial_matrix"][0], want_matrix[0])
  grads = gradient_sequence(num_steps=1, n=200, seed=4)
  big = np.abs(grads[0]) >= np.exp(-10.0)  # Where log_and_sign's sign input is sgn(g).
  first = library_updates(sign, grads)[0]
  assert np.all(np.sign(first[big]) == -np.sign(grads[0][big]))
  assert np.all(np.abs(first[big]) > 0.01), np.abs(first[big]).min()
  untrained = library_updates(normal, grads)[0]
  assert not np.all(np.sign(untrained[big]) == -np.sign(grads[0][big]))
  assert sign.get_config()["init"] == "sign_descent" and "init" not in normal.get_config()
  loaded = optimizers.make_optimizer(sign.get_config())
  assert loaded.init == "sign_descent"


def test_delta_rule_fixed_point_writing_the_stored_value_changes_nothing():
  """With the slow net's outputs set by hand (key softmax([ln 3, 0]) = [3/4, 1/4], value
  [0.4, -0.7], write strength sigmoid(0) = 1/2) and a fast matrix that already stores the value
  under the key (W k = v), the delta rule leaves W as it is; the additive rule still adds
  beta v k^T, and from another W the delta rule moves W k toward v by beta |k|^2."""
  key, value = np.array([0.75, 0.25]), np.array([0.4, -0.7])
  stored = np.outer(value, key) / key.dot(key)  # W k = v.
  np.testing.assert_allclose(stored @ key, value)
  grads = [tf.constant([[0.3]], tf.float64)]

  def write(rule, fast):
    opt = optimizers.FastWeightOptimizer(fast_size=2, hidden_size=3, rule=rule, seed=1,
                                         dtype=tf.float64)
    opt.slow_w2.assign(tf.zeros_like(opt.slow_w2))
    opt.slow_b2.assign([np.log(3.0), 0.0, 0.4, -0.7, 0.0, 0.0, 0.0])  # k logits, v, q logits, beta.
    state = {"fast": tf.constant(fast[None], tf.float64), "read": tf.zeros([1, 2], tf.float64)}
    return opt.step(grads, state)[1]["fast"].numpy()[0]

  np.testing.assert_allclose(write("delta", stored), stored, atol=1e-15)
  np.testing.assert_allclose(write("additive", stored), stored + 0.5 * np.outer(value, key))
  other = np.array([[1.0, -2.0], [0.5, 3.0]])
  moved = write("delta", other)
  np.testing.assert_allclose(moved @ key - other @ key,
                             0.5 * key.dot(key) * (value - other @ key))


def test_self_referential_update_by_hand_on_a_2_x_2_case():
  """SRWM with d = 2 (rows: y, q1, q2, k1, k2 and 4 write strengths), phi = softmax(0, 0) =
  [1/2, 1/2] (input weights 0) and W0 rows y = [2, 0], q = [1, 1], k1 = [2 ln 3, 0], the rest 0:
  step 1: y = 1, update 0.1; query [1/2, 1/2]; key softmax([ln 3, 0]) = [3/4, 1/4]; strengths 1/2.
  The y row changes by 1/2 (W q - W k)_y k^T = 1/2 (1 - 3/2) [3/4, 1/4] = [-3/16, -1/16]; the
  query rows by 0 (W q = W k = 1 there). Step 2 reads the modified row: y = 1/2 (2 - 3/16 - 1/16)
  = 7/8, update 0.0875."""
  opt = optimizers.SelfReferentialOptimizer(fast_size=2, seed=3, dtype=tf.float64)
  opt.in_w.assign(tf.zeros_like(opt.in_w))
  opt.in_b.assign(tf.zeros_like(opt.in_b))
  w0 = np.zeros([9, 2])
  w0[0], w0[1], w0[2], w0[3] = [2.0, 0.0], [1.0, 1.0], [1.0, 1.0], [2.0 * np.log(3.0), 0.0]
  opt.initial_matrix.assign(w0)
  params = [tf.zeros([1], tf.float64)]
  state = opt.initial_state(params)
  update, state = opt.step([tf.constant([0.3], tf.float64)], state)
  np.testing.assert_allclose(update[0].numpy(), [0.1])
  delta = state["delta"].numpy()[0]
  np.testing.assert_allclose(delta[0], [-3 / 16, -1 / 16])
  np.testing.assert_allclose(delta[1:3], 0.0, atol=1e-15)
  np.testing.assert_allclose(delta[3], -0.25 * np.log(3.0) * np.array([0.75, 0.25]))
  update, state = opt.step([tf.constant([-0.2], tf.float64)], state)
  np.testing.assert_allclose(update[0].numpy(), [0.0875])


def test_srwm_init_flag_reaches_the_config_and_is_refused_for_other_optimizers():
  from l2l_tf import cli  # pylint: disable=g-import-not-at-top
  from tests import helpers  # pylint: disable=g-import-not-at-top
  with helpers.parsed_flags(["x", "--learned_optimizer=srwm", "--srwm_init=sign_descent"]):
    assert cli.optimizer_config()["init"] == "sign_descent"
  with helpers.parsed_flags(["x", "--learned_optimizer=srwm"]):
    assert "init" not in cli.optimizer_config()  # Older runs' configs stay as they were.
  with helpers.parsed_flags(["x", "--learned_optimizer=lstm", "--srwm_init=sign_descent"]):
    with pytest.raises(cli.UsageError, match="is for --learned_optimizer=srwm; drop it"):
      cli.optimizer_config()
