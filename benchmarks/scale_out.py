"""Meta-steps per second and the meta-gradient all-reduce against workers (issue 17).

A `scale_out` task (one per thread count and worker count) runs in a child of `benchmarks.run`,
which starts the workers as processes of their own (`scale_out_worker` tasks, with TF_CONFIG on
127.0.0.1 ports for 2 or more) and waits for all of them, so that the CPU time of every worker
process is counted. Each worker times, in lockstep with the others, the library's replicated
meta-step on its slice of the global meta-batch (`--quadratic_meta_batch`, 10-d quadratics, the
quadratic figure's LSTM), the meta-gradient alone (no collective), and an all-reduce of tensors of
the meta-gradient's shapes alone.

`summarize_scale_out` adds, per thread count, the measured ratio of meta-steps per second (N
workers / 1) and a model of the step time for N workers, each on a machine of its own:

    t(N) = c / N + o + a(N),   a(N) = a(2) (N - 1)

with c the measured meta-gradient CPU time of one worker on the whole meta-batch, o the rest of
its step's CPU time (t(1) - c: the meta-update), and a(2) the wall time of the all-reduce measured
with 2 workers (CPU times for the compute: on a machine of its own a worker does not wait for a
core, which the wall times of this shared machine include); a ring
all-reduce of a gradient this small (kilobytes) is bound by its 2 (N - 1) message latencies, so
a(N) grows linearly. The model is on paper: this machine has 2 cores, shared by both workers.
"""

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import harness

MODEL_WORKERS = (1, 2, 4, 8, 16)


def scale_out_tasks(settings) -> list:
  """(threads, task) of the suite, every worker count at every thread count."""
  return [(threads, {"kind": "scale_out", "workers": workers})
          for threads in settings["thread_counts"] for workers in settings["scale_out_workers"]]


def run_scale_out(task, settings, workdir) -> dict:
  """Starts `task["workers"]` worker processes (this child's thread count each) and combines
  their records; the processes' CPU time is this child's children's."""
  del workdir
  from l2l_tf import local_cluster  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  threads = tf.config.threading.get_intra_op_parallelism_threads()
  workers = task["workers"]
  ports = local_cluster.free_ports(workers)
  path = [str(harness.ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
  procs, result_paths = [], []
  with tempfile.TemporaryDirectory(prefix="l2l_bench_scale_out_") as tmp:
    before = os.times()
    start = time.perf_counter()
    try:
      for index in range(workers):
        result_path = Path(tmp) / f"worker{index}.json"
        task_path = Path(tmp) / f"task{index}.json"
        task_path.write_text(json.dumps({
            "threads": threads, "settings": settings, "result_path": str(result_path),
            "tasks": [{"kind": "scale_out_worker", "workers": workers}]}))
        env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(path))
        env.pop("TF_CONFIG", None)
        if workers > 1:
          env["TF_CONFIG"] = local_cluster.tf_config(ports, index)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "benchmarks.run", f"--child_task={task_path}"], env=env,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
        result_paths.append(result_path)
      errors = [p.communicate(timeout=1800)[1] for p in procs]
    finally:
      for p in procs:  # Stopped by PID if anything above failed.
        if p.poll() is None:
          p.kill()
          p.wait()
    elapsed = time.perf_counter() - start
    after = os.times()
    records = []
    for index, (p, result_path) in enumerate(zip(procs, result_paths)):
      if p.returncode != 0 or not result_path.is_file():
        raise RuntimeError(f"worker {index} exited with status {p.returncode}: "
                           f"{errors[index].strip()[-1500:]}")
      (entry,) = json.loads(result_path.read_text())["results"]
      if "error" in entry:
        raise RuntimeError(f"worker {index}: {entry['error']}")
      records.append(entry["result"])
  step_wall = max(r["step"]["wall_s_median"] for r in records)
  return {
      "workers": workers, "meta_batch": settings["quadratic_meta_batch"],
      "truncation": settings["truncation"], "per_worker": records,
      "step_wall_s": step_wall, "meta_steps_per_s": 1.0 / step_wall,
      "step_cpu_s_all_workers": sum(r["step"]["cpu_s_median"] for r in records),
      "compute_wall_s": max(r["compute"]["wall_s_median"] for r in records),
      "step_cpu_s": max(r["step"]["cpu_s_median"] for r in records),
      "compute_cpu_s": max(r["compute"]["cpu_s_median"] for r in records),
      "allreduce_wall_s": (max(r["allreduce"]["wall_s_median"] for r in records)
                           if workers > 1 else 0.0),
      "allreduce_cpu_s": (max(r["allreduce"]["cpu_s_median"] for r in records)
                          if workers > 1 else 0.0),
      "gradient_bytes": records[0]["gradient_bytes"],
      "processes_wall_s": elapsed,
      "processes_cpu_s": (after.children_user + after.children_system
                          - before.children_user - before.children_system)}


def run_scale_out_worker(task, settings, workdir) -> dict:
  """One worker: its replicated meta-step, its meta-gradient alone, the all-reduce alone."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from benchmarks import workloads  # pylint: disable=g-import-not-at-top
  from l2l_tf import meta, problems  # pylint: disable=g-import-not-at-top
  from l2l_tf.meta import replication as replication_lib  # pylint: disable=g-import-not-at-top
  workers = task["workers"]
  replication = (replication_lib.make_replication("multi_worker", log=lambda message: None)
                 if workers > 1 else None)
  scope = replication.strategy.scope() if replication else contextlib.nullcontext()
  problem = workloads.make_problem("quadratic", settings)
  with scope:
    optimizer = workloads.make_optimizer("quadratic", settings)
  num, truncation = settings["quadratic_meta_batch"], settings["truncation"]
  config = meta.TrainConfig(num_epochs=1, horizon=truncation, truncation=truncation,
                            meta_batch_size=num, num_validation_problems=1)
  trainer = meta.MetaTrainer(problem, optimizer, config, workdir, log_fn=lambda message: None,
                             replication=replication)
  instance, params = problem.sample(num, problems.split_seed(settings["seed"], "train", 0))
  start = tf.constant(0, tf.int32)
  grads_like = [tf.zeros(v.shape, v.dtype) for v in trainer.meta_vars]
  if replication is None:
    state = optimizer.initial_state(params)
    inputs = (params, state, instance, start)
    compute = tf.function(lambda *args: trainer._meta_gradient(*args)[1])  # pylint: disable=protected-access
  else:
    strategy = replication.strategy
    instance, params, state = replication.shard(
        (instance, params), num, lambda i, p: (i, p, optimizer.initial_state(p)))
    inputs = (params, state, instance, start)
    compute = tf.function(lambda *args: strategy.run(
        lambda *a: trainer._meta_gradient(*a)[1], args=args))  # pylint: disable=protected-access

    @tf.function
    def allreduce():
      return strategy.run(lambda: tf.distribute.get_replica_context().all_reduce(
          tf.distribute.ReduceOp.SUM, grads_like))

  def wait(fn, *args):
    def call():
      out = fn(*args)
      first = tf.nest.flatten(out, expand_composites=True)[0]
      return first.numpy()
    return call

  warmup, repeats = settings["warmup"], settings["repeats"]
  record = {"workers": workers, "worker_index": replication.worker_index if replication else 0,
            "gradient_bytes": sum(int(g.shape.num_elements()) * g.dtype.size for g in grads_like)}
  # The same calls in the same order on every worker: the collectives stay in lockstep.
  record["step"] = harness.time_calls(wait(trainer._meta_step, *inputs), warmup, repeats)  # pylint: disable=protected-access
  record["compute"] = harness.time_calls(wait(compute, *inputs), warmup, repeats)
  if replication is not None:
    record["allreduce"] = harness.time_calls(wait(allreduce), warmup, repeats)
  return record


def summarize_scale_out(records: dict) -> dict:
  """Per thread count: measured ratios against 1 worker and the model t(N) (module doc)."""
  summary = {}
  for threads, by_workers in records.items():
    one = by_workers.get("1")
    if not one:
      continue
    entry = {"measured": {}, "model": {}}
    for workers, record in sorted(by_workers.items(), key=lambda kv: int(kv[0])):
      entry["measured"][workers] = {
          "meta_steps_per_s": record["meta_steps_per_s"],
          "speedup": record["meta_steps_per_s"] / one["meta_steps_per_s"],
          "cpu_s_per_step_all_workers": record["step_cpu_s_all_workers"],
          "allreduce_share": record["allreduce_wall_s"] / record["step_wall_s"]}
    two = by_workers.get("2")
    if two:
      # CPU times: the wall times of this shared machine include waiting for a core.
      # (A compute median above the step median is noise: the meta-gradient is part of a step.)
      compute = min(one["compute_cpu_s"], one["step_cpu_s"])
      rest = one["step_cpu_s"] - compute
      for n in MODEL_WORKERS:
        step = compute / n + rest + two["allreduce_wall_s"] * (n - 1)
        entry["model"][str(n)] = {"step_s": step, "meta_steps_per_s": 1.0 / step,
                                  "speedup": one["step_cpu_s"] / step}
      entry["model_inputs"] = {"compute_s": compute, "rest_s": rest,
                               "allreduce_2_workers_s": two["allreduce_wall_s"]}
    summary[threads] = entry
  return summary
