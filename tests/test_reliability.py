"""No lost work: SIGKILL at many points of meta-training, then resume, gives the uninterrupted run's
meta-parameters exactly; a corrupt newest checkpoint falls back to the previous one."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
TRAIN = ["--problem=quadratic", "--num_dims=3", "--hidden_sizes=4", "--threads=1",
         "--progress=false", "--num_epochs=10", "--horizon=6", "--truncation=3",
         "--meta_batch_size=2", "--num_validation_problems=3", "--validation_every=2",
         "--checkpoint_every=1", "--meta_learning_rate=0.01", "--deterministic=true"]


def train(output_dir, fault=None):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  env.pop("L2L_TF_FAULT_INJECTION", None)
  if fault:
    env["L2L_TF_FAULT_INJECTION"] = fault
  return subprocess.run([sys.executable, "-m", "l2l_tf.train", *TRAIN,
                         f"--output_dir={output_dir}"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


def final_weights(output_dir):
  with np.load(Path(output_dir) / "optimizer" / "weights.npz") as data:
    return {k: data[k] for k in data.files}


def newest_checkpoint_data(output_dir):
  ckpt_dir = Path(output_dir) / "checkpoints"
  state = (ckpt_dir / "checkpoint").read_text()
  newest = state.splitlines()[0].split('"')[1]
  return next(ckpt_dir.glob(Path(newest).name + ".data-*"))


def test_sigkill_at_many_points_then_resume_matches_uninterrupted_run(tmp_path):
  straight = train(tmp_path / "straight")
  assert straight.returncode == 0, straight.stderr[-2000:]

  run_dir = tmp_path / "killed"
  faults = ["meta_step:3", "epoch_end:2", "validation:1", "before_checkpoint:2",
            "after_checkpoint:1"]
  for fault in faults:
    proc = train(run_dir, fault)
    assert proc.returncode == -signal.SIGKILL, (fault, proc.returncode, proc.stderr[-2000:])
  # A kill in the middle of writing a checkpoint's data: the newest checkpoint is truncated.
  data_file = newest_checkpoint_data(run_dir)
  data_file.write_bytes(data_file.read_bytes()[: data_file.stat().st_size // 2])
  finished = train(run_dir)
  assert finished.returncode == 0, finished.stderr[-2000:]
  assert "unreadable" in finished.stderr  # The corrupt checkpoint was reported and skipped.

  expected, got = final_weights(tmp_path / "straight"), final_weights(run_dir)
  assert sorted(expected) == sorted(got)
  for key in expected:
    np.testing.assert_array_equal(expected[key], got[key])
  meta_a = json.loads((tmp_path / "straight" / "optimizer" / "config.json").read_text())
  meta_b = json.loads((run_dir / "optimizer" / "config.json").read_text())
  assert meta_a["metadata"]["best_validation_final_loss"] == \
      meta_b["metadata"]["best_validation_final_loss"]


def test_checkpoint_state_file_is_never_left_half_written(tmp_path):
  proc = train(tmp_path, "after_checkpoint:3")
  assert proc.returncode == -signal.SIGKILL
  state = (tmp_path / "checkpoints" / "checkpoint").read_text()
  assert 'model_checkpoint_path: "ckpt-' in state
  assert not list(tmp_path.glob("optimizer*"))  # Nothing exported before the end of the run.
