"""The matmul FLOP model of meta-steps and evaluations, the measured matmul floor and its check."""

import statistics
import time

import tensorflow as tf

from l2l_tf.meta import unroll
from l2l_tf.optimizers import grouped, lstm
from l2l_tf.problems import mlp, quadratic


def param_sizes(params):
  """Coordinates of every parameter tensor."""
  return [int(p.shape.num_elements()) for p in params]


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


def meta_step_flops(problem, optimizer, num: int, sizes, truncation: int) -> dict:
  """Matmul FLOPs of one meta-step (a truncation of K steps with its meta-gradient).

  Per step: the optimizee loss forward, its gradient (the optimizer's input), the optimizer's
  forward, and in the backward pass the optimizer's matmuls twice more (dW and dX of every matmul)
  and the loss's gradient again (d f(theta_t) / d theta_t of the meta-loss). The while loop's
  gradient runs for every step, including the first, whose loss has weight 0. The final
  f(theta_K) adds a forward and a backward. Elementwise work is not counted.

  Returns:
    `{"flops", "lstm_flops", "problem_flops", "transcendentals", "per_step": {...}}`.
  """
  opt = lstm_forward_cost(optimizer, sizes)
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


def evaluation_flops(problem, optimizer, num: int, sizes, steps: int) -> dict:
  """Matmul FLOPs of `steps` forward-only steps (loss, gradient, optimizer) and the last loss."""
  opt = lstm_forward_cost(optimizer, sizes)
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


def floor_fields(timing, flops, rates) -> dict:
  """The FLOP and floor fields of a record: its FLOPs, rates, floor and time / floor ratios."""
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

  The library's while loop hides its body from static counters, so the meta-loss of K = 2 and 3
  steps is unrolled in Python (same weights w_t as the library's truncation loss) and the
  gradient graph's matmuls are counted from their shapes (`graph_matmul_flops`) and by
  `tf.compat.v1.profiler` (MatMul ops only). A middle step (K=3 minus K=2) must match the
  analytic per-step count; the first step differs because theta_0 and the zero initial state need
  no gradient.
  """
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
  per_step_analytic = (3 * analytic["lstm_forward"] + analytic["problem_forward"]
                       + 2 * analytic["problem_gradient"])
  v1_per_step = (v1_counts[3] - v1_counts[2]
                 if all(isinstance(v, float) for v in v1_counts.values()) else None)
  return {"per_step_analytic": per_step_analytic, "per_step_graph": per_step_graph,
          "graph_to_analytic": per_step_graph / per_step_analytic,
          "per_step_tf_v1_profiler": v1_per_step, "graph_counts": counts,
          "tf_v1_profiler_totals": v1_counts,
          "note": "tf.compat.v1.profiler takes k of an adjoint BatchMatMulV2 from the wrong axis "
                  "(the MLP's dW = x^T dz is counted as 2*784*784*20 instead of 2*784*128*20), "
                  "so it over-counts the optimizee's gradients."}
