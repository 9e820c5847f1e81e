"""The ablation of LSTM v2 (issue 14): which part of its meta-training makes it generalise.

LSTM v2 is the paper's 2 x 20 coordinatewise LSTM meta-trained with every part of
`flags/train/mnist_v2.flags` on. Each other row switches one part off (its flags are those of
`flags/train/mnist_v2_no_*.flags` / `_meta_batch_1.flags`) and is meta-trained at the same budget
and seed:

* scale-free inputs: LogAndSign (the paper's) instead of the gradient and momenta over a running
  RMS (RNNprop; Wichrowska et al. 2017);
* the problem family: the paper's one MLP (20 sigmoid units, minibatch 128, theta_0 stddev 0.01)
  instead of 48 MLPs of sampled widths, depths, activations, minibatch sizes and initial scales;
* objective scaling: no random 10^u factor on each objective (Lv et al. 2017);
* log meta-loss: the paper's sum of f instead of the sum of log f;
* meta-batch: 1 optimizee per meta-step instead of 2;
* curriculum: 100-step runs throughout instead of 100, then 200 (Chen et al. 2020).

Every trained optimizer is evaluated on the same held-out test problems of four MNIST figures'
optimizees (`mnist`, `mnist_relu`, `mnist_2_layers`, `mnist_40_units`), at the paper's horizon
(100 steps) and twice it, beside the four tuned baselines. Rows against LSTM v2: the paired
difference (row - LSTM v2) over the test problems (one meta-training seed per row here: the CI
covers the test problems, not the seed) and, with several seeds, over seeds.

Figure: `mnist_v2_ablation` (`l2l_tf_experiments.lstm_v2.figures`).
"""

from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

from l2l_tf_experiments.review import ablation as ablation_lib
from l2l_tf_experiments.review.ablation import AblationSetting, Variant

FIGURE = "mnist_v2_ablation"
TRAINED_ON = "v2"
LSTM_V2 = "LSTM v2"
_FAMILY_OFF = ("--family_hidden_widths=", "--family_num_layers=", "--family_activations=",
               "--family_batch_sizes=", "--family_init_stddevs=")
VARIANTS = (
    Variant(LSTM_V2, "all", ()),
    Variant("- scale-free inputs (LogAndSign)", "no_normalized_moments",
            ("--preprocessing=log_and_sign",)),
    Variant("- problem family (the paper's MLP)", "no_family", _FAMILY_OFF,
            changes_problem=True),
    Variant("- log meta-loss (sum of f)", "no_log_meta_loss", ("--meta_loss_weighting=uniform",)),
    Variant("- meta-batch 2 (1)", "meta_batch_1", ("--meta_batch_size=1",)),
    Variant("- curriculum (100 steps only)", "no_curriculum", ("--horizon_curriculum=",)),
    # With the scale-free inputs and the log meta-loss both on, a constant factor c of f changes
    # neither the optimizer's inputs (up to their epsilon) nor the meta-gradient (log cf - log f
    # is constant; tests/test_generalisation.py), so this row is the same recipe on other draws
    # of its training problems (the scaling wrapper folds their seed): its difference from LSTM
    # v2 measures how far two runs of one recipe drift apart (a noise floor for the other rows).
    Variant("- objective scaling", "no_objective_scaling", ("--objective_log10_scale_range=0",),
            changes_problem=True),
)
BASELINES = ("sgd", "rmsprop", "adam", "nag")


def _mlp(hidden_sizes, activation="sigmoid") -> tuple:
  """The config of a paper MNIST optimizee (as `l2l_tf.problems.MNISTProblem.get_config`)."""
  return (("activation", activation), ("batch_size", 128), ("hidden_sizes", list(hidden_sizes)),
          ("init_stddev", 0.01), ("name", "mnist"))


# The ablation's budget: 300 epochs (100-step runs, then 200-step runs from epoch 200: the
# flagfile's curriculum), model selection every 100 epochs, at a constant meta learning rate. The
# shipped `mnist_v2` adds the flagfile's cosine decay of that rate (found after the ablation was
# run, so not one of its parts) and validates every 50 epochs; the ablation pins both back, so its
# rows (`LSTM v2` here included) are the constant-rate runs they were.
NUM_EPOCHS = 300
PINNED_FLAGS = ("--validation_every=100", "--meta_lr_decay_epochs=0")
_TRAIN = AblationSetting("flags/train/mnist_v2.flags", NUM_EPOCHS, PINNED_FLAGS, 100, 100, 32)


def _evaluation(problem: tuple) -> AblationSetting:
  """100 test runs (per seed) of 200 steps on `problem`; baselines tuned on 32 validation runs."""
  return AblationSetting(_TRAIN.flagfile, NUM_EPOCHS, _TRAIN.train_flags, 100, 100, 32,
                         chunk_size=50, jit_compile=True, trained_on=TRAINED_ON,
                         horizon_multiples=(1, 2), problem=problem)


SETTINGS = {
    TRAINED_ON: _TRAIN,
    "mnist": _evaluation(_mlp([20])),
    "mnist_relu": _evaluation(_mlp([20], "relu")),
    "mnist_2_layers": _evaluation(_mlp([20, 20])),
    "mnist_40_units": _evaluation(_mlp([40])),
}
PROBLEMS = ("mnist", "mnist_relu", "mnist_2_layers", "mnist_40_units")


def train_all(seeds: Sequence[int], train_dir: Path, repo_root: Path,
              log_fn: Callable[[str], None] = print) -> Dict[str, Path]:
  """Meta-trains every (row, seed) run, resumably (`ablation.train_all`)."""
  return ablation_lib.train_all([TRAINED_ON], seeds, train_dir, repo_root, SETTINGS, VARIANTS,
                                log_fn)


def evaluate_problem(problem_name: str, dirs: Dict[str, Dict[int, Path]],
                     setting: AblationSetting, eval_seed: int, data_dir: Optional[str] = None,
                     grid: Optional[Sequence[float]] = None,
                     log_fn: Callable[[str], None] = print) -> dict:
  return ablation_lib.evaluate_problem(problem_name, dirs, setting, eval_seed, VARIANTS,
                                       data_dir, grid, BASELINES, reference=LSTM_V2,
                                       log_fn=log_fn)


def ablation(dirs: Dict[str, dict], eval_seed: int, data_dir: Optional[str] = None,
             grid: Optional[Sequence[float]] = None, num_test_problems: int = 0,
             num_validation_problems: int = 0, command: str = "",
             settings: Dict[str, AblationSetting] = None,
             log_fn: Callable[[str], None] = print) -> dict:
  """The mnist_v2_ablation results (schema: `ablation.collect`)."""
  return ablation_lib.collect(FIGURE, dirs, settings or SETTINGS, evaluate_problem, eval_seed,
                              data_dir, grid, num_test_problems, num_validation_problems,
                              command, log_fn)


def table(results: dict) -> str:
  """Per problem and horizon: each row's mean test loss, its paired difference from LSTM v2 over
  the test problems, and its ratio to the best tuned baseline; then the tuned baselines."""
  from l2l_tf.evaluation.tables import ci_cell, header, row  # pylint: disable=g-import-not-at-top
  cell = lambda e: ci_cell(e["mean"], e["ci95_low"], e["ci95_high"], ".4g")
  lines = header(["problem", "steps", "optimizer",
                  "mean at the last step [95% CI: over seeds, or test problems with one seed]",
                  f"minus {LSTM_V2}, paired over test problems [95% CI]",
                  "/ best tuned baseline"])
  for problem, entry in results["problems"].items():
    for h in entry["horizons"]:
      tuned = {n: rows[str(h)] for n, rows in entry["table"].items()
               if rows[str(h)].get("ci_over") == "test problems"}
      best = min(e["mean"] for e in tuned.values())
      for name, rows in entry["table"].items():
        e = rows[str(h)]
        if name in tuned:
          lines.append(row([problem, h, name, f"{cell(e)} (lr {e['learning_rate']:g})", "-",
                            f"{e['mean'] / best:.2f}"]))
          continue
        if e["num_seeds"] == 1:  # The CI over the test problems of the one seed's curve.
          c = entry["curves"][name]
          e = {k: c[k][h] for k in ("mean", "ci95_low", "ci95_high")}
        diff = entry["difference_minus_reference_over_test_problems"].get(name, {}).get(str(h))
        lines.append(row([problem, h, name, cell(e),
                          cell(diff) if diff else "(reference)", f"{e['mean'] / best:.2f}"]))
  return "\n".join(lines)
