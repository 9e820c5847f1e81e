"""Which memory makes the better learned optimizer, at equal meta-training cost (issue 19; the
review's fast-weight point, seed_systems.md sections 3 and 7).

Five coordinatewise-controlled optimizers, each meta-trained with the same flagfile, epochs and
seeds, evaluated on the same held-out test problems at 1x and 2x the meta-training horizon
(`ablation`):

* `LSTM`: the paper's 2 x 20 LSTM (its memory: cell states);
* `Fast weights`: a per-coordinate fast matrix written by outer products (Schmidhuber 1992);
* `Fast weights (delta)`: the same with delta-rule writes (Schlag et al. 2021);
* `SRWM`: a per-coordinate self-referential weight matrix (Schmidhuber 1993; Irie et al. 2022),
  started as sign descent (`--srwm_init=sign_descent`);
* `NTM-L-BFGS`: the paper's Appendix D memory shared across coordinates, with unit-norm reads
  and keys and delta-rule writes (`l2l_tf/optimizers/ntm.py`), so that its reads do not grow
  with the number of coordinates.

Each memory's meta learning rate (and, on the quadratic, its inputs: identity or the paper's
log-and-sign) is chosen on validation problems by the same search for all five
(`QUADRATIC_SEARCHES`, `SETTINGS`).

Rows against the LSTM: the paired difference per seed (variant - LSTM), mean and t-CI over
seeds. The four baselines are tuned per horizon on validation problems.

Figures: `review_fast_weights_quadratic` and `review_fast_weights_mnist`
(`l2l_tf_experiments.review.figures`).
"""

from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from l2l_tf_experiments.review import ablation as ablation_lib
from l2l_tf_experiments.review.ablation import AblationSetting, Variant

FIGURES = {"quadratic": "review_fast_weights_quadratic", "mnist": "review_fast_weights_mnist"}
LSTM = "LSTM"
VARIANTS = (
    Variant(LSTM, "lstm", ("--learned_optimizer=lstm",), (("name", "lstm"),)),
    Variant("Fast weights", "fast_weights",
            ("--learned_optimizer=fast_weights", "--fast_rule=additive"),
            (("name", "fast_weights"), ("rule", "additive"))),
    Variant("Fast weights (delta)", "fast_weights_delta",
            ("--learned_optimizer=fast_weights", "--fast_rule=delta"),
            (("name", "fast_weights"), ("rule", "delta"))),
    # Started as sign descent (without, the random start's first updates ignore the gradient and
    # meta-training on MNIST learns the rule that does nothing: training/README.md).
    Variant("SRWM", "srwm", ("--learned_optimizer=srwm", "--srwm_init=sign_descent"),
            (("name", "srwm"), ("init", "sign_descent"))),
    Variant("NTM-L-BFGS", "ntm_lbfgs",
            ("--learned_optimizer=ntm_lbfgs", "--num_global_cells=2,2", "--read_heads=1",
             "--write_heads=3", "--memory_window=20", "--ntm_normalize=true",
             "--ntm_write_rule=delta"),
            (("name", "ntm_lbfgs"), ("normalize", True), ("write_rule", "delta"))),
)
BASELINES = ("sgd", "rmsprop", "adam", "nag")

# Each memory's quadratic searches, among which the one whose winner has the lowest validation
# score (the mean over seeds 0-2 of the best validation final loss on 100 validation quadratics)
# sets its inputs and rate (`ablation.best_search`): the same search (6 log-uniform candidates in
# [3e-4, 1e-2], 1,000 epochs each, the figure's clip, seeds 0-2, `--search_seeds=3`) with the
# flagfile's identity inputs (memories_q_search_clip) and with the paper's log-and-sign inputs
# (memories_q_search_las); every candidate's score in training/README.md.
QUADRATIC_SEARCHES = {
    v.key: tuple(f"training/{d}/{v.key}" for d in (
        "memories_q_search_clip", "memories_q_search_las")) for v in VARIANTS}

SETTINGS = {
    # Paper Fig. 4 left at the forget-gate ablation's budget: 1,000 epochs of 32 functions each,
    # meta-gradients clipped at global norm 1.0 (without, SRWM's seed 2 meta-trained unstably:
    # training/README.md). Each memory's inputs and meta learning rate are those of the best of
    # its searches (QUADRATIC_SEARCHES), and its three runs are that search's runs at its winning
    # rate (the same commands; copied by `l2l_tf_experiments.review.adopt_search`).
    "quadratic": AblationSetting("flags/quadratic.flags", 1000,
                                 ("--num_validation_problems=100", "--clip_global_norm=1.0"),
                                 100, 1000, 100, jit_compile=True, horizon_multiples=(1, 2),
                                 variant_flags=(
                                     ("lstm", ("--meta_learning_rate=0.0052",)),
                                     ("fast_weights", ("--preprocessing=log_and_sign",
                                                       "--meta_learning_rate=0.0052")),
                                     ("fast_weights_delta", ("--meta_learning_rate=0.0028",)),
                                     ("srwm", ("--preprocessing=log_and_sign",
                                               "--meta_learning_rate=0.00736")),
                                     ("ntm_lbfgs", ("--meta_learning_rate=0.000773",)))),
    # Paper Fig. 4 centre at the information-sharing figure's budget (200 epochs), run to 200
    # steps (twice the training horizon); 100 test runs per seed. NTM-L-BFGS on MNIST also scales
    # its reads like the proposal and starts with an empty memory (without, meta-training finds
    # the rule that does nothing: training/README.md), as flags/train/mnist_ntm_lbfgs_delta.flags.
    # Each memory's meta learning rate is the best of the same search (3 log-uniform candidates in
    # [3e-4, 3e-3], 200 epochs; training/memories_m_search/<memory>/search.json); set here as each
    # search ends (all five done).
    "mnist": AblationSetting("flags/mnist.flags", 200, ("--validation_every=50",), 100, 100, 32,
                             chunk_size=50, jit_compile=True, horizon_multiples=(1, 2),
                             variant_flags=(
                                 ("lstm", ("--meta_learning_rate=0.0013",)),
                                 ("fast_weights", ("--meta_learning_rate=0.0013",)),
                                 ("fast_weights_delta", ("--meta_learning_rate=0.00033",)),
                                 ("srwm", ("--meta_learning_rate=0.0013",)),
                                 ("ntm_lbfgs", ("--ntm_read_scale=0.1",
                                                "--ntm_zero_value_init=true",
                                                "--meta_learning_rate=0.00033")),)),
}


def train_all(problems: Sequence[str], seeds: Sequence[int], train_dir: Path, repo_root: Path,
              settings: Dict[str, AblationSetting] = None,
              log_fn: Callable[[str], None] = print) -> Dict[str, Path]:
  return ablation_lib.train_all(problems, seeds, train_dir, repo_root, settings or SETTINGS,
                                VARIANTS, log_fn)


def optimizer_dirs(problems: Sequence[str], seeds: Sequence[int], root: Path, trained: bool,
                   settings: Dict[str, AblationSetting] = None) -> Dict[str, dict]:
  return ablation_lib.optimizer_dirs(problems, seeds, root, trained, settings or SETTINGS,
                                     VARIANTS)


def evaluate_problem(problem_name: str, dirs: Dict[str, Dict[int, Path]],
                     setting: AblationSetting, eval_seed: int, data_dir: Optional[str] = None,
                     grid: Optional[Sequence[float]] = None,
                     log_fn: Callable[[str], None] = print) -> dict:
  return ablation_lib.evaluate_problem(problem_name, dirs, setting, eval_seed, VARIANTS,
                                       data_dir, grid, BASELINES, reference=LSTM, log_fn=log_fn)


def comparison(problem: str, dirs: Dict[str, dict], eval_seed: int,
               data_dir: Optional[str] = None, grid: Optional[Sequence[float]] = None,
               num_test_problems: int = 0, num_validation_problems: int = 0,
               command: str = "", settings: Dict[str, AblationSetting] = None,
               log_fn: Callable[[str], None] = print) -> dict:
  """The results of FIGURES[problem] (schema: `ablation.collect`)."""
  return ablation_lib.collect(FIGURES[problem], dirs, settings or SETTINGS, evaluate_problem,
                              eval_seed, data_dir, grid, num_test_problems,
                              num_validation_problems, command, log_fn)
