"""The meta learning-rate search: candidates in range, flags forwarded, the best by validation."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def test_search_trains_each_candidate_and_picks_the_lowest_validation_loss(tmp_path):
  out = tmp_path / "search"
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(
      [sys.executable, "-m", "l2l_tf.meta_lr_search", "--problem=quadratic", "--num_dims=2",
       "--hidden_sizes=3", "--num_candidates=2", "--search_epochs=2", "--horizon=4",
       "--truncation=2", "--num_validation_problems=2", "--validation_every=1",
       "--checkpoint_every=1", "--min_rate=1e-4", "--max_rate=1e-2", "--seed=3",
       "--meta_learning_rate=0.5", "--num_epochs=99", f"--output_dir={out}", "--parallel=2",
       "--threads=1"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((out / "search.json").read_text())
  rates = summary["rates"]
  assert len(rates) == 2 and rates == sorted(rates)
  assert all(1e-4 <= r <= 1e-2 for r in rates)
  scores = {}
  for rate in rates:
    metadata = json.loads((out / f"lr_{rate:g}" / "optimizer" / "config.json").read_text())[
        "metadata"]
    # The candidate's own rate and budget, not the search command's --meta_learning_rate and
    # --num_epochs; the other flags forwarded.
    assert metadata["train"]["meta_learning_rate"] == rate
    assert metadata["epochs_trained"] == 2 and metadata["train"]["horizon"] == 4
    assert metadata["problem"]["num_dims"] == 2
    scores[f"{rate:g}"] = metadata["best_validation_final_loss"]
  assert summary["best_validation_final_loss"] == scores
  assert all(math.isfinite(s) for s in scores.values())
  assert summary["best_rate"] == float(min(scores, key=scores.get))
  assert summary["best_run"] == str(out / f"lr_{min(scores, key=scores.get)}")
  assert "seeds" not in summary

  # The same search with a second training seed: same rates, the first seed's runs reused, each
  # candidate scored by its seeds' mean.
  def weights(run):
    with np.load(out / run / "optimizer" / "weights.npz") as f:
      return {k: f[k] for k in f.files}

  first_runs = {rate: weights(f"lr_{rate:g}") for rate in rates}
  proc = subprocess.run(
      [sys.executable, "-m", "l2l_tf.meta_lr_search", "--problem=quadratic", "--num_dims=2",
       "--hidden_sizes=3", "--num_candidates=2", "--search_epochs=2", "--horizon=4",
       "--truncation=2", "--num_validation_problems=2", "--validation_every=1",
       "--checkpoint_every=1", "--min_rate=1e-4", "--max_rate=1e-2", "--seed=3",
       f"--output_dir={out}", "--parallel=2", "--threads=1", "--search_seeds=2"],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr[-3000:]
  summary = json.loads((out / "search.json").read_text())
  assert summary["rates"] == rates and summary["seeds"] == [3, 4]
  for rate in rates:
    again = weights(f"lr_{rate:g}")  # Resumed at its end, not trained again.
    assert sorted(again) == sorted(first_runs[rate])
    assert all(np.array_equal(again[k], first_runs[rate][k]) for k in again)
    assert "(epoch 2)" in (out / f"lr_{rate:g}.log").read_text().split("Resuming from")[-1]
    metadata = json.loads((out / f"lr_{rate:g}_s4" / "optimizer" / "config.json").read_text())[
        "metadata"]
    assert metadata["train"]["seed"] == 4 and metadata["train"]["meta_learning_rate"] == rate
    pair = [scores[f"{rate:g}"], metadata["best_validation_final_loss"]]
    assert summary["best_validation_final_loss_per_seed"][f"{rate:g}"] == pair
    assert math.isclose(summary["best_validation_final_loss"][f"{rate:g}"], sum(pair) / 2,
                        rel_tol=1e-6)
  best = min(summary["best_validation_final_loss"], key=summary["best_validation_final_loss"].get)
  assert summary["best_rate"] == float(best)
  assert summary["best_runs"] == [str(out / f"lr_{best}"), str(out / f"lr_{best}_s4")]


def test_bad_range_is_a_one_line_error(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(
      [sys.executable, "-m", "l2l_tf.meta_lr_search", "--min_rate=0.1", "--max_rate=0.01",
       f"--output_dir={tmp_path}"], cwd=tmp_path, env=env, capture_output=True, text=True,
      timeout=300)
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == "error: --min_rate must be below --max_rate."
