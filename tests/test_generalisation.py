"""Meta-training that generalises (issue 14): problem families, the log meta-loss, the horizon
curriculum, and a tiny end-to-end run of l2l_tf.train with every new flag on."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import meta, optimizers, problems
from l2l_tf.meta import checkpointing, unroll
from l2l_tf.problems import family

REPO = Path(__file__).resolve().parent.parent


def test_meta_loss_terms_against_numpy():
  losses = np.array([0.5, 2.0, 0.0, 7.0], np.float32)
  np.testing.assert_allclose(unroll.meta_loss_term(tf.constant(losses)).numpy(), losses.mean(),
                             rtol=1e-6)
  logged = np.log(np.maximum(losses, 1e-12)).mean()
  np.testing.assert_allclose(unroll.meta_loss_term(tf.constant(losses), "log").numpy(), logged,
                             rtol=1e-6)
  # A constant factor of f shifts the log meta-loss and leaves its gradient unchanged.
  x = tf.constant([0.3, 1.7])
  grads = []
  for c in (1.0, 1000.0):
    with tf.GradientTape() as tape:
      tape.watch(x)
      term = unroll.meta_loss_term(c * tf.square(x), "log")
    grads.append(tape.gradient(term, x).numpy())
  np.testing.assert_allclose(grads[0], grads[1], rtol=1e-5)


def test_horizon_curriculum_and_bad_settings():
  config = meta.TrainConfig(horizon=4, truncation=2, horizon_curriculum=((0, 4), (3, 8), (5, 2)))
  config.validate()
  assert [config.training_horizon(e) for e in range(7)] == [4, 4, 4, 8, 8, 2, 2]
  assert meta.TrainConfig(horizon=6, truncation=2).training_horizon(9) == 6
  for bad in (dict(horizon_curriculum=((0, 5),)), dict(horizon_curriculum=((3, 4), (1, 8))),
              dict(meta_loss_weighting="cube"), dict(num_validation_members=0)):
    with pytest.raises(meta.TrainingError):
      meta.TrainConfig(horizon=4, truncation=2, **bad).validate()


def tiny_family(split="train", scale=0.0):
  rng = np.random.default_rng(0 if split == "train" else 1)
  images, labels = rng.integers(0, 256, (64, 12), dtype=np.uint8), rng.integers(0, 10, 64)
  base = problems.MLPClassifier(images, labels, hidden_sizes=(3,), batch_size=8)
  members = family.mlp_family_members({"name": "tiny"}, [3, 4], [1, 2], ["sigmoid", "relu"], [8],
                                      [0.01])
  wrap = (lambda p: family.ScaledObjective(p, scale)) if scale else (lambda p: p)
  build = lambda c: wrap(base.variant(c["hidden_sizes"], c["activation"], c["batch_size"],
                                      c["init_stddev"]))
  return family.ProblemFamily(members, build)


def test_family_meta_training_draws_members_per_epoch_and_resumes(tmp_path):
  tf.config.experimental.enable_op_determinism()

  def trainer(directory, epochs):
    config = meta.TrainConfig(num_epochs=epochs, horizon=4, truncation=2, meta_batch_size=2,
                              validation_every=2, num_validation_problems=3, checkpoint_every=2,
                              meta_loss_weighting="log", horizon_curriculum=((0, 2), (4, 4)),
                              num_validation_members=2)
    opt = optimizers.CoordinatewiseLSTM(hidden_sizes=(4,), output_scale=0.1, seed=1,
                                        preprocessing={"name": "normalized_moments"})
    return meta.MetaTrainer(tiny_family(scale=1.0), opt, config, directory,
                            log_fn=lambda m: None, validation_problem=tiny_family("valid"))

  straight = trainer(tmp_path / "a", 6)
  calls = []
  original = straight._member_meta_step  # pylint: disable=protected-access


  def counted(index):
    step = original(index)
    return lambda *args: (calls.append(index), step(*args))[1]

  straight._member_meta_step = counted  # pylint: disable=protected-access
  straight.train(progress=False)
  seeds = [problems.split_seed(0, "train", e) for e in range(6)]
  drawn = [straight.family.member_index(s) for s in seeds]
  # One meta-step per truncation: 1 per epoch for epochs 0-3 (horizon 2), 2 for 4-5 (horizon 4).
  assert calls == drawn[:4] + [drawn[4]] * 2 + [drawn[5]] * 2
  assert len(set(drawn)) > 1 and set(straight._member_steps) == set(drawn)  # pylint: disable=protected-access
  assert len(straight._validation_sets) == 2  # pylint: disable=protected-access
  assert math.isfinite(float(straight.best_score.numpy()))
  # Stopped after 4 epochs and resumed: the meta-parameters of the uninterrupted run.
  trainer(tmp_path / "b", 4).train(progress=False)
  resumed = trainer(tmp_path / "b", 6)
  assert int(resumed.epoch.numpy()) == 4
  resumed.train(progress=False)
  for a, b in zip(straight.meta_vars, resumed.meta_vars):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  description = json.loads((tmp_path / "a" / "run_config.json").read_text())
  assert description["train"]["meta_loss_weighting"] == "log"
  assert len(description["problem"]["members"]) == 8


def test_runs_from_before_the_new_settings_keep_their_identity(tmp_path):
  trainer = meta.MetaTrainer(problems.Quadratic(num_dims=2),
                             optimizers.CoordinatewiseLSTM(hidden_sizes=(3,)),
                             meta.TrainConfig(num_epochs=1, horizon=2, truncation=2,
                                              num_validation_problems=2), tmp_path,
                             log_fn=lambda m: None)
  train = json.loads((tmp_path / "run_config.json").read_text())["train"]
  assert not set(meta.TrainConfig.LATER_SETTINGS) & set(train)
  del trainer


def test_train_entry_point_with_every_new_flag(tmp_path):
  # Needs MNIST, which `make test` prepares.
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  out = tmp_path / "run"
  args = [sys.executable, "-m", "l2l_tf.train", "--problem=mnist", "--optimizee_hidden_sizes=4",
          "--batch_size=8", "--hidden_sizes=5", "--preprocessing=normalized_moments",
          "--momentum_decays=0.5,0.9", "--second_moment_decay=0.99", "--output_scale=0.1",
          "--family_hidden_widths=3,4", "--family_num_layers=1,2",
          "--family_activations=sigmoid,relu", "--family_batch_sizes=8,16",
          "--family_init_stddevs=0.01,0.1", "--objective_log10_scale_range=1",
          "--meta_loss_weighting=log", "--horizon_curriculum=0:2,2:4", "--horizon=4",
          "--truncation=2", "--num_epochs=3", "--meta_batch_size=2",
          "--num_validation_problems=2", "--num_validation_members=2", "--validation_every=3",
          "--meta_lr_decay_epochs=2", "--meta_lr_final_fraction=0.5",
          f"--output_dir={out}", "--progress=false", "--threads=1"]
  proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  saved = json.loads((out / "optimizer" / "config.json").read_text())
  assert saved["optimizer"]["preprocessing"] == {
      "name": "normalized_moments", "momentum_decays": [0.5, 0.9], "second_moment_decay": 0.99,
      "epsilon": 1e-8}
  members = saved["metadata"]["problem"]["members"]
  assert len(members) == 32 and {m["activation"] for m in members} == {"sigmoid", "relu"}
  assert all(m["objective_log10_scale_range"] == 1.0 for m in members)
  assert saved["metadata"]["train"]["horizon_curriculum"] == [[0, 2], [2, 4]]
  assert saved["metadata"]["train"]["meta_lr_decay_epochs"] == 2
  history = checkpointing.validation_history(out)
  assert [r["step"] for r in history] == [0, 3] and history[-1]["mean_loss"] is not None
  bad = subprocess.run(args[:-3] + ["--family_activations=tanh", f"--output_dir={tmp_path / 'x'}"],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert bad.returncode == 1
  assert bad.stderr.strip().splitlines()[-1] == (
      "error: --family_activations must be sigmoid or relu, got tanh.")


def test_scale_free_inputs_and_log_meta_loss_make_the_meta_gradient_blind_to_objective_scale():
  """Why LSTM v2's ablation row without objective scaling is a noise floor: with normalised
  moments as inputs and the log meta-loss, multiplying f by a constant leaves the truncation's
  meta-gradient unchanged (up to the inputs' epsilon), while with LogAndSign inputs it does not."""
  from l2l_tf.meta import estimators  # pylint: disable=g-import-not-at-top
  base_problem = problems.make_problem({"name": "quadratic", "num_dims": 5})
  scaled = family.ScaledObjective(base_problem, 1.0)
  instance, params = scaled.sample(4, problems.split_seed(0, "train", 0))

  def meta_gradient(preprocessing, log10_scale):
    optimizer = optimizers.make_optimizer({"name": "lstm", "hidden_sizes": [6], "seed": 0,
                                           "preprocessing": preprocessing})
    fixed = dict(instance, log10_scale=tf.fill([4], tf.constant(log10_scale, tf.float64)))
    with tf.GradientTape() as tape:
      loss, _, _ = estimators.truncation_loss(scaled, optimizer, params,
                                              optimizer.initial_state(params), fixed,
                                              tf.constant(0), 5, "log")
    return np.concatenate([g.numpy().ravel() for g in
                           tape.gradient(loss, optimizer.trainable_variables)])

  moments = {"name": "normalized_moments", "momentum_decays": [0.5, 0.9]}
  g1, g2 = meta_gradient(moments, 0.0), meta_gradient(moments, 2.0)
  np.testing.assert_allclose(g1, g2, rtol=1e-3, atol=1e-6 * np.abs(g1).max())
  h1, h2 = meta_gradient("log_and_sign", 0.0), meta_gradient("log_and_sign", 2.0)
  assert np.abs(h1 - h2).max() > 0.01 * np.abs(h1).max()
