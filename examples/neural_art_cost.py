"""CPU cost of one Neural Art optimisation step: why the stand-in feature network is narrow
(README, Neural Art).

Prints milliseconds of CPU time per image and step (f and its gradient with respect to the image,
one TensorFlow thread, graph mode, a batch of 8 images) for VGG-19 at full width and for the
stand-in at 1/8 width, truncated at a few depths, at 64 x 64 and 128 x 128. The weights are random
in both (the cost does not depend on them).

    python examples/neural_art_cost.py
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf.problems import feature_networks, style_transfer  # pylint: disable=g-import-not-at-top,wrong-import-position

CASES = [  # (width divisor, content layers, style layers, size, batch)
    (1, ["block2_conv1"], ["input", "block1_conv1", "block2_conv1"], 64, 8),
    (8, ["block4_conv2"], ["input", "block1_conv1", "block2_conv1", "block3_conv1",
                           "block4_conv1", "block5_conv1"], 64, 8),
    (8, list(style_transfer.CONTENT_LAYERS), list(style_transfer.STYLE_LAYERS), 64, 8),
    (8, list(style_transfer.CONTENT_LAYERS), list(style_transfer.STYLE_LAYERS), 128, 8),
]


def cost_ms(divisor, content_layers, style_layers, size, batch, repeats=5) -> float:
  rng = np.random.default_rng(0)
  images = rng.uniform(0, 1, (batch, size, size, 3)).astype(np.float32)
  network = feature_networks.FeatureNetwork(
      feature_networks.random_weights(
          feature_networks.deepest(content_layers + style_layers), divisor), "random", True)
  problem = style_transfer.StyleTransfer(images, images[0], network, content_layers, style_layers)
  instance = problem.instances(list(range(batch)))

  @tf.function
  def step(x):
    with tf.GradientTape() as tape:
      tape.watch(x)
      loss = problem.loss([x], instance, 0)
    return tape.gradient(loss, x)

  x = tf.constant(images)
  step(x)
  start = time.process_time()
  for _ in range(repeats):
    step(x)
  return (time.process_time() - start) / repeats / batch * 1000


def main():
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  for divisor, content, style, size, batch in CASES:
    last = feature_networks.deepest(content + style)
    print(f"width 1/{divisor}, up to {last}, {size} x {size}: "
          f"{cost_ms(divisor, content, style, size, batch):.1f} ms per image and step")


if __name__ == "__main__":
  main()
