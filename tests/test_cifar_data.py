"""CIFAR-10 sources: both official archive formats, a TFDS prepared copy, checksums, clear errors.

Every test builds small fixtures in tmp_path in the official layouts (documented in
`l2l_tf.data.cifar`); none needs the network or the real data.
"""

import dataclasses
import io
import json
import os
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest

from l2l_tf import data
from tests import helpers
from l2l_tf.data import cifar, sources

REPO = Path(__file__).resolve().parent.parent
PER_BATCH, NUM_TEST = 3, 4  # 5 training batches of 3 images: 15 training images.
NUM_TRAIN, NUM_VALID = 5 * PER_BATCH, 3


@pytest.fixture(name="arrays")
def fixture_arrays():
  rng = np.random.default_rng(0)
  return {"train_images": rng.integers(0, 256, (NUM_TRAIN, 32, 32, 3), dtype=np.uint8),
          "train_labels": (np.arange(NUM_TRAIN) * 7 % 10).astype(np.uint8),
          "test_images": rng.integers(0, 256, (NUM_TEST, 32, 32, 3), dtype=np.uint8),
          "test_labels": np.array([3, 1, 4, 1], np.uint8)}


def channel_major(image: np.ndarray) -> bytes:
  """One image as the archives store it: the 1024 red pixels (row-major), then green, then blue."""
  return b"".join(image[:, :, c].tobytes() for c in range(3))


def batches(arrays):
  """(member stem, images, labels) of the five training batches and the test batch."""
  for i in range(5):
    part = slice(i * PER_BATCH, (i + 1) * PER_BATCH)
    yield f"data_batch_{i + 1}", arrays["train_images"][part], arrays["train_labels"][part]
  yield "test_batch", arrays["test_images"], arrays["test_labels"]


def tar_gz(members) -> bytes:
  buf = io.BytesIO()
  with tarfile.open(fileobj=buf, mode="w:gz") as tar:
    for name, payload in members:
      info = tarfile.TarInfo(name)
      info.size = len(payload)
      tar.addfile(info, io.BytesIO(payload))
  return buf.getvalue()


def python_archive(arrays, pickler=None) -> bytes:
  """cifar-10-python.tar.gz: one pickled dict per batch, bytes keys as in the official files."""
  members = [("cifar-10-batches-py/batches.meta", pickle.dumps({b"label_names": []}, protocol=2))]
  for stem, images, labels in batches(arrays):
    flat = np.frombuffer(b"".join(channel_major(im) for im in images), np.uint8).reshape(-1, 3072)
    batch = {b"batch_label": stem.encode(), b"labels": [int(l) for l in labels], b"data": flat,
             b"filenames": [f"{stem}_{j}.png".encode() for j in range(len(labels))]}
    members.append((f"cifar-10-batches-py/{stem}", (pickler or pickle.dumps)(batch)))
  return tar_gz(members)


def binary_batches(arrays):
  """The binary archive's files: records of one label byte and 3072 pixel bytes."""
  files = {"batches.meta.txt": "\n".join(cifar_label_names()).encode()}
  for stem, images, labels in batches(arrays):
    files[f"{stem}.bin"] = b"".join(bytes([int(l)]) + channel_major(im)
                                    for im, l in zip(images, labels))
  return files


def cifar_label_names():
  from l2l_tf.data import label_subsets  # pylint: disable=g-import-not-at-top
  return list(label_subsets.LABEL_NAMES["cifar10"])


def binary_archive(arrays) -> bytes:
  return tar_gz([(f"cifar-10-batches-bin/{name}", payload)
                 for name, payload in binary_batches(arrays).items()])


def place(data_dir: Path, archive: cifar.ArchiveSource, payload: bytes) -> cifar.ArchiveSource:
  """Writes `payload` where a user puts the archive; returns the source with its checksum."""
  path = cifar.archive_path(archive, data_dir)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_bytes(payload)
  return dataclasses.replace(archive, sha256=sources.sha256_bytes(payload))


def tiny_spec(*archives, **overrides):
  fields = dict(num_train=NUM_TRAIN, num_test=NUM_TEST, num_valid=NUM_VALID, archives=archives,
                content_sha256=None)
  fields.update(overrides)
  return dataclasses.replace(cifar.CIFAR10, **fields)


def assert_splits(spec, data_dir, arrays, **kwargs):
  cut = NUM_TRAIN - NUM_VALID
  want = {"train": (arrays["train_images"][:cut], arrays["train_labels"][:cut]),
          "valid": (arrays["train_images"][cut:], arrays["train_labels"][cut:]),
          "test": (arrays["test_images"], arrays["test_labels"])}
  for split, (images, labels) in want.items():
    got_images, got_labels = data.load_uint8(spec, split, data_dir, **kwargs)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_official_sha256_values():
  # The python archive's as pinned by keras.datasets.cifar10, the binary one's by TFDS's
  # url_checksums/cifar10.txt; a typo here would reject the real files.
  assert cifar.PYTHON_ARCHIVE.sha256 == (
      "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce")
  assert cifar.BINARY_ARCHIVE.sha256 == (
      "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd")
  assert data.split_sizes(cifar.CIFAR10) == {"train": 40000, "valid": 10000, "test": 10000}


@pytest.mark.parametrize("fmt", ["python", "binary"])
def test_each_archive_format_gives_the_images_in_hwc_order(tmp_path, arrays, fmt):
  official = cifar.PYTHON_ARCHIVE if fmt == "python" else cifar.BINARY_ARCHIVE
  payload = python_archive(arrays) if fmt == "python" else binary_archive(arrays)
  spec = tiny_spec(place(tmp_path, official, payload))
  raw = data.load_raw(spec, tmp_path, tfds_data_dir=tmp_path / "tfds")
  assert raw.source.startswith(f"official {fmt} archive")
  assert raw.source_sha256 == {official.filename: sources.sha256_bytes(payload)}
  assert_splits(spec, tmp_path, arrays, tfds_data_dir=tmp_path / "tfds")
  # The load wrote the npz cache, which now serves alone.
  cifar.archive_path(official, tmp_path).unlink()
  assert_splits(spec, tmp_path, arrays, tfds_data_dir=tmp_path / "tfds")


def test_checksum_mismatch_is_an_error_naming_both_values(tmp_path, arrays):
  spec = tiny_spec(dataclasses.replace(place(tmp_path, cifar.PYTHON_ARCHIVE,
                                             python_archive(arrays)), sha256="0" * 64))
  with pytest.raises(data.ChecksumError, match=f"sha256 mismatch \\(expected {'0' * 64}, got "):
    cifar.read_archive(spec, spec.archives[0], tmp_path)
  with pytest.raises(data.DataNotFoundError, match="sha256 mismatch"):
    data.load_raw(spec, tmp_path, tfds_data_dir=tmp_path / "tfds")


def test_malformed_archives_are_rejected(tmp_path, arrays):
  class Evil:  # A pickle that would run code when loaded.
    def __reduce__(self):
      return (os.system, ("echo pwned",))

  evil = python_archive(arrays, pickler=lambda batch: pickle.dumps(dict(batch, x=Evil())))
  spec = tiny_spec(place(tmp_path / "a", cifar.PYTHON_ARCHIVE, evil))
  with pytest.raises(data.ChecksumError, match="refusing to unpickle"):
    cifar.read_archive(spec, spec.archives[0], tmp_path / "a")
  files = binary_batches(arrays)
  files["test_batch.bin"] = files["test_batch.bin"][:-1]  # A truncated record.
  payload = tar_gz([(f"cifar-10-batches-bin/{n}", p) for n, p in files.items()])
  spec = tiny_spec(place(tmp_path / "b", cifar.BINARY_ARCHIVE, payload))
  with pytest.raises(data.ChecksumError, match="whole number of 3073-byte records"):
    cifar.read_archive(spec, spec.archives[0], tmp_path / "b")
  del files["data_batch_3.bin"]
  payload = tar_gz([(f"cifar-10-batches-bin/{n}", p) for n, p in files.items()])
  spec = tiny_spec(place(tmp_path / "c", cifar.BINARY_ARCHIVE, payload))
  with pytest.raises(data.ChecksumError, match="no member cifar-10-batches-bin/data_batch_3.bin"):
    cifar.read_archive(spec, spec.archives[0], tmp_path / "c")


def test_missing_data_error_names_both_ways(tmp_path):
  with pytest.raises(data.DataNotFoundError) as e:
    data.load_raw(cifar.CIFAR10, tmp_path, tfds_data_dir=tmp_path / "tfds")
  message = str(e.value)
  downloads = tmp_path / "downloads"
  for part in (f"cache {tmp_path / 'cifar10.npz'}: not found",
               "L2L_TF_TFDS_DOWNLOAD=1", 'tfds.load("cifar10")',
               f"official python archive {downloads / 'cifar-10-python.tar.gz'}: not found",
               f"official binary archive {downloads / 'cifar-10-binary.tar.gz'}: not found",
               "https://www.cs.toronto.edu/~kriz/cifar.html", f"put it in {downloads}/"):
    assert part in message, part
  assert e.value.hint in message and "data.prepare" not in message


def test_prepare_caches_a_placed_archive_or_names_both_ways_in_one_line(tmp_path, arrays,
                                                                        monkeypatch):
  from l2l_tf.data import prepare  # pylint: disable=g-import-not-at-top
  spec = tiny_spec(cifar.PYTHON_ARCHIVE)
  with pytest.raises(prepare.PrepareError) as e:
    prepare.prepare(spec, tmp_path, tmp_path / "tfds", log=lambda m: None)
  message = str(e.value)
  assert "\n" not in message and "no copy to fetch" in message
  assert "L2L_TF_TFDS_DOWNLOAD=1" in message and f"put it in {tmp_path / 'downloads'}/" in message
  spec = tiny_spec(place(tmp_path, cifar.PYTHON_ARCHIVE, python_archive(arrays)))
  lines = []
  prepare.prepare(spec, tmp_path, tmp_path / "tfds", log=lines.append)
  assert lines[0].startswith(f"cifar10: wrote {tmp_path / 'cifar10.npz'} from official python")
  cifar.archive_path(cifar.PYTHON_ARCHIVE, tmp_path).unlink()
  assert_splits(spec, tmp_path, arrays, tfds_data_dir=tmp_path / "tfds")
  # The command takes cifar10 and fails in one line when it is not there.
  proc = run_module_without_cifar(tmp_path, "l2l_tf.data.prepare", "--datasets=cifar10",
                                  f"--data_dir={tmp_path / 'empty'}",
                                  f"--tfds_data_dir={tmp_path / 'tfds'}")
  assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith("error: CIFAR-10 is not there, and it has no copy to fetch."), line
  assert "cifar-10-binary.tar.gz" in line


def run_module_without_cifar(tmp_path, module, *args):
  """`python -m module args` from the repository, with an empty TFDS directory in tmp_path."""
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3",
             TFDS_DATA_DIR=str(tmp_path / "tfds"))
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300, check=False)


def test_train_reports_missing_cifar_in_one_line(tmp_path):
  proc = run_module_without_cifar(tmp_path, "l2l_tf.train", "--flagfile=flags/cifar10.flags",
                                  f"--data_dir={tmp_path}", f"--output_dir={tmp_path / 'run'}")
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  line = proc.stderr.strip().splitlines()[-1]
  assert line.startswith("error: CIFAR-10 is not available (tried cache ")
  assert "L2L_TF_TFDS_DOWNLOAD=1" in line and "cifar-10-binary.tar.gz" in line
  assert "data.prepare" not in line


def test_tfds_prepared_cifar10_gives_the_archives_order(tmp_path, arrays, monkeypatch):
  """A real TFDS cifar10 builder prepares the binary fixture; the loader undoes TFDS's shuffling
  and gives what the archives give."""
  # pylint: disable=g-import-not-at-top
  import tensorflow_datasets as tfds
  from tensorflow_datasets.image_classification import cifar as tfds_cifar
  # pylint: enable=g-import-not-at-top
  extracted = tmp_path / "extracted"
  (extracted / "cifar-10-batches-bin").mkdir(parents=True)
  for name, payload in binary_batches(arrays).items():
    (extracted / "cifar-10-batches-bin" / name).write_bytes(payload)
  monkeypatch.setattr(tfds.download.DownloadManager, "download_and_extract",
                      lambda self, url: str(extracted))
  tfds_dir = tmp_path / "tfds"
  helpers.prepare_tfds_from_fixture(tfds_cifar.Cifar10, "cifar10", tfds_dir)
  spec = tiny_spec()
  raw = data.load_raw(spec, tmp_path / "cache", tfds_data_dir=tfds_dir)
  assert raw.source.startswith("TFDS cifar10")
  assert_splits(spec, tmp_path / "cache", arrays, tfds_data_dir=tfds_dir)


def _run_entry_point(module, argv):
  """Runs an entry point's main in this process with `argv`; returns its exit code (0: done)."""
  try:
    with helpers.parsed_flags(argv):
      module.main(argv[:1])
    return 0
  except SystemExit as e:
    return e.code


TINY_CONV = ["--image_size=8", "--batch_size=8", "--threads=1", "--progress=false"]


def test_cifar_figure_flagfiles_run_end_to_end_on_generated_fixtures(tmp_path, monkeypatch):
  """The CIFAR figures' flagfiles, unchanged but for tiny sizes, meta-train their optimizers and
  make each panel's figure from a generated archive in the official python format."""
  # pylint: disable=g-import-not-at-top
  from l2l_tf import reproduce, train
  from l2l_tf.evaluation import figures
  # pylint: enable=g-import-not-at-top
  rng = np.random.default_rng(1)
  arrays = {"train_images": rng.integers(0, 256, (100, 32, 32, 3), dtype=np.uint8),
            "train_labels": np.arange(100) % 10,
            "test_images": rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
            "test_labels": np.arange(40) % 10}
  monkeypatch.setattr(sys.modules[__name__], "PER_BATCH", 20)
  data_dir = tmp_path / "data"
  spec = tiny_spec(place(data_dir, cifar.PYTHON_ARCHIVE, python_archive(arrays)), num_train=100,
                   num_valid=20, num_test=40)
  monkeypatch.setattr(data, "CIFAR10", spec)
  monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))
  monkeypatch.chdir(REPO)
  common = TINY_CONV + [f"--data_dir={data_dir}"]
  trained = {}
  for name, flagfile in [("cifar10", "flags/cifar10.flags"),
                         ("cifar10_one_lstm", "flags/train/cifar10_one_lstm.flags"),
                         ("cifar_sub_5", "flags/train/cifar_sub_5.flags"),
                         ("cifar_sub_2", "flags/train/cifar_sub_2.flags")]:
    trained[name] = tmp_path / "train" / name
    code = _run_entry_point(train, ["train", f"--flagfile={flagfile}", *common,
                                    "--num_epochs=1", "--horizon=2", "--truncation=1",
                                    "--num_validation_problems=1", "--validation_every=1",
                                    f"--output_dir={trained[name]}"])
    assert code == 0, name
  for figure in ("cifar10", "cifar5", "cifar2"):
    paths = {f"pretrained:{n}": str(p / "optimizer") for n, p in trained.items()}
    entry = figures.registry().get(figure)
    argv = figures.with_figure_flagfile(["reproduce", f"--figure={figure}"])
    argv += common + ["--num_steps=3", "--num_test_problems=2", "--num_validation_problems=2",
                      "--learning_rate_grid=0.1", "--eval_chunk_size=0",
                      f"--output_dir={tmp_path / 'results'}",
                      f"--optimizer_path={paths[entry.requires[0]]}",
                      "--learned_optimizers=" + ",".join(
                          f"{label}={paths[source]}" for label, source in
                          (e.split("=") for e in helpers.flagfile_values(
                              entry.flagfile.stem)["learned_optimizers"].split(",")))]
    baselines = ["SGD", "RMSprop", "Adam", "NAG"]
    if figure != "cifar2":  # The flagfiles' four baselines once; the learned rows elsewhere.
      argv.append("--baselines=")
      baselines = []
    assert _run_entry_point(reproduce, argv) == 0, figure
    result = json.loads((tmp_path / "results" / f"{figure}.json").read_text())
    want = ["LSTM", "LSTM-sub", "LSTM-shared"] if figure != "cifar10" else ["LSTM", "LSTM-shared"]
    assert list(result["optimizers"]) == want + baselines
    assert result["num_test_problems"] == 2
    assert (tmp_path / "results" / f"{figure}.png").stat().st_size > 0

