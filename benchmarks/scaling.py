"""The scaling suite: meta-step time and memory against coordinates, truncation, checkpointing."""

import collections
import functools
import math
import time

# Only the children import TensorFlow (inside the functions that run there): the parent plans the
# tasks and summarises their results with this module too.
# pylint: disable=g-import-not-at-top

# Activation memory of one meta-step per coordinate and unrolled step (2 x 20 LSTM, measured: the
# scaling suite's memory slope); used only to skip scaling points that would not fit.
ESTIMATED_BYTES_PER_COORDINATE_STEP = 1500.0


def recompute_grad_truncation_loss(problem, optimizer, truncation: int, chunk: int,
                                   tape_gradients: bool = False):
  """A truncation loss checkpointed with `tf.recompute_grad`: the alternative to the library's
  `recompute.checkpointed_truncation_loss` (`TrainConfig.recompute_chunk`), measured here.

  Same meta-loss and meta-gradient as the library's truncation loss. With `tape_gradients` the
  optimizee gradient inside a chunk comes from a `GradientTape`, as outside checkpointing: the
  recomputation's stop-recording silences it and tracing fails (the `checkpoint_probe` record).

  Returns:
    `truncation_loss(params, state, instance, start_step) -> (meta_loss, params, state)`.
  """
  import tensorflow as tf
  from l2l_tf.meta import unroll
  if chunk <= 0 or truncation % chunk:
    raise ValueError(f"The chunk {chunk} must divide the truncation {truncation}.")
  step = functools.partial(unroll.optimizee_step, problem, optimizer,
                           graph_gradients=not tape_gradients)

  def truncation_loss(params, state, instance, start_step):
    count = len(params)
    carried = list(params) + tf.nest.flatten(state)
    meta_loss = tf.zeros([], params[0].dtype)

    def steps_from(first):
      @tf.recompute_grad
      def run(*flat):
        theta, hidden = list(flat[:count]), tf.nest.pack_sequence_as(state, list(flat[count:]))
        total = tf.zeros_like(meta_loss)
        for t in tf.range(first, first + chunk):
          losses, theta, hidden = step(theta, hidden, instance, start_step + t)
          total += tf.where(t > 0, tf.reduce_mean(losses), tf.zeros_like(total))
        # The loss goes last: recompute_grad orders the recomputation on the first output's
        # gradient, and theta's arrives only after the next chunk's backward pass.
        return theta + tf.nest.flatten(hidden) + [total]
      return run

    for first in range(0, truncation, chunk):
      *carried, chunk_loss = steps_from(first)(*carried)
      meta_loss += chunk_loss
    final_state = tf.nest.pack_sequence_as(state, carried[count:])
    meta_loss += tf.reduce_mean(problem.loss(carried[:count], instance, start_step + truncation))
    return meta_loss, carried[:count], final_state

  return truncation_loss


def run_scaling_point(task, settings, workdir) -> dict:
  """One meta-step of the diagonal problem with n coordinates and truncation K (+ checkpointing).

  Task keys: coordinates, truncation, and optionally checkpoint = {"impl", "chunk"} ("control_deps":
  the library's `TrainConfig.recompute_chunk`; "recompute_grad": `recompute_grad_truncation_loss`,
  whose GradientTape form only probes whether it traces with "library_step") and grappler =
  {option: bool} (`tf.config.optimizer.set_experimental_options`, process-wide).
  """
  import tensorflow as tf
  from benchmarks import harness, workloads
  if task.get("grappler"):
    tf.config.optimizer.set_experimental_options(task["grappler"])
  problem = workloads.make_problem("diagonal", settings, task["coordinates"])
  optimizer = workloads.make_optimizer("quadratic", settings)
  truncation = task["truncation"]
  checkpoint = task.get("checkpoint") or {}
  library_chunk = checkpoint["chunk"] if checkpoint.get("impl") == "control_deps" else 0
  trainer = workloads.make_trainer(problem, optimizer, truncation, workdir, library_chunk)
  if checkpoint.get("impl") == "recompute_grad":
    # The meta-step calls the trainer's truncation loss when it traces, i.e. after this.
    trainer._truncation_loss = recompute_grad_truncation_loss(  # pylint: disable=protected-access
        problem, optimizer, truncation, checkpoint["chunk"], checkpoint.get("library_step", False))
  step = trainer._meta_step  # pylint: disable=protected-access
  instance, params, state = workloads.meta_step_inputs(problem, optimizer, 1, settings["seed"])
  rss_before = harness.current_rss_mb()
  start = tf.constant(0, tf.int32)
  if checkpoint.get("library_step"):
    try:
      step.get_concrete_function(params, state, instance, start)
    except Exception as e:  # pylint: disable=broad-except
      return {"error": f"{type(e).__name__}: {str(e).strip().splitlines()[-1].strip()[:300]}",
              "works": False, "task": task}
    return {"works": True, "task": task}
  first_start = time.perf_counter()
  first = float(step(params, state, instance, start)[0])
  first_call = time.perf_counter() - first_start
  # One Adam meta-step from the same initial weights: equal sums mean equal meta-gradients.
  weights_sum = float(sum(tf.reduce_sum(tf.abs(v)) for v in optimizer.trainable_variables))
  timing = harness.time_calls(workloads.blocking(step, params, state, instance, start), 1,
                              settings["scaling_repeats"])
  timing["first_call_s"] = first_call
  peak = harness.peak_rss_mb()
  record = dict(timing)
  record.update({"coordinates": task["coordinates"], "truncation": truncation,
                 "checkpoint": task.get("checkpoint"), "grappler": task.get("grappler"),
                 "peak_rss_mb": peak, "rss_before_mb": rss_before,
                 "activation_mb": peak - rss_before, "first_meta_loss": first,
                 "weights_abs_sum_after_first_step": weights_sum})
  return record


def loglog_slope(xs, ys):
  """Least-squares slope of log y against log x (None with fewer than 2 usable points)."""
  points = [(math.log(x), math.log(y)) for x, y in zip(xs, ys) if x and y and x > 0 and y > 0]
  if len(points) < 2:
    return None
  mx = sum(p[0] for p in points) / len(points)
  my = sum(p[1] for p in points) / len(points)
  sxx = sum((p[0] - mx) ** 2 for p in points)
  return sum((p[0] - mx) * (p[1] - my) for p in points) / sxx if sxx else None


def scaling_tasks(settings) -> list:
  """The scaling suite's measurements, each meant for a fresh process."""
  tasks = []
  budget = settings["scaling_max_memory_gb"] * 2 ** 30

  def point(sweep, n, k):
    estimate = n * k * ESTIMATED_BYTES_PER_COORDINATE_STEP
    return {"kind": "scaling_point", "sweep": sweep, "coordinates": n, "truncation": k,
            "skip": estimate > budget, "estimated_gb": estimate / 2 ** 30}

  k = settings["scaling_coordinates_truncation"]
  tasks += [point("coordinates", n, k) for n in settings["scaling_coordinates"]]
  n = settings["scaling_truncation_coordinates"]
  tasks += [point("truncation", n, k) for k in settings["scaling_truncations"]]
  k = settings["checkpoint_truncation"]
  chunks = settings["checkpoint_chunks"]
  common = {"kind": "scaling_point", "sweep": "checkpoint", "coordinates": n, "truncation": k}
  tasks.append(dict(common, checkpoint=None))
  for chunk in chunks:
    tasks.append(dict(common, checkpoint={"impl": "control_deps", "chunk": chunk}))
  middle = chunks[len(chunks) // 2]
  tasks.append(dict(common, checkpoint={"impl": "recompute_grad", "chunk": middle}))
  tasks.append(dict(common, checkpoint={"impl": "recompute_grad", "chunk": middle},
                    grappler={"arithmetic_optimization": False}))
  tasks.append(dict(common, sweep="checkpoint_probe",
                    checkpoint={"impl": "recompute_grad", "chunk": middle, "library_step": True}))
  return tasks


def summarize_scaling(results: list) -> dict:
  """Groups scaling points by sweep and fits log-log slopes of time and memory."""
  sweeps = collections.defaultdict(list)
  for record in results:
    sweeps[record.get("sweep", "?")].append(record)
  summary = {"points": dict(sweeps)}
  for sweep, key in (("coordinates", "coordinates"), ("truncation", "truncation")):
    points = [r for r in sweeps.get(sweep, []) if "cpu_s_median" in r]
    xs = [r[key] for r in points]
    upper = points[len(points) // 2:] if len(points) >= 4 else points
    summary[f"{sweep}_slope_cpu"] = loglog_slope(xs, [r["cpu_s_median"] for r in points])
    summary[f"{sweep}_slope_cpu_upper_half"] = loglog_slope(
        [r[key] for r in upper], [r["cpu_s_median"] for r in upper])
    summary[f"{sweep}_slope_memory"] = loglog_slope(xs, [r["activation_mb"] for r in points])
    summary[f"{sweep}_slope_memory_upper_half"] = loglog_slope(
        [r[key] for r in upper], [r["activation_mb"] for r in upper])
  checkpoint = [r for r in sweeps.get("checkpoint", []) if "cpu_s_median" in r]
  plain = next((r for r in checkpoint if not r.get("checkpoint")), None)
  if plain:
    for r in checkpoint:
      r["time_vs_plain"] = r["cpu_s_median"] / plain["cpu_s_median"]
      r["activation_vs_plain"] = (r["activation_mb"] / plain["activation_mb"]
                                  if plain["activation_mb"] > 0 else None)
  return summary
