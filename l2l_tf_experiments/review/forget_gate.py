"""The review's forget-gate question, asked of the L2L optimizer itself (issue 8, item 4).

Schmidhuber's review asks which LSTM the 2016 paper used: the 1997 cell without a forget gate or
the 2000 cell with one. The paper (and DeepMind's code) use the forget-gate cell. This ablation
meta-trains the paper's coordinatewise 2 x 20 LSTM optimizer both ways, on the quadratic (paper
Fig. 4 left) and MNIST (Fig. 4 centre) settings of `flags/`, with several meta-training seeds
each and the same budget, and evaluates every trained optimizer on the same held-out test
problems at 1x, 2x and 4x the meta-training horizon T (it was trained on T steps only; running
longer tests whether it generalises in time, where an ungated cell state may drift).

Statistics:
* per seed: the mean test loss at step H over the test problems (runs that diverge are counted,
  not averaged);
* per variant: the mean over seeds with a Student-t 95% CI over seeds (the meta-training seed is
  the unit of replication);
* the paired difference (no forget gate - forget gate) per seed (same seed: same initial
  meta-parameter draw and same training problems), mean with a Student-t 95% CI over seeds.
Tuned Adam (its learning rate chosen on validation problems for each horizon) is the reference.

The figure and its flags: `l2l_tf_experiments.review.figures` (`python -m l2l_tf.reproduce
--figure=review_forget_gate`); its table and plot: `tables`, `plots`.
"""

import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from l2l_tf_experiments.review import ablation as ablation_lib
from l2l_tf_experiments.review.ablation import (AblationSetting, HORIZON_MULTIPLES, Variant,
                                                per_run_at, run_name)

FIGURE = "review_forget_gate"
# (legend name, run-name key, forget_gate)
VARIANTS = (("L2L LSTM, forget gate (2000)", "forget", True),
            ("L2L LSTM, no forget gate (1997)", "no_forget", False))
FORGET_GATE_OF = {name: gate for name, _, gate in VARIANTS}
ADAM = ablation_lib.tuned_name("adam")
_VARIANTS = tuple(Variant(name, key, (f"--forget_gate={str(gate).lower()}",),
                          (("forget_gate", gate),)) for name, key, gate in VARIANTS)


SETTINGS = {
    # Paper Fig. 4 left; 1,000 epochs of 32 functions each (the shipped `quadratic` had 3,000).
    "quadratic": AblationSetting("flags/quadratic.flags", 1000,
                                 ("--num_validation_problems=100",), 100, 1000, 100,
                                 jit_compile=True),
    # Paper Fig. 4 centre; 200 epochs each (the shipped `mnist` had 4,000): both variants get the
    # same short budget, so this compares the cells, not the best MNIST optimizer. 20 test runs
    # per seed (100 per variant): the seeds, not the runs, are the unit of the CI.
    "mnist": AblationSetting("flags/mnist.flags", 200, ("--validation_every=50",), 100, 20, 32,
                             chunk_size=20, jit_compile=True),
    # Paper Fig. 5 (right): the MNIST-trained optimizers on the ReLU MLP, at the horizon.
    "mnist_relu": AblationSetting("flags/mnist.flags", 200, ("--validation_every=50",), 100, 20,
                                  32, chunk_size=20, jit_compile=True, trained_on="mnist",
                                  problem_overrides=(("activation", "relu"),),
                                  horizon_multiples=(1,)),
}


def train_command(setting: AblationSetting, forget_gate: bool, seed: int, output_dir,
                  python: str = sys.executable) -> list:
  """The `l2l_tf.train` command of one ablation run (run it from the repository root)."""
  return ablation_lib.train_command(setting, (f"--forget_gate={str(forget_gate).lower()}",),
                                    seed, output_dir, python)


def train_all(problems: Sequence[str], seeds: Sequence[int], train_dir: Path, repo_root: Path,
              settings: Dict[str, AblationSetting] = None,
              log_fn: Callable[[str], None] = print) -> Dict[str, Path]:
  """Meta-trains every (problem, variant, seed) run (`ablation.train_all`)."""
  return ablation_lib.train_all(problems, seeds, train_dir, repo_root, settings or SETTINGS,
                                _VARIANTS, log_fn)


def evaluate_problem(problem_name: str, optimizer_dirs: Dict[str, Dict[int, Path]],
                     setting: AblationSetting, eval_seed: int, data_dir: Optional[str] = None,
                     grid: Optional[Sequence[float]] = None,
                     log_fn: Callable[[str], None] = print) -> dict:
  """Evaluates one problem's ablation: every variant's seeds and tuned Adam, 1x/2x/4x horizon,
  and the paired difference no forget gate - forget gate (`ablation.evaluate_problem`)."""
  entry = ablation_lib.evaluate_problem(problem_name, optimizer_dirs, setting, eval_seed,
                                        _VARIANTS, data_dir, grid, ("adam",),
                                        reference=VARIANTS[0][0], log_fn=log_fn)
  differences = entry.pop("difference_minus_reference")
  entry["difference_no_forget_minus_forget"] = differences.get(VARIANTS[1][0], {})
  entry.pop("reference")
  return entry


def optimizer_dirs(problems: Sequence[str], seeds: Sequence[int], root: Path, trained: bool,
                   settings: Dict[str, AblationSetting] = None) -> Dict[str, dict]:
  """problem -> variant legend name -> seed -> optimizer directory (`ablation.optimizer_dirs`)."""
  return ablation_lib.optimizer_dirs(problems, seeds, root, trained, settings or SETTINGS,
                                     _VARIANTS)


def ablation(dirs: Dict[str, dict], eval_seed: int, data_dir: Optional[str] = None,
             grid: Optional[Sequence[float]] = None, num_test_problems: int = 0,
             num_validation_problems: int = 0, command: str = "",
             log_fn: Callable[[str], None] = print) -> dict:
  """The review_forget_gate results: `evaluate_problem` for every problem of `dirs` (see
  `optimizer_dirs`; schema: `ablation.collect`), with the settings' numbers of test / validation
  problems unless given (> 0). The curves of "optimizers" are those evaluated longest
  (4 x T = 400 steps: quadratic and mnist)."""
  return ablation_lib.collect(FIGURE, dirs, SETTINGS, evaluate_problem, eval_seed, data_dir, grid,
                              num_test_problems, num_validation_problems, command, log_fn)
