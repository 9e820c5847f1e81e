"""Seeded comparisons of learned optimizers at equal meta-training budget: the engine of the
review's ablation figures (`forget_gate`: LSTM with and without forget gate; `memories`: LSTM,
fast weights, SRWM, NTM-L-BFGS).

Every variant is meta-trained by `python -m l2l_tf.train` on a flagfile of `flags/` with the
variant's flags, for several seeds and the same epochs; every trained optimizer is evaluated on the
same held-out test problems at multiples of the meta-training horizon T.

Statistics:
* per seed: the mean test loss at step H over the test problems (runs that diverge are counted,
  not averaged);
* per variant: the mean over seeds with a Student-t 95% CI over seeds (the meta-training seed is
  the unit of replication);
* against a reference variant: the paired difference (variant - reference) per seed (same seed:
  same training problems), mean with a Student-t 95% CI over seeds.
The tuned baselines (learning rate chosen on validation problems for each horizon) are the
hand-designed references, with a 95% CI over test problems.
"""

import dataclasses
import json
import math
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from l2l_tf.evaluation import stats

HORIZON_MULTIPLES = (1, 2, 4)


@dataclasses.dataclass(frozen=True)
class AblationSetting:
  """How one problem's optimizers are meta-trained and evaluated."""
  flagfile: str  # Relative to the repository root.
  num_epochs: int
  train_flags: tuple  # Overrides of the flagfile for these (shorter) runs.
  horizon: int  # T of the flagfile; evaluation runs horizon_multiples x T steps.
  num_test_problems: int
  num_validation_problems: int  # The baselines' tuning.
  chunk_size: int = 0
  jit_compile: bool = False
  # Evaluate the optimizers meta-trained for another setting (by its key) on a changed problem
  # (`problem_overrides`, e.g. the ReLU MLP), instead of training new ones.
  trained_on: str = ""
  problem_overrides: tuple = ()
  horizon_multiples: tuple = HORIZON_MULTIPLES
  # The evaluation problem's whole config as (key, value) pairs, in place of the one the
  # optimizers were meta-trained on (e.g. one MLP of the problem family they were trained on).
  problem: tuple = ()
  # Flags of one variant in this setting only, after all others: (variant key, flags) pairs,
  # e.g. each variant's own meta learning rate from a search on validation problems.
  variant_flags: tuple = ()


@dataclasses.dataclass(frozen=True)
class Variant:
  """One learned optimizer of a comparison."""
  name: str  # Legend name.
  key: str  # In run names: <problem>_<key>_s<seed>.
  flags: tuple  # Its `l2l_tf.train` flags, after the setting's flagfile.
  config: tuple = ()  # (key, value) pairs its saved optimizer config must have.
  # Meta-trained on another problem than the other variants (e.g. without the problem family or
  # its objective scaling): exempt from the same-problem check.
  changes_problem: bool = False


def tuned_name(baseline: str) -> str:
  """The row name of a tuned baseline, e.g. "Adam (tuned)"."""
  from l2l_tf.optimizers import baselines  # pylint: disable=g-import-not-at-top
  return f"{baselines.LEGEND_NAMES[baseline]} (tuned)"


def run_name(problem: str, variant_key: str, seed: int) -> str:
  return f"{problem}_{variant_key}_s{seed}"


def train_command(setting: AblationSetting, variant_flags: Sequence[str], seed: int, output_dir,
                  python: str = sys.executable) -> list:
  """The `l2l_tf.train` command of one run (run it from the repository root)."""
  return [python, "-m", "l2l_tf.train", f"--flagfile={setting.flagfile}", *variant_flags,
          f"--seed={seed}", f"--num_epochs={setting.num_epochs}", *setting.train_flags,
          f"--output_dir={output_dir}", "--progress=false"]


def train_all(problems: Sequence[str], seeds: Sequence[int], train_dir: Path, repo_root: Path,
              settings: Dict[str, AblationSetting], variants: Sequence[Variant],
              log_fn: Callable[[str], None] = print) -> Dict[str, Path]:
  """Meta-trains every (problem, variant, seed) run, one process each, resumably.

  A run already trained to its epochs returns at once, so an interrupted comparison continues
  where it stopped. Returns run name -> optimizer directory."""
  out = {}
  for problem in problems:
    if settings[problem].trained_on:
      continue  # Evaluates another setting's optimizers.
    for seed in seeds:
      for variant in variants:
        name = run_name(problem, variant.key, seed)
        run_dir = Path(train_dir).resolve() / name
        own = dict(settings[problem].variant_flags).get(variant.key, ())
        command = train_command(settings[problem], variant.flags, seed, run_dir) + list(own)
        log_fn(f"training {name}: {' '.join(command[1:])}")
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        with open(run_dir.with_suffix(".log"), "a") as log:
          code = subprocess.call(command, cwd=repo_root, stdout=log, stderr=subprocess.STDOUT)
        if code:
          raise RuntimeError(f"meta-training {name} failed (exit {code}); see "
                             f"{run_dir.with_suffix('.log')}. Rerun the same command to resume.")
        out[name] = run_dir / "optimizer"
  return out


def read_search(search_dir: Path) -> dict:
  """A finished `l2l_tf.meta_lr_search`'s summary (its `search.json`)."""
  path = Path(search_dir) / "search.json"
  if not path.is_file():
    raise ValueError(f"{path} does not exist: run (or finish) the search first; rerunning its "
                     "command resumes it.")
  return json.loads(path.read_text())


def best_search(search_dirs: Sequence[Path]) -> Path:
  """Of finished searches of one variant that differ in more than the rate (e.g. its inputs), the
  one whose winner has the lowest score (`search.json`'s best validation final loss: with
  several seeds, the mean over seeds). Ties go to the first listed."""
  scores = [min(read_search(d)["best_validation_final_loss"].values()) for d in search_dirs]
  return Path(search_dirs[int(np.argmin(scores))])


def adopt_search_runs(search_dir: Path, train_dir: Path, problem: str, variant_key: str,
                      replace: bool = False) -> Dict[int, Path]:
  """Copies the winning runs of a finished `meta_lr_search --search_seeds=S` (its
  `search.json`'s `best_runs`, one per seed) into `train_dir` under the comparison's run names
  (`run_name(problem, variant_key, seed)`, with their logs), so that `train_all` finds them done
  and a figure's runs are its search's runs. A run already there with the same validation record
  is kept; a different one is refused unless `replace` (it is moved aside, never lost).
  Returns seed -> the run's directory in `train_dir`."""
  search_dir, train_dir = Path(search_dir), Path(train_dir)
  summary = read_search(search_dir)
  if "best_runs" not in summary:
    raise ValueError(f"{search_dir / 'search.json'} is a one-seed search; a figure needs a run per seed: rerun its "
                     "command with --search_seeds=3 (the first seed's runs are reused).")
  out = {}
  for seed, run in zip(summary["seeds"], summary["best_runs"]):
    source = search_dir / Path(run).name
    if not (source / "validation.jsonl").is_file():
      raise ValueError(f"{source}/validation.jsonl is missing: the search's run for seed {seed} "
                       "is not there (was it committed?).")
    dest = train_dir / run_name(problem, variant_key, seed)
    if dest.exists():
      same = (dest / "validation.jsonl").is_file() and (
          (dest / "validation.jsonl").read_bytes() == (source / "validation.jsonl").read_bytes())
      if same:
        out[seed] = dest
        continue
      if not replace:
        raise ValueError(f"{dest} holds another run than {source}: pass replace=True "
                         "(--replace) to move it aside to <run>.replaced and copy the search's.")
      aside = dest.with_name(dest.name + ".replaced")
      if aside.exists():
        shutil.rmtree(aside)
      dest.rename(aside)
    train_dir.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    if partial.exists():
      shutil.rmtree(partial)
    shutil.copytree(source, partial, ignore=shutil.ignore_patterns("train.lock"))
    partial.rename(dest)  # Atomic: a killed copy leaves only the .partial directory.
    log = source.with_name(source.name + ".log")  # Not with_suffix: lr_0.0028 has a dot.
    if log.is_file():
      shutil.copyfile(log, dest.with_name(dest.name + ".log"))
    out[seed] = dest
  return out


def optimizer_dirs(problems: Sequence[str], seeds: Sequence[int], root: Path, trained: bool,
                   settings: Dict[str, AblationSetting],
                   variants: Sequence[Variant]) -> Dict[str, dict]:
  """problem -> variant legend name -> seed -> optimizer directory: `root/<run>/optimizer` of
  runs `train_all` wrote (`trained`), else `root/<run>` (the shipped layout)."""
  out = {}
  for problem in problems:
    trained_on = settings[problem].trained_on or problem
    out[problem] = {v.name: {seed: Path(root) / run_name(trained_on, v.key, seed) / (
        "optimizer" if trained else "") for seed in seeds} for v in variants}
  return out


def check_dirs(dirs: Dict[str, dict], retrained: bool, path_flag: str, what: str, whole: str):
  """Refuses (one line, `cli.UsageError`) a comparison whose optimizer directories (problem ->
  variant -> seed -> path, as `optimizer_dirs`) are not all there."""
  from l2l_tf import cli  # pylint: disable=g-import-not-at-top
  for variants in dirs.values():
    for paths in variants.values():
      for path in paths.values():
        if not (path / "config.json").is_file():
          run = path.parent.name if retrained else path.name
          raise cli.UsageError(f"No {what} {run} at {path}; run with --retrain to meta-train "
                               f"{whole}, or point --{path_flag} at it.")


def per_run_at(losses: np.ndarray, steps: Sequence[int]) -> Dict[int, dict]:
  """Mean test loss at each step over the finite runs, and the fraction of runs diverged by then."""
  out = {}
  for h in steps:
    head = losses[:, :h + 1]
    finite = np.all(np.isfinite(head), axis=1)
    out[h] = {"mean": float(head[finite, -1].mean()) if finite.any() else math.nan,
              "divergence_rate": float(1.0 - finite.mean())}
  return out


def _load_checked(path, variant: Variant, problem_config):
  """The saved optimizer at `path`, its problem config and provenance; refuses an optimizer whose
  config is not the variant's or that was meta-trained on another problem than `problem_config`."""
  from l2l_tf import optimizers  # pylint: disable=g-import-not-at-top
  _, saved = optimizers.serialization.read_config(path)
  meta = saved.get("metadata", {})
  config = {k: v for k, v in meta.get("problem", {}).items() if k != "split"}
  if problem_config is not None and config != problem_config:
    raise ValueError(f"{path} was meta-trained on {config}, the others on {problem_config}; "
                     "an ablation compares optimizers trained on the same problem family.")
  for key, expected in variant.config:
    actual = saved["optimizer"].get(key)
    if actual != expected:
      raise ValueError(f"{path} has {key}={actual}, but is listed as {variant.name!r}.")
  train = meta.get("train", {})
  provenance = {
      "path": str(path), "command": meta.get("command"), "best_epoch": meta.get("best_epoch"),
      "best_validation_final_loss": meta.get("best_validation_final_loss"),
      "epochs_trained": meta.get("epochs_trained"), "train": train,
      # Meta-training cost in optimizee gradient evaluations: epochs x problems x steps.
      "optimizee_gradients": (meta.get("epochs_trained") or 0)
                             * train.get("meta_batch_size", 0) * train.get("horizon", 0)}
  return optimizers.load_optimizer(path), config, provenance


def evaluate_problem(problem_name: str, optimizer_dirs: Dict[str, Dict[int, Path]],
                     setting: AblationSetting, eval_seed: int, variants: Sequence[Variant],
                     data_dir: Optional[str] = None, grid: Optional[Sequence[float]] = None,
                     baselines: Sequence[str] = ("adam",), reference: Optional[str] = None,
                     log_fn: Callable[[str], None] = print) -> dict:
  """Evaluates one problem: every variant's seeds and the tuned baselines at each horizon.

  Args:
    problem_name: key of the settings (for the record).
    optimizer_dirs: variant legend name -> {seed: saved optimizer directory}.
    setting: the problem's AblationSetting.
    eval_seed: seed of the test and validation problem draws (the same for every optimizer).
    variants: the comparison's variants (their saved configs are checked).
    data_dir: data cache for data-set problems.
    grid: the baselines' learning rates (default: the baselines' grid).
    baselines: the tuned baselines, names of `l2l_tf.optimizers.BASELINES`.
    reference: a variant name: the paired differences (variant - reference) per other variant.
  """
  from l2l_tf import problems  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import curves, tuning  # pylint: disable=g-import-not-at-top
  from l2l_tf.optimizers import BASELINES  # pylint: disable=g-import-not-at-top

  by_name = {v.name: v for v in variants}
  grid = tuple(grid or tuning.DEFAULT_LEARNING_RATE_GRID)
  horizons = [m * setting.horizon for m in setting.horizon_multiples]
  num_steps = horizons[-1]
  problem_config, provenance, loaded = None, {}, {}
  for variant, seeds in optimizer_dirs.items():
    own = by_name[variant].changes_problem
    for seed, path in seeds.items():
      key = f"{variant} / seed {seed}"
      loaded[(variant, seed)], config, provenance[key] = _load_checked(
          path, by_name[variant], None if own else problem_config)
      if own:
        provenance[key]["problem"] = config
      else:
        problem_config = config
  if problem_config is None and not setting.problem:
    raise ValueError("Every variant changes the problem: give the setting's evaluation problem.")
  trained_config = problem_config
  problem_config = dict(dict(setting.problem) or problem_config,
                        **dict(setting.problem_overrides))
  problem = problems.make_problem(problem_config, split="test", data_dir=data_dir)
  valid_problem = problems.make_problem(problem_config, split="valid", data_dir=data_dir)
  test = problem.sample(setting.num_test_problems, problems.split_seed(eval_seed, "test"))
  valid = valid_problem.sample(setting.num_validation_problems,
                               problems.split_seed(eval_seed, "valid"))

  curves_out, table, seed_means, run_losses = {}, {}, {}, {}
  for variant in optimizer_dirs:
    per_seed = {}
    for seed in sorted(optimizer_dirs[variant]):
      log_fn(f"{problem_name}: {variant}, seed {seed}: {setting.num_test_problems} runs x "
             f"{num_steps} steps")
      losses = curves.evaluate_losses(problem, loaded[(variant, seed)], *test, num_steps,
                                      setting.chunk_size, setting.jit_compile)
      per_seed[seed] = per_run_at(losses, horizons)
      run_losses[(variant, seed)] = losses
    seed_means[variant] = per_seed
    pooled = np.concatenate([run_losses[(variant, s)] for s in sorted(per_seed)], axis=0)
    curves_out[variant] = dict(curves.summarize_losses(pooled), learning_rate=None)
    table[variant] = {
        str(h): dict(stats.mean_ci_over_seeds([per_seed[s][h]["mean"] for s in sorted(per_seed)],
                                        non_negative=True),
                     seeds=sorted(per_seed),
                     divergence_rate_per_seed=[per_seed[s][h]["divergence_rate"]
                                               for s in sorted(per_seed)])
        for h in horizons}

  tuned_rows = []
  for baseline in baselines:
    name = tuned_name(baseline)
    tuned_rows.append(name)
    optimizer = BASELINES[baseline](grid[0])
    table[name] = {}
    for h in horizons:
      log_fn(f"{problem_name}: tuning {name} for {h} steps on "
             f"{setting.num_validation_problems} validation problems")
      best, _ = tuning.tune_learning_rate(valid_problem, optimizer, *valid, h, grid,
                                          setting.chunk_size, setting.jit_compile)
      losses = curves.evaluate_losses(problem, optimizer, *test, h, setting.chunk_size,
                                      setting.jit_compile)
      summary = curves.summarize_losses(losses)
      table[name][str(h)] = {"mean": summary["mean"][-1], "ci95_low": summary["ci95_low"][-1],
                             "ci95_high": summary["ci95_high"][-1], "learning_rate": best,
                             "divergence_rate": summary["divergence_rate"],
                             "ci_over": "test problems"}
      if h == num_steps:
        curves_out[f"{name}, lr {best:g}"] = dict(summary, learning_rate=best)

  for variant in optimizer_dirs:
    for h in horizons:
      row = table[variant][str(h)]
      if "adam" in baselines:
        adam = table[tuned_name("adam")][str(h)]["mean"]
        row["seeds_below_adam"] = int(sum(v < adam for v in row["per_seed"]))
      if len(tuned_rows) > 1:
        best = min(table[n][str(h)]["mean"] for n in tuned_rows)
        row["seeds_below_best_baseline"] = int(sum(v < best for v in row["per_seed"]))
  differences, run_differences = {}, {}
  if reference is not None and reference in optimizer_dirs:
    for variant in optimizer_dirs:
      if variant == reference:
        continue
      common = sorted(set(optimizer_dirs[reference]) & set(optimizer_dirs[variant]))
      differences[variant] = {
          str(h): dict(stats.mean_ci_over_seeds(
              [seed_means[variant][s][h]["mean"] - seed_means[reference][s][h]["mean"]
               for s in common]), seeds=common)
          for h in horizons}
      run_differences[variant] = {
          str(h): dict(stats.paired_difference(
              np.concatenate([run_losses[(variant, s)][:, h] for s in common]),
              np.concatenate([run_losses[(reference, s)][:, h] for s in common])), seeds=common)
          for h in horizons}
  return {"problem": problem_config, "trained_on_problem": trained_config,
          "horizon": setting.horizon, "horizons": horizons,
          "num_test_problems": setting.num_test_problems,
          "num_validation_problems": setting.num_validation_problems,
          "num_epochs": setting.num_epochs, "table": table, "reference": reference,
          "difference_minus_reference": differences,
          "difference_minus_reference_over_test_problems": run_differences, "curves": curves_out,
          "models": provenance}


def with_problem_counts(setting, num_test_problems: int, num_validation_problems: int):
  """A settings record (any dataclass with these two fields) with its numbers of test and
  validation problems replaced by those given (> 0; 0 keeps the setting's)."""
  if num_test_problems > 0:
    setting = dataclasses.replace(setting, num_test_problems=num_test_problems)
  if num_validation_problems > 0:
    setting = dataclasses.replace(setting, num_validation_problems=num_validation_problems)
  return setting


def collect(figure: str, dirs: Dict[str, dict], settings: Dict[str, AblationSetting],
            evaluate: Callable[..., dict], eval_seed: int, data_dir: Optional[str] = None,
            grid: Optional[Sequence[float]] = None, num_test_problems: int = 0,
            num_validation_problems: int = 0, command: str = "",
            log_fn: Callable[[str], None] = print) -> dict:
  """A comparison figure's results: `evaluate(problem, dirs, setting, eval_seed, data_dir,
  grid=, log_fn=)` for every problem of `dirs`, with the settings' numbers of test / validation
  problems unless given (> 0).

  The results schema: "optimizers" holds the pooled curves (all seeds' runs) of the problems
  evaluated longest, named "<problem>: <optimizer>"; every problem's curves stay under
  problems/<problem>/curves.
  """
  results = {"figure": figure, "problems": {}, "seed": eval_seed, "command": command,
             "cpu_seconds": {}}
  for problem, problem_dirs in dirs.items():
    setting = with_problem_counts(settings[problem], num_test_problems, num_validation_problems)
    start = time.process_time()
    results["problems"][problem] = evaluate(problem, problem_dirs, setting, eval_seed, data_dir,
                                            grid=grid, log_fn=log_fn)
    results["cpu_seconds"][problem] = time.process_time() - start
  length = max(len(c["mean"]) for e in results["problems"].values()
               for c in e["curves"].values())
  results["steps"] = list(range(length))
  results["num_test_problems"] = {p: e["num_test_problems"] for p, e in
                                  results["problems"].items()}
  results["optimizers"] = {f"{p}: {n}": c for p, e in results["problems"].items()
                           for n, c in e["curves"].items() if len(c["mean"]) == length}
  return results
