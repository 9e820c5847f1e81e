"""Small helpers shared by test files (import as `from tests import helpers`)."""

import contextlib
from pathlib import Path

import numpy as np
import tensorflow as tf

REPO = Path(__file__).resolve().parent.parent


def two_instance_gradients(seed: int, num_coordinates: int, scale: float):
  """Gradients for 2 problem instances, [2, num_coordinates], and a copy with instance 1's
  gradients multiplied by `scale` (instance 0 unchanged): for tests that instances of an
  information-sharing optimizer do not see each other."""
  g = np.random.default_rng(seed).normal(size=(2, num_coordinates)).astype(np.float32)
  g2 = g.copy()
  g2[1] *= scale
  return tf.constant(g), tf.constant(g2)


def tiny_meta_train(optimizer, output_dir) -> dict:
  """Meta-trains `optimizer` for 4 epochs on 4-d quadratics; returns the training summary."""
  from l2l_tf import meta, problems  # pylint: disable=g-import-not-at-top
  config = meta.TrainConfig(num_epochs=4, horizon=10, truncation=5, meta_batch_size=4,
                            meta_learning_rate=1e-2, validation_every=2,
                            num_validation_problems=8, checkpoint_every=2)
  trainer = meta.MetaTrainer(problems.Quadratic(num_dims=4), optimizer, config, output_dir,
                             log_fn=lambda m: None)
  return trainer.train(progress=False)


def prepare_tfds_from_fixture(builder_class, name: str, data_dir) -> None:
  """Prepares TFDS data set `name` into `data_dir` from files the caller's patched download
  manager returns. No URL checksums: the files are the fixture's. (Not monkeypatch.setattr, which
  would evaluate the class property, and that needs `importlib_resources`, absent from the pins.)"""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder_class.code_path = None
  try:
    tfds.builder(name, data_dir=str(data_dir)).download_and_prepare(
        download_config=tfds.download.DownloadConfig(
            compute_stats=tfds.download.ComputeStatsMode.SKIP))
  finally:
    del builder_class.code_path


@contextlib.contextmanager
def parsed_flags(argv):
  """The project's absl flags parsed from `argv` (argv[0]: the program) for the block, and reset
  to their defaults afterwards, so in-process runs of entry points do not leak flags."""
  from l2l_tf import cli  # pylint: disable=g-import-not-at-top
  cli.FLAGS.unparse_flags()
  try:
    cli.FLAGS(argv)
    yield cli.FLAGS
  finally:
    cli.FLAGS.unparse_flags()


def flagfile_values(name):
  """The flags of flags/<name>.flags with nested flagfiles resolved (later lines win)."""
  values = {}
  for line in (REPO / "flags" / f"{name}.flags").read_text().splitlines():
    line = line.strip()
    if line.startswith("--flagfile=flags/"):
      values.update(flagfile_values(line[len("--flagfile=flags/"):-len(".flags")]))
    elif line.startswith("--"):
      key, _, value = line[2:].partition("=")
      values[key] = value
  return values
