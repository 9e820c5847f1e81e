"""review_hochreiter2001: the 2001 meta-LSTM against online learners on the same task-H streams.

Re-measures the claim of Hochreiter, Younger & Conwell (2001), repeated in Schmidhuber's review,
that a frozen meta-trained LSTM learns a new 2-d quadratic from about 30 examples, much faster than
backprop (seed_systems.md Sec. 1.5). On held-out task-H functions it compares, on the same example
streams:

* the frozen 2001 meta-LSTM (no forget gate; optionally also the forget-gate variant);
* online SGD on a 2-20-1 tanh MLP, learning rate tuned on validation functions;
* online LMS on the true features phi(x) (the oracle-feature learner), tuned likewise;
* the L2L optimizer (the library's `CoordinatewiseLSTM`, meta-trained by `MetaTrainer` on
  `task_h.OnlineRegression`) training the same 2-20-1 MLP one example per step.

The results follow the library's schema (`l2l_tf.evaluation.results`: "steps" = examples seen n,
"optimizers" = mean E_n curves with 95% CIs); extra keys hold the examples-to-tau table, tau,
budgets, tuned learning rates and the ratios. Definitions: `speed`. Its figure and flags:
`l2l_tf_experiments.review.figures`.
"""

import dataclasses
import time
from pathlib import Path
from typing import Callable, Optional, Tuple

import numpy as np
import tensorflow as tf

from l2l_tf import meta, optimizers, problems
from l2l_tf.evaluation import curves as curves_lib
from l2l_tf_experiments.review import hochreiter2001, speed, task_h

FIGURE = "review_hochreiter2001"
META_LSTM = "meta-LSTM 2001 (no forget gate)"
META_LSTM_FORGET = "meta-LSTM 2001 (forget gate)"
L2L = "L2L optimizer -> 2-20-1 MLP"
SGD_MLP = "online SGD, 2-20-1 MLP"
LMS = "online LMS, true features"


@dataclasses.dataclass(frozen=True)
class Settings:
  """The figure's settings (the flags `--review_<name>` of `figures`, and the shared ones)."""
  # The 2001 meta-LSTM and its meta-training.
  lstm_cells: int = 32
  hidden_units: int = 48
  cell_clip: Optional[float] = None
  forget_gate_variant: bool = True
  meta_updates: int = 12000
  meta_batch_size: int = 64
  sequence_length: int = 100
  meta_learning_rate: float = 1e-3
  validation_every: int = 500
  meta_lstm_path: str = ""
  meta_lstm_forget_path: str = ""
  # The L2L optimizer in the reverse direction.
  l2l_epochs: int = 80
  l2l_horizon: int = 1000
  l2l_truncation: int = 50
  l2l_meta_batch_size: int = 16
  l2l_meta_learning_rate: float = 1e-3
  l2l_output_scale: float = 0.1
  l2l_validation_every: int = 10
  l2l_path: str = ""
  # Evaluation.
  num_test_functions: int = 500
  num_valid_functions: int = 256
  budget: int = 3000
  meta_budget: int = 100
  lr_grid: Tuple[float, ...] = (0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.5, 0.7, 1.0)
  tau_fraction: float = 0.05
  probe_order: int = 8
  bootstrap: int = 2000
  seed: int = 0
  progress: bool = False
  command: str = ""  # Recorded as the provenance of the results and of models trained here.


def l2l_optimizer_config(cfg: Settings) -> dict:
  """The L2L optimizer: the paper's coordinatewise 2 x 20 LSTM (forget gate), raw gradients."""
  return {"name": "lstm", "hidden_sizes": [20, 20],
          "preprocessing": {"name": "identity", "scale": 1.0},
          "output_scale": cfg.l2l_output_scale, "forget_bias": 1.0, "forget_gate": True,
          "cell_clip": None, "initializer": "truncated_normal", "seed": cfg.seed,
          "dtype": "float32"}


def meta_lstm_config(cfg: Settings, forget_gate: bool) -> dict:
  return {"lstm_cells": cfg.lstm_cells, "hidden_units": cfg.hidden_units,
          "forget_gate": forget_gate, "forget_bias": 1.0, "cell_clip": cfg.cell_clip,
          "seed": cfg.seed, "dtype": "float32"}


def obtain_meta_lstm(cfg: Settings, output_dir: Path, retrain: bool, forget_gate: bool,
                     log_fn: Callable[[str], None] = print):
  """Trains (with `retrain`, resumably) or loads a meta-LSTM; returns (model, provenance)."""
  name = "meta_lstm_forget" if forget_gate else "meta_lstm"
  if retrain:
    model = hochreiter2001.MetaLSTM(**meta_lstm_config(cfg, forget_gate))
    config = hochreiter2001.MetaTrainConfig(
        num_updates=cfg.meta_updates, batch_size=cfg.meta_batch_size,
        sequence_length=cfg.sequence_length, learning_rate=cfg.meta_learning_rate,
        validation_every=cfg.validation_every, num_validation_functions=cfg.num_valid_functions,
        checkpoint_every=cfg.validation_every, seed=cfg.seed)
    trainer = hochreiter2001.MetaLSTMTrainer(model, config, output_dir / "train" / name,
                                             log_fn=log_fn)
    summary = trainer.train()
    log_fn(f"{name}: {summary}")
    path = trainer.export(output_dir / "train" / name / "export",
                          metadata={"command": cfg.command})
  else:
    path = Path(cfg.meta_lstm_forget_path if forget_gate else cfg.meta_lstm_path)
  try:
    model, metadata = hochreiter2001.load_meta_lstm(path)
  except FileNotFoundError as e:
    raise ValueError(f"{e} Run with --retrain to meta-train it.") from e
  expected = meta_lstm_config(cfg, forget_gate)
  differs = [k for k in ("lstm_cells", "hidden_units", "forget_gate", "cell_clip")
             if model.get_config()[k] != expected[k]]
  if differs:
    raise ValueError(f"The meta-LSTM at {path} has other settings ("
                     + ", ".join(f"{k}={model.get_config()[k]}" for k in differs)
                     + ") than the flags ask for; use matching flags or --retrain.")
  return model, {"path": str(path), "num_weights": model.num_weights(), "metadata": metadata}


def obtain_l2l_optimizer(cfg: Settings, output_dir: Path, retrain: bool,
                         log_fn: Callable[[str], None] = print):
  """Meta-trains (with `retrain`) or loads the L2L optimizer; returns (optimizer, provenance)."""
  path = cfg.l2l_path
  if retrain:
    problem = task_h.OnlineRegression("mlp", num_examples=cfg.l2l_horizon + 1)
    config = meta.TrainConfig(
        num_epochs=cfg.l2l_epochs, horizon=cfg.l2l_horizon,
        truncation=cfg.l2l_truncation, meta_batch_size=cfg.l2l_meta_batch_size,
        meta_learning_rate=cfg.l2l_meta_learning_rate,
        validation_every=cfg.l2l_validation_every,
        num_validation_problems=cfg.num_valid_functions,
        checkpoint_every=cfg.l2l_validation_every, seed=cfg.seed)
    start = time.process_time()
    trainer = meta.MetaTrainer(problem, optimizers.make_optimizer(l2l_optimizer_config(cfg)),
                               config, output_dir / "train" / "h_l2l",
                               metadata={"command": cfg.command}, log_fn=log_fn)
    summary = trainer.train(progress=cfg.progress)
    log_fn(f"h_l2l: {summary}; {time.process_time() - start:.0f} CPU-s in this process")
    path = summary["optimizer_dir"]
  optimizer = optimizers.load_optimizer(path, l2l_optimizer_config(cfg))
  resolved, saved = optimizers.serialization.read_config(path)
  num_weights = sum(int(v.shape.num_elements()) for v in optimizer.trainable_variables)
  return optimizer, {"path": str(resolved), "num_weights": num_weights,
                     "metadata": saved.get("metadata", {})}


def evaluate(cfg: Settings, output_dir: Path, retrain: bool = False,
             log_fn: Callable[[str], None] = print) -> dict:
  """Runs every learner on the test streams (with `retrain`, meta-trains the learners first into
  `<output_dir>/train/`, resumably); returns the results dict."""
  cpu_start = time.process_time()
  seed = cfg.seed
  budget = cfg.budget
  task = task_h.TaskH()
  tau = task.threshold(cfg.tau_fraction)
  mlp = task_h.OnlineRegression("mlp", num_examples=budget, probe_order=cfg.probe_order)
  linear = task_h.OnlineRegression("linear", num_examples=budget,
                                   probe_order=cfg.probe_order)
  test = task.streams("test", cfg.num_test_functions, budget, seed)
  test_mlp_init = mlp.initial_params(test, problems.fold_in(problems.split_seed(seed, "test"), 1))
  # Index 1: not the functions the meta-learners were model-selected on (index 0).
  valid = task.streams("valid", cfg.num_valid_functions, budget, seed, index=1)
  valid_mlp_init = mlp.initial_params(valid,
                                      problems.fold_in(problems.split_seed(seed, "valid", 1), 1))

  curves, online, tuned, models, cpu = {}, {}, {}, {}, {}

  def timed(name, fn):
    start = time.process_time()
    out = fn()
    cpu[name] = time.process_time() - start
    log_fn(f"{name}: {cpu[name]:.1f} CPU-s")
    return out

  variants = [(META_LSTM, False)] + ([(META_LSTM_FORGET, True)]
                                     if cfg.forget_gate_variant else [])
  probes = tf.constant(mlp.probes)
  weights = tf.constant(mlp.probe_weights)
  for name, forget_gate in variants:
    model, models[name] = timed(f"obtain {name}", lambda f=forget_gate: obtain_meta_lstm(
        cfg, output_dir, retrain, f, log_fn))
    fn = tf.function(lambda inst, m=model: hochreiter2001.probe_curves(m, inst, budget, probes,
                                                                       weights))
    online[name], curves[name] = timed(name, lambda fn=fn: tuple(o.numpy() for o in fn(test)))

  l2l, models[L2L] = timed(f"obtain {L2L}", lambda: obtain_l2l_optimizer(
      cfg, output_dir, retrain, log_fn))
  online[L2L], curves[L2L] = timed(L2L, lambda: curves_lib.run_in_chunks(
      speed.make_online_curves_fn(mlp, l2l, budget), test, test_mlp_init))

  grid = cfg.lr_grid
  for name, problem, v_init, t_init in ((SGD_MLP, mlp, valid_mlp_init, test_mlp_init),
                                        (LMS, linear, linear.initial_params(valid, None),
                                         linear.initial_params(test, None))):
    sgd = optimizers.SGD(grid[0])
    best, scores = timed(f"tune {name}", lambda p=problem, s=sgd, v=v_init: (
        speed.tune_learning_rate(p, s, valid, v, budget, grid, tau)))
    tuned[name] = {"learning_rate": best, "grid": list(grid),
                   "validation_scores": {f"{lr:g}": {"median_examples_to_tau": s[0],
                                                     "mean_log10_mse": s[1]}
                                         for lr, s in scores.items()},
                   "chosen_at_grid_edge": best in (min(grid), max(grid))}
    online[name], curves[name] = timed(name, lambda p=problem, s=sgd, t=t_init: (
        curves_lib.run_in_chunks(speed.make_online_curves_fn(p, s, budget), test, t)))

  # Examples to tau, per learner.
  table = {}
  for name, c in curves.items():
    own_budget = cfg.meta_budget if name in (META_LSTM, META_LSTM_FORGET) else budget
    n_star = speed.examples_to_tau(c[:, :own_budget + 1], tau)
    entry = speed.summarize_examples(n_star, own_budget)
    first = speed.first_reach(c[:, :own_budget + 1], tau)
    entry["first_reach"] = speed.summarize_examples(first, own_budget)
    entry["mean_curve_crossing"] = speed.mean_curve_crossing(c[:, :own_budget + 1], tau)
    n_star_full = n_star
    if own_budget != budget:
      n_star_full = speed.examples_to_tau(c, tau)
      entry["within_full_budget"] = speed.summarize_examples(n_star_full, budget)
    entry["mse_at"] = {str(n): float(np.nanmean(c[:, n])) for n in (0, 1, 5, 10, 30, 100, 300,
                                                                    1000, 3000) if n <= budget}
    table[name] = dict(entry, n_star=n_star, first=first, n_star_full=n_star_full)

  def ratio(numerator, denominator, key="n_star"):
    r = speed.ratio_of_medians(table[numerator][key], table[denominator][key],
                               cfg.bootstrap, seed)
    return dict(r, numerator=numerator, denominator=denominator)

  ratios = {"primary": ratio(SGD_MLP, META_LSTM),
            "first_reach": ratio(SGD_MLP, META_LSTM, "first"),
            # Both learners held to "stays below tau" over the same --review_budget examples.
            "same_budget": ratio(SGD_MLP, META_LSTM, "n_star_full"),
            "lms_over_meta_lstm": ratio(LMS, META_LSTM),
            "l2l_over_meta_lstm": ratio(L2L, META_LSTM),
            "sgd_over_l2l": ratio(SGD_MLP, L2L)}
  if cfg.forget_gate_variant:
    ratios["sgd_over_meta_lstm_forget"] = ratio(SGD_MLP, META_LSTM_FORGET)
  for t in table.values():
    for key in ("n_star", "first", "n_star_full"):
      t.pop(key)

  optimizers_json = {}
  for name, c in curves.items():
    summary = curves_lib.summarize_losses(c)
    summary["learning_rate"] = tuned[name]["learning_rate"] if name in tuned else None
    optimizers_json[name] = summary
  cpu["evaluation_total"] = time.process_time() - cpu_start
  return {
      "figure": FIGURE, "steps": list(range(budget + 1)),
      "num_test_problems": cfg.num_test_functions, "seed": seed,
      "optimizers": optimizers_json,
      "x_axis": "examples seen n; curves: E_n, the expected squared error over x ~ U[-1,1]^2 of "
                "the predictor after n labelled examples (Gauss-Legendre probe rule)",
      "tau": tau, "tau_fraction": cfg.tau_fraction,
      "target_variance": task.target_variance,
      "definitions": {
          "examples_to_tau": "n* = min{n : E_m <= tau for all m in [n, budget]}; never (inf) if "
                             "E_budget > tau; non-finite E counts as above tau",
          "first_reach": "min{n : E_n <= tau} (does not require staying below)",
          "median_ci": "distribution-free order-statistic 95% CI of the median over test "
                       "functions (inf sorts last)",
          "ratio": "median n*(numerator) / median n*(denominator) on the same test functions; "
                   "95% CI by paired bootstrap over functions. primary: each learner within its "
                   "own budget (see budgets); same_budget: both within --review_budget; "
                   "first_reach: first_reach instead of n*",
          "budgets": "online learners and the L2L optimizer: --review_budget examples; the "
                     "meta-LSTMs: --review_meta_budget (default: their training sequence length); "
                     "their n* within the full budget is under within_full_budget",
          "learning_rates": "online SGD / LMS: the grid rate with the smallest median n* on "
                            "validation functions (ties: mean log10 E_n); never the test functions",
      },
      "budget": budget, "meta_budget": cfg.meta_budget,
      "examples_to_tau": table, "ratios": ratios, "tuned_learning_rates": tuned,
      "online_error_mean": {n: np.nanmean(np.where(np.isfinite(o), o, np.nan), axis=0).tolist()
                            for n, o in online.items()},
      "models": models,
      "parameter_counts": {"meta_lstm": models[META_LSTM]["num_weights"],
                           "l2l_optimizer": models[L2L]["num_weights"],
                           "mlp_regressor": mlp.num_parameters(),
                           "linear_regressor": linear.num_parameters()},
      "num_valid_functions": cfg.num_valid_functions,
      "cpu_seconds": cpu, "command": cfg.command,
  }
