"""Saving and loading optimizers: a directory with `config.json` and `weights.npz`.

`config.json` holds `{"optimizer": <get_config()>, "metadata": {...}}` (the metadata records how the
optimizer was trained: command, data, validation score). `weights.npz` maps each meta-parameter's
attribute path (e.g. `gate_weights/0`) to its value. Loading checks that exactly the expected
meta-parameters with exactly the expected shapes are present, and fails loudly otherwise.
"""

import json
import os
import tempfile
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from l2l_tf.optimizers import base

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.npz"
PACKAGE_PREFIX = "package:"


class OptimizerLoadError(ValueError):
  """A saved optimizer could not be found or does not match its architecture."""


def variable_paths(module: tf.Module):
  """[(key, variable)] for every variable of `module`, keyed by attribute path, in a fixed order."""
  items = module._flatten(  # pylint: disable=protected-access
      predicate=lambda v: isinstance(v, tf.Variable), with_path=True)
  return sorted(("/".join(str(p) for p in path), v) for path, v in items
                if v.trainable)


def save_optimizer(optimizer: base.Optimizer, directory, metadata: Optional[dict] = None) -> Path:
  """Writes `optimizer` to `directory` atomically (a temporary directory, then a rename)."""
  weights = {key: v.numpy() for key, v in variable_paths(optimizer)}
  return save_weights_and_config(directory, weights, WEIGHTS_FILE, CONFIG_FILE, {
      "optimizer": optimizer.get_config(), "metadata": metadata or {}})


def save_weights_and_config(directory, weights: dict, weights_file: str, config_file: str,
                            config: dict) -> Path:
  """Writes `weights_file` (an .npz of `weights`) and `config_file` (`config` as JSON) into
  `directory` atomically: into a temporary directory, which then replaces `directory`, so a
  reader sees the old files or the new ones, never a mix. Used for every exported model."""
  directory = Path(directory)
  directory.parent.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
  os.chmod(tmp, 0o755)  # mkdtemp's 0700 would make exported (and shipped) models private.
  np.savez(tmp / weights_file, **weights)
  with open(tmp / config_file, "w") as f:
    json.dump(config, f, indent=2, sort_keys=True)
  if directory.exists():
    old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old.", dir=directory.parent))
    os.rename(directory, old / "d")
    os.rename(tmp, directory)
    _rmtree(old)
  else:
    os.rename(tmp, directory)
  return directory


def _rmtree(path: Path):
  import shutil  # pylint: disable=g-import-not-at-top
  shutil.rmtree(path, ignore_errors=True)


def package_path(text: str) -> Path:
  """`PACKAGE/rel/path` (e.g. `l2l_tf_experiments.review/pretrained/x`): a directory shipped inside
  an importable package, wherever the package is installed (a checkout, a wheel, Bazel's runfiles).

  Raises:
    OptimizerLoadError: the package cannot be found.
  """
  import importlib.util  # pylint: disable=g-import-not-at-top
  package, _, rel = text.partition("/")
  try:
    spec = importlib.util.find_spec(package)
  except ImportError:  # A parent package is missing.
    spec = None
  if spec is None or not spec.submodule_search_locations:
    raise OptimizerLoadError(f"No package {package!r} (from {PACKAGE_PREFIX}{text}) is importable.")
  return Path(list(spec.submodule_search_locations)[0]) / rel


def resolve_optimizer_path(name_or_path) -> Path:
  """Finds a saved optimizer: a shipped name ("quadratic", or "pretrained:quadratic"), a file
  shipped in another package ("package:PACKAGE/rel/path", see `package_path`), a saved directory,
  or a training run."""
  candidates = []
  text = str(name_or_path)
  if text.startswith("pretrained:"):
    text = text[len("pretrained:"):]
    candidates.append(PRETRAINED_DIR / text)
  elif text.startswith(PACKAGE_PREFIX):
    candidates.append(package_path(text[len(PACKAGE_PREFIX):]))
  else:
    path = Path(text).expanduser()
    candidates += [path, path / "optimizer"]
    if "/" not in text and not path.exists():
      candidates.append(PRETRAINED_DIR / text)
  for c in candidates:
    if (c / CONFIG_FILE).is_file() and (c / WEIGHTS_FILE).is_file():
      return c
  shipped = sorted(p.name for p in PRETRAINED_DIR.iterdir() if (p / CONFIG_FILE).is_file()) \
      if PRETRAINED_DIR.is_dir() else []
  raise OptimizerLoadError(
      f"No saved optimizer at {name_or_path!r} (looked for {CONFIG_FILE} and {WEIGHTS_FILE} in "
      f"{', '.join(str(c) for c in candidates)}). Give a shipped name ({', '.join(shipped) or 'none'}"
      f"), a directory written by l2l_tf.train (its --output_dir), or train one first.")


def read_config(name_or_path) -> Tuple[Path, dict]:
  path = resolve_optimizer_path(name_or_path)
  with open(path / CONFIG_FILE) as f:
    return path, json.load(f)


def load_optimizer(name_or_path, expected_config: Optional[dict] = None) -> base.Optimizer:
  """Rebuilds a saved optimizer and restores its meta-parameters, verifying every one.

  Args:
    name_or_path: see `resolve_optimizer_path`.
    expected_config: if given, the saved architecture must equal it (e.g. a flagfile's settings).

  Raises:
    OptimizerLoadError: missing files, a different architecture, or missing / extra / misshapen
      meta-parameters.
  """
  from l2l_tf.optimizers import make_optimizer  # pylint: disable=g-import-not-at-top
  path, saved = read_config(name_or_path)
  config = saved["optimizer"]
  if expected_config is not None:
    diffs = config_differences(expected_config, config)
    if diffs:
      raise OptimizerLoadError(
          f"The optimizer at {path} has a different architecture than requested: "
          f"{'; '.join(diffs)}. Use matching flags or retrain.")
  optimizer = make_optimizer(config)
  with np.load(path / WEIGHTS_FILE) as data:
    saved_weights = {k: data[k] for k in data.files}
  expected = dict(variable_paths(optimizer))
  missing = sorted(set(expected) - set(saved_weights))
  extra = sorted(set(saved_weights) - set(expected))
  if missing or extra:
    raise OptimizerLoadError(f"{path / WEIGHTS_FILE} does not match its config: missing "
                             f"{missing}, unexpected {extra}.")
  for key, var in expected.items():
    value = saved_weights[key]
    if tuple(value.shape) != tuple(var.shape):
      raise OptimizerLoadError(f"{path / WEIGHTS_FILE}: {key} has shape {value.shape}, the "
                               f"architecture needs {tuple(var.shape)}.")
    var.assign(value.astype(var.dtype.as_numpy_dtype))
  return optimizer


def config_differences(expected: dict, actual: dict, prefix: str = "") -> list:
  """Human-readable differences between two optimizer configs (ignoring the init seed)."""
  diffs = []
  for key in sorted(set(expected) | set(actual)):
    if key in ("seed", "initializer"):
      continue
    a, b = expected.get(key), actual.get(key)
    if isinstance(a, dict) and isinstance(b, dict):
      diffs += config_differences(a, b, prefix + key + ".")
    elif a != b:
      diffs.append(f"{prefix}{key}: requested {a!r}, saved {b!r}")
  return diffs
