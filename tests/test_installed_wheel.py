"""Installed as a package, it still works: a wheel in a fresh virtualenv, run from elsewhere."""

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def run(args, cwd, timeout=600):
  env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",)}
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module", name="installed")
def fixture_installed(tmp_path_factory):
  """A fresh virtualenv with the wheel of this checkout installed; its dependencies come from
  the test environment's site-packages (a .pth file), so nothing is downloaded."""
  tmp = tmp_path_factory.mktemp("wheel")
  proc = run([sys.executable, "-m", "pip", "wheel", str(REPO), "--no-deps", "--no-build-isolation",
              "-q", "-w", str(tmp / "dist")], cwd=tmp)
  assert proc.returncode == 0, proc.stderr[-3000:]
  wheel, = (tmp / "dist").glob("l2l_tf-*.whl")
  venv = tmp / "venv"
  proc = run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp)
  assert proc.returncode == 0, proc.stderr[-3000:]
  python = venv / "bin" / "python"
  proc = run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
              str(wheel)], cwd=tmp)
  assert proc.returncode == 0, proc.stderr[-3000:]
  purelib = Path(run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()"
                      "['purelib'])"], cwd=tmp).stdout.strip())
  # Appended after the venv's own site-packages: the installed l2l_tf wins over the checkout's
  # editable install (whose finder is not activated from a .pth-added path).
  (purelib / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
  return python, purelib, tmp


def test_every_shipped_file_and_flagfile_is_installed(installed):
  _, purelib, _ = installed
  shipped = [p.relative_to(REPO) for p in REPO.glob("l2l_tf*/**/pretrained/**/*") if p.is_file()]
  shipped += [Path("l2l_tf") / "flags" / p.name for p in (REPO / "flags").glob("*.flags")]
  assert len(shipped) > 20
  missing = [str(p) for p in shipped if not (purelib / p).is_file()]
  assert not missing, missing


def test_a_figure_runs_from_the_installed_package_in_another_directory(installed):
  python, purelib, tmp = installed
  work = tmp / "elsewhere"
  work.mkdir()
  proc = run([str(python), "-c", "import l2l_tf, sys; print(l2l_tf.__file__)"], cwd=work)
  assert Path(proc.stdout.strip()).parent == purelib / "l2l_tf", proc.stdout + proc.stderr
  proc = run([str(python), "-m", "l2l_tf.reproduce", "--figure=quadratic", "--num_steps=4",
              "--num_test_problems=6", "--num_validation_problems=4",
              "--learning_rate_grid=0.01,0.1", "--output_dir=out", "--threads=1",
              "--progress=false"], cwd=work)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((work / "out" / "quadratic.json").read_text())
  assert results["num_test_problems"] == 6 and "LSTM" in results["optimizers"]
  assert (work / "out" / "quadratic.png").is_file()
  # Every shipped optimizer loads from the installed package.
  proc = run([str(python), "-c", "from pathlib import Path\n"
              "import l2l_tf\nfrom l2l_tf.optimizers import serialization\n"
              "root = Path(l2l_tf.__file__).parent.parent\n"
              "dirs = sorted({p.parent for p in root.glob('l2l_tf*/**/pretrained/**/weights.npz')})\n"
              "for d in dirs: serialization.load_optimizer(d)\n"
              "print(len(dirs))"], cwd=work)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert int(proc.stdout.split()[-1]) >= 20


def test_pyproject_lists_every_package_of_the_tree():
  import tomllib  # pylint: disable=g-import-not-at-top
  config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
  on_disk = {".".join(p.parent.relative_to(REPO).parts)
             for p in REPO.glob("l2l_tf*/**/__init__.py")}
  mapped = set(config.get("package-dir", {}))
  assert set(config["packages"]) == on_disk | mapped, sorted(
      set(config["packages"]) ^ (on_disk | mapped))
