"""The 2001 meta-LSTM of Hochreiter, Younger & Conwell: a frozen LSTM learning in its activations.

Design note seed_systems.md Sec. 1.2 (reconstruction; the 2001 texts were not available): at example
j the net reads u_j = (x_j, y_{j-1}) (the current input and the previous target, y_0 = 0) and
predicts y_j. Architecture: one LSTM layer -> a fully connected tanh hidden layer -> one linear
output unit, about 5,000 weights. The LSTM is, by default, the original 1997 cell WITHOUT a forget
gate (Hochreiter & Schmidhuber 1997; design note Sec. 6.1-6.2):

    [i, j, o] = W [u_t; h_{t-1}] + b
    c_t = c_{t-1} + sigma(i) * tanh(j)          (clipped to [-C, C] if cell_clip = C)
    h_t = sigma(o) * tanh(c_t)

and, with `forget_gate=True`, the Gers et al. (2000) cell with [i, j, f, o] and
c_t = sigma(f + forget_bias) * c_{t-1} + sigma(i) * tanh(j) (the gate order and forget bias of
`l2l_tf.optimizers.lstm.CoordinatewiseLSTM`).

Meta-training (`MetaLSTMTrainer`): backpropagation through time over whole sequences, one function
per sequence, state reset per sequence, on the cumulative prediction loss
sum_j (yhat_j - y_j)^2 (mean over the sequences of a batch), with Adam. At test all weights are
frozen; learning a new function happens only in the activations.

Why not `CoordinatewiseLSTM._core`: that cell always holds a 4H-column gate matrix and ends in a
linear readout, so without a forget gate a quarter of its gate weights would be dead (counted but
never used) and the hidden tanh layer would not fit; this module's cell has exactly the weights it
uses and is tested against a NumPy reference and against `_core`
(tests/test_review_hochreiter2001.py).
"""

import dataclasses
import json
import math
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

import numpy as np
import sonnet as snt
import tensorflow as tf

from l2l_tf.meta import checkpointing
from l2l_tf.optimizers import baselines
from l2l_tf.optimizers import lstm
from l2l_tf.optimizers import serialization
from l2l_tf_experiments.review import task_h as task_h_lib
from l2l_tf import errors

CONFIG_FILE = "meta_lstm.json"
WEIGHTS_FILE = "meta_lstm.npz"
INPUT_SIZE = 3  # (x1, x2, y_{j-1})


class LSTMCell(snt.RNNCore):
  """One LSTM layer, with (Gers et al. 2000) or without (Hochreiter & Schmidhuber 1997) forget gate.

  State: `snt.LSTMState(hidden, cell)`, each [batch, hidden_size], so the cell drops into
  `snt.static_unroll` / `snt.dynamic_unroll`. Weights: W [input_size + hidden_size, G * hidden]
  (G = 3 gates without, 4 with forget gate), truncated normal with stddev 1 / sqrt(fan_in) from a
  stateless seed, and biases b [G * hidden] = 0.

  Args:
    input_size: width of the input u_t.
    hidden_size: number of memory cells H.
    forget_gate: False for the 1997 cell (c_t = c_{t-1} + i g), True for the 2000 cell.
    forget_bias: added to the forget gate's pre-activation (forget-gate cell only).
    cell_clip: if set, c_t is clipped to [-cell_clip, cell_clip] (Nguyen et al. 2018's variant).
    seed: stateless initialisation seed.
    dtype: variable dtype.
    name: module name.

  Raises:
    ValueError: non-positive sizes or cell_clip.
  """

  def __init__(self, input_size: int, hidden_size: int, forget_gate: bool = False,
               forget_bias: float = 1.0, cell_clip: Optional[float] = None, seed: int = 0,
               dtype=tf.float32, name: Optional[str] = None):
    super().__init__(name=name or "lstm_cell")
    if int(input_size) <= 0 or int(hidden_size) <= 0:
      raise errors.ConfigError(f"input_size and hidden_size must be positive, got {input_size}, "
                       f"{hidden_size}.")
    if cell_clip is not None and not cell_clip > 0:
      raise errors.ConfigError(f"cell_clip must be positive or None, got {cell_clip}.")
    self.input_size = int(input_size)
    self.hidden_size = int(hidden_size)
    self.forget_gate = bool(forget_gate)
    self.forget_bias = float(forget_bias)
    self.cell_clip = None if cell_clip is None else float(cell_clip)
    self.num_gates = 4 if self.forget_gate else 3
    fan_in = self.input_size + self.hidden_size
    dtype = tf.as_dtype(dtype)
    with self.name_scope:
      self.w = tf.Variable(tf.random.stateless_truncated_normal(
          [fan_in, self.num_gates * self.hidden_size], seed=[int(seed), 0],
          stddev=fan_in ** -0.5, dtype=dtype), name="w_gates")
      self.b = tf.Variable(tf.zeros([self.num_gates * self.hidden_size], dtype), name="b_gates")

  def initial_state(self, batch_size, dtype=None) -> snt.LSTMState:
    zeros = tf.zeros([batch_size, self.hidden_size], dtype or self.w.dtype)
    return snt.LSTMState(hidden=zeros, cell=zeros)

  def __call__(self, inputs: tf.Tensor,
               prev_state: snt.LSTMState) -> Tuple[tf.Tensor, snt.LSTMState]:
    """One time step: inputs [batch, input_size] -> (h_t, LSTMState(h_t, c_t))."""
    z = tf.matmul(tf.concat([inputs, prev_state.hidden], axis=1), self.w) + self.b
    if self.forget_gate:
      i, j, f, o = tf.split(z, 4, axis=1)
    else:
      (i, j, o), f = tf.split(z, 3, axis=1), None
    h, c, _ = lstm.cell_update(i, j, f, o, prev_state.cell, self.forget_bias, self.cell_clip)
    return h, snt.LSTMState(hidden=h, cell=c)


class MetaLSTM(snt.Module):
  """Input (x_j, y_{j-1}) -> LSTM(lstm_cells) -> tanh(hidden_units) -> linear -> yhat_j.

  Weights: G H (3 + H) + G H (LSTM, G = 3 gates without forget gate, 4 with) + H K + K (hidden) +
  K + 1 (output). The default H = 32, K = 48 without forget gate has 3,456 + 1,584 + 49 = 5,089
  ("roughly 5000 weights", Schmidhuber's description of the 2001 nets); with a forget gate 6,241.

  Args:
    lstm_cells: H, memory cells of the LSTM layer.
    hidden_units: K, units of the tanh layer between the LSTM and the output (Bosc 2016's
      description of the 2001 architecture).
    forget_gate, forget_bias, cell_clip: see `LSTMCell`.
    seed: stateless initialisation seed.
    dtype: variable dtype.
    name: module name.
  """

  def __init__(self, lstm_cells: int = 32, hidden_units: int = 48, forget_gate: bool = False,
               forget_bias: float = 1.0, cell_clip: Optional[float] = None, seed: int = 0,
               dtype=tf.float32, name: Optional[str] = None):
    super().__init__(name=name or "meta_lstm")
    if int(hidden_units) <= 0:
      raise errors.ConfigError(f"hidden_units must be positive, got {hidden_units}.")
    self.lstm_cells = int(lstm_cells)
    self.hidden_units = int(hidden_units)
    self.seed = int(seed)
    self.dtype = tf.as_dtype(dtype)
    self.cell = LSTMCell(INPUT_SIZE, self.lstm_cells, forget_gate=forget_gate,
                         forget_bias=forget_bias, cell_clip=cell_clip, seed=self.seed,
                         dtype=self.dtype)
    h, k = self.lstm_cells, self.hidden_units
    with self.name_scope:
      self.hidden_w = tf.Variable(tf.random.stateless_truncated_normal(
          [h, k], seed=[self.seed, 1], stddev=h ** -0.5, dtype=self.dtype), name="hidden/w")
      self.hidden_b = tf.Variable(tf.zeros([k], self.dtype), name="hidden/b")
      self.output_w = tf.Variable(tf.random.stateless_truncated_normal(
          [k, 1], seed=[self.seed, 2], stddev=k ** -0.5, dtype=self.dtype), name="output/w")
      self.output_b = tf.Variable(tf.zeros([1], self.dtype), name="output/b")

  def weights_by_key(self) -> Dict[str, tf.Variable]:
    """Every weight by a stable key (the keys of the saved `.npz`)."""
    return {"lstm/w": self.cell.w, "lstm/b": self.cell.b, "hidden/w": self.hidden_w,
            "hidden/b": self.hidden_b, "output/w": self.output_w, "output/b": self.output_b}

  def num_weights(self) -> int:
    """The number of scalar weights (meta-parameters)."""
    return int(sum(np.prod(v.shape) for v in self.weights_by_key().values()))

  def initial_state(self, batch_size) -> snt.LSTMState:
    return self.cell.initial_state(batch_size)

  def step(self, inputs: tf.Tensor, state: snt.LSTMState) -> Tuple[tf.Tensor, snt.LSTMState]:
    """One example: inputs [n, 3] = (x_j, y_{j-1}) -> (yhat_j [n], next state)."""
    h, state = self.cell(inputs, state)
    hidden = tf.tanh(tf.matmul(h, self.hidden_w) + self.hidden_b)
    return (tf.matmul(hidden, self.output_w) + self.output_b)[:, 0], state

  def __call__(self, x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
    """Predictions for whole sequences, from a fresh state.

    Args:
      x: inputs [batch, length, 2].
      y: targets [batch, length]; the prediction of y_j only sees y_0 .. y_{j-1}.

    Returns:
      yhat [batch, length].
    """
    inputs = sequence_inputs(x, y)
    length = tf.shape(inputs)[1]
    state = self.initial_state(tf.shape(inputs)[0])
    outputs = tf.TensorArray(self.dtype, size=length)
    time_major = tf.transpose(inputs, [1, 0, 2])
    for j in tf.range(length):
      yhat, state = self.step(time_major[j], state)
      outputs = outputs.write(j, yhat)
    return tf.transpose(outputs.stack())

  def get_config(self) -> dict:
    return {"lstm_cells": self.lstm_cells, "hidden_units": self.hidden_units,
            "forget_gate": self.cell.forget_gate, "forget_bias": self.cell.forget_bias,
            "cell_clip": self.cell.cell_clip, "seed": self.seed, "dtype": self.dtype.name}


def sequence_inputs(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
  """u_j = (x_j, y_{j-1}) with y_{-1} = 0: [batch, length, 3] from x [b, l, 2] and y [b, l]."""
  y_prev = tf.concat([tf.zeros_like(y[:, :1]), y[:, :-1]], axis=1)
  return tf.concat([x, y_prev[..., None]], axis=-1)


def probe_curves(model: MetaLSTM, instance: Dict[str, tf.Tensor], num_examples: int,
                 probes: tf.Tensor, probe_weights: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Learning curves of the frozen net on streams (compile with `tf.function`).

  After n labelled examples (n = 0..N) the net's predictor is x -> net(state_n, (x, y_{n-1}))
  (state_n has read inputs 0..n-1; the label y_{n-1} arrives with the next input). Its expected
  squared error over x ~ U is estimated with the probe rule (`task_h.probe_points`).

  Args:
    model: the meta-LSTM.
    instance: streams from `TaskH.sample` with at least `num_examples` examples.
    num_examples: N.
    probes: [P, 2] probe inputs; probe_weights: [P], summing to 1.

  Returns:
    `(online_errors [F, N], probe_mse [F, N + 1])`: online_errors[:, n] = (yhat_n - y_n)^2, the
    prediction of example n made before its label; probe_mse[:, n] = E_x[(pred_n(x) - f(x))^2].
  """
  x, y, a = instance["x"][:, :num_examples], instance["y"][:, :num_examples], instance["a"]
  num = tf.shape(a)[0]
  rows = tf.shape(probes)[0] + 1
  target = tf.einsum("pk,nk->np", task_h_lib.features(probes), a)
  probe_x = tf.tile(probes[None], [num, 1, 1])

  def run(state, y_last, x_next):
    """Rows [F, P + 1]: the P probes and the real next input x_next, in one LSTM step."""
    u_x = tf.concat([probe_x, x_next[:, None, :]], axis=1)
    u = tf.concat([u_x, tf.tile(y_last[:, None, None], [1, rows, 1])], axis=-1)
    tiled = tf.nest.map_structure(lambda s: tf.repeat(s, rows, axis=0), state)
    yhat, new_state = model.step(tf.reshape(u, [-1, INPUT_SIZE]), tiled)
    yhat = tf.reshape(yhat, [num, rows])
    mse = tf.reduce_sum(tf.square(yhat[:, :-1] - target) * probe_weights, -1)
    new_state = tf.nest.map_structure(
        lambda new, old: tf.ensure_shape(tf.reshape(new, [num, rows, -1])[:, -1], old.shape),
        new_state, state)
    return yhat[:, -1], mse, new_state

  state = model.initial_state(num)
  y_last = tf.zeros([num], model.dtype)
  errors = tf.TensorArray(model.dtype, size=num_examples)
  mses = tf.TensorArray(model.dtype, size=num_examples + 1)
  for n in tf.range(num_examples):
    y_n = tf.gather(y, n, axis=1)
    yhat, mse, state = run(state, y_last, tf.gather(x, n, axis=1))
    errors = errors.write(n, tf.square(yhat - y_n))
    mses = mses.write(n, mse)
    y_last = y_n
  _, mse, _ = run(state, y_last, x[:, -1])
  mses = mses.write(num_examples, mse)
  return tf.transpose(errors.stack()), tf.transpose(mses.stack())


# ---- saving and loading ---------------------------------------------------------------------


def save_meta_lstm(model: MetaLSTM, directory, metadata: Optional[dict] = None) -> Path:
  """Writes `meta_lstm.json` ({"model": config, "metadata": ...}) and `meta_lstm.npz`, atomically
  (the library's `serialization.save_weights_and_config`).

  (Not `config.json` / `weights.npz`: this is a learner, not an optimizer, and must not be listed
  or loaded as a shipped optimizer by `l2l_tf.optimizers.load_optimizer`.)
  """
  weights = {k: v.numpy() for k, v in model.weights_by_key().items()}
  return serialization.save_weights_and_config(
      directory, weights, WEIGHTS_FILE, CONFIG_FILE,
      {"model": model.get_config(), "metadata": metadata or {}})


def load_meta_lstm(directory) -> Tuple[MetaLSTM, dict]:
  """Rebuilds a saved meta-LSTM; returns `(model, metadata)`.

  Raises:
    FileNotFoundError: the directory lacks the files.
    ValueError: the weights do not match the saved architecture.
  """
  directory = Path(directory)
  for name in (CONFIG_FILE, WEIGHTS_FILE):
    if not (directory / name).is_file():
      raise FileNotFoundError(f"No saved meta-LSTM in {directory}: {name} is missing.")
  saved = json.loads((directory / CONFIG_FILE).read_text())
  model = MetaLSTM(**saved["model"])
  expected = model.weights_by_key()
  with np.load(directory / WEIGHTS_FILE) as data:
    weights = {k: data[k] for k in data.files}
  if set(weights) != set(expected):
    raise errors.ConfigError(f"{directory / WEIGHTS_FILE} holds {sorted(weights)}, expected "
                     f"{sorted(expected)}.")
  for key, var in expected.items():
    if tuple(weights[key].shape) != tuple(var.shape):
      raise errors.ConfigError(f"{key}: saved shape {weights[key].shape}, expected {var.shape}.")
    var.assign(weights[key])
  return model, saved.get("metadata", {})


# ---- meta-training ----------------------------------------------------------------------------


@dataclasses.dataclass
class MetaTrainConfig:
  """Meta-training settings (design note Sec. 1.4: Adam 1e-3, batch 64, sequences of 100)."""
  num_updates: int = 4000
  batch_size: int = 64
  sequence_length: int = 100
  learning_rate: float = 1e-3
  clip_global_norm: Optional[float] = None
  validation_every: int = 250
  num_validation_functions: int = 256
  checkpoint_every: int = 250
  seed: int = 0

  def validate(self):
    """Raises ValueError naming the bad setting."""
    for name in ("num_updates", "batch_size", "sequence_length", "validation_every",
                 "num_validation_functions", "checkpoint_every"):
      if getattr(self, name) <= 0:
        raise errors.ConfigError(f"{name} must be positive, got {getattr(self, name)}.")
    if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
      raise errors.ConfigError(f"learning_rate must be a positive number, got {self.learning_rate}.")
    if self.clip_global_norm is not None and not self.clip_global_norm > 0:
      raise errors.ConfigError(f"clip_global_norm must be positive, got {self.clip_global_norm}.")


class MetaLSTMTrainer:
  """Meta-trains a `MetaLSTM` by BPTT on task H, checkpointing to `output_dir` and resuming.

  Update u uses the training functions `TaskH.streams("train", batch, length, seed, index=u)`, so a
  resumed run sees exactly the data of an uninterrupted one. Every `validation_every` updates the
  mean squared prediction error on fixed validation functions is computed and the best weights are
  kept (early stopping); `export` writes them. The loop, its checkpoints (the weights, Adam's
  state, the update counter, the best weights and the CPU seconds spent) and the non-finite guard
  are the library's (`l2l_tf.meta.TrainingRun`).

  Args:
    model: the meta-LSTM to train (its variables are updated in place).
    config: `MetaTrainConfig`.
    output_dir: checkpoints and `run_config.json`; a directory holding a run with other settings
      is refused.
    task: the function distribution (default `TaskH()`).
    log_fn: progress messages.

  Raises:
    ValueError: bad settings.
    l2l_tf.meta.TrainingError: `output_dir` holds a different run.
  """

  def __init__(self, model: MetaLSTM, config: MetaTrainConfig, output_dir,
               task: Optional[task_h_lib.TaskH] = None, log_fn: Callable[[str], None] = print):
    config.validate()
    self.model = model
    self.config = config
    self.task = task or task_h_lib.TaskH()
    self.variables = list(model.weights_by_key().values())
    self.meta_optimizer = baselines.Adam(config.learning_rate, name="meta_adam")
    self.adam_state = tf.nest.map_structure(
        lambda t: tf.Variable(t, trainable=False),
        self.meta_optimizer.initial_state(self.variables))
    self.run = checkpointing.TrainingRun(
        output_dir, self._description(), self.variables,
        {"model": model, "adam_state": self.adam_state}, unit="update", log_fn=log_fn,
        max_to_keep=2, track_cpu_seconds=True)
    self._valid = self.task.streams("valid", config.num_validation_functions,
                                    config.sequence_length, config.seed)
    self._update_fn = tf.function(self._update)
    self._loss_fn = tf.function(self._mean_loss)

  def _description(self) -> dict:
    config = dataclasses.asdict(self.config)
    for key in ("num_updates", "validation_every", "checkpoint_every"):
      config.pop(key)  # Extending a run is a resume, not a new run.
    # "loop": checkpoints of the library's TrainingRun (not readable by the earlier own loop).
    return {"model": self.model.get_config(), "task": self.task.get_config(), "train": config,
            "loop": "l2l_tf.meta.TrainingRun"}

  def _mean_loss(self, x, y):
    """Mean over sequences and examples of (yhat_j - y_j)^2."""
    return tf.reduce_mean(tf.square(self.model(x, y) - y))

  def _update(self, x, y):
    """One Adam step on the meta-loss mean_b sum_j (yhat_j - y_j)^2 (BPTT through the sequence)."""
    with tf.GradientTape() as tape:
      per_example = tf.square(self.model(x, y) - y)
      meta_loss = tf.reduce_mean(tf.reduce_sum(per_example, axis=1))
    grads = tape.gradient(meta_loss, self.variables)
    applied = checkpointing.apply_if_finite(meta_loss, grads, self.variables, self.meta_optimizer,
                                            self.adam_state, self.config.clip_global_norm)
    return meta_loss / tf.cast(tf.shape(y)[1], meta_loss.dtype), applied

  def validation_loss(self) -> float:
    """Mean squared prediction error of the current weights on the validation functions."""
    return float(self._loss_fn(self._valid["x"], self._valid["y"]))

  def _run_update(self, u: int) -> float:
    cfg = self.config
    batch = self.task.streams("train", cfg.batch_size, cfg.sequence_length, cfg.seed, index=u)
    loss, applied = self._update_fn(batch["x"], batch["y"])
    self.run.count_step(applied, f"update {u}")
    return float(loss)

  def train(self) -> dict:
    """Runs updates until `num_updates` (resuming); returns a summary."""
    cfg = self.config
    self.run.train(cfg.num_updates, self._run_update, self.validation_loss, cfg.validation_every,
                   cfg.checkpoint_every, loss_name="train MSE", score_name="validation MSE")
    return {"updates": int(self.run.step.numpy()), "best_update": int(self.run.best_step.numpy()),
            "best_validation_mse": float(self.run.best_score.numpy()),
            "cpu_seconds": float(self.run.cpu_seconds.numpy()),
            "skipped_updates": int(self.run.skipped_steps.numpy())}

  def export(self, directory, metadata: Optional[dict] = None) -> Path:
    """Saves the best weights (by validation MSE) with the run's settings as metadata."""
    best = MetaLSTM(**self.model.get_config())
    for var, value in zip(best.weights_by_key().values(), self.run.best_weights):
      var.assign(value)
    meta = dict(metadata or {})
    meta.update({"task": self.task.get_config(), "train": dataclasses.asdict(self.config),
                 "updates_trained": int(self.run.step.numpy()),
                 "best_update": int(self.run.best_step.numpy()),
                 "best_validation_mse": float(self.run.best_score.numpy()),
                 "meta_training_cpu_seconds": float(self.run.cpu_seconds.numpy()),
                 "num_weights": best.num_weights()})
    return save_meta_lstm(best, directory, meta)
