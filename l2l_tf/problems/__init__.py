"""Optimizee problems (see `base.Problem`)."""

from l2l_tf.problems.base import Problem, fold_in, split_seed
from l2l_tf.problems.conv import ConvClassifier
from l2l_tf.problems.mlp import MLPClassifier
from l2l_tf.problems.quadratic import Quadratic, Square
from l2l_tf.problems import style_transfer
from l2l_tf.problems.style_transfer import StyleTransfer
from l2l_tf import errors

PROBLEMS = {"quadratic": Quadratic, "square": Square}
DATASET_PROBLEMS = ("mnist", "fashion_mnist")
# The conv-net optimizee (paper Fig. 7) by data set: problem name -> data set name.
CONV_PROBLEMS = {"cifar10": "cifar10", "conv_fashion_mnist": "fashion_mnist",
                 "conv_mnist": "mnist"}


# The style-transfer optimizee (paper Sec. 3.5, Figs. 8-9) reads the photographs data set.
NEURAL_ART = "neural_art"


def dataset_of(name: str):
  """The data set a problem of this name reads (e.g. "fashion_mnist" for "conv_fashion_mnist"),
  or None."""
  if name in DATASET_PROBLEMS:
    return name
  if name == NEURAL_ART:
    return "photos"
  return CONV_PROBLEMS.get(name)


def make_style_transfer(config: dict, split: str, data_dir=None) -> StyleTransfer:
  """The Neural Art problem of a config (`StyleTransfer.get_config()` keys plus the feature
  network's): content images are the crops of `split`'s photographs, at `image_size`."""
  from l2l_tf.data import photos  # pylint: disable=g-import-not-at-top
  from l2l_tf.problems import feature_networks  # pylint: disable=g-import-not-at-top
  config = dict(config)
  size = int(config.pop("image_size", 64))
  style = config.pop("style_image", "ihc")
  if size < 8:
    raise errors.ConfigError(f"image_size must be at least 8 for the style-transfer problem, "
                             f"got {size}.")
  network_config = {k: config.pop(k) for k in ("feature_network", "feature_weights",
                                               "feature_width_divisor", "feature_seed")
                    if k in config}
  for key in ("split", "stand_in", "network_description"):  # Recorded, not settings.
    config.pop(key, None)
  content_layers = feature_networks.check_layers(
      config.get("content_layers", style_transfer.CONTENT_LAYERS), "content_layers")
  style_layers = feature_networks.check_layers(
      config.get("style_layers", style_transfer.STYLE_LAYERS), "style_layers")
  network = feature_networks.make_feature_network(
      network_config.get("feature_network", "random_vgg19"), content_layers + style_layers,
      network_config.get("feature_weights"), network_config.get("feature_width_divisor", 8),
      network_config.get("feature_seed", 0))
  images = photos.load_photos(data_dir)
  contents, where = photos.split_crops(split, size, images=images)
  data_config = {"split": split, "style_image": style, **network_config}
  return StyleTransfer(contents, photos.style_image(style, size, images=images), network,
                       data_config=data_config,
                       content_sources=[f"{c.source} (k={c.scale}, {c.row},{c.col})" for c in where],
                       **config)


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
  if name == NEURAL_ART:
    return make_style_transfer(config, split, data_dir)
  if name not in PROBLEMS:
    known = sorted(list(PROBLEMS) + list(DATASET_PROBLEMS) + list(CONV_PROBLEMS) + [NEURAL_ART])
    raise errors.ConfigError(f"Unknown problem {name!r}; known: {', '.join(known)}.")
  return PROBLEMS[name](**config)
