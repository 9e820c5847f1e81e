"""CPU cost of evaluating a Neural Art figure: why `flags/neural_art.flags` evaluates one image at a
time (README, Neural Art).

Prints CPU milliseconds per image and optimisation step (one TensorFlow thread, process CPU time)
of the shipped LSTM (the flagfile's `pretrained:neural_art`) and of Adam on the test images, one
image at a time against a chunk of several images in one batch, in graph mode and (for the LSTM,
one image) under XLA; then each ratio to one image in graph mode, measured in the same run.

    python examples/neural_art_eval_cost.py [--timed_steps=16]
"""

import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = cli.FLAGS
flags.DEFINE_integer("timed_steps", 16, "Optimisation steps per timed run.")

# (flagfile, chunk of several images): the training setting and the new style at 128 x 128.
SETTINGS = [("flags/neural_art.flags", 25), ("flags/neural_art_new_style.flags", 4)]


def cost_ms(problem, optimizer, num_images: int, chunk: int, jit_compile: bool) -> float:
  """CPU-ms per image and step of `optimizer` on `num_images` test images, `chunk` at a time
  (after one untimed run that traces and compiles)."""
  from l2l_tf.evaluation import curves  # pylint: disable=g-import-not-at-top
  from l2l_tf.problems import split_seed  # pylint: disable=g-import-not-at-top
  instance, params = problem.sample(num_images, split_seed(0, "test", 0))
  run = lambda: curves.evaluate_losses(problem, optimizer, instance, params, FLAGS.timed_steps,
                                       chunk_size=chunk, jit_compile=jit_compile)
  run()
  start = time.process_time()
  run()
  return (time.process_time() - start) / num_images / FLAGS.timed_steps * 1000


def main(argv):
  del argv
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from l2l_tf import optimizers  # pylint: disable=g-import-not-at-top
  tf.config.threading.set_intra_op_parallelism_threads(1)
  tf.config.threading.set_inter_op_parallelism_threads(1)
  os.chdir(REPO)
  timed_steps = FLAGS.timed_steps
  for flagfile, chunk in SETTINGS:
    FLAGS.unparse_flags()
    FLAGS(["prog", f"--flagfile={flagfile}", f"--timed_steps={timed_steps}"])
    problem = cli.make_problem("test")
    learned = optimizers.load_optimizer(FLAGS.optimizer_path)
    for name, optimizer, cases in [
        ("LSTM", learned, [(1, False), (chunk, False), (1, True)]),
        ("Adam", optimizers.Adam(0.03), [(1, False), (chunk, False)])]:
      one = None
      for size, jit in cases:
        ms = cost_ms(problem, optimizer, chunk, size, jit)
        one = one or ms
        print(f"{FLAGS.image_size} x {FLAGS.image_size}, {name}, "
              f"{'one image' if size == 1 else f'chunks of {size}'}"
              f"{', XLA' if jit else ''}: {ms:.1f} CPU-ms per image-step "
              f"({ms / one:.2f}x one image)", flush=True)


if __name__ == "__main__":
  app.run(main)
