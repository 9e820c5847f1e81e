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

import dataclasses
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from l2l_tf.evaluation import stats

FIGURE = "review_forget_gate"
HORIZON_MULTIPLES = (1, 2, 4)
# (legend name, run-name key, forget_gate)
VARIANTS = (("L2L LSTM, forget gate (2000)", "forget", True),
            ("L2L LSTM, no forget gate (1997)", "no_forget", False))
FORGET_GATE_OF = {name: gate for name, _, gate in VARIANTS}
ADAM = "Adam (tuned)"


@dataclasses.dataclass(frozen=True)
class AblationSetting:
  """How one problem's optimizers are meta-trained and evaluated."""
  flagfile: str  # Relative to the repository root.
  num_epochs: int
  train_flags: tuple  # Overrides of the flagfile for these (shorter) runs.
  horizon: int  # T of the flagfile; evaluation runs HORIZON_MULTIPLES x T steps.
  num_test_problems: int
  num_validation_problems: int  # Adam's learning-rate tuning.
  chunk_size: int = 0
  jit_compile: bool = False
  # Evaluate the optimizers meta-trained for another setting (by its key) on a changed problem
  # (`problem_overrides`, e.g. the ReLU MLP), instead of training new ones.
  trained_on: str = ""
  problem_overrides: tuple = ()
  horizon_multiples: tuple = HORIZON_MULTIPLES


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


def run_name(problem: str, variant_key: str, seed: int) -> str:
  return f"{problem}_{variant_key}_s{seed}"


def train_command(setting: AblationSetting, forget_gate: bool, seed: int, output_dir,
                  python: str = sys.executable) -> list:
  """The `l2l_tf.train` command of one ablation run (run it from the repository root)."""
  return [python, "-m", "l2l_tf.train", f"--flagfile={setting.flagfile}",
          f"--forget_gate={str(forget_gate).lower()}", f"--seed={seed}",
          f"--num_epochs={setting.num_epochs}", *setting.train_flags,
          f"--output_dir={output_dir}", "--progress=false"]


def train_all(problems: Sequence[str], seeds: Sequence[int], train_dir: Path, repo_root: Path,
              settings: Dict[str, AblationSetting] = None,
              log_fn: Callable[[str], None] = print) -> Dict[str, Path]:
  """Meta-trains every (problem, variant, seed) run, one process each, resumably.

  A run already trained to its epochs returns at once, so an interrupted ablation continues
  where it stopped. Returns run name -> optimizer directory."""
  settings = settings or SETTINGS
  out = {}
  for problem in problems:
    if settings[problem].trained_on:
      continue  # Evaluates another setting's optimizers.
    for seed in seeds:
      for _, key, forget_gate in VARIANTS:
        name = run_name(problem, key, seed)
        run_dir = Path(train_dir).resolve() / name
        command = train_command(settings[problem], forget_gate, seed, run_dir)
        log_fn(f"training {name}: {' '.join(command[1:])}")
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(run_dir.with_suffix(".log"), "a") as log:
          code = subprocess.call(command, cwd=repo_root, stdout=log, stderr=subprocess.STDOUT)
        if code:
          raise RuntimeError(f"meta-training {name} failed (exit {code}); see "
                             f"{run_dir.with_suffix('.log')}. Rerun the same command to resume.")
        out[name] = run_dir / "optimizer"
  return out


def per_run_at(losses: np.ndarray, steps: Sequence[int]) -> Dict[int, dict]:
  """Mean test loss at each step over the finite runs, and the fraction of runs diverged by then."""
  out = {}
  for h in steps:
    head = losses[:, :h + 1]
    finite = np.all(np.isfinite(head), axis=1)
    out[h] = {"mean": float(head[finite, -1].mean()) if finite.any() else math.nan,
              "divergence_rate": float(1.0 - finite.mean())}
  return out


def evaluate_problem(problem_name: str, optimizer_dirs: Dict[str, Dict[int, Path]],
                     setting: AblationSetting, eval_seed: int, data_dir: Optional[str] = None,
                     grid: Optional[Sequence[float]] = None,
                     log_fn: Callable[[str], None] = print) -> dict:
  """Evaluates one problem's ablation: every variant's seeds and tuned Adam, 1x/2x/4x horizon.

  Args:
    problem_name: key of SETTINGS (for the record).
    optimizer_dirs: variant legend name -> {seed: saved optimizer directory}.
    setting: the problem's AblationSetting.
    eval_seed: seed of the test and validation problem draws (the same for every optimizer).
    data_dir: data cache for data-set problems.
    grid: Adam's learning rates (default: the baselines' grid).
  """
  from l2l_tf import optimizers, problems  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import curves, tuning  # pylint: disable=g-import-not-at-top
  from l2l_tf.optimizers import baselines  # pylint: disable=g-import-not-at-top

  grid = tuple(grid or tuning.DEFAULT_LEARNING_RATE_GRID)
  horizons = [m * setting.horizon for m in setting.horizon_multiples]
  num_steps = horizons[-1]
  problem_config, provenance = None, {}
  loaded = {}
  for variant, seeds in optimizer_dirs.items():
    for seed, path in seeds.items():
      _, saved = optimizers.serialization.read_config(path)
      meta = saved.get("metadata", {})
      config = {k: v for k, v in meta.get("problem", {}).items() if k != "split"}
      if problem_config is None:
        problem_config = config
      elif config != problem_config:
        raise ValueError(f"{path} was meta-trained on {config}, the others on {problem_config}; "
                         "an ablation compares optimizers trained on the same problem family.")
      forget = saved["optimizer"].get("forget_gate", True)
      expected = FORGET_GATE_OF[variant]
      if forget != expected:
        raise ValueError(f"{path} has forget_gate={forget}, but is listed as {variant!r}.")
      loaded[(variant, seed)] = optimizers.load_optimizer(path)
      train = meta.get("train", {})
      provenance[f"{variant} / seed {seed}"] = {
          "path": str(path), "command": meta.get("command"), "best_epoch": meta.get("best_epoch"),
          "best_validation_final_loss": meta.get("best_validation_final_loss"),
          "epochs_trained": meta.get("epochs_trained"), "train": train,
          # Meta-training cost in optimizee gradient evaluations: epochs x problems x steps.
          "optimizee_gradients": (meta.get("epochs_trained") or 0)
                                 * train.get("meta_batch_size", 0) * train.get("horizon", 0)}
  trained_config = problem_config
  problem_config = dict(problem_config, **dict(setting.problem_overrides))
  problem = problems.make_problem(problem_config, split="test", data_dir=data_dir)
  valid_problem = problems.make_problem(problem_config, split="valid", data_dir=data_dir)
  test = problem.sample(setting.num_test_problems, problems.split_seed(eval_seed, "test"))
  valid = valid_problem.sample(setting.num_validation_problems,
                               problems.split_seed(eval_seed, "valid"))

  curves_out, table, seed_means = {}, {}, {}
  for variant in optimizer_dirs:
    per_seed, seed_losses = {}, []
    for seed in sorted(optimizer_dirs[variant]):
      log_fn(f"{problem_name}: {variant}, seed {seed}: {setting.num_test_problems} runs x "
             f"{num_steps} steps")
      losses = curves.evaluate_losses(problem, loaded[(variant, seed)], *test, num_steps,
                                      setting.chunk_size, setting.jit_compile)
      per_seed[seed] = per_run_at(losses, horizons)
      seed_losses.append(losses)
    seed_means[variant] = per_seed
    pooled = np.concatenate(seed_losses, axis=0)
    curves_out[variant] = dict(curves.summarize_losses(pooled), learning_rate=None)
    table[variant] = {
        str(h): dict(stats.mean_ci_over_seeds([per_seed[s][h]["mean"] for s in sorted(per_seed)],
                                        non_negative=True),
                     seeds=sorted(per_seed),
                     divergence_rate_per_seed=[per_seed[s][h]["divergence_rate"]
                                               for s in sorted(per_seed)])
        for h in horizons}

  adam = baselines.Adam(grid[0])
  table[ADAM] = {}
  for h in horizons:
    log_fn(f"{problem_name}: tuning Adam for {h} steps on {setting.num_validation_problems} "
           "validation problems")
    best, _ = tuning.tune_learning_rate(valid_problem, adam, *valid, h, grid, setting.chunk_size,
                                        setting.jit_compile)
    losses = curves.evaluate_losses(problem, adam, *test, h, setting.chunk_size,
                                    setting.jit_compile)
    summary = curves.summarize_losses(losses)
    table[ADAM][str(h)] = {"mean": summary["mean"][-1], "ci95_low": summary["ci95_low"][-1],
                           "ci95_high": summary["ci95_high"][-1], "learning_rate": best,
                           "divergence_rate": summary["divergence_rate"],
                           "ci_over": "test problems"}
    if h == num_steps:
      curves_out[f"{ADAM}, lr {best:g}"] = dict(summary, learning_rate=best)

  for variant in optimizer_dirs:
    for h in horizons:
      row = table[variant][str(h)]
      row["seeds_below_adam"] = int(sum(v < table[ADAM][str(h)]["mean"] for v in row["per_seed"]))
  names = [v for v, _, _ in VARIANTS if v in optimizer_dirs]
  differences = {}
  if len(names) == 2:
    with_gate, without = names
    common = sorted(set(optimizer_dirs[with_gate]) & set(optimizer_dirs[without]))
    for h in horizons:
      diff = [seed_means[without][s][h]["mean"] - seed_means[with_gate][s][h]["mean"]
              for s in common]
      differences[str(h)] = dict(stats.mean_ci_over_seeds(diff), seeds=common)
  return {"problem": problem_config, "trained_on_problem": trained_config,
          "horizon": setting.horizon, "horizons": horizons,
          "num_test_problems": setting.num_test_problems,
          "num_validation_problems": setting.num_validation_problems,
          "num_epochs": setting.num_epochs, "table": table,
          "difference_no_forget_minus_forget": differences, "curves": curves_out,
          "models": provenance}


def optimizer_dirs(problems: Sequence[str], seeds: Sequence[int], root: Path, trained: bool,
                   settings: Dict[str, AblationSetting] = None) -> Dict[str, dict]:
  """problem -> variant legend name -> seed -> optimizer directory: `root/<run>/optimizer` of
  runs `train_all` wrote (`trained`), else `root/<run>` (the shipped layout)."""
  settings = settings or SETTINGS
  out = {}
  for problem in problems:
    trained_on = settings[problem].trained_on or problem
    out[problem] = {name: {seed: Path(root) / run_name(trained_on, key, seed) / (
        "optimizer" if trained else "") for seed in seeds} for name, key, _ in VARIANTS}
  return out


def with_problem_counts(setting, num_test_problems: int, num_validation_problems: int):
  """A settings record (any dataclass with these two fields) with its numbers of test and
  validation problems replaced by those given (> 0; 0 keeps the setting's)."""
  if num_test_problems > 0:
    setting = dataclasses.replace(setting, num_test_problems=num_test_problems)
  if num_validation_problems > 0:
    setting = dataclasses.replace(setting, num_validation_problems=num_validation_problems)
  return setting


def ablation(dirs: Dict[str, dict], eval_seed: int, data_dir: Optional[str] = None,
             grid: Optional[Sequence[float]] = None, num_test_problems: int = 0,
             num_validation_problems: int = 0, command: str = "",
             log_fn: Callable[[str], None] = print) -> dict:
  """The review_forget_gate results: `evaluate_problem` for every problem of `dirs` (see
  `optimizer_dirs`), with the settings' numbers of test / validation problems unless given (> 0).

  The results schema: "optimizers" holds the pooled curves (all seeds' runs) of the problems
  evaluated longest (4 x T = 400 steps: quadratic and mnist), named "<problem>: <optimizer>";
  every problem's curves stay under problems/<problem>/curves.
  """
  results = {"figure": FIGURE, "problems": {}, "seed": eval_seed, "command": command,
             "cpu_seconds": {}}
  for problem, problem_dirs in dirs.items():
    setting = with_problem_counts(SETTINGS[problem], num_test_problems, num_validation_problems)
    start = time.process_time()
    results["problems"][problem] = evaluate_problem(problem, problem_dirs, setting, eval_seed,
                                                    data_dir, grid=grid, log_fn=log_fn)
    results["cpu_seconds"][problem] = time.process_time() - start
  length = max(len(c["mean"]) for e in results["problems"].values()
               for c in e["curves"].values())
  results["steps"] = list(range(length))
  results["num_test_problems"] = {p: e["num_test_problems"] for p, e in
                                  results["problems"].items()}
  results["optimizers"] = {f"{p}: {n}": c for p, e in results["problems"].items()
                           for n, c in e["curves"].items() if len(c["mean"]) == length}
  return results
