"""The Keras optimizer is the library's step: in fit (eager, XLA, MirroredStrategy) and in files."""

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import optimizers
from l2l_tf.keras_optimizer import LearnedOptimizer, MetaParameterMismatchError, compute_checksum
from l2l_tf.optimizers import serialization

REPO = Path(__file__).resolve().parent.parent
SHAPES = [(3, 4), (5,), (2, 1, 3), ()]


def small_lstm(preprocessing=None):
  """A non-default architecture: one layer, LogAndSign (or other) inputs, an output scale."""
  return optimizers.CoordinatewiseLSTM(
      hidden_sizes=(6,), preprocessing=preprocessing or {"name": "log_and_sign"},
      output_scale=0.1, seed=7)


def saved_small_lstm(directory):
  return serialization.save_optimizer(small_lstm(), directory, metadata={"test": True})


def gradient_sequence(num_steps, seed=0):
  rng = np.random.default_rng(seed)
  return [[rng.normal(size=s).astype(np.float32) for s in SHAPES] for _ in range(num_steps)]


def library_updates(module, grads_sequence):
  """Updates of the library's step on all tensors at once, for each step."""
  state = module.initial_state([tf.constant(g) for g in grads_sequence[0]])
  out = []
  for grads in grads_sequence:
    updates, state = module.step([tf.constant(g) for g in grads], state)
    out.append([u.numpy() for u in updates])
  return out


def make_variables(seed=1):
  rng = np.random.default_rng(seed)
  return [keras.Variable(rng.normal(size=s).astype(np.float32), name=f"v{i}")
          for i, s in enumerate(SHAPES)]


def keras_deltas(opt, variables, grads_sequence, jit_compile=False):
  """Per step, the change of every variable when `opt` applies the gradients."""
  opt.build(variables)
  if jit_compile:
    apply = tf.function(lambda grads: opt.apply(grads, variables), jit_compile=True)
  else:
    apply = lambda grads: opt.apply(grads, variables)
  out = []
  for grads in grads_sequence:
    before = [v.numpy() for v in variables]
    apply([tf.constant(g) for g in grads])
    out.append([v.numpy() - b for v, b in zip(variables, before)])
  return out


def test_meta_parameter_keys_are_the_variable_paths_and_step_with_weights_is_step():
  module = small_lstm()
  paths = dict(serialization.variable_paths(module))
  assert sorted(module.meta_parameters()) == sorted(paths)
  assert all(module.meta_parameters()[k] is v for k, v in paths.items())
  grads = [tf.constant(g) for g in gradient_sequence(1)[0]]
  state = module.initial_state(grads)
  halved = {k: 0.5 * v for k, v in module.meta_parameters().items()}
  a, _ = module.step(grads, state)
  b, _ = module.step_with_weights(module.meta_parameters(), grads, state)
  c, _ = module.step_with_weights(halved, grads, state)
  for x, y, z in zip(a, b, c):
    np.testing.assert_array_equal(x.numpy(), y.numpy())
    assert not np.allclose(x.numpy(), z.numpy())
  with pytest.raises(ValueError, match="output_bias"):
    module.step_with_weights({k: v for k, v in paths.items() if k != "output_bias"}, grads, state)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "xla"])
@pytest.mark.parametrize("which", ["quadratic", "small", "normalized_moments"])
def test_updates_equal_the_library_step(which, jit_compile):
  module = (optimizers.load_optimizer("quadratic") if which == "quadratic" else
            small_lstm(preprocessing={"name": "normalized_moments"})
            if which == "normalized_moments" else small_lstm())
  opt = (LearnedOptimizer.from_pretrained("quadratic") if which == "quadratic"
         else LearnedOptimizer.from_optimizer(module))
  grads_sequence = gradient_sequence(4)
  variables = make_variables()
  got = keras_deltas(opt, variables, grads_sequence, jit_compile)
  expected = library_updates(module, grads_sequence)
  for step_got, step_expected in zip(got, expected):
    for g, e in zip(step_got, step_expected):
      np.testing.assert_allclose(g, e, rtol=1e-4, atol=2e-6)
  # The state is per variable: (h, c) per layer, [size, hidden].
  h, c = opt.lstm_state(variables[0])[len(module.hidden_sizes) - 1]
  assert tuple(h.shape) == tuple(c.shape) == (12, module.hidden_sizes[-1])
  if module.input_state_size:  # Then the preprocessing's state.
    assert tuple(opt.lstm_state(variables[0])[-1].shape) == (12, module.input_state_size)
  assert int(opt.iterations.numpy()) == 4


def mlp(seed=0):
  keras.utils.set_random_seed(seed)
  return keras.Sequential([keras.Input((4,)), keras.layers.Dense(5, activation="sigmoid"),
                           keras.layers.Dense(3)])


def tiny_data():
  rng = np.random.default_rng(3)
  return rng.normal(size=(32, 4)).astype(np.float32), rng.integers(0, 3, 32).astype(np.int32)


LOSS = keras.losses.SparseCategoricalCrossentropy(from_logits=True)


@pytest.mark.parametrize("jit_compile", [False, True], ids=["eager", "xla"])
def test_fit_matches_a_library_training_loop(jit_compile):
  x, y = tiny_data()
  model = mlp()
  initial = [v.numpy() for v in model.trainable_variables]
  model.compile(optimizer=LearnedOptimizer.from_optimizer(small_lstm()), loss=LOSS,
                jit_compile=jit_compile)
  model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)

  reference = mlp()
  for v, value in zip(reference.trainable_variables, initial):
    v.assign(value)
  module = small_lstm()
  params = [v.value for v in reference.trainable_variables]
  state = module.initial_state(params)
  for _ in range(2):
    for start in (0, 16):
      with tf.GradientTape() as tape:
        loss = LOSS(y[start:start + 16], reference(x[start:start + 16]))
      grads = tape.gradient(loss, params)
      updates, state = module.step(grads, state)
      for p, u in zip(params, updates):
        p.assign_add(u)
  for got, expected, start in zip(model.trainable_variables, params, initial):
    assert not np.allclose(got.numpy(), start)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


def fitted_model(optimizer, steps=2):
  x, y = tiny_data()
  model = mlp()
  model.compile(optimizer=optimizer, loss=LOSS)
  model.fit(x[:16 * steps], y[:16 * steps], batch_size=16, epochs=1, shuffle=False, verbose=0)
  return model


def continue_training(model):
  x, y = tiny_data()
  model.fit(x[16:], y[16:], batch_size=16, epochs=1, shuffle=False, verbose=0)
  return [v.numpy() for v in model.trainable_variables]


@pytest.mark.parametrize("net", ["lstm", "fast_weights"])
def test_keras_file_round_trip_restores_meta_parameters_and_state(tmp_path, net):
  source = (saved_small_lstm(tmp_path / "opt") if net == "lstm" else serialization.save_optimizer(
      optimizers.FastWeightOptimizer(fast_size=3, hidden_size=5, seed=2), tmp_path / "opt"))
  model = fitted_model(LearnedOptimizer.from_pretrained(source))
  model.save(tmp_path / "m.keras")
  shutil.rmtree(source)  # The meta-parameters must come from the .keras file.

  loaded = keras.models.load_model(tmp_path / "m.keras",
                                   custom_objects={"LearnedOptimizer": LearnedOptimizer})
  registered = keras.models.load_model(tmp_path / "m.keras")  # register_keras_serializable
  for other in (loaded, registered):
    assert isinstance(other.optimizer, LearnedOptimizer)
    assert other.optimizer.get_config() == model.optimizer.get_config()
    assert len(other.optimizer.variables) == len(model.optimizer.variables)
    for a, b in zip(other.optimizer.variables, model.optimizer.variables):
      np.testing.assert_array_equal(a.numpy(), b.numpy())
  expected = continue_training(model)  # LSTM state and meta-parameters carry on identically.
  for got, want in zip(continue_training(loaded), expected):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_keras_file_saved_before_training_loads(tmp_path):
  model = mlp()
  model.compile(optimizer=LearnedOptimizer.from_optimizer(small_lstm()), loss=LOSS)
  model.save(tmp_path / "untrained.keras")
  loaded = keras.models.load_model(tmp_path / "untrained.keras")
  reference = mlp()
  reference.compile(optimizer=LearnedOptimizer.from_optimizer(small_lstm()), loss=LOSS)
  for got, want in zip(continue_training(loaded), continue_training(reference)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def rewrite_keras_file(path, edit):
  """Applies `edit(h5py optimizer/vars group)` to the weights inside a .keras file."""
  work = path.parent / "unzipped"
  with zipfile.ZipFile(path) as z:
    z.extractall(work)
  with h5py.File(work / "model.weights.h5", "r+") as f:
    edit(f["optimizer/vars"])
  with zipfile.ZipFile(path, "w") as z:
    for name in ("metadata.json", "config.json", "model.weights.h5"):
      z.write(work / name, name)


def test_loading_fails_loudly_on_wrong_meta_parameters_or_variable_count(tmp_path):
  model = fitted_model(LearnedOptimizer.from_optimizer(small_lstm()))
  model.save(tmp_path / "m.keras")
  names = [v.name for v in model.optimizer.variables]
  meta_index = names.index("meta_output_bias")

  def corrupt(group):
    group[str(meta_index)][...] = group[str(meta_index)][...] + 1.0

  rewrite_keras_file(tmp_path / "m.keras", corrupt)
  with pytest.raises(ValueError, match="not the trained ones"):
    keras.models.load_model(tmp_path / "m.keras")

  model.save(tmp_path / "m.keras")
  last = str(len(names) - 1)
  rewrite_keras_file(tmp_path / "m.keras", lambda group: group.__delitem__(last))
  with pytest.raises(ValueError, match="optimizer variables"):
    keras.models.load_model(tmp_path / "m.keras")


def test_config_round_trip_and_first_apply_checks_the_meta_parameters(tmp_path):
  opt = LearnedOptimizer.from_pretrained("quadratic", clipnorm=2.0, name="l2l")
  config = opt.get_config()
  assert json.loads(json.dumps(config)) == config
  assert config["optimizer_config"] == serialization.read_config("quadratic")[1]["optimizer"]
  assert config["meta_checksum"] == compute_checksum(
      {k: v.numpy() for k, v in serialization.variable_paths(
          optimizers.load_optimizer("quadratic"))})
  # A shipped source is found again: the rebuilt optimizer is the trained one.
  again = LearnedOptimizer.from_config(dict(config))
  assert again.get_config() == config
  grads_sequence = gradient_sequence(2)
  expected = keras_deltas(opt, make_variables(), grads_sequence)
  for a, b in zip(keras_deltas(again, make_variables(), grads_sequence), expected):
    for x, y in zip(a, b):
      np.testing.assert_array_equal(x, y)
  # Without a source, nothing restores them: the first update refuses to run.
  orphan = LearnedOptimizer.from_config(dict(config, source=None))
  variables = make_variables()
  with pytest.raises(MetaParameterMismatchError, match="not restored"):
    orphan.apply([tf.constant(g) for g in grads_sequence[0]], variables)
  np.testing.assert_array_equal(variables[0].numpy(), make_variables()[0].numpy())
  with pytest.raises(ValueError, match="optimizer variables"):
    orphan.load_own_variables({"0": np.zeros([], np.int64)})


def clip(grads, option, value):
  if option == "clipvalue":
    return [np.clip(g, -value, value) for g in grads]
  if option == "clipnorm":
    return [g * min(1.0, value / np.linalg.norm(g)) for g in grads]
  norm = np.sqrt(sum(np.sum(g ** 2) for g in grads))
  return [g * min(1.0, value / norm) for g in grads]


@pytest.mark.parametrize("option", ["clipvalue", "clipnorm", "global_clipnorm"])
def test_clipping_is_applied_before_the_learned_optimizer(option):
  grads_sequence = gradient_sequence(2)
  opt = LearnedOptimizer.from_optimizer(small_lstm(), **{option: 0.5})
  got = keras_deltas(opt, make_variables(), grads_sequence)
  expected = library_updates(small_lstm(), [clip(g, option, 0.5) for g in grads_sequence])
  unclipped = library_updates(small_lstm(), grads_sequence)
  assert not np.allclose(expected[1][0], unclipped[1][0])
  for a, b in zip(got, expected):
    for x, y in zip(a, b):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_learning_rate_weight_decay_and_loss_scale():
  grads_sequence = gradient_sequence(2)
  expected = library_updates(small_lstm(), grads_sequence)
  # learning_rate multiplies the learned update; the state does not depend on it.
  got = keras_deltas(LearnedOptimizer.from_optimizer(small_lstm(), learning_rate=0.5),
                     make_variables(), grads_sequence)
  for a, b in zip(got, expected):
    for x, y in zip(a, b):
      np.testing.assert_allclose(x, 0.5 * y, rtol=1e-4, atol=1e-6)
  # Decoupled weight decay: theta -= lr * wd * theta, then the learned update.
  variables = make_variables()
  before = [v.numpy() for v in variables]
  got = keras_deltas(LearnedOptimizer.from_optimizer(small_lstm(), weight_decay=0.1), variables,
                     grads_sequence[:1])
  for x, y, b in zip(got[0], expected[0], before):
    np.testing.assert_allclose(x, y - 0.1 * b, rtol=1e-4, atol=1e-6)
  # A loss scale factor: the gradients arrive scaled and are unscaled first.
  opt = LearnedOptimizer.from_optimizer(small_lstm(), loss_scale_factor=8.0)
  got = keras_deltas(opt, make_variables(), [[8.0 * g for g in gs] for gs in grads_sequence])
  for a, b in zip(got, expected):
    for x, y in zip(a, b):
      np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_gradient_accumulation_steps_once_on_the_mean():
  grads_sequence = gradient_sequence(4)
  opt = LearnedOptimizer.from_optimizer(small_lstm(), gradient_accumulation_steps=2)
  got = keras_deltas(opt, make_variables(), grads_sequence)
  means = [[(a + b) / 2 for a, b in zip(grads_sequence[i], grads_sequence[i + 1])]
           for i in (0, 2)]
  expected = library_updates(small_lstm(), means)
  for i, step in enumerate(got):
    for x, y in zip(step, expected[i // 2]):
      if i % 2 == 0:
        np.testing.assert_array_equal(x, np.zeros_like(x))
      else:
        np.testing.assert_allclose(x, y, rtol=1e-4, atol=1e-6)


def test_use_ema_leaves_the_moving_average_in_the_model():
  opt = LearnedOptimizer.from_optimizer(small_lstm(), use_ema=True, ema_momentum=0.5)
  model = fitted_model(opt, steps=2)
  averages = opt._model_variables_moving_average  # pylint: disable=protected-access
  assert len(averages) == len(model.trainable_variables)
  for v, average in zip(model.trainable_variables, averages):
    np.testing.assert_array_equal(v.numpy(), average.numpy())


def test_unsupported_optimizers_are_rejected_with_a_reason(tmp_path):
  serialization.save_optimizer(optimizers.Adam(0.01), tmp_path / "adam")
  with pytest.raises(ValueError, match=r"keras\.optimizers\.Adam"):
    LearnedOptimizer.from_pretrained(tmp_path / "adam")
  grouped = optimizers.GroupedOptimizer(
      {"conv": small_lstm(), "fc": optimizers.CoordinatewiseLSTM(hidden_sizes=(3,), seed=2)},
      ["conv", "fc"])
  serialization.save_optimizer(grouped, tmp_path / "grouped")
  with pytest.raises(ValueError, match="drop group_by"):
    LearnedOptimizer.from_pretrained(tmp_path / "grouped", group="conv", group_by="layer_type")
  with pytest.raises(ValueError, match="group_by must be"):
    LearnedOptimizer.from_pretrained(tmp_path / "grouped", group_by="by_rank")
  other = optimizers.GroupedOptimizer({"a": small_lstm(), "b": small_lstm()}, ["a", "b"])
  serialization.save_optimizer(other, tmp_path / "other")
  with pytest.raises(ValueError, match=r"group=.*'a', 'b'"):
    LearnedOptimizer.from_pretrained(tmp_path / "other")
  with pytest.raises(ValueError, match="needs nets named 'conv' and 'fc'"):
    LearnedOptimizer.from_pretrained(tmp_path / "other", group_by="layer_type")
  opt = LearnedOptimizer.from_pretrained(tmp_path / "grouped", group="conv")
  for a, b in zip(keras_deltas(opt, make_variables(), gradient_sequence(1))[0],
                  library_updates(small_lstm(), gradient_sequence(1))[0]):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  (tmp_path / "ntm").mkdir()
  (tmp_path / "ntm" / "config.json").write_text(json.dumps({"optimizer": {"name": "ntm"}}))
  np.savez(tmp_path / "ntm" / "weights.npz")
  with pytest.raises(ValueError, match="coordinatewise"):
    LearnedOptimizer.from_pretrained(tmp_path / "ntm")
  with pytest.raises(ValueError, match="meta-parameters"):
    LearnedOptimizer(small_lstm().get_config())


def conv_grouped_optimizer(assignment):
  """A grouped optimizer with two different nets, "conv" and "fc", as the conv-net optimizers."""
  return optimizers.GroupedOptimizer(
      {"conv": small_lstm(), "fc": optimizers.CoordinatewiseLSTM(hidden_sizes=(3,), seed=2)},
      assignment)


def test_grouped_optimizer_steps_each_variable_with_its_net(tmp_path):
  # SHAPES: only the rank-3 tensor is a convolution kernel by the rank rule of "layer_type".
  grouped = conv_grouped_optimizer(["fc", "fc", "conv", "fc"])
  serialization.save_optimizer(grouped, tmp_path / "grouped")
  grads = gradient_sequence(3)
  expected = library_updates(grouped, grads)
  opt = LearnedOptimizer.from_pretrained(tmp_path / "grouped")
  assert opt.grouped and opt.group_by == "layer_type"
  assert sorted(opt.learned_optimizer) == ["conv", "fc"]
  for got, want in zip(keras_deltas(opt, make_variables(), grads), expected):
    for a, b in zip(got, want):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  # The conv net's state has its hidden size (6), the fc net's its own (3).
  variables = make_variables()
  opt = LearnedOptimizer.from_pretrained(tmp_path / "grouped")
  keras_deltas(opt, variables, grads[:1])
  assert [opt.lstm_state(v)[0][0].shape[-1] for v in variables] == [3, 3, 6, 3]
  # An explicit {path: net} assignment; a variable it does not cover is an error naming it.
  variables = make_variables()
  paths = [v.path for v in variables]
  opt = LearnedOptimizer.from_pretrained(
      tmp_path / "grouped", group_by={p: "conv" if i == 2 else "fc" for i, p in enumerate(paths)})
  for got, want in zip(keras_deltas(opt, variables, grads), expected):
    for a, b in zip(got, want):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
  opt = LearnedOptimizer.from_pretrained(tmp_path / "grouped", group_by={paths[0]: "fc"})
  with pytest.raises(ValueError, match=f"variable '{paths[1]}' is not in group_by"):
    opt.build(make_variables())
  with pytest.raises(ValueError, match=r"names nets \['dense'\]"):
    LearnedOptimizer.from_pretrained(tmp_path / "grouped", group_by={paths[0]: "dense"})


def small_conv_net():
  keras.utils.set_random_seed(3)
  return keras.Sequential([
      keras.Input((6, 6, 1)), keras.layers.Conv2D(3, 3, padding="same"),
      keras.layers.BatchNormalization(), keras.layers.ReLU(), keras.layers.MaxPooling2D(),
      keras.layers.Flatten(), keras.layers.Dense(5, activation="relu"), keras.layers.Dense(2)])


def test_conv_net_fit_with_layer_type_groups_matches_the_library_and_survives_a_keras_file(
    tmp_path):
  model = small_conv_net()
  groups = LearnedOptimizer.layer_type_groups(model)
  kernel = model.layers[0].kernel.path
  assert groups == {v.path: ("conv" if v.path == kernel else "fc")
                    for v in model.trainable_variables}
  # A rank-3 kernel of a layer that is no convolution: the model's layer classes say "fc".
  einsum = keras.Sequential([keras.Input((4, 3)),
                             keras.layers.EinsumDense("abc,cde->abde", (4, 2, 5))])
  assert set(LearnedOptimizer.layer_type_groups(einsum).values()) == {"fc"}

  assignment = [groups[v.path] for v in model.trainable_variables]
  grouped = conv_grouped_optimizer(assignment)
  serialization.save_optimizer(grouped, tmp_path / "grouped")
  rng = np.random.default_rng(0)
  x = rng.normal(size=(16, 6, 6, 1)).astype(np.float32)
  y = rng.integers(0, 2, 16)
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  initial = [v.numpy() for v in model.trainable_variables]
  model.compile(optimizer=LearnedOptimizer.from_pretrained(tmp_path / "grouped", model=model),
                loss=loss)
  model.fit(x, y, batch_size=16, epochs=2, verbose=0, shuffle=False)

  # The library's GroupedOptimizer on the same gradients (full batch, BN in training mode).
  reference = small_conv_net()
  params = [tf.constant(v) for v in initial]
  state = grouped.initial_state(params)
  for _ in range(2):
    for v, p in zip(reference.trainable_variables, params):
      v.assign(p)
    with tf.GradientTape() as tape:
      value = loss(y, reference(x, training=True))
    grads = tape.gradient(value, reference.trainable_variables)
    updates, state = grouped.step(grads, state)
    params = [p + u for p, u in zip(params, updates)]
  for v, p in zip(model.trainable_variables, params):
    np.testing.assert_allclose(v.numpy(), p.numpy(), rtol=1e-4, atol=1e-5)
  with pytest.raises(ValueError, match="made for another model"):
    LearnedOptimizer.from_pretrained(tmp_path / "grouped", model=model).build(
        model.trainable_variables[:3])

  model.save(tmp_path / "model.keras")
  restored = keras.models.load_model(tmp_path / "model.keras")
  assert restored.optimizer.grouped and restored.optimizer.group_by == assignment
  assert restored.optimizer.meta_checksum == model.optimizer.meta_checksum
  restored.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
  model.fit(x, y, batch_size=16, epochs=1, verbose=0, shuffle=False)
  for a, b in zip(restored.trainable_variables, model.trainable_variables):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)


MIRRORED_SCRIPT = r"""
import numpy as np, tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
import keras
from l2l_tf.keras_optimizer import LearnedOptimizer

rng = np.random.default_rng(0)
x = rng.normal(size=(32, 4)).astype("float32")
y = rng.integers(0, 3, 32)

def run(strategy):
  with strategy.scope():
    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="sigmoid"),
                              keras.layers.Dense(3)])
    model.compile(optimizer=LearnedOptimizer.from_pretrained("quadratic"),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
  return model

strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
assert strategy.num_replicas_in_sync == 2
mirrored = run(strategy)
single = run(tf.distribute.get_strategy())
for a, b in zip(mirrored.trainable_variables, single.trainable_variables):
  np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-6)
h, c = mirrored.optimizer.lstm_state(mirrored.trainable_variables[0])[0]
replicas = c.value.values
assert len(replicas) == 2 and np.abs(replicas[0].numpy()).sum() > 0
np.testing.assert_array_equal(replicas[0].numpy(), replicas[1].numpy())

outside = LearnedOptimizer.from_pretrained("quadratic")  # Not under strategy.scope(): refused.
with strategy.scope():
  model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
  model.compile(optimizer=outside, loss="mse")
try:
  model.fit(x, np.zeros((32, 3), "float32"), epochs=1, verbose=0)
  raise SystemExit("an optimizer from outside the strategy's scope was accepted")
except ValueError as e:
  assert "inside `with strategy.scope():`" in str(e), e
print("mirrored ok")
"""


def test_mirrored_strategy_on_two_devices_matches_one_device(tmp_path):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-c", MIRRORED_SCRIPT], cwd=tmp_path, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "mirrored ok" in proc.stdout


def test_keras_fit_example_runs_and_logs_both_optimizers(tmp_path):
  # Needs Fashion-MNIST, which `make test` prepares first (no skip: on a fresh machine it runs).
  # Its other models are built in-process by `keras_fit_on_generated_images` below.
  model = "mlp"
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run(
      [sys.executable, str(REPO / "examples" / "keras_fit.py"), "--dataset=fashion_mnist",
       "--num_examples=96", "--batch_size=32", "--epochs=2", "--steps=2", f"--model={model}",
       f"--logdir={tmp_path / 'logs'}", "--threads=1"],
      cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  lines = proc.stdout.strip().splitlines()
  assert lines[0].startswith(f"fashion_mnist: 96 training images, 2 epoch(s), batch size 32, "
                             f"model {model};")
  assert lines[1].split() == ["optimizer", "train", "loss", "test", "loss", "test", "acc", "time",
                              "(s)", "train", "loss", "per", "epoch"]
  rows = {line.split()[0]: [float(x) for x in line.split()[1:]] for line in lines[2:]}
  assert set(rows) == {"learned_mnist", "adam"}
  for train_loss, test_loss, accuracy, _, *per_epoch in rows.values():
    assert np.isfinite(train_loss) and np.isfinite(test_loss) and 0 <= accuracy <= 1
    assert len(per_epoch) == 2 and per_epoch[-1] == train_loss
  for name in rows:
    assert list((tmp_path / "logs" / name / "train").glob("events.out.tfevents.*")), name


def test_shipped_conv_optimizer_trains_a_keras_conv_net_with_layer_type_groups():
  """The shipped conv-net optimizer (issue 15) in `fit` on a `keras.Sequential` conv net it never
  saw, on generated data: both nets run (kernels by layer type) and the loss goes down."""
  rng = np.random.default_rng(0)
  y = rng.integers(0, 2, 256)
  x = rng.normal(size=(256, 6, 6, 1)).astype(np.float32) * 0.5
  x[y == 1, 1:5, 1:5, 0] += 1.0  # A bright centre square marks class 1.
  model = small_conv_net()
  opt = LearnedOptimizer.from_pretrained("conv_fashion_mnist_10", model=model)
  assert opt.grouped and opt.group_by == [
      "conv" if v.path == model.layers[0].kernel.path else "fc" for v in model.trainable_variables]
  model.compile(optimizer=opt,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  before = model.evaluate(x, y, verbose=0)
  history = model.fit(x, y, batch_size=32, epochs=3, verbose=0, shuffle=False)
  after = model.evaluate(x, y, verbose=0)
  assert np.all(np.isfinite(history.history["loss"]))
  assert after < before - 0.05, (before, after)


def keras_fit_on_generated_images(optimizer, epochs=2, model_name="relu_convnet"):
  """examples/keras_fit.py's model `model_name` (`relu_convnet`, `relu_mlp`: Keras's default
  initialisers) fitted on generated 10-class 28 x 28 images: (loss before, mean training loss of
  each epoch)."""
  sys.path.insert(0, str(REPO / "examples"))
  try:
    import keras_fit  # pylint: disable=g-import-not-at-top
  finally:
    sys.path.pop(0)
  rng = np.random.default_rng(0)
  prototypes = rng.normal(size=(10, 784))
  y = rng.integers(0, 10, 1024).astype(np.int32)
  x = np.clip(0.5 + 0.5 * prototypes[y] + 0.5 * rng.normal(size=(1024, 784)), 0, 1)
  x = x.astype(np.float32)
  model = keras_fit.make_model(model_name, 0.01, 0)
  model.compile(optimizer=optimizer,
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  before = model.evaluate(x, y, verbose=0)
  history = model.fit(x, y, batch_size=128, epochs=epochs, verbose=0, shuffle=False)
  return before, history.history["loss"]


def test_the_paper_optimizer_diverges_on_a_relu_conv_net_where_keras_adam_does_not():
  """Issue 14's starting point, as a new user meets it: the shipped `mnist` optimizer (meta-trained
  on a sigmoid MLP) in `fit` on a small ReLU conv net raises the loss above its starting ln 10
  within two epochs, where Keras's default Adam lowers it (README, "Use the learned optimizer")."""
  before, adam = keras_fit_on_generated_images(keras.optimizers.Adam())
  assert abs(before - np.log(10)) < 0.1, before
  assert adam[-1] < before - 0.05, (before, adam)
  before, learned = keras_fit_on_generated_images(LearnedOptimizer.from_pretrained("mnist"))
  assert max(learned) > before + 1.0, (before, learned)


@pytest.mark.parametrize("model_name", ["relu_convnet", "relu_mlp"])
def test_lstm_v2_trains_relu_nets_it_never_saw_at_least_as_well_as_keras_adam(model_name):
  """Issue 14: the shipped `mnist_v2` (meta-trained on MLPs of widths 10-40) in `fit` on a ReLU
  conv net and a 100-unit ReLU MLP, neither in its family: finite losses that fall below the
  start, and after two epochs at or below Keras's default Adam's."""
  before, adam = keras_fit_on_generated_images(keras.optimizers.Adam(), model_name=model_name)
  before_v2, v2 = keras_fit_on_generated_images(LearnedOptimizer.from_pretrained("mnist_v2"),
                                   model_name=model_name)
  assert before_v2 == pytest.approx(before)  # The same initial weights.
  assert np.all(np.isfinite(v2)) and max(v2) < before, (before, v2)
  assert v2[-1] <= adam[-1], (adam, v2)


@pytest.mark.parametrize("which", ["fast_weights_delta", "fast_weights_additive", "srwm"])
def test_fast_weight_optimizers_run_in_keras_as_their_library_step(which, tmp_path):
  """Issue 19: the coordinatewise fast-weight nets are Keras optimizers too (their own step, the
  Keras-held meta-parameters read in place of the module's variables)."""
  if which == "srwm":
    module = optimizers.SelfReferentialOptimizer(fast_size=3, seed=4)
  else:
    module = optimizers.FastWeightOptimizer(fast_size=3, hidden_size=5, seed=2,
                                            rule=which.rsplit("_", 1)[1])
  serialization.save_optimizer(module, tmp_path / which)
  opt = LearnedOptimizer.from_pretrained(tmp_path / which)
  grads_sequence = gradient_sequence(3)
  variables = make_variables()
  got = keras_deltas(opt, variables, grads_sequence)
  expected = library_updates(module, grads_sequence)
  for step_got, step_expected in zip(got, expected):
    for g, e in zip(step_got, step_expected):
      np.testing.assert_allclose(g, e, rtol=1e-4, atol=2e-6)
  assert np.abs(got[-1][0]).max() > 0
  state = tf.nest.flatten(opt.optimizer_state(variables[0]))
  assert all(tuple(s.shape)[0] == 12 for s in state)  # Per coordinate of the (3, 4) variable.
  # Other meta-parameters, other updates: the Keras copies are what the step reads.
  halved = LearnedOptimizer.from_optimizer(module)
  for v in halved._meta_variables:  # pylint: disable=protected-access
    v.assign(0.5 * v)
  halved._verified = True  # pylint: disable=protected-access
  other = keras_deltas(halved, make_variables(), grads_sequence[:1])
  assert not np.allclose(other[0][0], got[0][0])
