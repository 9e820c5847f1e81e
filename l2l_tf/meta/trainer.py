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

With `estimator="es"` or `"pes"` (`l2l_tf.meta.estimators`) the meta-gradient comes from
evolution strategies instead (forward passes only): an epoch is then one meta-step, over a whole
run (es) or one truncation of runs that span several epochs (pes, whose particles are
checkpointed with everything else).

With a `replication` (`l2l_tf.meta.replication`: `--strategy=mirrored` or `multi_worker`) every
replica meta-trains on its slice of the same meta-batch, the meta-gradient is all-reduced and every
replica applies the same update; only the chief writes the run directory.
"""

import dataclasses
import math
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import tensorflow as tf

from l2l_tf import errors
from l2l_tf.meta import checkpointing
from l2l_tf.meta import estimators
from l2l_tf.meta import recompute
from l2l_tf.meta import replication as replication_lib
from l2l_tf.meta import unroll
from l2l_tf.optimizers import baselines
from l2l_tf.optimizers import base as optimizers_base
from l2l_tf.optimizers import serialization
from l2l_tf.problems import base as problems_base
from l2l_tf.problems import family as family_lib

TrainingError = checkpointing.TrainingError

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
  # Issue 14. The meta-loss per step: "uniform" (the paper: f) or "log" (log f).
  meta_loss_weighting: str = "uniform"
  # A horizon curriculum: ((first epoch, horizon), ...), each horizon a multiple of the truncation;
  # before the first stage (and without one) `horizon`. Validation always runs `horizon` steps.
  horizon_curriculum: Tuple[Tuple[int, int], ...] = ()
  # With a problem family: the members model selection validates on (the score is the geometric
  # mean of their mean final validation losses).
  num_validation_members: int = 4
  # Validation trajectories under XLA: about 1.8x faster on the MLP problems (slower on the conv
  # net); float results differ from the default's in the last digits. An execution setting, not
  # part of a run's identity (as `recompute_chunk`).
  validation_jit_compile: bool = False
  # Issue 18. The meta-gradient estimator (l2l_tf.meta.estimators): "tbptt" (the paper), "es"
  # (antithetic ES over whole runs: an epoch is one meta-step) or "pes" (persistent ES over
  # truncations: an epoch is one truncation, a run spans horizon / truncation epochs), and the
  # ES population: particles, perturbation stddev, antithetic pairs.
  estimator: str = "tbptt"
  es_population: int = 8
  es_sigma: float = 0.01
  es_antithetic: bool = True
  # Start from the meta-parameters of a saved optimizer (a path or `pretrained:NAME`) of the same
  # architecture, e.g. to fine-tune the paper's LSTM with PES at a longer horizon ("": phi_0).
  init_from: str = ""
  # A cosine decay of the meta learning rate over the first `meta_lr_decay_epochs` epochs, to
  # `meta_lr_final_fraction` of it, then constant (0: constant throughout, the paper's Adam). Its
  # own length, not `num_epochs`, so that extending a run does not change its schedule.
  meta_lr_decay_epochs: int = 0
  meta_lr_final_fraction: float = 0.1

  # Settings that new runs may change and older runs never had: left out of a run's identity
  # while at their defaults, so runs from before them still resume.
  LATER_SETTINGS = ("meta_loss_weighting", "horizon_curriculum", "num_validation_members",
                    "estimator", "init_from", "meta_lr_decay_epochs", "meta_lr_final_fraction")
  ES_SETTINGS = ("es_population", "es_sigma", "es_antithetic")

  def es_config(self) -> estimators.ESConfig:
    return estimators.ESConfig(self.es_population, self.es_sigma, self.es_antithetic)

  def meta_learning_rate_at(self, epoch: int) -> float:
    """The meta learning rate of epoch `epoch`: `meta_learning_rate` times
    f + (1 - f) (1 + cos(pi min(epoch, E) / E)) / 2, E = `meta_lr_decay_epochs` (none if 0),
    f = `meta_lr_final_fraction`."""
    if not self.meta_lr_decay_epochs:
      return self.meta_learning_rate
    done = min(epoch, self.meta_lr_decay_epochs) / self.meta_lr_decay_epochs
    f = self.meta_lr_final_fraction
    return self.meta_learning_rate * (f + (1.0 - f) * 0.5 * (1.0 + math.cos(math.pi * done)))

  def training_horizon(self, epoch: int) -> int:
    """The horizon of meta-training epoch `epoch` (the curriculum's stage, else `horizon`)."""
    horizon = self.horizon
    for start, stage_horizon in self.horizon_curriculum:
      if epoch >= start:
        horizon = stage_horizon
    return horizon

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
    if self.meta_lr_decay_epochs < 0 or not 0 <= self.meta_lr_final_fraction <= 1:
      raise TrainingError(
          f"--meta_lr_decay_epochs must be >= 0 (0: a constant meta learning rate) and "
          f"--meta_lr_final_fraction in [0, 1]; got {self.meta_lr_decay_epochs} and "
          f"{self.meta_lr_final_fraction}.")
    if (not self.meta_lr_decay_epochs and
        self.meta_lr_final_fraction != TrainConfig.meta_lr_final_fraction):
      raise TrainingError(
          f"--meta_lr_final_fraction={self.meta_lr_final_fraction} has no effect without "
          f"--meta_lr_decay_epochs (the length of the decay); set both, or drop the fraction.")
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
    if self.meta_loss_weighting not in unroll.META_LOSS_WEIGHTINGS:
      raise TrainingError(f"--meta_loss_weighting must be one of "
                          f"{', '.join(unroll.META_LOSS_WEIGHTINGS)}, got "
                          f"{self.meta_loss_weighting!r}.")
    starts = [start for start, _ in self.horizon_curriculum]
    if starts != sorted(set(starts)) or any(start < 0 for start in starts) or any(
        h <= 0 or h % self.truncation for _, h in self.horizon_curriculum):
      raise TrainingError(
          f"--horizon_curriculum needs increasing first epochs >= 0 and horizons that are "
          f"multiples of --truncation={self.truncation}, e.g. 0:100,1000:200; got "
          f"{','.join(f'{a}:{b}' for a, b in self.horizon_curriculum)}.")
    if self.num_validation_members <= 0:
      raise TrainingError(f"--num_validation_members must be positive, got "
                          f"{self.num_validation_members}.")
    if self.estimator not in estimators.ESTIMATORS:
      raise TrainingError(f"--estimator must be one of {', '.join(estimators.ESTIMATORS)}, got "
                          f"{self.estimator!r}.")
    if self.estimator != "tbptt":
      try:
        self.es_config().validate()
      except errors.ConfigError as e:  # The same message, as a TrainingError.
        raise TrainingError(str(e)) from e
      if self.second_derivatives:
        raise TrainingError(f"--estimator={self.estimator} does not differentiate the unroll; "
                            "drop --second_derivatives.")
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
               log_fn=print, validation_problem: Optional[problems_base.Problem] = None,
               replication: Optional[replication_lib.Replication] = None):
    config.validate()
    if not optimizer.trainable_variables:
      raise TrainingError(f"{type(optimizer).__name__} has no meta-parameters to train.")
    self.replication = replication
    if replication is not None:
      replication.check_meta_batch(config.meta_batch_size)
      if not all(isinstance(v, tf.distribute.DistributedValues)
                 for v in optimizer.trainable_variables):
        raise TrainingError("With a tf.distribute strategy the optimizer must be built under "
                            "its scope: `with replication.strategy.scope(): make_optimizer(...)`.")
      with replication.strategy.scope():
        self._init(problem, optimizer, config, output_dir, metadata, log_fn, validation_problem)
    else:
      self._init(problem, optimizer, config, output_dir, metadata, log_fn, validation_problem)

  @property
  def is_chief(self) -> bool:
    """Whether this process writes the run directory (always, without a multi-worker strategy)."""
    return self.replication is None or self.replication.is_chief

  def _init(self, problem, optimizer, config, output_dir, metadata, log_fn, validation_problem):
    self.problem = problem
    self.optimizer = optimizer
    self.config = config
    self.output_dir = Path(output_dir)
    self.metadata = dict(metadata or {})
    self.log = log_fn
    self.meta_vars = list(optimizer.trainable_variables)
    if config.init_from:
      self._initialise_from(config.init_from)
    self.meta_optimizer = baselines.Adam(config.meta_learning_rate, name="meta_adam")

    initial = self.meta_optimizer.initial_state(self.meta_vars)
    self.meta_state = tf.nest.map_structure(lambda t: tf.Variable(t, trainable=False), initial)
    self.estimator = self._make_estimator()
    trackables = {"optimizer": optimizer, "meta_state": self.meta_state}
    if isinstance(self.estimator, estimators.PersistentES):  # Its particles' runs resume too.
      trackables["estimator"] = self.estimator.trackable
    # Everything a resumed run needs: the loop's counters and best weights, and these.
    self.run = checkpointing.TrainingRun(
        self.output_dir, self._run_description(), self.meta_vars, trackables, unit="epoch",
        log_fn=lambda message: self.log(message),
        max_consecutive_nonfinite=config.max_consecutive_nonfinite,
        is_chief=self.is_chief, before_restore=(
            None if self.replication is None or self.replication.num_workers == 1 else
            lambda number: self.replication.check_same_checkpoint(number, self.output_dir)))
    self.epoch, self.best_epoch = self.run.step, self.run.best_step
    self.best_score, self.best_weights = self.run.best_score, self.run.best_weights
    self.skipped_steps, self.manager = self.run.skipped_steps, self.run.manager
    self.resumed_from = self.run.resumed_from

    # Validation: the problem's validation split, or with a family its validation members',
    # each member's problems from their own seed stream.
    self.validation_problem = validation_problem or problem
    if isinstance(self.validation_problem, family_lib.ProblemFamily):
      members = self.validation_problem.validation_members(config.num_validation_members)
      self._validation_sets = [
          (self.validation_problem.member(i),
           problems_base.split_seed(config.seed, "valid", 1 + i)) for i in members]
    else:
      self._validation_sets = [(self.validation_problem,
                                problems_base.split_seed(config.seed, "valid"))]
    self._validation_sets = [
        (p, p.sample(config.num_validation_problems, seed),
         unroll.make_trajectory_fn(p, optimizer, config.horizon,
                                  jit_compile=config.validation_jit_compile))
        for p, seed in self._validation_sets]
    self._valid = self._validation_sets[0][1]  # The diagnostics' problem.
    # Only the chief writes into the run directory (TensorBoard, checkpoints, the export).
    self._summary_writer = (tf.summary.create_file_writer(str(self.output_dir / "tensorboard"))
                            if self.is_chief else tf.summary.create_noop_writer())
    self._diagnostics_fn = None
    self._validation_curve = None
    self.family = problem if isinstance(problem, family_lib.ProblemFamily) else None
    self._member_steps = {}  # Member index -> its compiled meta-step (with a family).
    if not self.family:
      if config.recompute_chunk:
        self._truncation_loss = recompute.checkpointed_truncation_loss(
            problem, optimizer, config.truncation, config.recompute_chunk,
            config.meta_loss_weighting)
      self._meta_step = self._compile_meta_step()

  # ---- set-up and checkpoints -------------------------------------------------------------

  def _initialise_from(self, source):
    """Copies the meta-parameters of the saved optimizer `source` (a checkpoint, when there is
    one, is restored over them afterwards: a resumed run goes on from where it was)."""
    architecture = dict(self.optimizer.get_config())
    try:
      saved = serialization.load_optimizer(source)
    except serialization.OptimizerLoadError as e:
      raise TrainingError(f"--init_from={source}: {e}") from e
    diffs = serialization.config_differences(architecture, saved.get_config())
    if diffs:
      raise TrainingError(f"--init_from={source} has another architecture ({'; '.join(diffs)});"
                          f" use the flags it was trained with.")
    values = dict(serialization.variable_paths(saved))
    for key, var in serialization.variable_paths(self.optimizer):
      var.assign(values[key])

  def _make_estimator(self):
    """The es / pes estimator (None for tbptt, which the compiled meta-step runs itself)."""
    cfg = self.config
    if cfg.estimator == "tbptt":
      return None
    try:
      estimators.check_supported(cfg.estimator, self.problem, self.replication,
                                 cfg.horizon_curriculum, cfg.recompute_chunk)
    except errors.ConfigError as e:  # The same message, as a TrainingError.
      raise TrainingError(str(e)) from e
    if cfg.estimator == "es":
      estimator = estimators.EvolutionStrategies(self.problem, self.optimizer, cfg.horizon,
                                                 cfg.es_config(), cfg.meta_loss_weighting)
    else:
      example = self.problem.sample(cfg.meta_batch_size,
                                    problems_base.split_seed(cfg.seed, "train", 0))
      estimator = estimators.PersistentES(self.problem, self.optimizer, cfg.truncation,
                                          cfg.es_config(), example, cfg.meta_loss_weighting)
    step = estimator._gradient  # pylint: disable=protected-access  (compiled with the update)
    self._estimator_step = tf.function(
        lambda *args: self._apply_estimate(*step(*args)))
    return estimator

  def _apply_estimate(self, meta_loss, grads):
    return meta_loss, self._apply_meta_update(meta_loss, grads)

  def _run_description(self) -> dict:
    config = dataclasses.asdict(self.config)
    config.pop("num_epochs")  # Extending a run with more epochs is a resume, not a new run.
    for k in ("validation_every", "checkpoint_every", "checkpoint_every_seconds",
              "max_consecutive_nonfinite", "recompute_chunk", "validation_jit_compile"):
      config.pop(k)
    defaults = TrainConfig()
    for k in TrainConfig.LATER_SETTINGS:
      if config[k] == getattr(defaults, k):
        config.pop(k)
    if self.config.estimator == "tbptt":  # The ES population means nothing to tbptt.
      for k in TrainConfig.ES_SETTINGS:
        config.pop(k)
    if not isinstance(self.problem, family_lib.ProblemFamily):
      config.pop("num_validation_members", None)
    return {"problem": self.problem.get_config(), "optimizer": self.optimizer.get_config(),
            "train": config}

  def save_checkpoint(self):
    """Writes a checkpoint (see `checkpointing.TrainingRun.save`)."""
    self.run.save()

  # ---- the meta-step ----------------------------------------------------------------------

  def _truncation_loss(self, params, state, instance, start_step, problem=None):
    """Sum of f(theta_t) (or log f, `meta_loss_weighting`) for t = start+1 .. start+K, mean over
    instances (w_t = 1) on `problem` (default: the trainer's problem):
    `estimators.truncation_loss`."""
    return estimators.truncation_loss(
        self.problem if problem is None else problem, self.optimizer, params, state, instance,
        start_step, self.config.truncation, self.config.meta_loss_weighting,
        self.config.second_derivatives)

  def _member_meta_step(self, index: int):
    """The compiled meta-step of family member `index` (traced once per member)."""
    if index not in self._member_steps:
      problem = self.family.member(index)
      if self.config.recompute_chunk:
        loss_fn = recompute.checkpointed_truncation_loss(
            problem, self.optimizer, self.config.truncation, self.config.recompute_chunk,
            self.config.meta_loss_weighting)
      else:
        loss_fn = lambda *args: self._truncation_loss(*args, problem=problem)
      self._member_steps[index] = self._compile_meta_step(loss_fn)
    return self._member_steps[index]

  def _meta_step_impl(self, params, state, instance, start_step, loss_fn=None):
    meta_loss, grads, params, state = self._meta_gradient(params, state, instance, start_step,
                                                          loss_fn)
    return meta_loss, self._apply_meta_update(meta_loss, grads), params, state

  def _meta_gradient(self, params, state, instance, start_step, loss_fn=None):
    """The meta-loss of one truncation and its gradient with respect to the meta-parameters."""
    loss_fn = loss_fn or self._truncation_loss
    with tf.GradientTape() as tape:
      meta_loss, params, state = loss_fn(params, state, instance, start_step)
    grads = tape.gradient(meta_loss, self.meta_vars)
    grads = estimators.zeros_for_none(grads, self.meta_vars)
    return meta_loss, grads, params, state

  def _apply_meta_update(self, meta_loss, grads):
    """One Adam meta-step if the loss and gradients are finite; returns whether it was applied."""
    return checkpointing.apply_if_finite(meta_loss, grads, self.meta_vars, self.meta_optimizer,
                                         self.meta_state, self.config.clip_global_norm)

  def _compile_meta_step(self, loss_fn=None):
    """The compiled meta-step: one process, or replicated over `self.replication`."""
    if self.replication is None:
      return tf.function(self._meta_step_impl if loss_fn is None else
                         lambda *args: self._meta_step_impl(*args, loss_fn=loss_fn))
    return self.replication.meta_step(
        lambda *args: self._meta_gradient(*args, loss_fn=loss_fn), self._apply_meta_update)

  def _run_es_epoch(self, epoch: int) -> float:
    """es: fresh problems, one estimate over the whole horizon. pes: truncation k of run r
    (epoch = r * runs + k); its problems are drawn from (seed, r), so every truncation of a run
    (and a resumed run) sees the same ones; the particles restart at k = 0."""
    cfg = self.config
    if cfg.estimator == "es":
      seed = problems_base.split_seed(cfg.seed, "train", epoch)
      instance, params = self.problem.sample(cfg.meta_batch_size, seed)
      args, where = (instance, params, problems_base.fold_in(seed, 1000)), f"epoch {epoch}"
    else:
      run, k = divmod(epoch, cfg.horizon // cfg.truncation)
      seed = problems_base.split_seed(cfg.seed, "train", run)
      instance, params = self.problem.sample(cfg.meta_batch_size, seed)
      if k == 0:
        self.estimator.reset(instance, params)
      args = (instance, tf.constant(k * cfg.truncation, tf.int32),
              problems_base.fold_in(seed, 1000 + k))
      where = f"epoch {epoch} (run {run}, truncation {k})"
    meta_loss, applied = self._estimator_step(*args)
    self.run.count_step(applied, where)
    checkpointing.fault_injection("meta_step")
    with self._summary_writer.as_default(step=epoch + 1):
      tf.summary.scalar("meta_loss", float(meta_loss))
    return float(meta_loss)

  # ---- validation and export ----------------------------------------------------------------

  def validation_losses(self) -> np.ndarray:
    """Per-step mean validation loss [horizon + 1] of the current meta-parameters; with a family,
    the geometric mean over the validation members of their mean curves (members' losses differ
    in scale: a ReLU net's from a sigmoid net's)."""
    curves = []
    for _, sample, run in self._validation_sets:
      losses = run(*sample).numpy()
      curves.append(np.mean(np.where(np.isfinite(losses), losses, np.inf), axis=1))
    if len(curves) == 1:
      return curves[0]
    with np.errstate(divide="ignore"):
      return np.exp(np.mean(np.log(curves), axis=0))

  def _validate(self) -> float:
    """The mean final validation loss (the loop keeps the best meta-parameters by it)."""
    self._validation_curve = self.validation_losses()
    return float(self._validation_curve[-1])

  def _log_validation(self, score: float):
    with self._summary_writer.as_default(step=int(self.epoch.numpy())):
      tf.summary.scalar("validation/final_loss", score)
      tf.summary.scalar("validation/mean_log10_loss",
                        float(np.mean(np.log10(self._validation_curve))))
      tf.summary.scalar("validation/best_final_loss", float(self.best_score.numpy()))
    if self.is_chief:
      self._log_histograms()

  def _log_histograms(self):
    """Proposed updates and gate activations on one validation problem, over the horizon."""
    if not hasattr(self.optimizer, "diagnostics"):
      return
    if self._diagnostics_fn is None:
      self._diagnostics_fn = tf.function(self._diagnostics_impl)
    instance = tf.nest.map_structure(lambda t: t[:1], self._valid[0])
    try:
      updates, gates = self._diagnostics_fn(instance, [p[:1] for p in self._valid[1]])
    except Exception as e:  # pylint: disable=broad-except
      # Histograms are for inspection only: a failure to build them must not end a long run
      # (and lose the epochs since its last checkpoint). The usual cause: the library's source
      # was edited while the run was going, and AutoGraph, which traces on first use, read the
      # edited file.
      self.log(f"epoch {int(self.epoch.numpy())}: TensorBoard histograms skipped, the run goes "
               f"on ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). If the "
               f"library's source was edited since this run started, restart it (it resumes "
               f"from its last checkpoint) to trace the current code.")
      return
    with self._summary_writer.as_default(step=int(self.epoch.numpy())):
      tf.summary.histogram("optimizer/updates", updates)
      for layer, layer_gates in enumerate(gates):
        for name, values in zip(("input", "forget", "output"), layer_gates):
          tf.summary.histogram(f"optimizer/layer{layer}_{name}_gate", values)

  def _diagnostics_impl(self, instance, params, max_coordinates: int = 2000):
    """Compiled run of the horizon: all updates, and the gates of the first coordinates."""
    problem = self._validation_sets[0][0]
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
    # Workers must agree on when to checkpoint (a save may use collectives): epochs only.
    every_seconds = (math.inf if self.replication is not None and self.replication.num_workers > 1
                     else cfg.checkpoint_every_seconds)
    self.run.train(cfg.num_epochs, self._run_epoch, self._validate, cfg.validation_every,
                   cfg.checkpoint_every, every_seconds,
                   on_validated=self._log_validation, progress=progress, loss_name="meta-loss",
                   score_name="validation final loss")
    self._summary_writer.flush()
    if self.replication is not None:  # Every replica holds the same meta-parameters.
      self.log(f"{self.replication.describe()}: meta-parameters sha256 per local replica: "
               f"{' '.join(self.replication.digests(self.meta_vars))}")
    exported = self.export_best() if self.is_chief else self.output_dir / "optimizer"
    if self.replication is not None and self.replication.num_workers > 1:
      self.replication.last_collective()
    return {"epochs": int(self.epoch.numpy()), "best_epoch": int(self.best_epoch.numpy()),
            "best_validation_final_loss": float(self.best_score.numpy()),
            "optimizer_dir": str(exported), "chief": self.is_chief}

  def _run_epoch(self, epoch: int) -> float:
    """One epoch: fresh problems, the horizon in truncations, one meta-step each; a skipped
    (non-finite) meta-step ends the epoch, since its trajectory is no longer usable. With es
    and pes, one meta-step (`_run_es_epoch`)."""
    cfg = self.config
    if cfg.meta_lr_decay_epochs:  # Set from the epoch alone, so a resumed run agrees.
      self.meta_optimizer.learning_rate.assign(cfg.meta_learning_rate_at(epoch))
    if self.estimator is not None:
      return self._run_es_epoch(epoch)
    num_truncations = cfg.training_horizon(epoch) // cfg.truncation
    seed = problems_base.split_seed(cfg.seed, "train", epoch)
    if self.family:  # This epoch's member, from the epoch's seed.
      member = self.family.member_index(seed)
      problem, meta_step = self.family.member(member), self._member_meta_step(member)
    else:
      problem, meta_step = self.problem, self._meta_step
    instance, params = problem.sample(cfg.meta_batch_size, seed)
    if self.replication is None:
      state = self.optimizer.initial_state(params)
    else:  # Each replica's slice of the meta-batch (replication.py).
      instance, params, state = self.replication.shard(
          (instance, params), cfg.meta_batch_size,
          lambda i, p: (i, p, self.optimizer.initial_state(p)))
    epoch_loss = 0.0
    for k in range(num_truncations):
      meta_loss, applied, params, state = meta_step(
          params, state, instance, tf.constant(k * cfg.truncation, tf.int32))
      if not self.run.count_step(applied, f"epoch {epoch}, truncation {k}"):
        break
      epoch_loss += float(meta_loss)
      checkpointing.fault_injection("meta_step")
    with self._summary_writer.as_default(step=epoch + 1):
      tf.summary.scalar("meta_loss", epoch_loss / num_truncations)
    return epoch_loss / num_truncations
