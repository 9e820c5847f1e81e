"""The conv optimizee (paper Fig. 7): loss against a NumPy transcription, independent instances,
parameter groups, label subsets, and tiny meta-training runs with the two-LSTM optimizer."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import errors, meta, optimizers, problems
from l2l_tf.data import label_subsets
from l2l_tf.problems import conv
from tests import helpers

REPO = Path(__file__).resolve().parent.parent


def synthetic_images(n=300, size=8, channels=1, seed=0):
  """uint8 images whose label is a bright row band (learnable), labels 0..9."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, n)
  images = rng.integers(0, 80, size=(n, size, size, channels)).astype(np.uint8)
  for i, label in enumerate(labels):
    images[i, (label * size) // 10, :, :] = 250
  return images, labels


# ---- an independent NumPy transcription of one instance's network ----------------------------


def np_conv_same(x, w):
  """Cross-correlation with SAME padding (odd kernel: (k - 1) / 2 zeros on each side)."""
  k = w.shape[0]
  p = (k - 1) // 2
  xp = np.pad(x, [(0, 0), (p, p), (p, p), (0, 0)])
  out = np.zeros(x.shape[:3] + (w.shape[3],))
  for dy in range(k):
    for dx in range(k):
      out += np.einsum("bhwc,co->bhwo", xp[:, dy:dy + x.shape[1], dx:dx + x.shape[2]], w[dy, dx])
  return out


def np_max_pool_same(x):
  """2x2 / 2 max-pool with SAME padding: odd sizes pad one -inf row / column at the end."""
  h, w = -(-x.shape[1] // 2), -(-x.shape[2] // 2)
  xp = np.pad(x, [(0, 0), (0, 2 * h - x.shape[1]), (0, 2 * w - x.shape[2]), (0, 0)],
              constant_values=-np.inf)
  return xp.reshape(x.shape[0], h, 2, w, 2, x.shape[3]).max(axis=(2, 4))


def np_batch_norm(x, beta, axes):
  mean = x.mean(axis=axes, keepdims=True)
  var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
  return (x - mean) / np.sqrt(var + 1e-3) + beta


def np_loss(params, images, labels, num_conv, num_fc):
  """Mean cross-entropy of one instance (float64)."""
  params = [np.asarray(p, np.float64) for p in params]
  x = images.astype(np.float64) / 255.0
  for i in range(num_conv):
    w, beta = params[2 * i], params[2 * i + 1]
    x = np_max_pool_same(np.maximum(np_batch_norm(np_conv_same(x, w), beta, (0, 1, 2)), 0))
  x = x.reshape(len(x), -1)
  for i in range(num_fc):
    w, beta = params[2 * (num_conv + i)], params[2 * (num_conv + i) + 1]
    x = np.maximum(np_batch_norm(x @ w, beta, (0,)), 0)
  logits = x @ params[-2] + params[-1]
  top = logits.max(axis=1, keepdims=True)
  logz = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
  return np.mean(logz - logits[np.arange(len(labels)), labels])


def tiny_problem(**kwargs):
  images, labels = synthetic_images(size=6, channels=2)
  config = dict(conv_channels=(3, 4), kernel_size=3, fc_sizes=(5,), image_size=6, batch_size=7)
  config.update(kwargs)
  return problems.ConvClassifier(images, labels, **config), images, labels


def perturbed_params(problem, num, seed=1):
  """theta_0 with non-trivial offsets and larger weights, so every term of the network matters."""
  instance, params = problem.sample(num, problems.split_seed(seed, "train"))
  rng = np.random.default_rng(seed)
  params = [p * 30 + (rng.normal(size=p.shape).astype(np.float32) * 0.3
                      if name.endswith(("/beta", "/b")) else 0)
            for p, name in zip(params, problem.param_names)]
  return instance, [tf.constant(p, tf.float32) for p in params]


def test_loss_matches_numpy_transcription_and_instances_are_independent():
  problem, images, labels = tiny_problem()  # 6 x 6 -> 3 x 3 -> 2 x 2: odd-size pooling too.
  instance, params = perturbed_params(problem, 3)
  step = 5
  together = problem.loss(params, instance, step).numpy()
  idx = problem.minibatch_indices(instance, step).numpy()
  for i in range(3):
    one = [p[i:i + 1] for p in params]
    alone = problem.loss(one, {"key": instance["key"][i:i + 1]}, step).numpy()
    np.testing.assert_allclose(alone, together[i:i + 1], rtol=1e-5)
    want = np_loss([p[i].numpy() for p in params], images[idx[i]], labels[idx[i]], 2, 1)
    np.testing.assert_allclose(together[i], want, rtol=2e-5)
  assert len(set(np.round(together, 5))) == 3


def test_gradients_are_finite_nonzero_and_per_instance():
  problem, _, _ = tiny_problem()
  instance, params = perturbed_params(problem, 2)
  with tf.GradientTape() as tape:
    tape.watch(params)
    losses = problem.loss(params, instance, 0)
  grads = tape.gradient(losses, params)
  with tf.GradientTape() as tape:
    first = [p[:1] for p in params]
    tape.watch(first)
    loss0 = problem.loss(first, {"key": instance["key"][:1]}, 0)
  grads0 = tape.gradient(loss0, first)
  for name, g, g0 in zip(problem.param_names, grads, grads0):
    assert np.all(np.isfinite(g.numpy())), name
    assert np.abs(g.numpy()[0]).max() > 0, name
    np.testing.assert_allclose(g.numpy()[:1], g0.numpy(), rtol=1e-4, atol=1e-7)


def test_default_architecture_count_shapes_groups_and_initial_loss():
  images, labels = synthetic_images(n=200, size=28)
  problem = problems.ConvClassifier(images, labels)  # 28 -> 16, 16 -> 8 -> 4 -> 2.
  # conv 5x5: 1->16, 16->16, 16->16 (+16 offsets each); fc 2*2*16 -> 32 (+32); 32 -> 10 (+10).
  assert problem.num_params() == 400 + 16 + 6400 + 16 + 6400 + 16 + 2048 + 32 + 320 + 10
  instance, params = problem.sample(2, problems.split_seed(0, "train"))
  assert [tuple(p.shape[1:]) for p in params] == problem.param_shapes()
  assert problem.images.shape == (200, 16, 16, 1)
  np.testing.assert_allclose(problem.loss(params, instance, 0).numpy(), math.log(10), atol=0.05)
  # Every parameter tensor in exactly one group; the conv net gets exactly the conv kernels.
  groups = problem.param_groups
  assert len(groups) == len(problem.param_names) == len(params)
  assert [n for n, g in zip(problem.param_names, groups) if g == "conv"] == [
      "conv_0/w", "conv_1/w", "conv_2/w"]
  assert set(groups) == {"conv", "fc"}
  assert conv.param_names(2, 0, batch_norm=False) == [
      "conv_0/w", "conv_0/b", "conv_1/w", "conv_1/b", "logits/w", "logits/b"]


def test_without_batch_norm_layers_have_random_biases():
  problem, _, _ = tiny_problem(batch_norm=False)
  instance, params = problem.sample(2, problems.split_seed(0, "train"))
  assert [n.endswith("/b") for n in problem.param_names if not n.endswith("/w")] == [True] * 4
  assert np.abs(params[1].numpy()).max() > 0  # N(0, 0.01^2) like the weights.
  assert np.all(np.isfinite(problem.loss(params, instance, 0).numpy()))


def test_area_resize_is_block_mean_for_factor_two():
  images, _ = synthetic_images(n=5, size=28, channels=3)
  small = conv.resize_images(images, 14)
  want = images.astype(np.float64).reshape(5, 14, 2, 14, 2, 3).mean(axis=(2, 4))
  np.testing.assert_array_equal(small, np.rint(want).astype(np.uint8))
  assert conv.resize_images(images, 28) is images


def test_label_subset_task_keeps_and_renumbers_its_labels():
  images, labels = synthetic_images(n=400, size=8)
  problem = problems.ConvClassifier(images, labels, image_size=8, labels_subset=[7, 2],
                                    conv_channels=(4,), fc_sizes=(), batch_size=16)
  assert problem.num_classes == 2 and problem.param_shapes()[-1] == (2,)
  kept = np.isin(labels, [7, 2])
  assert problem.num_examples == kept.sum()
  np.testing.assert_array_equal(problem.labels.numpy(), np.where(labels[kept] == 7, 0, 1))
  instance, params = problem.sample(3, problems.split_seed(0, "train"))
  np.testing.assert_allclose(problem.loss(params, instance, 0).numpy(), math.log(2), atol=0.05)
  assert problem.get_config()["labels_subset"] == [7, 2]


def test_label_subsets_are_deterministic_and_disjoint():
  for k in range(2, 6):
    task, held_out = label_subsets.task_labels(k), label_subsets.held_out_labels(k)
    assert task == tuple(range(k)) and held_out == tuple(range(k, 2 * k))
    assert not set(task) & set(held_out)
  with pytest.raises(errors.ConfigError, match="disjoint"):
    label_subsets.held_out_labels(6)
  for bad in ([3], [1, 1], [0, 10]):
    with pytest.raises(errors.ConfigError, match="distinct labels"):
      label_subsets.check_labels(bad)
  with pytest.raises(errors.ConfigError, match="No example has label \\[9\\]"):
    label_subsets.select_labels(np.zeros((3, 2, 2)), np.array([0, 1, 0]), [1, 9])


@pytest.mark.parametrize("dataset,sub", [("conv_fashion_mnist", "conv_fashion_mnist_sub"),
                                         ("cifar", "cifar_sub")])
def test_flagfiles_use_the_documented_label_subsets(dataset, sub):
  full = helpers.flagfile_values("cifar10" if dataset == "cifar" else f"{dataset}_10")
  assert full["labels"] == "" and full["conv_lstm_shared"] == "false"
  for k in (5, 2):
    task, held = helpers.flagfile_values(f"{dataset}{'_' if dataset != 'cifar' else ''}{k}"), \
        helpers.flagfile_values(f"train/{sub}_{k}")
    assert tuple(map(int, task["labels"].split(","))) == label_subsets.task_labels(k)
    assert tuple(map(int, held["labels"].split(","))) == label_subsets.held_out_labels(k)
    # As in the paper, the panel's LSTM (and the one-net ablation) is the 10-label optimizer.
    assert task["optimizer_path"] == full["optimizer_path"]
    shared = dict(e.split("=") for e in full["learned_optimizers"].split(","))["LSTM-shared"]
    assert task["learned_optimizers"] == f"LSTM-sub={held['optimizer_path']},LSTM-shared={shared}"
    assert {key: v for key, v in task.items() if key not in ("labels", "optimizer_path",
                                                             "learned_optimizers")} == \
        {key: v for key, v in held.items() if key not in ("labels", "optimizer_path",
                                                          "learned_optimizers")}


def test_two_lstms_meta_train_on_the_conv_problem(tmp_path):
  images, labels = synthetic_images(n=300, size=8)
  problem = problems.ConvClassifier(images, labels, image_size=8, conv_channels=(4, 4),
                                    fc_sizes=(6,), batch_size=16)
  net = {"name": "lstm", "hidden_sizes": [6], "output_scale": 0.1,
         "preprocessing": {"name": "log_and_sign", "p": 10.0}}
  two = optimizers.make_optimizer({"name": "grouped", "assignment": problem.param_groups,
                                   "optimizers": {"conv": net, "fc": dict(net, seed=1)}})
  config = meta.TrainConfig(num_epochs=3, horizon=6, truncation=3, meta_batch_size=2,
                            meta_learning_rate=1e-2, validation_every=3,
                            num_validation_problems=3, checkpoint_every=3)
  trainer = meta.MetaTrainer(problem, two, config, tmp_path, log_fn=lambda m: None)
  before = {name: [v.numpy().copy() for v in net.trainable_variables]
            for name, net in two.optimizers.items()}
  summary = trainer.train(progress=False)
  assert summary["epochs"] == 3 and math.isfinite(summary["best_validation_final_loss"])
  for name, net in two.optimizers.items():  # Both nets received meta-gradients.
    assert any(not np.array_equal(v.numpy(), b)
               for v, b in zip(net.trainable_variables, before[name])), name
  loaded = optimizers.load_optimizer(summary["optimizer_dir"])
  assert loaded.get_config()["assignment"] == problem.param_groups


def test_interrupted_meta_training_resumes_to_the_same_optimizer(tmp_path):
  """Stopping after 2 of 4 epochs and resuming gives the uninterrupted run's meta-parameters
  (problems and minibatches are functions of (seed, epoch, step); checkpoints hold the rest)."""
  images, labels = synthetic_images(n=200, size=8)
  problem = problems.ConvClassifier(images, labels, image_size=8, conv_channels=(3,),
                                    fc_sizes=(4,), batch_size=8)
  net = {"name": "lstm", "hidden_sizes": [4], "output_scale": 0.1,
         "preprocessing": {"name": "log_and_sign", "p": 10.0}}

  def trained(output_dir, num_epochs):
    two = optimizers.make_optimizer({"name": "grouped", "assignment": problem.param_groups,
                                     "optimizers": {"conv": net, "fc": dict(net, seed=1)}})
    config = meta.TrainConfig(num_epochs=num_epochs, horizon=4, truncation=2,
                              meta_learning_rate=1e-2, validation_every=4,
                              num_validation_problems=1, checkpoint_every=1)
    meta.MetaTrainer(problem, two, config, output_dir, log_fn=lambda m: None).train(False)
    return [v.numpy() for v in two.trainable_variables]

  straight = trained(tmp_path / "straight", 4)
  half = trained(tmp_path / "resumed", 2)
  resumed = trained(tmp_path / "resumed", 4)
  for a, b in zip(straight, resumed):
    np.testing.assert_array_equal(a, b)
  assert not np.array_equal(straight[0], half[0])


def run_train(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "l2l_tf.train", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=600, check=False)


TINY = ["--num_epochs=2", "--horizon=4", "--truncation=2", "--num_validation_problems=2",
        "--validation_every=1", "--checkpoint_every=1", "--image_size=8", "--batch_size=16",
        "--threads=1", "--progress=false"]


def test_train_entry_point_on_the_fashion_mnist_flagfiles(tmp_path):
  """The figures' flagfiles meta-train through `l2l_tf.train` (Fashion-MNIST from `make data`):
  two nets by default, one with --conv_lstm_shared; a second run resumes."""
  out = tmp_path / "two"
  proc = run_train("--flagfile=flags/train/conv_fashion_mnist_sub_2.flags", *TINY, f"--output_dir={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  run_config = json.loads((out / "run_config.json").read_text())
  assert run_config["problem"]["labels_subset"] == [2, 3]
  assert run_config["optimizer"]["name"] == "grouped"
  assert run_config["optimizer"]["assignment"] == conv.parameter_groups(conv.param_names(3, 1))
  again = run_train("--flagfile=flags/train/conv_fashion_mnist_sub_2.flags", *TINY,
                    f"--output_dir={out}")
  assert again.returncode == 0 and "Resuming" in again.stderr
  one = tmp_path / "one"
  proc = run_train("--flagfile=flags/train/conv_fashion_mnist_10_one_lstm.flags", *TINY,
                   "--num_epochs=1", f"--output_dir={one}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert json.loads((one / "run_config.json").read_text())["optimizer"]["name"] == "lstm"
