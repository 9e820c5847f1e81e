"""Exports a trained optimizer's step as a SavedModel that runs without l2l_tf (entry point).

    python -m l2l_tf.export --optimizer=quadratic --output_dir=exported/quadratic

The SavedModel runs the library's step (`CoordinatewiseLSTM.step_with_weights`) on one flat
gradient vector of any length n (all of a model's coordinates, or any subset: the optimizer is
coordinatewise). In Python, with TensorFlow only:

    opt = tf.saved_model.load("exported/quadratic")
    state = opt.initial_state(n)                   # ((h_0, c_0), (h_1, c_1), ...), each [n, hidden]
    updates, state = opt.step(grads, state)        # grads [n] float32 -> updates [n]
    params += updates

and, for TF Serving or C++, the signatures with flat named tensors:

    "initial_state": n (int32 scalar) -> {h_0, c_0, h_1, c_1, ...[, inputs]}
    "step": grads [n], h_0, c_0, ...[, inputs] -> {updates, h_0, c_0, ...[, inputs]}

(`inputs`: the state of a stateful preprocessing, e.g. NormalizedMoments.)

`opt.config_json` holds the optimizer's config.json (architecture and training metadata).
"""

import json
import os
from pathlib import Path
from typing import Optional

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position

FLAGS = cli.FLAGS


def make_export_module(module, config_json: str = "{}"):
  """A `tf.Module` with the `step` / `initial_state` functions of a `CoordinatewiseLSTM`.

  Args:
    module: the trained `CoordinatewiseLSTM`; its meta-parameters are copied.
    config_json: text stored in the SavedModel as `config_json`.

  Returns:
    The module to pass to `tf.saved_model.save`, and its signatures (a dict).
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from l2l_tf.optimizers import serialization  # pylint: disable=g-import-not-at-top

  dtype = module.dtype
  hidden_sizes = module.hidden_sizes
  export = tf.Module(name="learned_optimizer")
  export.meta_parameters = {
      key: tf.Variable(v.numpy(), trainable=False, name=key.replace("/", "_"))
      for key, v in serialization.variable_paths(module)}
  export.config_json = tf.Variable(config_json, trainable=False, dtype=tf.string)
  export.hidden_sizes = tf.Variable(list(hidden_sizes), trainable=False, dtype=tf.int32)

  grads_spec = tf.TensorSpec([None], dtype, name="grads")
  state_specs = tuple((tf.TensorSpec([None, h], dtype, name=f"h_{layer}"),
                       tf.TensorSpec([None, h], dtype, name=f"c_{layer}"))
                      for layer, h in enumerate(hidden_sizes))
  if module.input_state_size:  # The preprocessing's state (NormalizedMoments).
    state_specs += (tf.TensorSpec([None, module.input_state_size], dtype, name="inputs"),)
  names = [spec.name for spec in tf.nest.flatten(state_specs)]

  def step_impl(grads, state):
    updates, new_state = module.step_with_weights(dict(export.meta_parameters), [grads], state)
    return updates[0], new_state

  def initial_state_impl(n):
    return module.initial_state([tf.zeros([n], dtype)])

  export.step = tf.function(step_impl, input_signature=[grads_spec, state_specs])
  export.initial_state = tf.function(initial_state_impl,
                                     input_signature=[tf.TensorSpec([], tf.int32, name="n")])

  def named(state):
    return dict(zip(names, tf.nest.flatten(state)))

  def serving_step(grads, *flat_state):
    state = tf.nest.pack_sequence_as(state_specs, list(flat_state))
    updates, new_state = step_impl(grads, state)
    return dict(updates=updates, **named(new_state))

  def serving_initial_state(n):
    return named(initial_state_impl(n))

  flat_specs = tf.nest.flatten(state_specs)
  signatures = {
      "step": tf.function(serving_step, input_signature=[grads_spec] + flat_specs),
      "initial_state": tf.function(serving_initial_state,
                                   input_signature=[tf.TensorSpec([], tf.int32, name="n")]),
  }
  return export, signatures


def export_optimizer(name_or_path, output_dir, group: Optional[str] = None) -> Path:
  """Loads a saved optimizer and writes its SavedModel to `output_dir`.

  Args:
    name_or_path: a shipped name ("quadratic"), a saved directory or a training run's output_dir.
    output_dir: where to write the SavedModel (created; an existing one is overwritten).
    group: for a grouped optimizer, the net to export.

  Returns:
    `output_dir` as a Path.

  Raises:
    l2l_tf.optimizers.OptimizerLoadError: no saved optimizer there, or inconsistent files.
    ValueError: an optimizer that cannot be exported for a flat gradient vector.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from l2l_tf.optimizers import serialization  # pylint: disable=g-import-not-at-top

  module, _, saved = serialization.load_coordinatewise(name_or_path, group)
  saved = dict(saved, source=str(name_or_path), group=group)
  export, signatures = make_export_module(module, json.dumps(saved, sort_keys=True))
  output_dir = Path(output_dir)
  tf.saved_model.save(export, str(output_dir), signatures=signatures)
  return output_dir


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  cli.require_optimizer_path()
  cli.configure_tensorflow()
  output_dir = cli.require_writable_dir(FLAGS.output_dir)
  export_optimizer(FLAGS.optimizer_path, output_dir, FLAGS.group)
  print(f"wrote SavedModel {output_dir}: tf.saved_model.load(...).step(grads [n], state) -> "
        "(updates [n], state); .initial_state(n); signatures 'step' and 'initial_state'")


if __name__ == "__main__":
  app.run(main)
