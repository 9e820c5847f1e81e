"""Reproduces the review figures of issue 8 (absl entry point).

    python -m l2l_tf_experiments.review.run --figure=review_hochreiter2001 --output_dir=results [--retrain]
    python -m l2l_tf_experiments.review.run --figure=review_forget_gate --output_dir=results [--retrain]

(`python -m l2l_tf.reproduce --figure=...` runs the same.) `review_forget_gate` is the forget-gate
ablation of the L2L optimizer: `l2l_tf_experiments.review.forget_gate`.

`review_hochreiter2001` re-measures the claim of Hochreiter, Younger & Conwell (2001), repeated in
Schmidhuber's review, that a frozen meta-trained LSTM learns a new 2-d quadratic from about 30
examples, much faster than backprop (seed_systems.md Sec. 1.5). On held-out task-H functions it
compares, on the same example streams:

* the frozen 2001 meta-LSTM (no forget gate; optionally also the forget-gate variant);
* online SGD on a 2-20-1 tanh MLP, learning rate tuned on validation functions;
* online LMS on the true features phi(x) (the oracle-feature learner), tuned likewise;
* the L2L optimizer (the library's `CoordinatewiseLSTM`, meta-trained by `MetaTrainer` on
  `task_h.OnlineRegression`) training the same 2-20-1 MLP one example per step.

It writes `<output_dir>/review_hochreiter2001.json` (the results schema of
`l2l_tf.evaluation.results`: "steps" = examples seen n, "optimizers" = mean E_n curves with 95% CIs;
extra keys hold the examples-to-tau table, tau, budgets, tuned learning rates and the ratio) and
`<output_dir>/review_hochreiter2001.png`. Definitions: `l2l_tf_experiments.review.speed`. Without `--retrain`
the shipped models in `l2l_tf_experiments/review/pretrained/review_*` are evaluated; with it they are meta-trained
first into `<output_dir>/train/` (resumable).
"""

import dataclasses
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position

FLAGS = cli.FLAGS
FIGURES = ("review_hochreiter2001", "review_forget_gate")
PRETRAINED = Path(__file__).resolve().parent / "pretrained"

# Shared with l2l_tf.reproduce (same meaning): allow_override lets both modules load in one process.
flags.DEFINE_string("figure", None, "Figure to reproduce.", allow_override=True)
flags.DEFINE_bool("retrain", False, "Meta-train the models first instead of using the shipped "
                  "ones.", allow_override=True)
# The 2001 meta-LSTM.
flags.DEFINE_integer("review_lstm_cells", 32, "Meta-LSTM: memory cells of the LSTM layer.")
flags.DEFINE_integer("review_hidden_units", 48, "Meta-LSTM: units of the tanh layer.")
flags.DEFINE_float("review_cell_clip", None, "Meta-LSTM: clip the cell state to +-C (None: off).")
flags.DEFINE_bool("review_forget_gate_variant", True, "Also evaluate (and with --retrain train) "
                  "the meta-LSTM WITH a forget gate, at the same budget.")
flags.DEFINE_integer("review_meta_updates", 12000, "Meta-LSTM: Adam updates (one batch each).")
flags.DEFINE_integer("review_meta_batch_size", 64, "Meta-LSTM: sequences per update.")
flags.DEFINE_integer("review_sequence_length", 100, "Meta-LSTM: examples per training sequence.")
flags.DEFINE_float("review_meta_learning_rate", 1e-3, "Meta-LSTM: Adam learning rate.")
flags.DEFINE_integer("review_validation_every", 500, "Meta-LSTM: updates between validations.")
flags.DEFINE_string("review_meta_lstm_path", str(PRETRAINED / "review_meta_lstm"),
                    "Meta-LSTM (no forget gate) to evaluate without --retrain.")
flags.DEFINE_string("review_meta_lstm_forget_path", str(PRETRAINED / "review_meta_lstm_forget"),
                    "Meta-LSTM with forget gate to evaluate without --retrain.")
# The L2L optimizer in the reverse direction.
flags.DEFINE_integer("review_l2l_epochs", 80, "L2L optimizer: meta-training epochs.")
flags.DEFINE_integer("review_l2l_horizon", 1000, "L2L optimizer: optimizee steps (examples) per "
                     "epoch.")
flags.DEFINE_integer("review_l2l_truncation", 50, "L2L optimizer: truncated-BPTT unroll.")
flags.DEFINE_integer("review_l2l_meta_batch_size", 16, "L2L optimizer: functions per meta-step.")
flags.DEFINE_float("review_l2l_meta_learning_rate", 1e-3, "L2L optimizer: Adam learning rate.")
flags.DEFINE_float("review_l2l_output_scale", 0.1, "L2L optimizer: output scale of the LSTM.")
flags.DEFINE_integer("review_l2l_validation_every", 10, "L2L optimizer: epochs between "
                     "validations.")
flags.DEFINE_string("review_l2l_path", str(PRETRAINED / "review_h_l2l"),
                    "L2L optimizer to evaluate without --retrain.")
# The forget-gate ablation of the L2L optimizer (review_forget_gate).
flags.DEFINE_list("review_ablation_problems", ["quadratic", "mnist", "mnist_relu"],
                  "review_forget_gate: the problems of the ablation (settings: "
                  "l2l_tf_experiments.review.forget_gate.SETTINGS).")
flags.DEFINE_integer("review_ablation_seeds", 5, "review_forget_gate: meta-training seeds 0..n-1 "
                     "per variant.")
flags.DEFINE_string("review_ablation_path", str(PRETRAINED / "review_forget_gate"),
                    "review_forget_gate: directory of the shipped ablation optimizers, one "
                    "sub-directory per run, evaluated without --retrain.")
flags.DEFINE_integer("review_ablation_num_test_problems", 0, "review_forget_gate: test problems "
                     "per problem (0: the setting's, 1,000 quadratics / 100 MNIST runs).")
flags.DEFINE_integer("review_ablation_num_validation_problems", 0, "review_forget_gate: validation "
                     "problems for Adam's tuning (0: the setting's).")
# Evaluation.
flags.DEFINE_integer("review_num_test_functions", 500, "Held-out test functions.")
flags.DEFINE_integer("review_num_valid_functions", 256, "Validation functions (learning-rate "
                     "tuning of the online baselines, model selection of the meta-learners).")
flags.DEFINE_integer("review_budget", 3000, "Examples each learner sees on a test function.")
flags.DEFINE_integer("review_meta_budget", None, "Budget within which the meta-LSTMs' n* is "
                     "measured (default: --review_sequence_length, the length they were trained "
                     "on); n* within --review_budget is reported too.")
flags.DEFINE_list("review_lr_grid", ["0.01", "0.02", "0.03", "0.05", "0.07", "0.1", "0.15", "0.2",
                                     "0.3", "0.5", "0.7", "1.0"],
                  "Learning rates tried for online SGD (MLP) and LMS, on validation functions.")
flags.DEFINE_float("review_tau_fraction", 0.05, "tau as a fraction of the target variance.")
flags.DEFINE_integer("review_probe_order", 8, "Gauss-Legendre order of the MSE probe rule.")
flags.DEFINE_integer("review_bootstrap", 2000, "Bootstrap resamples for the ratio's CI.")

META_LSTM = "meta-LSTM 2001 (no forget gate)"
META_LSTM_FORGET = "meta-LSTM 2001 (forget gate)"
L2L = "L2L optimizer -> 2-20-1 MLP"
SGD_MLP = "online SGD, 2-20-1 MLP"
LMS = "online LMS, true features"


def _log(message: str):
  print(message, file=sys.stderr, flush=True)


def check_flags():
  """Raises cli.UsageError for bad flag values."""
  if FLAGS.figure not in FIGURES:
    raise cli.UsageError(f"Unknown --figure={FLAGS.figure}; choose one of: {', '.join(FIGURES)}.")
  cli.require_positive("review_lstm_cells", "review_hidden_units", "review_meta_updates",
                       "review_meta_batch_size", "review_sequence_length",
                       "review_meta_learning_rate", "review_validation_every",
                       "review_l2l_epochs", "review_l2l_horizon", "review_l2l_truncation",
                       "review_l2l_meta_batch_size", "review_l2l_meta_learning_rate",
                       "review_l2l_output_scale", "review_l2l_validation_every",
                       "review_num_test_functions", "review_num_valid_functions",
                       "review_budget", "review_tau_fraction", "review_probe_order",
                       "review_bootstrap", "review_ablation_seeds")
  if FLAGS.review_l2l_horizon % FLAGS.review_l2l_truncation:
    raise cli.UsageError(f"--review_l2l_truncation={FLAGS.review_l2l_truncation} must divide "
                         f"--review_l2l_horizon={FLAGS.review_l2l_horizon}.")
  if FLAGS.review_cell_clip is not None and not FLAGS.review_cell_clip > 0:
    raise cli.UsageError(f"--review_cell_clip must be positive, got {FLAGS.review_cell_clip}.")
  if not 0 < meta_budget() <= FLAGS.review_budget:
    raise cli.UsageError(f"--review_meta_budget must be in [1, --review_budget], got "
                         f"{meta_budget()}.")
  lr_grid()


def meta_budget() -> int:
  return FLAGS.review_meta_budget or FLAGS.review_sequence_length


def lr_grid():
  try:
    grid = tuple(float(v) for v in FLAGS.review_lr_grid)
  except ValueError as e:
    raise cli.UsageError(f"--review_lr_grid must be numbers, got "
                         f"{','.join(FLAGS.review_lr_grid)}.") from e
  if not grid or any(not lr > 0 for lr in grid):
    raise cli.UsageError(f"--review_lr_grid must be positive numbers, got {grid}.")
  return grid


def l2l_optimizer_config() -> dict:
  """The L2L optimizer: the paper's coordinatewise 2 x 20 LSTM (forget gate), raw gradients."""
  return {"name": "lstm", "hidden_sizes": [20, 20],
          "preprocessing": {"name": "identity", "scale": 1.0},
          "output_scale": FLAGS.review_l2l_output_scale, "forget_bias": 1.0, "forget_gate": True,
          "cell_clip": None, "initializer": "truncated_normal", "seed": FLAGS.seed,
          "dtype": "float32"}


def meta_lstm_config(forget_gate: bool) -> dict:
  return {"lstm_cells": FLAGS.review_lstm_cells, "hidden_units": FLAGS.review_hidden_units,
          "forget_gate": forget_gate, "forget_bias": 1.0, "cell_clip": FLAGS.review_cell_clip,
          "seed": FLAGS.seed, "dtype": "float32"}


def obtain_meta_lstm(output_dir: Path, forget_gate: bool):
  """Trains (with --retrain, resumably) or loads a meta-LSTM; returns (model, provenance)."""
  from l2l_tf_experiments.review import hochreiter2001  # pylint: disable=g-import-not-at-top
  name = "meta_lstm_forget" if forget_gate else "meta_lstm"
  if FLAGS.retrain:
    model = hochreiter2001.MetaLSTM(**meta_lstm_config(forget_gate))
    config = hochreiter2001.MetaTrainConfig(
        num_updates=FLAGS.review_meta_updates, batch_size=FLAGS.review_meta_batch_size,
        sequence_length=FLAGS.review_sequence_length,
        learning_rate=FLAGS.review_meta_learning_rate,
        validation_every=FLAGS.review_validation_every,
        num_validation_functions=FLAGS.review_num_valid_functions,
        checkpoint_every=FLAGS.review_validation_every, seed=FLAGS.seed)
    trainer = hochreiter2001.MetaLSTMTrainer(model, config, output_dir / "train" / name,
                                             log_fn=_log)
    summary = trainer.train()
    _log(f"{name}: {summary}")
    path = trainer.export(output_dir / "train" / name / "export",
                          metadata={"command": cli.command_line()})
  else:
    path = Path(FLAGS.review_meta_lstm_forget_path if forget_gate else FLAGS.review_meta_lstm_path)
  try:
    model, metadata = hochreiter2001.load_meta_lstm(path)
  except FileNotFoundError as e:
    raise cli.UsageError(f"{e} Run with --retrain to meta-train it.") from e
  expected = meta_lstm_config(forget_gate)
  differs = [k for k in ("lstm_cells", "hidden_units", "forget_gate", "cell_clip")
             if model.get_config()[k] != expected[k]]
  if differs:
    raise cli.UsageError(f"The meta-LSTM at {path} has other settings ("
                         + ", ".join(f"{k}={model.get_config()[k]}" for k in differs)
                         + ") than the flags ask for; use matching flags or --retrain.")
  return model, {"path": str(path), "num_weights": model.num_weights(), "metadata": metadata}


def obtain_l2l_optimizer(output_dir: Path):
  """Meta-trains (with --retrain) or loads the L2L optimizer; returns (optimizer, provenance)."""
  from l2l_tf import meta, optimizers  # pylint: disable=g-import-not-at-top
  from l2l_tf_experiments.review import task_h  # pylint: disable=g-import-not-at-top
  path = FLAGS.review_l2l_path
  if FLAGS.retrain:
    problem = task_h.OnlineRegression("mlp", num_examples=FLAGS.review_l2l_horizon + 1)
    config = meta.TrainConfig(
        num_epochs=FLAGS.review_l2l_epochs, horizon=FLAGS.review_l2l_horizon,
        truncation=FLAGS.review_l2l_truncation, meta_batch_size=FLAGS.review_l2l_meta_batch_size,
        meta_learning_rate=FLAGS.review_l2l_meta_learning_rate,
        validation_every=FLAGS.review_l2l_validation_every,
        num_validation_problems=FLAGS.review_num_valid_functions,
        checkpoint_every=FLAGS.review_l2l_validation_every, seed=FLAGS.seed)
    start = time.process_time()
    trainer = meta.MetaTrainer(problem, optimizers.make_optimizer(l2l_optimizer_config()), config,
                               output_dir / "train" / "h_l2l",
                               metadata={"command": cli.command_line()}, log_fn=_log)
    summary = trainer.train(progress=FLAGS.progress)
    _log(f"h_l2l: {summary}; {time.process_time() - start:.0f} CPU-s in this process")
    path = summary["optimizer_dir"]
  optimizer = optimizers.load_optimizer(path, l2l_optimizer_config())
  resolved, saved = optimizers.serialization.read_config(path)
  num_weights = sum(int(v.shape.num_elements()) for v in optimizer.trainable_variables)
  return optimizer, {"path": str(resolved), "num_weights": num_weights,
                     "metadata": saved.get("metadata", {})}


def evaluate(output_dir: Path) -> dict:
  """Runs every learner on the test streams; returns the results dict."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from l2l_tf import optimizers, problems  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import curves as curves_lib  # pylint: disable=g-import-not-at-top
  from l2l_tf_experiments.review import hochreiter2001, speed, task_h  # pylint: disable=g-import-not-at-top

  cpu_start = time.process_time()
  seed = FLAGS.seed
  budget = FLAGS.review_budget
  task = task_h.TaskH()
  tau = task.threshold(FLAGS.review_tau_fraction)
  mlp = task_h.OnlineRegression("mlp", num_examples=budget, probe_order=FLAGS.review_probe_order)
  linear = task_h.OnlineRegression("linear", num_examples=budget,
                                   probe_order=FLAGS.review_probe_order)
  test = task.streams("test", FLAGS.review_num_test_functions, budget, seed)
  test_mlp_init = mlp.initial_params(test, problems.fold_in(problems.split_seed(seed, "test"), 1))
  # Index 1: not the functions the meta-learners were model-selected on (index 0).
  valid = task.streams("valid", FLAGS.review_num_valid_functions, budget, seed, index=1)
  valid_mlp_init = mlp.initial_params(valid,
                                      problems.fold_in(problems.split_seed(seed, "valid", 1), 1))

  curves, online, tuned, models, cpu = {}, {}, {}, {}, {}

  def timed(name, fn):
    start = time.process_time()
    out = fn()
    cpu[name] = time.process_time() - start
    _log(f"{name}: {cpu[name]:.1f} CPU-s")
    return out

  variants = [(META_LSTM, False)] + ([(META_LSTM_FORGET, True)]
                                     if FLAGS.review_forget_gate_variant else [])
  probes = tf.constant(mlp.probes)
  weights = tf.constant(mlp.probe_weights)
  for name, forget_gate in variants:
    model, models[name] = timed(f"obtain {name}", lambda f=forget_gate: obtain_meta_lstm(
        output_dir, f))
    fn = tf.function(lambda inst, m=model: hochreiter2001.probe_curves(m, inst, budget, probes,
                                                                       weights))
    online[name], curves[name] = timed(name, lambda fn=fn: tuple(o.numpy() for o in fn(test)))

  l2l, models[L2L] = timed(f"obtain {L2L}", lambda: obtain_l2l_optimizer(output_dir))
  online[L2L], curves[L2L] = timed(L2L, lambda: speed.run_chunked(
      speed.make_online_curves_fn(mlp, l2l, budget), test, test_mlp_init))

  grid = lr_grid()
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
    online[name], curves[name] = timed(name, lambda p=problem, s=sgd, t=t_init: speed.run_chunked(
        speed.make_online_curves_fn(p, s, budget), test, t))

  # Examples to tau, per learner.
  table = {}
  for name, c in curves.items():
    own_budget = meta_budget() if name in (META_LSTM, META_LSTM_FORGET) else budget
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
                               FLAGS.review_bootstrap, seed)
    return dict(r, numerator=numerator, denominator=denominator)

  ratios = {"primary": ratio(SGD_MLP, META_LSTM),
            "first_reach": ratio(SGD_MLP, META_LSTM, "first"),
            # Both learners held to "stays below tau" over the same --review_budget examples.
            "same_budget": ratio(SGD_MLP, META_LSTM, "n_star_full"),
            "lms_over_meta_lstm": ratio(LMS, META_LSTM),
            "l2l_over_meta_lstm": ratio(L2L, META_LSTM),
            "sgd_over_l2l": ratio(SGD_MLP, L2L)}
  if FLAGS.review_forget_gate_variant:
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
      "figure": FLAGS.figure, "steps": list(range(budget + 1)),
      "num_test_problems": FLAGS.review_num_test_functions, "seed": seed,
      "optimizers": optimizers_json,
      "x_axis": "examples seen n; curves: E_n, the expected squared error over x ~ U[-1,1]^2 of "
                "the predictor after n labelled examples (Gauss-Legendre probe rule)",
      "tau": tau, "tau_fraction": FLAGS.review_tau_fraction,
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
      "budget": budget, "meta_budget": meta_budget(),
      "examples_to_tau": table, "ratios": ratios, "tuned_learning_rates": tuned,
      "online_error_mean": {n: np.nanmean(np.where(np.isfinite(o), o, np.nan), axis=0).tolist()
                            for n, o in online.items()},
      "models": models,
      "parameter_counts": {"meta_lstm": models[META_LSTM]["num_weights"],
                           "l2l_optimizer": models[L2L]["num_weights"],
                           "mlp_regressor": mlp.num_parameters(),
                           "linear_regressor": linear.num_parameters()},
      "num_valid_functions": FLAGS.review_num_valid_functions,
      "cpu_seconds": cpu, "command": cli.command_line(),
  }


def plot(results: dict, path: Path) -> Path:
  """E_n against n (log-log) per learner with 95% CI bands; tau dashed; medians n* marked."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import results as results_lib  # pylint: disable=g-import-not-at-top

  steps = np.asarray(results["steps"])
  keep = steps >= 1
  fig, ax = plt.subplots(figsize=(7.0, 4.8), dpi=120)
  tau = results["tau"]
  # Two decades below tau is enough to read the metric; LMS on the true features goes on to
  # float32 round-off (~1e-15) and would squash every other curve.
  bottom = tau / 300
  for i, (name, curve) in enumerate(results["optimizers"].items()):
    color = f"C{i}"
    learned = curve["learning_rate"] is None
    entry = results["examples_to_tau"][name]
    median = entry["median"]
    label = name if learned else f"{name} (lr={curve['learning_rate']:g})"
    label += (f"; n*={median:g}" if np.isfinite(median) else "; n*: never") + \
        f" (budget {entry['budget']})"
    mean = np.asarray(curve["mean"], np.float64)
    ax.plot(steps[keep], mean[keep], "-" if learned else "--", color=color, label=label,
            linewidth=1.8 if learned else 1.3)
    low = np.maximum(np.asarray(curve["ci95_low"], np.float64), bottom)
    ax.fill_between(steps[keep], low[keep], np.asarray(curve["ci95_high"])[keep], color=color,
                    alpha=0.2, linewidth=0)
    if np.isfinite(median) and median >= 1:
      ax.plot([median], [tau], "o", color=color, markersize=6)
  ax.axhline(tau, color="k", linestyle=":", linewidth=1.0,
             label=f"tau = {results['tau_fraction']:g} Var[y] = {tau:.4f}")
  ax.axvline(results["meta_budget"], color="gray", linestyle="-.", linewidth=0.8,
             label=f"meta-LSTM training length ({results['meta_budget']})")
  ax.set_xscale("log")
  ax.set_yscale("log")
  ax.set_ylim(bottom=bottom)
  ax.set_xlabel("examples seen n")
  ax.set_ylabel("MSE of the current predictor, E_n")
  ax.set_title(f"Task H: learning a new 2-d quadratic ({results['num_test_problems']} test "
               "functions, mean, 95% CI; dots: median n*)", fontsize=8)
  ax.grid(True, which="both", alpha=0.3)
  ax.legend(fontsize=6.5, loc="lower left")
  return results_lib.save_figure(fig, path)


def forget_gate_ablation(output_dir: Path) -> dict:
  """review_forget_gate: trains (with --retrain) or loads the ablation optimizers, evaluates them;
  returns the results dict."""
  from l2l_tf_experiments.review import forget_gate  # pylint: disable=g-import-not-at-top
  problems = list(FLAGS.review_ablation_problems)
  unknown = [p for p in problems if p not in forget_gate.SETTINGS]
  if unknown or not problems:
    raise cli.UsageError(f"--review_ablation_problems: unknown {unknown or problems}; choose from "
                         f"{', '.join(forget_gate.SETTINGS)}.")
  seeds = list(range(FLAGS.review_ablation_seeds))
  if FLAGS.retrain:
    forget_gate.train_all(problems, seeds, output_dir / "train" / "forget_gate", cli.REPO_ROOT,
                          log_fn=_log)
  results = {"figure": FLAGS.figure, "problems": {}, "seed": FLAGS.seed,
             "command": cli.command_line(), "cpu_seconds": {}}
  for problem in problems:
    dirs = {}
    trained_on = forget_gate.SETTINGS[problem].trained_on or problem
    for name, key, _ in forget_gate.VARIANTS:
      dirs[name] = {}
      for seed in seeds:
        run = forget_gate.run_name(trained_on, key, seed)
        path = (output_dir / "train" / "forget_gate" / run / "optimizer" if FLAGS.retrain
                else Path(FLAGS.review_ablation_path) / run)
        if not (path / "config.json").is_file():
          raise cli.UsageError(f"No ablation optimizer {run} at {path}; run with --retrain to "
                               "meta-train the ablation, or point --review_ablation_path at it.")
        dirs[name][seed] = path
    setting = forget_gate.SETTINGS[problem]
    if FLAGS.review_ablation_num_test_problems > 0:
      setting = dataclasses.replace(setting,
                                    num_test_problems=FLAGS.review_ablation_num_test_problems)
    if FLAGS.review_ablation_num_validation_problems > 0:
      setting = dataclasses.replace(
          setting, num_validation_problems=FLAGS.review_ablation_num_validation_problems)
    start = time.process_time()
    results["problems"][problem] = forget_gate.evaluate_problem(
        problem, dirs, setting, FLAGS.seed, FLAGS.data_dir, grid=cli.learning_rate_grid(),
        log_fn=_log)
    results["cpu_seconds"][problem] = time.process_time() - start
  # The results schema: "optimizers" holds the pooled curves (all seeds' runs) of the problems
  # evaluated longest (4 x T = 400 steps: quadratic and mnist), named "<problem>: <optimizer>";
  # every problem's curves stay under problems/<problem>/curves.
  length = max(len(c["mean"]) for e in results["problems"].values()
               for c in e["curves"].values())
  results["steps"] = list(range(length))
  results["num_test_problems"] = {p: e["num_test_problems"] for p, e in
                                  results["problems"].items()}
  results["optimizers"] = {f"{p}: {n}": c for p, e in results["problems"].items()
                           for n, c in e["curves"].items() if len(c["mean"]) == length}
  return results


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  check_flags()
  output_dir = cli.require_writable_dir(FLAGS.output_dir)
  cli.configure_tensorflow()
  reproduce_review_figure(output_dir)


def reproduce_review_figure(output_dir: Path):
  """Writes `<output_dir>/<figure>.{json,png}` for --figure (flags already checked)."""
  from l2l_tf.evaluation import results as results_lib  # pylint: disable=g-import-not-at-top
  start = time.process_time()
  if FLAGS.figure == "review_forget_gate":
    from l2l_tf_experiments.review import forget_gate  # pylint: disable=g-import-not-at-top
    results = forget_gate_ablation(output_dir)
    plot_fn, table_fn = forget_gate.plot, forget_gate.table_lines
  else:
    results = evaluate(output_dir)
    from l2l_tf_experiments.review import speed  # pylint: disable=g-import-not-at-top
    plot_fn, table_fn = plot, speed.table_lines
  results["cpu_seconds"]["process_total"] = time.process_time() - start
  json_path = output_dir / f"{FLAGS.figure}.json"
  results_lib.write_results(results, json_path)
  png_path = plot_fn(results, output_dir / f"{FLAGS.figure}.png")
  print(table_fn(results))
  print(f"wrote {json_path} and {png_path}")


if __name__ == "__main__":
  app.run(main)
