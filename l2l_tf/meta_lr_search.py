"""Random search of the meta learning rate on validation loss (paper Sec. 3), absl entry point.

    python -m l2l_tf.meta_lr_search --flagfile=flags/mnist.flags --output_dir=runs/mnist_search

Draws `--num_candidates` learning rates log-uniformly from [`--min_rate`, `--max_rate`] (seeded),
meta-trains each for `--search_epochs` epochs with the flagfile's other settings (one
`l2l_tf.train` process per candidate, `--parallel` at a time, each resumable), and writes
`<output_dir>/search.json` with every candidate's best validation final loss. Continue the winner
with `python -m l2l_tf.train` on its directory and more `--num_epochs`: it resumes.

With `--search_seeds=S > 1` each candidate is meta-trained with the training seeds `--seed`, ...,
`--seed` + S - 1 (directories `lr_<rate>` for the first, as with one seed, and
`lr_<rate>_s<seed>` for the others) and scored by the mean over seeds of each run's best
validation final loss, so that a rate whose meta-training is stable on one seed only does not
win. The candidate rates are drawn from `--seed` either way, so adding seeds to a finished search
keeps its rates and reuses its runs.
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
flags.DEFINE_integer("search_seeds", 1, "Training seeds per candidate (--seed, --seed + 1, ...); "
                     "a candidate's score is the mean of its seeds' best validation final loss.")


def candidate_rates(num, low, high, seed):
  rng = np.random.default_rng(seed)
  return sorted(float(f"{10 ** x:.3g}") for x in rng.uniform(math.log10(low), math.log10(high),
                                                              num))


def forwarded_flags():
  """The flags given to this command, minus the search's own."""
  own = ("--num_candidates", "--min_rate", "--max_rate", "--search_epochs", "--parallel",
         "--output_dir", "--meta_learning_rate", "--num_epochs", "--search_seeds")
  return [a for a in sys.argv[1:] if not a.startswith(own)]


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  cli.require_positive("num_candidates", "search_epochs", "parallel", "min_rate", "max_rate",
                       "search_seeds")
  if FLAGS.min_rate >= FLAGS.max_rate:
    raise cli.UsageError("--min_rate must be below --max_rate.")
  out = cli.require_writable_dir(FLAGS.output_dir)
  rates = candidate_rates(FLAGS.num_candidates, FLAGS.min_rate, FLAGS.max_rate, FLAGS.seed)
  seeds = [FLAGS.seed + i for i in range(FLAGS.search_seeds)]
  runs = [(rate, seed) for rate in rates for seed in seeds]
  pending = list(runs)
  running = {}
  while pending or running:
    while pending and len(running) < FLAGS.parallel:
      rate, seed = run = pending.pop(0)
      # The first seed's command is the one-seed search's, so its runs are reused.
      seed_flag = [f"--seed={seed}"] if seed != FLAGS.seed else []
      command = [sys.executable, "-m", "l2l_tf.train", *forwarded_flags(), *seed_flag,
                 f"--meta_learning_rate={rate}", f"--num_epochs={FLAGS.search_epochs}",
                 f"--output_dir={out / run_name(rate, seed)}", "--progress=false"]
      log = open(out / f"{run_name(rate, seed)}.log", "a")  # pylint: disable=consider-using-with
      running[run] = (subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT), log)
      print(f"started meta learning rate {rate:g}, seed {seed}: {' '.join(command[1:])}")
    time.sleep(5)
    for run in list(running):
      proc, log = running[run]
      if proc.poll() is not None:
        log.close()
        del running[run]
        if proc.returncode:
          raise cli.UsageError(f"training with meta learning rate {run[0]:g} (seed {run[1]}) "
                               f"failed; see {out / run_name(*run)}.log; rerun the same command "
                               f"to resume.")
  per_seed = {}
  for rate, seed in runs:
    with open(out / run_name(rate, seed) / "optimizer" / "config.json") as f:
      per_seed.setdefault(f"{rate:g}", []).append(
          json.load(f)["metadata"]["best_validation_final_loss"])
  scores = {rate: float(np.mean(values)) for rate, values in per_seed.items()}
  best = min(scores, key=scores.get)
  summary = {"command": cli.command_line(), "rates": rates, "search_epochs": FLAGS.search_epochs,
             "best_validation_final_loss": scores, "best_rate": float(best),
             "best_run": str(out / run_name(float(best), FLAGS.seed))}
  if len(seeds) > 1:
    summary.update(seeds=seeds, best_validation_final_loss_per_seed=per_seed,
                   best_runs=[str(out / run_name(float(best), seed)) for seed in seeds])
  (out / "search.json").write_text(json.dumps(summary, indent=2))
  for rate, score in scores.items():
    each = f" (seeds: {', '.join(f'{v:.4f}' for v in per_seed[rate])})" if len(seeds) > 1 else ""
    print(f"meta learning rate {rate:>8}: best validation final loss {score:.4f}{each}")
  print(f"best: {best} ({out / run_name(float(best), FLAGS.seed)})")


def run_name(rate: float, seed: int) -> str:
  """A candidate run's directory: lr_<rate> for the first seed, lr_<rate>_s<seed> for others."""
  return f"lr_{rate:g}" if seed == FLAGS.seed else f"lr_{rate:g}_s{seed}"


if __name__ == "__main__":
  app.run(main)
