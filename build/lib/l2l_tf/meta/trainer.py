"""Meta-training by truncated backpropagation through time (paper Sec. 2 and 3).

Each epoch draws a meta-batch of fresh optimizees, resets theta and the optimizer state, and runs
`horizon` optimizee steps cut into truncations of `truncation` steps. Per truncation the meta-loss

    L(phi) = mean over instances of sum_{t in truncation} w_t f(theta_t),  w_t = 1   (paper Eq. 3)

is differentiated through the compiled unroll and one Adam meta-step is taken. theta and the
optimizer state carry over to the next truncation as constants. Every `validation_every` epochs the
optimizer is run on held-out validation problems and the meta-parameters with the lowest mean final
validation loss are kept (the paper's early stopping). A `tf.train.CheckpointManager` checkpoint
holds everything needed to resume; problems are drawn from (seed, epoch), so a resumed run sees the
same problems as an uninterrupted one.
"""

import dataclasses
import json
import math
import os
import signal
import time
from pathlib import Path
from typing import Optional

import numpy as np
import tensorflow as tf

from l2l_tf.meta import recompute
from l2l_tf.meta import unroll
from l2l_tf.optimizers import baselines
from l2l_tf.optimizers import base as optimizers_base
from l2l_tf.optimizers import serialization
from l2l_tf.problems import base as problems_base
from l2l_tf import errors


FAULT_INJECTION_ENV = "L2L_TF_FAULT_INJECTION"
_fault_counts = {}


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


class TrainingError(errors.Error, RuntimeError):
  """Meta-training cannot go on (bad settings, or repeated non-finite meta-gradients)."""


@dataclasses.dataclass
class TrainConfig:
  """Meta-training settings (the paper's protocol: horizon 100, truncation 20, Adam)."""
  num_epochs: int = 1000
  horizon: int = 100
  truncation: int = 20
  meta_batch_size: int = 1
  meta_learning_rate: float = 1e-3
  second_derivatives: bool = False
  clip_global_norm: Optional[float] = None
  validation_every: int = 100
  num_validation_problems: int = 100
  checkpoint_every: int = 100
  checkpoint_every_seconds: float = 600.0
  max_consecutive_nonfinite: int = 10
  seed: int = 0
  # Gradient checkpointing: recompute the meta-gradient's activations in chunks of this many
  # steps (0: off). Same meta-gradient, less memory, about 1.5x the time (l2l_tf.meta.recompute).
  recompute_chunk: int = 0

  def validate(self):
    """Raises TrainingError with a message that says what to change."""
    positive = ["num_epochs", "horizon", "truncation", "meta_batch_size", "validation_every",
                "num_validation_problems", "checkpoint_every", "max_consecutive_nonfinite"]
    for name in positive:
      if getattr(self, name) <= 0:
        raise TrainingError(f"--{name} must be positive, got {getattr(self, name)}.")
    if not self.meta_learning_rate > 0 or not math.isfinite(self.meta_learning_rate):
      raise TrainingError(f"--meta_learning_rate must be a positive number, got "
                          f"{self.meta_learning_rate}.")
    if self.horizon % self.truncation:
      raise TrainingError(
          f"--truncation={self.truncation} does not divide --horizon={self.horizon}; choose a "
          f"truncation length that divides the horizon (e.g. 20 for 100).")
    if self.clip_global_norm is not None and not self.clip_global_norm > 0:
      raise TrainingError(f"--clip_global_norm must be positive, got {self.clip_global_norm}.")
    if self.recompute_chunk < 0 or (self.recompute_chunk
                                    and self.truncation % self.recompute_chunk):
      raise TrainingError(f"--recompute_chunk={self.recompute_chunk} must divide "
                          f"--truncation={self.truncation} (or be 0: off).")
    if self.recompute_chunk and self.second_derivatives:
      raise TrainingError("--recompute_chunk is first-order only; drop --second_derivatives or "
                          "set --recompute_chunk=0.")


class MetaTrainer:
  """Meta-trains `optimizer` on `problem`, checkpointing to `output_dir`.

  `validation_problem` (default: `problem`) supplies the held-out validation problems; for data-set
  problems it is the same family on the validation images.
  """

  def __init__(self, problem: problems_base.Problem, optimizer: optimizers_base.Optimizer,
               config: TrainConfig, output_dir, metadata: Optional[dict] = None,
               log_fn=print, validation_problem: Optional[problems_base.Problem] = None):
    config.validate()
    if not optimizer.trainable_variables:
      raise TrainingError(f"{type(optimizer).__name__} has no meta-parameters to train.")
    self.problem = problem
    self.optimizer = optimizer
    self.config = config
    self.output_dir = Path(output_dir)
    self.metadata = dict(metadata or {})
    self.log = log_fn
    self.meta_vars = list(optimizer.trainable_variables)
    self.meta_optimizer = baselines.Adam(config.meta_learning_rate, name="meta_adam")

    # Everything a resumed run needs lives in these variables.
    self.epoch = tf.Variable(0, dtype=tf.int64, trainable=False, name="epoch")
    self.best_score = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="best_score")
    self.best_epoch = tf.Variable(-1, dtype=tf.int64, trainable=False, name="best_epoch")
    self.skipped_steps = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_steps")
    self.best_weights = [tf.Variable(v, trainable=False) for v in self.meta_vars]
    initial = self.meta_optimizer.initial_state(self.meta_vars)
    self.meta_state = tf.nest.map_structure(lambda t: tf.Variable(t, trainable=False), initial)

    self._write_run_config()
    self.checkpoint = tf.train.Checkpoint(
        optimizer=optimizer, meta_state=self.meta_state, epoch=self.epoch,
        best_score=self.best_score, best_epoch=self.best_epoch, best_weights=self.best_weights,
        skipped_steps=self.skipped_steps)
    self.manager = tf.train.CheckpointManager(self.checkpoint, self.output_dir / "checkpoints",
                                              max_to_keep=3)
    self.resumed_from = self._restore()

    self.validation_problem = validation_problem or problem
    self._valid = self.validation_problem.sample(
        config.num_validation_problems, problems_base.split_seed(config.seed, "valid"))
    self._validation_fn = unroll.make_trajectory_fn(self.validation_problem, optimizer,
                                                    config.horizon)
    self._summary_writer = tf.summary.create_file_writer(str(self.output_dir / "tensorboard"))
    self._diagnostics_fn = None
    if config.recompute_chunk:
      self._truncation_loss = recompute.checkpointed_truncation_loss(
          problem, optimizer, config.truncation, config.recompute_chunk)
    self._meta_step = tf.function(self._meta_step_impl)

  # ---- set-up and checkpoints -------------------------------------------------------------

  def _run_description(self) -> dict:
    config = dataclasses.asdict(self.config)
    config.pop("num_epochs")  # Extending a run with more epochs is a resume, not a new run.
    for k in ("validation_every", "checkpoint_every", "checkpoint_every_seconds",
              "max_consecutive_nonfinite", "recompute_chunk"):
      config.pop(k)
    return {"problem": self.problem.get_config(), "optimizer": self.optimizer.get_config(),
            "train": config}

  def _write_run_config(self):
    path = self.output_dir / "run_config.json"
    description = self._run_description()
    if path.exists():
      with open(path) as f:
        previous = json.load(f)
      if previous != json.loads(json.dumps(description)):
        diffs = serialization.config_differences(previous, json.loads(json.dumps(description)))
        raise TrainingError(
            f"{self.output_dir} holds a run with different settings ({'; '.join(diffs)}). "
            f"Resume it with the same flags, or choose a new --output_dir.")
      return
    try:
      self.output_dir.mkdir(parents=True, exist_ok=True)
      tmp = path.with_suffix(".json.tmp")
      tmp.write_text(json.dumps(description, indent=2, sort_keys=True))
      tmp.replace(path)
    except OSError as e:
      raise TrainingError(f"Cannot write to --output_dir={self.output_dir}: {e.strerror}. "
                          f"Choose a writable directory.") from e

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

  def save_checkpoint(self):
    """Writes a checkpoint; TensorFlow writes its files first and then, atomically, the index
    naming the newest, so a process killed mid-write leaves the previous checkpoint current."""
    fault_injection("before_checkpoint")
    self.manager.save(checkpoint_number=int(self.epoch.numpy()))
    fault_injection("after_checkpoint")

  # ---- the meta-step ----------------------------------------------------------------------

  def _truncation_loss(self, params, state, instance, start_step):
    """Sum of f(theta_t) for t = start+1 .. start+K, mean over instances (w_t = 1)."""
    k = self.config.truncation
    meta_loss = tf.zeros([], params[0].dtype)
    for i in tf.range(k):
      losses, params, state = unroll.optimizee_step(
          self.problem, self.optimizer, params, state, instance, start_step + i,
          self.config.second_derivatives)
      # f(theta_start) does not depend on phi within this truncation: weight 0.
      meta_loss += tf.where(i > 0, tf.reduce_mean(losses), tf.zeros_like(meta_loss))
    meta_loss += tf.reduce_mean(self.problem.loss(params, instance, start_step + k))
    return meta_loss, params, state

  def _meta_step_impl(self, params, state, instance, start_step):
    with tf.GradientTape() as tape:
      meta_loss, params, state = self._truncation_loss(params, state, instance, start_step)
    grads = tape.gradient(meta_loss, self.meta_vars)
    grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
             for g, v in zip(grads, self.meta_vars)]
    applied = apply_if_finite(meta_loss, grads, self.meta_vars, self.meta_optimizer,
                              self.meta_state, self.config.clip_global_norm)
    return meta_loss, applied, params, state

  # ---- validation and export ----------------------------------------------------------------

  def validation_losses(self) -> np.ndarray:
    """Per-step mean validation loss [horizon + 1] of the current meta-parameters."""
    losses = self._validation_fn(*self._valid).numpy()
    return np.mean(np.where(np.isfinite(losses), losses, np.inf), axis=1)

  def _validate(self) -> float:
    curve = self.validation_losses()
    score = float(curve[-1])
    improved = score < float(self.best_score.numpy())
    if improved:
      self.best_score.assign(score)
      self.best_epoch.assign(self.epoch)
      for best, v in zip(self.best_weights, self.meta_vars):
        best.assign(v)
    with self._summary_writer.as_default(step=int(self.epoch.numpy())):
      tf.summary.scalar("validation/final_loss", score)
      tf.summary.scalar("validation/mean_log10_loss", float(np.mean(np.log10(curve))))
      tf.summary.scalar("validation/best_final_loss", float(self.best_score.numpy()))
    self._log_histograms()
    return score

  def _log_histograms(self):
    """Proposed updates and gate activations on one validation problem, over the horizon."""
    if not hasattr(self.optimizer, "diagnostics"):
      return
    if self._diagnostics_fn is None:
      self._diagnostics_fn = tf.function(self._diagnostics_impl)
    instance = tf.nest.map_structure(lambda t: t[:1], self._valid[0])
    updates, gates = self._diagnostics_fn(instance, [p[:1] for p in self._valid[1]])
    with self._summary_writer.as_default(step=int(self.epoch.numpy())):
      tf.summary.histogram("optimizer/updates", updates)
      for layer, layer_gates in enumerate(gates):
        for name, values in zip(("input", "forget", "output"), layer_gates):
          tf.summary.histogram(f"optimizer/layer{layer}_{name}_gate", values)

  def _diagnostics_impl(self, instance, params, max_coordinates: int = 2000):
    """Compiled run of the horizon: all updates, and the gates of the first coordinates."""
    problem = self.validation_problem
    horizon = self.config.horizon

    def one_step(params, state, t):
      _, params, state, info = unroll.optimizee_step(problem, self.optimizer, params, state,
                                                     instance, t, diagnostics=True)
      gates = tf.nest.map_structure(lambda g: tf.reshape(g[:max_coordinates], [-1]),
                                    info["gates"])
      return params, state, optimizers_base.flatten_coordinates(info["updates"]), gates

    state = self.optimizer.initial_state(params)
    params, state, updates, gates = one_step(params, state, 0)  # Step 0 fixes the structure.
    new_array = lambda x: tf.TensorArray(x.dtype, size=horizon).write(0, x)
    updates_all = new_array(updates)
    gates_all = tf.nest.map_structure(new_array, gates)
    for t in tf.range(1, horizon):
      params, state, updates, gates = one_step(params, state, t)
      updates_all = updates_all.write(t, updates)
      gates_all = tf.nest.map_structure(lambda a, g, t=t: a.write(t, g), gates_all, gates)
    flat = lambda a: tf.reshape(a.stack(), [-1])
    return flat(updates_all), tf.nest.map_structure(flat, gates_all)

  def export_best(self, directory=None) -> Path:
    """Saves the best meta-parameters (by validation) as a loadable optimizer directory."""
    from l2l_tf.optimizers import make_optimizer  # pylint: disable=g-import-not-at-top
    best = make_optimizer(self.optimizer.get_config())
    by_key = dict(serialization.variable_paths(self.optimizer))
    position = {id(v): i for i, v in enumerate(self.meta_vars)}
    best_by_key = {k: self.best_weights[position[id(v)]] for k, v in by_key.items()}
    for key, var in serialization.variable_paths(best):
      var.assign(best_by_key[key])
    metadata = dict(self.metadata)
    metadata.update({
        "problem": self.problem.get_config(),
        "train": dataclasses.asdict(self.config),
        "best_epoch": int(self.best_epoch.numpy()),
        "epochs_trained": int(self.epoch.numpy()),
        "best_validation_final_loss": float(self.best_score.numpy()),
        "skipped_meta_steps": int(self.skipped_steps.numpy()),
    })
    return serialization.save_optimizer(best, directory or self.output_dir / "optimizer",
                                        metadata)

  # ---- the loop -----------------------------------------------------------------------------

  def train(self, progress: bool = True) -> dict:
    """Runs epochs until `num_epochs`, resuming from the newest checkpoint; returns a summary."""
    cfg = self.config
    num_truncations = cfg.horizon // cfg.truncation
    if self.resumed_from:
      self.log(f"Resuming from {self.resumed_from} (epoch {int(self.epoch.numpy())}).")
    elif int(self.best_epoch.numpy()) < 0:
      self._validate()  # The untrained optimizer is the first candidate.
    bar = None
    if progress:
      from tqdm import tqdm  # pylint: disable=g-import-not-at-top
      bar = tqdm(total=cfg.num_epochs, initial=int(self.epoch.numpy()), desc="meta-training",
                 unit="epoch", dynamic_ncols=True)
    last_save = time.monotonic()
    consecutive_skips = 0
    score = float("nan")
    while int(self.epoch.numpy()) < cfg.num_epochs:
      epoch = int(self.epoch.numpy())
      instance, params = self.problem.sample(cfg.meta_batch_size,
                                             problems_base.split_seed(cfg.seed, "train", epoch))
      state = self.optimizer.initial_state(params)
      epoch_loss = 0.0
      for k in range(num_truncations):
        meta_loss, applied, params, state = self._meta_step(
            params, state, instance, tf.constant(k * cfg.truncation, tf.int32))
        if not bool(applied):
          self.skipped_steps.assign_add(1)
          consecutive_skips += 1
          self.log(f"WARNING: non-finite meta-loss or meta-gradient at epoch {epoch}, truncation "
                   f"{k}; meta-step skipped ({int(self.skipped_steps.numpy())} so far).")
          if consecutive_skips >= cfg.max_consecutive_nonfinite:
            raise TrainingError(
                f"{consecutive_skips} consecutive non-finite meta-steps; stopped. The last good "
                f"checkpoint is in {self.manager.directory}. Lower --meta_learning_rate or set "
                f"--clip_global_norm.")
          break  # The trajectory is no longer usable: start the next epoch on a fresh problem.
        consecutive_skips = 0
        epoch_loss += float(meta_loss)
        fault_injection("meta_step")
      self.epoch.assign_add(1)
      epoch += 1
      fault_injection("epoch_end")
      with self._summary_writer.as_default(step=epoch):
        tf.summary.scalar("meta_loss", epoch_loss / num_truncations)
      if epoch % cfg.validation_every == 0 or epoch == cfg.num_epochs:
        score = self._validate()
        fault_injection("validation")
        if bar is None:  # No progress bar: one line per validation shows how a long run goes.
          self.log(f"epoch {epoch}/{cfg.num_epochs}: meta-loss "
                   f"{epoch_loss / num_truncations:.4g}, validation final loss {score:.4g}, "
                   f"best {float(self.best_score.numpy()):.4g} (epoch "
                   f"{int(self.best_epoch.numpy())})")
      if (epoch % cfg.checkpoint_every == 0 or epoch == cfg.num_epochs
          or time.monotonic() - last_save > cfg.checkpoint_every_seconds):
        self.save_checkpoint()
        last_save = time.monotonic()
      if bar is not None:
        bar.update(1)
        bar.set_postfix(meta_loss=f"{epoch_loss / num_truncations:.4g}",
                        val=f"{score:.4g}", best=f"{float(self.best_score.numpy()):.4g}")
    if bar is not None:
      bar.close()
    self._summary_writer.flush()
    exported = self.export_best()
    return {"epochs": int(self.epoch.numpy()), "best_epoch": int(self.best_epoch.numpy()),
            "best_validation_final_loss": float(self.best_score.numpy()),
            "optimizer_dir": str(exported)}
