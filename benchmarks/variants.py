"""Alternative LSTM steps, measured against the library's step with the same weights and updates."""

from pathlib import Path

import tensorflow as tf

import benchmarks
from benchmarks import harness, workloads
from l2l_tf.meta import unroll
from l2l_tf.optimizers import base, lstm

# The variants suite times MetaTrainer's own meta-step function, which is not public API.
# pylint: disable=protected-access


def split_name(name: str):
  """`(base name, jit_compile)` of a variant: "feature_major_xla" -> ("feature_major", True)."""
  return (name[:-len("_xla")], True) if name.endswith("_xla") else (name, False)


def propagate_non_finite(updates, grads):
  """NaN updates where the gradient is not finite, as the library's step does (same work)."""
  return tf.where(tf.math.is_finite(grads), updates, tf.constant(float("nan"), updates.dtype))


# ---- the cell's tanh form: the bench's own, an alternative to the library's sigmoid form -------


def tanh_form_gate_weights(weights, biases, hidden: int, forget_bias: float):
  """The gate weights [W; b] ([d_in + hidden + 1, 4 hidden]) of a cell's tanh form.

  sigma(x) = (1 + tanh(x / 2)) / 2: with the columns of the three sigmoid gates (i, f, o) halved
  and the forget bias folded into f's bias, one `tanh` over all 4 hidden gate pre-activations
  gives every gate (`tanh_form_cell` finishes the update). The bias is the last row, to multiply
  a row (or column) of ones: in the feature-major layout a broadcast bias add is a separate pass
  over the [4 hidden, n] gates, while a ones row rides along in the matmul.
  """
  half = tf.fill([hidden], tf.constant(0.5, weights.dtype))
  scale = tf.concat([half, tf.ones_like(half), half, half], axis=0)
  shift = tf.concat([tf.zeros([2 * hidden], weights.dtype), half * forget_bias,
                     tf.zeros_like(half)], axis=0)
  return tf.concat([weights * scale, (biases * scale + shift)[None]], axis=0)


def tanh_form_cell(ti, tj, tf_, to, c_prev):
  """The forget-gate cell update from tanh of the `tanh_form_gate_weights` pre-activations:
  sigma(i) = (1 + ti) / 2 and so on. Returns `(h, c)`."""
  c = 0.5 * ((tf_ + 1.0) * c_prev + (ti + 1.0) * tj)
  return 0.5 * (to + 1.0) * tf.tanh(c), c


# ---- variants of the coordinate-major step ------------------------------------------------------


class _Variant(lstm.CoordinatewiseLSTM):
  """The library's LSTM (its constructor and weights) with the step of a subclass: the library's
  coordinate-major loop around the subclass's `layer(index, x [n, d], h_prev, c_prev) -> (h, c)`,
  or a step of its own."""

  def __init__(self, **config):
    super().__init__(**config)
    config = self.get_config()
    if (config["name"] != "lstm" or not config["forget_gate"] or config["cell_clip"] is not None
        or "outputs" in config):
      raise ValueError(f"{type(self).__name__} implements only the paper's LSTM (forget gate, "
                       "no cell clip, no global averaging cells, one output).")

  def step(self, grads, state):
    flat = base.flatten_coordinates(grads)
    x = self.preprocessing(flat)
    new_state = []
    for index, (h_prev, c_prev) in enumerate(state):
      x, c = self.layer(index, x, h_prev, c_prev)
      new_state.append((x, c))
    out = self.output_scale * (tf.matmul(x, self.output_weights)[:, 0] + self.output_bias)
    return base.unflatten_coordinates(propagate_non_finite(out, flat), grads), tuple(new_state)


class SplitWeightsLSTM(_Variant):
  """No concat: z = x W_x + h W_h + b, the gate matmul split into input and recurrent parts."""

  def layer(self, index, x, h_prev, c_prev):
    w = self.gate_weights[index]
    d = int(w.shape[0]) - int(h_prev.shape[1])
    z = tf.matmul(x, w[:d]) + tf.matmul(h_prev, w[d:]) + self.gate_biases[index]
    h, c, _ = lstm.cell_update(*tf.split(z, 4, axis=1), c_prev, self.forget_bias)
    return h, c


def block_cell(x, c_prev, h_prev, w, b, forget_bias):
  """One LSTMBlockCell (gate order i, j, f, o, as the library's) with its gradient."""
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
  """The gates and the cell update in TensorFlow's fused LSTMBlockCell kernel, with its
  LSTMBlockCellGrad wired up by `tf.custom_gradient` (TensorFlow registers no gradient for it)."""

  def layer(self, index, x, h_prev, c_prev):
    c, h = block_cell(x, c_prev, h_prev, tf.convert_to_tensor(self.gate_weights[index]),
                      tf.convert_to_tensor(self.gate_biases[index]), self.forget_bias)
    return h, c


class TanhFormLSTM(_Variant):
  """The cell's tanh form (one tanh over the gates) in the coordinate-major layout."""

  def layer(self, index, x, h_prev, c_prev):
    w = tanh_form_gate_weights(self.gate_weights[index], self.gate_biases[index],
                               self.hidden_sizes[index], self.forget_bias)
    d = int(w.shape[0]) - 1
    gates = tf.tanh(tf.matmul(tf.concat([x, h_prev], axis=1), w[:d]) + w[d])
    return tanh_form_cell(*tf.split(gates, 4, axis=1), c_prev)


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
  """TensorFlow's gate matmul, then the cell's elementwise part compiled by XLA (so that XLA fuses
  it while oneDNN keeps the matmuls)."""

  def __init__(self, **config):
    super().__init__(**config)
    self._xla_cell = xla_cell(self.forget_bias)

  def layer(self, index, x, h_prev, c_prev):
    z = tf.matmul(tf.concat([x, h_prev], axis=1), self.gate_weights[index])
    return self._xla_cell(z + self.gate_biases[index], c_prev)


class FeatureMajorTanhLSTM(_Variant):
  """The tanh form in the feature-major layout: state and gates [units, n], n padded to a
  multiple of 16, so that the gate split and the [input; h; 1] concat run along the outer axis,
  where TensorFlow aliases instead of copying; the bias rides in the matmul as a row of weights
  times a row of ones. (The preprocessed input is transposed to [d, n].)"""

  def initial_state(self, params):
    padded = (base.num_coordinates(params) + 15) // 16 * 16
    zeros = lambda h: tf.zeros([h, padded], self.output_bias.dtype)
    return tuple((zeros(h), zeros(h)) for h in self.hidden_sizes)

  def step(self, grads, state):
    flat = base.flatten_coordinates(grads)
    n = tf.shape(flat)[0]
    padded = (n + 15) // 16 * 16
    # Padding coordinates carry zero gradients; their (finite) outputs are cut off below.
    x = tf.transpose(self.preprocessing(tf.pad(flat, [[0, padded - n]])))
    ones = tf.ones([1, padded], x.dtype)
    new_state = []
    for index, (h_prev, c_prev) in enumerate(state):
      w = tanh_form_gate_weights(self.gate_weights[index], self.gate_biases[index],
                                 self.hidden_sizes[index], self.forget_bias)
      gates = tf.tanh(tf.matmul(w, tf.concat([x, h_prev, ones], axis=0), transpose_a=True))
      x, c = tanh_form_cell(*tf.split(gates, 4, axis=0), c_prev)
      new_state.append((x, c))
    out = tf.matmul(self.output_weights, x, transpose_a=True)[0] + self.output_bias
    out = propagate_non_finite(self.output_scale * out[:n], flat)
    return base.unflatten_coordinates(out, grads), tuple(new_state)


VARIANT_CLASSES = {"feature_major_tanh": FeatureMajorTanhLSTM, "split_weights": SplitWeightsLSTM,
                   "fused_cell": FusedCellLSTM, "tanh_form": TanhFormLSTM,
                   "xla_cell": XlaCellLSTM}


def make_variant(optimizer, name: str):
  """Variant `name` (without "_xla") of a library `CoordinatewiseLSTM`, with its weights.

  "library" is the optimizer itself, "feature_major" the library's `lstm.FeatureMajorLSTM` view
  of it; the others are copies with their own step (`VARIANT_CLASSES`).
  """
  if name == "library":
    return optimizer
  if name == "feature_major":
    return lstm.FeatureMajorLSTM(optimizer)
  config = optimizer.get_config()
  config.pop("name")
  variant = VARIANT_CLASSES[name](**config)
  weights = optimizer.meta_parameters()
  for key, var in variant.meta_parameters().items():
    var.assign(weights[key])
  return variant


def trajectory_fn(problem, stepper, num_steps: int, jit_compile: bool):
  """`stepper` from a fresh state over `num_steps` steps (`unroll.trajectory`), compiled. Unlike
  `unroll.make_trajectory_fn`, which picks the library's fastest step, it runs `stepper` as it is:
  for "library", the coordinate-major `CoordinatewiseLSTM.step`."""

  @tf.function(jit_compile=jit_compile)
  def run(instance, params):
    state = stepper.initial_state(params)
    return unroll.trajectory(problem, stepper, instance, params, state, num_steps)[0]

  return run


def _meta_step(name, task, problem, settings, workdir):
  """A blocking call of variant `name`'s compiled meta-step, and its first meta-loss and the
  weights after it (which must equal the library's)."""
  base_name, jit = split_name(name)
  optimizer = make_variant(workloads.make_optimizer(task["problem"], settings), base_name)
  trainer = workloads.make_trainer(problem, optimizer, settings["truncation"],
                                   Path(workdir) / name)
  num = workloads.problem_count(task["problem"], settings, "meta")
  instance, params, state = workloads.meta_step_inputs(problem, optimizer, num, settings["seed"])
  step = tf.function(trainer._meta_step_impl, jit_compile=jit)
  start = tf.constant(0, tf.int32)
  loss = float(step(params, state, instance, start)[0])
  weights = [v.numpy() for v in trainer.meta_vars]
  return workloads.blocking(step, params, state, instance, start), (loss, weights)


def _evaluation(name, task, problem, settings):
  """A blocking call of variant `name`'s compiled trajectory, and its losses."""
  base_name, jit = split_name(name)
  optimizer = make_variant(workloads.make_optimizer(task["problem"], settings), base_name)
  num = workloads.problem_count(task["problem"], settings, "eval")
  instance, params, _ = workloads.meta_step_inputs(problem, optimizer, num, settings["seed"])
  fn = trajectory_fn(problem, optimizer, settings["eval_steps"], jit)
  return workloads.blocking(fn, instance, params), fn(instance, params).numpy()


def _build(names, build, skipped, prefix=""):
  """`build(name)` of every variant: ({name: call}, {name: output}); a failure goes to `skipped`."""
  calls, outputs = {}, {}
  for name in names:
    try:
      calls[name], outputs[name] = build(name)
    except Exception as e:  # pylint: disable=broad-except
      first_line = (str(e).splitlines() or [""])[0]
      skipped[prefix + name] = f"{type(e).__name__}: {first_line[:300]}"
  return calls, outputs


def _timed(calls, checks, settings):
  """Round-robin timings of `calls` with their `checks` and speed-up against the library's."""
  records = harness.time_interleaved(calls, settings["warmup"], settings["repeats"])
  for name, record in records.items():
    record.update(checks[name])
    record["speedup_vs_library"] = records["library"]["cpu_s_median"] / record["cpu_s_median"]
  return records


def run_variants(task, settings, workdir) -> dict:
  """Meta-step and evaluation of each LSTM variant, timed round-robin in one process.

  Every variant has its own optimizer with the library's initial weights, so the first meta-loss,
  the weights after one meta-step and the evaluation losses must agree with the library's
  (`max_abs_diff_*`, `max_rel_diff_losses`).
  """
  problem = workloads.make_problem(task["problem"], settings)
  names = [v for v in benchmarks.VARIANTS if v in settings["variants"]]
  skipped = {}
  calls, outputs = _build(names, lambda n: _meta_step(n, task, problem, settings, workdir),
                          skipped)
  ref_loss, ref_weights = next(iter(outputs.values()))
  checks = {name: {"meta_loss": loss, "max_abs_diff_meta_loss": abs(loss - ref_loss),
                   "max_abs_diff_weights_after_step": max(
                       float(abs(a - b).max()) for a, b in zip(weights, ref_weights))}
            for name, (loss, weights) in outputs.items()}
  # The first call above traced; time_interleaved's first call is a warm call.
  meta_step = _timed(calls, checks, settings)
  calls, outputs = _build(names, lambda n: _evaluation(n, task, problem, settings), skipped,
                          "eval_")
  ref_losses = next(iter(outputs.values()))
  checks = {name: {"max_rel_diff_losses": float(
      (abs(losses - ref_losses) / (abs(ref_losses) + 1e-12)).max())}
            for name, losses in outputs.items()}
  return {"meta_step": meta_step, "eval": _timed(calls, checks, settings), "skipped": skipped,
          "problem": problem.get_config(), "truncation": settings["truncation"],
          "meta_batch": workloads.problem_count(task["problem"], settings, "meta"),
          "eval_problems": workloads.problem_count(task["problem"], settings, "eval"),
          "eval_steps": settings["eval_steps"]}
