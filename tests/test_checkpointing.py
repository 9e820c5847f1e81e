"""The checkpointed training loop every trainer shares (l2l_tf.meta.checkpointing.TrainingRun)."""

import json
import stat

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import meta
from l2l_tf.meta import checkpointing
from l2l_tf.optimizers import serialization


class ToyTrainer:
  """x <- x - 0.1 * (x - target_n), target_n from the step number: a run whose result depends on
  every step, its order and its number. Validation scores |x - 3|, so the best x is the one
  closest to 3 (it passes 3 and moves on)."""

  def __init__(self, output_dir, nonfinite_steps=(), **kwargs):
    self.x = tf.Variable([0.0])
    self.momentum = tf.Variable([0.0])
    self.nonfinite_steps = set(nonfinite_steps)
    self.run = checkpointing.TrainingRun(output_dir, {"toy": 1}, [self.x],
                                         {"x": self.x, "momentum": self.momentum},
                                         log_fn=lambda m: None,
                                         **kwargs)

  def step(self, n):
    target = 0.5 * n
    finite = n not in self.nonfinite_steps
    if self.run.count_step(finite, f"step {n}"):
      self.momentum.assign(0.5 * self.momentum + (self.x - target))
      self.x.assign_sub(0.1 * self.momentum)
    return float(self.x[0])

  def validate(self):
    return abs(float(self.x[0]) - 3.0)

  def train(self, num_steps, **kwargs):
    self.run.train(num_steps, self.step, self.validate, validation_every=2, checkpoint_every=3,
                   **kwargs)
    return self


def test_resumed_run_equals_uninterrupted_run_and_keeps_the_best(tmp_path):
  straight = ToyTrainer(tmp_path / "a").train(12)
  ToyTrainer(tmp_path / "b").train(5)  # Checkpoints at 3 and 5 (the last step).
  resumed = ToyTrainer(tmp_path / "b")
  assert resumed.run.resumed_from.endswith("ckpt-5")
  assert int(resumed.run.step.numpy()) == 5
  resumed.train(12)
  for a, b in ((straight.x, resumed.x), (straight.momentum, resumed.momentum),
               (straight.run.best_weights[0], resumed.run.best_weights[0])):
    np.testing.assert_array_equal(a.numpy(), b.numpy())
  assert int(straight.run.best_step.numpy()) == int(resumed.run.best_step.numpy())
  # Validated before the first step and after steps 2, 4, ..., 12; x passes 3 and moves on, so
  # the best is an earlier x than the last, and its score is its distance to 3.
  best = float(straight.run.best_weights[0].numpy()[0])
  assert 0 < int(straight.run.best_step.numpy()) < 12
  assert best != float(straight.x.numpy()[0])
  assert float(straight.run.best_score.numpy()) == pytest.approx(abs(best - 3.0))


def test_keep_if_best_copies_only_improvements(tmp_path):
  x = tf.Variable([1.0])
  run = checkpointing.TrainingRun(tmp_path, {}, [x], {}, log_fn=lambda m: None)
  assert run.keep_if_best(2.0)
  x.assign([5.0])
  run.step.assign(7)
  assert not run.keep_if_best(3.0)
  assert run.best_weights[0].numpy()[0] == 1.0 and int(run.best_step.numpy()) == 0
  assert run.keep_if_best(1.0)
  assert run.best_weights[0].numpy()[0] == 5.0 and int(run.best_step.numpy()) == 7


def test_non_finite_steps_are_skipped_counted_and_stop_training_when_consecutive(tmp_path):
  toy = ToyTrainer(tmp_path / "a", nonfinite_steps=(1, 4, 5), max_consecutive_nonfinite=3)
  toy.train(8)
  assert int(toy.run.skipped_steps.numpy()) == 3  # Two in a row is below the limit.
  toy = ToyTrainer(tmp_path / "b", nonfinite_steps=(2, 3, 4), max_consecutive_nonfinite=3)
  with pytest.raises(meta.TrainingError, match="3 consecutive non-finite"):
    toy.train(8)
  assert int(toy.run.step.numpy()) == 4  # Stopped at the third skip (step 4), not later.
  # The checkpoint (step 3) holds the last good state.
  assert int(ToyTrainer(tmp_path / "b").run.step.numpy()) == 3


def test_other_settings_in_the_run_directory_are_refused(tmp_path):
  checkpointing.write_run_config(tmp_path, {"lr": 0.1, "seed": 0})
  checkpointing.write_run_config(tmp_path, {"seed": 0, "lr": 0.1})  # The same run: accepted.
  with pytest.raises(meta.TrainingError,
                     match=r"different settings \(lr: requested 0.2, saved 0.1\)"):
    checkpointing.write_run_config(tmp_path, {"lr": 0.2, "seed": 0})
  assert json.loads((tmp_path / "run_config.json").read_text()) == {"lr": 0.1, "seed": 0}


def test_cpu_seconds_are_checkpointed_when_tracked(tmp_path):
  toy = ToyTrainer(tmp_path, track_cpu_seconds=True).train(3)
  assert float(toy.run.cpu_seconds.numpy()) > 0
  assert ToyTrainer(tmp_path).run.cpu_seconds is None


def test_one_line_per_validation_without_progress_bar(tmp_path):
  lines = []
  toy = ToyTrainer(tmp_path)
  toy.run.log = lines.append
  toy.run.train(4, toy.step, toy.validate, 2, 3, loss_name="toy loss", score_name="distance")
  assert [line.split(":")[0] for line in lines] == ["epoch 2/4", "epoch 4/4"]
  assert "toy loss" in lines[0] and "distance" in lines[0]


def test_exported_directory_is_replaced_atomically_and_readable(tmp_path):
  target = tmp_path / "export"
  serialization.save_weights_and_config(target, {"w": np.ones(2)}, "w.npz", "c.json", {"v": 1})
  (target / "stale.txt").write_text("from an older export")
  serialization.save_weights_and_config(target, {"w": np.zeros(2)}, "w.npz", "c.json", {"v": 2})
  assert sorted(p.name for p in target.iterdir()) == ["c.json", "w.npz"]
  assert json.loads((target / "c.json").read_text()) == {"v": 2}
  assert stat.S_IMODE(target.stat().st_mode) == 0o755
  assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # No temporary left behind.


def test_validation_history_is_recorded_across_resumes_last_record_per_step_wins(tmp_path):
  straight = ToyTrainer(tmp_path / "a").train(12)
  ToyTrainer(tmp_path / "b").train(5)
  ToyTrainer(tmp_path / "b").train(12)
  full = checkpointing.validation_history(tmp_path / "a")
  assert [r["step"] for r in full] == [0, 2, 4, 6, 8, 10, 12]
  assert full[0]["mean_loss"] is None and full[1]["mean_loss"] > 0  # None before any step.
  assert full[0]["unit"] == "epoch" and full[0]["score_name"] == "validation loss"
  best = min(full, key=lambda r: r["score"])
  assert full[-1]["best_score"] == pytest.approx(best["score"])
  assert full[-1]["best_step"] == best["step"] == int(straight.run.best_step.numpy())
  resumed = {r["step"]: r for r in checkpointing.validation_history(tmp_path / "b")}
  assert sorted(resumed) == [0, 2, 4, 5, 6, 8, 10, 12]  # 5: the first run's last step.
  for r in full:
    assert resumed[r["step"]]["score"] == pytest.approx(r["score"])
  # A kill mid-line leaves a cut line; a resumed run validates a step again: the last one counts.
  path = tmp_path / "b" / checkpointing.VALIDATION_HISTORY
  with open(path, "a", encoding="utf-8") as f:
    f.write('{"step": 12, "score": 9.0}\n{"step": 14, "sco')
  again = checkpointing.validation_history(tmp_path / "b")
  assert [r["step"] for r in again][-1] == 12 and again[-1]["score"] == 9.0
  assert checkpointing.validation_history(tmp_path / "nothing") == []
