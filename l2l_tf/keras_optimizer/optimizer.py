"""A trained coordinatewise LSTM optimizer as a Keras 3 optimizer, for `model.compile` and `fit`.

    model.compile(optimizer=l2l_tf.keras_optimizer.LearnedOptimizer.from_pretrained("quadratic"), ...)

The update is the library's pure step (`CoordinatewiseLSTM.step_with_weights`), run by Keras once
per model variable: the network is coordinatewise, so stepping each variable on its own gives
exactly the updates of one library `step` over all variables together (tests/test_keras_optimizer.py
checks it). The optimizer holds

* the meta-parameters, as non-trainable optimizer variables created in `__init__` (saved in
  `.keras` files, right after `iteration` and `learning_rate`), and
* per model variable of n coordinates, the LSTM state: for every layer h and c of shape
  [n, hidden], created in `build()` (4 * sum(hidden_sizes) floats per coordinate of the model:
  80 for the paper's (20, 20) net).

Keras options:

* `learning_rate` (default 1.0): a multiplier on the learned update, `delta = lr * g_t`. 1.0 is the
  trained optimizer exactly; the LSTM's state does not depend on it. Schedules and callbacks that
  change it (ReduceLROnPlateau) scale the proposals.
* `clipnorm`, `clipvalue`, `global_clipnorm`: applied by Keras before the learned optimizer sees the
  gradient, so they change its inputs (it was meta-trained on unclipped gradients).
* `weight_decay`: decoupled (as AdamW): Keras subtracts `lr * weight_decay * variable` before the
  learned update; the learned optimizer does not see it.
* `use_ema`: supported; an exponential moving average of the model's variables, independent of the
  update rule.
* `gradient_accumulation_steps=k`: supported; the learned optimizer takes one step, on the mean of
  k gradients, every k batches (its state advances once per k batches).
* `loss_scale_factor`: supported; Keras divides the gradients by it first, so the learned optimizer
  sees the unscaled gradient.

Sparse gradients (`tf.IndexedSlices`, e.g. from Embedding) are made dense: every coordinate takes a
step, as in the library, where a coordinate without gradient has gradient zero.
"""

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Dict, Mapping, Optional

import keras
import numpy as np
import tensorflow as tf

from l2l_tf.optimizers import serialization
from l2l_tf import errors

class MetaParameterMismatchError(errors.Error, ValueError):
  """The optimizer's meta-parameters are not the trained ones (they were not restored)."""


def compute_checksum(weights: Mapping[str, np.ndarray]) -> str:
  """A checksum of meta-parameter values, their keys, shapes and dtypes (bit-exact).

  Args:
    weights: key -> array, e.g. `{k: v.numpy() for k, v in serialization.variable_paths(m)}`.

  Returns:
    "sha256:<hex>", equal for two sets of meta-parameters iff they are bitwise identical.
  """
  digest = hashlib.sha256()
  for key in sorted(weights):
    value = np.asarray(weights[key])
    value = np.ascontiguousarray(value.astype(value.dtype.newbyteorder("<"), copy=False))
    digest.update(f"{key}|{value.dtype.name}|{value.shape}|".encode())
    digest.update(value.tobytes())
  return "sha256:" + digest.hexdigest()


check_supported = serialization.select_coordinatewise


def _shipped_name_or_absolute(name_or_path, path: Path) -> str:
  text = str(name_or_path)
  if "/" not in text and path.parent == serialization.PRETRAINED_DIR:
    return text
  return str(path.resolve())


def _load_from_source(source: str, group: Optional[str]):
  """The meta-parameters saved at `source`, or None when they cannot be loaded."""
  try:
    module = serialization.load_optimizer(source)
  except (serialization.OptimizerLoadError, OSError, ValueError, KeyError):
    return None
  if group is not None:
    module = getattr(module, "optimizers", {}).get(group)
    if module is None:
      return None
  return {key: v.numpy() for key, v in serialization.variable_paths(module)}


@keras.saving.register_keras_serializable(package="l2l_tf")
class LearnedOptimizer(keras.optimizers.Optimizer):
  """A trained coordinatewise LSTM optimizer as a Keras optimizer (see the module docstring).

  Build it with `LearnedOptimizer.from_pretrained(name_or_path)` or
  `LearnedOptimizer.from_optimizer(module)`. The constructor is what `from_config` calls.

  Args:
    optimizer_config: the architecture, a `CoordinatewiseLSTM.get_config()` dict.
    meta_parameters: key -> array, the keys of `serialization.variable_paths`. When None, the
      values are restored later (from a `.keras` file) or loaded from `source` if its checksum is
      `meta_checksum`; until then the optimizer refuses to apply updates.
    meta_checksum: `compute_checksum()` of the trained meta-parameters. Stored in the config; after
      loading, and before the first update, the optimizer checks its meta-parameters against it.
    source: where the meta-parameters were loaded from (a shipped name or an absolute path).
    group: the net used, for a grouped optimizer at `source`.
    learning_rate: a multiplier on the learned update (1.0: the trained optimizer unchanged);
      float, schedule or callable as for any Keras optimizer.
    weight_decay, clipnorm, clipvalue, global_clipnorm, use_ema, ema_momentum,
    ema_overwrite_frequency, loss_scale_factor, gradient_accumulation_steps, name: as for
      `keras.optimizers.Optimizer`; see the module docstring for their effect here.

  Raises:
    ValueError: an unsupported optimizer (see `check_supported`), meta-parameters that do not match
      the architecture or `meta_checksum`, or neither meta-parameters nor a checksum.
  """

  def __init__(self,
               optimizer_config: dict,
               meta_parameters: Optional[Mapping[str, np.ndarray]] = None,
               meta_checksum: Optional[str] = None,
               source: Optional[str] = None,
               group: Optional[str] = None,
               learning_rate=1.0,
               weight_decay=None,
               clipnorm=None,
               clipvalue=None,
               global_clipnorm=None,
               use_ema=False,
               ema_momentum=0.99,
               ema_overwrite_frequency=None,
               loss_scale_factor=None,
               gradient_accumulation_steps=None,
               name="learned_optimizer",
               **kwargs):
    from l2l_tf.optimizers import make_optimizer  # pylint: disable=g-import-not-at-top
    if isinstance(learning_rate, int) and not isinstance(learning_rate, bool):
      learning_rate = float(learning_rate)
    super().__init__(
        learning_rate=learning_rate, weight_decay=weight_decay, clipnorm=clipnorm,
        clipvalue=clipvalue, global_clipnorm=global_clipnorm, use_ema=use_ema,
        ema_momentum=ema_momentum, ema_overwrite_frequency=ema_overwrite_frequency,
        loss_scale_factor=loss_scale_factor,
        gradient_accumulation_steps=gradient_accumulation_steps, name=name, **kwargs)
    config = check_supported(dict(optimizer_config))
    self._config_json = json.dumps(config, sort_keys=True)
    self.source = source
    self.group = group
    # The architecture: its step_with_weights is the update rule. Its own (zero) variables are never
    # read; object.__setattr__ keeps it out of Keras' and TensorFlow's variable tracking.
    module = make_optimizer(dict(config, initializer="zeros"))
    object.__setattr__(self, "_lstm", module)
    expected = {key: tuple(v.shape) for key, v in serialization.variable_paths(module)}
    if set(module.meta_parameters()) != set(expected):
      raise errors.ConfigError(f"CoordinatewiseLSTM.meta_parameters() keys "
                              f"{sorted(module.meta_parameters())} differ from its variable paths "
                              f"{sorted(expected)}.")
    self._meta_keys = sorted(expected)

    if meta_parameters is not None:
      meta_parameters = self._checked_values(meta_parameters, expected)
      actual = compute_checksum(meta_parameters)
      if meta_checksum is not None and meta_checksum != actual:
        raise MetaParameterMismatchError(
            f"The given meta-parameters have checksum {actual}, not the expected {meta_checksum}.")
      meta_checksum = actual
    elif meta_checksum is None:
      raise errors.ConfigError(
          "LearnedOptimizer needs trained meta-parameters: use "
          "LearnedOptimizer.from_pretrained(name_or_path) or from_optimizer(module).")
    elif source is not None:
      loaded = _load_from_source(source, group)
      if loaded is not None and compute_checksum(loaded) == meta_checksum:
        meta_parameters = self._checked_values(loaded, expected)
    self.meta_checksum = meta_checksum
    dtype = module.dtype.name
    self._meta_variables = []
    for key in self._meta_keys:
      value = (np.zeros(expected[key], dtype) if meta_parameters is None
               else meta_parameters[key])
      self._meta_variables.append(self.add_variable(
          shape=expected[key], initializer=_constant(value), dtype=dtype,
          name="meta_" + key.replace("/", "_")))
    # Variables created so far (iteration, learning_rate, meta-parameters): what a `.keras` file
    # of this optimizer holds when it was saved before it was built.
    self._num_unbuilt_variables = len(self.variables)
    self._verified = False
    self._states = []

  @classmethod
  def from_pretrained(cls, name_or_path, group: Optional[str] = None, **kwargs):
    """Loads a shipped ("quadratic", "mnist") or user-trained optimizer.

    Args:
      name_or_path: a shipped name, a directory with config.json and weights.npz, or the
        `--output_dir` of `python -m l2l_tf.train` (see `serialization.resolve_optimizer_path`).
      group: for a grouped optimizer, the net to use for every variable.
      **kwargs: Keras optimizer arguments (`learning_rate`, `clipnorm`, `name`, ...).

    Returns:
      A `LearnedOptimizer`.

    Raises:
      l2l_tf.optimizers.OptimizerLoadError: nothing saved there, or files that do not match.
      ValueError: an optimizer Keras cannot run (see `check_supported`).
    """
    module, path, _ = serialization.load_coordinatewise(name_or_path, group)
    return cls.from_optimizer(module, source=_shipped_name_or_absolute(name_or_path, path),
                              group=group, **kwargs)

  @classmethod
  def from_optimizer(cls, module, **kwargs):
    """Wraps a `CoordinatewiseLSTM` (e.g. one just meta-trained), copying its meta-parameters.

    Args:
      module: the library optimizer.
      **kwargs: further constructor arguments (`learning_rate`, `clipnorm`, `name`, ...).

    Returns:
      A `LearnedOptimizer` whose updates are `module.step`'s.
    """
    weights = {key: v.numpy() for key, v in serialization.variable_paths(module)}
    return cls(module.get_config(), meta_parameters=weights, **kwargs)

  @staticmethod
  def _checked_values(values, expected) -> Dict[str, np.ndarray]:
    missing = sorted(set(expected) - set(values))
    extra = sorted(set(values) - set(expected))
    if missing or extra:
      raise MetaParameterMismatchError(
          f"Meta-parameters do not match the architecture: missing {missing}, unexpected {extra}.")
    out = {}
    for key, shape in expected.items():
      value = np.asarray(values[key])
      if value.shape != shape:
        raise MetaParameterMismatchError(
            f"Meta-parameter {key} has shape {value.shape}; the architecture needs {shape}.")
      out[key] = value
    return out

  @property
  def optimizer_config(self) -> dict:
    """The architecture (a `CoordinatewiseLSTM.get_config()` dict)."""
    return json.loads(self._config_json)

  @property
  def learned_optimizer(self):
    """The library `CoordinatewiseLSTM` whose `step_with_weights` this optimizer runs."""
    return self._lstm

  def meta_parameter_values(self) -> Dict[str, np.ndarray]:
    """The current meta-parameters, key -> array."""
    with tf.init_scope():
      return {key: np.asarray(v.numpy()) for key, v in zip(self._meta_keys, self._meta_variables)}

  def verify_meta_parameters(self):
    """Checks that the meta-parameters are the trained ones (their checksum is the config's).

    Raises:
      MetaParameterMismatchError: they differ, e.g. they were never restored from a `.keras` file.
    """
    actual = compute_checksum(self.meta_parameter_values())
    if actual != self.meta_checksum:
      self._verified = False
      raise MetaParameterMismatchError(
          f"Optimizer {self.name!r}: the learned optimizer's meta-parameters (checksum {actual}) "
          f"are not the trained ones (checksum {self.meta_checksum}, from its config; source "
          f"{self.source!r}). They were not restored: load the model with "
          "keras.models.load_model from the .keras file saved with this optimizer, or build the "
          "optimizer with LearnedOptimizer.from_pretrained.")
    self._verified = True

  def build(self, variables):
    """Creates the LSTM state (h, c per layer, [size, hidden]) of every model variable."""
    if self.built:
      return
    strategy = getattr(self, "_distribution_strategy", None)
    if (strategy is not None and tf.distribute.has_strategy()
        and tf.distribute.get_strategy() is not strategy):
      raise errors.ConfigError(
          f"Optimizer {self.name!r} was created outside the distribution strategy it is used "
          "with: create the LearnedOptimizer inside `with strategy.scope():` (as the model and "
          "any Keras optimizer), so its meta-parameters and states are mirrored.")
    super().build(variables)
    dtype = self._lstm.dtype.name
    self._states = []
    for variable in variables:
      if self._overwrite_variable_with_gradient(variable):
        self._states.append(None)
        continue
      size = int(np.prod(variable.shape))
      prefix = (variable.path if hasattr(variable, "path") else variable.name)
      prefix = str(prefix).replace("/", "_").replace(":", "_")
      layers = []
      colocate = (strategy.extended.colocate_vars_with(_tf_variable(variable))
                  if strategy is not None else contextlib.nullcontext())
      with colocate:
        for layer, hidden in enumerate(self._lstm.hidden_sizes):
          layers.append(tuple(
              self.add_variable(shape=(size, hidden), initializer="zeros", dtype=dtype,
                                name=f"{prefix}_lstm{layer}_{part}")
              for part in ("h", "c")))
        if self._lstm.input_state_size:  # The preprocessing's state (NormalizedMoments).
          layers.append(self.add_variable(shape=(size, self._lstm.input_state_size),
                                          initializer="zeros", dtype=dtype,
                                          name=f"{prefix}_inputs"))
      self._states.append(tuple(layers))

  def lstm_state(self, variable):
    """The LSTM state of a model variable: ((h, c) per layer), variables [size, hidden], then the
    preprocessing's state [size, input_state_size] if it has one."""
    return self._states[self._get_variable_index(variable)]

  def apply(self, grads, trainable_variables=None):
    """As Keras' `apply`; first (once, when traced) checks the meta-parameters."""
    if not self.built and trainable_variables is not None:
      with keras.name_scope(self.name, caller=self):
        self.build(list(trainable_variables))
    if not self._verified:
      self.verify_meta_parameters()
    return super().apply(grads, trainable_variables)

  def update_step(self, gradient, variable, learning_rate):
    """One library step on this variable's coordinates: variable += learning_rate * update."""
    state_variables = self._states[self._get_variable_index(variable)]
    dtype = self._lstm.dtype
    if isinstance(gradient, tf.IndexedSlices):
      gradient = tf.convert_to_tensor(gradient)
    grad = tf.cast(gradient, dtype)
    state = tf.nest.map_structure(_read, state_variables)
    weights = {key: _read(v) for key, v in zip(self._meta_keys, self._meta_variables)}
    updates, new_state = self._lstm.step_with_weights(weights, [grad], state)
    tf.nest.map_structure(self.assign, state_variables, new_state)
    update = tf.cast(updates[0], variable.dtype) * tf.cast(learning_rate, variable.dtype)
    self.assign_add(variable, update)

  def load_own_variables(self, store):
    """Restores the optimizer from a `.keras` / `.weights.h5` file, failing on any mismatch.

    Keras' default warns and skips when the number of variables differs, which would leave the
    meta-parameters untrained; here that is an error. A file saved before the optimizer was built
    (before training) holds only iteration, learning rate and meta-parameters: those are restored
    and the LSTM states stay at their initial zeros.

    Raises:
      ValueError: the file holds a different number of optimizer variables.
      MetaParameterMismatchError: the restored meta-parameters are not the trained ones.
    """
    num_saved = len(store.keys())
    if num_saved == len(self.variables):
      super().load_own_variables(store)
    elif num_saved == self._num_unbuilt_variables:
      for i, variable in enumerate(self.variables[:num_saved]):
        variable.assign(store[str(i)])
    else:
      raise errors.ConfigError(
          f"Cannot restore optimizer {self.name!r}: the file holds {num_saved} optimizer variables "
          f"but this LearnedOptimizer has {len(self.variables)} ({self._num_unbuilt_variables} "
          f"before building, incl. {len(self._meta_keys)} meta-parameters, then an LSTM state per "
          "model variable). The model or the optimizer's settings differ from the saved ones.")
    self.verify_meta_parameters()

  def set_weights(self, weights):
    """As Keras' `set_weights`, then checks the meta-parameters."""
    super().set_weights(weights)
    self.verify_meta_parameters()

  def get_config(self):
    config = super().get_config()
    config.update({
        "optimizer_config": self.optimizer_config,
        "meta_checksum": self.meta_checksum,
        "source": self.source,
        "group": self.group,
    })
    return config


def _read(variable):
  """The value of a Keras or TensorFlow variable as a tensor."""
  return tf.convert_to_tensor(variable.value if isinstance(variable, keras.Variable) else variable)


def _tf_variable(variable):
  return variable.value if isinstance(variable, keras.Variable) else variable


def _constant(value):
  value = np.array(value)

  def initializer(shape, dtype=None):
    del shape
    return tf.constant(value, dtype=dtype)

  return initializer
