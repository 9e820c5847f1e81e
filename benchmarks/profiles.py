"""Profiles of a meta-step or an evaluation: a tf.profiler trace and its op self times per step."""

import collections
import glob
import os
import time
from pathlib import Path

import tensorflow as tf

from benchmarks import flops as flops_lib
from benchmarks import variants, workloads
from l2l_tf.meta import unroll

# The profile traces MetaTrainer's own compiled meta-step, which is not public API.
# pylint: disable=protected-access

_MATMUL_OPS = ("MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3", "_MklMatMul",
               "_MklNativeFusedMatMul", "_FusedMatMul", "_MklNativeBatchMatMulV2",
               "_MklBatchMatMulV2", "_MklFusedBatchMatMulV2", "_MklNativeFusedBatchMatMulV2")
_TRANSCENDENTAL_OPS = ("Sigmoid", "Tanh", "Log", "Exp", "Softmax", "LogSoftmax",
                       "SparseSoftmaxCrossEntropyWithLogits", "Sqrt", "Rsqrt", "Pow")
_MOVEMENT_OPS = ("Split", "SplitV", "ConcatV2", "Concat", "Slice", "StridedSlice", "Pack",
                 "Unpack", "Transpose", "GatherV2", "Pad", "Reshape", "Identity", "Tile",
                 "StridedSliceGrad", "Fill", "ZerosLike", "OnesLike", "BroadcastTo")
_CONTROL_FLOW_OPS = ("While", "StatelessWhile", "If", "StatelessIf", "PartitionedCall",
                     "StatefulPartitionedCall", "Enter", "Exit", "Merge", "Switch",
                     "NextIteration")


def op_category(op_type: str) -> str:
  """The row of the profile's category table that an op type counts in."""
  if op_type in _MATMUL_OPS:
    return "matmul"
  if op_type in _TRANSCENDENTAL_OPS:
    return "transcendental"
  if op_type in _MOVEMENT_OPS:
    return "copy/concat/split/slice"
  if op_type.startswith("TensorList") or op_type in _CONTROL_FLOW_OPS:
    return "control flow/TensorList"
  if op_type.endswith("Grad") or op_type in ("Sum", "Mean", "Max", "Prod", "All"):
    return "gradient/reduction elementwise"
  return "other elementwise"


def _self_times(line, names):
  """[(event name, self seconds)] of one thread's events: duration minus nested events'."""
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
  return [(name, self_ps / 1e12) for name, self_ps in selfs]


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
  step_total = 0.0
  for plane in space.planes:
    if not plane.name.startswith("/host:CPU"):
      continue
    names = {k: v.name for k, v in plane.event_metadata.items()}
    for line in plane.lines:
      for name, seconds in _self_times(line, names):
        node, sep, op_type = name.rpartition(":")
        if sep and node and "::" not in name and op_type and " " not in op_type:
          by_type[op_type][0] += seconds
          by_type[op_type][1] += 1
          short = node.replace("gradient_tape/", "grad/").split("/body/")[-1]
          short = "/".join(part for part in short.split("/") if not part.startswith("_"))
          by_node[f"{short}:{op_type}"][0] += seconds
          by_node[f"{short}:{op_type}"][1] += 1
      for event in line.events:
        if names.get(event.metadata_id, "").startswith("KernelAndDeviceFunc::Run"):
          step_total += event.duration_ps / 1e12
  op_total = sum(v[0] for v in by_type.values())
  categories = collections.defaultdict(float)
  for op_type, (seconds, _) in by_type.items():
    categories[op_category(op_type)] += seconds
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
  """Traces `profile_steps` meta-steps of the library (or of `task["variant"]`), or, with
  `task["target"] == "eval"`, evaluations without XLA as the library runs them, with tf.profiler,
  and tabulates op self times."""
  problem = workloads.make_problem(task["problem"], settings)
  variant = task.get("variant", "library")
  target = task.get("target", "meta_step")
  optimizer = variants.make_variant(workloads.make_optimizer(task["problem"], settings), variant)
  kind = "eval" if target == "eval" else "meta"
  num = workloads.problem_count(task["problem"], settings, kind)
  instance, params, state = workloads.meta_step_inputs(problem, optimizer, num, settings["seed"])
  if target == "eval":
    call = workloads.blocking(
        unroll.make_trajectory_fn(problem, optimizer, settings["eval_steps"]), instance, params)
  else:
    trainer = workloads.make_trainer(problem, optimizer, settings["truncation"],
                                     Path(workdir) / "trainer")
    call = workloads.blocking(trainer._meta_step, params, state, instance,
                              tf.constant(0, tf.int32))
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
    result["flop_check"] = flops_lib.flop_cross_check(problem, optimizer, num, instance, params)
  return result
