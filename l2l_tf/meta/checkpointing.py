"""The checkpointed training loop every meta-trainer shares: resume, keep the best, skip non-finite.

`TrainingRun` holds what a resumable training run needs besides the trainer's own state: the step
counter, the best weights by validation score, the count of skipped (non-finite) steps, a
`tf.train.CheckpointManager` checkpoint of all of it, and `run_config.json`, which refuses to resume
a run with other settings. `TrainingRun.train` is the loop: a step, validation every k steps,
checkpoints every k steps (and every so many seconds). `l2l_tf.meta.MetaTrainer` and the
experiments' trainers (e.g. the 2001 meta-LSTM's) are this loop with their own step.
"""

import json
import math
import os
import shutil
import signal
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import tensorflow as tf

from l2l_tf import errors
from l2l_tf.optimizers import serialization

FAULT_INJECTION_ENV = "L2L_TF_FAULT_INJECTION"
VALIDATION_HISTORY = "validation.jsonl"  # A run's validations, one JSON object a line.
_fault_counts = {}


class TrainingError(errors.Error, RuntimeError):
  """Meta-training cannot go on (bad settings, or repeated non-finite meta-gradients)."""


def fault_injection(point: str):
  """Test hook: `L2L_TF_FAULT_INJECTION=point:n` SIGKILLs this process at the n-th `point`.

  Points: meta_step, epoch_end, validation, before_checkpoint, after_checkpoint. Used by the
  kill-and-resume tests; does nothing when the variable is unset.
  """
  spec = os.environ.get(FAULT_INJECTION_ENV)
  if not spec:
    return
  name, _, count = spec.partition(":")
  if name != point:
    return
  _fault_counts[point] = _fault_counts.get(point, 0) + 1
  if _fault_counts[point] == int(count or 1):
    os.kill(os.getpid(), signal.SIGKILL)


def apply_if_finite(loss, grads, variables, optimizer, state_variables, clip_global_norm=None):
  """One meta-update `variables += optimizer.step(grads)` with its state kept in
  `state_variables`, applied only if `loss` and every gradient are finite (optionally after
  clipping to `clip_global_norm`). Returns a bool tensor: whether it was applied."""
  finite = tf.math.is_finite(loss)
  for g in grads:
    finite = tf.logical_and(finite, tf.reduce_all(tf.math.is_finite(g)))
  if clip_global_norm is not None:
    grads, _ = tf.clip_by_global_norm(grads, clip_global_norm)

  def apply():
    current = tf.nest.map_structure(tf.convert_to_tensor, state_variables)
    updates, new_state = optimizer.step(grads, current)
    for v, u in zip(variables, updates):
      v.assign_add(u)
    tf.nest.map_structure(lambda var, value: var.assign(value), state_variables, new_state)
    return tf.constant(True)

  return tf.cond(finite, apply, lambda: tf.constant(False))


def validation_history(output_dir) -> list:
  """The validations a run recorded (`VALIDATION_HISTORY`), one dict per validated step in step
  order (keys: step, unit, score, score_name, best_score, best_step, and mean_loss: the mean
  training loss of the steps since the previous validation, None before the first step). A step
  validated twice (a killed run resumed from an earlier checkpoint) keeps its last record, and a
  line cut short by a kill is skipped. Empty if the run recorded none."""
  path = Path(output_dir) / VALIDATION_HISTORY
  if not path.exists():
    return []
  by_step = {}
  for line in path.read_text(encoding="utf-8").splitlines():
    try:
      record = json.loads(line)
    except json.JSONDecodeError:
      continue
    if isinstance(record, dict) and "step" in record:
      by_step[record["step"]] = record
  return [by_step[step] for step in sorted(by_step)]


def write_run_config(output_dir: Path, description: dict, write: bool = True):
  """Writes `run_config.json` (unless not `write`), or checks that the one there describes the
  same run.

  Raises:
    TrainingError: `output_dir` holds a run with other settings, or is not writable.
  """
  path = Path(output_dir) / "run_config.json"
  description = json.loads(json.dumps(description))
  if path.exists():
    previous = json.loads(path.read_text())
    if previous != description:
      diffs = serialization.config_differences(description, previous)
      raise TrainingError(
          f"{output_dir} holds a run with different settings ({'; '.join(diffs)}). "
          f"Resume it with the same flags, or choose a new --output_dir.")
    return
  if not write:
    return
  try:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(description, indent=2, sort_keys=True))
    tmp.replace(path)
  except OSError as e:
    raise TrainingError(f"Cannot write to --output_dir={output_dir}: {e.strerror}. "
                        f"Choose a writable directory.") from e


class TrainingRun:
  """A resumable training run of `variables`, checkpointed to `output_dir/checkpoints`.

  Args:
    output_dir: the run's directory (checkpoints, `run_config.json`).
    description: the run's settings (JSON-able; a run is resumed only with equal settings).
    variables: the trained variables; `best_weights` keeps their values with the best score.
    trackables: what to checkpoint besides the run's own state, by name: whatever holds
      `variables` (e.g. the optimizer module) and the trainer's state (the meta-optimizer's).
    unit: what one step is called in messages ("epoch", "update").
    log_fn: messages.
    max_to_keep: checkpoints kept (a corrupt newest one falls back to the previous).
    max_consecutive_nonfinite: skipped steps in a row after which training stops.
    track_cpu_seconds: also checkpoint the process CPU seconds spent training (`cpu_seconds`).
    is_chief: False for the other workers of a multi-worker run: they restore from the chief's
      checkpoints in `output_dir` and write nothing there (their saves, which a strategy may need
      for its collectives, go to a temporary directory that is deleted at once).
    before_restore: called with the number of the newest checkpoint (None: none) before it is
      restored (workers of a multi-worker run check there that they all see the same one).

  The checkpoint's keys (`epoch`, `best_score`, `best_epoch`, `best_weights`, `skipped_steps`, and
  those of `trackables`) are those `MetaTrainer` has always written, so its earlier runs resume.

  Raises:
    TrainingError: `output_dir` holds a run with other settings.
  """

  def __init__(self, output_dir, description: dict, variables, trackables: Dict[str, object],
               unit: str = "epoch", log_fn: Callable[[str], None] = print, max_to_keep: int = 3,
               max_consecutive_nonfinite: int = 10, track_cpu_seconds: bool = False,
               is_chief: bool = True, before_restore: Optional[Callable] = None):
    self.output_dir = Path(output_dir)
    self.unit = unit
    self.log = log_fn
    self.variables = list(variables)
    self.max_consecutive_nonfinite = max_consecutive_nonfinite
    self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self.best_score = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_score")
    self.best_step = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_epoch")
    self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_steps")
    self.best_weights = [tf.Variable(v, trainable=False) for v in self.variables]
    self.cpu_seconds = None
    state = dict(trackables, epoch=self.step, best_score=self.best_score,
                 best_epoch=self.best_step, best_weights=self.best_weights,
                 skipped_steps=self.skipped_steps)
    if track_cpu_seconds:
      self.cpu_seconds = tf.Variable(0.0, dtype=tf.float64, trainable=False, name="cpu_seconds")
      state["cpu_seconds"] = self.cpu_seconds
    self._consecutive_skips = 0
    self._last_cpu = time.process_time()
    self.is_chief = is_chief
    write_run_config(self.output_dir, description, write=is_chief)
    self.checkpoint = tf.train.Checkpoint(**state)
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.output_dir / "checkpoints",
                                              max_to_keep=max_to_keep)
    if before_restore is not None:
      newest = self.manager.latest_checkpoint
      before_restore(int(newest.rsplit("-", 1)[1]) if newest else None)
    self.resumed_from = self._restore()

  def _restore(self) -> Optional[str]:
    """Restores the newest readable checkpoint; a corrupt newest one falls back to the previous."""
    for path in reversed(self.manager.checkpoints):
      try:
        self.checkpoint.restore(path).assert_existing_objects_matched()
        if path != self.manager.latest_checkpoint:
          self.log(f"WARNING: the newest checkpoint could not be read; resumed from {path}.")
        return path
      except Exception as e:  # pylint: disable=broad-except
        # Truncated files raise OpError, IndexError or ValueError depending on where they end.
        self.log(f"WARNING: checkpoint {path} is unreadable ({type(e).__name__}); "
                 "trying the previous one.")
    return None

  def save(self):
    """Writes a checkpoint; TensorFlow writes its files first and then, atomically, the index
    naming the newest, so a process killed mid-write leaves the previous checkpoint current."""
    if self.cpu_seconds is not None:
      now = time.process_time()
      self.cpu_seconds.assign_add(now - self._last_cpu)
      self._last_cpu = now
    fault_injection("before_checkpoint")
    if self.is_chief:
      self.manager.save(checkpoint_number=int(self.step.numpy()))
    else:
      scratch = tempfile.mkdtemp(prefix="l2l_tf_worker_checkpoint_")
      try:
        tf.train.CheckpointManager(self.checkpoint, scratch, max_to_keep=1).save(
            checkpoint_number=int(self.step.numpy()))
      finally:
        shutil.rmtree(scratch, ignore_errors=True)
    fault_injection("after_checkpoint")

  def keep_if_best(self, score: float) -> bool:
    """Keeps the current variables as the best if `score` is lower than every earlier one."""
    improved = score < float(self.best_score.numpy())
    if improved:
      self.best_score.assign(score)
      self.best_step.assign(self.step)
      for best, v in zip(self.best_weights, self.variables):
        best.assign(v)
    return improved

  def count_step(self, applied, where: str) -> bool:
    """Records whether a step was applied (False: non-finite loss or gradient, skipped).

    Raises:
      TrainingError: `max_consecutive_nonfinite` steps in a row were skipped.
    """
    if bool(applied):
      self._consecutive_skips = 0
      return True
    self.skipped_steps.assign_add(1)
    self._consecutive_skips += 1
    self.log(f"WARNING: non-finite meta-loss or meta-gradient at {where}; meta-step skipped "
             f"({int(self.skipped_steps.numpy())} so far).")
    if self._consecutive_skips >= self.max_consecutive_nonfinite:
      raise TrainingError(
          f"{self._consecutive_skips} consecutive non-finite meta-steps; stopped. The last good "
          f"checkpoint is in {self.manager.directory}. Lower --meta_learning_rate or set "
          f"--clip_global_norm.")
    return False

  def train(self, num_steps: int, run_step: Callable[[int], float], validate: Callable[[], float],
            validation_every: int, checkpoint_every: int,
            checkpoint_every_seconds: float = math.inf, on_validated: Optional[Callable[[float], None]] = None, progress: bool = False,
            loss_name: str = "loss", score_name: str = "validation loss"):
    """Runs steps until the counter reaches `num_steps`, resuming where a checkpoint left off.

    Args:
      num_steps: the counter's final value.
      run_step: runs step `n` (0-based; calls `count_step` for each update it tries); returns
        its training loss.
      validate: scores the current variables (lower is better); run before the first step of a
        new run, every `validation_every` steps and after the last, keeping the best weights.
      validation_every, checkpoint_every: steps between validations and checkpoints.
      checkpoint_every_seconds: also checkpoint when this much wall time has passed.
      on_validated: called with each score after the best weights are updated (e.g. logging).
      progress: a progress bar; without one, a line per validation goes to the log.
      loss_name, score_name: names of the losses in messages.
    """
    if self.resumed_from:
      self.log(f"Resuming from {self.resumed_from} ({self.unit} {int(self.step.numpy())}).")
    elif int(self.best_step.numpy()) < 0:
      score = self._validate(validate, on_validated)  # The untrained variables: first candidate.
      self._record_validation(score, float("nan"), loss_name, score_name)
    bar = None
    if progress:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      bar = tqdm(total=num_steps, initial=int(self.step.numpy()), desc="meta-training",
                 unit=self.unit, dynamic_ncols=True)
    self._last_cpu = time.process_time()
    self._consecutive_skips = 0
    last_save = time.monotonic()
    score, losses = float("nan"), []
    while int(self.step.numpy()) < num_steps:
      loss = run_step(int(self.step.numpy()))
      losses.append(loss)
      self.step.assign_add(1)
      step = int(self.step.numpy())
      fault_injection("epoch_end")
      if step % validation_every == 0 or step == num_steps:
        score = self._validate(validate, on_validated)
        self._record_validation(score, float(np.mean(losses)), loss_name, score_name)
        fault_injection("validation")
        if bar is None:  # No progress bar: one line per validation shows how a long run goes.
          self.log(f"{self.unit} {step}/{num_steps}: {loss_name} {np.mean(losses):.4g}, "
                   f"{score_name} {score:.4g}, best {float(self.best_score.numpy()):.4g} "
                   f"({self.unit} {int(self.best_step.numpy())})")
        losses = []
      if (step % checkpoint_every == 0 or step == num_steps
          or time.monotonic() - last_save > checkpoint_every_seconds):
        self.save()
        last_save = time.monotonic()
      if bar is not None:
        bar.update(1)
        bar.set_postfix(loss=f"{loss:.4g}", val=f"{score:.4g}",
                        best=f"{float(self.best_score.numpy()):.4g}")
    if bar is not None:
      bar.close()

  def _record_validation(self, score: float, loss: float, loss_name: str, score_name: str):
    """Appends the validation to `<output_dir>/validation.jsonl` (chief only): a run's history
    of model selection, kept across resumes and small enough to commit beside its checkpoints.
    A run killed after a validation and resumed from an earlier checkpoint validates that step
    again: `validation_history` keeps the last line per step."""
    if not self.is_chief:
      return
    record = {"step": int(self.step.numpy()), "unit": self.unit, "score": score,
              "score_name": score_name, "best_score": float(self.best_score.numpy()),
              "best_step": int(self.best_step.numpy()),
              "mean_loss": None if math.isnan(loss) else loss, "loss_name": loss_name}
    with open(self.output_dir / VALIDATION_HISTORY, "a", encoding="utf-8") as f:
      f.write(json.dumps(record) + "\n")

  def _validate(self, validate, on_validated) -> float:
    score = validate()
    self.keep_if_best(score)
    if on_validated is not None:
      on_validated(score)
    return score
