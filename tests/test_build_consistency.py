"""Bazel's BUILD stays complete: every module, entry point, data file and test file has its target.

Needs no Bazel: BUILD is evaluated as Python (Starlark's BUILD dialect is a subset of it) with
stand-ins for Bazel's functions that record the targets and evaluate `glob` on the checkout.
The last tests break a copy of BUILD or add files to a copy of the tree, to show the check fails.
"""

import itertools
import os
import re
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RUNNER = "tools/bazel/pytest_runner.py"
MAIN_BLOCK = re.compile(r"""^if __name__ == ["']__main__["']\s*:""", re.MULTILINE)
PACKAGES = ("l2l_tf", "l2l_tf_experiments", "benchmarks")  # The library, the experiments and
# the benchmark beside it.
PACKAGE_DATA_GLOBS = ("flags/**/*.flags",)
# Files Bazel needs besides BUILD: WORKSPACE, the offline stand-ins and the .bazelrc writer.
BAZEL_FILES = ("WORKSPACE", ".bazelignore", RUNNER, "tools/bazel/write_bazelrc.sh",
               "tools/bazel/rules_cc/WORKSPACE", "tools/bazel/rules_cc/BUILD",
               "tools/bazel/rules_cc/cc/BUILD", "tools/bazel/rules_cc/cc/defs.bzl",
               "tools/bazel/remote_coverage_tools/WORKSPACE",
               "tools/bazel/remote_coverage_tools/BUILD")


def _glob_regex(pattern):
  parts = pattern.split("/")
  regex = ""
  for i, part in enumerate(parts):
    last = i == len(parts) - 1
    if part == "**":
      regex += ".*" if last else "(?:[^/]+/)*"
    else:
      regex += re.escape(part).replace(r"\*", "[^/]*").replace(r"\?", "[^/]") + ("" if last else "/")
  return re.compile(regex + r"\Z")


def _ignored(root):
  path = root / ".bazelignore"
  lines = path.read_text().splitlines() if path.is_file() else []
  return {line.strip().strip("/") for line in lines if line.strip() and not line.startswith("#")}


def package_files(root, start="."):
  """Files of the root Bazel package under start: not .bazelignore'd, not in a sub-package."""
  ignored = _ignored(root)
  files = []
  for dirpath, dirnames, filenames in os.walk(root / start):
    rel_dir = Path(dirpath).relative_to(root).as_posix()
    rel_dir = "" if rel_dir == "." else rel_dir + "/"
    if rel_dir and any((Path(dirpath) / name).is_file() for name in ("BUILD", "BUILD.bazel")):
      dirnames[:] = []  # A sub-package: its files are not the root package's.
      continue
    dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not (
        rel_dir + d in ignored or (not rel_dir and d.startswith("bazel-"))))
    files += [rel_dir + f for f in sorted(filenames)]
  return files


def evaluate_build(root, text=None):
  """The targets BUILD declares, {name: (rule, attributes)}, with globs evaluated on root."""
  targets = {}

  def matches(pattern):
    start = "/".join(itertools.takewhile(lambda part: not set(part) & set("*?["),
                                         pattern.split("/")[:-1])) or "."
    if not (root / start).is_dir():
      return set()
    return {f for f in package_files(root, start) if _glob_regex(pattern).match(f)}

  def glob(include, exclude=(), exclude_directories=1, allow_empty=True):
    del exclude_directories  # Only files are listed.
    found = set().union(*map(matches, include)) - set().union(*map(matches, exclude))
    assert found or allow_empty, f"glob({include}) matches nothing"
    return sorted(found)

  def rule(kind):
    def declare(name, **attrs):
      assert name not in targets, f"target {name} declared twice"
      targets[name] = (kind, attrs)
    return declare

  names = {"glob": glob, "select": lambda d, **kw: d["//conditions:default"],
           "load": lambda *a, **kw: None, "package": lambda **kw: None,
           "exports_files": lambda *a, **kw: None, "licenses": lambda *a: None}
  for kind in ("py_library", "py_binary", "py_test", "filegroup", "sh_binary", "sh_test",
               "genrule", "test_suite", "alias"):
    names[kind] = rule(kind)
  source = (root / "BUILD").read_text() if text is None else text
  exec(compile(source, str(root / "BUILD"), "exec"), names)  # pylint: disable=exec-used
  return targets


def _label_path(label):
  return label[3:] if label.startswith("//:") else label.lstrip(":")


def _closure(targets, name):
  """The target and everything it depends on in this package."""
  seen, todo = set(), [name]
  while todo:
    current = _label_path(todo.pop())
    if current in targets and current not in seen:
      seen.add(current)
      todo.extend(targets[current][1].get("deps", []))
  return seen


def _sources(targets, names, attr):
  return {_label_path(f) for n in names for f in targets[n][1].get(attr, [])}


def problems(root, text=None):
  """What BUILD is missing or gets wrong, as readable lines; empty when it is complete."""
  targets = evaluate_build(root, text)
  found = []
  for name, (kind, attrs) in targets.items():
    for attr in ("srcs", "data"):
      for src in attrs.get(attr, []):
        if not src.startswith(("@", "//", ":")) and not (root / src).is_file():
          found.append(f"{name}: {attr} names {src}, which does not exist")
  libraries = [n for n, (kind, _) in targets.items() if kind == "py_library"]
  library_srcs = _sources(targets, libraries, "srcs")
  library_data = _sources(targets, libraries, "data")
  modules = sorted(p.relative_to(root).as_posix() for package in PACKAGES
                   for p in (root / package).rglob("*.py") if "__pycache__" not in p.parts)
  for module in modules:
    if module not in library_srcs:
      found.append(f"module {module} is in no py_library's srcs")
  # Every other file in the packages that ship (shipped models and their READMEs) is read at run
  # time; the benchmark ships nothing (its README is documentation).
  data = sorted(p.relative_to(root).as_posix() for d in PACKAGES if d != "benchmarks"
                for p in (root / d).rglob("*")
                if p.is_file() and p.suffix not in (".py", ".pyc") and "__pycache__" not in p.parts)
  data += sorted(p.relative_to(root).as_posix() for g in PACKAGE_DATA_GLOBS for p in root.glob(g))
  for path in data:
    if path not in library_data:
      found.append(f"package data {path} is in no py_library's data")

  binaries = {attrs.get("main", attrs.get("srcs", [None])[0]): name
              for name, (kind, attrs) in targets.items() if kind == "py_binary"}
  for module in modules:
    name = binaries.get(module)
    if MAIN_BLOCK.search((root / module).read_text()):
      if name is None:
        found.append(f"entry point {module} has no py_binary (add it to ENTRY_POINTS)")
      elif not set(libraries) & _closure(targets, name):
        found.append(f"py_binary {name} does not depend on the library")
    elif name is not None:
      found.append(f"py_binary {name} runs {module}, which has no `if __name__ == \"__main__\":` "
                   "block (add it to NOT_ENTRY_POINTS)")

  tests = {}
  for name, (kind, attrs) in targets.items():
    if kind == "py_test":
      for src in attrs.get("srcs", []):
        if src.startswith("tests/test_"):
          tests.setdefault(src, []).append(name)
  for path in sorted(p.relative_to(root).as_posix() for p in (root / "tests").glob("test_*.py")):
    if path not in tests:
      found.append(f"test file {path} has no py_test")
      continue
    for name in tests[path]:
      attrs = targets[name][1]
      if attrs.get("main") != RUNNER or RUNNER not in attrs.get("srcs", []):
        found.append(f"py_test {name} does not run {RUNNER}")
      if not any(path in arg for arg in attrs.get("args", [])):
        found.append(f"py_test {name} does not pass {path} to the runner")
      if "tests/conftest.py" not in attrs.get("srcs", []) + attrs.get("data", []):
        found.append(f"py_test {name} lacks tests/conftest.py")
      if not set(libraries) & _closure(targets, name):
        found.append(f"py_test {name} does not depend on the library")
  for path in BAZEL_FILES:
    if not (root / path).is_file():
      found.append(f"{path} is missing")
  return found


def test_build_declares_every_module_entry_point_data_file_and_test():
  found = problems(ROOT)
  assert not found, "BUILD is incomplete (see its comments):\n" + "\n".join(found)


def test_generated_and_output_files_are_git_ignored():
  ignored = (ROOT / ".gitignore").read_text().splitlines()
  assert "/.bazelrc" in ignored
  assert "/bazel-*" in ignored


@pytest.fixture(name="tree")
def fixture_tree(tmp_path):
  """A copy of the checkout's sources, BUILD and Bazel files, to break."""
  for rel in [p.relative_to(ROOT) for d in PACKAGES + ("tests", "flags", "tools")
              for p in (ROOT / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts]:
    (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / rel, tmp_path / rel)
  for name in ("BUILD", "WORKSPACE", ".bazelignore", "pyproject.toml"):
    shutil.copyfile(ROOT / name, tmp_path / name)
  assert problems(tmp_path) == []
  return tmp_path


def test_check_fails_for_a_sub_package_entry_point_or_a_library_module_as_binary(tree):
  (tree / "l2l_tf" / "meta" / "new_tool.py").write_text(
      'def main():\n  pass\n\n\nif __name__ == "__main__":\n  main()\n')
  (tree / "l2l_tf" / "helpers.py").write_text("def helper():\n  pass\n")
  assert problems(tree) == [
      "py_binary helpers runs l2l_tf/helpers.py, which has no `if __name__ == \"__main__\":` block "
      "(add it to NOT_ENTRY_POINTS)",
      "entry point l2l_tf/meta/new_tool.py has no py_binary (add it to ENTRY_POINTS)"]


def test_check_fails_when_build_leaves_out_a_module_a_test_or_data(tree):
  build = (tree / "BUILD").read_text()
  broken = build.replace('glob(["l2l_tf/**/*.py"])', 'glob(["l2l_tf/*.py"])')
  broken = broken.replace('glob(["tests/test_*.py"])', 'glob(["tests/test_*.py"], '
                          'exclude = ["tests/test_build_consistency.py"])')
  broken = broken.replace('glob(["flags/**/*.flags"])', "[]")
  broken = broken.replace('glob(["l2l_tf_experiments/**/*.py"])',
                          'glob(["l2l_tf_experiments/*.py"])')
  broken = broken.replace('glob(["l2l_tf_experiments/**/pretrained/**"], allow_empty = True)', "[]")
  assert broken.count("glob(") == build.count("glob(") - 2, "BUILD changed: update this test"
  found = problems(tree, broken)
  assert "module l2l_tf/optimizers/lstm.py is in no py_library's srcs" in found
  assert "test file tests/test_build_consistency.py has no py_test" in found
  assert "package data flags/quadratic.flags is in no py_library's data" in found
  assert "module l2l_tf_experiments/review/task_h.py is in no py_library's srcs" in found
  assert ("package data l2l_tf_experiments/review/pretrained/review_h_l2l/weights.npz is in no "
          "py_library's data") in found


def test_check_fails_for_a_target_naming_a_missing_file(tree):
  text = (tree / "BUILD").read_text() + '\npy_binary(name = "gone", srcs = ["l2l_tf/gone.py"])\n'
  assert "gone: srcs names l2l_tf/gone.py, which does not exist" in problems(tree, text)


def test_check_fails_when_build_leaves_out_a_benchmark_module_or_entry_point(tree):
  broken = (tree / "BUILD").read_text().replace('glob(["benchmarks/**/*.py"])',
                                                '["benchmarks/run.py"]')
  (tree / "benchmarks" / "extra.py").write_text('if __name__ == "__main__":\n  pass\n')
  found = problems(tree, broken)
  assert "module benchmarks/flops.py is in no py_library's srcs" in found
  assert any(line.startswith("entry point benchmarks/extra.py has no py_binary") for line in found)
