"""The `estimators` suite (issue 18): what a meta-gradient costs with each estimator, per
optimizee step, measured in one child process.

* `tbptt`: the library's compiled meta-step (one truncation of K steps, forward and backward,
  fused with the Adam update) on the meta-batch of `problem_count(..., "meta")` problems; its
  cost per optimizee step is CPU / (problems x K).
* `es`: `EvolutionStrategies.gradient` over a run of K steps, `POPULATION` particles with one
  problem each: CPU / (particles x K) per particle-step (forward only, no backward).
* `pes`: one `PersistentES.gradient` truncation of K steps, the same population.
* `forward`: the library's forward-only trajectory (`unroll.make_trajectory_fn`) of the same
  optimizer on `POPULATION` problems for K steps: the floor a particle-step is held against
  (the same optimizee and optimizer arithmetic, with one set of meta-parameters and no
  `vectorized_map`).

Ratios in the JSON: each estimator's CPU per (particle- or optimizee-) step over tbptt's and over
the forward floor's.
"""

import tensorflow as tf

from benchmarks import harness, workloads
from l2l_tf.meta import estimators, unroll
from l2l_tf.problems import base as problems_base

POPULATION = 8


def run_estimators(task, settings, workdir) -> dict:
  problem = workloads.make_problem(task["problem"], settings)
  optimizer = workloads.make_optimizer(task["problem"], settings)
  k = settings["truncation"]
  num = workloads.problem_count(task["problem"], settings, "meta")
  trainer = workloads.make_trainer(problem, optimizer, k, workdir)
  instance, params, state = workloads.meta_step_inputs(problem, optimizer, num, settings["seed"])
  start = tf.constant(0, tf.int32)
  config = estimators.ESConfig(POPULATION, 0.01, antithetic=True)
  es = estimators.EvolutionStrategies(problem, optimizer, k, config)
  one_instance, one_params = problem.sample(1, problems_base.split_seed(settings["seed"],
                                                                         "train", 1))
  pes = estimators.PersistentES(problem, optimizer, k, config, (one_instance, one_params))
  pes.reset(one_instance, one_params)
  seed = tf.constant([settings["seed"], 7], tf.int64)
  forward_instance, forward_params, _ = workloads.meta_step_inputs(problem, optimizer, POPULATION,
                                                                   settings["seed"])
  forward = unroll.make_trajectory_fn(problem, optimizer, k, feature_major=False)
  timings = harness.time_interleaved({
      "tbptt": workloads.blocking(trainer._meta_step, params, state, instance, start),  # pylint: disable=protected-access
      "es": workloads.blocking(es.gradient, one_instance, one_params, seed),
      "pes": workloads.blocking(pes.gradient, one_instance, start, seed),
      "forward": workloads.blocking(forward, forward_instance, forward_params),
  }, settings["warmup"], settings["repeats"])
  steps = {"tbptt": num * k, "es": POPULATION * k, "pes": POPULATION * k,
           "forward": POPULATION * k}
  per_step = {name: timings[name]["cpu_s_median"] / steps[name] for name in timings}
  record = {name: dict(timings[name], cpu_s_per_step=per_step[name], steps=steps[name])
            for name in timings}
  record.update({
      "population": POPULATION, "truncation": k, "meta_batch": num,
      "es_particle_step_vs_tbptt_step": per_step["es"] / per_step["tbptt"],
      "pes_particle_step_vs_tbptt_step": per_step["pes"] / per_step["tbptt"],
      "es_particle_step_vs_forward_step": per_step["es"] / per_step["forward"],
      "pes_particle_step_vs_forward_step": per_step["pes"] / per_step["forward"],
      "optimizer": optimizer.get_config(), "problem": problem.get_config()})
  return record
