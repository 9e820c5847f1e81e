"""Meta-gradient estimators: what the trainer asks for (meta-loss, meta-gradient) per meta-step.

* `tbptt`, truncated backpropagation through time (the paper, Sec. 2): the meta-loss of one
  truncation of K steps, differentiated through the unroll; theta and the optimizer state enter
  the truncation as constants. It is biased: what phi did before the truncation, and what it
  does after it, does not reach the gradient (and the paper drops the optimizee's second
  derivatives on top of that).
* `es`, antithetic evolution strategies over whole runs (what Runarsson & Jonsson 2000 used to
  evolve learning rules): each direction eps runs the whole horizon at phi + sigma eps and at
  phi - sigma eps; the estimate sum_i (L+ - L-) eps_i / (2 sigma n) is unbiased for the gradient of
  the Gaussian-smoothed meta-loss E[L(phi + sigma eps)], forward passes only.
* `pes`, persistent evolution strategies (Vicol, Metz & Sohl-Dickstein, ICML 2021): truncations as
  in tbptt, but every particle keeps its own optimizee run across truncations, a new perturbation
  is drawn per truncation, and the estimate multiplies the truncation's loss difference by the
  *sum of every perturbation the particle has had since its run began* (`accumulated`). That
  accumulator is what makes it unbiased for the whole run's smoothed meta-loss, where ES over
  truncations would be as short-sighted as tbptt.

Particles are vectorised, not looped: particle j's optimizees are rows j*B .. j*B + B - 1 of the
leading instance axis (B problems per particle, the same B for every particle: common random
numbers), the problem's loss and gradient run once over all of them, and the optimizer's step runs
under `tf.vectorized_map` over particles with each particle's meta-parameters put in place of the
module's variables (`snt.custom_variable_getter`), so any optimizer of the library runs unchanged.

Meta-loss of a run of T steps: sum_{t=1..T} mean over problems of f(theta_t) (or log f), the
same quantity the sum of tbptt's truncation losses makes.
"""

import dataclasses
from typing import List, Sequence, Tuple

import sonnet as snt
import tensorflow as tf

from l2l_tf import errors
from l2l_tf.meta import unroll
from l2l_tf.optimizers import base as optimizers_base
from l2l_tf.problems import base as problems_base

ESTIMATORS = ("tbptt", "es", "pes")


@dataclasses.dataclass(frozen=True)
class ESConfig:
  """The population of `es` and `pes`.

  Attributes:
    population: particles per meta-step (with `antithetic`, pairs phi +/- sigma eps: even).
    sigma: the perturbation's standard deviation (in meta-parameter units).
    antithetic: pairs of opposite perturbations; otherwise independent ones, each compared with
      the mean loss of the others (a baseline that keeps the estimate unbiased).
  """
  population: int = 8
  sigma: float = 0.01
  antithetic: bool = True

  def validate(self):
    if self.population < 2:
      raise errors.ConfigError(f"--es_population must be at least 2, got {self.population}.")
    if self.antithetic and self.population % 2:
      raise errors.ConfigError(
          f"--es_population={self.population} must be even with --es_antithetic (pairs of "
          f"opposite perturbations); use {self.population + 1} or --noes_antithetic.")
    if not self.sigma > 0:
      raise errors.ConfigError(f"--es_sigma must be positive, got {self.sigma}.")

  @property
  def num_directions(self) -> int:
    """Independent perturbation directions per meta-step."""
    return self.population // 2 if self.antithetic else self.population

  def expand(self, directions: tf.Tensor) -> tf.Tensor:
    """Per-particle perturbations [population, ...] from the directions [num_directions, ...]:
    with `antithetic` the first half +eps, the second half -eps."""
    return tf.concat([directions, -directions], 0) if self.antithetic else directions


# ---- truncated BPTT -------------------------------------------------------------------------


def truncation_loss(problem, optimizer, params, state, instance, start_step, truncation: int,
                    weighting: str = "uniform", second_derivatives: bool = False):
  """tbptt's meta-loss of one truncation: the sum over t = start+1 .. start+K of the mean over
  instances of f(theta_t) (or log f: `weighting`), with the run carried on.

  Returns:
    `(meta_loss, params, state)` after the K steps.
  """
  meta_loss = tf.zeros([], params[0].dtype)
  for i in tf.range(truncation):
    losses, params, state = unroll.optimizee_step(problem, optimizer, params, state, instance,
                                                  start_step + i, second_derivatives)
    # f(theta_start) does not depend on phi within this truncation: weight 0.
    meta_loss += tf.where(i > 0, unroll.meta_loss_term(losses, weighting),
                          tf.zeros_like(meta_loss))
  meta_loss += unroll.meta_loss_term(problem.loss(params, instance, start_step + truncation),
                                     weighting)
  return meta_loss, params, state


class TruncatedBPTT:
  """tbptt as a stand-alone estimator (the trainer runs the same `truncation_loss`, fused with
  the meta-update in one compiled step): `gradient` is one truncation's (meta-loss, gradient)
  at the current meta-parameters, carrying the run on."""

  name = "tbptt"

  def __init__(self, problem, optimizer, truncation: int, weighting: str = "uniform",
               second_derivatives: bool = False):
    self.problem, self.optimizer = problem, optimizer
    self.truncation, self.weighting = int(truncation), weighting
    self.second_derivatives = bool(second_derivatives)
    self.meta_vars = list(optimizer.trainable_variables)
    self._fn = tf.function(self._gradient)

  def _gradient(self, params, state, instance, start_step):
    with tf.GradientTape() as tape:
      loss, params, state = truncation_loss(self.problem, self.optimizer, params, state, instance,
                                            start_step, self.truncation, self.weighting,
                                            self.second_derivatives)
    grads = tape.gradient(loss, self.meta_vars)
    return loss, zeros_for_none(grads, self.meta_vars), params, state

  def run_gradient(self, instance, params, horizon: int) -> Tuple[tf.Tensor, List[tf.Tensor]]:
    """The sum over the run's truncations of their meta-losses and gradients (meta-parameters
    fixed): the estimate of the whole run's meta-gradient tbptt makes."""
    state = self.optimizer.initial_state(params)
    total, grads = 0.0, [tf.zeros_like(v) for v in self.meta_vars]
    for k in range(horizon // self.truncation):
      loss, g, params, state = self._fn(params, state, instance,
                                        tf.constant(k * self.truncation, tf.int32))
      total += loss
      grads = [a + b for a, b in zip(grads, g)]
    return total, grads


def zeros_for_none(grads, variables):
  return [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
          for g, v in zip(grads, variables)]


def exact_gradient_fn(problem, optimizer, horizon: int, weighting: str = "uniform"):
  """A compiled `(instance, params) -> (meta_loss, grads)`: the exact gradient of the whole run's
  meta-loss (backpropagation through all `horizon` steps with the optimizee's second
  derivatives), what the estimators estimate."""
  meta_vars = list(optimizer.trainable_variables)

  @tf.function
  def run(instance, params):
    with tf.GradientTape() as tape:
      state = optimizer.initial_state(params)
      loss, _, _ = truncation_loss(problem, optimizer, params, state, instance, 0, horizon,
                                   weighting, second_derivatives=True)
    return loss, zeros_for_none(tape.gradient(loss, meta_vars), meta_vars)

  return run


def full_gradient(problem, optimizer, instance, params, horizon: int,
                  weighting: str = "uniform") -> Tuple[tf.Tensor, List[tf.Tensor]]:
  """`exact_gradient_fn` called once."""
  return exact_gradient_fn(problem, optimizer, horizon, weighting)(instance, params)


# ---- particles --------------------------------------------------------------------------------


def tile_particles(nest, num_particles: int):
  """[B, ...] -> [num_particles * B, ...], particle-major (every particle the same B problems)."""
  return tf.nest.map_structure(
      lambda t: tf.tile(t, tf.concat([[num_particles], tf.ones([tf.rank(t) - 1], tf.int32)], 0)),
      nest)


def _by_particle(t, num_particles):
  return tf.reshape(t, tf.concat([[num_particles, -1], tf.shape(t)[1:]], 0))


def _merge_particles(t):
  return tf.reshape(t, tf.concat([[-1], tf.shape(t)[2:]], 0))


class Particles:
  """Runs `num_particles` copies of an optimizer, each with its own meta-parameters, on their
  own optimizees, as one vectorised computation.

  `weights` are per-particle meta-parameters [num_particles, *v.shape], one per variable of
  `optimizer.trainable_variables`; params carry the particle-major instance axis
  [num_particles * B, ...]; the optimizer state has a leading particle axis.
  """

  def __init__(self, problem, optimizer, num_particles: int):
    self.problem, self.optimizer = problem, optimizer
    self.num_particles = int(num_particles)
    self.meta_vars = list(optimizer.trainable_variables)

  def _with_weights(self, weights, fn, *args):
    substitutes = {v.ref(): w for v, w in zip(self.meta_vars, weights)}
    with snt.custom_variable_getter(lambda v: substitutes.get(v.ref(), v)):
      return fn(*args)

  def initial_state(self, weights, params):
    """The optimizer state of every particle [num_particles, ...]."""
    by_particle = [_by_particle(p, self.num_particles) for p in params]
    return tf.vectorized_map(
        lambda args: self._with_weights(args[0], self.optimizer.initial_state, args[1]),
        (weights, by_particle))

  def step(self, weights, params, state, instance, step):
    """One optimizee step of every particle: `(losses [num_particles * B], params, state)`."""
    with tf.GradientTape(watch_accessed_variables=False) as tape:
      tape.watch(params)
      losses = self.problem.loss(params, instance, step)
    grads = tape.gradient(losses, params)
    n = self.num_particles

    def one(args):
      w, g, s, l = args
      return self._with_weights(w, optimizers_base.call_step, self.optimizer, g, s, l)

    updates, state = tf.vectorized_map(
        one, (weights, [_by_particle(g, n) for g in grads], state, _by_particle(losses, n)))
    return losses, [p + _merge_particles(u) for p, u in zip(params, updates)], state

  def particle_means(self, losses, weighting):
    """Per-particle mean over its problems of the meta-loss terms: [num_particles]."""
    return tf.reduce_mean(_by_particle(unroll.meta_loss_terms(losses, weighting),
                                       self.num_particles), axis=1)

  def run(self, weights, params, state, instance, start_step, num_steps: int, weighting: str):
    """`num_steps` steps from `start_step`: per particle the sum over t = start+1 .. start+K of
    its meta-loss terms, and the carried `(params, state)`."""
    total = tf.zeros([self.num_particles], params[0].dtype)
    for i in tf.range(num_steps):
      losses, params, state = self.step(weights, params, state, instance, start_step + i)
      total += tf.where(i > 0, self.particle_means(losses, weighting), tf.zeros_like(total))
    total += self.particle_means(self.problem.loss(params, instance, start_step + num_steps),
                                 weighting)
    return total, params, state


def _directions(meta_vars, num, seed):
  """Unit Gaussian directions [num, *v.shape] per meta-variable, from a stateless seed."""
  return [tf.random.stateless_normal([num] + v.shape.as_list(),
                                     seed=problems_base.fold_in(seed, i), dtype=v.dtype)
          for i, v in enumerate(meta_vars)]


def _perturbed(meta_vars, config: ESConfig, seed):
  """`(directions, weights)`: per-particle unit directions [population, *v.shape] (antithetic:
  +eps then -eps) and the particles' meta-parameters phi + sigma * direction."""
  directions = [config.expand(d) for d in _directions(meta_vars, config.num_directions, seed)]
  return directions, [v[None] + config.sigma * d for v, d in zip(meta_vars, directions)]


def es_combine(config: ESConfig, particle_losses, directions):
  """The ES estimate from per-particle losses [population] and per-particle accumulated
  directions (for `es` the perturbation itself): with `antithetic`,
  mean_i (L+_i - L-_i) / (2 sigma) d_i; otherwise mean_i (L_i - mean_{j != i} L_j) / sigma d_i.
  Directions whose losses are not finite are left out (a particle that diverged); the meta-loss
  is NaN when none is left, and the trainer skips the step.

  Returns:
    `(meta_loss, grads)`: the mean finite particle loss, and one gradient per direction tensor.
  """
  sigma = tf.cast(config.sigma, particle_losses.dtype)
  finite = tf.math.is_finite(particle_losses)
  if config.antithetic:
    half = config.population // 2
    plus, minus = particle_losses[:half], particle_losses[half:]
    ok = tf.logical_and(finite[:half], finite[half:])
    coefficient = tf.where(ok, plus - minus, 0.0) / (2.0 * sigma)
    directions = [d[:half] for d in directions]
  else:
    ok = finite
    safe = tf.where(finite, particle_losses, 0.0)
    count = tf.reduce_sum(tf.cast(finite, safe.dtype))
    others = (tf.reduce_sum(safe) - safe) / tf.maximum(count - 1.0, 1.0)
    coefficient = tf.where(ok, safe - others, 0.0) / sigma
  used = tf.reduce_sum(tf.cast(ok, particle_losses.dtype))
  grads = [tf.tensordot(coefficient, d, axes=1) / tf.maximum(used, 1.0) for d in directions]
  meta_loss = tf.where(used > 0, tf.reduce_sum(tf.where(finite, particle_losses, 0.0))
                       / tf.maximum(tf.reduce_sum(tf.cast(finite, particle_losses.dtype)), 1.0),
                       tf.constant(float("nan"), particle_losses.dtype))
  return meta_loss, grads


# ---- ES over whole runs -----------------------------------------------------------------------


class EvolutionStrategies:
  """Antithetic (or baseline) ES over whole runs of `horizon` steps: one estimate per call,
  forward passes only. `gradient(instance, params, seed)` takes B problems and their theta_0
  (tiled to every particle) and a stateless seed for the perturbations."""

  name = "es"

  def __init__(self, problem, optimizer, horizon: int, config: ESConfig,
               weighting: str = "uniform"):
    config.validate()
    self.problem, self.optimizer, self.config = problem, optimizer, config
    self.horizon, self.weighting = int(horizon), weighting
    self.meta_vars = list(optimizer.trainable_variables)
    self.particles = Particles(problem, optimizer, config.population)
    self._fn = tf.function(self._gradient)

  def gradient(self, instance, params, seed):
    """`(meta_loss, grads)`: the mean particle meta-loss and the estimate."""
    return self._fn(instance, params, seed)

  def _gradient(self, instance, params, seed):
    cfg, n = self.config, self.config.population
    directions, weights = _perturbed(self.meta_vars, cfg, seed)
    params = tile_particles(params, n)
    instance = tile_particles(instance, n)
    state = self.particles.initial_state(weights, params)
    losses, _, _ = self.particles.run(weights, params, state, instance, 0, self.horizon,
                                      self.weighting)
    return es_combine(cfg, losses, directions)


# ---- PES ----------------------------------------------------------------------------------------


class PersistentES:
  """PES over truncations: the particles' runs (theta, optimizer state) and their accumulated
  perturbations live in variables, carried from one truncation to the next and checkpointed
  with the run (a killed run resumes with the same accumulators).

  Call `reset(instance, params)` at the start of every optimizee run, then `gradient(instance,
  start_step, seed)` once per truncation (it advances the particles by `truncation` steps).
  The variables' shapes come from `example` = (instance, params) of B problems.
  """

  name = "pes"

  def __init__(self, problem, optimizer, truncation: int, config: ESConfig, example,
               weighting: str = "uniform"):
    config.validate()
    self.problem, self.config = problem, config
    self.truncation, self.weighting = int(truncation), weighting
    self._meta_vars = list(optimizer.trainable_variables)
    self._particles = Particles(problem, optimizer, config.population)
    n = config.population
    params, state = self._fresh_runs(example[1])
    # What a checkpoint holds (`trackable`): the particles' runs and accumulated unit directions
    # (sign included: the minus half of an antithetic population holds -accumulated).
    self.trackable = tf.Module(name="pes")
    self.trackable.params = self.params = [
        tf.Variable(tf.zeros_like(p), trainable=False) for p in params]
    self.trackable.state = self.state = tf.nest.map_structure(
        lambda t: tf.Variable(tf.zeros_like(t), trainable=False), state)
    self.trackable.accumulated = self.accumulated = [
        tf.Variable(tf.zeros([n] + v.shape.as_list(), v.dtype), trainable=False)
        for v in self._meta_vars]
    self._reset_fn = tf.function(self._reset)
    self._gradient_fn = tf.function(self._gradient)

  def reset(self, instance, params):
    """A new optimizee run for every particle: theta_0 from `params`, fresh state, zero
    accumulators (`instance` is given again to every `gradient` call: not stored)."""
    del instance
    self._reset_fn(params)

  def _fresh_runs(self, params):
    """Every particle's theta_0 (`params` tiled) and fresh optimizer state."""
    n = self.config.population
    params = tile_particles(params, n)
    weights = [tf.tile(v[None], [n] + [1] * v.shape.rank) for v in self._meta_vars]
    return params, self._particles.initial_state(weights, params)

  def _reset(self, params):
    params, state = self._fresh_runs(params)
    for var, value in zip(self.params, params):
      var.assign(value)
    tf.nest.map_structure(lambda var, value: var.assign(value), self.state, state)
    for a in self.accumulated:
      a.assign(tf.zeros_like(a))

  def gradient(self, instance, start_step, seed):
    """One truncation of every particle from `start_step`; returns `(meta_loss, grads)`."""
    return self._gradient_fn(instance, tf.convert_to_tensor(start_step, tf.int32), seed)

  def _gradient(self, instance, start_step, seed):
    cfg, n = self.config, self.config.population
    directions, weights = _perturbed(self._meta_vars, cfg, seed)
    accumulated = [a + d for a, d in zip(self.accumulated, directions)]
    params = [tf.convert_to_tensor(p) for p in self.params]
    state = tf.nest.map_structure(tf.convert_to_tensor, self.state)
    losses, params, state = self._particles.run(
        weights, params, state, tile_particles(instance, n), start_step, self.truncation,
        self.weighting)
    for var, value in zip(self.params, params):
      var.assign(value)
    tf.nest.map_structure(lambda var, value: var.assign(value), self.state, state)
    for var, value in zip(self.accumulated, accumulated):
      var.assign(value)
    return es_combine(cfg, losses, accumulated)


def check_supported(estimator: str, problem, replication=None, horizon_curriculum=(),
                    recompute_chunk: int = 0):
  """Raises a ConfigError naming what to change when `estimator` cannot run these settings."""
  if estimator not in ESTIMATORS:
    raise errors.ConfigError(f"--estimator must be one of {', '.join(ESTIMATORS)}, got "
                             f"{estimator!r}.")
  if estimator == "tbptt":
    return
  from l2l_tf.problems import family as family_lib  # pylint: disable=g-import-not-at-top
  if isinstance(problem, family_lib.ProblemFamily):
    raise errors.ConfigError(f"--estimator={estimator} runs on one problem, not a problem "
                             "family; drop the --family_* flags or use --estimator=tbptt.")
  if replication is not None:
    raise errors.ConfigError(f"--estimator={estimator} runs with --strategy=default; its "
                             "particles are already vectorised within one process.")
  if horizon_curriculum:
    raise errors.ConfigError(f"--estimator={estimator} has no horizon curriculum; drop "
                             "--horizon_curriculum.")
  if recompute_chunk:
    raise errors.ConfigError(f"--estimator={estimator} does not backpropagate, so it has no "
                             "activations to recompute; set --recompute_chunk=0.")
