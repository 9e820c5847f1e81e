"""One wheel holds the library, the experiments, every shipped model and the figures' flagfiles;
installed, it finds every figure (the experiments' through its entry point) and runs a paper figure
and an experiment figure from outside the checkout."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("l2l_tf", "l2l_tf_experiments")


def shipped_files():
  """Every file of the packages a wheel must hold (sources and data; no caches), and the figures'
  flagfiles, which `flags/` of a checkout installs as `l2l_tf/flags/`."""
  files = [p.relative_to(REPO).as_posix() for d in PACKAGES for p in (REPO / d).rglob("*")
           if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"]
  return sorted(files + [f"l2l_tf/flags/{p.relative_to(REPO / 'flags').as_posix()}"
                         for p in (REPO / "flags").glob("**/*.flags")])


def test_pyproject_lists_every_package_of_the_tree():
  import tomllib  # pylint: disable=g-import-not-at-top
  config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
  on_disk = {".".join(p.parent.relative_to(REPO).parts)
             for d in PACKAGES for p in (REPO / d).glob("**/__init__.py")}
  mapped = set(config.get("package-dir", {}))
  assert set(config["packages"]) == on_disk | mapped, sorted(
      set(config["packages"]) ^ (on_disk | mapped))


def test_installed_wheel_holds_every_file_and_runs_an_experiment_figure(tmp_path):
  source = tmp_path / "source"  # A copy: building writes build/ and *.egg-info next to it.
  for name in PACKAGES + ("flags",):
    shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
  shutil.copy(REPO / "pyproject.toml", source)
  (source / "README.md").write_text("l2l_tf\n")
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("PYTHONPATH", None)
  pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-cache-dir", "-q"]
  subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"),
                        str(source)], check=True, env=env, capture_output=True, timeout=600)
  wheel = next((tmp_path / "dist").glob("l2l_tf-*.whl"))
  with zipfile.ZipFile(wheel) as archive:
    names = set(archive.namelist())
    entry_points = next(archive.read(n).decode() for n in names if n.endswith("entry_points.txt"))
  missing = [f for f in shipped_files() if f not in names]
  assert not missing, missing  # e.g. review_forget_gate/<run>/ is two levels down.
  assert "l2l_tf.figures" in entry_points and "l2l_tf_experiments.review.figures" in entry_points

  site = tmp_path / "site"
  subprocess.run(pip + ["install", "--no-deps", "--target", str(site), str(wheel)], check=True,
                 env=env, capture_output=True, timeout=600)
  env["PYTHONPATH"] = str(site)
  run = lambda *args: subprocess.run([sys.executable, *args], cwd=tmp_path, env=env,
                                     capture_output=True, text=True, timeout=600)
  where = run("-c", "import l2l_tf, l2l_tf_experiments as e; print(l2l_tf.__file__, e.__file__)")
  assert where.stdout.split() == [str(site / p / "__init__.py") for p in PACKAGES], where.stderr
  listed = run("-m", "l2l_tf.reproduce", "--list_figures")
  assert {"review_forget_gate", "review_hochreiter2001"} <= set(listed.stdout.split()), \
      listed.stderr[-2000:]
  out = tmp_path / "out"
  made = run("-m", "l2l_tf.reproduce", "--figure=review_forget_gate", f"--output_dir={out}",
             "--review_ablation_problems=quadratic", "--review_ablation_seeds=1",
             "--review_ablation_num_test_problems=2", "--review_ablation_num_validation_problems=2",
             "--learning_rate_grid=0.1", "--threads=1", "--progress=false")
  assert made.returncode == 0, made.stderr[-3000:]
  results = json.loads((out / "review_forget_gate.json").read_text())
  paths = [m["path"] for m in results["problems"]["quadratic"]["models"].values()]
  assert paths and all(p.startswith(str(site / "l2l_tf_experiments")) for p in paths)
  # A paper figure (its flagfile comes from the installed package), from another directory.
  made = run("-m", "l2l_tf.reproduce", "--figure=quadratic", "--num_steps=4",
             "--num_test_problems=6", "--num_validation_problems=4",
             "--learning_rate_grid=0.01,0.1", f"--output_dir={out}", "--threads=1",
             "--progress=false")
  assert made.returncode == 0, made.stderr[-3000:]
  results = json.loads((out / "quadratic.json").read_text())
  assert results["num_test_problems"] == 6 and "LSTM" in results["optimizers"]
  assert (out / "quadratic.png").is_file()
