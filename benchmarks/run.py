"""Speed and memory benchmark of meta-training and evaluation (issue 6), as an absl entry point.

    python -m l2l_tf.bench --output=docs/bench.json          # main table, variants, profile
    python -m l2l_tf.bench --suites=scaling --output=docs/bench_scaling.json
    python -m l2l_tf.bench --table_from=docs/bench.json      # print the tables again

Every measurement runs in a child process of this module (`--child_task`), because TensorFlow's
thread pools can only be sized before it initialises and because a process's peak RSS
(`getrusage(RUSAGE_SELF).ru_maxrss`) can only be attributed to one benchmark in a fresh process:
TensorFlow keeps freed tensor memory mapped, so a high-water mark cannot be reset in between. The
parent runs no TensorFlow ops.

JSON layout (times are seconds; `cpu_s` is process CPU time of all threads, `wall_s` elapsed time):

    {"machine": {...}, "settings": {...},
     "quadratic_meta_step": {"1": RECORD, "2": RECORD},    # keyed by the thread count
     "mnist_meta_step": {...}, "quadratic_eval_100": {...}, "mnist_eval_100": {...},
     "variants": {...}, "profile": {...}, "scaling": {...}, "errors": [...]}

A meta-step RECORD holds `threads`, `cpu_s_median`, `wall_s_median` (over `repeats` calls after
`warmup` calls), `first_call_s` (tracing and compilation included), the analytic `flops` of one step
and their `flops_breakdown`, the matmul rate measured in the same process for the step's shapes
(`matmul_rate`), `floor_s` = sum over matmul families of flops / rate (CPU seconds) and
`ratio_to_floor` = `cpu_s_median / floor_s`, `peak_rss_mb` (the child's ru_maxrss) and
`rss_before_mb` (resident memory after set-up, before the first call). An evaluation RECORD
(`*_eval_100`, the key keeps the paper's 100 steps; `steps` holds the actual number) describes the
learned optimizer without XLA at its top level and holds `adam`, `learned_xla` and `adam_xla`
sub-records and the ratios `learned_to_adam_cpu` and `learned_to_adam_cpu_xla`.
"""

import collections
import concurrent.futures
import datetime
import functools
import glob
import json
import math
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position

# The benchmark times MetaTrainer's own compiled meta-step and swaps its truncation loss.
# pylint: disable=protected-access

FLAGS = cli.FLAGS

SUITES = ("main", "variants", "profile", "scaling")
PROBLEMS = ("quadratic", "mnist")

flags.DEFINE_string("output", None, "Where to write the benchmark's JSON.")
flags.DEFINE_list("suites", ["main", "variants", "profile"],
                  f"What to measure: {', '.join(SUITES)}.")
flags.DEFINE_bool("scaling", False, "Also run the scaling suite (same as adding it to --suites).")
flags.DEFINE_list("bench_problems", list(PROBLEMS), "Problems of the main, variant and profile "
                  "suites.")
flags.DEFINE_list("thread_counts", ["1", "2"], "TensorFlow intra- and inter-op thread counts of "
                  "the main table; each runs in its own child process.")
flags.DEFINE_integer("repeats", 10, "Timed calls per measurement (medians are reported).")
flags.DEFINE_integer("warmup", 2, "Untimed calls before the timed ones (the first one traces).")
flags.DEFINE_integer("eval_steps", 100, "Optimizee steps of the evaluation runs.")
flags.DEFINE_integer("mnist_meta_batch", 1, "MNIST problems per meta-step (flags/mnist.flags: 1).")
flags.DEFINE_integer("mnist_eval_problems", 1, "MNIST problems run at once in the evaluation.")
flags.DEFINE_integer("mnist_batch_size", 128, "Minibatch of the MNIST optimizee.")
flags.DEFINE_integer("quadratic_meta_batch", 32, "Quadratics per meta-step (flags: 32).")
flags.DEFINE_integer("quadratic_eval_problems", 1000, "Quadratics run at once in the evaluation.")
flags.DEFINE_integer("quadratic_dims", 10, "Dimension of the quadratics.")
flags.DEFINE_bool("synthetic_data", None, "Random MNIST-shaped images instead of the MNIST cache "
                  "(same shapes and cost; default: only with --tiny).")
flags.DEFINE_bool("isolate", None, "One child process per measurement, so that peak RSS belongs to "
                  "one benchmark (default; --tiny defaults to one child per thread count).")
flags.DEFINE_bool("tiny", False, "Tiny sizes that run in seconds (tests); numbers are meaningless.")
flags.DEFINE_list("variants", None, "Variants of the variants suite (default: all of "
                  "META_VARIANTS; `library` is always measured, as the reference).")
flags.DEFINE_integer("profile_steps", 3, "Meta-steps traced by the profiler.")
flags.DEFINE_string("profile_dir", None, "Keep the profiler trace here (TensorBoard's profile "
                    "plugin reads it); default: a temporary directory.")
flags.DEFINE_list("scaling_coordinates", ["1000", "10000", "100000", "1000000"],
                  "Coordinate counts of the scaling suite.")
flags.DEFINE_integer("scaling_coordinates_truncation", 5,
                     "Truncation length of the coordinate sweep (memory grows with n * K).")
flags.DEFINE_list("scaling_truncations", ["5", "10", "20", "50", "100"],
                  "Truncation lengths of the scaling suite.")
flags.DEFINE_integer("scaling_truncation_coordinates", 10000,
                     "Coordinates of the truncation sweep and of the checkpointing runs.")
flags.DEFINE_integer("checkpoint_truncation", 100, "Truncation length of the checkpointing runs.")
flags.DEFINE_list("checkpoint_chunks", ["10", "25", "50"],
                  "Steps per recomputed chunk of the checkpointing runs.")
flags.DEFINE_integer("scaling_repeats", 3, "Timed meta-steps per scaling point.")
flags.DEFINE_float("scaling_max_memory_gb", 12.0,
                   "Skip scaling points whose estimated activation memory is larger.")
flags.DEFINE_integer("jobs", 1, "Child processes run at once. More than 1 makes them compete for "
                     "the CPU and distorts every timing: only for tests.")
flags.DEFINE_string("table_from", None, "Print the Markdown tables of an existing JSON and exit.")
flags.DEFINE_string("child_task", None, "Internal: run the measurements of this task file.")

# Flags of l2l_tf.cli that the benchmark reads; setting any other one is an error, not a no-op.
CLI_FLAGS_USED = ("optimizer_path", "truncation", "data_dir", "threads", "deterministic", "seed")

BYTES_PER_MB = 2.0 ** 20
# Activation memory of one meta-step per coordinate and unrolled step (2 x 20 LSTM, measured: the
# scaling suite's memory slope); used only to skip scaling points that would not fit.
ESTIMATED_BYTES_PER_COORDINATE_STEP = 1500.0

# ------------------------------------------------------------------------------------------------
# Settings.
# ------------------------------------------------------------------------------------------------

TINY = {"repeats": 2, "warmup": 1, "eval_steps": 3, "truncation": 2, "mnist_batch_size": 8,
        "quadratic_meta_batch": 2, "quadratic_eval_problems": 4, "quadratic_dims": 3,
        "mnist_meta_batch": 1, "mnist_eval_problems": 1, "profile_steps": 1,
        "scaling_coordinates": [100, 1000], "scaling_coordinates_truncation": 2,
        "scaling_truncations": [2, 4], "scaling_truncation_coordinates": 100,
        "checkpoint_truncation": 4, "checkpoint_chunks": [2], "scaling_repeats": 1}


def _int_list(name):
  try:
    values = [int(v) for v in getattr(FLAGS, name)]
  except ValueError as e:
    raise cli.UsageError(f"--{name} must be comma-separated integers, got "
                         f"{','.join(getattr(FLAGS, name))}.") from e
  if not values or any(v <= 0 for v in values):
    raise cli.UsageError(f"--{name} must be positive integers, got "
                         f"{','.join(getattr(FLAGS, name))}.")
  return values


def settings_from_flags() -> dict:
  """The benchmark's settings: flags, with --tiny's sizes where a flag was not given.

  Returns:
    A JSON-serialisable dict passed to every child process.

  Raises:
    cli.UsageError: bad or unused flags.
  """
  for flag in FLAGS.get_flags_for_module("l2l_tf.cli"):
    if flag.present and flag.name not in CLI_FLAGS_USED:
      raise cli.UsageError(f"--{flag.name} does not apply to l2l_tf.bench (it reads only "
                           f"{', '.join('--' + f for f in CLI_FLAGS_USED)} of the shared flags).")
  suites = list(FLAGS.suites) + (["scaling"] if FLAGS.scaling else [])
  unknown = sorted(set(suites) - set(SUITES))
  if unknown:
    raise cli.UsageError(f"Unknown --suites {unknown}; choose from {', '.join(SUITES)}.")
  bench_problems = list(FLAGS.bench_problems)
  if not bench_problems or set(bench_problems) - set(PROBLEMS):
    raise cli.UsageError(f"--bench_problems must be among {', '.join(PROBLEMS)}, got "
                         f"{','.join(bench_problems)}.")
  variants = list(META_VARIANTS) if FLAGS.variants is None else list(FLAGS.variants)
  unknown = sorted(set(variants) - set(META_VARIANTS))
  if unknown:
    raise cli.UsageError(f"Unknown --variants {unknown}; choose from {', '.join(META_VARIANTS)}.")
  variants = ["library"] + [v for v in META_VARIANTS if v in variants and v != "library"]
  thread_counts = _int_list("thread_counts")
  if FLAGS["threads"].present:
    if FLAGS.threads <= 0:
      raise cli.UsageError(f"--threads must be positive, got {FLAGS.threads}.")
    thread_counts = [FLAGS.threads]
  settings = {
      "suites": suites, "problems": bench_problems, "thread_counts": thread_counts,
      "variants": variants,
      "repeats": FLAGS.repeats, "warmup": FLAGS.warmup, "eval_steps": FLAGS.eval_steps,
      "truncation": FLAGS.truncation, "mnist_meta_batch": FLAGS.mnist_meta_batch,
      "mnist_eval_problems": FLAGS.mnist_eval_problems, "mnist_batch_size": FLAGS.mnist_batch_size,
      "quadratic_meta_batch": FLAGS.quadratic_meta_batch,
      "quadratic_eval_problems": FLAGS.quadratic_eval_problems,
      "quadratic_dims": FLAGS.quadratic_dims, "profile_steps": FLAGS.profile_steps,
      "scaling_coordinates": _int_list("scaling_coordinates"),
      "scaling_coordinates_truncation": FLAGS.scaling_coordinates_truncation,
      "scaling_truncations": _int_list("scaling_truncations"),
      "scaling_truncation_coordinates": FLAGS.scaling_truncation_coordinates,
      "checkpoint_truncation": FLAGS.checkpoint_truncation,
      "checkpoint_chunks": _int_list("checkpoint_chunks"),
      "scaling_repeats": FLAGS.scaling_repeats,
      "scaling_max_memory_gb": FLAGS.scaling_max_memory_gb,
      "tiny": FLAGS.tiny, "seed": FLAGS.seed, "deterministic": FLAGS.deterministic,
      "optimizer_path": FLAGS.optimizer_path, "data_dir": FLAGS.data_dir,
      "profile_dir": str(Path(FLAGS.profile_dir).resolve()) if FLAGS.profile_dir else None,
      "jobs": FLAGS.jobs,
  }
  if FLAGS.tiny:
    for name, value in TINY.items():
      if not FLAGS[name].present:
        settings[name] = value
  synthetic = FLAGS.synthetic_data
  settings["synthetic_data"] = FLAGS.tiny if synthetic is None else synthetic
  isolate = FLAGS.isolate
  settings["isolate"] = (not FLAGS.tiny) if isolate is None else isolate
  positive = ["repeats", "eval_steps", "truncation", "mnist_meta_batch", "mnist_eval_problems",
              "mnist_batch_size", "quadratic_meta_batch", "quadratic_eval_problems",
              "quadratic_dims", "profile_steps", "scaling_coordinates_truncation",
              "scaling_truncation_coordinates", "checkpoint_truncation", "scaling_repeats", "jobs"]
  for name in positive:
    if settings[name] <= 0:
      raise cli.UsageError(f"--{name} must be positive, got {settings[name]}.")
  if settings["warmup"] < 1:
    raise cli.UsageError(f"--warmup must be at least 1 (the first call traces), got "
                         f"{settings['warmup']}.")
  for chunk in settings["checkpoint_chunks"]:
    if settings["checkpoint_truncation"] % chunk:
      raise cli.UsageError(f"--checkpoint_chunks={chunk} does not divide "
                           f"--checkpoint_truncation={settings['checkpoint_truncation']}.")
  return settings


# ------------------------------------------------------------------------------------------------
# Process measurements (no TensorFlow).
# ------------------------------------------------------------------------------------------------


def peak_rss_mb() -> float:
  """This process's peak resident set size so far (Linux reports ru_maxrss in KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
  """This process's resident set size now (from /proc; the peak where /proc is missing)."""
  try:
    with open("/proc/self/statm") as f:
      return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / BYTES_PER_MB
  except (OSError, ValueError, IndexError):
    return peak_rss_mb()


def summarize_samples(cpu, wall) -> dict:
  """Median, quartiles and minimum of per-call CPU and wall times."""

  def quartiles(values):
    if len(values) < 2:
      return [values[0], values[0]]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return [q[0], q[2]]

  return {"cpu_s_median": statistics.median(cpu), "wall_s_median": statistics.median(wall),
          "cpu_s_min": min(cpu), "wall_s_min": min(wall), "cpu_s_quartiles": quartiles(cpu),
          "wall_s_quartiles": quartiles(wall), "repeats": len(cpu),
          "cpu_s_samples": [round(c, 6) for c in cpu],
          "wall_s_samples": [round(w, 6) for w in wall]}


def time_calls(fn, warmup: int, repeats: int) -> dict:
  """Times `fn()` (which must block until its result is computed) after `warmup` calls.

  Returns:
    `summarize_samples` of the timed calls plus `first_call_s`, the wall time of the first call
    (tracing and compilation included).
  """
  start = time.perf_counter()
  fn()
  first = time.perf_counter() - start
  for _ in range(warmup - 1):
    fn()
  cpu, wall = [], []
  for _ in range(repeats):
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    cpu.append(time.process_time() - c0)
    wall.append(time.perf_counter() - w0)
  result = summarize_samples(cpu, wall)
  result["first_call_s"] = first
  result["warmup"] = warmup
  return result


def time_interleaved(fns: dict, warmup: int, repeats: int) -> dict:
  """Times several functions round-robin, so that drifting background load hits all alike.

  Args:
    fns: name -> blocking callable.
    warmup: untimed calls of each before timing.
    repeats: timed calls of each.

  Returns:
    name -> `summarize_samples` result with `first_call_s`.
  """
  first = {}
  for name, fn in fns.items():
    start = time.perf_counter()
    fn()
    first[name] = time.perf_counter() - start
    for _ in range(warmup - 1):
      fn()
  samples = {name: ([], []) for name in fns}
  for _ in range(repeats):
    for name, fn in fns.items():
      c0, w0 = time.process_time(), time.perf_counter()
      fn()
      samples[name][0].append(time.process_time() - c0)
      samples[name][1].append(time.perf_counter() - w0)
  results = {}
  for name, (cpu, wall) in samples.items():
    results[name] = summarize_samples(cpu, wall)
    results[name]["first_call_s"] = first[name]
  return results


def _cpu_jiffies():
  """(busy, total) CPU jiffies of the whole machine from /proc/stat, or None."""
  try:
    with open("/proc/stat") as f:
      fields = [int(v) for v in f.readline().split()[1:]]
  except (OSError, ValueError):
    return None
  idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
  return sum(fields) - idle, sum(fields)


def machine_info() -> dict:
  """What the numbers were measured on (no TensorFlow import)."""
  info = {"platform": platform.platform(), "python": platform.python_version(),
          "cpu_count": os.cpu_count(), "hostname": platform.node(),
          "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}
  try:
    with open("/proc/cpuinfo") as f:
      models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    info["cpu_model"] = models[0] if models else None
  except OSError:
    info["cpu_model"] = None
  try:
    with open("/proc/meminfo") as f:
      mem = dict(line.split(":", 1) for line in f)
    info["mem_total_gb"] = round(int(mem["MemTotal"].split()[0]) / 2 ** 20, 1)
  except (OSError, KeyError, ValueError):
    info["mem_total_gb"] = None
  try:
    root = Path(__file__).resolve().parent.parent
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                            text=True, timeout=10, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                           capture_output=True, text=True, timeout=10, check=False).stdout
    info["git_commit"] = commit or None
    info["git_modified_files"] = [line[3:] for line in dirty.splitlines()]
  except (OSError, subprocess.SubprocessError):
    info["git_commit"] = None
  return info


# ------------------------------------------------------------------------------------------------
# Analytic FLOP counts.
# ------------------------------------------------------------------------------------------------


def lstm_forward_cost(optimizer, num_coordinates: int) -> dict:
  """Matmul FLOPs and transcendentals of one forward step of a learned optimizer.

  A coordinatewise LSTM layer with input width d and h units multiplies [n, d + h] by
  [d + h, 4h] (2 n (d + h) 4h FLOPs) and evaluates 3 sigmoids and 2 tanh per unit; the output
  layer is 2 n h FLOPs; LogAndSign takes one log per coordinate. Baselines have no matmuls.

  Args:
    optimizer: a `CoordinatewiseLSTM` (or subclass), `GroupedOptimizer` or baseline.
    num_coordinates: coordinates it updates (or, for a grouped optimizer, a list of per-tensor
      sizes in parameter order).

  Returns:
    `{"matmul_flops": float, "transcendentals": float, "gate_shapes": [[n, d + h, 4h], ...]}`.
  """
  from l2l_tf.optimizers import grouped, lstm  # pylint: disable=g-import-not-at-top
  if isinstance(optimizer, grouped.GroupedOptimizer):
    sizes = list(num_coordinates)
    total = {"matmul_flops": 0.0, "transcendentals": 0.0, "gate_shapes": []}
    for name in optimizer.group_names:
      n = sum(s for s, a in zip(sizes, optimizer.assignment) if a == name)
      part = lstm_forward_cost(optimizer.optimizers[name], n)
      for key in ("matmul_flops", "transcendentals"):
        total[key] = None if None in (total[key], part[key]) else total[key] + part[key]
      total["gate_shapes"] += part["gate_shapes"]
    return total
  n = num_coordinates if isinstance(num_coordinates, int) else sum(num_coordinates)
  if not isinstance(optimizer, lstm.CoordinatewiseLSTM):
    if optimizer.trainable_variables:  # A learned optimizer this count does not know.
      return {"matmul_flops": None, "transcendentals": None, "gate_shapes": []}
    return {"matmul_flops": 0.0, "transcendentals": 0.0, "gate_shapes": []}
  d = optimizer.preprocessing.output_size + getattr(optimizer, "extra_inputs", 0)
  flops, transcendentals, shapes = 0.0, 0.0, []
  for h in optimizer.hidden_sizes:
    flops += 2.0 * n * (d + h) * 4 * h
    transcendentals += 5.0 * n * h
    shapes.append([n, d + h, 4 * h])
    d = h
  flops += 2.0 * n * d * getattr(optimizer, "outputs", 1)
  if optimizer.preprocessing.get_config()["name"] == "log_and_sign":
    transcendentals += n
  return {"matmul_flops": flops, "transcendentals": transcendentals, "gate_shapes": shapes}


def problem_cost(problem, num: int) -> dict:
  """Matmul FLOPs of the optimizee's loss, of its gradient, and its transcendentals.

  MLP: a layer a -> b on a minibatch B costs 2 B a b forward; its gradient costs 2 B a b for dW,
  and another 2 B a b for dX except at the first layer, whose input (the images) needs none.
  Quadratic: the mat-vec W theta costs 2 d^2 forward and W^T r as much backward.

  Args:
    problem: the optimizee family.
    num: instances run at once.

  Returns:
    `{"forward": f, "gradient": g, "transcendentals": t, "shapes": [...]}` for all instances.
  """
  from l2l_tf.problems import mlp, quadratic  # pylint: disable=g-import-not-at-top
  if isinstance(problem, mlp.MLPClassifier):
    sizes = problem.layer_sizes
    forward = sum(2.0 * num * problem.batch_size * a * b for a, b in zip(sizes[:-1], sizes[1:]))
    gradient = forward + sum(2.0 * num * problem.batch_size * a * b
                             for a, b in zip(sizes[1:-1], sizes[2:]))
    transcendentals = num * problem.batch_size * (sum(problem.hidden_sizes) + sizes[-1])
    shapes = [[num, problem.batch_size, a, b] for a, b in zip(sizes[:-1], sizes[1:])]
    return {"forward": forward, "gradient": gradient, "transcendentals": float(transcendentals),
            "shapes": shapes}
  if isinstance(problem, quadratic.Quadratic):
    copies = problem.num_averaged if problem.family == "deepmind" else 1
    d = problem.num_dims
    forward = 2.0 * num * copies * d * d
    return {"forward": forward, "gradient": forward, "transcendentals": 0.0,
            "shapes": [[num * copies, d, d, 1]]}
  return {"forward": 0.0, "gradient": 0.0, "transcendentals": 0.0, "shapes": []}


def meta_step_flops(problem, optimizer, num: int, param_sizes, truncation: int) -> dict:
  """Matmul FLOPs of one meta-step (a truncation of K steps with its meta-gradient).

  Per step: the optimizee loss forward, its gradient (the optimizer's input), the optimizer's
  forward, and in the backward pass the optimizer's matmuls twice more (dW and dX of every matmul)
  and the loss's gradient again (d f(theta_t) / d theta_t of the meta-loss). The while loop's
  gradient runs for every step, including the first, whose loss has weight 0. The final
  f(theta_K) adds a forward and a backward. Elementwise work is not counted.

  Returns:
    `{"flops", "lstm_flops", "problem_flops", "transcendentals", "per_step": {...}}`.
  """
  opt = lstm_forward_cost(optimizer, param_sizes)
  prob = problem_cost(problem, num)
  problem_flops = (truncation * (prob["forward"] + 2.0 * prob["gradient"])
                   + prob["forward"] + prob["gradient"])
  if opt["matmul_flops"] is None:
    return {"flops": None, "lstm_flops": None, "problem_flops": problem_flops,
            "transcendentals": None, "per_step": None, "gate_shapes": [],
            "problem_shapes": prob["shapes"]}
  lstm_flops = truncation * 3.0 * opt["matmul_flops"]
  return {"flops": lstm_flops + problem_flops, "lstm_flops": lstm_flops,
          "problem_flops": problem_flops,
          "transcendentals": truncation * (opt["transcendentals"] + prob["transcendentals"]),
          "per_step": {"lstm_forward": opt["matmul_flops"], "problem_forward": prob["forward"],
                       "problem_gradient": prob["gradient"]},
          "gate_shapes": opt["gate_shapes"], "problem_shapes": prob["shapes"]}


def evaluation_flops(problem, optimizer, num: int, param_sizes, steps: int) -> dict:
  """Matmul FLOPs of `steps` forward-only steps (loss, gradient, optimizer) and the last loss."""
  opt = lstm_forward_cost(optimizer, param_sizes)
  prob = problem_cost(problem, num)
  problem_flops = steps * (prob["forward"] + prob["gradient"]) + prob["forward"]
  if opt["matmul_flops"] is None:
    return {"flops": None, "lstm_flops": None, "problem_flops": problem_flops,
            "transcendentals": None, "gate_shapes": [], "problem_shapes": prob["shapes"]}
  lstm_flops = steps * opt["matmul_flops"]
  return {"flops": lstm_flops + problem_flops, "lstm_flops": lstm_flops,
          "problem_flops": problem_flops,
          "transcendentals": steps * (opt["transcendentals"] + prob["transcendentals"]),
          "gate_shapes": opt["gate_shapes"], "problem_shapes": prob["shapes"]}


def floor_seconds(flops: dict, rates: dict) -> dict:
  """The matmul floor: LSTM FLOPs at the LSTM-shape rate plus optimizee FLOPs at its rate.

  Args:
    flops: from `meta_step_flops` or `evaluation_flops`.
    rates: from `measure_matmul_rates` (GFLOP per CPU second and per wall second).

  Returns:
    `{"floor_s": CPU seconds, "floor_wall_s": wall seconds}`.
  """
  out = {}
  for key, suffix in (("floor_s", "gflops_cpu"), ("floor_wall_s", "gflops_wall")):
    total = 0.0
    for family, part in (("lstm", "lstm_flops"), ("problem", "problem_flops")):
      if flops[part]:
        rate = rates[family][suffix] if rates.get(family) else rates["lstm"][suffix]
        total += flops[part] / (rate * 1e9)
    out[key] = total
  return out


# ------------------------------------------------------------------------------------------------
# Everything below runs in the child processes (TensorFlow imported lazily).
# ------------------------------------------------------------------------------------------------


def _tf():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def measure_matmul_rates(gate_shapes, problem_shapes, min_seconds: float = 0.3) -> dict:
  """GFLOP/s of tf.matmul on the LSTM's gate shapes and on the optimizee's shapes, in-process.

  Each shape is multiplied eagerly (one op dispatch per product, as in the compiled step) until
  `min_seconds` of wall time has passed; the rate uses the median per-call time.

  Args:
    gate_shapes: [[n, k, m], ...]: [n, k] x [k, m] products (the LSTM's gate matmuls).
    problem_shapes: [[batch, rows, k, m], ...]: batched [rows, k] x [k, m] products.
    min_seconds: timing budget per shape.

  Returns:
    `{"lstm": {"gflops_cpu", "gflops_wall", "shapes": [...]}, "problem": {...} or None}`.
  """
  tf = _tf()
  rng = tf.random.Generator.from_seed(0)

  def rate(shapes, make):
    if not shapes:
      return None
    rows, total_flops, total_cpu, total_wall = [], 0.0, 0.0, 0.0
    for shape in shapes:
      a, b, flops = make(shape)
      tf.matmul(a, b).numpy()  # First call: kernel selection, allocation.
      cpu, wall = [], []
      start = time.perf_counter()
      while time.perf_counter() - start < min_seconds or len(cpu) < 5:
        c0, w0 = time.process_time(), time.perf_counter()
        tf.matmul(a, b)  # Eager CPU ops run synchronously.
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
      c, w = statistics.median(cpu), statistics.median(wall)
      rows.append({"shape": shape, "flops": flops, "cpu_s": c, "wall_s": w,
                   "gflops_cpu": flops / max(c, 1e-9) / 1e9,
                   "gflops_wall": flops / max(w, 1e-9) / 1e9})
      total_flops, total_cpu, total_wall = total_flops + flops, total_cpu + c, total_wall + w
    return {"gflops_cpu": total_flops / max(total_cpu, 1e-9) / 1e9,
            "gflops_wall": total_flops / max(total_wall, 1e-9) / 1e9, "shapes": rows}

  def gate(shape):
    n, k, m = shape
    return rng.normal([n, k]), rng.normal([k, m]), 2.0 * n * k * m

  def batched(shape):
    batch, rows, k, m = shape
    return rng.normal([batch, rows, k]), rng.normal([batch, k, m]), 2.0 * batch * rows * k * m

  return {"lstm": rate(gate_shapes, gate), "problem": rate(problem_shapes, batched)}


@functools.lru_cache(maxsize=None)
def _diagonal_quadratic_class():
  """The scaling suite's cheap problem: f(theta) = mean_i a_i (theta_i - y_i)^2, n coordinates."""
  tf = _tf()
  from l2l_tf import problems  # pylint: disable=g-import-not-at-top

  class _DiagonalQuadratic(problems.Problem):
    """n coordinates at O(n) cost per loss: a, y per instance, theta_0 ~ N(0, 0.01^2)."""

    name = "diagonal_quadratic"

    def __init__(self, num_coordinates: int):
      self.num_coordinates = int(num_coordinates)

    @property
    def param_names(self):
      return ["theta"]

    def sample_instances(self, num, seed):
      shape = [num, self.num_coordinates]
      return {"a": tf.random.stateless_uniform(shape, problems.fold_in(seed, 0), 0.5, 1.5),
              "y": tf.random.stateless_normal(shape, problems.fold_in(seed, 1))}

    def initial_params(self, instance, seed):
      return [0.01 * tf.random.stateless_normal(tf.shape(instance["y"]), seed)]

    def loss(self, params, instance, step=None):
      return tf.reduce_mean(instance["a"] * tf.square(params[0] - instance["y"]), axis=-1)

    def get_config(self):
      return {"name": self.name, "num_coordinates": self.num_coordinates}

  return _DiagonalQuadratic


def default_optimizer_config(problem_name: str) -> dict:
  """The figures' untrained 2 x 20 LSTM: identity on quadratics, LogAndSign(10) x 0.1 on MNIST."""
  if problem_name == "mnist":
    return {"name": "lstm", "hidden_sizes": [20, 20],
            "preprocessing": {"name": "log_and_sign", "p": 10.0}, "output_scale": 0.1}
  return {"name": "lstm", "hidden_sizes": [20, 20], "preprocessing": {"name": "identity"},
          "output_scale": 1.0}


def make_problem(name: str, settings: dict, num_coordinates: int = 0):
  """The benchmark's problem `name`: quadratic, mnist (cache or synthetic) or diagonal."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from l2l_tf import problems  # pylint: disable=g-import-not-at-top
  if name == "quadratic":
    return problems.Quadratic(num_dims=settings["quadratic_dims"])
  if name == "diagonal":
    return _diagonal_quadratic_class()(num_coordinates)
  if name != "mnist":
    raise ValueError(f"Unknown benchmark problem {name!r}.")
  if settings["synthetic_data"]:
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(1000, 784)).astype(np.uint8)
    labels = rng.randint(0, 10, size=1000)
    return problems.MLPClassifier(images, labels, hidden_sizes=(20,),
                                  batch_size=settings["mnist_batch_size"], name="mnist",
                                  data_config={"split": "synthetic"})
  return problems.make_problem({"name": "mnist", "hidden_sizes": [20],
                                "batch_size": settings["mnist_batch_size"]},
                               split="train", data_dir=settings["data_dir"])


def make_optimizer(problem_name: str, settings: dict, variant: str = "library"):
  """The learned optimizer under test (`--optimizer_path`, else the untrained default).

  Args:
    problem_name: selects the default architecture.
    settings: the benchmark settings.
    variant: "library" for l2l_tf's own class, else a name of `VARIANT_CLASSES` (same weights).

  Returns:
    The optimizer.
  """
  from l2l_tf import optimizers  # pylint: disable=g-import-not-at-top
  if settings.get("optimizer_path"):
    loaded = optimizers.load_optimizer(settings["optimizer_path"])
    if variant == "library":
      return loaded
    config = loaded.get_config()
    config.pop("name")
    copy = _variant_classes()[variant](**config)
    for dst, src in zip(copy.trainable_variables, loaded.trainable_variables):
      dst.assign(src)
    return copy
  config = default_optimizer_config(problem_name)
  if variant == "library":
    return optimizers.make_optimizer(config)
  config = dict(config)
  config.pop("name")
  return _variant_classes()[variant](**config)


def param_sizes(params):
  return [int(p.shape.num_elements()) for p in params]


# ---- variants of the LSTM step, measured instead of editing the library ------------------------


@functools.lru_cache(maxsize=None)
def _variant_classes():
  """Subclasses of the library's LSTM with a different `step` and the same weights and outputs.

  feature_major: (now in the library as `lstm.FeatureMajorLSTM`, used for trajectories; here in
    its tanh form, as the library runs it without XLA) state and gates laid out [units, n]
    instead of [n, units], coordinates padded to a multiple of 16: the gate `split` and the
    [input; h] `concat` are then along the outer axis, where TensorFlow's Split/Slice alias
    their input instead of copying.
  split_weights: z = x W_x + h W_h + b (two matmuls) instead of concat([x, h]) W: no concat.
  fused_cell: TensorFlow's fused `LSTMBlockCell` kernel (one op for the gates and the cell) with
    its `LSTMBlockCellGrad`, wired up with `tf.custom_gradient` (TF registers no gradient for it).
  tanh_form: one tanh over the gates (sigma(x) = (1 + tanh(x / 2)) / 2, the halves folded into the
    weights), coordinate-major.
  xla_cell: the gate matmul by TensorFlow, the cell's elementwise part (forward, and a hand-written
    backward) compiled by XLA, so that XLA fuses it while oneDNN keeps the matmuls.
  """
  tf = _tf()
  from l2l_tf.optimizers import base  # pylint: disable=g-import-not-at-top
  from l2l_tf.optimizers import lstm  # pylint: disable=g-import-not-at-top
  propagate = getattr(lstm, "propagate_non_finite", None)  # In the library since issue 5.

  class _Variant(lstm.CoordinatewiseLSTM):
    """Shared checks and output handling."""

    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      if (not self.forget_gate or self.cell_clip is not None
          or getattr(self, "shares_information", False) or getattr(self, "extra_inputs", 0)
          or getattr(self, "outputs", 1) != 1):
        raise ValueError(f"{type(self).__name__} implements only the paper's LSTM (forget gate, "
                         "no cell clip, no global averaging cells, one output).")

    def step(self, grads, state):
      """The library's coordinate-major step around the variant's own
      `layer(index, x [n, d], h_prev, c_prev) -> (h, c)`, which every subclass defines."""
      flat = base.flatten_coordinates(grads)
      x = self.preprocessing(flat)
      new_state = []
      for index, (h_prev, c_prev) in enumerate(state):
        h, c = self.layer(index, x, h_prev, c_prev)
        new_state.append((h, c))
        x = h
      out = self.output_scale * (tf.matmul(x, self.output_weights)[:, 0] + self.output_bias)
      if propagate is not None:
        out = propagate(out, flat)
      return base.unflatten_coordinates(out, grads), tuple(new_state)

  class FeatureMajorLSTM(_Variant):
    """The library's `lstm.FeatureMajorLSTM` view, as an LSTM subclass (so that the meta-step can
    train it too): its methods run with this module as their `lstm`."""

    lstm = property(lambda self: self)
    tanh_form = True  # As the library's view without XLA.

    def initial_state(self, params):
      return lstm.FeatureMajorLSTM.initial_state(self, params)

    def step(self, grads, state):
      return lstm.FeatureMajorLSTM.step(self, grads, state)

  class SplitWeightsLSTM(_Variant):
    """No concat: the gate matmul split into input and recurrent parts."""

    def layer(self, layer, x, h_prev, c_prev):
      w = self.gate_weights[layer]
      d = int(w.shape[0]) - int(h_prev.shape[1])
      z = tf.matmul(x, w[:d]) + tf.matmul(h_prev, w[d:]) + self.gate_biases[layer]
      h, c, _ = self.cell(*tf.split(z, 4, axis=1), c_prev)
      return h, c

  def block_cell(x, c_prev, h_prev, w, b, forget_bias):
    """One LSTMBlockCell (gate order i, j, f, o as the library's) with its gradient."""
    d_in = x.shape[1]
    no_peephole = tf.zeros([w.shape[1] // 4], x.dtype)

    @tf.custom_gradient
    def cell(x, c_prev, h_prev, w, b):
      i, cs, f, o, ci, co, h = tf.raw_ops.LSTMBlockCell(
          x=x, cs_prev=c_prev, h_prev=h_prev, w=w, wci=no_peephole, wcf=no_peephole,
          wco=no_peephole, b=b, forget_bias=forget_bias, cell_clip=-1.0, use_peephole=False)

      def grad(d_cs, d_h):
        d_cs = tf.zeros_like(cs) if d_cs is None else d_cs
        d_h = tf.zeros_like(h) if d_h is None else d_h
        d_cs_prev, d_gates, _, _, _ = tf.raw_ops.LSTMBlockCellGrad(
            x=x, cs_prev=c_prev, h_prev=h_prev, w=w, wci=no_peephole, wcf=no_peephole,
            wco=no_peephole, b=b, i=i, cs=cs, f=f, o=o, ci=ci, co=co, cs_grad=d_cs, h_grad=d_h,
            use_peephole=False)
        d_xh = tf.matmul(d_gates, w, transpose_b=True)
        d_w = tf.matmul(tf.concat([x, h_prev], axis=1), d_gates, transpose_a=True)
        return d_xh[:, :d_in], d_cs_prev, d_xh[:, d_in:], d_w, tf.reduce_sum(d_gates, axis=0)

      return (cs, h), grad

    return cell(x, c_prev, h_prev, w, b)

  class FusedCellLSTM(_Variant):
    """The gates and cell update in TensorFlow's fused LSTMBlockCell kernel."""

    def layer(self, layer, x, h_prev, c_prev):
      c, h = block_cell(x, c_prev, h_prev, tf.convert_to_tensor(self.gate_weights[layer]),
                        tf.convert_to_tensor(self.gate_biases[layer]), self.forget_bias)
      return h, c

  class TanhFormLSTM(_Variant):
    """The cell's tanh form (`lstm.tanh_form_gate_weights`: one tanh over the gates, which the
    library's feature-major view uses without XLA) in the coordinate-major layout."""

    def layer(self, layer, x, h_prev, c_prev):
      w = lstm.tanh_form_gate_weights(self.gate_weights[layer], self.gate_biases[layer],
                                      self.hidden_sizes[layer], self.forget_bias)
      d = int(w.shape[0]) - 1
      gates = tf.tanh(tf.matmul(tf.concat([x, h_prev], axis=1), w[:d]) + w[d])
      return lstm.tanh_form_cell(*tf.split(gates, 4, axis=1), c_prev)

  def xla_cell(forget_bias):
    """The cell's elementwise part as two XLA-compiled functions (forward; backward by hand,
    recomputing the gates from the pre-activations) around TensorFlow's own matmuls."""

    @tf.function(jit_compile=True)
    def forward(z, c_prev):
      h, c, _ = lstm.cell_update(*tf.split(z, 4, axis=1), c_prev, forget_bias)
      return h, c

    @tf.function(jit_compile=True)
    def backward(z, c_prev, c, d_h, d_c):
      zi, zj, zf, zo = tf.split(z, 4, axis=1)
      i, j, f, o = tf.sigmoid(zi), tf.tanh(zj), tf.sigmoid(zf + forget_bias), tf.sigmoid(zo)
      tanh_c = tf.tanh(c)
      d_c = d_c + d_h * o * (1.0 - tanh_c * tanh_c)
      d_z = tf.concat([d_c * j * i * (1.0 - i), d_c * i * (1.0 - j * j),
                       d_c * c_prev * f * (1.0 - f), d_h * tanh_c * o * (1.0 - o)], axis=1)
      return d_z, d_c * f

    @tf.custom_gradient
    def cell(z, c_prev):
      h, c = forward(z, c_prev)

      def grad(d_h, d_c):
        d_h = tf.zeros_like(h) if d_h is None else d_h
        d_c = tf.zeros_like(c) if d_c is None else d_c
        return backward(z, c_prev, c, d_h, d_c)

      return (h, c), grad

    return cell

  class XlaCellLSTM(_Variant):
    """TensorFlow's gate matmul, then the cell's elementwise part compiled by XLA."""

    def __init__(self, *args, **kwargs):
      super().__init__(*args, **kwargs)
      self._xla_cell = xla_cell(self.forget_bias)

    def layer(self, layer, x, h_prev, c_prev):
      z = tf.matmul(tf.concat([x, h_prev], axis=1), self.gate_weights[layer])
      return self._xla_cell(z + self.gate_biases[layer], c_prev)

  return {"feature_major": FeatureMajorLSTM, "split_weights": SplitWeightsLSTM,
          "fused_cell": FusedCellLSTM, "tanh_form": TanhFormLSTM, "xla_cell": XlaCellLSTM}


# ---- gradient checkpointing over truncation chunks ---------------------------------------------


def checkpointed_truncation_loss(trainer, chunk: int, impl: str, library_step: bool = False):
  """`recompute.checkpointed_truncation_loss` for `trainer` (now in the library:
  `TrainConfig.recompute_chunk`); `library_step` uses `unroll.optimizee_step` (GradientTape)
  inside the chunks, which fails under `tf.recompute_grad`, kept to record that failure."""
  from l2l_tf.meta import recompute  # pylint: disable=g-import-not-at-top
  return recompute.checkpointed_truncation_loss(
      trainer.problem, trainer.optimizer, trainer.config.truncation, chunk, impl, library_step)


# ---- building and timing steps ------------------------------------------------------------------


def make_trainer(problem, optimizer, truncation: int, workdir):
  """A MetaTrainer whose `_meta_step` is the library's meta-step (checkpoints go to `workdir`)."""
  from l2l_tf import meta  # pylint: disable=g-import-not-at-top
  config = meta.TrainConfig(num_epochs=1, horizon=truncation, truncation=truncation,
                            num_validation_problems=1)
  return meta.MetaTrainer(problem, optimizer, config, workdir, log_fn=lambda message: None)


def meta_step_inputs(problem, optimizer, num: int, seed: int):
  from l2l_tf import problems  # pylint: disable=g-import-not-at-top
  instance, params = problem.sample(num, problems.split_seed(seed, "train", 0))
  return instance, params, optimizer.initial_state(params)


def blocking(fn, *args):
  """A zero-argument callable that runs fn(*args) and waits for its first output."""
  tf = _tf()

  def call():
    out = fn(*args)
    first = tf.nest.flatten(out)[0]
    return first.numpy()

  return call


def _problem_sizes(name, settings, kind):
  if name == "mnist":
    return settings["mnist_meta_batch"] if kind == "meta" else settings["mnist_eval_problems"]
  return settings["quadratic_meta_batch"] if kind == "meta" else settings["quadratic_eval_problems"]


def run_meta_step(task, settings, workdir) -> dict:
  """The library's meta-step on one problem: timing, FLOPs, floor and memory."""
  tf = _tf()
  problem = make_problem(task["problem"], settings)
  optimizer = make_optimizer(task["problem"], settings)
  num = _problem_sizes(task["problem"], settings, "meta")
  truncation = settings["truncation"]
  trainer = make_trainer(problem, optimizer, truncation, workdir)
  instance, params, state = meta_step_inputs(problem, optimizer, num, settings["seed"])
  flops = meta_step_flops(problem, optimizer, num, param_sizes(params), truncation)
  rss_before = current_rss_mb()
  start = tf.constant(0, tf.int32)
  timing = time_calls(blocking(trainer._meta_step, params, state, instance, start),
                      settings["warmup"], settings["repeats"])
  peak = peak_rss_mb()
  rates = measure_matmul_rates(flops["gate_shapes"], flops["problem_shapes"])
  record = dict(timing)
  record.update(_floor_fields(record, flops, rates))
  record.update({
      "peak_rss_mb": peak, "rss_before_mb": rss_before,
      "coordinates": sum(param_sizes(params)), "meta_batch": num, "truncation": truncation,
      "tracing_count": trainer._meta_step.experimental_get_tracing_count(),
      "problem": problem.get_config(), "optimizer": optimizer.get_config()})
  return record


def _floor_fields(timing, flops, rates) -> dict:
  if flops["flops"] is None:
    return {"flops": None, "flops_breakdown": flops, "matmul_rate": rates,
            "matmul_rate_gflops": None, "floor_s": None, "floor_wall_s": None,
            "ratio_to_floor": None, "ratio_to_floor_wall": None}
  floor = floor_seconds(flops, rates)
  return {"flops": flops["flops"], "flops_breakdown": flops, "matmul_rate": rates,
          "matmul_rate_gflops": rates["lstm"]["gflops_cpu"] if rates["lstm"] else None,
          "floor_s": floor["floor_s"], "floor_wall_s": floor["floor_wall_s"],
          "ratio_to_floor": timing["cpu_s_median"] / floor["floor_s"] if floor["floor_s"] else None,
          "ratio_to_floor_wall": (timing["wall_s_median"] / floor["floor_wall_s"]
                                  if floor["floor_wall_s"] else None)}


def run_evaluation(task, settings, workdir) -> dict:
  """`steps` forward-only optimizee steps of the learned optimizer and of Adam, +/- XLA."""
  del workdir
  from l2l_tf import optimizers  # pylint: disable=g-import-not-at-top
  from l2l_tf.meta import unroll  # pylint: disable=g-import-not-at-top
  problem = make_problem(task["problem"], settings)
  learned = make_optimizer(task["problem"], settings)
  adam = optimizers.Adam(learning_rate=0.01)
  num = _problem_sizes(task["problem"], settings, "eval")
  steps = settings["eval_steps"]
  instance, params, _ = meta_step_inputs(problem, learned, num, settings["seed"])
  sizes = param_sizes(params)
  rss_before = current_rss_mb()
  records, rates, peak_plain = {}, None, None
  for name, optimizer, jit in (("adam", adam, False), ("learned", learned, False),
                               ("adam_xla", adam, True), ("learned_xla", learned, True)):
    if jit and peak_plain is None:
      peak_plain = peak_rss_mb()
    fn = unroll.make_trajectory_fn(problem, optimizer, steps, jit_compile=jit)
    timing = time_calls(blocking(fn, instance, params), settings["warmup"], settings["repeats"])
    flops = evaluation_flops(problem, optimizer, num, sizes, steps)
    if rates is None:
      gate_shapes = evaluation_flops(problem, learned, num, sizes, steps)["gate_shapes"]
      rates = measure_matmul_rates(gate_shapes, flops["problem_shapes"])
    timing.update(_floor_fields(timing, flops, rates))
    timing["tracing_count"] = fn.experimental_get_tracing_count()
    timing["jit_compile"] = jit
    records[name] = timing
  record = dict(records.pop("learned"))
  record.update({
      "adam": records["adam"], "learned_xla": records["learned_xla"],
      "adam_xla": records["adam_xla"],
      "learned_to_adam_cpu": record["cpu_s_median"] / records["adam"]["cpu_s_median"],
      "learned_to_adam_cpu_xla": (records["learned_xla"]["cpu_s_median"]
                                  / records["adam_xla"]["cpu_s_median"]),
      "xla_speedup_learned": record["cpu_s_median"] / records["learned_xla"]["cpu_s_median"],
      "xla_speedup_adam": records["adam"]["cpu_s_median"] / records["adam_xla"]["cpu_s_median"],
      "peak_rss_mb": peak_plain, "peak_rss_mb_with_xla": peak_rss_mb(),
      "rss_before_mb": rss_before, "steps": steps, "problems": num,
      "coordinates": sum(sizes), "problem": problem.get_config(),
      "optimizer": learned.get_config()})
  return record


META_VARIANTS = ("library", "library_xla", "feature_major", "feature_major_xla", "split_weights",
                 "fused_cell", "tanh_form", "xla_cell")
EVAL_VARIANTS = META_VARIANTS


def run_variants(task, settings, workdir) -> dict:
  """Meta-step and evaluation of each LSTM variant, timed round-robin in one process.

  Every variant has its own optimizer with the same initial weights, so the first meta-loss and
  the weights after one meta-step must agree with the library's (`max_abs_diff_*`).
  """
  tf = _tf()
  from l2l_tf.meta import unroll  # pylint: disable=g-import-not-at-top
  problem = make_problem(task["problem"], settings)
  num = _problem_sizes(task["problem"], settings, "meta")
  truncation = settings["truncation"]
  start = tf.constant(0, tf.int32)
  meta_fns, checks, skipped = {}, {}, {}
  reference = None
  for name in [v for v in META_VARIANTS if v in settings["variants"]]:
    base_name, jit = (name[:-4], True) if name.endswith("_xla") else (name, False)
    try:
      optimizer = make_optimizer(task["problem"], settings, base_name)
      trainer = make_trainer(problem, optimizer, truncation, Path(workdir) / name)
      instance, params, state = meta_step_inputs(problem, optimizer, num, settings["seed"])
      step = tf.function(trainer._meta_step_impl, jit_compile=jit)
      loss = float(step(params, state, instance, start)[0])
    except Exception as e:  # pylint: disable=broad-except
      skipped[name] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
      continue
    weights = [v.numpy() for v in optimizer.trainable_variables]
    if reference is None:
      reference = (loss, weights)
    checks[name] = {
        "meta_loss": loss, "max_abs_diff_meta_loss": abs(loss - reference[0]),
        "max_abs_diff_weights_after_step": max(
            float(abs(a - b).max()) for a, b in zip(weights, reference[1]))}
    meta_fns[name] = blocking(step, params, state, instance, start)
  # The first call above traced; time_interleaved's first call is a warm call.
  meta = time_interleaved(meta_fns, settings["warmup"], settings["repeats"])
  for name, record in meta.items():
    record.update(checks[name])
    record["speedup_vs_library"] = meta["library"]["cpu_s_median"] / record["cpu_s_median"]

  eval_num = _problem_sizes(task["problem"], settings, "eval")
  eval_fns, eval_checks = {}, {}
  ref_losses = None
  for name in [v for v in EVAL_VARIANTS if v in settings["variants"]]:
    base_name, jit = (name[:-4], True) if name.endswith("_xla") else (name, False)
    try:
      optimizer = make_optimizer(task["problem"], settings, base_name)
      instance, params, _ = meta_step_inputs(problem, optimizer, eval_num, settings["seed"])
      # "library_xla": the coordinate-major step under XLA (the library itself now switches to
      # the feature-major view under XLA, which is the "feature_major_xla" variant).
      fn = unroll.make_trajectory_fn(problem, optimizer, settings["eval_steps"], jit_compile=jit,
                                     feature_major=False)
      losses = fn(instance, params).numpy()
    except Exception as e:  # pylint: disable=broad-except
      skipped[f"eval_{name}"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
      continue
    if ref_losses is None:
      ref_losses = losses
    eval_checks[name] = {"max_rel_diff_losses": float(
        (abs(losses - ref_losses) / (abs(ref_losses) + 1e-12)).max())}
    eval_fns[name] = blocking(fn, instance, params)
  evaluation = time_interleaved(eval_fns, settings["warmup"], settings["repeats"])
  for name, record in evaluation.items():
    record.update(eval_checks[name])
    record["speedup_vs_library"] = (evaluation["library"]["cpu_s_median"]
                                    / record["cpu_s_median"])
  return {"meta_step": meta, "eval": evaluation, "skipped": skipped,
          "problem": problem.get_config(), "truncation": truncation, "meta_batch": num,
          "eval_problems": eval_num, "eval_steps": settings["eval_steps"]}


# ---- profile ------------------------------------------------------------------------------------

_MATMUL_OPS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "_MklMatMul",
               "_MklNativeFusedMatMul", "_FusedMatMul", "_MklNativeBatchMatMulV2",
               "_MklBatchMatMulV2", "_MklFusedBatchMatMulV2", "_MklNativeFusedBatchMatMulV2")
_TRANSCENDENTAL_OPS = ("Sigmoid", "Tanh", "Log", "Exp", "Softmax", "LogSoftmax",
                       "SparseSoftmaxCrossEntropyWithLogits", "Sqrt", "Rsqrt", "Pow")
_MOVEMENT_OPS = ("Split", "SplitV", "ConcatV2", "Concat", "Slice", "StridedSlice", "Pack",
                 "Unpack", "Transpose", "GatherV2", "Pad", "Reshape", "Identity", "Tile",
                 "StridedSliceGrad", "Fill", "ZerosLike", "OnesLike", "BroadcastTo")


def _op_category(op_type: str) -> str:
  if op_type in _MATMUL_OPS:
    return "matmul"
  if op_type in _TRANSCENDENTAL_OPS:
    return "transcendental"
  if op_type in _MOVEMENT_OPS:
    return "copy/concat/split/slice"
  if op_type.startswith("TensorList") or op_type in ("While", "StatelessWhile", "If",
                                                     "StatelessIf", "PartitionedCall",
                                                     "StatefulPartitionedCall", "Enter", "Exit",
                                                     "Merge", "Switch", "NextIteration"):
    return "control flow/TensorList"
  if op_type.endswith("Grad") or op_type in ("Sum", "Mean", "Max", "Prod", "All"):
    return "gradient/reduction elementwise"
  return "other elementwise"


def parse_xspace(path, num_steps: int, top: int = 15) -> dict:
  """Per-op self time of a `tf.profiler.experimental` trace (its .xplane.pb), per traced step.

  The host plane records every executed op as an event named "node:OpType" and the executor's
  own work around them; self time is an event's duration minus that of events nested in it on the
  same thread. Non-op self time is reported as framework overhead.

  Args:
    path: the .xplane.pb file.
    num_steps: steps traced (results are per step).
    top: rows of the top-op tables.

  Returns:
    Per-step totals, categories, top op types and top nodes.
  """
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  space = xplane_pb2.XSpace()
  space.ParseFromString(Path(path).read_bytes())
  by_type = collections.defaultdict(lambda: [0.0, 0])
  by_node = collections.defaultdict(lambda: [0.0, 0])
  framework = collections.defaultdict(float)
  step_total = 0.0
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      events = sorted(line.events, key=lambda e: (e.offset_ps, -e.duration_ps))
      stack, selfs = [], []
      for event in events:
        end = event.offset_ps + event.duration_ps
        while stack and stack[-1][0] <= event.offset_ps:
          stack.pop()
        if stack:
          selfs[stack[-1][1]][1] -= event.duration_ps
        selfs.append([names.get(event.metadata_id, "?"), event.duration_ps])
        stack.append((end, len(selfs) - 1))
      for name, self_ps in selfs:
        seconds = self_ps / 1e12
        node, sep, op_type = name.rpartition(":")
        if sep and node and "::" not in name and op_type and " " not in op_type:
          by_type[op_type][0] += seconds
          by_type[op_type][1] += 1
          short = node.replace("gradient_tape/", "grad/").split("/body/")[-1]
          short = "/".join(part for part in short.split("/") if not part.startswith("_"))
          by_node[f"{short}:{op_type}"][0] += seconds
          by_node[f"{short}:{op_type}"][1] += 1
        else:
          framework[name] += seconds
      for event in line.events:
        if names.get(event.metadata_id, "").startswith("KernelAndDeviceFunc::Run"):
          step_total += event.duration_ps / 1e12
  op_total = sum(v[0] for v in by_type.values())
  categories = collections.defaultdict(float)
  for op_type, (seconds, _) in by_type.items():
    categories[_op_category(op_type)] += seconds
  per = 1.0 / num_steps
  step = step_total * per

  def rows(table):
    ordered = sorted(table.items(), key=lambda kv: -kv[1][0])[:top]
    return [{"name": k, "s_per_step": v[0] * per, "pct_of_step": 100 * v[0] * per / step
             if step else None, "calls_per_step": v[1] * per} for k, v in ordered]

  return {"step_s": step, "op_self_s_per_step": op_total * per,
          "ops_per_step": sum(v[1] for v in by_type.values()) * per,
          "framework_overhead_s_per_step": max(step - op_total * per, 0.0),
          "categories_s_per_step": {k: v * per for k, v in sorted(categories.items(),
                                                                  key=lambda kv: -kv[1])},
          "top_op_types": rows(by_type), "top_nodes": rows(by_node)}


def run_profile(task, settings, workdir) -> dict:
  """Traces `profile_steps` library meta-steps (or, with `task["target"] == "eval"`, 100-step
  evaluations without XLA) with tf.profiler and tabulates op self times."""
  tf = _tf()
  from l2l_tf.meta import unroll  # pylint: disable=g-import-not-at-top
  problem = make_problem(task["problem"], settings)
  variant = task.get("variant", "library")
  target = task.get("target", "meta_step")
  optimizer = make_optimizer(task["problem"], settings, variant)
  if target == "eval":
    num = _problem_sizes(task["problem"], settings, "eval")
    instance, params, _ = meta_step_inputs(problem, optimizer, num, settings["seed"])
    call = blocking(unroll.make_trajectory_fn(problem, optimizer, settings["eval_steps"]),
                    instance, params)
  else:
    num = _problem_sizes(task["problem"], settings, "meta")
    trainer = make_trainer(problem, optimizer, settings["truncation"], Path(workdir) / "trainer")
    instance, params, state = meta_step_inputs(problem, optimizer, num, settings["seed"])
    call = blocking(trainer._meta_step, params, state, instance, tf.constant(0, tf.int32))
  for _ in range(settings["warmup"]):
    call()
  name = task["problem"] if variant == "library" else f"{task['problem']}_{variant}"
  name = f"{name}_eval" if target == "eval" else name
  if settings["profile_dir"]:
    logdir = Path(settings["profile_dir"]) / name
  else:
    logdir = Path(workdir) / "profile"
  steps = settings["profile_steps"]
  options = tf.profiler.experimental.ProfilerOptions(host_tracer_level=2, python_tracer_level=0)
  tf.profiler.experimental.start(str(logdir), options=options)
  wall = time.perf_counter()
  for _ in range(steps):
    call()
  wall = (time.perf_counter() - wall) / steps
  tf.profiler.experimental.stop()
  files = sorted(glob.glob(str(logdir / "**" / "*.xplane.pb"), recursive=True),
                 key=os.path.getmtime)
  if not files:
    raise RuntimeError(f"tf.profiler wrote no .xplane.pb under {logdir}.")
  result = parse_xspace(files[-1], steps)
  result.update({"profiled_wall_s_per_step": wall, "trace": files[-1] if settings["profile_dir"]
                 else None, "steps": steps, "problem": problem.get_config(), "variant": variant,
                 "name": name, "target": target})
  if task["problem"] == "mnist" and variant == "library" and target == "meta_step":
    result["flop_check"] = flop_cross_check(problem, optimizer, num, instance, params)
  return result


def graph_matmul_flops(graph) -> dict:
  """2 M N K of every live MatMul / BatchMatMulV2 in a graph, from static shapes and transposes.

  Gradient functions build both operands' gradients; one nobody consumes (e.g. d loss / d images)
  is pruned when the function runs, so matmuls without consumers are counted apart as `dead`.

  Returns:
    `{"flops": live total, "dead_flops": ..., "unknown_shapes": ops without static shapes}`.
  """
  total, dead, unknown = 0.0, 0.0, 0
  outputs = {id(t) for t in graph.outputs}
  for op in graph.get_operations():
    if op.type not in ("MatMul", "BatchMatMulV2", "BatchMatMulV3"):
      continue
    a, b = op.inputs[0].shape, op.inputs[1].shape
    out = op.outputs[0].shape
    if not (a.is_fully_defined() and b.is_fully_defined() and out.is_fully_defined()):
      unknown += 1
      continue
    if op.type == "MatMul":
      k = a[0] if op.get_attr("transpose_a") else a[1]
    else:
      k = a[-2] if op.get_attr("adj_x") else a[-1]
    flops = 2.0 * k * out.num_elements()
    if op.outputs[0].consumers() or id(op.outputs[0]) in outputs:
      total += flops
    else:
      dead += flops
  return {"flops": total, "dead_flops": dead, "unknown_shapes": unknown}


def flop_cross_check(problem, optimizer, num, instance, params) -> dict:
  """Checks the analytic FLOP count against the graph of a Python-unrolled truncation.

  The library's while loop hides its body from static counters, so the meta-loss of K = 1, 2, 3
  steps is unrolled in Python (same weights w_t as `MetaTrainer._truncation_loss`) and the
  gradient graph's matmuls are counted from their shapes (`graph_matmul_flops`) and by
  `tf.compat.v1.profiler` (MatMul ops only). A middle step (K=3 minus K=2) must match the
  analytic per-step count; the first step differs because theta_0 and the zero initial state need
  no gradient.
  """
  tf = _tf()
  from l2l_tf.meta import unroll  # pylint: disable=g-import-not-at-top
  counts, v1_counts = {}, {}
  for k in (2, 3):

    @tf.function
    def meta_grad(params, state, instance, k=k):
      with tf.GradientTape() as tape:
        loss = tf.zeros([])
        for i in range(k):
          losses, params, state = unroll.optimizee_step(problem, optimizer, params, state,
                                                        instance, i)
          if i > 0:
            loss += tf.reduce_mean(losses)
        loss += tf.reduce_mean(problem.loss(params, instance, k))
      return tape.gradient(loss, optimizer.trainable_variables)

    graph = meta_grad.get_concrete_function(params, optimizer.initial_state(params),
                                            instance).graph
    counts[k] = graph_matmul_flops(graph)
    try:
      opts = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
      opts["output"] = "none"
      v1_counts[k] = float(tf.compat.v1.profiler.profile(graph, options=opts).total_float_ops)
    except Exception as e:  # pylint: disable=broad-except
      v1_counts[k] = f"{type(e).__name__}: {e}"
  per_step_graph = counts[3]["flops"] - counts[2]["flops"]
  analytic = meta_step_flops(problem, optimizer, num, param_sizes(params), 1)["per_step"]
  per_step_analytic = 3 * analytic["lstm_forward"] + analytic["problem_forward"] + \
      2 * analytic["problem_gradient"]
  v1_per_step = (v1_counts[3] - v1_counts[2]
                 if all(isinstance(v, float) for v in v1_counts.values()) else None)
  return {"per_step_analytic": per_step_analytic, "per_step_graph": per_step_graph,
          "graph_to_analytic": per_step_graph / per_step_analytic,
          "per_step_tf_v1_profiler": v1_per_step, "graph_counts": counts,
          "tf_v1_profiler_totals": v1_counts,
          "note": "tf.compat.v1.profiler takes k of an adjoint BatchMatMulV2 from the wrong axis "
                  "(the MLP's dW = x^T dz is counted as 2*784*784*20 instead of 2*784*128*20), "
                  "so it over-counts the optimizee's gradients."}


# ---- scaling ------------------------------------------------------------------------------------


def run_scaling_point(task, settings, workdir) -> dict:
  """One meta-step of the diagonal problem with n coordinates and truncation K (+ checkpointing).

  Task keys: coordinates, truncation, and optionally checkpoint = {"impl", "chunk"} and
  grappler = {option: bool} (`tf.config.optimizer.set_experimental_options`, process-wide).
  """
  tf = _tf()
  if task.get("grappler"):
    tf.config.optimizer.set_experimental_options(task["grappler"])
  problem = make_problem("diagonal", settings, task["coordinates"])
  optimizer = make_optimizer("quadratic", settings)
  truncation = task["truncation"]
  trainer = make_trainer(problem, optimizer, truncation, workdir)
  step = trainer._meta_step
  checkpoint = task.get("checkpoint")
  if checkpoint:
    trainer._truncation_loss = checkpointed_truncation_loss(
        trainer, checkpoint["chunk"], checkpoint["impl"], checkpoint.get("library_step", False))
    step = tf.function(trainer._meta_step_impl)
  instance, params, state = meta_step_inputs(problem, optimizer, 1, settings["seed"])
  rss_before = current_rss_mb()
  start = tf.constant(0, tf.int32)
  if checkpoint and checkpoint.get("library_step"):
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
  timing = time_calls(blocking(step, params, state, instance, start), 1,
                      settings["scaling_repeats"])
  timing["first_call_s"] = first_call
  peak = peak_rss_mb()
  record = dict(timing)
  record.update({"coordinates": task["coordinates"], "truncation": truncation,
                 "checkpoint": checkpoint, "grappler": task.get("grappler"),
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
  k = settings["scaling_coordinates_truncation"]
  for n in settings["scaling_coordinates"]:
    estimate = n * k * ESTIMATED_BYTES_PER_COORDINATE_STEP
    tasks.append({"kind": "scaling_point", "sweep": "coordinates", "coordinates": n,
                  "truncation": k, "skip": estimate > budget, "estimated_gb": estimate / 2 ** 30})
  n = settings["scaling_truncation_coordinates"]
  for k in settings["scaling_truncations"]:
    estimate = n * k * ESTIMATED_BYTES_PER_COORDINATE_STEP
    tasks.append({"kind": "scaling_point", "sweep": "truncation", "coordinates": n,
                  "truncation": k, "skip": estimate > budget, "estimated_gb": estimate / 2 ** 30})
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


# ---- the child process --------------------------------------------------------------------------

RUNNERS = {"meta_step": run_meta_step, "eval": run_evaluation, "variants": run_variants,
           "profile": run_profile, "scaling_point": run_scaling_point}


def child_main(task_path: str):
  """Runs the tasks of a task file with its thread count and writes their results next to it."""
  spec = json.loads(Path(task_path).read_text())
  settings = spec["settings"]
  tf = _tf()
  tf.get_logger().setLevel("ERROR")
  tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
  tf.config.threading.set_inter_op_parallelism_threads(spec["threads"])
  if settings["deterministic"]:
    tf.config.experimental.enable_op_determinism()
  results = []
  for task in spec["tasks"]:
    workdir = tempfile.mkdtemp(prefix="l2l_bench_")
    try:
      record = RUNNERS[task["kind"]](task, settings, workdir)
      record["threads"] = spec["threads"]
      record["isolated"] = len(spec["tasks"]) == 1
      record["deterministic"] = settings["deterministic"]
      results.append({"task": task, "result": record})
    except Exception as e:  # pylint: disable=broad-except
      results.append({"task": task, "error": f"{type(e).__name__}: {e}",
                      "traceback": traceback.format_exc()[-4000:]})
    finally:
      shutil.rmtree(workdir, ignore_errors=True)
  output = {"results": results, "tensorflow": tf.__version__,
            "process_peak_rss_mb": peak_rss_mb(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")}
  Path(spec["result_path"]).write_text(json.dumps(output))


# ------------------------------------------------------------------------------------------------
# The parent: plan, run children, assemble the JSON and tables.
# ------------------------------------------------------------------------------------------------


def plan(settings) -> list:
  """The child processes to run: [(threads, [task, ...]), ...] in order."""
  tasks = []
  suites = settings["suites"]
  if "variants" in suites:  # The longest child first, for --jobs.
    for problem in settings["problems"]:
      tasks.append((1, {"kind": "variants", "problem": problem}))
  if "main" in suites:
    for threads in settings["thread_counts"]:
      for problem in settings["problems"]:
        tasks.append((threads, {"kind": "meta_step", "problem": problem}))
        tasks.append((threads, {"kind": "eval", "problem": problem}))
  if "profile" in suites:
    for problem in settings["problems"]:
      tasks.append((1, {"kind": "profile", "problem": problem}))
    if "mnist" in settings["problems"] and "feature_major" in settings["variants"]:
      tasks.append((1, {"kind": "profile", "problem": "mnist", "variant": "feature_major"}))
    if "mnist" in settings["problems"]:
      tasks.append((1, {"kind": "profile", "problem": "mnist", "target": "eval"}))
  if "scaling" in suites:
    for task in scaling_tasks(settings):
      tasks.append((1, task))
  if settings["isolate"]:
    return [(threads, [task]) for threads, task in tasks]
  # Not isolated: one child per thread count and kind of task (so that --jobs can spread them),
  # and one for tasks that change process-wide Grappler options.
  grouped = collections.OrderedDict()
  for threads, task in tasks:
    kind = "main" if task["kind"] in ("meta_step", "eval") else task["kind"]
    grouped.setdefault((threads, kind, bool(task.get("grappler"))), []).append(task)
  return [(key[0], group) for key, group in grouped.items()]


def run_child(threads: int, tasks: list, settings: dict, log) -> dict:
  """Runs one child process; returns its output, or an error record for every task."""
  runnable = [t for t in tasks if not t.get("skip")]
  skipped = [{"task": t, "result": {"skipped": f"estimated {t['estimated_gb']:.1f} GB > "
                                                f"--scaling_max_memory_gb"}}
             for t in tasks if t.get("skip")]
  if not runnable:
    return {"results": skipped}
  with tempfile.TemporaryDirectory(prefix="l2l_bench_child_") as tmp:
    task_path = Path(tmp) / "task.json"
    result_path = Path(tmp) / "result.json"
    task_path.write_text(json.dumps({"threads": threads, "tasks": runnable, "settings": settings,
                                     "result_path": str(result_path)}))
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3",
               PYTHONPATH=os.pathsep.join([root] + [p for p in
                                                    os.environ.get("PYTHONPATH", "").split(
                                                        os.pathsep) if p]))
    names = ", ".join(_task_name(t) for t in runnable)
    log(f"[bench] {threads} thread(s): {names}")
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "l2l_tf.bench", f"--child_task={task_path}"],
                          env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    elapsed = time.perf_counter() - start
    log(f"[bench]   done in {elapsed:.0f} s ({threads} thread(s): {names})")
    if proc.returncode != 0 or not result_path.is_file():
      message = (proc.stderr or proc.stdout or "").strip()[-3000:]
      return {"results": skipped + [{"task": t, "error": f"child exited with status "
                                                         f"{proc.returncode}: {message}"}
                                    for t in runnable]}
    output = json.loads(result_path.read_text())
  output["results"] = skipped + output["results"]
  output["child_wall_s"] = elapsed
  output["child_cpu_s"] = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
  output["child_maxrss_mb"] = after.ru_maxrss / 1024.0
  return output


def _task_name(task) -> str:
  if task["kind"] == "scaling_point":
    extra = f" checkpoint={task['checkpoint']}" if task.get("checkpoint") else ""
    return f"scaling n={task['coordinates']} K={task['truncation']}{extra}"
  return f"{task.get('problem', '')} {task['kind']}"


def assemble(settings, outputs, machine) -> dict:
  """The benchmark JSON from the children's outputs."""
  result = {"schema": "l2l_tf.bench/1", "command": cli.command_line(),
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "settings": settings, "machine": machine, "errors": []}
  scaling = []
  for output in outputs:
    if output.get("tensorflow"):
      machine["tensorflow"] = output["tensorflow"]
      machine["onednn"] = output.get("onednn")
    for item in output["results"]:
      task = item["task"]
      if "error" in item:
        result["errors"].append({"task": task, "error": item["error"],
                                 "traceback": item.get("traceback")})
        continue
      record = item["result"]
      record["child_process_peak_rss_mb"] = output.get("process_peak_rss_mb")
      kind = task["kind"]
      if kind == "meta_step":
        result.setdefault(f"{task['problem']}_meta_step", {})[str(record["threads"])] = record
      elif kind == "eval":
        result.setdefault(f"{task['problem']}_eval_100", {})[str(record["threads"])] = record
      elif kind == "variants":
        result.setdefault("variants", {})[task["problem"]] = record
      elif kind == "profile":
        result.setdefault("profile", {})[record["name"]] = record
      elif kind == "scaling_point":
        for key in ("sweep", "coordinates", "truncation", "checkpoint", "grappler"):
          record.setdefault(key, task.get(key))
        scaling.append(record)
  if scaling:
    result["scaling"] = summarize_scaling(scaling)
  return result


# ---- Markdown tables ----------------------------------------------------------------------------


def _fmt(value, digits=3):
  if value is None:
    return "-"
  if isinstance(value, float):
    if value == 0:
      return "0"
    if abs(value) >= 100:
      return f"{value:.0f}"
    return f"{value:.{digits}g}"
  return str(value)


def _problem_order(name):
  base = name.split("_")[0]
  return (PROBLEMS.index(base) if base in PROBLEMS else len(PROBLEMS), name)


def markdown_tables(result: dict) -> str:
  """The README / docs tables of a benchmark JSON."""
  lines = []
  rows = []
  for problem in PROBLEMS:
    for key, label in ((f"{problem}_meta_step", f"{problem} meta-step"),
                       (f"{problem}_eval_100", f"{problem} eval, LSTM")):
      for threads, record in sorted(result.get(key, {}).items()):
        rows.append((label, threads, record))
        if "adam" in record:
          for sub, sublabel in (("learned_xla", f"{problem} eval, LSTM, XLA"),
                                ("adam", f"{problem} eval, Adam"),
                                ("adam_xla", f"{problem} eval, Adam, XLA")):
            rows.append((sublabel, threads, dict(record[sub], peak_rss_mb=None)))
  if rows:
    lines.append("| benchmark | threads | CPU s (median) | wall s (median) | matmul floor s | "
                 "CPU / floor | peak RSS MB |")
    lines.append("|---|---|---|---|---|---|---|")
    for label, threads, r in rows:
      lines.append(f"| {label} | {threads} | {_fmt(r.get('cpu_s_median'))} | "
                   f"{_fmt(r.get('wall_s_median'))} | {_fmt(r.get('floor_s'))} | "
                   f"{_fmt(r.get('ratio_to_floor'))} | {_fmt(r.get('peak_rss_mb'))} |")
    lines.append("")
    ratios = []
    for problem in PROBLEMS:
      for threads, record in sorted(result.get(f"{problem}_eval_100", {}).items()):
        ratios.append(f"{problem}, {threads} thread(s): LSTM / Adam = "
                      f"{_fmt(record['learned_to_adam_cpu'])} "
                      f"({_fmt(record['learned_to_adam_cpu_xla'])} with XLA); "
                      f"XLA speed-up LSTM {_fmt(record['xla_speedup_learned'])}x, "
                      f"Adam {_fmt(record['xla_speedup_adam'])}x")
    lines += [f"- {r}" for r in ratios]
    for problem in PROBLEMS:
      record = result.get(f"{problem}_meta_step", {}).get("1")
      if record:
        lines.append(f"- {problem} meta-step: {record['coordinates']} coordinates, "
                     f"K = {record['truncation']}, "
                     f"{_fmt(record['flops'] / 1e9 if record['flops'] else None)} "
                     "GFLOP of matmuls, "
                     f"LSTM-shape matmul rate {_fmt(record['matmul_rate_gflops'])} GFLOP/s "
                     "(1 thread, CPU time)")
    lines.append("")
  for problem, variants in sorted(result.get("variants", {}).items(),
                                 key=lambda kv: _problem_order(kv[0])):
    lines.append(f"Variants, {problem} (1 thread, interleaved, CPU s median; speed-up vs "
                 "library):")
    lines.append("")
    lines.append("| variant | meta-step s | speed-up | eval s | speed-up |")
    lines.append("|---|---|---|---|---|")
    names = [v for v in META_VARIANTS if v in variants["meta_step"] or v in variants["eval"]]
    for name in names:
      m = variants["meta_step"].get(name, {})
      e = variants["eval"].get(name, {})
      lines.append(f"| {name} | {_fmt(m.get('cpu_s_median'))} | "
                   f"{_fmt(m.get('speedup_vs_library'))} | {_fmt(e.get('cpu_s_median'))} | "
                   f"{_fmt(e.get('speedup_vs_library'))} |")
    for name, why in variants.get("skipped", {}).items():
      lines.append(f"| {name} | skipped: {why[:80]} | | | |")
    lines.append("")
  for problem, profile in sorted(result.get("profile", {}).items(),
                                key=lambda kv: _problem_order(kv[0])):
    variant = "" if profile.get("variant", "library") == "library" else f", {profile['variant']}"
    what = ("100-step evaluation, no XLA" if profile.get("target") == "eval" else "meta-step")
    lines.append(f"Profile, {profile.get('problem', {}).get('name', problem)} {what}"
                 f"{variant} (1 thread): {_fmt(profile['step_s'])} s per step, "
                 f"{_fmt(profile['ops_per_step'])} op executions, framework overhead "
                 f"{_fmt(profile['framework_overhead_s_per_step'])} s")
    lines.append("")
    lines.append("| op type | s per step | % of step | calls per step |")
    lines.append("|---|---|---|---|")
    for row in profile["top_op_types"][:10]:
      lines.append(f"| {row['name']} | {_fmt(row['s_per_step'])} | {_fmt(row['pct_of_step'])} | "
                   f"{_fmt(row['calls_per_step'])} |")
    lines.append("")
    lines.append("| node (forward, or grad/ for the meta-gradient) | s per step | % of step |")
    lines.append("|---|---|---|")
    for row in profile["top_nodes"][:10]:
      lines.append(f"| {row['name']} | {_fmt(row['s_per_step'])} | {_fmt(row['pct_of_step'])} |")
    lines.append("")
    lines.append("| category | s per step |")
    lines.append("|---|---|")
    for name, seconds in sorted(profile["categories_s_per_step"].items(), key=lambda kv: -kv[1]):
      lines.append(f"| {name} | {_fmt(seconds)} |")
    lines.append(f"| framework overhead (not in ops) | "
                 f"{_fmt(profile['framework_overhead_s_per_step'])} |")
    lines.append("")
  scaling = result.get("scaling")
  if scaling:
    lines.append("| sweep | n | K | checkpoint | CPU s | peak RSS MB | activation MB |")
    lines.append("|---|---|---|---|---|---|---|")
    sweeps = ["coordinates", "truncation", "checkpoint", "checkpoint_probe"]
    for sweep, points in sorted(scaling["points"].items(),
                                key=lambda kv: sweeps.index(kv[0]) if kv[0] in sweeps else 9):
      for r in points:
        ckpt = r.get("checkpoint") or (r.get("task") or {}).get("checkpoint")
        ckpt_text = f"{ckpt['impl']} / {ckpt['chunk']}" if ckpt else "-"
        if r.get("grappler"):
          ckpt_text += " (arithmetic opt. off)"
        if "cpu_s_median" not in r:
          status = r.get("skipped") or r.get("error") or ("works" if r.get("works") else "")
          task = r.get("task") or {}
          lines.append(f"| {sweep} | {r.get('coordinates', task.get('coordinates'))} | "
                       f"{r.get('truncation', task.get('truncation'))} | {ckpt_text} | "
                       f"{status[:90]} | | |")
          continue
        lines.append(f"| {sweep} | {r['coordinates']} | {r['truncation']} | {ckpt_text} | "
                     f"{_fmt(r['cpu_s_median'])} | {_fmt(r['peak_rss_mb'])} | "
                     f"{_fmt(r['activation_mb'])} |")
    lines.append("")
    for key in ("coordinates", "truncation"):
      lines.append(f"- log-log slope vs {key}: time {_fmt(scaling.get(f'{key}_slope_cpu'))} "
                   f"(upper half {_fmt(scaling.get(f'{key}_slope_cpu_upper_half'))}), activation "
                   f"memory {_fmt(scaling.get(f'{key}_slope_memory'))} (upper half "
                   f"{_fmt(scaling.get(f'{key}_slope_memory_upper_half'))})")
    lines.append("")
  if result.get("errors"):
    lines.append(f"{len(result['errors'])} measurement(s) failed; see `errors` in the JSON.")
  return "\n".join(lines)


def bench_main(settings, output_path: Path, log=None) -> dict:
  """Runs the planned child processes and writes the JSON; returns it."""
  log = log or (lambda message: print(message, file=sys.stderr, flush=True))
  machine = machine_info()
  before = _cpu_jiffies()
  own_before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  children = plan(settings)
  if settings["jobs"] > 1:
    with concurrent.futures.ThreadPoolExecutor(settings["jobs"]) as pool:
      outputs = list(pool.map(lambda child: run_child(child[0], child[1], settings, log),
                              children))
  else:
    outputs = [run_child(threads, tasks, settings, log) for threads, tasks in children]
  elapsed = time.perf_counter() - start
  after = _cpu_jiffies()
  own_after = resource.getrusage(resource.RUSAGE_CHILDREN)
  machine["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
  machine["bench_wall_s"] = elapsed
  if before and after:
    ticks = os.sysconf("SC_CLK_TCK")
    busy = (after[0] - before[0]) / ticks
    own = ((own_after.ru_utime + own_after.ru_stime) - (own_before.ru_utime + own_before.ru_stime))
    machine["other_processes_cpu_cores"] = max(busy - own, 0.0) / elapsed
    machine["bench_children_cpu_cores"] = own / elapsed
  result = assemble(settings, outputs, machine)
  output_path.parent.mkdir(parents=True, exist_ok=True)
  tmp = output_path.with_suffix(output_path.suffix + ".tmp")
  tmp.write_text(json.dumps(result, indent=1, sort_keys=True, default=float))
  tmp.replace(output_path)
  return result


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  if FLAGS.child_task:
    child_main(FLAGS.child_task)
    return
  if FLAGS.table_from:
    try:
      result = json.loads(Path(FLAGS.table_from).read_text())
    except json.JSONDecodeError as e:
      raise cli.UsageError(f"--table_from={FLAGS.table_from} is not JSON: {e}.") from e
    print(markdown_tables(result))
    return
  if not FLAGS.output:
    raise cli.UsageError("--output is required (the JSON file to write).")
  settings = settings_from_flags()
  output = Path(FLAGS.output)
  result = bench_main(settings, output)
  print(markdown_tables(json.loads(output.read_text())))  # As --table_from prints it.
  print(f"wrote {output}")
  if result["errors"]:
    raise cli.UsageError(f"{len(result['errors'])} measurement(s) failed (see 'errors' in "
                         f"{output}); first: {result['errors'][0]['error'][:500]}")


if __name__ == "__main__":
  app.run(main)
