"""The coordinatewise deep LSTM optimizer (paper Sec. 2.1, Fig. 3).

One small LSTM network m, with weights phi shared by every coordinate and a hidden state per
coordinate, maps each coordinate's preprocessed gradient to that coordinate's update:

    [g_t; h_{t+1}] = m(grad_t, h_t, phi),    theta_{t+1} = theta_t + g_t      (paper Eq. 1, 3)

All coordinates of all parameter tensors are processed as one batch of shape [n, d_in].
"""

from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf

from l2l_tf.optimizers import base
from l2l_tf.optimizers import preprocessing as preprocessing_lib
from l2l_tf import errors


def propagate_non_finite(updates: tf.Tensor, grads: tf.Tensor) -> tf.Tensor:
  """NaN where the gradient is not finite: saturating gates would otherwise turn an infinite or
  NaN gradient into a finite update and hide a diverged run from the divergence checks."""
  return tf.where(tf.math.is_finite(grads), updates, tf.constant(float("nan"), updates.dtype))


def cell_update(i, j, f, o, c_prev, forget_bias: float = 1.0, cell_clip: Optional[float] = None):
  """One LSTM cell update from the gate pre-activations (any layout, elementwise).

  c_t = sigma(f + forget_bias) * c_{t-1} + sigma(i) * tanh(j) (2000 cell), or, with `f=None`,
  c_t = c_{t-1} + sigma(i) * tanh(j) (1997 cell, no forget gate); then optionally clipped to
  +-cell_clip; h_t = sigma(o) * tanh(c_t).

  Returns:
    `(h, c, (input_gate, forget_gate, output_gate))`, the forget gate None without one.
  """
  input_gate = tf.sigmoid(i)
  if f is None:
    forget = None
    c = c_prev + input_gate * tf.tanh(j)
  else:
    forget = tf.sigmoid(f + forget_bias)
    c = forget * c_prev + input_gate * tf.tanh(j)
  if cell_clip is not None:
    c = tf.clip_by_value(c, -cell_clip, cell_clip)
  output_gate = tf.sigmoid(o)
  return output_gate * tf.tanh(c), c, (input_gate, forget, output_gate)


# State: one (h, c) pair per LSTM layer, each of shape [n, hidden_size], then the
# preprocessing's state [n, input_state_size] when it has one (`split_state`).
LSTMState = Tuple[Tuple[tf.Tensor, tf.Tensor], ...]


class CoordinatewiseLSTM(base.Optimizer):
  """A stack of LSTM layers and a linear output, applied to every coordinate independently.

  The paper's optimizer is `CoordinatewiseLSTM(hidden_sizes=(20, 20))`: 5,141 meta-parameters with
  LogAndSign input (2 features) and 5,061 with a raw gradient input. Each layer computes, per
  coordinate (Sonnet-1 LSTM as used by DeepMind's code, no peepholes):

      [i, j, f, o] = W [u; h_{t-1}] + b
      c_t = sigma(f + forget_bias) * c_{t-1} + sigma(i) * tanh(j)
      h_t = sigma(o) * tanh(c_t)

  With `forget_gate=False` the cell is the original 1997 LSTM (Hochreiter & Schmidhuber), which has
  no forget gate: c_t = c_{t-1} + sigma(i) * tanh(j); `cell_clip` then optionally clips c_t.
  The update is `output_scale * (w_out . h_t + b_out)`.

  Initialisation: weights truncated normal with stddev 1/sqrt(fan_in) (fan_in = d_in + hidden for
  a gate matrix), biases zero (later Sonnet 1 releases, which DeepMind's code ran on); or all zeros
  with `initializer="zeros"` (the configuration of DeepMind's convergence test).
  """

  def __init__(self,
               hidden_sizes: Sequence[int] = (20, 20),
               preprocessing="identity",
               output_scale: float = 1.0,
               forget_bias: float = 1.0,
               forget_gate: bool = True,
               cell_clip: Optional[float] = None,
               initializer: str = "truncated_normal",
               seed: int = 0,
               dtype: tf.DType = tf.float32,
               num_global_cells=0,
               instance_axis: bool = True,
               extra_inputs: int = 0,
               outputs: int = 1,
               name: Optional[str] = None):
    super().__init__(name=name or "coordinatewise_lstm")
    self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
    if any(h <= 0 for h in self.hidden_sizes):
      raise errors.ConfigError(f"hidden_sizes must be positive, got {self.hidden_sizes}.")
    if isinstance(num_global_cells, int):
      num_global_cells = [num_global_cells] * len(self.hidden_sizes)
    self.num_global_cells = tuple(int(g) for g in num_global_cells)
    if len(self.num_global_cells) != len(self.hidden_sizes) or any(
        not 0 <= g <= h for g, h in zip(self.num_global_cells, self.hidden_sizes)):
      raise errors.ConfigError(
          f"num_global_cells must give, per layer, a number in [0, hidden size]; got "
          f"{list(self.num_global_cells)} for hidden_sizes {list(self.hidden_sizes)}.")
    self.instance_axis = bool(instance_axis)
    # Used by controllers built on this network (NTM-BFGS): more inputs and outputs per coordinate.
    self.extra_inputs = int(extra_inputs)
    self.outputs = int(outputs)
    if self.extra_inputs < 0 or self.outputs < 1:
      raise errors.ConfigError("extra_inputs must be >= 0 and outputs >= 1.")
    if not isinstance(preprocessing, tuple(preprocessing_lib.PREPROCESSINGS.values())):
      preprocessing = preprocessing_lib.make_preprocessing(preprocessing)
    self.preprocessing = preprocessing
    # A stateful preprocessing (NormalizedMoments) keeps [n, input_state_size] in the state.
    self.input_state_size = int(getattr(preprocessing, "state_size", 0))
    if self.input_state_size and (self.extra_inputs or any(self.num_global_cells)):
      raise errors.ConfigError("A stateful preprocessing is for the plain coordinatewise LSTM "
                               "(no extra inputs, no global averaging cells).")
    self.output_scale = float(output_scale)
    self.forget_bias = float(forget_bias)
    self.forget_gate = bool(forget_gate)
    self.cell_clip = None if cell_clip is None else float(cell_clip)
    if initializer not in ("truncated_normal", "zeros"):
      raise errors.ConfigError(
          f"initializer must be 'truncated_normal' or 'zeros', got {initializer!r}.")
    self.initializer = initializer
    self.seed = int(seed)
    self.dtype = tf.as_dtype(dtype)

    def init(shape, fan_in, index):
      if initializer == "zeros":
        return tf.zeros(shape, self.dtype)
      return tf.random.stateless_truncated_normal(
          shape, seed=[self.seed, index], stddev=fan_in ** -0.5, dtype=self.dtype)

    self.gate_weights = []
    self.gate_biases = []
    d_in = self.preprocessing.output_size + self.extra_inputs
    with self.name_scope:
      for layer, hidden in enumerate(self.hidden_sizes):
        fan_in = d_in + hidden
        self.gate_weights.append(tf.Variable(
            init([fan_in, 4 * hidden], fan_in, layer), name=f"lstm_{layer}/w_gates"))
        self.gate_biases.append(tf.Variable(
            tf.zeros([4 * hidden], self.dtype), name=f"lstm_{layer}/b_gates"))
        d_in = hidden
      self.output_weights = tf.Variable(
          init([d_in, self.outputs], d_in, len(self.hidden_sizes)), name="linear/w")
      self.output_bias = tf.Variable(tf.zeros([self.outputs], self.dtype), name="linear/b")

  def initial_state(self, params: Sequence[tf.Tensor], feature_major: bool = False) -> LSTMState:
    """Zeros: (h, c) per layer, [n, hidden] ([hidden, n_padded] feature-major), then the
    preprocessing's state [n, input_state_size] if it has one."""
    n = base.num_coordinates(params)
    if feature_major:
      n = padded_size(n)
    shape = (lambda size: [size, n]) if feature_major else (lambda size: [n, size])
    state = tuple((tf.zeros(shape(h), self.dtype), tf.zeros(shape(h), self.dtype))
                  for h in self.hidden_sizes)
    if self.input_state_size:
      state += (tf.zeros(shape(self.input_state_size), self.dtype),)
    return state

  def split_state(self, state: LSTMState):
    """`(layers, input_state)`: the (h, c) pairs of the layers and the preprocessing's state
    (None without one)."""
    if self.input_state_size:
      return tuple(state[:-1]), state[-1]
    return tuple(state), None

  def meta_parameters(self) -> Dict[str, tf.Variable]:
    """The meta-parameters phi by key, the keys of `serialization.variable_paths`.

    Returns:
      `{"gate_weights/0": w, "gate_biases/0": b, ..., "output_weights": w, "output_bias": b}`.
    """
    params = {}
    for layer, (w, b) in enumerate(zip(self.gate_weights, self.gate_biases)):
      params[f"gate_weights/{layer}"] = w
      params[f"gate_biases/{layer}"] = b
    params["output_weights"] = self.output_weights
    params["output_bias"] = self.output_bias
    return params

  @property
  def shares_information(self) -> bool:
    """True with global averaging cells: coordinates then see each other (paper Appendix D)."""
    return any(self.num_global_cells)

  def segment_ids(self, grads: Sequence[tf.Tensor]) -> Optional[tf.Tensor]:
    """The optimizee instance of every flat coordinate (global averaging cells average within
    one instance), or None without such cells.

    With `instance_axis` every tensor's leading axis indexes independent instances (meta-training
    and evaluation); otherwise all coordinates belong to one optimizee.
    """
    if not self.shares_information:
      return None
    if not self.instance_axis:
      return tf.zeros([base.num_coordinates(grads)], tf.int32)
    num = tf.shape(grads[0])[0]
    ids = []
    for g in grads:
      tf.debugging.assert_equal(tf.shape(g)[0], num, message=(
          "with instance_axis=True every tensor needs the same leading (instance) axis"))
      ids.append(tf.repeat(tf.range(num), tf.size(g) // num))
    return tf.concat(ids, axis=0)

  def core(self, inputs: tf.Tensor, state: LSTMState, segment_ids=None):
    """Runs the network on preprocessed inputs [n, d_in] with the module's meta-parameters.

    Returns:
      `(outputs [n], new_state, gates)` where `gates` holds, per layer, the activations
      (input, forget, output) gates, each [n, hidden]; the forget gate is ones without one.
    """
    return self._core(self.meta_parameters(), inputs, state, segment_ids)

  def _core(self, weights: Mapping[str, tf.Tensor], inputs: tf.Tensor, state: LSTMState,
            segment_ids=None, feature_major: bool = False):
    """The update rule: the one implementation every path runs (meta-training, evaluation,
    validation, the Keras optimizer, the SavedModel export, inspection).

    Args:
      weights: the meta-parameters (keys of `meta_parameters`).
      inputs: preprocessed gradients, [n, d_in]; [d_in, n] with `feature_major`.
      state: per layer (h, c), [n, hidden]; [hidden, n] with `feature_major`.
      segment_ids: the instance of every coordinate, for global averaging cells.
      feature_major: the layout of `inputs`, `state` and the outputs (`FeatureMajorLSTM`): the
        same arithmetic with the coordinates along the inner axis, where the gate `split` and the
        [input; h] `concat` run along the outer axis and alias instead of copying.

    Global averaging cells (paper Appendix D): the last `num_global_cells[layer]` units of a layer
    compute like the others, but their output h is replaced by its mean over the coordinates of
    the same instance (`segment_ids`), both as input to the next layer and in the recurrence.

    Returns:
      `(outputs, new_state, gates)` as for `core`, in the layout of the inputs.
    """
    if self.shares_information and (segment_ids is None or feature_major):
      raise errors.ConfigError("an LSTM with global averaging cells needs segment_ids and the "
                              "coordinate-major layout.")
    axis = 0 if feature_major else 1  # The axis of the features; the other indexes coordinates.
    x = inputs
    new_state = []
    gates = []
    for layer, (h_prev, c_prev) in enumerate(state):
      w, b = weights[f"gate_weights/{layer}"], weights[f"gate_biases/{layer}"]
      if feature_major:
        z = tf.matmul(w, tf.concat([x, h_prev], axis=0), transpose_a=True) + b[:, None]
      else:
        z = tf.matmul(tf.concat([x, h_prev], axis=1), w) + b
      h, c, layer_gates = self.cell(*tf.split(z, 4, axis=axis), c_prev)
      num_global = self.num_global_cells[layer] if self.num_global_cells else 0
      if num_global:
        split = self.hidden_sizes[layer] - num_global
        shared = h[:, split:]
        mean = tf.math.unsorted_segment_mean(shared, segment_ids,
                                             tf.reduce_max(segment_ids) + 1)
        h = tf.concat([h[:, :split], tf.gather(mean, segment_ids)], axis=1)
      new_state.append((h, c))
      gates.append(layer_gates)
      x = h
    if feature_major:
      out = (tf.matmul(weights["output_weights"], x, transpose_a=True)
             + weights["output_bias"][:, None])
      out = out[0] if self.outputs == 1 else tf.transpose(out)
    else:
      out = tf.matmul(x, weights["output_weights"]) + weights["output_bias"]
      out = out[:, 0] if self.outputs == 1 else out
    return self.output_scale * out, tuple(new_state), gates

  def cell(self, i, j, f, o, c_prev):
    """The cell update from the gate pre-activations i, j, f, o (any layout, elementwise); without
    a forget gate f is ignored.

    Returns:
      `(h, c, (input_gate, forget_gate, output_gate))`; the forget gate is ones without one.
    """
    h, c, (input_gate, forget, output_gate) = cell_update(
        i, j, f if self.forget_gate else None, o, c_prev, self.forget_bias, self.cell_clip)
    return h, c, (input_gate, tf.ones_like(f) if forget is None else forget, output_gate)

  def step(self, grads, state):
    return self.step_with_weights(self.meta_parameters(), grads, state)

  def step_with_weights(self, weights: Mapping[str, tf.Tensor], grads: Sequence[tf.Tensor],
                        state: LSTMState) -> Tuple[List[tf.Tensor], LSTMState]:
    """`step` with explicitly given meta-parameters instead of the module's variables.

    `step` calls it with the module's variables, the Keras optimizer
    (`l2l_tf.keras_optimizer`) with its optimizer variables, the SavedModel export with its own
    copies; all run `_core`.

    Args:
      weights: one tensor (or variable) per meta-parameter, keyed like `meta_parameters()`, with
        the same shapes.
      grads: as for `step`.
      state: as for `step`.

    Returns:
      `(updates, new_state)` as for `step`.

    Raises:
      ValueError: `weights` lacks a meta-parameter or has an unexpected one.
    """
    expected = self.meta_parameters()
    if set(weights) != set(expected):
      raise errors.ConfigError(
          f"step_with_weights needs the meta-parameters {sorted(expected)}; got "
          f"{sorted(weights)}.")
    updates, new_state, _ = self.run(weights, grads, state)
    return updates, new_state

  def run(self, weights, grads, state, feature_major: bool = False):
    """Preprocesses the flat gradients, runs `_core` and unflattens its outputs.

    With `feature_major` the state is laid out [hidden, n_padded] (`padded_size`): the padding
    coordinates carry zero gradients and their (finite) outputs are cut off.

    Returns:
      `(updates, new_state, gates)`.
    """
    flat = base.flatten_coordinates(grads)
    n = tf.shape(flat)[0]
    padded = tf.pad(flat, [[0, padded_size(n) - n]]) if feature_major else flat
    layers, input_state = self.split_state(state)
    if input_state is None:
      inputs = self.preprocessing(padded, feature_major=feature_major)
    else:
      inputs, input_state = self.preprocessing(padded, input_state, feature_major=feature_major)
    out, new_state, gates = self._core(weights, inputs, layers, self.segment_ids(grads),
                                       feature_major)
    if input_state is not None:
      new_state += (input_state,)
    if feature_major:
      out = out[:n]
    return (base.unflatten_coordinates(propagate_non_finite(out, flat), grads), new_state,
            gates)

  def diagnostics(self, grads, state):
    """Like `step`, also returning the gate activations (for TensorBoard inspection)."""
    return self.run(self.meta_parameters(), grads, state)

  def get_config(self) -> dict:
    config = {
        "name": "lstm_gac" if self.shares_information else "lstm",
        "hidden_sizes": list(self.hidden_sizes),
        "preprocessing": self.preprocessing.get_config(),
        "output_scale": self.output_scale,
        "forget_bias": self.forget_bias,
        "forget_gate": self.forget_gate,
        "cell_clip": self.cell_clip,
        "initializer": self.initializer,
        "seed": self.seed,
        "dtype": self.dtype.name,
    }
    if self.extra_inputs or self.outputs != 1:
      config.update(extra_inputs=self.extra_inputs, outputs=self.outputs)
    if self.shares_information:  # Only then, so plain LSTM configs stay as they were saved.
      config["num_global_cells"] = list(self.num_global_cells)
      config["instance_axis"] = self.instance_axis
    return config


def padded_size(n):
  """n rounded up to a multiple of 16: the coordinates of the feature-major layout."""
  return (n + 15) // 16 * 16


class FeatureMajorLSTM(base.Optimizer):
  """A `CoordinatewiseLSTM` with its state laid out feature-major: the same update rule.

  A view, not a copy: its step is the LSTM's `run` with `feature_major=True`, reading the wrapped
  LSTM's meta-parameters, so the two compute the same updates with the same arithmetic; only the
  state differs: per layer (h, c) of shape [hidden, n_padded] instead of [n, hidden], the n
  coordinates padded to a multiple of 16 (`padded_size`). The gate `split` and the [input; h]
  `concat` then run along the outer axis, where TensorFlow and XLA alias instead of copying:
  measured (`python -m benchmarks.run --suites=variants`, docs/performance.md) it evaluates MNIST
  faster than the coordinate-major layout, most of all under XLA. `unroll.make_trajectory_fn`
  uses it for trajectories (evaluation, validation), where the state never leaves the function.

  Supports every plain-LSTM option (forget gate or not, cell clip); not global averaging cells or
  extra inputs / outputs (`supports` says so).
  """

  def __init__(self, lstm: CoordinatewiseLSTM, name: Optional[str] = None):
    super().__init__(name=name or f"{lstm.name}_feature_major")
    if not self.supports(lstm):
      raise errors.ConfigError(
          "FeatureMajorLSTM implements the plain coordinatewise LSTM only (no global "
          "averaging cells, no extra inputs or outputs).")
    self.lstm = lstm

  @staticmethod
  def supports(optimizer) -> bool:
    return (type(optimizer) is CoordinatewiseLSTM  # pylint: disable=unidiomatic-typecheck
            and not optimizer.shares_information and not optimizer.extra_inputs
            and optimizer.outputs == 1)

  def initial_state(self, params: Sequence[tf.Tensor]) -> LSTMState:
    return self.lstm.initial_state(params, feature_major=True)

  def step(self, grads, state):
    updates, new_state, _ = self.lstm.run(self.lstm.meta_parameters(), grads, state,
                                          feature_major=True)
    return updates, new_state

  def saved_module(self) -> CoordinatewiseLSTM:
    return self.lstm

  def get_config(self) -> dict:
    return self.lstm.get_config()
