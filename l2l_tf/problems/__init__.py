"""Optimizee problems (see `base.Problem`)."""

from l2l_tf.problems.base import Problem, fold_in, split_seed
from l2l_tf.problems.conv import ConvClassifier
from l2l_tf.problems.mlp import MLPClassifier
from l2l_tf.problems.quadratic import Quadratic, Square
from l2l_tf import errors

PROBLEMS = {"quadratic": Quadratic, "square": Square}
DATASET_PROBLEMS = ("mnist", "fashion_mnist")
# The conv-net optimizee (paper Fig. 7) by data set: problem name -> data set name.
CONV_PROBLEMS = {"cifar10": "cifar10", "conv_fashion_mnist": "fashion_mnist",
                 "conv_mnist": "mnist"}


def dataset_of(name: str):
  """The data set a problem of this name reads (e.g. "fashion_mnist" for "conv_fashion_mnist"),
  or None."""
  if name in DATASET_PROBLEMS:
    return name
  return CONV_PROBLEMS.get(name)


def make_problem(config, split: str = "train", data_dir=None) -> Problem:
  """Builds a problem from its `get_config()` dict or its name.

  Args:
    config: e.g. {"name": "quadratic", "num_dims": 10} or {"name": "mnist", "hidden_sizes": [20]}.
    split: for data-set problems, whose images: "train", "valid" or "test". The others ignore it.
    data_dir: for data-set problems, the data cache (see `l2l_tf.data`).

  Raises:
    ValueError: an unknown name or bad settings.
    l2l_tf.data.DataNotFoundError: the data set is not available (the message says how to get it).
  """
  if isinstance(config, str):
    config = {"name": config}
  config = dict(config)
  name = config.pop("name", None)
  if name in DATASET_PROBLEMS:
    from l2l_tf import data  # pylint: disable=g-import-not-at-top
    images, labels = data.load_uint8(name, split, data_dir)
    config.pop("split", None)
    return MLPClassifier(images, labels, name=name, data_config={"split": split}, **config)
  if name in CONV_PROBLEMS:
    from l2l_tf import data  # pylint: disable=g-import-not-at-top
    dataset = CONV_PROBLEMS[name]
    spec = data.CIFAR10 if dataset == "cifar10" else data.get_spec(dataset)
    images, labels = data.load_uint8(spec, split, data_dir)
    config.pop("split", None)
    return ConvClassifier(images, labels, name=name, data_config={"split": split}, **config)
  if name not in PROBLEMS:
    known = sorted(list(PROBLEMS) + list(DATASET_PROBLEMS) + list(CONV_PROBLEMS))
    raise errors.ConfigError(f"Unknown problem {name!r}; known: {', '.join(known)}.")
  return PROBLEMS[name](**config)
