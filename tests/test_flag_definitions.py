"""Every entry point (the library's, the experiments' and the benchmark's) can be imported into one
process: no absl flag is defined twice; none imports another entry point."""

import ast
import importlib
import pkgutil
from pathlib import Path

import benchmarks
import l2l_tf
import l2l_tf_experiments

PACKAGES = (l2l_tf, l2l_tf_experiments, benchmarks)


def entry_point_modules():
  names = {}
  for package in PACKAGES:
    root = Path(package.__file__).resolve().parent
    for info in pkgutil.walk_packages([str(root)], prefix=package.__name__ + "."):
      source = root.joinpath(*info.name.split(".")[1:]).with_suffix(".py")
      if source.is_file() and 'if __name__ == "__main__":' in source.read_text():
        names[info.name] = source
  return names


def test_all_entry_points_import_together():
  names = entry_point_modules()
  assert {"l2l_tf.train", "l2l_tf.evaluate", "l2l_tf.reproduce", "l2l_tf.data.prepare",
          "l2l_tf_experiments.review.run", "benchmarks.run"} <= set(names)
  for name in names:
    importlib.import_module(name)  # Raises absl DuplicateFlagError on a clash.
  # The figure runner's registry loads every plugin, which defines the experiments' flags too.
  from l2l_tf.evaluation import figures  # pylint: disable=g-import-not-at-top
  assert "review_forget_gate" in figures.registry().figures


def imported_modules(source: Path):
  """Every module a source file imports (`from a import b` counts as a and a.b)."""
  found = set()
  for node in ast.walk(ast.parse(source.read_text())):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom) and node.module:
      found.add(node.module)
      found.update(f"{node.module}.{alias.name}" for alias in node.names)
  return found


def test_no_entry_point_imports_another():
  names = entry_point_modules()
  for name, source in names.items():
    others = imported_modules(source) & (set(names) - {name})
    assert not others, f"{name} imports the entry point(s) {sorted(others)}"
