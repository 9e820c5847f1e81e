"""Every entry point, the library's and the benchmark's, can be imported into one process: no absl
flag is defined twice."""

import importlib
import pkgutil
from pathlib import Path

import benchmarks
import l2l_tf


def entry_point_modules(package):
  root = Path(package.__file__).resolve().parent
  names = []
  for info in pkgutil.walk_packages([str(root)], prefix=package.__name__ + "."):
    source = root.joinpath(*info.name.split(".")[1:]).with_suffix(".py")
    if source.is_file() and 'if __name__ == "__main__":' in source.read_text():
      names.append(info.name)
  return names


def test_all_entry_points_import_together():
  names = entry_point_modules(l2l_tf) + entry_point_modules(benchmarks)
  assert {"l2l_tf.train", "l2l_tf.evaluate", "l2l_tf.reproduce", "l2l_tf.data.prepare",
          "benchmarks.run"} <= set(names)
  for name in names:
    importlib.import_module(name)  # Raises absl DuplicateFlagError on a clash.
