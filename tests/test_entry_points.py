"""Every entry point with tiny flags, and a one-line error (no traceback) for bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TINY_PROBLEM = ["--problem=quadratic", "--num_dims=3", "--hidden_sizes=4", "--threads=1",
                "--progress=false"]
TINY_TRAIN = ["--num_epochs=2", "--horizon=4", "--truncation=2", "--meta_batch_size=2",
              "--num_validation_problems=3", "--validation_every=1", "--checkpoint_every=1"]
TINY_EVAL = ["--num_test_problems=4", "--num_validation_problems=3", "--num_steps=4",
             "--learning_rate_grid=0.01,0.1", "--baselines=sgd,adam"]


def run(module, *args, check=True):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-m", f"l2l_tf.{module}", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  if check:
    assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


def check_results(path: Path, names):
  results = json.loads(path.read_text())
  assert set(results["optimizers"]) == set(names)
  assert results["steps"] == list(range(len(results["steps"])))
  for curve in results["optimizers"].values():
    assert len(curve["mean"]) == len(results["steps"])
  assert path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
  return results


def test_train_then_evaluate(tmp_path):
  out = tmp_path / "run"
  proc = run("train", *TINY_PROBLEM, *TINY_TRAIN, f"--output_dir={out}")
  assert "optimizer saved to" in proc.stdout
  assert (out / "optimizer" / "weights.npz").is_file()
  assert list((out / "tensorboard").glob("events.out.tfevents.*"))
  config = json.loads((out / "optimizer" / "config.json").read_text())
  assert "l2l_tf.train" in config["metadata"]["command"]
  # Running it again resumes (nothing left to do) instead of starting over.
  again = run("train", *TINY_PROBLEM, *TINY_TRAIN, f"--output_dir={out}")
  assert "Resuming" in again.stderr
  run("evaluate", *TINY_PROBLEM, *TINY_EVAL, f"--optimizer_path={out}",
      f"--output_dir={tmp_path / 'eval'}", "--figure_name=tiny")
  check_results(tmp_path / "eval" / "tiny.json", {"LSTM", "SGD", "Adam"})


def test_reproduce_with_retrain(tmp_path):
  run("reproduce", "--figure=quadratic", *TINY_PROBLEM, *TINY_TRAIN, *TINY_EVAL, "--retrain",
      f"--output_dir={tmp_path}")
  results = check_results(tmp_path / "quadratic.json", {"LSTM", "SGD", "Adam"})
  assert results["figure"] == "quadratic"
  assert (tmp_path / "train" / "quadratic" / "optimizer" / "config.json").is_file()


def test_reproduce_from_shipped_optimizer(tmp_path):
  run("reproduce", "--figure=quadratic", "--progress=false", *TINY_EVAL,
      f"--output_dir={tmp_path}")
  results = check_results(tmp_path / "quadratic.json", {"LSTM", "SGD", "Adam"})
  assert results["num_test_problems"] == 4
  assert "pretrained/quadratic" in results["learned_optimizers"]["LSTM"]["path"]


@pytest.mark.parametrize("module,args,message", [
    ("reproduce", ["--figure=nonexistent"], "Unknown --figure=nonexistent; choose one of"),
    ("train", TINY_PROBLEM + ["--horizon=0"], "--horizon must be positive"),
    ("train", TINY_PROBLEM + ["--horizon=100", "--truncation=30"], "does not divide"),
    ("train", TINY_PROBLEM + ["--meta_learning_rate=-1"], "meta_learning_rate"),
    ("train", TINY_PROBLEM + ["--hidden_sizes=a,b"], "--hidden_sizes must be"),
    ("train", ["--problem=nonexistent"], "--problem"),
    ("evaluate", TINY_PROBLEM + ["--optimizer_path=/nonexistent/run"], "No saved optimizer"),
    ("evaluate", TINY_PROBLEM + ["--num_steps=0"], "--num_steps must be positive"),
    ("reproduce", ["--figure=quadratic", "--hidden_sizes=8"], "different architecture"),
    ("evaluate", TINY_PROBLEM + ["--baselines=adagrad"], "Unknown baseline"),
    ("train", ["--problem=mnist", "--data_dir=/nonexistent/data"],
     "MNIST is not available (tried cache /nonexistent/data/mnist.npz"),
    ("train", TINY_PROBLEM + ["--threads=-1"], "--threads must be >= 0"),
])
def test_bad_input_gives_one_line_error(tmp_path, module, args, message):
  proc = run(module, *args, f"--output_dir={tmp_path / 'out'}", check=False)
  assert proc.returncode != 0
  assert message in proc.stderr
  assert "Traceback" not in proc.stderr


def test_unwritable_output_dir(tmp_path):
  blocker = tmp_path / "file"
  blocker.write_text("")
  proc = run("train", *TINY_PROBLEM, f"--output_dir={blocker / 'sub'}", check=False)
  assert proc.returncode == 1
  assert "not writable" in proc.stderr and "Traceback" not in proc.stderr


def test_export_only_writes_the_best_so_far_with_the_training_command(tmp_path):
  out = tmp_path / "run"
  run("train", *TINY_PROBLEM, *TINY_TRAIN, f"--output_dir={out}")
  (out / "optimizer" / "weights.npz").unlink()
  proc = run("train", *TINY_PROBLEM, *TINY_TRAIN, f"--output_dir={out}", "--export_only",
             "--num_epochs=50")
  assert "trained 2 epochs" in proc.stdout
  config = json.loads((out / "optimizer" / "config.json").read_text())
  # (tmp_path itself contains "export_only": the flag must go, the --output_dir must stay.)
  command = config["metadata"]["command"].split()
  assert not [a for a in command if a.startswith("--export_only")]
  assert f"--output_dir={out}" in command
  assert config["metadata"]["epochs_trained"] == 2
  empty = run("train", *TINY_PROBLEM, f"--output_dir={tmp_path / 'empty'}", "--export_only",
              check=False)
  assert empty.returncode == 1 and "no checkpoint" in empty.stderr


@pytest.mark.parametrize("script,module", [
    ("l2l_tf/train.py", "l2l_tf.train"), ("l2l_tf_experiments/review/run.py", "l2l_tf_experiments.review.run"),
    ("l2l_tf/data/prepare.py", "l2l_tf.data.prepare")])
def test_command_line_names_the_module_that_runs(monkeypatch, script, module):
  from l2l_tf import cli  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(sys, "argv", [str(REPO / script), "--seed=3", "--output_dir=a b"])
  assert cli.command_line() == f"python -m {module} --seed=3 '--output_dir=a b'"
  assert cli.command_line(drop_flags=("seed",)) == f"python -m {module} '--output_dir=a b'"
