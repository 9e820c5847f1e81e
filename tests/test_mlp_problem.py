"""The MNIST optimizee: shapes of its variants, initial loss ln 10, minibatches, and a tiny end-to-end
meta-train and evaluate run on MNIST-shaped synthetic data."""

import math

import numpy as np
import pytest

from l2l_tf import meta, optimizers, problems
from l2l_tf.evaluation import compare


def synthetic_digits(n=600, seed=0):
  """MNIST-shaped uint8 images whose label is encoded in a block of bright pixels (learnable)."""
  rng = np.random.default_rng(seed)
  labels = rng.integers(0, 10, n)
  images = rng.integers(0, 60, size=(n, 28, 28)).astype(np.uint8)
  for i, label in enumerate(labels):
    images[i, 2 * label:2 * label + 3, 5:20] = 250
  return images, labels


@pytest.mark.parametrize("hidden,activation,expected", [
    ((20,), "sigmoid", 15910), ((40,), "sigmoid", 31810), ((20, 20), "sigmoid", 16330),
    ((20,), "relu", 15910), ((), "sigmoid", 7850)])
def test_variants_shapes_and_initial_loss(hidden, activation, expected):
  images, labels = synthetic_digits()
  p = problems.MLPClassifier(images, labels, hidden_sizes=hidden, activation=activation)
  assert p.num_params() == expected
  instance, params = p.sample(4, problems.split_seed(0, "train"))
  assert sum(int(np.prod(t.shape[1:])) for t in params) == expected
  assert all(t.shape[0] == 4 for t in params)
  assert len(p.param_names) == len(params)
  loss = p.loss(params, instance, 0).numpy()
  assert loss.shape == (4,)
  np.testing.assert_allclose(loss, math.log(10), atol=0.05)  # Small theta_0: near-uniform output.


def test_minibatches_are_reproducible_per_instance_and_step():
  images, labels = synthetic_digits()
  p = problems.MLPClassifier(images, labels, batch_size=32)
  instance, _ = p.sample(3, problems.split_seed(0, "train"))
  a = p.minibatch_indices(instance, 7).numpy()
  sub = p.minibatch_indices({"key": instance["key"][1:]}, 7).numpy()
  np.testing.assert_array_equal(a[1:], sub)  # Chunking instances does not change batches.
  assert not np.array_equal(a, p.minibatch_indices(instance, 8).numpy())
  assert a.shape == (3, 32) and a.min() >= 0 and a.max() < 600


def test_loss_matches_numpy_forward_pass():
  images, labels = synthetic_digits()
  p = problems.MLPClassifier(images, labels, hidden_sizes=(5,), batch_size=16)
  instance, params = p.sample(2, problems.split_seed(1, "train"))
  params = [10 * t for t in params]
  idx = p.minibatch_indices(instance, 3).numpy()
  got = p.loss(params, instance, 3).numpy()
  w0, b0, w1, b1 = (t.numpy() for t in params)
  for i in range(2):
    x = images.reshape(600, -1)[idx[i]] / 255.0
    h = 1 / (1 + np.exp(-(x @ w0[i] + b0[i])))
    logits = h @ w1[i] + b1[i]
    logz = np.log(np.sum(np.exp(logits - logits.max(1, keepdims=True)), 1)) + logits.max(1)
    expected = np.mean(logz - logits[np.arange(16), labels[idx[i]]])
    np.testing.assert_allclose(got[i], expected, rtol=1e-5)


def test_bad_settings():
  images, labels = synthetic_digits(10)
  with pytest.raises(ValueError, match="activation"):
    problems.MLPClassifier(images, labels, activation="tanh")
  with pytest.raises(ValueError, match="labels"):
    problems.MLPClassifier(images, labels[:5])


def test_tiny_end_to_end_meta_train_and_evaluate(tmp_path):
  train_images, train_labels = synthetic_digits(600, 0)
  valid_images, valid_labels = synthetic_digits(200, 1)
  make = lambda im, lb: problems.MLPClassifier(im, lb, hidden_sizes=(8,), batch_size=32)
  train_problem, valid_problem = make(train_images, train_labels), make(valid_images,
                                                                        valid_labels)
  lstm = optimizers.CoordinatewiseLSTM(hidden_sizes=(8,), output_scale=0.1,
                                       preprocessing={"name": "log_and_sign", "p": 10.0})
  config = meta.TrainConfig(num_epochs=6, horizon=10, truncation=5, meta_batch_size=2,
                            meta_learning_rate=1e-2, validation_every=3,
                            num_validation_problems=4, checkpoint_every=3)
  trainer = meta.MetaTrainer(train_problem, lstm, config, tmp_path, log_fn=lambda m: None,
                             validation_problem=valid_problem)
  untrained = trainer.validation_losses()[-1]
  summary = trainer.train(progress=False)
  assert summary["best_validation_final_loss"] <= untrained
  trained = optimizers.load_optimizer(summary["optimizer_dir"])
  results = compare.compare(valid_problem, {"LSTM": trained}, ["adam"], num_steps=10,
                            num_test_problems=4, num_validation_problems=4, seed=0,
                            figure="tiny_mnist", grid=(0.01, 0.1), progress=False,
                            validation_problem=train_problem)
  assert results["optimizers"]["LSTM"]["mean"][-1] < results["optimizers"]["LSTM"]["mean"][0]
  assert results["problem"]["name"] == "mlp"


def test_architecture_sweep_entries_and_plot(tmp_path):
  from l2l_tf.evaluation import plots, results as results_lib, sweep, tables  # pylint: disable=g-import-not-at-top
  images, labels = synthetic_digits(300, 0)
  lstm = optimizers.CoordinatewiseLSTM(hidden_sizes=(4,), output_scale=0.1)
  entries, core = [], None
  for hidden in ([4], [8], [4, 4], [8, 8]):
    problem = problems.MLPClassifier(images, labels, hidden_sizes=hidden, batch_size=16)
    res = compare.compare(problem, {"LSTM": lstm}, ["sgd"], num_steps=3, num_test_problems=3,
                          num_validation_problems=2, seed=0, figure="sweep", grid=(0.1, 1.0),
                          progress=False)
    entries.append(sweep.final_losses(res, hidden))
    if hidden == [4]:
      core = res
  assert entries[2]["hidden_sizes"] == [4, 4]
  assert entries[0]["optimizers"]["LSTM"]["final_mean"] == core["optimizers"]["LSTM"]["mean"][-1]
  assert entries[0]["optimizers"]["SGD"]["learning_rate"] in (0.1, 1.0)
  results = dict(core, sweep=entries, trained_hidden_sizes=[4])
  results_lib.write_results(results, tmp_path / "sweep.json")
  png = plots.plot_sweep(results, tmp_path / "sweep.png")
  assert png.read_bytes()[:4] == b"\x89PNG"
  table = tables.sweep_table(results).splitlines()
  assert len(table) == 4 + 4 and table[4].startswith("| 1 x 4 (trained) | ")
  ratio = entries[3]["optimizers"]["LSTM"]["final_mean"] / entries[3]["optimizers"]["SGD"][
      "final_mean"]
  assert table[-1].startswith("| 2 x 8 | ") and table[-1].endswith(f"| {ratio:.2f} |")

  # A second learned optimizer (e.g. LSTM v2 beside the paper's LSTM) gets its own columns.
  for e in entries:
    lstm = e["optimizers"]["LSTM"]
    e["optimizers"]["LSTM v2"] = dict(lstm, **{k: lstm[k] / 2 for k in
                                               ("final_mean", "ci95_low", "ci95_high")})
  table = tables.sweep_table(results).splitlines()
  assert table[2].startswith("| hidden layers x units | LSTM [95% CI] | LSTM v2 [95% CI] | best")
  assert table[2].endswith("| LSTM ratio | LSTM v2 ratio |")
  assert table[-1].endswith(f"| {ratio:.2f} | {ratio / 2:.2f} |")
  assert plots.plot_sweep(results, tmp_path / "sweep2.png").is_file()
