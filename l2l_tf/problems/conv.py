"""The paper's CIFAR optimizee (Sec. 3.4, Fig. 7): a small conv net trained on random minibatches.

f(theta) is the mean softmax cross-entropy, on a minibatch of 128 images drawn uniformly with
replacement at every step, of the network of DeepMind's `cifar10` problem:

    [conv 5x5 (16 channels) -> batch norm -> ReLU -> max-pool 2x2/2] x 3 -> flatten
    -> fully connected 32 -> batch norm -> ReLU -> fully connected (one unit per label) -> softmax

Every instance has its own minibatch stream and its own random theta_0 ~ N(0, 0.01^2) (batch-norm
offsets start at 0). Channels, layers, kernel size, fully connected widths, image size and the
label subset are options.

Batch normalisation (Ioffe & Szegedy 2015) always uses training-mode statistics: the mean and
variance of each channel over the minibatch (and the spatial positions), separately per instance
and per step; there are no moving averages, because the optimizee is only ever trained, never run
in inference mode. Like DeepMind's code (Sonnet's `BatchNorm` default, epsilon 1e-3) it has a
learned offset (beta) but no learned scale: a ReLU commutes with a positive scale, and the next
layer is batch-normalised again, so a scale would only add coordinates that do not change what the
network can fit. With batch norm the conv and hidden layers have no bias: the mean subtraction
cancels a bias exactly (its gradient is 0), so DeepMind's code carried 4 dead bias tensors.

Parameter groups (paper Sec. 3.4: one LSTM for the convolutional and one for the fully connected
layers; DeepMind's `cifar-multi` net assignment): "conv" holds the conv kernels, "fc" everything
else (batch-norm offsets, fully connected weights and the output bias).

Vectorisation over instances: each instance's network runs as ordinary NHWC ops (one instance:
directly; several: `tf.map_fn` over instances). Measured on one CPU thread (16 x 16 images, batch
128, forward and gradient), per instance: 40-46 ms alone, 57 ms in `tf.map_fn`, 69 ms as a Python
loop, 181 ms as one batched im2col matmul, 224 ms as a depthwise conv over instances folded into
channels; a grouped conv (instances as groups) has no CPU kernel for its input gradient without
XLA, and under XLA both it (527 ms) and `tf.map_fn` (384 ms) are far slower. So do not evaluate
this problem with `--jit_compile`.
"""

from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from l2l_tf import errors
from l2l_tf.data import label_subsets
from l2l_tf.problems import base
from l2l_tf.problems import mlp

CONV_GROUP = "conv"
FC_GROUP = "fc"
BATCH_NORM_EPSILON = 1e-3  # Sonnet 1's BatchNorm default, as in DeepMind's cifar10 problem.


def param_names(num_conv_layers: int, num_fc_layers: int, batch_norm: bool = True) -> List[str]:
  """Names of the parameter tensors, in order, from the architecture alone (no data needed)."""
  shift = "beta" if batch_norm else "b"
  names = []
  for i in range(num_conv_layers):
    names += [f"conv_{i}/w", f"conv_{i}/{shift}"]
  for i in range(num_fc_layers):
    names += [f"fc_{i}/w", f"fc_{i}/{shift}"]
  return names + ["logits/w", "logits/b"]


def parameter_groups(names: Sequence[str]) -> List[str]:
  """The net of each parameter tensor: "conv" for conv kernels, "fc" for everything else."""
  return [CONV_GROUP if n.startswith("conv_") and n.endswith("/w") else FC_GROUP for n in names]


def pooled_size(image_size: int, num_conv_layers: int) -> int:
  """Height (= width) after `num_conv_layers` 2x2/2 max-pools with SAME padding."""
  size = int(image_size)
  for _ in range(num_conv_layers):
    size = (size + 1) // 2
  return size


def resize_images(images: np.ndarray, image_size: int, chunk: int = 10000) -> np.ndarray:
  """uint8 [N, H, W, C] -> uint8 [N, image_size, image_size, C] by area averaging (the mean of
  the source pixels each target pixel covers; 2x2 block means for a factor 2), rounded."""
  if images.shape[1:3] == (image_size, image_size):
    return images
  out = np.empty((len(images), image_size, image_size, images.shape[3]), np.uint8)
  for start in range(0, len(images), chunk):  # Chunks bound the float32 copy of CIFAR (490 MB).
    part = tf.image.resize(tf.cast(images[start:start + chunk], tf.float32),
                           [image_size, image_size], method="area")
    out[start:start + chunk] = np.clip(np.rint(part.numpy()), 0, 255).astype(np.uint8)
  return out


class ConvClassifier(base.Problem):
  """Cross-entropy of a conv net with batch norm on minibatches of a fixed image set.

  Args:
    images: uint8 [N, H, W] (grey) or [N, H, W, C] pixels of one split, scaled by 1/255 when used.
    labels: int [N] class labels in 0..9.
    conv_channels: output channels of each conv layer (DeepMind's code: 16, 16, 16).
    kernel_size: square kernel of every conv layer (5).
    fc_sizes: hidden fully connected layers (32).
    image_size: images are resized to image_size x image_size once, by area averaging.
    labels_subset: keep only these labels, renumbered 0..k-1 (a k-way task); None: all 10.
    batch_size: minibatch size (128).
    init_stddev: weights (and biases without batch norm) ~ N(0, init_stddev^2) (0.01).
    batch_norm: batch norm after every conv and hidden layer; without it those layers get biases.
    name: the problem's name in configs ("cifar10", "conv_fashion_mnist", ...).
    data_config: how the data was obtained (recorded in `get_config`).
  """

  def __init__(self, images, labels, conv_channels: Sequence[int] = (16, 16, 16),
               kernel_size: int = 5, fc_sizes: Sequence[int] = (32,), image_size: int = 16,
               labels_subset: Optional[Sequence[int]] = None, batch_size: int = 128,
               init_stddev: float = 0.01, batch_norm: bool = True, name: str = "conv",
               data_config=None):
    for what, values in (("conv_channels", conv_channels), ("fc_sizes", fc_sizes)):
      if any(int(v) <= 0 for v in values):
        raise errors.ConfigError(f"{what} must be positive, got {list(values)}.")
    if not conv_channels:
      raise errors.ConfigError("conv_channels must name at least one conv layer.")
    for what, value in (("kernel_size", kernel_size), ("image_size", image_size),
                        ("batch_size", batch_size)):
      if int(value) <= 0:
        raise errors.ConfigError(f"{what} must be positive, got {value}.")
    images = np.asarray(images)
    if images.ndim == 3:
      images = images[..., None]
    if images.ndim != 4 or images.dtype != np.uint8:
      raise errors.ConfigError(f"images must be uint8 [N, H, W] or [N, H, W, C], got "
                               f"{images.dtype} {images.shape}.")
    labels = np.asarray(labels)
    if len(labels) != len(images) or not len(images):
      raise errors.ConfigError(f"{len(images)} images but {len(labels)} labels.")
    self.labels_subset = None
    num_classes = label_subsets.NUM_LABELS
    if labels_subset is not None:
      self.labels_subset = label_subsets.check_labels(labels_subset)
      images, labels = label_subsets.select_labels(images, labels, self.labels_subset)
      num_classes = len(self.labels_subset)
    self.conv_channels = tuple(int(c) for c in conv_channels)
    self.kernel_size = int(kernel_size)
    self.fc_sizes = tuple(int(h) for h in fc_sizes)
    self.image_size = int(image_size)
    self.batch_size = int(batch_size)
    self.init_stddev = float(init_stddev)
    self.batch_norm = bool(batch_norm)
    self.num_classes = num_classes
    self.in_channels = images.shape[3]
    self.num_examples = len(images)
    self.images = tf.constant(resize_images(images, self.image_size))
    self.labels = tf.constant(np.asarray(labels, np.int32))
    self.name = name
    self.data_config = dict(data_config or {})

  # ---- structure --------------------------------------------------------------------------

  @property
  def param_names(self):
    return param_names(len(self.conv_channels), len(self.fc_sizes), self.batch_norm)

  @property
  def param_groups(self) -> List[str]:
    """For `GroupedOptimizer`: the net ("conv" or "fc") of each parameter tensor."""
    return parameter_groups(self.param_names)

  def param_shapes(self) -> List[tuple]:
    """Shapes of one instance's parameter tensors (without the instance axis), in order."""
    k = self.kernel_size
    shapes = []
    channels = (self.in_channels,) + self.conv_channels
    for c_in, c_out in zip(channels[:-1], channels[1:]):
      shapes += [(k, k, c_in, c_out), (c_out,)]
    flat = pooled_size(self.image_size, len(self.conv_channels)) ** 2 * self.conv_channels[-1]
    sizes = (flat,) + self.fc_sizes + (self.num_classes,)
    for d_in, d_out in zip(sizes[:-1], sizes[1:]):
      shapes += [(d_in, d_out), (d_out,)]
    return shapes

  def num_params(self) -> int:
    return int(sum(np.prod(s) for s in self.param_shapes()))

  # ---- the Problem interface --------------------------------------------------------------

  def sample_instances(self, num, seed):
    return mlp.stream_keys(num, seed)

  def initial_params(self, instance, seed):
    num = tf.shape(instance["key"])[0]
    params = []
    for index, (name, shape) in enumerate(zip(self.param_names, self.param_shapes())):
      if name.endswith("/beta"):  # Batch-norm offsets start at 0 (Sonnet's default).
        params.append(tf.zeros(tf.concat([[num], shape], 0)))
      else:
        params.append(self.init_stddev * tf.random.stateless_normal(
            tf.concat([[num], shape], 0), base.fold_in(seed, index)))
    return params

  def minibatch_indices(self, instance, step) -> tf.Tensor:
    """[num, batch_size] example indices of `step`'s minibatch for every instance."""
    return mlp.minibatch_indices(instance["key"], step, self.batch_size, self.num_examples)

  def minibatch(self, instance, step, dtype=tf.float32):
    """(images [num, B, S, S, C] in [0, 1], labels [num, B]) of `step` for every instance."""
    idx = self.minibatch_indices(instance, step)
    images = tf.cast(tf.gather(self.images, idx), dtype) * tf.constant(1.0 / 255.0, dtype)
    return images, tf.gather(self.labels, idx)

  def instance_logits(self, params, images):
    """One instance's network: params without the instance axis, images [B, S, S, C]."""
    params = list(params)
    x = images
    for _ in self.conv_channels:
      w, shift = params.pop(0), params.pop(0)
      x = self._normalise_and_shift(tf.nn.conv2d(x, w, 1, "SAME"), shift, axes=[0, 1, 2])
      x = tf.nn.max_pool2d(tf.nn.relu(x), 2, 2, "SAME")
    x = tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])
    for _ in self.fc_sizes:
      w, shift = params.pop(0), params.pop(0)
      x = tf.nn.relu(self._normalise_and_shift(tf.matmul(x, w), shift, axes=[0]))
    w, b = params
    return tf.matmul(x, w) + b

  def _normalise_and_shift(self, x, shift, axes):
    """Batch norm with training-mode statistics and offset `shift`, or just a bias without it."""
    if self.batch_norm:
      mean, variance = tf.nn.moments(x, axes, keepdims=True)
      x = (x - mean) * tf.math.rsqrt(variance + BATCH_NORM_EPSILON)
    return x + shift

  def instance_loss(self, params, images, labels):
    """One instance's mean cross-entropy on its minibatch (a scalar)."""
    xent = tf.nn.sparse_softmax_cross_entropy_with_logits(labels,
                                                          self.instance_logits(params, images))
    return tf.reduce_mean(xent)

  def loss(self, params, instance, step):
    images, labels = self.minibatch(instance, step, params[0].dtype)
    if params[0].shape[0] == 1:  # Meta-training's usual meta-batch: no loop at all.
      return self.instance_loss([p[0] for p in params], images[0], labels[0])[None]
    return tf.map_fn(lambda args: self.instance_loss(*args), (list(params), images, labels),
                     fn_output_signature=params[0].dtype)

  def get_config(self):
    return {"name": self.name, "conv_channels": list(self.conv_channels),
            "kernel_size": self.kernel_size, "fc_sizes": list(self.fc_sizes),
            "image_size": self.image_size,
            "labels_subset": None if self.labels_subset is None else list(self.labels_subset),
            "batch_size": self.batch_size, "init_stddev": self.init_stddev,
            "batch_norm": self.batch_norm, **self.data_config}
