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

The review's coordinatewise fast-weight optimizers (`FastWeightOptimizer`, additive or delta rule,
and `SelfReferentialOptimizer`, issue 19) run the same way: `from_pretrained` / `from_optimizer`
take them, their state per model variable has the structure of their `initial_state` (e.g. the
fast matrices [n, d, d] and reads [n, d]), and their own `step` runs with this optimizer's
meta-parameters read in place of the module's variables (`snt.custom_variable_getter`).

Sparse gradients (`tf.IndexedSlices`, e.g. from Embedding) are made dense: every coordinate takes a
step, as in the library, where a coordinate without gradient has gradient zero.

Grouped optimizers (several nets, e.g. the conv-net optimizers of paper Fig. 7: one LSTM for the
convolution kernels, one for everything else) run with every net: each model variable is stepped by
the net of its group, chosen by `group_by`:

* `"layer_type"` (the default for nets named "conv" and "fc"): convolution kernels go to "conv",
  everything else (biases, batch normalisation, dense layers) to "fc", as in meta-training
  (`l2l_tf.problems.conv.parameter_groups`). With `from_pretrained(..., model=model)` the kernels are
  found by the layers' classes (`layer_type_groups`); without a model, a convolution kernel is a
  variable of rank >= 3 (every Keras convolution kernel; no Dense, BatchNormalization or bias
  variable has that rank; EinsumDense and attention kernels do: pass the model for those).
  With a model, the assignment is stored as a list in the order of `model.trainable_variables`
  (variable paths change when a model is saved and loaded; the order does not).
* a dict {variable path: net name} covering every trainable variable, or such a list.

`group="conv"` instead runs one net on every variable.
"""

import contextlib
import functools
import hashlib
import json
from pathlib import Path
from typing import Dict, Mapping, Optional

import keras
import numpy as np
import sonnet as snt
import tensorflow as tf

from l2l_tf.optimizers import serialization
from l2l_tf.problems import conv
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


# The coordinatewise nets Keras runs one variable at a time: the LSTM (its `step_with_weights`) and
# the fast-weight optimizers of the review (their `step`, with this optimizer's meta-parameters
# read in place of the module's variables through `snt.custom_variable_getter`).
KERAS_NETS = ("lstm", "fast_weights", "srwm")
check_supported = functools.partial(serialization.select_coordinatewise, names=KERAS_NETS)


def _shipped_name_or_absolute(name_or_path, path: Path) -> str:
  text = str(name_or_path)
  if "/" not in text and path.parent == serialization.PRETRAINED_DIR:
    return text
  return str(path.resolve())


def _load_from_source(source: str, group: Optional[str], grouped: bool = False):
  """The meta-parameters saved at `source`, or None when they cannot be loaded."""
  try:
    module = serialization.load_optimizer(source)
  except (serialization.OptimizerLoadError, OSError, ValueError, KeyError):
    return None
  if grouped:
    nets = getattr(module, "optimizers", None)
    return None if nets is None else _grouped_values(nets)
  if group is not None:
    module = getattr(module, "optimizers", {}).get(group)
    if module is None:
      return None
  return {key: v.numpy() for key, v in serialization.variable_paths(module)}


def _grouped_values(nets) -> Dict[str, np.ndarray]:
  """{"<net>/<key>": value} over the nets of a grouped optimizer."""
  return {f"{name}/{key}": v.numpy() for name, net in nets.items()
          for key, v in serialization.variable_paths(net)}


# The Keras convolution layers whose kernels the "conv" net of a conv-net optimizer steps.
_CONV_LAYERS = tuple(getattr(keras.layers, name) for name in (
    "Conv1D", "Conv2D", "Conv3D", "Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose",
    "SeparableConv1D", "SeparableConv2D", "DepthwiseConv1D", "DepthwiseConv2D")
                     if hasattr(keras.layers, name))
_CONV_KERNELS = ("kernel", "depthwise_kernel", "pointwise_kernel")
LAYER_TYPE = "layer_type"
# The nets group_by=LAYER_TYPE assigns to: the conv-net optimizers' (`conv.parameter_groups`).
LAYER_TYPE_NETS = frozenset({conv.CONV_GROUP, conv.FC_GROUP})


def _walk_layers(layer):
  yield layer
  for child in getattr(layer, "layers", None) or ():
    if child is not layer:
      yield from _walk_layers(child)


def layer_type_groups(model) -> Dict[str, str]:
  """{variable path: "conv" | "fc"} for `model`'s trainable variables, by layer class.

  The kernels of Keras convolution layers (Conv*D, Conv*DTranspose, SeparableConv*D,
  DepthwiseConv*D) go to "conv"; every other variable (their biases, batch normalisation, dense
  layers, ...) to "fc", as the conv-net optimizers were meta-trained
  (`l2l_tf.problems.conv.parameter_groups`).
  """
  kernels = set()
  for layer in _walk_layers(model):
    if isinstance(layer, _CONV_LAYERS):
      for attribute in _CONV_KERNELS:
        variable = getattr(layer, attribute, None)
        if variable is not None:
          kernels.add(_variable_path(variable))
  return {_variable_path(v): (conv.CONV_GROUP if _variable_path(v) in kernels else conv.FC_GROUP)
          for v in model.trainable_variables}


def _variable_path(variable) -> str:
  return str(variable.path if hasattr(variable, "path") else variable.name)


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
    group: for a grouped optimizer, the one net to run on every variable (`optimizer_config` is
      then that net's config).
    group_by: for a grouped optimizer run with all its nets (`optimizer_config` is the grouped
      config, `group` is None): which net steps which variable, `"layer_type"` (the default for nets
      "conv" and "fc"), {variable path: net name}, or a list of net names, one per trainable
      variable in the order Keras builds the optimizer with (see the module docstring).
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
               group_by=None,
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
    optimizer_config = dict(optimizer_config)
    self.grouped = optimizer_config.get("name") == "grouped" and group is None
    if self.grouped:
      members = optimizer_config.get("optimizers") or {}
      net_configs = {name: check_supported(dict(c)) for name, c in sorted(members.items())}
      if group_by is None and set(net_configs) == LAYER_TYPE_NETS:
        group_by = LAYER_TYPE
      group_by = self._checked_group_by(group_by, sorted(net_configs))
      # The positional `assignment` belongs to the optimizee it was trained on, not to a model.
      config = {"name": "grouped", "optimizers": net_configs}
    else:
      if group_by is not None:
        raise errors.ConfigError(
            f"group_by={group_by!r} is for grouped optimizers run with all their nets; this "
            "optimizer runs one coordinatewise LSTM on every variable (drop group_by).")
      config = check_supported(optimizer_config)
      net_configs = {None: config}
    self.group_by = group_by
    self._config_json = json.dumps(config, sort_keys=True)
    self.source = source
    self.group = group
    # The architectures: their step_with_weights is the update rule. Their own (zero) variables are
    # never read; object.__setattr__ keeps them out of Keras' and TensorFlow's variable tracking.
    nets = {name: make_optimizer(dict(c, initializer="zeros") if c["name"] == "lstm" else c)
            for name, c in net_configs.items()}
    object.__setattr__(self, "_nets", nets)
    expected = {}
    self._net_keys = {}
    for name, module in nets.items():
      paths = {key: tuple(v.shape) for key, v in serialization.variable_paths(module)}
      if is_lstm(module) and set(module.meta_parameters()) != set(paths):
        raise errors.ConfigError(f"CoordinatewiseLSTM.meta_parameters() keys "
                                f"{sorted(module.meta_parameters())} differ from its variable "
                                f"paths {sorted(paths)}.")
      prefix = "" if name is None else name + "/"
      self._net_keys[name] = {prefix + key: key for key in paths}
      expected.update({prefix + key: shape for key, shape in paths.items()})
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
      loaded = _load_from_source(source, group, self.grouped)
      if loaded is not None and compute_checksum(loaded) == meta_checksum:
        meta_parameters = self._checked_values(loaded, expected)
    self.meta_checksum = meta_checksum
    dtype = next(iter(nets.values())).dtype.name
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
  def from_pretrained(cls, name_or_path, group: Optional[str] = None, group_by=None, model=None,
                      **kwargs):
    """Loads a shipped ("quadratic", "mnist", "conv_fashion_mnist_10", ...) or user-trained optimizer.

    Args:
      name_or_path: a shipped name, a directory with config.json and weights.npz, or the
        `--output_dir` of `python -m l2l_tf.train` (see `serialization.resolve_optimizer_path`).
      group: for a grouped optimizer, one net to use for every variable.
      group_by: for a grouped optimizer run with all its nets: `"layer_type"` (the default for the
        conv-net optimizers' nets "conv" and "fc") or {variable path: net name}.
      model: the Keras model to be trained; with `group_by="layer_type"` its layers' classes pick
        the convolution kernels (`layer_type_groups`) instead of the variables' ranks.
      **kwargs: Keras optimizer arguments (`learning_rate`, `clipnorm`, `name`, ...).

    Returns:
      A `LearnedOptimizer`.

    Raises:
      l2l_tf.optimizers.OptimizerLoadError: nothing saved there, or files that do not match.
      ValueError: an optimizer Keras cannot run (see `check_supported`).
    """
    path, saved = serialization.read_config(name_or_path)
    source = _shipped_name_or_absolute(name_or_path, path)
    if saved["optimizer"].get("name") == "grouped" and group is None:
      if model is not None and group_by in (None, LAYER_TYPE):
        # By position, as model.trainable_variables (and so build()) orders them: variable paths
        # change when a model is saved and loaded again, the order does not.
        groups = layer_type_groups(model)
        group_by = [groups[_variable_path(v)] for v in model.trainable_variables]
      return cls.from_optimizer(serialization.load_optimizer(path), source=source,
                                group_by=group_by, **kwargs)
    if model is not None:
      raise errors.ConfigError("model= assigns the nets of a grouped optimizer to its variables; "
                               "this optimizer runs one net on every variable (drop model=).")
    module, path, _ = serialization.load_coordinatewise(name_or_path, group, KERAS_NETS)
    return cls.from_optimizer(module, source=source, group=group, group_by=group_by, **kwargs)

  @classmethod
  def from_optimizer(cls, module, **kwargs):
    """Wraps a `CoordinatewiseLSTM` (e.g. one just meta-trained), copying its meta-parameters.

    Args:
      module: the library optimizer.
      **kwargs: further constructor arguments (`learning_rate`, `clipnorm`, `name`, ...).

    Returns:
      A `LearnedOptimizer` whose updates are `module.step`'s.
    """
    if module.get_config().get("name") == "grouped" and kwargs.get("group") is None:
      return cls(module.get_config(), meta_parameters=_grouped_values(module.optimizers), **kwargs)
    weights = {key: v.numpy() for key, v in serialization.variable_paths(module)}
    return cls(module.get_config(), meta_parameters=weights, **kwargs)

  layer_type_groups = staticmethod(layer_type_groups)

  @staticmethod
  def _checked_group_by(group_by, nets):
    if group_by is None:
      raise errors.ConfigError(
          "This grouped optimizer assigns its nets to the parameter tensors of the optimizee it "
          "was trained on, by position, which another model does not share: run one net on "
          f"every variable with group=<name>, one of {nets}, or say which net steps which "
          "variable with group_by={variable path: net name} (group_by='layer_type' is the "
          "default only for the conv-net optimizers' nets 'conv' and 'fc').")
    if group_by == LAYER_TYPE:
      if set(nets) != LAYER_TYPE_NETS:
        raise errors.ConfigError(
            f"group_by='layer_type' needs nets named 'conv' and 'fc'; this optimizer has {nets}: "
            "pass group_by={variable path: net name}.")
      return group_by
    if isinstance(group_by, Mapping):
      names = group_by.values()
    elif isinstance(group_by, (list, tuple)):
      names = group_by
    else:
      raise errors.ConfigError(f"group_by must be 'layer_type', a dict {{variable path: net "
                               f"name}} or a list of net names (one per trainable variable, in "
                               f"order), got {group_by!r}.")
    unknown = sorted(set(names) - set(nets))
    if unknown:
      raise errors.ConfigError(f"group_by names nets {unknown}; this optimizer has {nets}.")
    if isinstance(group_by, Mapping):
      return {str(k): str(v) for k, v in group_by.items()}
    return [str(v) for v in group_by]

  def _group_of(self, variable, index: int, num_variables: int) -> Optional[str]:
    """The net that steps `variable`, the index-th of `num_variables` (None: one net for all)."""
    if not self.grouped:
      return None
    if self.group_by == LAYER_TYPE:
      return conv.CONV_GROUP if len(variable.shape) >= 3 else conv.FC_GROUP
    if isinstance(self.group_by, list):
      if len(self.group_by) != num_variables:
        raise errors.ConfigError(
            f"Optimizer {self.name!r}: group_by names a net for {len(self.group_by)} variables, "
            f"but it is built for {num_variables}; it was made for another model (build it with "
            "from_pretrained(..., model=<this model>)).")
      return self.group_by[index]
    path = _variable_path(variable)
    if path not in self.group_by:
      raise errors.ConfigError(
          f"Optimizer {self.name!r}: variable {path!r} is not in group_by, which covers "
          f"{sorted(self.group_by)}; give every trainable variable of the model a net.")
    return self.group_by[path]

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
    """The library `CoordinatewiseLSTM` whose `step_with_weights` this optimizer runs; for a
    grouped optimizer run with all its nets, {net name: CoordinatewiseLSTM}."""
    return dict(self._nets) if self.grouped else self._nets[None]

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
    self._states = []
    self._variable_nets = []
    for index, variable in enumerate(variables):
      if self._overwrite_variable_with_gradient(variable):
        self._states.append(None)
        self._variable_nets.append(None)
        continue
      net_name = self._group_of(variable, index, len(variables))
      self._variable_nets.append(net_name)
      net = self._nets[net_name]
      dtype = net.dtype.name
      size = int(np.prod(variable.shape))
      prefix = _variable_path(variable).replace("/", "_").replace(":", "_")
      layers = []
      colocate = (strategy.extended.colocate_vars_with(_tf_variable(variable))
                  if strategy is not None else contextlib.nullcontext())
      with colocate:
        if not is_lstm(net):  # A fast-weight net: its state's structure, one variable a leaf.
          state = net.initial_state([tf.zeros([size], dtype)])
          leaves = [self.add_variable(shape=tuple(t.shape), initializer="zeros", dtype=dtype,
                                      name=f"{prefix}_state{i}")
                    for i, t in enumerate(tf.nest.flatten(state))]
          self._states.append(tf.nest.pack_sequence_as(state, leaves))
          continue
        for layer, hidden in enumerate(net.hidden_sizes):
          layers.append(tuple(
              self.add_variable(shape=(size, hidden), initializer="zeros", dtype=dtype,
                                name=f"{prefix}_lstm{layer}_{part}")
              for part in ("h", "c")))
        if net.input_state_size:  # The preprocessing's state (NormalizedMoments).
          layers.append(self.add_variable(shape=(size, net.input_state_size),
                                          initializer="zeros", dtype=dtype,
                                          name=f"{prefix}_inputs"))
      self._states.append(tuple(layers))

  def lstm_state(self, variable):
    """The LSTM state of a model variable: ((h, c) per layer), variables [size, hidden], then the
    preprocessing's state [size, input_state_size] if it has one; for a fast-weight net its
    state's structure (e.g. {"fast": [size, d, d], "read": [size, d]})."""
    return self._states[self._get_variable_index(variable)]

  optimizer_state = lstm_state

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
    index = self._get_variable_index(variable)
    state_variables = self._states[index]
    net_name = self._variable_nets[index]
    net = self._nets[net_name]
    dtype = net.dtype
    if isinstance(gradient, tf.IndexedSlices):
      gradient = tf.convert_to_tensor(gradient)
    grad = tf.cast(gradient, dtype)
    state = tf.nest.map_structure(_read, state_variables)
    keys = self._net_keys[net_name]
    weights = {keys[key]: _read(v) for key, v in zip(self._meta_keys, self._meta_variables)
               if key in keys}
    if is_lstm(net):
      updates, new_state = net.step_with_weights(weights, [grad], state)
    else:  # The net's own step, reading these meta-parameters in place of its variables.
      by_ref = {v.ref(): weights[key] for key, v in serialization.variable_paths(net)}
      with snt.custom_variable_getter(lambda v: by_ref.get(v.ref(), v)):
        updates, new_state = net.step([grad], state)
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
        "group_by": self.group_by,
    })
    return config


def is_lstm(net) -> bool:
  """Whether `net` is the coordinatewise LSTM (run by `step_with_weights`)."""
  return net.get_config()["name"] == "lstm"


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
