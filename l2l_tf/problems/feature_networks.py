"""Fixed convolutional feature networks of the style-transfer optimizee (paper Sec. 3.5, Fig. 8).

Gatys et al. (2015) take content and style statistics from VGG-19 (Simonyan & Zisserman 2014)
with ImageNet weights. Two networks are offered, both of VGG-19's topology (3x3 convolutions with
ReLU, in blocks of 2, 2, 4, 4, 4 layers, each block after the first preceded by a 2 x 2 pooling
with stride 2) and named like Keras' `VGG19` layers (`block1_conv1`, ..., `block5_conv4`; a name
means the ReLU output of that convolution):

* `vgg19`: `keras.applications.VGG19` with ImageNet weights, downloaded by Keras on first use, or
  read from a Keras weights file (`weights_path`, e.g. Keras'
  `vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5`). The ImageNet weights cannot be downloaded
  on machines without internet access: `FeatureWeightsError` then names both ways.
* `random_vgg19`: the offline stand-in. The same topology with every width divided by
  `width_divisor` (8: 8, 16, 32, 64, 64 channels) and fixed random weights drawn from `seed`
  (He-normal kernels, zero biases). Networks with random filters support texture synthesis and
  style transfer (Ustyuzhaninov et al. 2017; He, Wang & Hopcroft 2016): the Gram statistics of
  random ReLU features still describe colour, edges and texture at several scales, so the
  optimisation problem stays a real, non-convex one of the same form. The narrow width keeps a
  128-step run on a 64 x 64 image at a few milliseconds per step on one CPU thread (full width
  through block2_conv1 alone costs ~7x the stand-in through block3_conv1:
  `examples/neural_art_cost.py`).

Both networks see the image as Keras' VGG preprocessing does (`keras.applications.vgg19.
preprocess_input`, "caffe" mode): RGB in [0, 1] times 255, as BGR, minus the ImageNet channel
means. Pooling is average pooling, as Gatys et al. (2016) recommend for image synthesis (it passes
gradients to every pixel; VGG's max pooling passes them to one in four). Only the layers up to the
deepest one asked for are kept. The pseudo-layer `input` is the preprocessed image itself: as a
style layer, its Gram matrix matches the colours' second moments (a random network's few
first-layer filters constrain colour only loosely).
"""

from pathlib import Path
from typing import Dict, List, Sequence, Tuple

import numpy as np
import tensorflow as tf

from l2l_tf import errors

BLOCK_DEPTHS = (2, 2, 4, 4, 4)
BLOCK_WIDTHS = (64, 128, 256, 512, 512)
LAYER_NAMES = tuple(f"block{b + 1}_conv{i + 1}" for b, depth in enumerate(BLOCK_DEPTHS)
                    for i in range(depth))
# "input": the preprocessed image itself (its Gram matrix holds the colours' second moments).
INPUT = "input"
FEATURE_NAMES = (INPUT,) + LAYER_NAMES
IMAGENET_MEAN_BGR = (103.939, 116.779, 123.68)  # keras.applications.imagenet_utils, "caffe".
NETWORKS = ("vgg19", "random_vgg19")
KERAS_WEIGHTS_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5"


class FeatureWeightsError(errors.Error, FileNotFoundError):
  """The ImageNet weights of VGG-19 cannot be had; the message names the ways to get them."""


def check_layers(layers: Sequence[str], what: str) -> Tuple[str, ...]:
  """The layer names, checked against VGG-19's (and "input")."""
  layers = tuple(layers)
  unknown = [l for l in layers if l not in FEATURE_NAMES]
  if unknown or not layers or len(set(layers)) != len(layers):
    raise errors.ConfigError(f"{what} must be distinct VGG-19 layer names ({LAYER_NAMES[0]} .. "
                             f"{LAYER_NAMES[-1]}, or {INPUT}), got {list(layers)}.")
  return layers


def deepest(layers: Sequence[str]) -> str:
  """The deepest convolution needed for `layers` (block1_conv1 at least)."""
  return LAYER_NAMES[max(FEATURE_NAMES.index(l) - 1 for l in list(layers) + [LAYER_NAMES[0]])]


def widths(width_divisor: int = 1) -> List[int]:
  """Output channels of every layer, in order."""
  return [max(1, w // width_divisor) for w, depth in zip(BLOCK_WIDTHS, BLOCK_DEPTHS)
          for _ in range(depth)]


def random_weights(last_layer: str, width_divisor: int = 8,
                   seed: int = 0) -> List[Tuple[np.ndarray, np.ndarray]]:
  """(kernel [3, 3, in, out], bias [out]) of each layer up to `last_layer`: He-normal kernels
  (stddev sqrt(2 / fan_in)), which keep the scale of ReLU activations from layer to layer, and
  zero biases. The draw depends only on `seed` and the layer's shape."""
  out = []
  channels = 3
  for index, width in enumerate(widths(width_divisor)[:LAYER_NAMES.index(last_layer) + 1]):
    rng = np.random.default_rng([int(seed), index])
    kernel = rng.normal(0.0, np.sqrt(2.0 / (9 * channels)), (3, 3, channels, width))
    out.append((kernel.astype(np.float32), np.zeros(width, np.float32)))
    channels = width
  return out


def imagenet_weights(last_layer: str, weights_path=None) -> List[Tuple[np.ndarray, np.ndarray]]:
  """VGG-19's ImageNet (kernel, bias) of each layer up to `last_layer`, from Keras.

  Args:
    last_layer: the deepest layer needed.
    weights_path: a Keras weights file of `VGG19(include_top=False)`; None: Keras' download
      (cached in ~/.keras/models).

  Raises:
    FeatureWeightsError: the file is missing or unreadable, or the download failed.
  """
  import keras  # pylint: disable=g-import-not-at-top
  ways = (f"pass --feature_weights=PATH (a Keras weights file of VGG19(include_top=False), e.g. "
          f"{KERAS_WEIGHTS_FILE}), or use the offline stand-in --feature_network=random_vgg19")
  if weights_path is not None:
    path = Path(weights_path).expanduser()
    if not path.is_file():
      raise FeatureWeightsError(f"VGG-19 weights file {path} not found: {ways}.")
    source = str(path)
  else:
    source = "imagenet"
  try:
    model = keras.applications.VGG19(include_top=False, weights=source,
                                     input_shape=(None, None, 3))
  except Exception as e:  # pylint: disable=broad-except  (Keras raises several kinds)
    what = (f"VGG-19 weights file {source} does not load ({type(e).__name__})"
            if weights_path is not None else
            f"VGG-19's ImageNet weights could not be downloaded ({type(e).__name__}: "
            f"{str(e).splitlines()[0][:120] if str(e) else 'no message'})")
    raise FeatureWeightsError(f"{what}: {ways}.") from e
  out = []
  for name in LAYER_NAMES[:LAYER_NAMES.index(last_layer) + 1]:
    kernel, bias = model.get_layer(name).get_weights()
    out.append((np.asarray(kernel, np.float32), np.asarray(bias, np.float32)))
  return out


class FeatureNetwork:
  """A VGG-19-topology network with fixed weights, truncated at its deepest layer.

  Args:
    weights: (kernel [3, 3, in, out], bias [out]) per layer, from block1_conv1 on.
    description: what the network is (recorded in results and figure titles).
    stand_in: whether it stands in for VGG-19's ImageNet weights (figures say so).
  """

  def __init__(self, weights: Sequence[Tuple[np.ndarray, np.ndarray]], description: str,
               stand_in: bool):
    if not 0 < len(weights) <= len(LAYER_NAMES):
      raise errors.ConfigError(f"A feature network has 1..{len(LAYER_NAMES)} layers, got "
                               f"{len(weights)}.")
    channels = 3
    for name, (kernel, bias) in zip(LAYER_NAMES, weights):
      if kernel.shape[:3] != (3, 3, channels) or bias.shape != kernel.shape[3:]:
        raise errors.ConfigError(f"{name}: kernel {kernel.shape} and bias {bias.shape} do not "
                                 f"fit {channels} input channels.")
      channels = kernel.shape[3]
    self.layer_names = LAYER_NAMES[:len(weights)]
    self.weights = [(tf.constant(k), tf.constant(b)) for k, b in weights]
    self.description = description
    self.stand_in = bool(stand_in)

  def channels(self, layer: str) -> int:
    return int(self.weights[self.layer_names.index(layer)][0].shape[3])

  def __call__(self, images: tf.Tensor, layers: Sequence[str]) -> Dict[str, tf.Tensor]:
    """The ReLU activations [N, h, w, C] of `layers` for images [N, H, W, 3] (RGB in [0, 1])."""
    wanted = set(layers)
    missing = wanted - set(self.layer_names) - {INPUT}
    if missing:
      raise errors.ConfigError(f"Layers {sorted(missing)} are beyond this network's last layer "
                               f"{self.layer_names[-1]}.")
    dtype = images.dtype
    x = images[..., ::-1] * tf.constant(255.0, dtype) - tf.constant(IMAGENET_MEAN_BGR, dtype)
    out = {INPUT: x} if INPUT in wanted else {}
    for name, (kernel, bias) in zip(self.layer_names, self.weights):
      if len(out) == len(wanted):
        break
      if name.endswith("_conv1") and name != "block1_conv1":
        x = tf.nn.avg_pool2d(x, 2, 2, "VALID")
      x = tf.nn.relu(tf.nn.conv2d(x, tf.cast(kernel, dtype), 1, "SAME") + tf.cast(bias, dtype))
      if name in wanted:
        out[name] = x
    return out


def make_feature_network(name: str, layers: Sequence[str], weights_path=None,
                         width_divisor: int = 8, seed: int = 0) -> FeatureNetwork:
  """The feature network `name` ("vgg19" or "random_vgg19") truncated at the deepest of `layers`.

  Raises:
    FeatureWeightsError: `vgg19` without loadable ImageNet weights.
    ConfigError: an unknown network or layer, or settings that do not go together.
  """
  last = deepest(check_layers(tuple(dict.fromkeys(layers)), "layers"))
  if name == "vgg19":
    if int(width_divisor) != 1:
      raise errors.ConfigError("The ImageNet VGG-19 has its full width: width_divisor must be "
                               f"1 with vgg19, got {width_divisor}.")
    source = f"weights file {weights_path}" if weights_path else "ImageNet weights"
    return FeatureNetwork(imagenet_weights(last, weights_path),
                          f"VGG-19 ({source}) up to {last}", stand_in=False)
  if name == "random_vgg19":
    if weights_path is not None:
      raise errors.ConfigError("A weights file is for --feature_network=vgg19; random_vgg19 "
                               "draws its weights from the seed.")
    if int(width_divisor) < 1:
      raise errors.ConfigError(f"width_divisor must be >= 1, got {width_divisor}.")
    return FeatureNetwork(random_weights(last, int(width_divisor), int(seed)),
                          f"STAND-IN for ImageNet VGG-19: VGG-19 topology at 1/{int(width_divisor)}"
                          f" width, random weights (seed {int(seed)}), up to {last}",
                          stand_in=True)
  raise errors.ConfigError(f"Unknown feature network {name!r}; choose one of {', '.join(NETWORKS)}.")
