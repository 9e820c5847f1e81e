"""Every entry point can be imported into one process: no absl flag is defined twice."""

import importlib
import pkgutil
from pathlib import Path

import l2l_tf

ROOT = Path(l2l_tf.__file__).resolve().parent


def entry_point_modules():
  names = []
  for info in pkgutil.walk_packages([str(ROOT)], prefix="l2l_tf."):
    path = ROOT.joinpath(*info.name.split(".")[1:])
    source = path.with_suffix(".py")
    if source.is_file() and 'if __name__ == "__main__":' in source.read_text():
      names.append(info.name)
  return names


def test_all_entry_points_import_together():
  names = entry_point_modules()
  assert {"l2l_tf.train", "l2l_tf.evaluate", "l2l_tf.reproduce", "l2l_tf.data.prepare"} <= set(names)
  for name in names:
    importlib.import_module(name)  # Raises absl DuplicateFlagError on a clash.
