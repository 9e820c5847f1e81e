"""Daniel, Taylor & Nowozin (2016): a learned step-size controller for SGD / RMSprop (issue 21).

A linear policy on smoothed, hand-designed features of the current minibatch changes the log
learning rate of a hand-designed base optimizer at every step:

    log eta_t = log eta_{t-1} + clip(w . [phi~_t, 1], -c, c),    theta_{t+1} = theta_t + eta_t d_t

where d_t is the base optimizer's update at learning rate 1 (the library's `baselines.SGD` or
`baselines.RMSprop`, through the optimizer interface) and phi~_t the features smoothed by a
bias-corrected exponential moving average (decay rho). The features (seed_systems.md Sec. 5.2;
the paper's exact definitions were not available, so this is the project's reconstruction, made
scale-free so that one policy serves any initial learning rate and loss scale), from the
per-example losses l_i (f = mean_i l_i) and per-example gradients g_i (a batch Jacobian):

1. `loss_disagreement`: log(std_i l_i / f);
2. `predicted_change`: log(eta |gbar . d| / f), the first-order predicted relative change of f;
3. `predicted_change_disagreement`: log(eta std_i(g_i . d) / f), how much the examples disagree
   about it;
4. `gradient_uncertainty`: log(mean_p Var_i g_ip / mean_p gbar_p^2), noise against signal;
5. `observed_progress`: log(f_t / f_{t-1}) (0 at the first step);
6. a bias.

Per-example terms: for the quadratic f = sum_j (W_j theta - y_j)^2 the "examples" are its d rows,
l_j = d (W_j theta - y_j)^2 (so f = mean_j l_j); for the MNIST MLP the minibatch's images.

The policy's weights w are meta-trained with episodic REPS (`reps.py`, `train_controller`) to
maximise -log mean_t (f_t / f_0) over training episodes whose initial learning rate is drawn
log-uniformly from a range, so that robustness to it is what is rewarded.

The controller is a `base.Optimizer`; because its features need per-example quantities that the
interface's `step(grads, state)` does not carry, each step is preceded by `observe(state, losses,
per_example_grads)`; `trajectory` does both. Calling `step` without `observe` raises.
"""

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import tensorflow as tf

from l2l_tf import errors
from l2l_tf.evaluation import curves
from l2l_tf.optimizers import base, baselines
from l2l_tf.problems import base as problems_base
from l2l_tf.problems import mlp as mlp_lib
from l2l_tf.problems import quadratic as quadratic_lib

FEATURES = ("loss_disagreement", "predicted_change", "predicted_change_disagreement",
            "gradient_uncertainty", "observed_progress", "bias")
NUM_WEIGHTS = len(FEATURES)
BASES = ("sgd", "rmsprop")
_TINY = 1e-20
# log eta is kept in [ln 1e-10, ln 1e3]: beyond, every optimizee here diverges or stands still.
_LOG_LR_RANGE = (math.log(1e-10), math.log(1e3))


def _safe_log(x):
  return tf.math.log(tf.maximum(x, _TINY))


class ScaledProblem(problems_base.Problem):
  """f(theta) * factor: the objective rescaled by a constant (the LSTM's sensitivity test)."""

  def __init__(self, problem: problems_base.Problem, factor: float):
    if not factor > 0:
      raise errors.ConfigError(f"The objective's scale factor must be > 0, got {factor}.")
    self.problem, self.factor = problem, float(factor)
    self.name = getattr(problem, "name", "problem")

  @property
  def param_names(self):
    return self.problem.param_names

  def sample_instances(self, num, seed):
    return self.problem.sample_instances(num, seed)

  def initial_params(self, instance, seed):
    return self.problem.initial_params(instance, seed)

  def loss(self, params, instance, step):
    losses = self.problem.loss(params, instance, step)
    return losses * tf.cast(self.factor, losses.dtype)

  def get_config(self):
    return dict(self.problem.get_config(), objective_scale=self.factor)


def per_example_losses(problem, params, instance, step) -> tf.Tensor:
  """[num, B] per-example losses l_i of each instance, with f(theta) = mean_i l_i."""
  if isinstance(problem, ScaledProblem):
    return per_example_losses(problem.problem, params, instance, step) * problem.factor
  if isinstance(problem, quadratic_lib.Quadratic) and problem.family == "paper":
    (theta,) = params
    residual = tf.linalg.matvec(instance["w"], theta) - instance["y"]
    return float(problem.num_dims) * tf.square(residual)
  if isinstance(problem, mlp_lib.MLPClassifier):
    idx = problem.minibatch_indices(instance, step)
    dtype = params[0].dtype
    scale = tf.constant(problem._scale, dtype)  # pylint: disable=protected-access
    inputs = tf.cast(tf.gather(problem.images, idx), dtype) * scale
    labels = tf.gather(problem.labels, idx)
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, problem.logits(params, inputs))
  raise errors.ConfigError(
      f"The step-size controller needs per-example losses, defined here for the paper's "
      f"quadratic and the MLP classifiers, not for {type(problem).__name__} "
      f"({problem.get_config()}); use one of those problems.")


def per_example_gradients(problem, params, instance, step):
  """`(losses [num, B], per-example gradients [num, B, P])`: the batch Jacobian of the
  per-example losses, each instance's parameters flattened (instances are independent)."""
  with tf.GradientTape(persistent=True, watch_accessed_variables=False) as tape:
    tape.watch(params)
    losses = per_example_losses(problem, params, instance, step)
  num, batch = tf.shape(losses)[0], tf.shape(losses)[1]
  jacobians = [tf.reshape(tape.batch_jacobian(losses, p), [num, batch, -1]) for p in params]
  del tape
  return losses, tf.concat(jacobians, axis=-1)


def _flat(tensors):
  """[num, ...] tensors -> [num, P]."""
  return tf.concat([tf.reshape(t, [tf.shape(t)[0], -1]) for t in tensors], axis=-1)


def _unflat(flat, like):
  sizes = [int(np.prod(t.shape[1:])) for t in like]
  return [tf.reshape(p, tf.shape(t)) for p, t in zip(tf.split(flat, sizes, axis=-1), like)]


def _mlp_statistics(problem, params, instance, step, direction_fn):
  """The MLP's per-example gradients without materialising them: a layer's per-example weight
  gradient is the outer product x_i delta_i^T of its input and the gradient of l_i with respect to
  its pre-activation (which only example i's loss depends on, so the gradient of sum_i l_i gives
  every delta_i at once). Then ||g_i||^2 = sum_layers (||x_i||^2 + 1) ||delta_i||^2 and
  g_i . d = sum_layers x_i^T D_w delta_i + D_b . delta_i (Goodfellow 2015). Equal to the batch
  Jacobian's (tested), at the cost of one backward pass."""
  idx = problem.minibatch_indices(instance, step)
  dtype = params[0].dtype
  scale = tf.constant(problem._scale, dtype)  # pylint: disable=protected-access
  x = tf.cast(tf.gather(problem.images, idx), dtype) * scale
  labels = tf.gather(problem.labels, idx)
  act = mlp_lib.ACTIVATIONS[problem.activation]
  num_layers = len(params) // 2
  with tf.GradientTape(watch_accessed_variables=False) as tape:
    tape.watch(params)
    inputs, pre = [], []
    h = x
    for layer in range(num_layers):
      z = tf.matmul(h, params[2 * layer]) + params[2 * layer + 1][:, None, :]
      tape.watch(z)
      inputs.append(h)
      pre.append(z)
      h = act(z) if layer < num_layers - 1 else z
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, h)
    total = tf.reduce_sum(losses)
  deltas = tape.gradient(total, pre)  # [num, B, units]: d l_i / d z_i
  batch = tf.cast(tf.shape(losses)[1], dtype)
  grads = []
  sq_norms = tf.zeros_like(losses)
  for h_in, delta in zip(inputs, deltas):
    grads += [tf.einsum("nbi,nbo->nio", h_in, delta) / batch, tf.reduce_mean(delta, axis=1)]
    sq_norms += (tf.reduce_sum(tf.square(h_in), -1) + 1.0) * tf.reduce_sum(tf.square(delta), -1)
  direction = direction_fn(grads)
  along = tf.zeros_like(losses)
  for layer, (h_in, delta) in enumerate(zip(inputs, deltas)):
    d_w, d_b = direction[2 * layer], direction[2 * layer + 1]
    along += tf.einsum("nbi,nio,nbo->nb", h_in, d_w, delta) + tf.einsum("no,nbo->nb", d_b, delta)
  return losses, grads, along, sq_norms


def per_example_statistics(problem, params, instance, step, direction_fn):
  """What the features need of the per-example gradients g_i of this step.

  Args:
    direction_fn: mean gradients (a list like `params`) -> the base optimizer's update d at
      learning rate 1 (a list like `params`).

  Returns:
    `(losses [num, B], mean gradients (list), along [num, B] = g_i . d, sq_norms [num, B] =
    ||g_i||^2)`.
  """
  inner, factor = problem, 1.0
  while isinstance(inner, ScaledProblem):
    inner, factor = inner.problem, factor * inner.factor
  if isinstance(inner, mlp_lib.MLPClassifier):
    losses, grads, along, sq_norms = _mlp_statistics(inner, params, instance, step,
                                                     lambda g: direction_fn([factor * v for v in g]))
    return factor * losses, [factor * g for g in grads], factor * along, factor ** 2 * sq_norms
  losses, per_example = per_example_gradients(problem, params, instance, step)
  grads = _unflat(tf.reduce_mean(per_example, axis=1), params)
  d = _flat(direction_fn(grads))
  along = tf.einsum("nbp,np->nb", per_example, d)
  return losses, grads, along, tf.reduce_sum(tf.square(per_example), axis=-1)


class StepSizeController(base.Optimizer):
  """The controlled base optimizer (see the module docstring).

  Args:
    base_optimizer: "sgd" or "rmsprop".
    weights: the policy's NUM_WEIGHTS weights (in the order of FEATURES).
    initial_learning_rate: eta_0 (per run it can be given to `initial_state` instead).
    decay: rho of the features' moving average.
    max_change: c, the largest change of log eta per step.
  """

  def __init__(self, base_optimizer: str = "sgd", weights: Sequence[float] = None,
               initial_learning_rate: float = 1e-3, decay: float = 0.9, max_change: float = 1.0,
               name: Optional[str] = None):
    super().__init__(name=name or "step_size_controller")
    if base_optimizer not in BASES:
      raise errors.ConfigError(f"base_optimizer must be one of {', '.join(BASES)}, got "
                               f"{base_optimizer!r}.")
    weights = np.zeros(NUM_WEIGHTS) if weights is None else np.asarray(weights, np.float64)
    if weights.shape != (NUM_WEIGHTS,) or not np.all(np.isfinite(weights)):
      raise errors.ConfigError(f"weights must be {NUM_WEIGHTS} finite numbers (one per feature: "
                               f"{', '.join(FEATURES)}), got {weights.tolist()}.")
    if not initial_learning_rate > 0:
      raise errors.ConfigError(f"initial_learning_rate must be > 0, got {initial_learning_rate}.")
    if not 0 <= decay < 1:
      raise errors.ConfigError(f"decay must be in [0, 1), got {decay}.")
    if not max_change > 0:
      raise errors.ConfigError(f"max_change must be > 0, got {max_change}.")
    self.base_name = base_optimizer
    self.base = baselines.BASELINES[base_optimizer](1.0)  # Its update at learning rate 1.
    self.decay, self.max_change = float(decay), float(max_change)
    with self.name_scope:
      self.weights = tf.Variable(weights, trainable=False, dtype=tf.float64, name="weights")
      self.initial_learning_rate = tf.Variable(float(initial_learning_rate), trainable=False,
                                               dtype=tf.float64, name="initial_learning_rate")

  def initial_state(self, params, initial_learning_rate=None, weights=None):
    """The state of a fresh run. `initial_learning_rate` [num] and `weights` [num, NUM_WEIGHTS]
    override the module's per run (REPS evaluates a population of policies in one batch)."""
    dtype = params[0].dtype
    num = tf.shape(params[0])[0]
    if initial_learning_rate is None:
      initial_learning_rate = tf.fill([num], tf.cast(self.initial_learning_rate, dtype))
    if weights is None:
      weights = tf.tile(tf.cast(self.weights, dtype)[None, :], [num, 1])
    return {"base": self.base.initial_state(params),
            "log_lr": _safe_log(tf.cast(initial_learning_rate, dtype)),
            "weights": tf.cast(weights, dtype),
            "average": tf.zeros([num, NUM_WEIGHTS - 1], dtype),
            "t": tf.zeros([], dtype),
            "previous_loss": tf.zeros([num], dtype)}

  def direction(self, grads, state):
    """The base optimizer's update at learning rate 1 (a descent direction), as `step` uses it."""
    return self.base.step(grads, state["base"])[0]

  def observe(self, state, losses, along, sq_norms):
    """The state with this step's per-example statistics (`per_example_statistics`): losses
    l_i [num, B], g_i . d [num, B] along `direction`, and ||g_i||^2 [num, B]."""
    return dict(state, batch=(losses, along, sq_norms))

  def step(self, grads, state):
    if "batch" not in state:
      raise errors.ConfigError(
          "StepSizeController.step needs this step's per-example statistics: call "
          "observe(state, ...) with per_example_statistics(...) first, or run it with "
          "l2l_tf_experiments.review.step_size_control.trajectory.")
    losses, along, sq_norms = state["batch"]
    dtype = losses.dtype
    direction, base_state = self.base.step(grads, state["base"])
    f = tf.reduce_mean(losses, axis=1)
    gbar_sq = tf.reduce_sum(tf.square(_flat(grads)), axis=1)
    lr = tf.exp(state["log_lr"])
    t = state["t"]
    progress = tf.where(t > 0, _safe_log(f) - _safe_log(state["previous_loss"]), tf.zeros_like(f))
    # mean_p Var_i g_ip / mean_p gbar_p^2 = (mean_i ||g_i||^2 - ||gbar||^2) / ||gbar||^2.
    noise = tf.reduce_mean(sq_norms, axis=1) - gbar_sq
    features = tf.stack([
        _safe_log(tf.math.reduce_std(losses, axis=1) / f),
        _safe_log(lr * tf.abs(tf.reduce_mean(along, axis=1)) / f),
        _safe_log(lr * tf.math.reduce_std(along, axis=1) / f),
        _safe_log(noise / tf.maximum(gbar_sq, _TINY)),
        progress], axis=1)
    # A diverged run makes its features non-finite: its learning rate then only falls.
    finite = tf.reduce_all(tf.math.is_finite(features), axis=1, keepdims=True)
    features = tf.where(finite, tf.clip_by_value(features, -50.0, 50.0), tf.zeros_like(features))
    average = self.decay * state["average"] + (1.0 - self.decay) * features
    smoothed = average / (1.0 - tf.pow(tf.cast(self.decay, dtype), t + 1.0))
    w = state["weights"]
    change = tf.reduce_sum(w[:, :-1] * smoothed, axis=1) + w[:, -1]
    change = tf.where(finite[:, 0], tf.clip_by_value(change, -self.max_change, self.max_change),
                      -self.max_change * tf.ones_like(change))
    log_lr = tf.clip_by_value(state["log_lr"] + change, *_LOG_LR_RANGE)
    updates = [tf.reshape(tf.exp(log_lr), [-1] + [1] * (len(u.shape) - 1)) * u
               for u in direction]
    new_state = {"base": base_state, "log_lr": log_lr, "weights": w, "average": average,
                 "t": t + 1.0, "previous_loss": f}
    return updates, new_state

  def get_config(self) -> dict:
    return {"name": "step_size_controller", "base_optimizer": self.base_name,
            "weights": [float(v) for v in self.weights.numpy()],
            "initial_learning_rate": float(self.initial_learning_rate.numpy()),
            "decay": self.decay, "max_change": self.max_change}


def trajectory(problem, controller: StepSizeController, instance, params, state, num_steps: int):
  """Runs the controller for `num_steps` steps: `(losses [T + 1, num], log_lrs [T, num])`."""
  losses_out = tf.TensorArray(params[0].dtype, size=num_steps + 1)
  lrs_out = tf.TensorArray(params[0].dtype, size=num_steps)
  for t in tf.range(num_steps):
    losses, grads, along, sq_norms = per_example_statistics(
        problem, params, instance, t, lambda g: controller.direction(g, state))
    updates, state = controller.step(grads, controller.observe(state, losses, along, sq_norms))
    params = [p + u for p, u in zip(params, updates)]
    losses_out = losses_out.write(t, tf.reduce_mean(losses, axis=1))
    lrs_out = lrs_out.write(t, state["log_lr"])
  losses_out = losses_out.write(num_steps, problem.loss(params, instance, num_steps))
  return losses_out.stack(), lrs_out.stack()


def make_trajectory_fn(problem, controller: StepSizeController, num_steps: int,
                       jit_compile: bool = False) -> Callable:
  """Compiled `(instance, params, initial_lrs [num], weights [num, W]) -> (losses [num, T + 1],
  log_lrs [num, T])`."""

  @tf.function(jit_compile=jit_compile, reduce_retracing=True)
  def run(instance, params, initial_lrs, weights):
    state = controller.initial_state(params, initial_lrs, weights)
    losses, log_lrs = trajectory(problem, controller, instance, params, state, num_steps)
    return tf.transpose(losses), tf.transpose(log_lrs)

  return run


def evaluate(problem, controller: StepSizeController, instance, params, num_steps: int,
             initial_learning_rate: float, chunk_size: int = 0, jit_compile: bool = False):
  """The controller's policy from `initial_learning_rate` on every instance: `(losses [N, T + 1],
  log_lrs [N, T])` (NumPy)."""
  run = make_trajectory_fn(problem, controller, num_steps, jit_compile)
  weights = controller.weights.numpy()
  dtype = params[0].dtype

  def fn(inst, ps):
    n = int(ps[0].shape[0])
    lrs = tf.fill([n], tf.constant(initial_learning_rate, dtype))
    w = tf.constant(np.tile(weights, (n, 1)), dtype)
    out = run(inst, ps, lrs, w)
    return out[0].numpy(), out[1].numpy()

  return curves.run_in_chunks(fn, instance, params, chunk_size)


# ---- meta-training with episodic REPS ----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ControllerTraining:
  """How one controller is meta-trained (one REPS run)."""
  problem: dict  # l2l_tf.problems config.
  base_optimizer: str = "sgd"
  log10_lr_range: tuple = (-5.0, 0.0)  # Initial learning rates of training episodes.
  iterations: int = 30
  population: int = 24  # Policies per REPS iteration.
  problems_per_policy: int = 8  # Episodes per policy (the same problems for every policy).
  horizon: int = 100
  epsilon: float = 1.0  # REPS' KL bound.
  initial_std: float = 0.5
  min_std: float = 0.01
  decay: float = 0.9
  max_change: float = 1.0
  seed: int = 0
  chunk_size: int = 0

  def check(self):
    for name in ("iterations", "population", "problems_per_policy", "horizon"):
      if getattr(self, name) < 1:
        raise errors.ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
    if self.population < 2:
      raise errors.ConfigError(f"population must be >= 2, got {self.population}.")
    lo, hi = self.log10_lr_range
    if not lo <= hi:
      raise errors.ConfigError(f"log10_lr_range must be (low, high) with low <= high, got "
                               f"{self.log10_lr_range}.")
    if not self.epsilon > 0 or not self.initial_std > 0 or not self.min_std > 0:
      raise errors.ConfigError("epsilon, initial_std and min_std must be > 0.")


def policy_returns(losses: np.ndarray, num_policies: int) -> np.ndarray:
  """The return of each policy from its runs' losses [num_policies * P, T + 1] (policy-major):
  -log of the mean over its P runs and the T steps after the first of f_t / f_0, each ratio
  capped at 1e6 (a diverged run counts as 1e6 from its divergence on). The log of a mean, not a
  mean of logs: one run that blows up costs as much as it does in a mean test loss."""
  losses = np.asarray(losses, np.float64)
  ratio = losses[:, 1:] / np.maximum(losses[:, :1], _TINY)
  diverged = np.cumsum(~np.isfinite(ratio), axis=1) > 0
  ratio = np.where(diverged, 1e6, np.minimum(ratio, 1e6))
  per_policy = ratio.reshape(num_policies, -1).mean(axis=1)
  return -np.log(np.maximum(per_policy, 1e-300))


def train_controller(config: ControllerTraining, output_dir, data_dir=None, command: str = "",
                     log_fn: Callable[[str], None] = print) -> Path:
  """Meta-trains a controller's weights with episodic REPS; resumable.

  Every iteration draws `population` weight vectors from the search distribution N(mu, Sigma);
  each runs the same `problems_per_policy` training problems (common random numbers), each from
  an initial learning rate drawn log-uniformly from `log10_lr_range` (stratified); its return is
  `policy_returns`. REPS reweights the samples (`reps.update`). After each iteration
  `checkpoint.json` holds mu, Sigma and the history, so a stopped run continues where it stopped.
  At the end `policy.json` holds the controller (weights = the final mean mu) and its metadata.

  Returns the path of `policy.json`.
  """
  from l2l_tf import problems as problems_lib  # pylint: disable=g-import-not-at-top
  from l2l_tf_experiments.review import reps  # pylint: disable=g-import-not-at-top
  config.check()
  output_dir = Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  checkpoint = output_dir / "checkpoint.json"
  config_dict = dataclasses.asdict(config)
  config_dict["log10_lr_range"] = list(config.log10_lr_range)
  if checkpoint.is_file():
    saved = json.loads(checkpoint.read_text())
    if saved["config"] != config_dict:
      raise errors.ConfigError(f"{checkpoint} was written by another configuration "
                               f"({saved['config']}); use a fresh output directory.")
    mean, cov = np.asarray(saved["mean"]), np.asarray(saved["cov"])
    history, start, cpu = saved["history"], saved["iteration"], saved["cpu_seconds"]
    log_fn(f"resuming REPS at iteration {start} from {checkpoint}")
  else:
    mean = np.zeros(NUM_WEIGHTS)
    cov = np.eye(NUM_WEIGHTS) * config.initial_std ** 2
    history, start, cpu = [], 0, 0.0
  problem = problems_lib.make_problem(config.problem, split="train", data_dir=data_dir)
  controller = StepSizeController(config.base_optimizer, decay=config.decay,
                                  max_change=config.max_change)
  run = make_trajectory_fn(problem, controller, config.horizon)
  n, p = config.population, config.problems_per_policy
  for iteration in range(start, config.iterations):
    began = time.process_time()
    rng = np.random.default_rng([config.seed, iteration])
    samples = rng.multivariate_normal(mean, cov, size=n)
    instance, params = problem.sample(p, problems_base.split_seed(config.seed, "train",
                                                                  iteration))
    lo, hi = config.log10_lr_range
    log10_lrs = lo + (hi - lo) * (np.arange(p) + rng.uniform(size=p)) / p
    tile = lambda t: tf.concat([t] * n, axis=0)
    dtype = params[0].dtype
    # Run k of the N x P episodes: policy k // P on problem k % P.
    batch = {"inner": tf.nest.map_structure(tile, instance),
             "lr": tf.constant(10.0 ** np.tile(log10_lrs, n), dtype),
             "w": tf.constant(np.repeat(samples, p, axis=0), dtype)}
    losses = curves.run_in_chunks(
        lambda b, ps: run(b["inner"], ps, b["lr"], b["w"])[0].numpy(), batch,
        [tile(x) for x in params], config.chunk_size)
    returns = policy_returns(losses, n)
    mean, cov, info = reps.update(samples, returns, config.epsilon, config.min_std)
    cpu += time.process_time() - began
    history.append({"iteration": iteration, "mean_return": float(returns.mean()),
                    "best_return": float(returns.max()), "temperature": info["temperature"],
                    "kl": info["kl"], "effective_samples": info["effective_samples"],
                    "mean": mean.tolist()})
    log_fn(f"REPS {iteration + 1}/{config.iterations}: mean return {returns.mean():.3f}, best "
           f"{returns.max():.3f}, KL {info['kl']:.3f}")
    _write_json(checkpoint, {"config": config_dict, "iteration": iteration + 1,
                             "mean": mean.tolist(), "cov": cov.tolist(), "history": history,
                             "cpu_seconds": cpu})
  controller.weights.assign(mean)
  episodes = config.iterations * n * p
  policy = {"controller": controller.get_config(), "metadata": {
      "trained_on": config.problem, "training": config_dict, "command": command,
      "episodes": episodes, "optimizee_gradients": episodes * config.horizon,
      "meta_training_cpu_seconds": cpu, "history": history, "features": list(FEATURES)}}
  path = output_dir / "policy.json"
  _write_json(path, policy)
  return path


def _write_json(path: Path, value) -> None:
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text(json.dumps(value, indent=1))
  os.replace(tmp, path)


def load_controller(path) -> tuple:
  """`(StepSizeController, metadata)` from a `policy.json` (or its directory)."""
  path = Path(path)
  if path.is_dir():
    path = path / "policy.json"
  if not path.is_file():
    raise errors.ConfigError(f"No controller policy at {path}; train one with --retrain, or "
                             "point the flag at a policy.json.")
  saved = json.loads(path.read_text())
  config = dict(saved["controller"])
  if config.pop("name", None) != "step_size_controller":
    raise errors.ConfigError(f"{path} does not hold a step-size controller.")
  return StepSizeController(**config), saved.get("metadata", {})
