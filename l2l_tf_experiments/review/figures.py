"""The review's figures and their flags: the plugin `l2l_tf.evaluation.figures` finds.

    python -m l2l_tf.reproduce --figure=review_hochreiter2001 --output_dir=results [--retrain]
    python -m l2l_tf.reproduce --figure=review_forget_gate --output_dir=results [--retrain]
    python -m l2l_tf.reproduce --figure=review_step_size_control --output_dir=results [--retrain]
    python -m l2l_tf.reproduce --figure=review_ssa --output_dir=results [--retrain]

(`python -m l2l_tf_experiments.review.run` runs the same, for these figures only.)

* `review_hochreiter2001` (`comparison`): the 2001 meta-LSTM against online SGD, LMS and the L2L
  optimizer on task H, in examples to tau (`speed`). Its flags are `--review_*` except
  `--review_ablation_*`.
* `review_forget_gate` (`forget_gate`): the forget-gate ablation of the L2L optimizer. Its flags
  are `--review_ablation_*`, `--data_dir` and `--learning_rate_grid` (Adam's).
* `review_step_size_control` (`step_size_figure`, `step_size_control`, `reps`): Daniel et al.'s
  step-size controller. Its flags are `--step_size_*`, `--data_dir`, `--learning_rate_grid`.
* `review_ssa` (`ssa`): the Success-Story Algorithm. Its flags are `--ssa_*` and
  `--learning_rate_grid`.

All read `--seed`. Without `--retrain` they evaluate the shipped models in
`l2l_tf_experiments/review/pretrained/`; with it they meta-train them first into
`<output_dir>/train/` (resumable). Each writes `<output_dir>/<figure>.json` (the results schema of
`l2l_tf.evaluation.results`, with extra keys) and `<figure>.png`, and prints its table.
"""

import dataclasses
import sys
import time
from pathlib import Path

from absl import flags

from l2l_tf import cli
from l2l_tf.evaluation import figures as figures_lib
from l2l_tf_experiments.review import ablation as ablation_lib

FLAGS = cli.FLAGS
PRETRAINED = Path(__file__).resolve().parent / "pretrained"
HOCHREITER = "review_hochreiter2001"
FORGET_GATE = "review_forget_gate"
MEMORIES_QUADRATIC = "review_fast_weights_quadratic"
MEMORIES_MNIST = "review_fast_weights_mnist"
STEP_SIZE = "review_step_size_control"
SSA = "review_ssa"

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
# Which memory (issue 19): review_fast_weights_quadratic / _mnist.
flags.DEFINE_integer("review_memories_seeds", 3, "review_fast_weights_*: meta-training seeds "
                     "0..n-1 per optimizer.")
flags.DEFINE_string("review_memories_path", str(PRETRAINED / "review_fast_weights"),
                    "review_fast_weights_*: directory of the shipped optimizers, one "
                    "sub-directory per run, evaluated without --retrain.")
flags.DEFINE_integer("review_memories_num_test_problems", 0, "review_fast_weights_*: test "
                     "problems per seed (0: the setting's, 1,000 quadratics / 100 MNIST runs).")
flags.DEFINE_integer("review_memories_num_validation_problems", 0, "review_fast_weights_*: "
                     "validation problems for the baselines' tuning (0: the setting's).")

# The step-size controller of Daniel, Taylor & Nowozin 2016 (review_step_size_control).
flags.DEFINE_list("step_size_problems", ["quadratic", "mnist"], "review_step_size_control: the "
                  "problems (settings: l2l_tf_experiments.review.step_size_figure.SETTINGS).")
flags.DEFINE_string("step_size_path", str(PRETRAINED / "review_step_size_control"),
                    "review_step_size_control: directory of the shipped controllers "
                    "(<problem>_<sgd|rmsprop>/policy.json), evaluated without --retrain.")
flags.DEFINE_integer("step_size_num_test_problems", 0, "review_step_size_control: test problems "
                     "per point (0: the setting's, 1,000 quadratics / 100 MNIST runs).")
flags.DEFINE_integer("step_size_num_validation_problems", 0, "review_step_size_control: "
                     "validation problems for tuning the fixed rates (0: the setting's).")
# The Success-Story Algorithm (review_ssa).
flags.DEFINE_integer("ssa_seeds", 3, "review_ssa: lifelong runs (seeds 0..n-1).")
flags.DEFINE_string("ssa_path", str(PRETRAINED / "review_ssa"), "review_ssa: directory of the "
                    "shipped lifelong runs (seed_<s>/policy.json), evaluated without --retrain.")
flags.DEFINE_integer("ssa_num_test_problems", 1000, "review_ssa: test quadratics.")
flags.DEFINE_integer("ssa_num_validation_problems", 500, "review_ssa: validation quadratics "
                     "(the baselines' learning rates).")
flags.DEFINE_float("ssa_reward_floor", None, "review_ssa with --retrain: a lower bound on one "
                   "problem's reward (e.g. -5; unset: unbounded, the shipped seed_* runs).")
flags.DEFINE_integer("ssa_stream_length", 0, "review_ssa: problems in each lifelong stream with "
                     "--retrain (0: the default setting's).")
# Meta-gradient estimators (issue 18): estimator_bias.
flags.DEFINE_integer("estimator_bias_seeds", 200, "estimator_bias: seeds (each its own 8 test "
                     "quadratics and perturbation noise).")
flags.DEFINE_list("estimator_bias_horizons", ["20", "40", "100", "200"], "estimator_bias: the "
                  "horizons T (multiples of the truncation, 20; 100 is the headline's).")
flags.DEFINE_integer("estimator_bias_population", 64, "estimator_bias: ES / PES particles.")
flags.DEFINE_float("estimator_bias_sigma", 1e-3, "estimator_bias: ES / PES perturbation stddev.")
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


# Settings fields that are not a `--review_<name>` flag.
_DERIVED = ("meta_budget", "lr_grid", "seed", "progress", "command")
_ABLATION_FLAGS = ("review_ablation_problems", "review_ablation_seeds", "review_ablation_path",
                   "review_ablation_num_test_problems", "review_ablation_num_validation_problems")
_MEMORIES_FLAGS = ("review_memories_seeds", "review_memories_path",
                   "review_memories_num_test_problems", "review_memories_num_validation_problems")


def log_stderr(message: str):
  print(message, file=sys.stderr, flush=True)


def _task_h_flags():
  """The flags review_hochreiter2001 reads: every `--review_*` but the ablation's, and --seed."""
  return tuple(f.name for f in FLAGS.get_flags_for_module(__name__)
               if f.name.startswith("review_") and f.name not in _ABLATION_FLAGS + _MEMORIES_FLAGS
               ) + ("seed",)


def task_h_settings():
  """`comparison.Settings` from the flags; raises cli.UsageError for bad values."""
  from l2l_tf_experiments.review import comparison  # pylint: disable=g-import-not-at-top
  cli.require_positive("review_lstm_cells", "review_hidden_units", "review_meta_updates",
                       "review_meta_batch_size", "review_sequence_length",
                       "review_meta_learning_rate", "review_validation_every",
                       "review_l2l_epochs", "review_l2l_horizon", "review_l2l_truncation",
                       "review_l2l_meta_batch_size", "review_l2l_meta_learning_rate",
                       "review_l2l_output_scale", "review_l2l_validation_every",
                       "review_num_test_functions", "review_num_valid_functions",
                       "review_budget", "review_tau_fraction", "review_probe_order",
                       "review_bootstrap")
  if FLAGS.review_l2l_horizon % FLAGS.review_l2l_truncation:
    raise cli.UsageError(f"--review_l2l_truncation={FLAGS.review_l2l_truncation} must divide "
                         f"--review_l2l_horizon={FLAGS.review_l2l_horizon}.")
  if FLAGS.review_cell_clip is not None and not FLAGS.review_cell_clip > 0:
    raise cli.UsageError(f"--review_cell_clip must be positive, got {FLAGS.review_cell_clip}.")
  meta_budget = FLAGS.review_meta_budget or FLAGS.review_sequence_length
  if not 0 < meta_budget <= FLAGS.review_budget:
    raise cli.UsageError(f"--review_meta_budget must be in [1, --review_budget], got "
                         f"{meta_budget}.")
  try:
    grid = tuple(float(v) for v in FLAGS.review_lr_grid)
  except ValueError as e:
    raise cli.UsageError(f"--review_lr_grid must be numbers, got "
                         f"{','.join(FLAGS.review_lr_grid)}.") from e
  if not grid or any(not lr > 0 for lr in grid):
    raise cli.UsageError(f"--review_lr_grid must be positive numbers, got {grid}.")
  values = {f.name: getattr(FLAGS, f"review_{f.name}")
            for f in dataclasses.fields(comparison.Settings) if f.name not in _DERIVED}
  return comparison.Settings(**values, meta_budget=meta_budget, lr_grid=grid, seed=FLAGS.seed,
                             progress=FLAGS.progress, command=cli.command_line())


def write_figure(results: dict, output_dir: Path, plot, table, start: float) -> dict:
  """Writes `<figure>.json` and `.png`, prints the table."""
  from l2l_tf.evaluation import results as results_lib  # pylint: disable=g-import-not-at-top
  results["cpu_seconds"]["process_total"] = time.process_time() - start
  json_path = output_dir / f"{results['figure']}.json"
  results_lib.write_results(results, json_path)
  png_path = plot(results, output_dir / f"{results['figure']}.png")
  print(table(results))
  print(f"wrote {json_path} and {png_path}")
  return results


def run_task_h(output_dir: Path, retrain: bool) -> dict:
  """The figure review_hochreiter2001 (`comparison.evaluate`)."""
  from l2l_tf_experiments.review import comparison, plots, tables  # pylint: disable=g-import-not-at-top
  start = time.process_time()
  settings = task_h_settings()
  results = comparison.evaluate(settings, output_dir, retrain, log_fn=log_stderr)
  return write_figure(results, output_dir, plots.task_h_plot, tables.task_h_table, start)


def run_ablation(output_dir: Path, retrain: bool) -> dict:
  """The figure review_forget_gate (`forget_gate.ablation`), from the shipped optimizers or, with
  `retrain`, from ones meta-trained first (one resumable `l2l_tf.train` process per run)."""
  from l2l_tf_experiments.review import forget_gate, plots, tables  # pylint: disable=g-import-not-at-top
  start = time.process_time()
  cli.require_positive("review_ablation_seeds")
  problems = list(FLAGS.review_ablation_problems)
  unknown = [p for p in problems if p not in forget_gate.SETTINGS]
  if unknown or not problems:
    raise cli.UsageError(f"--review_ablation_problems: unknown {unknown or problems}; choose from "
                         f"{', '.join(forget_gate.SETTINGS)}.")
  seeds = list(range(FLAGS.review_ablation_seeds))
  grid = cli.learning_rate_grid()
  train_dir = output_dir / "train" / "forget_gate"
  if retrain:
    forget_gate.train_all(problems, seeds, train_dir, cli.REPO_ROOT, log_fn=log_stderr)
  dirs = forget_gate.optimizer_dirs(problems, seeds,
                                    train_dir if retrain else FLAGS.review_ablation_path, retrain)
  ablation_lib.check_dirs(dirs, retrain, "review_ablation_path", "ablation optimizer",
                          "the ablation")
  results = forget_gate.ablation(
      dirs, FLAGS.seed, FLAGS.data_dir, grid, FLAGS.review_ablation_num_test_problems,
      FLAGS.review_ablation_num_validation_problems, command=cli.command_line(), log_fn=log_stderr)
  return write_figure(results, output_dir, plots.ablation_plot, tables.ablation_table, start)


def run_memories(problem: str):
  """The figure review_fast_weights_<problem> (`memories.comparison`)."""

  def run(output_dir: Path, retrain: bool) -> dict:
    from l2l_tf_experiments.review import memories, plots, tables  # pylint: disable=g-import-not-at-top
    start = time.process_time()
    cli.require_positive("review_memories_seeds")
    seeds = list(range(FLAGS.review_memories_seeds))
    train_dir = output_dir / "train" / "fast_weights"
    if retrain:
      memories.train_all([problem], seeds, train_dir, cli.REPO_ROOT, log_fn=log_stderr)
    dirs = memories.optimizer_dirs([problem], seeds,
                                   train_dir if retrain else FLAGS.review_memories_path, retrain)
    ablation_lib.check_dirs(dirs, retrain, "review_memories_path", "optimizer", "them")
    results = memories.comparison(
        problem, dirs, FLAGS.seed, FLAGS.data_dir, cli.learning_rate_grid(),
        FLAGS.review_memories_num_test_problems, FLAGS.review_memories_num_validation_problems,
        command=cli.command_line(), log_fn=log_stderr)
    return write_figure(results, output_dir, plots.ablation_plot, tables.memories_table, start)

  return run


def _memories_runs(problem: str) -> tuple:
  """The shipped optimizers a review_fast_weights_* figure evaluates (the default seeds)."""
  from l2l_tf_experiments.review import memories  # pylint: disable=g-import-not-at-top
  seeds = range(FLAGS["review_memories_seeds"].default)
  dirs = memories.optimizer_dirs([problem], seeds, PRETRAINED / "review_fast_weights", False)
  return tuple(str(path) for runs in dirs[problem].values() for path in runs.values())


def _memories_table(results: dict) -> str:
  from l2l_tf_experiments.review import tables  # pylint: disable=g-import-not-at-top
  return tables.memories_table(results)

def _step_size_flags():
  return tuple(f.name for f in FLAGS.get_flags_for_module(__name__)
               if f.name.startswith("step_size_")) + ("seed", "data_dir", "learning_rate_grid",
                                                        "jit_compile")


def _ssa_flags():
  return tuple(f.name for f in FLAGS.get_flags_for_module(__name__)
               if f.name.startswith("ssa_")) + ("seed", "learning_rate_grid")


def run_step_size(output_dir: Path, retrain: bool) -> dict:
  """The figure review_step_size_control (`step_size_figure`), from the shipped controllers or,
  with `retrain`, from ones meta-trained first into `<output_dir>/train/step_size_control/`."""
  from l2l_tf_experiments.review import step_size_figure  # pylint: disable=g-import-not-at-top
  start = time.process_time()
  problems = list(FLAGS.step_size_problems)
  unknown = [p for p in problems if p not in step_size_figure.SETTINGS]
  if unknown or not problems:
    raise cli.UsageError(f"--step_size_problems: unknown {unknown or problems}; choose from "
                         f"{', '.join(step_size_figure.SETTINGS)}.")
  for name in ("step_size_num_test_problems", "step_size_num_validation_problems"):
    if getattr(FLAGS, name) < 0:
      raise cli.UsageError(f"--{name} must be >= 0, got {getattr(FLAGS, name)}.")
  root = Path(FLAGS.step_size_path)
  if retrain:
    root = step_size_figure.train_all(problems, output_dir / "train" / "step_size_control",
                                      FLAGS.data_dir, cli.command_line(), log_fn=log_stderr)
  for problem in problems:
    for base in step_size_figure.BASE_NAMES:
      path = root / step_size_figure.run_name(problem, base) / "policy.json"
      if not path.is_file():
        raise cli.UsageError(f"No controller at {path}; run with --retrain to meta-train it, or "
                             "point --step_size_path at the directory that holds it.")
  results = step_size_figure.run(
      problems, root, FLAGS.seed, FLAGS.data_dir, cli.learning_rate_grid(),
      FLAGS.step_size_num_test_problems, FLAGS.step_size_num_validation_problems,
      command=cli.command_line(), log_fn=log_stderr, jit_compile=FLAGS.jit_compile)
  return write_figure(results, output_dir, step_size_figure.plot, step_size_figure.table, start)


def run_ssa(output_dir: Path, retrain: bool) -> dict:
  """The figure review_ssa (`ssa`), from the shipped lifelong runs or, with `retrain`, from new
  ones (resumable) in `<output_dir>/train/ssa/`."""
  from l2l_tf_experiments.review import ssa  # pylint: disable=g-import-not-at-top
  start = time.process_time()
  cli.require_positive("ssa_seeds", "ssa_num_test_problems", "ssa_num_validation_problems")
  if FLAGS.ssa_stream_length < 0:
    raise cli.UsageError(f"--ssa_stream_length must be >= 0, got {FLAGS.ssa_stream_length}.")
  seeds = list(range(FLAGS.ssa_seeds))
  root = Path(FLAGS.ssa_path)
  if retrain:
    config = ssa.LifelongConfig()
    if FLAGS.ssa_stream_length:
      config = dataclasses.replace(config, num_problems=FLAGS.ssa_stream_length)
    if FLAGS.ssa_reward_floor is not None:
      config = dataclasses.replace(config, reward_floor=FLAGS.ssa_reward_floor)
    root = output_dir / "train" / "ssa"
    for seed in seeds:
      ssa.lifelong_run(dataclasses.replace(config, seed=seed), root / f"seed_{seed}",
                       command=cli.command_line(), log_fn=log_stderr)
  paths = [root / f"seed_{s}" / "policy.json" for s in seeds]
  for path in paths:
    if not path.is_file():
      raise cli.UsageError(f"No SSA run at {path}; run with --retrain to make it, or point "
                           "--ssa_path at the directory that holds it.")
  results = ssa.evaluate(paths, FLAGS.seed, FLAGS.ssa_num_test_problems,
                         FLAGS.ssa_num_validation_problems, cli.learning_rate_grid(),
                         command=cli.command_line(), log_fn=log_stderr)
  return write_figure(results, output_dir, ssa.plot, ssa.table, start)


def _step_size_table(results: dict) -> str:
  from l2l_tf_experiments.review import step_size_figure  # pylint: disable=g-import-not-at-top
  return step_size_figure.table(results)


def _ssa_table(results: dict) -> str:
  from l2l_tf_experiments.review import ssa  # pylint: disable=g-import-not-at-top
  return ssa.table(results)


def _side_by_side(by_figure: dict) -> str:
  from l2l_tf_experiments.review import tables  # pylint: disable=g-import-not-at-top
  return tables.side_by_side_table(by_figure.get(FORGET_GATE, {"problems": {}}),
                                   by_figure.get(HOCHREITER, {"examples_to_tau": {},
                                                              "models": {}}),
                                   by_figure.get(STEP_SIZE), by_figure.get(SSA),
                                   [by_figure[f] for f in (MEMORIES_QUADRATIC, MEMORIES_MNIST)
                                    if f in by_figure])


def _task_h_table(results: dict) -> str:
  from l2l_tf_experiments.review import tables  # pylint: disable=g-import-not-at-top
  return tables.task_h_table(results)


def _ablation_table(results: dict) -> str:
  from l2l_tf_experiments.review import tables  # pylint: disable=g-import-not-at-top
  return tables.ablation_table(results)


def run_estimator_bias(output_dir: Path, retrain: bool) -> dict:
  """The figure estimator_bias (`estimator_bias`). Its tiny LSTM is meta-trained in the run
  (resumable, about half a CPU-minute), so `retrain` changes nothing."""
  del retrain
  from l2l_tf_experiments.review import estimator_bias  # pylint: disable=g-import-not-at-top
  try:
    horizons = tuple(int(h) for h in FLAGS.estimator_bias_horizons)
    settings = estimator_bias.Settings(
        seeds=FLAGS.estimator_bias_seeds, horizons=horizons,
        horizon=100 if 100 in horizons else max(horizons),
        population=FLAGS.estimator_bias_population, sigma=FLAGS.estimator_bias_sigma,
        seed=FLAGS.seed)
    settings.validate()
  except ValueError as e:
    raise cli.UsageError(f"estimator_bias: {e}") from e
  results = estimator_bias.run(output_dir, settings, log_fn=log_stderr)
  print(estimator_bias.table(results))
  return results


def _estimator_bias_table(results: dict) -> str:
  from l2l_tf_experiments.review import estimator_bias  # pylint: disable=g-import-not-at-top
  return estimator_bias.table(results)


def figures():
  """The review's figures (the plugin interface of `l2l_tf.evaluation.figures`)."""
  return [
      figures_lib.Figure(
          HOCHREITER, run_task_h, table=_task_h_table, flags=_task_h_flags(),
          tags=("review",), description="Hochreiter, Younger & Conwell (2001): a frozen "
          "meta-LSTM against online learners on task H, in examples to tau."),
      figures_lib.Figure(
          FORGET_GATE, run_ablation, table=_ablation_table, datasets=("mnist",),
          flags=_ABLATION_FLAGS + ("seed", "data_dir", "learning_rate_grid"),
          tags=("review", "mnist"), description="The forget-gate ablation of the L2L optimizer "
          "(5 seeds each) on the quadratic, MNIST and the ReLU MLP, at 1x/2x/4x its horizon."),
      figures_lib.Figure(
          MEMORIES_QUADRATIC, run_memories("quadratic"), table=_memories_table,
          requires=_memories_runs("quadratic"),
          flags=_MEMORIES_FLAGS + ("seed", "learning_rate_grid"), tags=("review",),
          description="Which memory makes the better optimizer (equal budget, 3 seeds each): "
          "LSTM, fast weights (additive, delta), SRWM, NTM-L-BFGS on 10-d quadratics."),
      figures_lib.Figure(
          MEMORIES_MNIST, run_memories("mnist"), table=_memories_table, datasets=("mnist",),
          requires=_memories_runs("mnist"),
          flags=_MEMORIES_FLAGS + ("seed", "data_dir", "learning_rate_grid"),
          tags=("review", "mnist"), description="Which memory makes the better optimizer (equal "
          "budget, 3 seeds each) on the MNIST MLP, run to 200 steps."),
      figures_lib.Figure(
          STEP_SIZE, run_step_size, table=_step_size_table, datasets=("mnist",),
          flags=_step_size_flags(), tags=("review", "mnist"),
          flagfile=figures_lib.FLAGS_DIR / "review" / "review_step_size_control.flags",
          description="Daniel, Taylor & Nowozin (2016): a REPS-trained step-size controller for "
          "SGD / RMSprop against fixed rates over a sweep of initial learning rates, and the "
          "LSTM on a rescaled objective."),
      figures_lib.Figure(
          SSA, run_ssa, table=_ssa_table, flags=_ssa_flags(), tags=("review",),
          description="The Success-Story Algorithm: a lifelong, reset-free learner of the base "
          "optimizer's hyper-parameters over a stream of quadratics; its frozen policy against "
          "tuned baselines and the LSTM."),
      figures_lib.Figure(
          "estimator_bias", run_estimator_bias, table=_estimator_bias_table,
          flags=tuple(f.name for f in FLAGS.get_flags_for_module(__name__)
                      if f.name.startswith("estimator_bias_")) + ("seed",),
          tags=("review", "estimators"),
          description="Issue 18: the error of truncated BPTT (first- and second-order), ES and "
          "PES against the exact whole-run meta-gradient on 10-d quadratics (200 seeds), and how "
          "it grows with the horizon."),
  ]


def summaries():
  """The review's side-by-side table, from both figures' results."""
  return [figures_lib.Summary("The review's side-by-side table",
                              (FORGET_GATE, HOCHREITER, STEP_SIZE, SSA, MEMORIES_QUADRATIC,
                               MEMORIES_MNIST), _side_by_side)]
