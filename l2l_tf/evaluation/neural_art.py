"""Paper Fig. 9: the images that the learned optimizer and tuned Adam make from test content images.

One setting (a style and a resolution) is a `StyleTransfer` problem on the test photographs; its
panel holds, for a few chosen content images, the content, the style, and the image after
`num_steps` steps of each optimizer, with each final loss. Adam's learning rate is tuned on the
validation photographs as for the curves (`tuning.tune_learning_rate`).
"""

import time
from typing import Mapping, Sequence

import numpy as np
import tensorflow as tf

from l2l_tf.evaluation import tuning
from l2l_tf.meta import unroll
from l2l_tf.optimizers import baselines as baselines_lib
from l2l_tf.problems import base as problems_base


def final_images(problem, optimizer, instance, params, num_steps: int,
                 jit_compile: bool = False):
  """Runs `optimizer` from a fresh state; returns (losses [N, T + 1], images [N, S, S, 3])."""

  @tf.function(jit_compile=jit_compile)
  def run(instance, params):
    state = optimizer.initial_state(params)
    losses, params, _ = unroll.trajectory(problem, optimizer, instance, params, state, num_steps)
    return tf.transpose(losses), params[0]

  losses, images = run(instance, params)
  return losses.numpy(), images.numpy()


def image_panel(problem, validation_problem, learned: Mapping[str, object],
                indices: Sequence[int], num_steps: int, num_validation_problems: int, seed: int,
                grid: Sequence[float], label: str, jit_compile: bool = False) -> dict:
  """One setting's images: the learned optimizers' and tuned Adam's after `num_steps` steps.

  Args:
    problem: the setting's problem on the test photographs.
    validation_problem: the same on the validation photographs (to tune Adam).
    learned: legend name -> learned optimizer.
    indices: the test content images shown (indices into `problem.contents`).
    num_steps: optimizee steps.
    num_validation_problems, seed, grid: Adam's learning-rate search.
    label: the setting's name in the figure.
    jit_compile: compile the runs with XLA.

  Returns:
    {"label", "problem", "indices", "content" [n, S, S, 3], "style" [S, S, 3],
     "images": {name: [n, S, S, 3]}, "final_losses": {name: [n]}, "adam_learning_rate",
     "timing_cpu_s"}; the arrays are NumPy (`to_json` drops them).
  """
  start = time.process_time()
  adam = baselines_lib.BASELINES["adam"]()
  valid = validation_problem.sample(num_validation_problems,
                                    problems_base.split_seed(seed, "valid"))
  lr, scores = tuning.tune_learning_rate(validation_problem, adam, *valid, num_steps, grid,
                                         jit_compile=jit_compile)
  instance = problem.instances(list(indices))
  params = problem.initial_params(instance, problems_base.split_seed(seed, "test"))
  images, finals = {}, {}
  optimizers = dict(learned)
  optimizers[baselines_lib.LEGEND_NAMES["adam"]] = adam
  for name, optimizer in optimizers.items():
    losses, final = final_images(problem, optimizer, instance, params, num_steps, jit_compile)
    images[name] = np.clip(final, 0.0, 1.0)
    finals[name] = losses[:, -1].tolist()
  return {"label": label, "problem": problem.get_config(), "indices": [int(i) for i in indices],
          "content": instance["content"].numpy(), "style": problem.style, "images": images,
          "final_losses": finals, "adam_learning_rate": lr,
          "adam_validation_final_loss": {f"{k:g}": v for k, v in scores.items()},
          "timing_cpu_s": time.process_time() - start}


def to_json(panels: Sequence[dict]) -> list:
  """The panels without their image arrays (for the results file)."""
  drop = ("content", "style", "images")
  return [{k: v for k, v in panel.items() if k not in drop} for panel in panels]
