"""One comparison: learned optimizers against learning-rate-tuned baselines on the same problems.

Baselines are tuned on validation problems (split "valid"); every optimizer is then run on the same
test problems (split "test"), which nothing was tuned or selected on.
"""

import time
from typing import Mapping, Optional, Sequence

from l2l_tf.evaluation import curves
from l2l_tf.evaluation import tuning
from l2l_tf.optimizers import baselines as baselines_lib
from l2l_tf.problems import base as problems_base
from l2l_tf import errors


def compare(problem, learned: Mapping[str, object], baseline_names: Sequence[str],
            num_steps: int, num_test_problems: int, num_validation_problems: int, seed: int,
            figure: str, grid: Sequence[float] = tuning.DEFAULT_LEARNING_RATE_GRID,
            chunk_size: int = 0, jit_compile: bool = False, progress: bool = True,
            extra: Optional[dict] = None, validation_problem=None) -> dict:
  """Returns a results dict (schema in `l2l_tf.evaluation.results`).

  Args:
    problem: the optimizee family of the test problems (for data sets: on the test images).
    learned: legend name -> learned optimizer (meta-parameters already loaded).
    baseline_names: among "sgd", "rmsprop", "adam", "nag"; reported under the paper's legend names.
    num_steps: optimizee steps T of every run.
    num_test_problems, num_validation_problems: N of each split.
    seed: the problems of both splits are drawn from it.
    figure: the figure name recorded in the results.
    grid: learning rates tried for each baseline.
    chunk_size, jit_compile: passed to `curves.evaluate_losses`.
    progress: show a progress bar.
    extra: more keys for the results dict.
    validation_problem: the family the baselines are tuned on (default: `problem`); for data sets,
      the same optimizee on the validation images.
  """
  unknown = [b for b in baseline_names if b not in baselines_lib.BASELINES]
  if unknown:
    raise errors.ConfigError(f"Unknown baseline(s) {unknown}; choose from "
                             f"{', '.join(baselines_lib.BASELINES)}.")
  test = problem.sample(num_test_problems, problems_base.split_seed(seed, "test"))
  validation_problem = validation_problem or problem
  valid = validation_problem.sample(num_validation_problems,
                                    problems_base.split_seed(seed, "valid"))
  total = num_test_problems * (len(learned) + len(baseline_names))
  total += num_validation_problems * len(baseline_names) * len(grid)
  bar = None
  if progress:
    from tqdm import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=total, desc=f"evaluating {figure}", unit="run", dynamic_ncols=True)
  tick = bar.update if bar is not None else None

  results = {"figure": figure, "steps": list(range(num_steps + 1)),
             "num_test_problems": int(num_test_problems), "seed": int(seed),
             "num_validation_problems": int(num_validation_problems),
             "problem": problem.get_config(), "optimizers": {}, "timing_cpu_s": {}}
  for name, optimizer in learned.items():
    start = time.process_time()
    losses = curves.evaluate_losses(problem, optimizer, *test, num_steps, chunk_size,
                                    jit_compile, tick)
    results["optimizers"][name] = dict(curves.summarize_losses(losses), learning_rate=None,
                                       final_losses=losses[:, -1].tolist())
    results["timing_cpu_s"][name] = time.process_time() - start
  for key in baseline_names:
    optimizer = baselines_lib.BASELINES[key]()
    start = time.process_time()
    best, scores = tuning.tune_learning_rate(
        validation_problem, optimizer, *valid, num_steps, grid, chunk_size, jit_compile)
    if tick:
      tick(num_validation_problems * len(grid))
    losses = curves.evaluate_losses(problem, optimizer, *test, num_steps, chunk_size,
                                    jit_compile, tick)
    name = baselines_lib.LEGEND_NAMES[key]
    results["optimizers"][name] = dict(
        curves.summarize_losses(losses), learning_rate=best, final_losses=losses[:, -1].tolist(),
        validation_final_loss={f"{lr:g}": s for lr, s in scores.items()},
        learning_rate_at_grid_edge=best in (min(grid), max(grid)))
    results["timing_cpu_s"][name] = time.process_time() - start
  if bar is not None:
    bar.close()
  results.update(extra or {})
  return results
