"""CIFAR-10 from TFDS or from the official archive a user downloaded by hand (sha256 verified).

No package registry carries CIFAR-10, so besides TFDS (which downloads it where the network
allows) the loader reads the two official archives of https://www.cs.toronto.edu/~kriz/cifar.html
when a user puts one in `<data_dir>/downloads/`:

* `cifar-10-python.tar.gz`: `cifar-10-batches-py/data_batch_{1..5}` and `test_batch`, each a
  pickled dict with `data` (uint8 [10000, 3072], the 1024 red, then green, then blue pixels of an
  image, row-major) and `labels` (10000 ints);
* `cifar-10-binary.tar.gz`: `cifar-10-batches-bin/data_batch_{1..5}.bin` and `test_batch.bin`,
  10000 records of 3073 bytes each: the label, then the 3072 pixels in the same order.

Both hold the same 50,000 training and 10,000 test images in the same order, which is also the
order TFDS's `cifar10` restores to (`sources.read_tfds`). The archive is checked against the
official sha256 before it is read; the pickles are read with an unpickler that admits NumPy arrays
only. The canonical arrays are uint8 [N, 32, 32, 3] (HWC) and uint8 labels; the validation split
is the last 10,000 training images (data_batch_5), as for MNIST.
"""

import dataclasses
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from l2l_tf import errors
from l2l_tf.data import sources

IMAGE_SHAPE = (32, 32, 3)
NUM_BATCHES = 5


@dataclasses.dataclass(frozen=True)
class ArchiveSource:
  """An official archive a user places in `<data_dir>/downloads/` by hand."""
  filename: str
  sha256: str  # Of the whole .tar.gz file.
  format: str  # "python" (pickled batches) or "binary" (fixed-length records).

  @property
  def title(self) -> str:
    return f"official {self.format} archive"


# sha256 of the official files: the python archive's as pinned by Keras
# (`keras.datasets.cifar10.load_data`), the binary one's as pinned by TFDS (url_checksums/cifar10).
PYTHON_ARCHIVE = ArchiveSource(
    "cifar-10-python.tar.gz",
    "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", "python")
BINARY_ARCHIVE = ArchiveSource(
    "cifar-10-binary.tar.gz",
    "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd", "binary")

INSTRUCTIONS = (
    "CIFAR-10 is in no package registry; get it one of two ways: (1) let TFDS download it "
    "(tfds.load(\"cifar10\")): run with L2L_TF_TFDS_DOWNLOAD=1 where the network allows; or (2) "
    "download the official cifar-10-python.tar.gz or cifar-10-binary.tar.gz from "
    "https://www.cs.toronto.edu/~kriz/cifar.html and put it in {data_dir}/downloads/ (its sha256 "
    "is checked).")

CIFAR10 = sources.DatasetSpec(
    name="cifar10", title="CIFAR-10", tfds_name="cifar10", num_train=50000, num_test=10000,
    num_valid=10000, image_shape=IMAGE_SHAPE, archives=(PYTHON_ARCHIVE, BINARY_ARCHIVE),
    instructions=INSTRUCTIONS)


def archive_path(archive: ArchiveSource, data_dir) -> Path:
  return Path(data_dir) / "downloads" / archive.filename


def file_sha256(path: Path) -> str:
  h = hashlib.sha256()
  with open(path, "rb") as f:
    for block in iter(lambda: f.read(1 << 20), b""):
      h.update(block)
  return h.hexdigest()


def _member_names(archive: ArchiveSource):
  """(training members, test member) inside the archive."""
  if archive.format == "python":
    folder, suffix = "cifar-10-batches-py", ""
  elif archive.format == "binary":
    folder, suffix = "cifar-10-batches-bin", ".bin"
  else:
    raise errors.ConfigError(f"Unknown CIFAR archive format {archive.format!r}.")
  train = [f"{folder}/data_batch_{i}{suffix}" for i in range(1, NUM_BATCHES + 1)]
  return train, f"{folder}/test_batch{suffix}"


def _hwc(flat: np.ndarray) -> np.ndarray:
  """[N, 3072] in the archives' channel-major order -> [N, 32, 32, 3]."""
  return np.ascontiguousarray(
      flat.reshape((-1,) + IMAGE_SHAPE[2:] + IMAGE_SHAPE[:2]).transpose(0, 2, 3, 1))


def parse_python_batch(data: bytes, what: str):
  """(images [N, 32, 32, 3], labels [N]) of one pickled batch of the python archive."""
  try:
    # An unpickler of NumPy arrays only: an archive from elsewhere cannot run code.
    unpickler = sources._NumpyUnpickler  # pylint: disable=protected-access
    batch = unpickler(io.BytesIO(data), encoding="bytes").load()
    flat, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
  except (EOFError, ValueError, TypeError, KeyError, IndexError, pickle.UnpicklingError) as e:
    raise sources.ChecksumError(f"{what}: not a CIFAR-10 batch pickle ({e}).") from e
  if flat.dtype != np.uint8 or flat.ndim != 2 or flat.shape[1] != np.prod(IMAGE_SHAPE) or (
      labels.shape != (len(flat),)) or not np.issubdtype(labels.dtype, np.integer) or (
          labels.size and (labels.min() < 0 or labels.max() > 9)):
    raise sources.ChecksumError(f"{what}: data {flat.dtype} {flat.shape} and labels "
                                f"{labels.dtype} {labels.shape} are not a CIFAR-10 batch.")
  return _hwc(flat), labels


def parse_binary_batch(data: bytes, what: str):
  """(images [N, 32, 32, 3], labels [N]) of one batch file of the binary archive."""
  record = 1 + int(np.prod(IMAGE_SHAPE))
  if not data or len(data) % record:
    raise sources.ChecksumError(f"{what}: {len(data)} bytes is not a whole number of "
                                f"{record}-byte records.")
  records = np.frombuffer(data, np.uint8).reshape(-1, record)
  return _hwc(records[:, 1:]), records[:, 0]


def read_archive(spec: sources.DatasetSpec, archive: ArchiveSource, data_dir) -> sources.RawData:
  """Reads an official CIFAR-10 archive from `<data_dir>/downloads/` (sha256 first).

  Raises:
    sources.SourceUnavailable: the archive is not there.
    sources.ChecksumError: it is there but is not the expected file or format.
  """
  path = archive_path(archive, data_dir)
  if not path.is_file():
    raise sources.SourceUnavailable("not found")
  digest = file_sha256(path)
  if digest != archive.sha256:
    raise sources.ChecksumError(
        f"{path}: sha256 mismatch (expected {archive.sha256}, got {digest}); it is not the "
        "official archive (a partial download?): download it again.")
  train_members, test_member = _member_names(archive)
  parse = parse_python_batch if archive.format == "python" else parse_binary_batch
  parts = {}
  try:
    with tarfile.open(path, "r:gz") as tar:
      for name in train_members + [test_member]:
        try:
          member = tar.extractfile(name)
        except KeyError as e:
          raise sources.ChecksumError(f"{path}: no member {name}.") from e
        parts[name] = parse(member.read(), f"{path}!{name}")
  except (OSError, EOFError, tarfile.TarError) as e:
    raise sources.ChecksumError(f"{path}: not a readable .tar.gz ({e}).") from e
  train = [parts[n] for n in train_members]
  raw = sources.RawData(
      train_images=np.concatenate([images for images, _ in train]),
      train_labels=np.concatenate([labels for _, labels in train]).astype(np.uint8),
      test_images=parts[test_member][0], test_labels=parts[test_member][1].astype(np.uint8),
      source=f"{archive.title} {path}", source_sha256={archive.filename: digest})
  return sources.validate(spec, raw, str(path))
