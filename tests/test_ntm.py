"""NTM-BFGS and NTM-L-BFGS: memory reads and writes against dense NumPy, the window equivalence,
instance separation, and meta-training."""

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import optimizers
from l2l_tf.optimizers import ntm
from tests import helpers


def test_dense_read_and_write_match_numpy():
  rng = np.random.default_rng(0)
  m = rng.normal(size=(2, 5, 5))
  r = rng.normal(size=(2, 5, 1))
  a, b = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3))
  np.testing.assert_allclose(ntm.dense_read(tf.constant(m), tf.constant(r)).numpy(),
                             np.stack([m[i] @ r[i] for i in range(2)]), rtol=1e-12)
  expected = np.stack([m[i] + sum(np.outer(a[i, :, w], b[i, :, w]) for w in range(3))
                       for i in range(2)])
  np.testing.assert_allclose(ntm.dense_write(tf.constant(m), tf.constant(a),
                                             tf.constant(b)).numpy(), expected, rtol=1e-12)


def test_window_read_equals_dense_memory_of_its_pairs():
  rng = np.random.default_rng(1)
  left, right = np.zeros((1, 6, 4)), np.zeros((1, 6, 4))
  dense = np.zeros((1, 4, 4))
  for _ in range(2):  # Two writes of 3 heads fill the window of 6 pairs exactly.
    a, b = rng.normal(size=(1, 4, 3)), rng.normal(size=(1, 4, 3))
    left, right = (x.numpy() for x in ntm.window_write(tf.constant(left), tf.constant(right),
                                                       tf.constant(a), tf.constant(b)))
    dense = ntm.dense_write(tf.constant(dense), tf.constant(a), tf.constant(b)).numpy()
  r = rng.normal(size=(1, 4, 2))
  np.testing.assert_allclose(ntm.window_read(tf.constant(left), tf.constant(right),
                                             tf.constant(r)).numpy(),
                             (dense[0] @ r[0])[None], rtol=1e-10)
  # One more write drops the 3 oldest pairs.
  a, b = rng.normal(size=(1, 4, 3)), rng.normal(size=(1, 4, 3))
  left2, right2 = ntm.window_write(tf.constant(left), tf.constant(right), tf.constant(a),
                                   tf.constant(b))
  np.testing.assert_allclose(left2.numpy()[0, :3], left[0, 3:])
  np.testing.assert_allclose(left2.numpy()[0, 3:], a[0].T)


def run(opt, grads_seq):
  state = opt.initial_state(grads_seq[0])
  out = []
  for grads in grads_seq:
    updates, state = opt.step(grads, state)
    out.append([u.numpy() for u in updates])
  return out, state


def test_lbfgs_window_covering_the_run_equals_dense_memory():
  rng = np.random.default_rng(2)
  steps = 5
  grads_seq = [[tf.constant(rng.normal(size=(2, 3)), tf.float64),
                tf.constant(rng.normal(size=(2, 2, 2)), tf.float64)] for _ in range(steps)]
  dense = optimizers.NTMBFGS(hidden_sizes=(6,), num_global_cells=1, seed=3, dtype=tf.float64)
  window = optimizers.NTMBFGS(hidden_sizes=(6,), num_global_cells=1, seed=3, dtype=tf.float64,
                              memory="window", window=3 * steps)
  a, state = run(dense, grads_seq)
  b, _ = run(window, grads_seq)
  for step_a, step_b in zip(a, b):
    for x, y in zip(step_a, step_b):
      np.testing.assert_allclose(x, y, rtol=1e-10, atol=1e-12)
  # The memory was really used: it is not zero and the reads changed the updates.
  assert np.abs(state["memory"].numpy()).max() > 0
  short = optimizers.NTMBFGS(hidden_sizes=(6,), num_global_cells=1, seed=3, dtype=tf.float64,
                             memory="window", window=3)
  c, _ = run(short, grads_seq)
  assert not np.allclose(a[-1][0], c[-1][0])


def test_update_adds_the_memory_read_to_the_controller_proposal():
  """With the memory set by hand, the update moves by exactly M r (paper: g = read(M))."""
  opt = optimizers.NTMBFGS(hidden_sizes=(4,), num_global_cells=0, seed=1, dtype=tf.float64)
  grads = [tf.constant([[0.3, -0.2, 0.5]], tf.float64)]
  state = opt.initial_state(grads)
  base_updates, _ = opt.step(grads, state)
  memory = tf.constant(np.arange(9.0).reshape(1, 3, 3) / 10)
  with_memory = dict(state, memory=memory)
  updates, new_state = opt.step(grads, with_memory)
  inputs = tf.concat([opt.controller.preprocessing(tf.reshape(grads[0], [-1])),
                      state["reads"]], axis=1)
  out, _, _ = opt.controller.core(inputs, state["controller"], tf.zeros([3], tf.int32))
  r = out[:, 1].numpy()
  np.testing.assert_allclose(updates[0].numpy() - base_updates[0].numpy(),
                             (memory.numpy()[0] @ r)[None], rtol=1e-10)
  np.testing.assert_allclose(new_state["reads"].numpy()[:, 0], memory.numpy()[0] @ r, rtol=1e-10)


def test_instances_have_separate_memories():
  opt = optimizers.NTMBFGS(hidden_sizes=(5,), num_global_cells=1, seed=2)
  g, g2 = helpers.two_instance_gradients(3, 4, 5.0)
  a, _ = run(opt, [[g]] * 3)
  b, _ = run(opt, [[g2]] * 3)
  np.testing.assert_allclose(a[-1][0][0], b[-1][0][0], rtol=1e-5)


def test_config_round_trip_and_keras_rejects_it(tmp_path):
  opt = optimizers.NTMBFGS(hidden_sizes=(5,), memory="window", window=7)
  optimizers.save_optimizer(opt, tmp_path / "ntm")
  loaded = optimizers.load_optimizer(tmp_path / "ntm")
  assert loaded.get_config() == opt.get_config()
  assert loaded.get_config()["name"] == "ntm_lbfgs"
  from l2l_tf.keras_optimizer import LearnedOptimizer  # pylint: disable=g-import-not-at-top
  with pytest.raises(ValueError, match="ntm_lbfgs"):
    LearnedOptimizer.from_pretrained(str(tmp_path / "ntm"))


def test_ntm_meta_trains(tmp_path):
  opt = optimizers.NTMBFGS(hidden_sizes=(8,), num_global_cells=2, output_scale=1.0)
  summary = helpers.tiny_meta_train(opt, tmp_path)
  assert np.isfinite(summary["best_validation_final_loss"])
  assert isinstance(optimizers.load_optimizer(tmp_path), optimizers.NTMBFGS)


def test_delta_write_replaces_the_value_under_a_unit_key_and_matches_numpy():
  rng = np.random.default_rng(5)
  memory = rng.normal(size=(2, 5, 5))
  a, b = rng.normal(size=(2, 5, 3)), rng.normal(size=(2, 5, 3))
  unit = ntm.unit_columns(tf.constant(b)).numpy()
  np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-10)
  want = memory.copy()
  for w in range(3):
    for i in range(2):
      want[i] = want[i] + np.outer(a[i, :, w] - want[i] @ unit[i, :, w], unit[i, :, w])
  got = ntm.dense_delta_write(tf.constant(memory), tf.constant(a), tf.constant(unit)).numpy()
  np.testing.assert_allclose(got, want, rtol=1e-10)
  # The last head's key now reads back exactly its value (the 1992 additive rule would add).
  np.testing.assert_allclose(np.einsum("bij,bj->bi", got, unit[:, :, 2]), a[:, :, 2], rtol=1e-9)


def test_window_delta_write_equals_the_dense_delta_memory():
  rng = np.random.default_rng(6)
  left, right = np.zeros((1, 6, 4)), np.zeros((1, 6, 4))
  dense = np.zeros((1, 4, 4))
  for _ in range(2):  # Two writes of 3 heads: the window of 6 holds every pair.
    a = rng.normal(size=(1, 4, 3))
    b = ntm.unit_columns(tf.constant(rng.normal(size=(1, 4, 3)))).numpy()
    left, right = (x.numpy() for x in ntm.window_delta_write(
        tf.constant(left), tf.constant(right), tf.constant(a), tf.constant(b)))
    dense = ntm.dense_delta_write(tf.constant(dense), tf.constant(a), tf.constant(b)).numpy()
  r = rng.normal(size=(1, 4, 2))
  np.testing.assert_allclose(ntm.window_read(tf.constant(left), tf.constant(right),
                                             tf.constant(r)).numpy(),
                             (dense[0] @ r[0])[None], rtol=1e-9, atol=1e-12)


def mean_read(opt, n, steps=4):
  rng = np.random.default_rng(7)
  params = [tf.zeros([1, n], tf.float64)]
  state = opt.initial_state(params)
  for _ in range(steps):
    _, state = opt.step([tf.constant(rng.normal(size=(1, n)), tf.float64)], state)
  return float(np.mean(np.abs(state["reads"].numpy())))


@pytest.mark.parametrize("write_rule", ["additive", "delta"])
def test_normalized_reads_do_not_grow_with_the_number_of_coordinates(write_rule):
  make = lambda **kw: optimizers.NTMBFGS(hidden_sizes=(4,), num_global_cells=0, memory="window",
                                         window=6, seed=1, dtype=tf.float64, **kw)
  plain = mean_read(make(), 4000) / mean_read(make(), 40)
  normalized = (mean_read(make(normalize=True, write_rule=write_rule), 4000)
                / mean_read(make(normalize=True, write_rule=write_rule), 40))
  assert plain > 20  # The paper's form: reads sum over n coordinates.
  assert 1 / 3 < normalized < 3, normalized


def test_new_memory_options_round_trip_and_leave_old_configs_unchanged(tmp_path):
  old = optimizers.NTMBFGS(hidden_sizes=(3,), memory="window", window=4).get_config()
  assert "normalize" not in old and "write_rule" not in old and "read_scale" not in old
  opt = optimizers.NTMBFGS(hidden_sizes=(3,), memory="window", window=4, normalize=True,
                           write_rule="delta", read_scale=0.1)
  optimizers.save_optimizer(opt, tmp_path / "ntm")
  loaded = optimizers.load_optimizer(tmp_path / "ntm")
  assert loaded.normalize and loaded.write_rule == "delta" and loaded.read_scale == 0.1
  with pytest.raises(ValueError, match="read_scale must be positive"):
    optimizers.NTMBFGS(read_scale=0.0)
  with pytest.raises(ValueError, match="write_rule must be 'additive' or 'delta'"):
    optimizers.NTMBFGS(write_rule="hebbian")


@pytest.mark.parametrize("memory", ["dense", "window"])
def test_read_scale_multiplies_only_the_reads_in_the_update(memory):
  """update = output_scale * proposal + read_scale * sum of reads: the memory and the reads fed
  back to the controller do not depend on read_scale, so updates at scale s lie on the line
  through those at scales 1 and (nearly) 0, at every step."""
  rng = np.random.default_rng(3)
  make = lambda s: optimizers.NTMBFGS(hidden_sizes=(5,), num_global_cells=1, memory=memory,
                                      window=3, seed=2, dtype=tf.float64, normalize=True,
                                      write_rule="delta", output_scale=0.1, read_scale=s)
  scales = (1.0, 0.25, 1e-300)
  opts = [make(s) for s in scales]
  params = [tf.zeros([2, 3, 4], tf.float64)]
  states = [o.initial_state(params) for o in opts]
  for _ in range(4):
    grads = [tf.constant(rng.normal(size=(2, 3, 4)), tf.float64)]
    steps = [o.step(grads, st) for o, st in zip(opts, states)]
    states = [st for _, st in steps]
    one, quarter, zero = (u[0].numpy() for u, _ in steps)
    np.testing.assert_allclose(quarter, zero + 0.25 * (one - zero), rtol=1e-9, atol=1e-12)
    reads = states[0]["reads"].numpy()
    np.testing.assert_allclose(one - zero, np.reshape(reads.sum(axis=1), one.shape), rtol=1e-9,
                               atol=1e-12)
  assert np.abs(reads).max() > 1e-3  # The memory is in use.


def test_zero_value_init_starts_with_an_empty_memory_that_meta_training_can_turn_on():
  """With zero_value_init the written values are 0 until the meta-parameters move: every read
  is 0 and the update is the controller's proposal alone; the meta-gradient with respect to the
  zeroed weights is not 0, so meta-training can turn the memory on."""
  rng = np.random.default_rng(5)
  make = lambda **kw: optimizers.NTMBFGS(hidden_sizes=(5,), num_global_cells=1, memory="window",
                                         window=3, seed=4, dtype=tf.float64, normalize=True,
                                         write_rule="delta", output_scale=0.1, **kw)
  opt = make(zero_value_init=True)
  values = slice(1 + opt.read_heads, 1 + opt.read_heads + opt.write_heads)
  w = opt.controller.output_weights.numpy()
  assert not w[:, values].any() and w[:, :values.start].any() and w[:, values.stop:].any()
  np.testing.assert_array_equal(np.delete(w, np.r_[values], axis=1),
                                np.delete(make().controller.output_weights.numpy(),
                                          np.r_[values], axis=1))
  assert opt.get_config()["zero_value_init"] and "zero_value_init" not in make().get_config()
  x = tf.Variable(rng.normal(size=(2, 6)))
  target = tf.constant(rng.normal(size=(2, 6)))
  with tf.GradientTape() as tape:
    params, state, total = [x + 0.0], opt.initial_state([x]), 0.0
    for _ in range(4):
      grads = [params[0] - target]
      update, state = opt.step(grads, state)
      assert not state["reads"].numpy().any()  # The memory is empty: nothing to read.
      params = [params[0] + update[0]]
      total += tf.reduce_sum(tf.square(params[0] - target))
  grad = tape.gradient(total, opt.controller.output_weights).numpy()
  assert np.abs(grad[:, values]).max() > 1e-8
