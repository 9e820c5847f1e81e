"""Random search of the meta learning rate on validation loss (paper Sec. 3), absl entry point.

    python -m l2l_tf.meta_lr_search --flagfile=flags/mnist.flags --output_dir=runs/mnist_search

Draws `--num_candidates` learning rates log-uniformly from [`--min_rate`, `--max_rate`] (seeded),
meta-trains each for `--search_epochs` epochs with the flagfile's other settings (one
`l2l_tf.train` process per candidate, `--parallel` at a time, each resumable), and writes
`<output_dir>/search.json` with every candidate's best validation final loss. Continue the winner
with `python -m l2l_tf.train` on its directory and more `--num_epochs`: it resumes.
"""

import json
import math
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position

FLAGS = cli.FLAGS
flags.DEFINE_integer("num_candidates", 3, "Learning rates to try.")
flags.DEFINE_float("min_rate", 1e-4, "Smallest meta learning rate of the search range.")
flags.DEFINE_float("max_rate", 1e-2, "Largest meta learning rate of the search range.")
flags.DEFINE_integer("search_epochs", 200, "Meta-training epochs per candidate.")
flags.DEFINE_integer("parallel", 2, "Candidates trained at once.")


def candidate_rates(num, low, high, seed):
  rng = np.random.default_rng(seed)
  return sorted(float(f"{10 ** x:.3g}") for x in rng.uniform(math.log10(low), math.log10(high),
                                                              num))


def forwarded_flags():
  """The flags given to this command, minus the search's own."""
  own = ("--num_candidates", "--min_rate", "--max_rate", "--search_epochs", "--parallel",
         "--output_dir", "--meta_learning_rate", "--num_epochs")
  return [a for a in sys.argv[1:] if not a.startswith(own)]


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  cli.require_positive("num_candidates", "search_epochs", "parallel", "min_rate", "max_rate")
  if FLAGS.min_rate >= FLAGS.max_rate:
    raise cli.UsageError("--min_rate must be below --max_rate.")
  out = cli.require_writable_dir(FLAGS.output_dir)
  rates = candidate_rates(FLAGS.num_candidates, FLAGS.min_rate, FLAGS.max_rate, FLAGS.seed)
  pending = list(rates)
  running = {}
  while pending or running:
    while pending and len(running) < FLAGS.parallel:
      rate = pending.pop(0)
      command = [sys.executable, "-m", "l2l_tf.train", *forwarded_flags(),
                 f"--meta_learning_rate={rate}", f"--num_epochs={FLAGS.search_epochs}",
                 f"--output_dir={out / f'lr_{rate:g}'}", "--progress=false"]
      log = open(out / f"lr_{rate:g}.log", "a")  # pylint: disable=consider-using-with
      running[rate] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
      print(f"started meta learning rate {rate:g}: {' '.join(command[1:])}")
    time.sleep(5)
    for rate in list(running):
      proc, log = running[rate]
      if proc.poll() is not None:
        log.close()
        del running[rate]
        if proc.returncode:
          raise cli.UsageError(f"training with meta learning rate {rate:g} failed; see "
                               f"{out / f'lr_{rate:g}.log'}")
  scores = {}
  for rate in rates:
    with open(out / f"lr_{rate:g}" / "optimizer" / "config.json") as f:
      scores[f"{rate:g}"] = json.load(f)["metadata"]["best_validation_final_loss"]
  best = min(scores, key=scores.get)
  summary = {"command": cli.command_line(), "rates": rates, "search_epochs": FLAGS.search_epochs,
             "best_validation_final_loss": scores, "best_rate": float(best),
             "best_run": str(out / f"lr_{best}")}
  (out / "search.json").write_text(json.dumps(summary, indent=2))
  for rate, score in scores.items():
    print(f"meta learning rate {rate:>8}: best validation final loss {score:.4f}")
  print(f"best: {best} ({out / f'lr_{best}'})")


if __name__ == "__main__":
  app.run(main)
