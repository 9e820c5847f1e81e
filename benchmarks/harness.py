"""Timing, CPU and memory measurement, machine description and child processes (no TensorFlow)."""

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BYTES_PER_MB = 2.0 ** 20
# The repository root: children run `python -m benchmarks.run` with it first on their path.
ROOT = Path(__file__).resolve().parent.parent


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


def time_interleaved(fns: dict, warmup: int, repeats: int) -> dict:
  """Times several functions round-robin, so that drifting background load hits all alike.

  Args:
    fns: name -> blocking callable (it must wait until its result is computed).
    warmup: untimed calls of each before timing; the first one is timed apart as `first_call_s`
      (tracing and compilation included).
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


def time_calls(fn, warmup: int, repeats: int) -> dict:
  """`time_interleaved` of one function, with `warmup` recorded."""
  result = time_interleaved({"fn": fn}, warmup, repeats)["fn"]
  result["warmup"] = warmup
  return result


def cpu_jiffies():
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
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True, timeout=10, check=False).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                           capture_output=True, text=True, timeout=10, check=False).stdout
    info["git_commit"] = commit or None
    info["git_modified_files"] = [line[3:] for line in dirty.splitlines()]
  except (OSError, subprocess.SubprocessError):
    info["git_commit"] = None
  return info


def task_name(task) -> str:
  """A task's name in the progress log."""
  if task["kind"] == "scaling_point":
    extra = f" checkpoint={task['checkpoint']}" if task.get("checkpoint") else ""
    return f"scaling n={task['coordinates']} K={task['truncation']}{extra}"
  return f"{task.get('problem', '')} {task['kind']}"


def run_child(threads: int, tasks: list, settings: dict, log) -> dict:
  """Runs one child process (`python -m benchmarks.run --child_task=...`) on `tasks`.

  Returns:
    The child's output (`results`, one per task, and what the child measured about itself) with
    its wall time, CPU time and peak RSS as the parent saw them; or an error record for every task
    when the child failed.
  """
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
    path = [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONPATH=os.pathsep.join(path))
    names = ", ".join(task_name(t) for t in runnable)
    log(f"[bench] {threads} thread(s): {names}")
    start = time.perf_counter()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-m", "benchmarks.run", f"--child_task={task_path}"],
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
