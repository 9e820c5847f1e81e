"""The Neural Art optimizee (paper Sec. 3.5, Figs. 8-9): style transfer of Gatys et al. (2015).

theta is the image itself (one [S, S, 3] tensor per instance, RGB, 1 = full intensity), and

    f(theta) = A (alpha L_content + beta L_style + gamma L_tv),

with, for the fixed feature network F (`feature_networks`), the instance's content image c and the
one style image s:

    L_content = mean over content layers l of  ||F_l(theta) - F_l(c)||^2 / ||F_l(c)||^2
    L_style   = mean over style layers l of    ||G_l(theta) - G_l(s)||^2 / ||G_l(s)||^2,
                G_l(x) = F_l(x)^T F_l(x) / (h_l w_l)   (the C x C Gram matrix over positions)
    L_tv      = mean over pixels of the squared differences to the right and lower neighbours
                (a smoothness regulariser, Mahendran & Vedaldi 2015)

Each layer's error is relative to its target's size (Frobenius norms), so every layer counts
alike whatever the scale of its activations (Gatys et al. weight layers by hand for ImageNet
VGG-19; a network with random weights has no trained scale at all), and the terms are O(1). Each
term's value does not depend on the image size; A = S^2 / 64^2 makes f a sum
over the image in units of a 64 x 64 one, so that a pixel's gradient has the same scale at every
resolution (the test at double resolution changes the problem's size, not its per-coordinate
scale). theta_0 is the content image (Gatys et al. 2016 start from it too); the style image is
resized to S x S.

Instances are content images: `sample_instances` draws them from the split's crops (distinct
ones while there are enough: a seeded permutation) and precomputes their content features.
"""

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from l2l_tf import errors
from l2l_tf.problems import base
from l2l_tf.problems import feature_networks

REFERENCE_SIZE = 64  # A = (S / REFERENCE_SIZE)^2.
# The defaults, chosen for the offline stand-in network (README, Neural Art): with them tuned Adam
# gives a recognisably stylised image in 128 steps (docs/figures/neural_art_adam_check.png).
CONTENT_LAYERS = ("block2_conv1",)
STYLE_LAYERS = ("input", "block1_conv1", "block2_conv1", "block3_conv1")


def gram_matrix(features: tf.Tensor) -> tf.Tensor:
  """[N, h, w, C] -> [N, C, C]: sum over positions of F_p F_p^T, divided by h w."""
  shape = tf.shape(features)
  flat = tf.reshape(features, [shape[0], shape[1] * shape[2], shape[3]])
  positions = tf.cast(shape[1] * shape[2], features.dtype)
  return tf.einsum("npc,npd->ncd", flat, flat) / positions


def total_variation(images: tf.Tensor) -> tf.Tensor:
  """[N, H, W, C] -> [N]: the mean over pixels of squared neighbour differences (down, right)."""
  down = tf.reduce_mean(tf.square(images[:, 1:] - images[:, :-1]), axis=[1, 2, 3])
  right = tf.reduce_mean(tf.square(images[:, :, 1:] - images[:, :, :-1]), axis=[1, 2, 3])
  return down + right


def relative_error(x: tf.Tensor, target: tf.Tensor) -> tf.Tensor:
  """||x - target||^2 / ||target||^2 per instance (leading axis; `target` may broadcast)."""
  axes = list(range(1, len(x.shape)))
  squared = tf.reduce_sum(tf.square(x - target), axis=axes)
  size = tf.reduce_sum(tf.square(target), axis=axes)
  return squared / tf.maximum(size, tf.cast(1e-12, x.dtype))


class StyleTransfer(base.Problem):
  """f(theta) = A (alpha L_content + beta L_style + gamma L_tv) for theta the image.

  Args:
    contents: float [N, S, S, 3] in [0, 1]: the content images instances are drawn from.
    style: float [S, S, 3] in [0, 1]: the style image (at the content images' size).
    network: the fixed feature network.
    content_layers, style_layers: names of its layers (`feature_networks.LAYER_NAMES`).
    content_weight, style_weight, tv_weight: alpha, beta, gamma.
    name: the problem's name in configs.
    data_config: how the images were chosen (split, style name; recorded in `get_config`).
    content_sources: what each content image is (e.g. its photograph's name), for figures.
  """

  param_names = ["image"]

  def __init__(self, contents, style, network: feature_networks.FeatureNetwork,
               content_layers: Sequence[str] = CONTENT_LAYERS,
               style_layers: Sequence[str] = STYLE_LAYERS,
               content_weight: float = 10.0, style_weight: float = 3.0, tv_weight: float = 3.0,
               name: str = "neural_art", data_config: Optional[dict] = None,
               content_sources: Optional[Sequence[str]] = None):
    contents = np.asarray(contents, np.float32)
    style = np.asarray(style, np.float32)
    if contents.ndim != 4 or contents.shape[3] != 3 or contents.shape[1] != contents.shape[2] \
        or not len(contents):
      raise errors.ConfigError(f"contents must be float [N, S, S, 3] with N > 0, got "
                               f"{contents.shape}.")
    if style.shape != contents.shape[1:]:
      raise errors.ConfigError(f"The style image must have the content images' shape "
                               f"{contents.shape[1:]}, got {style.shape}.")
    for what, value in (("content_weight", content_weight), ("style_weight", style_weight),
                        ("tv_weight", tv_weight)):
      if not value >= 0:
        raise errors.ConfigError(f"{what} must be >= 0, got {value}.")
    self.content_layers = feature_networks.check_layers(content_layers, "content_layers")
    self.style_layers = feature_networks.check_layers(style_layers, "style_layers")
    self.network = network
    self.content_weight = float(content_weight)
    self.style_weight = float(style_weight)
    self.tv_weight = float(tv_weight)
    self.image_size = int(contents.shape[1])
    self.area = (self.image_size / REFERENCE_SIZE) ** 2
    self.contents = tf.constant(contents)
    self.num_contents = len(contents)
    self.style = style
    style_features = network(tf.constant(style[None]), self.style_layers)
    self.style_grams = [gram_matrix(style_features[l])[0] for l in self.style_layers]
    self.name = name
    self.data_config = dict(data_config or {})
    self.content_sources = (list(content_sources) if content_sources is not None
                            else [f"content {i}" for i in range(len(contents))])

  def content_indices(self, num, seed) -> tf.Tensor:
    """[num] indices into the content images: a seeded permutation, repeated if num > N."""
    order = tf.argsort(tf.random.stateless_uniform([self.num_contents], seed))
    repeats = -(-int(num) // self.num_contents)
    return tf.tile(order, [repeats])[:num]

  def sample_instances(self, num, seed):
    return self.instances(self.content_indices(num, seed))

  def instances(self, index) -> dict:
    """The instances of the content images `index` [num] (e.g. chosen ones for a figure)."""
    index = tf.convert_to_tensor(index, tf.int32)
    content = tf.gather(self.contents, index)
    features = self.network(content, self.content_layers)
    return {"index": index, "content": content,
            "features": [features[l] for l in self.content_layers]}

  def initial_params(self, instance, seed):
    del seed  # theta_0 is the content image.
    return [tf.identity(instance["content"])]

  def terms(self, image: tf.Tensor, instance) -> dict:
    """L_content, L_style and L_tv per instance, each [num]."""
    features = self.network(image, self.content_layers + self.style_layers)
    dtype = image.dtype
    content = tf.add_n([
        relative_error(features[l], tf.cast(target, dtype))
        for l, target in zip(self.content_layers, instance["features"])])
    style = tf.add_n([
        relative_error(gram_matrix(features[l]), tf.cast(target, dtype)[None])
        for l, target in zip(self.style_layers, self.style_grams)])
    return {"content": content / len(self.content_layers),
            "style": style / len(self.style_layers), "tv": total_variation(image)}

  def loss(self, params, instance, step):
    del step  # Deterministic.
    terms = self.terms(params[0], instance)
    dtype = params[0].dtype
    total = (self.content_weight * terms["content"] + self.style_weight * terms["style"]
             + self.tv_weight * terms["tv"])
    return tf.cast(self.area, dtype) * total

  def get_config(self):
    return {"name": self.name, "image_size": self.image_size,
            "content_layers": list(self.content_layers), "style_layers": list(self.style_layers),
            "content_weight": self.content_weight, "style_weight": self.style_weight,
            "tv_weight": self.tv_weight, "network_description": self.network.description,
            "stand_in": self.network.stand_in, **self.data_config}
