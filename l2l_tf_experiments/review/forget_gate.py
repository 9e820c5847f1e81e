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

Everything here is library code; `python -m l2l_tf_experiments.review.run --figure=review_forget_gate`
(or `python -m l2l_tf.reproduce --figure=review_forget_gate`) is the entry point.
"""

import dataclasses
import math
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

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


def t_quantile_975(df: int) -> float:
  """The 0.975 quantile of Student's t with `df` degrees of freedom (bisection on its CDF)."""
  if df < 1:
    raise ValueError(f"df must be >= 1, got {df}")
  log_norm = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)

  def cdf(t, n=4000):  # Simpson's rule for the density on [0, t].
    xs = np.linspace(0.0, t, n + 1)
    pdf = np.exp(log_norm - (df + 1) / 2 * np.log1p(xs ** 2 / df))
    h = t / n
    return 0.5 + h / 3 * (pdf[0] + pdf[-1] + 4 * pdf[1:-1:2].sum() + 2 * pdf[2:-1:2].sum())

  lo, hi = 0.0, 700.0
  for _ in range(60):
    mid = (lo + hi) / 2
    lo, hi = (mid, hi) if cdf(mid) < 0.975 else (lo, mid)
  return (lo + hi) / 2


def mean_ci_over_seeds(values: Sequence[float], non_negative: bool = False) -> dict:
  """Mean and Student-t 95% CI of per-seed values (non-finite seeds are counted, not averaged);
  with `non_negative` (losses) the CI's lower end is clipped at 0."""
  values = np.asarray(values, np.float64)
  finite = values[np.isfinite(values)]
  entry = {"per_seed": [float(v) for v in values], "num_seeds": int(values.size),
           "non_finite_seeds": int(values.size - finite.size)}
  if finite.size == 0:
    return dict(entry, mean=math.nan, ci95_low=math.nan, ci95_high=math.nan)
  mean = float(finite.mean())
  half = (t_quantile_975(finite.size - 1) * finite.std(ddof=1) / math.sqrt(finite.size)
          if finite.size > 1 else math.inf)
  low = max(mean - half, 0.0) if non_negative and np.all(finite >= 0) else mean - half
  return dict(entry, mean=mean, ci95_low=low, ci95_high=mean + half)


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
        str(h): dict(mean_ci_over_seeds([per_seed[s][h]["mean"] for s in sorted(per_seed)],
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
      differences[str(h)] = dict(mean_ci_over_seeds(diff), seeds=common)
  return {"problem": problem_config, "trained_on_problem": trained_config,
          "horizon": setting.horizon, "horizons": horizons,
          "num_test_problems": setting.num_test_problems,
          "num_validation_problems": setting.num_validation_problems,
          "num_epochs": setting.num_epochs, "table": table,
          "difference_no_forget_minus_forget": differences, "curves": curves_out,
          "models": provenance}


def plot(results: dict, path) -> Path:
  """One panel per problem: mean test loss at 1x/2x/4x the horizon, per seed (dots) and the mean
  over seeds with its 95% CI (error bars); tuned Adam dashed."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import results as results_lib  # pylint: disable=g-import-not-at-top

  panels = results["problems"]
  fig, axes = plt.subplots(1, len(panels), figsize=(5.0 * len(panels), 4.2), dpi=120,
                           squeeze=False)
  for ax, (problem, entry) in zip(axes[0], panels.items()):
    horizons = entry["horizons"]
    x = np.arange(len(horizons))
    for i, (name, rows) in enumerate(entry["table"].items()):
      color = f"C{i}"
      means = np.array([rows[str(h)]["mean"] for h in horizons])
      if name == ADAM:
        ax.plot(x, means, "--s", color=color, label=name + " per horizon", markersize=4)
        continue
      offset = (i - 0.5) * 0.08
      low = np.array([rows[str(h)]["ci95_low"] for h in horizons])
      high = np.array([rows[str(h)]["ci95_high"] for h in horizons])
      ax.errorbar(x + offset, means, yerr=[np.maximum(means - low, 0), np.maximum(high - means, 0)],
                  fmt="-o", color=color, capsize=3,
                  label=f"{name} ({len(rows[str(horizons[0])]['per_seed'])} seeds)")
      for j, h in enumerate(horizons):
        seeds = np.asarray(rows[str(h)]["per_seed"], np.float64)
        ax.plot(np.full(seeds.shape, x[j] + offset + 0.03), seeds, ".", color=color, alpha=0.5,
                markersize=4)
    ax.set_xticks(x, [f"{h // entry['horizon']}x ({h} steps)" for h in horizons])
    ax.set_yscale("log")
    ax.set_xlabel("evaluation length (meta-trained on T = "
                  f"{entry['horizon']} steps, {entry['num_epochs']} epochs)")
    ax.set_ylabel("mean test loss at the last step")
    ax.set_title(f"{problem}: {entry['num_test_problems']} test problems; "
                 "mean over seeds, 95% CI", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=6.5)
  return results_lib.save_figure(fig, path)


def table_lines(results: dict) -> str:
  """Markdown table: per problem and horizon, each variant's mean over seeds [95% CI]."""
  lines = ["| problem | evaluated for | L2L LSTM, forget gate | L2L LSTM, no forget gate | "
           "no forget - forget (paired) | Adam (tuned) |", "|---|---|---|---|---|---|"]

  def cell(e):
    return f"{e['mean']:.4g} [{e['ci95_low']:.4g}, {e['ci95_high']:.4g}]"

  for problem, entry in results["problems"].items():
    names = [v for v, _, _ in VARIANTS]
    for h in entry["horizons"]:
      rows = [cell(entry["table"][n][str(h)])
              + f"; {entry['table'][n][str(h)]['seeds_below_adam']}/"
                f"{entry['table'][n][str(h)]['num_seeds']} seeds below Adam"
              if n in entry["table"] else "-" for n in names]
      diff = entry["difference_no_forget_minus_forget"].get(str(h))
      adam = entry["table"][ADAM][str(h)]
      lines.append(f"| {problem} | {h // entry['horizon']}x T = {h} | {rows[0]} | {rows[1]} | "
                   f"{cell(diff) if diff else '-'} | {cell(adam)} (lr {adam['learning_rate']:g})"
                   " |")
  return "\n".join(lines)


# The review's side-by-side table (seed_systems.md Sec. 0.3).
H_LEARNERS = {"L2L LSTM, forget gate (2000)": "L2L optimizer -> 2-20-1 MLP",
              "meta-LSTM 2001 (no forget gate)": "meta-LSTM 2001 (no forget gate)",
              "meta-LSTM 2001 (forget gate)": "meta-LSTM 2001 (forget gate)",
              "online SGD (tuned)": "online SGD, 2-20-1 MLP"}


def side_by_side_table(ablation: dict, hochreiter: dict) -> str:
  """The review's side-by-side table from the results of review_forget_gate and
  review_hochreiter2001: columns Q@100/200/400 (quadratic), M@100/200/400 (MNIST), M-ReLU@100,
  H (median examples to tau), meta-training cost. Learned rows: mean over meta-training seeds
  [95% t-CI over seeds]; Adam: mean over test problems [95% CI]."""
  columns = [("quadratic", 1), ("quadratic", 2), ("quadratic", 4), ("mnist", 1), ("mnist", 2),
             ("mnist", 4), ("mnist_relu", 1)]
  names = {"quadratic": "Q", "mnist": "M", "mnist_relu": "M-ReLU"}
  header = ["system"] + [f"{names[p]}@{m * ablation['problems'][p]['horizon']}"
                         if p in ablation["problems"] else f"{names[p]}@{m}x"
                         for p, m in columns] + ["H: median examples to MSE < tau [95% CI]",
                                                 "meta-training cost"]
  lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

  def cell(problem, multiple, system):
    entry = ablation["problems"].get(problem)
    if not entry or system not in entry["table"]:
      return "-"
    row = entry["table"][system].get(str(multiple * entry["horizon"]))
    if row is None:
      return "-"
    text = f"{row['mean']:.3g} [{row['ci95_low']:.3g}, {row['ci95_high']:.3g}]"
    if system == ADAM:
      text += f" (lr {row['learning_rate']:g})"
    return text

  def h_cell(system):
    entry = hochreiter["examples_to_tau"].get(H_LEARNERS.get(system, ""))
    if entry is None:
      return "not measured"
    median = entry["median"]
    if not math.isfinite(median):
      return f"never ({entry['never_fraction']:.0%} never reach tau)"
    return (f"{median:g} [{entry['ci95_low']:g}, {entry['ci95_high']:g}] "
            f"(budget {entry['budget']}, {entry['never_fraction']:.0%} never)")

  def cost(system):
    parts = []
    for problem in ("quadratic", "mnist"):
      entry = ablation["problems"].get(problem)
      if not entry:
        continue
      runs = [m for k, m in entry["models"].items() if k.startswith(system + " / ")]
      if runs:
        per_run = sorted({m["optimizee_gradients"] for m in runs})
        parts.append(f"{names[problem]}: {'/'.join(f'{v:.3g}' for v in per_run)} optimizee "
                     f"gradients per seed")
    model = hochreiter["models"].get(H_LEARNERS.get(system, ""), {}).get("metadata", {})
    if "num_updates" in model.get("train", {}):
      t = model["train"]
      parts.append(f"H: {t['num_updates'] * t['batch_size'] * t['sequence_length']:.3g} "
                   "training examples")
    elif "epochs_trained" in model:
      t = model["train"]
      parts.append(f"H: {model['epochs_trained'] * t['meta_batch_size'] * t['horizon']:.3g} "
                   "optimizee gradients")
    return "; ".join(parts) or "0"

  systems = [ADAM] + [v for v, _, _ in VARIANTS] + ["meta-LSTM 2001 (no forget gate)",
                                                     "meta-LSTM 2001 (forget gate)",
                                                     "online SGD (tuned)"]
  for system in systems:
    cells = [cell(p, m, system) for p, m in columns]
    lines.append("| " + " | ".join([system] + cells + [h_cell(system), cost(system)]) + " |")
  return "\n".join(lines)
