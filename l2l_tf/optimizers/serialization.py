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
from l2l_tf import errors

PRETRAINED_DIR = Path(__file__).resolve().parent.parent / "pretrained"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.npz"
PACKAGE_PREFIX = "package:"


class OptimizerLoadError(errors.Error, ValueError):
  """A saved optimizer could not be found or does not match its architecture."""


def variable_paths(module: tf.Module):
  """[(key, variable)] for every variable of `module`, keyed by attribute path, in a fixed order."""
  items = module._flatten(  # pylint: disable=protected-access
      predicate=lambda v: isinstance(v, tf.Variable), with_path=True)
  return sorted(("/".join(str(p) for p in path), v) for path, v in items
                if v.trainable)


def save_optimizer(optimizer: base.Optimizer, directory, metadata: Optional[dict] = None) -> Path:
  """Writes `optimizer` to `directory` atomically (a temporary directory, then a rename)."""
  optimizer = optimizer.saved_module()
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


# The hand-designed optimizers of `l2l_tf.optimizers`, with their Keras counterparts.
KERAS_BASELINES = {
    "sgd": "keras.optimizers.SGD(learning_rate)",
    "nag": "keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)",
    "rmsprop": "keras.optimizers.RMSprop(learning_rate)",
    "adam": "keras.optimizers.Adam(learning_rate)",
}


class UnsupportedOptimizerError(errors.Error, ValueError):
  """The optimizer cannot run on its own on a subset of coordinates (Keras, export, inspection)."""


def select_coordinatewise(config: dict, group: Optional[str] = None,
                          names: Tuple[str, ...] = ("lstm",)) -> dict:
  """The config of the coordinatewise LSTM to run on any subset of coordinates on its own.

  One selector for every user of a trained optimizer outside the meta-trainer: the Keras optimizer
  (it steps one model variable at a time), the SavedModel export (any flat gradient vector) and
  inspection. That is only the library's update when a coordinate's update depends on its own
  gradients alone: a plain coordinatewise LSTM, or one net of a grouped optimizer.

  Args:
    config: a saved optimizer's `get_config()`.
    group: for a grouped optimizer (several nets), the name of the net to use.
    names: the coordinatewise architectures the caller runs (the export and inspection: the LSTM;
      the Keras optimizer also the fast-weight ones, "fast_weights" and "srwm").

  Returns:
    The config of the (member) coordinatewise net.

  Raises:
    UnsupportedOptimizerError: a hand-designed optimizer, a grouped optimizer without a valid
      `group`, `group` for an optimizer that is not grouped, or an optimizer that shares
      information across coordinates.
  """
  name = config.get("name")
  if name == "grouped":
    members = sorted(config.get("optimizers", {}))
    if group is None:
      raise UnsupportedOptimizerError(
          "This is a grouped optimizer: it assigns its nets to the parameter tensors of the "
          "optimizee it was trained on, by position, which another model does not share. Choose "
          f"one net for all variables with group=<name> (--group on the command line), one of "
          f"{members}.")
    if group not in members:
      raise UnsupportedOptimizerError(
          f"group={group!r} is not a net of this grouped optimizer: {members}.")
    return select_coordinatewise(config["optimizers"][group], names=names)
  if group is not None:
    raise UnsupportedOptimizerError(
        f"group={group!r} is only for grouped optimizers; this one is {name!r}.")
  if name in KERAS_BASELINES:
    raise UnsupportedOptimizerError(
        f"{name!r} is a hand-designed optimizer; in Keras use {KERAS_BASELINES[name]}. Only "
        "learned (meta-trained) coordinatewise optimizers run here.")
  if name not in names:
    raise UnsupportedOptimizerError(
        f"Only coordinatewise learned optimizers (config name {' or '.join(map(repr, names))}) "
        f"run on their own here: a "
        f"coordinate's update must depend on that coordinate's gradients alone, so that one "
        f"variable (Keras) or any flat vector (export) can be stepped at a time; {name!r} is not "
        "known to be coordinatewise. Use it through l2l_tf.optimizers (its step) in a custom "
        "training loop.")
  return config


def load_coordinatewise(name_or_path, group: Optional[str] = None,
                        names: Tuple[str, ...] = ("lstm",)):
  """Loads a saved optimizer and selects its coordinatewise LSTM (`select_coordinatewise`).

  Returns:
    `(module, path, saved)`: the `CoordinatewiseLSTM`, the directory and its config.json.

  Raises:
    OptimizerLoadError: as `load_optimizer`.
    UnsupportedOptimizerError: as `select_coordinatewise`.
  """
  path, saved = read_config(name_or_path)
  select_coordinatewise(saved["optimizer"], group, names)
  module = load_optimizer(path)
  return (module if group is None else module.optimizers[group]), path, saved
