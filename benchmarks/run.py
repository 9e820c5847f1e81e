"""The benchmark's absl entry point, `python -m benchmarks.run` (usage: benchmarks/README.md)."""

import collections
import concurrent.futures
import datetime
import json
import os
import resource
import shlex
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags

from benchmarks import PROBLEMS, SUITES, VARIANTS
from benchmarks import harness, scale_out, scaling, tables
from l2l_tf import cli
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = cli.FLAGS

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
                  f"{', '.join(VARIANTS)}; `library` is always measured, as the reference).")
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
flags.DEFINE_list("scale_out_workers", ["1", "2"], "Worker processes of the scale_out suite "
                  "(meta-training on MultiWorkerMirroredStrategy over 127.0.0.1; 1: one process, "
                  "no strategy).")
flags.DEFINE_integer("jobs", 1, "Child processes run at once. More than 1 makes them compete for "
                     "the CPU and distorts every timing: only for tests.")
flags.DEFINE_string("table_from", None, "Print the Markdown tables of an existing JSON and exit.")
flags.DEFINE_string("child_task", None, "Internal: run the measurements of this task file.")

# Flags of l2l_tf.cli that the benchmark reads; setting any other one is an error, not a no-op.
CLI_FLAGS_USED = ("optimizer_path", "truncation", "data_dir", "threads", "deterministic", "seed")

TINY = {"repeats": 2, "warmup": 1, "eval_steps": 3, "truncation": 2, "mnist_batch_size": 8,
        "quadratic_meta_batch": 2, "quadratic_eval_problems": 4, "quadratic_dims": 3,
        "mnist_meta_batch": 1, "mnist_eval_problems": 1, "profile_steps": 1,
        "scaling_coordinates": [100, 1000], "scaling_coordinates_truncation": 2,
        "scaling_truncations": [2, 4], "scaling_truncation_coordinates": 100,
        "checkpoint_truncation": 4, "checkpoint_chunks": [2], "scaling_repeats": 1}
POSITIVE = ("repeats", "eval_steps", "truncation", "mnist_meta_batch", "mnist_eval_problems",
            "mnist_batch_size", "quadratic_meta_batch", "quadratic_eval_problems",
            "quadratic_dims", "profile_steps", "scaling_coordinates_truncation",
            "scaling_truncation_coordinates", "checkpoint_truncation", "scaling_repeats", "jobs")
# Settings that are flags of the same name (the others are derived from flags below).
FLAG_SETTINGS = POSITIVE + ("warmup", "scaling_max_memory_gb", "tiny", "seed", "deterministic",
                            "optimizer_path", "data_dir")


def _int_list(name):
  text = ",".join(getattr(FLAGS, name))
  try:
    values = [int(v) for v in getattr(FLAGS, name)]
  except ValueError as e:
    raise cli.UsageError(f"--{name} must be comma-separated integers, got {text}.") from e
  if not values or any(v <= 0 for v in values):
    raise cli.UsageError(f"--{name} must be positive integers, got {text}.")
  return values


def _checked_names(given, known, flag):
  unknown = sorted(set(given) - set(known))
  if unknown:
    raise cli.UsageError(f"Unknown --{flag} {unknown}; choose from {', '.join(known)}.")
  return given


def settings_from_flags() -> dict:
  """The benchmark's settings: flags, with --tiny's sizes where a flag was not given.

  Returns:
    A JSON-serialisable dict passed to every child process.

  Raises:
    cli.UsageError: bad or unused flags.
  """
  for flag in FLAGS.get_flags_for_module("l2l_tf.cli"):
    if flag.present and flag.name not in CLI_FLAGS_USED:
      raise cli.UsageError(f"--{flag.name} does not apply to benchmarks.run (it reads only "
                           f"{', '.join('--' + f for f in CLI_FLAGS_USED)} of the shared flags).")
  suites = _checked_names(list(FLAGS.suites) + (["scaling"] if FLAGS.scaling else []), SUITES,
                          "suites")
  bench_problems = list(FLAGS.bench_problems)
  if not bench_problems or set(bench_problems) - set(PROBLEMS):
    raise cli.UsageError(f"--bench_problems must be among {', '.join(PROBLEMS)}, got "
                         f"{','.join(bench_problems)}.")
  variants = _checked_names(VARIANTS if FLAGS.variants is None else FLAGS.variants, VARIANTS,
                            "variants")
  thread_counts = _int_list("thread_counts")
  if FLAGS["threads"].present:
    if FLAGS.threads <= 0:
      raise cli.UsageError(f"--threads must be positive, got {FLAGS.threads}.")
    thread_counts = [FLAGS.threads]
  settings = {name: FLAGS[name].value for name in FLAG_SETTINGS}
  settings.update({
      "suites": suites, "problems": bench_problems, "thread_counts": thread_counts,
      "variants": ["library"] + [v for v in VARIANTS if v in variants and v != "library"],
      "scaling_coordinates": _int_list("scaling_coordinates"),
      "scaling_truncations": _int_list("scaling_truncations"),
      "checkpoint_chunks": _int_list("checkpoint_chunks"),
      "scale_out_workers": _int_list("scale_out_workers"),
      "profile_dir": str(Path(FLAGS.profile_dir).resolve()) if FLAGS.profile_dir else None})
  if FLAGS.tiny:
    settings.update({name: value for name, value in TINY.items() if not FLAGS[name].present})
  synthetic, isolate = FLAGS.synthetic_data, FLAGS.isolate
  settings["synthetic_data"] = FLAGS.tiny if synthetic is None else synthetic
  settings["isolate"] = (not FLAGS.tiny) if isolate is None else isolate
  for name in POSITIVE:
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


def plan(settings) -> list:
  """The child processes to run: [(threads, [task, ...]), ...] in order."""
  tasks = []
  suites, problems = settings["suites"], settings["problems"]
  if "variants" in suites:  # The longest child first, for --jobs.
    tasks += [(1, {"kind": "variants", "problem": problem}) for problem in problems]
  if "main" in suites:
    for threads in settings["thread_counts"]:
      for problem in problems:
        tasks.append((threads, {"kind": "meta_step", "problem": problem}))
        tasks.append((threads, {"kind": "eval", "problem": problem}))
  if "profile" in suites:
    tasks += [(1, {"kind": "profile", "problem": problem}) for problem in problems]
    if "mnist" in problems and "feature_major" in settings["variants"]:
      tasks.append((1, {"kind": "profile", "problem": "mnist", "variant": "feature_major"}))
    if "mnist" in problems:
      tasks.append((1, {"kind": "profile", "problem": "mnist", "target": "eval"}))
  if "scaling" in suites:
    tasks += [(1, task) for task in scaling.scaling_tasks(settings)]
  if "scale_out" in suites:
    tasks += scale_out.scale_out_tasks(settings)
  if "estimators" in suites:
    tasks += [(threads, {"kind": "estimators", "problem": problem})
              for threads in settings["thread_counts"] for problem in problems]
  if settings["isolate"]:
    return [(threads, [task]) for threads, task in tasks]
  # Not isolated: one child per thread count and kind of task (so that --jobs can spread them),
  # and one for tasks that change process-wide Grappler options.
  grouped = collections.OrderedDict()
  for threads, task in tasks:
    kind = "main" if task["kind"] in ("meta_step", "eval") else task["kind"]
    grouped.setdefault((threads, kind, bool(task.get("grappler"))), []).append(task)
  return [(key[0], group) for key, group in grouped.items()]


def child_main(task_path: str):
  """Runs the tasks of a task file with its thread count and writes their results next to it."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (after the flags, in a child)
  from benchmarks import estimators, profiles, variants, workloads  # pylint: disable=g-import-not-at-top
  runners = {"meta_step": workloads.run_meta_step, "eval": workloads.run_evaluation,
             "variants": variants.run_variants, "profile": profiles.run_profile,
             "scaling_point": scaling.run_scaling_point, "scale_out": scale_out.run_scale_out,
             "scale_out_worker": scale_out.run_scale_out_worker,
             "estimators": estimators.run_estimators}
  spec = json.loads(Path(task_path).read_text())
  settings = spec["settings"]
  tf.get_logger().setLevel("ERROR")
  tf.config.threading.set_intra_op_parallelism_threads(spec["threads"])
  tf.config.threading.set_inter_op_parallelism_threads(spec["threads"])
  if settings["deterministic"]:
    tf.config.experimental.enable_op_determinism()
  results = []
  for task in spec["tasks"]:
    workdir = tempfile.mkdtemp(prefix="l2l_bench_")
    try:
      record = runners[task["kind"]](task, settings, workdir)
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
            "process_peak_rss_mb": harness.peak_rss_mb(),
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "default (on)")}
  Path(spec["result_path"]).write_text(json.dumps(output))


RECORD_KEYS = {"meta_step": lambda task, record: (f"{task['problem']}_meta_step",
                                                  str(record["threads"])),
               "eval": lambda task, record: (f"{task['problem']}_eval_100", str(record["threads"])),
               "variants": lambda task, record: ("variants", task["problem"]),
               "profile": lambda task, record: ("profile", record["name"]),
               "estimators": lambda task, record: ("estimators",
                                                   f"{task['problem']}_{record['threads']}")}


def assemble(settings, outputs, machine) -> dict:
  """The benchmark JSON from the children's outputs."""
  command = " ".join(["python", "-m", "benchmarks.run"] + [shlex.quote(a) for a in sys.argv[1:]])
  result = {"schema": "l2l_tf.bench/1", "command": command,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "settings": settings, "machine": machine, "errors": []}
  points = []
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
      if task["kind"] == "scale_out":
        result.setdefault("scale_out", {}).setdefault(str(record["threads"]), {})[
            str(task["workers"])] = record
      elif task["kind"] == "scaling_point":
        for key in ("sweep", "coordinates", "truncation", "checkpoint", "grappler"):
          record.setdefault(key, task.get(key))
        points.append(record)
      else:
        table, key = RECORD_KEYS[task["kind"]](task, record)
        result.setdefault(table, {})[key] = record
  if points:
    result["scaling"] = scaling.summarize_scaling(points)
  if result.get("scale_out"):
    result["scale_out_summary"] = scale_out.summarize_scale_out(result["scale_out"])
  return result


def bench_main(settings, output_path: Path, log=None) -> dict:
  """Runs the planned child processes and writes the JSON; returns it."""
  log = log or (lambda message: print(message, file=sys.stderr, flush=True))
  machine = harness.machine_info()
  before = harness.cpu_jiffies()
  own_before = resource.getrusage(resource.RUSAGE_CHILDREN)
  start = time.perf_counter()
  children = plan(settings)
  if settings["jobs"] > 1:
    with concurrent.futures.ThreadPoolExecutor(settings["jobs"]) as pool:
      outputs = list(pool.map(
          lambda child: harness.run_child(child[0], child[1], settings, log), children))
  else:
    outputs = [harness.run_child(threads, tasks, settings, log) for threads, tasks in children]
  elapsed = time.perf_counter() - start
  after = harness.cpu_jiffies()
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
    print(tables.markdown_tables(result))
    return
  if not FLAGS.output:
    raise cli.UsageError("--output is required (the JSON file to write).")
  settings = settings_from_flags()
  output = Path(FLAGS.output)
  result = bench_main(settings, output)
  print(tables.markdown_tables(json.loads(output.read_text())))  # As --table_from prints it.
  print(f"wrote {output}")
  if result["errors"]:
    raise cli.UsageError(f"{len(result['errors'])} measurement(s) failed (see 'errors' in "
                         f"{output}); first: {result['errors'][0]['error'][:500]}")


if __name__ == "__main__":
  app.run(main)
