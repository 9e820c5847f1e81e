"""The figure review_step_size_control: is SGD / RMSprop with the learned step-size controller
(Daniel et al. 2016, `step_size_control`) robust to its initial learning rate?

Per problem (the quadratic, MNIST): the mean final loss (95% CI over the test problems) of
controlled and fixed-rate SGD and RMSprop for every initial learning rate of a sweep over five
orders of magnitude; beside it, the learned L2L LSTM (no learning rate to set) on the objective
rescaled by c (its loss divided by c again): for SGD, rescaling f by c is rescaling its learning
rate by c, so this is the LSTM's counterpart of the sweep. Each fixed-rate baseline's learning rate
is also tuned on validation problems (the library's `tuning`), and its curve, the controlled
optimizer's from that rate and the LSTM's (c = 1) are the figure's curves.

The spread of a line is log10(max / min) of its mean final losses over the sweep (a diverged point,
any non-finite run, makes it infinite): the smaller, the more robust.
"""

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Dict, Optional, Sequence

import numpy as np

from l2l_tf.evaluation import curves, plots, tables, tuning
from l2l_tf_experiments.review import ablation
from l2l_tf_experiments.review import step_size_control as ssc

FIGURE = "review_step_size_control"
BASE_NAMES = {"sgd": "SGD", "rmsprop": "RMSprop"}


@dataclasses.dataclass(frozen=True)
class Setting:
  """One problem of the figure: how its controllers are trained and how it is evaluated."""
  training: Dict[str, ssc.ControllerTraining]  # base optimizer -> REPS run.
  initial_lrs: tuple  # The sweep.
  lstm: str  # The shipped L2L optimizer evaluated on rescaled objectives.
  scales: tuple
  num_test_problems: int
  num_validation_problems: int
  horizon: int = 100
  chunk_size: int = 0


def _training(problem, base, **kw):
  return ssc.ControllerTraining(problem=problem, base_optimizer=base, **kw)


_QUADRATIC = dict(log10_lr_range=(-5.0, 0.0), iterations=150, population=32,
                  problems_per_policy=16, epsilon=0.5, max_change=0.3, decay=0.5)
# MNIST is ~20x dearer per run: fewer policies and episodes per REPS iteration (see README).
_MNIST = dict(log10_lr_range=(-4.0, 1.0), iterations=30, population=16, problems_per_policy=2,
              epsilon=0.5, max_change=0.3, decay=0.5)
SETTINGS = {
    "quadratic": Setting({b: _training({"name": "quadratic"}, b, **_QUADRATIC) for b in BASE_NAMES},
                         tuple(10.0 ** e for e in range(-5, 1)), "pretrained:quadratic",
                         (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0), 1000, 500),
    "mnist": Setting({b: _training({"name": "mnist"}, b, **_MNIST) for b in BASE_NAMES},
                     tuple(10.0 ** e for e in range(-4, 2)), "pretrained:mnist",
                     (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0), 100, 32, chunk_size=50),
}


def run_name(problem: str, base: str) -> str:
  return f"{problem}_{base}"


def spread(means: Sequence[float], diverged: Sequence[float]) -> float:
  """log10(max / min) of the mean final losses over a sweep; inf if any point diverged."""
  means = np.asarray(means, np.float64)
  if np.any(np.asarray(diverged) > 0) or not np.all(np.isfinite(means)) or means.min() <= 0:
    return math.inf
  return float(np.log10(means.max() / means.min()))


def _point(losses: np.ndarray) -> dict:
  summary = curves.summarize_losses(losses[:, -1:])
  return {"mean": summary["mean"][0], "ci95_low": summary["ci95_low"][0],
          "ci95_high": summary["ci95_high"][0], "median": float(np.nanmedian(losses[:, -1])),
          "divergence_rate": summary["divergence_rate"]}


def evaluate_problem(name: str, setting: Setting, policy_paths: Dict[str, Path], seed: int,
                     data_dir: Optional[str] = None, grid: Sequence[float] = None,
                     log_fn: Callable[[str], None] = print, jit_compile: bool = False) -> dict:
  """One problem's sweep, tuned baselines and the LSTM's rescaling (see the module docstring);
  `jit_compile` compiles every run with XLA (the MNIST part: 2,117 CPU-s in graph mode, 685 under
  XLA; flags/review/review_step_size_control.flags)."""
  from l2l_tf import optimizers, problems  # pylint: disable=g-import-not-at-top
  from l2l_tf.optimizers import baselines  # pylint: disable=g-import-not-at-top
  problem_config = next(iter(setting.training.values())).problem
  problem = problems.make_problem(problem_config, split="test", data_dir=data_dir)
  valid_problem = problems.make_problem(problem_config, split="valid", data_dir=data_dir)
  test = problem.sample(setting.num_test_problems, problems.split_seed(seed, "test"))
  valid = valid_problem.sample(setting.num_validation_problems,
                               problems.split_seed(seed, "valid"))
  grid = tuple(grid or tuning.DEFAULT_LEARNING_RATE_GRID)
  steps, chunk = setting.horizon, setting.chunk_size
  sweep, curves_out, models, lr_trajectories, tuned = {}, {}, {}, {}, {}
  for base, legend in BASE_NAMES.items():
    controller, meta = ssc.load_controller(policy_paths[base])
    if controller.base_name != base:
      raise ValueError(f"{policy_paths[base]} controls {controller.base_name}, not {base}.")
    models[f"{legend} + controller"] = dict(
        path=str(policy_paths[base]), weights=controller.get_config()["weights"],
        **{k: meta.get(k) for k in ("command", "episodes", "optimizee_gradients",
                                    "meta_training_cpu_seconds", "trained_on")})
    fixed = baselines.BASELINES[base](setting.initial_lrs[0])
    log_fn(f"{name}: tuning {legend} on {setting.num_validation_problems} validation problems")
    best, scores = tuning.tune_learning_rate(valid_problem, fixed, *valid, steps, grid, chunk,
                                             jit_compile)
    tuned[legend] = {"learning_rate": best, "learning_rate_at_grid_edge": best in (min(grid),
                                                                                  max(grid)),
                     "validation_final_loss": {f"{lr:g}": s for lr, s in scores.items()}}
    rows_c, rows_f = [], []
    for lr in setting.initial_lrs + (best,):
      log_fn(f"{name}: {legend} fixed and controlled from lr {lr:g} "
             f"({setting.num_test_problems} runs each)")
      fixed.learning_rate.assign(lr)
      fixed_losses = curves.evaluate_losses(problem, fixed, *test, steps, chunk, jit_compile)
      controlled, log_lrs = ssc.evaluate(problem, controller, *test, steps, lr, chunk,
                                         jit_compile)
      if lr == best and len(rows_c) == len(setting.initial_lrs):
        curves_out[f"{legend} (lr {best:g}, tuned)"] = dict(curves.summarize_losses(fixed_losses),
                                                           learning_rate=best)
        curves_out[f"{legend} + controller from lr {best:g}"] = dict(
            curves.summarize_losses(controlled), learning_rate=None)
        continue
      rows_f.append(dict(_point(fixed_losses), initial_learning_rate=lr))
      rows_c.append(dict(_point(controlled), initial_learning_rate=lr))
      lr_trajectories[f"{legend} + controller from lr {lr:g}"] = np.exp(
          np.median(log_lrs, axis=0)).tolist()
    sweep[legend] = rows_f
    sweep[f"{legend} + controller"] = rows_c
  lstm = optimizers.load_optimizer(setting.lstm)
  scaled = []
  for c in setting.scales:
    log_fn(f"{name}: LSTM ({setting.lstm}) on f x {c:g}")
    losses = curves.evaluate_losses(ssc.ScaledProblem(problem, c), lstm, *test, steps, chunk,
                                    jit_compile)
    scaled.append(dict(_point(losses / c), objective_scale=c))
    if c == 1.0:
      curves_out["LSTM (c = 1)"] = dict(curves.summarize_losses(losses), learning_rate=None)
  spreads = {n: spread([r["mean"] for r in rows], [r["divergence_rate"] for r in rows])
             for n, rows in sweep.items()}
  spreads["LSTM (objective x c)"] = spread([r["mean"] for r in scaled],
                                           [r["divergence_rate"] for r in scaled])
  return {"problem": problem_config, "horizon": steps,
          "num_test_problems": setting.num_test_problems,
          "num_validation_problems": setting.num_validation_problems,
          "initial_learning_rates": list(setting.initial_lrs), "sweep": sweep,
          "lstm": {"optimizer": setting.lstm, "scales": list(setting.scales), "points": scaled},
          "spread_log10": spreads, "tuned": tuned, "curves": curves_out, "models": models,
          "median_learning_rate": lr_trajectories}


def figure_results(per_problem: Dict[str, dict], seed: int, command: str) -> dict:
  """The results dict (library schema: the curves of every problem as "<problem>: <name>")."""
  steps = max(e["horizon"] for e in per_problem.values())
  return {"figure": FIGURE, "steps": list(range(steps + 1)), "seed": seed, "command": command,
          "num_test_problems": {p: e["num_test_problems"] for p, e in per_problem.items()},
          "problems": per_problem, "cpu_seconds": {},
          "optimizers": {f"{p}: {n}": c for p, e in per_problem.items()
                         for n, c in e["curves"].items()}}


def table(results: dict) -> str:
  """Per problem and initial learning rate: mean final loss [95% CI] of fixed and controlled SGD
  and RMSprop; the spreads; the LSTM's rescaling."""
  out = []
  for name, e in results["problems"].items():
    lines = tables.header(["initial lr"] + list(e["sweep"]))
    for i, lr in enumerate(e["initial_learning_rates"]):
      cells = []
      for rows in e["sweep"].values():
        r = rows[i]
        cell = tables.ci_cell(r["mean"], r["ci95_low"], r["ci95_high"], ".3g")
        if r["divergence_rate"] > 0:
          cell += f" ({r['divergence_rate']:.0%} diverged)"
        cells.append(cell)
      lines.append(tables.row([f"{lr:g}"] + cells))
    spreads = e["spread_log10"]
    lines.append(tables.row(["spread (log10 max/min)"] + [f"{spreads[n]:.2f}" for n in e["sweep"]]))
    lstm = e["lstm"]
    lines += ["", f"LSTM ({lstm['optimizer']}) on f x c, final loss / c:", ""]
    lines += tables.header(["c"] + [f"{c:g}" for c in lstm["scales"]] + ["spread"])
    lines.append(tables.row(["mean [95% CI]"] + [
        tables.ci_cell(p["mean"], p["ci95_low"], p["ci95_high"], ".3g")
        + (f" ({p['divergence_rate']:.0%} diverged)" if p["divergence_rate"] > 0 else "")
        for p in lstm["points"]] + [f"{spreads['LSTM (objective x c)']:.2f}"]))
    tuned = ", ".join(f"{n} {t['learning_rate']:g}" for n, t in e["tuned"].items())
    cost = "; ".join(f"{n}: {m['episodes']} episodes = {m['optimizee_gradients']:.3g} optimizee "
                     f"gradients, {m['meta_training_cpu_seconds']:.0f} CPU-s"
                     for n, m in e["models"].items())
    out.append(f"**{name}**: {e['num_test_problems']} test problems, mean loss at step "
               f"{e['horizon']} [95% CI]\n\n" + "\n".join(lines)
               + f"\n\nlearning rates tuned on validation problems: {tuned}; meta-training: {cost}")
  return "\n\n".join(out)


def plot(results: dict, path) -> Path:
  """Per problem: final loss against the initial learning rate (left), the LSTM's final loss / c
  against the objective's scale c (right)."""
  plt = plots.pyplot()
  panels = results["problems"]
  fig, axes = plt.subplots(len(panels), 2, figsize=(11, 4.2 * len(panels)), dpi=110,
                           squeeze=False)
  for (ax, ax_lstm), (name, e) in zip(axes, panels.items()):
    for i, (label, rows) in enumerate(e["sweep"].items()):
      x = np.array([r["initial_learning_rate"] for r in rows])
      mean = np.array([r["mean"] for r in rows])
      low = np.array([r["ci95_low"] for r in rows])
      high = np.array([r["ci95_high"] for r in rows])
      diverged = np.array([r["divergence_rate"] for r in rows]) > 0
      controlled = "controller" in label
      ax.errorbar(x, mean, yerr=[np.maximum(mean - low, 0), np.maximum(high - mean, 0)],
                  fmt="o-" if controlled else "s--", color=f"C{i}", capsize=3,
                  label=f"{label} (spread {e['spread_log10'][label]:.2f})")
      if diverged.any():
        ax.plot(x[diverged], np.where(np.isfinite(mean[diverged]), mean[diverged], np.nan), "x",
                color=f"C{i}", markersize=10)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("initial learning rate")
    ax.set_ylabel(f"mean loss at step {e['horizon']}")
    ax.set_title(f"{name}: {e['num_test_problems']} test problems per point, 95% CI "
                 "(x: some runs diverged)", fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    pts = e["lstm"]["points"]
    c = np.array([p["objective_scale"] for p in pts])
    mean = np.array([p["mean"] for p in pts])
    low, high = np.array([p["ci95_low"] for p in pts]), np.array([p["ci95_high"] for p in pts])
    ax_lstm.errorbar(c, mean, yerr=[np.maximum(mean - low, 0), np.maximum(high - mean, 0)],
                     fmt="o-", color="k", capsize=3,
                     label=f"LSTM ({e['lstm']['optimizer']}; spread "
                           f"{e['spread_log10']['LSTM (objective x c)']:.2f})")
    ax_lstm.set_xscale("log")
    ax_lstm.set_yscale("log")
    ax_lstm.set_xlabel("objective scale c (the LSTM optimises c f)")
    ax_lstm.set_ylabel(f"mean f at step {e['horizon']} (c f / c)")
    ax_lstm.set_title(f"{name}: the learned LSTM's sensitivity to a rescaled objective", fontsize=8)
    ax_lstm.grid(True, which="both", alpha=0.3)
    ax_lstm.legend(fontsize=7)
  return plots.save_figure(fig, path)


def run(problems: Sequence[str], policy_root: Path, seed: int, data_dir=None, grid=None,
        num_test_problems: int = 0, num_validation_problems: int = 0, command: str = "",
        settings: Dict[str, Setting] = None, log_fn: Callable[[str], None] = print,
        jit_compile: bool = False) -> dict:
  """The figure's results from the policies `policy_root/<problem>_<base>/policy.json`."""
  settings = settings or SETTINGS
  per_problem, cpu = {}, {}
  for name in problems:
    setting = ablation.with_problem_counts(settings[name], num_test_problems,
                                              num_validation_problems)
    start = time.process_time()
    paths = {b: Path(policy_root) / run_name(name, b) for b in BASE_NAMES}
    per_problem[name] = evaluate_problem(name, setting, paths, seed, data_dir, grid, log_fn,
                                         jit_compile)
    cpu[name] = time.process_time() - start
  results = figure_results(per_problem, seed, command)
  results["cpu_seconds"] = cpu
  results["jit_compile"] = bool(jit_compile)
  return results


def train_all(problems: Sequence[str], train_dir: Path, data_dir=None, command: str = "",
              settings: Dict[str, Setting] = None,
              log_fn: Callable[[str], None] = print) -> Path:
  """Meta-trains (resumably) every controller of `problems` into `train_dir/<problem>_<base>/`."""
  settings = settings or SETTINGS
  for name in problems:
    for base, config in settings[name].training.items():
      log_fn(f"REPS for {run_name(name, base)}")
      ssc.train_controller(config, Path(train_dir) / run_name(name, base), data_dir, command,
                           log_fn)
  return Path(train_dir)
