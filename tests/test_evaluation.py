"""Evaluation: confidence intervals, divergence, tuning on validation only, results, tables and
plots."""

import json
import math

import numpy as np
import pytest

from l2l_tf import evaluation, optimizers, problems
from l2l_tf.evaluation import compare, curves, plots, results as results_lib, stats, tables, tuning
from l2l_tf.meta import unroll


def test_summary_mean_and_ci_against_numpy():
  rng = np.random.default_rng(0)
  losses = rng.lognormal(size=(200, 6))
  s = curves.summarize_losses(losses)
  mean = losses.mean(0)
  half = 1.96 * losses.std(0, ddof=1) / np.sqrt(200)
  np.testing.assert_allclose(s["mean"], mean)
  np.testing.assert_allclose(s["ci95_low"], mean - half)
  np.testing.assert_allclose(s["ci95_high"], mean + half)
  assert s["divergence_rate"] == 0.0


def test_diverged_runs_are_counted_not_averaged():
  losses = np.ones((4, 3))
  losses[1, 2] = np.inf
  losses[3, 1] = np.nan
  s = curves.summarize_losses(losses)
  assert s["divergence_rate"] == 0.5
  assert s["mean"] == [1.0, 1.0, 1.0]


def test_tuning_uses_only_the_given_validation_problems():
  problem = problems.Quadratic(num_dims=4)
  valid = problem.sample(16, problems.split_seed(0, "valid"))
  opt = optimizers.SGD()
  grid = (1e-4, 1e-3, 1e-2, 1e-1, 10.0)
  best, scores = tuning.tune_learning_rate(problem, opt, *valid, 30, grid)
  assert float(opt.learning_rate.numpy()) == best
  # Recompute every score independently on the same validation problems.
  for lr in grid:
    opt.learning_rate.assign(lr)
    final = curves.evaluate_losses(problem, opt, *valid, 30)
    expected = final[:, -1].mean() if np.all(np.isfinite(final)) else math.inf
    assert scores[lr] == pytest.approx(expected, rel=1e-6)
  assert scores[10.0] == math.inf  # SGD at lr 10 diverges on these quadratics.
  assert best == min(grid, key=scores.get)


def test_compare_tunes_the_baselines_on_validation_problems_only(monkeypatch):
  # The promise of a figure: every baseline's learning rate is chosen on the validation split,
  # never on the test problems it is then reported on.
  problem = problems.Quadratic(num_dims=3)
  tuned_on = []
  real_tune = tuning.tune_learning_rate

  def spy(tune_problem, optimizer, instance, params, *args, **kwargs):
    tuned_on.append(np.asarray(params[0]))
    return real_tune(tune_problem, optimizer, instance, params, *args, **kwargs)

  monkeypatch.setattr(tuning, "tune_learning_rate", spy)
  compare.compare(problem, {}, ["sgd", "adam"], num_steps=3, num_test_problems=5,
                  num_validation_problems=4, seed=7, figure="t", grid=(0.01, 0.1),
                  progress=False)
  _, valid_params = problem.sample(4, problems.split_seed(7, "valid"))
  _, test_params = problem.sample(5, problems.split_seed(7, "test"))
  assert len(tuned_on) == 2
  for params in tuned_on:
    np.testing.assert_array_equal(params, valid_params[0].numpy())
    assert not any(np.array_equal(row, t) for row in params for t in test_params[0].numpy())


def test_search_learning_rate_takes_the_smallest_score_then_the_smaller_rate():
  opt = optimizers.SGD()
  seen = []
  score_of = {0.1: (2.0, 5.0), 0.3: (1.0, 9.0), 1.0: (1.0, 9.0), 3.0: (1.0, math.inf)}

  def score():
    seen.append(float(opt.learning_rate.numpy()))
    return score_of[round(seen[-1], 6)]

  best, scores = tuning.search_learning_rate(opt, (0.1, 1.0, 0.3, 3.0), score,
                                             diverged=lambda s: not math.isfinite(s[1]))
  assert seen == pytest.approx([0.1, 1.0, 0.3, 3.0])  # Each rate set before it is scored.
  assert best == 0.3 and float(opt.learning_rate.numpy()) == pytest.approx(0.3)
  assert scores == {0.1: (2.0, 5.0), 1.0: (1.0, 9.0), 0.3: (1.0, 9.0), 3.0: (1.0, math.inf)}
  with pytest.raises(RuntimeError, match="diverged at every learning rate"):
    tuning.search_learning_rate(opt, (0.1, 1.0), lambda: math.inf)


def test_run_in_chunks_concatenates_arrays_and_tuples_in_order():
  instance = {"a": np.arange(7.0)[:, None]}
  params = [np.arange(7.0) * 10]
  done = []
  fn = lambda i, p: (i["a"][:, 0] + p[0], np.stack([p[0], p[0]], axis=1))
  whole = curves.run_in_chunks(fn, instance, params)
  chunked = curves.run_in_chunks(fn, instance, params, chunk_size=3, progress=done.append)
  assert done == [3, 3, 1]
  for a, b in zip(whole, chunked):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_array_equal(chunked[0], np.arange(7.0) * 11)
  assert chunked[1].shape == (7, 2)
  single = curves.run_in_chunks(lambda i, p: p[0] * 2, instance, params, chunk_size=2)
  np.testing.assert_array_equal(single, np.arange(7.0) * 20)


@pytest.mark.parametrize("df,expected", [(1, 12.7062), (2, 4.3027), (4, 2.7764), (9, 2.2622),
                                         (30, 2.0423), (1000, 1.9623)])
def test_t_quantile_matches_tables(df, expected):
  assert stats.t_quantile_975(df) == pytest.approx(expected, abs=2e-4)


def test_mean_ci_over_seeds_counts_non_finite_seeds():
  e = stats.mean_ci_over_seeds([1.0, 2.0, 3.0, math.inf])
  assert e["mean"] == pytest.approx(2.0) and e["non_finite_seeds"] == 1 and e["num_seeds"] == 4
  half = stats.t_quantile_975(2) * 1.0 / math.sqrt(3)
  assert (e["ci95_low"], e["ci95_high"]) == pytest.approx((2 - half, 2 + half))
  assert math.isnan(stats.mean_ci_over_seeds([math.nan])["mean"])
  assert stats.mean_ci_over_seeds([2.0])["ci95_high"] == math.inf  # One seed: no CI.


def test_mean_ci_of_losses_is_clipped_at_zero():
  e = stats.mean_ci_over_seeds([0.1, 0.1, 30.0], non_negative=True)
  assert e["ci95_low"] == 0.0 and e["ci95_high"] > 30
  assert stats.mean_ci_over_seeds([0.1, 0.1, 30.0])["ci95_low"] < 0


def test_half_width_is_the_normal_ci_of_the_mean():
  values = np.array([[1.0, 4.0], [2.0, 4.0], [6.0, 4.0]])
  np.testing.assert_allclose(stats.half_width(values), [1.96 * np.sqrt(7) / np.sqrt(3), 0.0])
  assert stats.half_width([1.0, 3.0], quantile=2.0) == pytest.approx(2.0)


def test_table_helpers_format_rows_and_cis():
  assert tables.header(["a", "b"]) == ["| a | b |", "|---|---|"]
  assert tables.row(["x", 3, 0.5]) == "| x | 3 | 0.5 |"
  assert tables.ci_cell(0.123456, 0.1, 0.15) == "0.1235 [0.1, 0.15]"
  assert tables.ci_cell(24.5, 23, 26, "g") == "24.5 [23, 26]"


def test_chunked_evaluation_equals_whole():
  problem = problems.Quadratic(num_dims=3)
  instance, params = problem.sample(10, problems.split_seed(0, "test"))
  opt = optimizers.CoordinatewiseLSTM(hidden_sizes=(4,))
  whole = curves.evaluate_losses(problem, opt, instance, params, 7)
  chunked = curves.evaluate_losses(problem, opt, instance, params, 7, chunk_size=3)
  np.testing.assert_allclose(whole, chunked, rtol=1e-5)
  assert whole.shape == (10, 8)


def test_compare_writes_schema_and_plot(tmp_path):
  problem = problems.Quadratic(num_dims=3)
  learned = {"LSTM": optimizers.CoordinatewiseLSTM(hidden_sizes=(4,))}
  res = compare.compare(problem, learned, ["sgd", "adam"], num_steps=5, num_test_problems=6,
                        num_validation_problems=4, seed=3, figure="tiny",
                        grid=(0.01, 0.1), progress=False)
  path = results_lib.write_results(res, tmp_path / "tiny.json")
  loaded = json.loads(path.read_text())
  assert loaded["steps"] == list(range(6))
  assert loaded["num_test_problems"] == 6 and loaded["seed"] == 3
  assert set(loaded["optimizers"]) == {"LSTM", "SGD", "Adam"}
  assert loaded["optimizers"]["LSTM"]["learning_rate"] is None
  assert loaded["optimizers"]["SGD"]["learning_rate"] in (0.01, 0.1)
  for curve in loaded["optimizers"].values():
    assert len(curve["mean"]) == 6
    assert all(lo <= m <= hi for lo, m, hi in
               zip(curve["ci95_low"], curve["mean"], curve["ci95_high"]))
  png = evaluation.plot_results(loaded, tmp_path / "tiny.png")
  assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  table = tables.final_step_table(loaded)
  assert "LSTM" in table and "Adam" in table


def test_legend_names_a_tuned_rate_and_the_share_of_runs_that_diverged():
  assert plots.curve_label("LSTM", {"learning_rate": None}) == "LSTM"
  assert plots.curve_label("Adam", {"learning_rate": 0.03, "divergence_rate": 0.0}) == "Adam (lr=0.03)"
  assert (plots.curve_label("NAG", {"learning_rate": 3.0, "divergence_rate": 0.16})
          == "NAG (lr=3; 16% diverged, not in the mean)")
  assert plots.curve_label("LSTM", {"learning_rate": None, "divergence_rate": 0.5}) == (
      "LSTM (50% diverged, not in the mean)")


def test_compare_rejects_unknown_baseline():
  with pytest.raises(ValueError, match="Unknown baseline"):
    compare.compare(problems.Square(), {}, ["adagrad"], 2, 2, 2, 0, "x", progress=False)


def test_results_schema_is_enforced(tmp_path):
  with pytest.raises(ValueError, match="lack"):
    results_lib.write_results({"figure": "x"}, tmp_path / "x.json")


def test_report_table_ratio_and_verdict():
  curve = lambda values, lr: {"mean": values, "ci95_low": values, "ci95_high": values,
                              "learning_rate": lr}
  res = {"figure": "quadratic", "steps": [0, 1, 2], "num_test_problems": 3, "seed": 0,
         "optimizers": {"LSTM": curve([4.0, 3.0, 1.0], None),
                        "Adam": curve([4.0, 2.0, 2.0], 0.1), "SGD": curve([4.0, 3.5, 4.0], 0.01)}}
  table = tables.figure_table(res)
  assert "1 / 2 = **0.50**" in table
  assert "paper: 0.04 / 0.052 = 0.77" in table
  assert "**no** (not below at 1 steps, first at step 1)" in table
  relu = dict(res, figure="mnist_relu")
  summary = tables.paper_summary([res, relu]).splitlines()
  assert len(summary) == 4
  assert summary[2].startswith("| quadratic (step 2) | LSTM | 1 [1, 1] | Adam (lr 0.1) 2 [2, 2] | "
                               "**0.50** | 0.04 / 0.052 = 0.77 | <= 0.77 | yes |")
  assert summary[3].endswith("| - | no: ours does not fail |")
  # A second learned optimizer gets its own ratio and verdict, without the paper's ratio.
  two = dict(res, optimizers=dict(res["optimizers"], **{"LSTM v2": curve([4.0, 1.0, 0.5], None)}))
  # In the summary, LSTM v2's aim is 10% below the paper's ratio (0.77 * 0.9 = 0.69; 0.25 meets
  # it), and at most 1 where the paper's fails (ReLU: 0.25 meets it); an aimless one gets no row.
  three = dict(two, optimizers=dict(two["optimizers"], Other=curve([4.0, 1.0, 5.0], None)))
  summary = tables.paper_summary([three, dict(three, figure="mnist_relu")]).splitlines()
  assert len(summary) == 6 and not any("| Other |" in line for line in summary)
  assert summary[3].startswith("| quadratic (step 2) | LSTM v2 | 0.5 [0.5, 0.5] |")
  assert summary[3].endswith("| **0.25** | 0.04 / 0.052 = 0.77 | <= 0.69 | yes |")
  assert summary[5].endswith("| **0.25** | 2.3 / 0.35 = 6.57 | <= 1.00 | yes |")
  worse = dict(two, optimizers=dict(two["optimizers"], **{"LSTM v2": curve([4.0, 1.0, 1.5], None)}))
  assert tables.paper_summary([worse]).splitlines()[3].endswith("| <= 0.69 | **no** |")
  lines = tables.figure_table(two).splitlines()
  assert "LSTM v2 / best baseline (Adam) at step 2: 0.5 / 2 = **0.25**." in lines
  assert "LSTM v2 below every tuned baseline at every step 1..2: **yes**." in lines
  assert sum("paper:" in line for line in lines) == 1
  assert not any("edge of the learning-rate grid" in line for line in lines)
  # A baseline that diverged on some test problems ranks below every one that did not, however
  # low its mean over the others; the learned optimizer is compared with it pairwise where it did
  # not diverge.
  nag = dict(curve([4.0, 1.0, 0.5], 0.3), divergence_rate=0.5, final_losses=[0.5, math.nan])
  lstm = dict(res["optimizers"]["LSTM"], final_losses=[0.75, 1.25])
  diverging = dict(res, optimizers=dict(res["optimizers"], LSTM=lstm, NAG=nag))
  assert tables.best_baseline(diverging["optimizers"])[0] == "Adam"
  lines = tables.figure_table(diverging).splitlines()
  assert ("NAG (lr 0.3) diverged on 50.0% of the test problems: its mean is over the others, so "
          "it ranks below every baseline that did not diverge.") in lines
  assert any(line.startswith("LSTM - NAG at step 2, paired over the 1 test problems where NAG did "
                             "not diverge: +0.25 ") for line in lines)
  assert "LSTM / best baseline (Adam) at step 2: 1 / 2 = **0.50**; paper: 0.04 / 0.052 = 0.77." in lines
  assert "LSTM below every tuned baseline at every step 1..2: **no** (not below at 1 steps, first at step 1)." in lines
  assert not any("diverged on" in line for line in tables.figure_table(res).splitlines())
  # Paired against every baseline, over the test problems where neither diverged.
  diverging["optimizers"]["Adam"] = dict(diverging["optimizers"]["Adam"], final_losses=[1.0, 2.0])
  paired = tables.paired_against_baselines(diverging).splitlines()
  assert paired == [
      "LSTM - Adam (lr 0.1) at step 2, paired over 2 test problems: -0.5 [-0.99, -0.01]: LSTM is "
      "**lower than** Adam.",
      "LSTM - NAG (lr 0.3) at step 2, paired over 1 test problems: +0.25 [-inf, +inf]: LSTM is "
      "**not distinguishable from** NAG."]
  # Three learned optimizers: the pair the figure's table leaves out (both against the first) too.
  three = dict(diverging, optimizers={
      "LSTM": lstm, "A": dict(lstm, final_losses=[1.0, 2.0]),
      "B": dict(lstm, final_losses=[0.5, 1.5]), "Adam": diverging["optimizers"]["Adam"]})
  paired = tables.paired_against_baselines(three).splitlines()
  assert paired[0] == ("B - A at step 2, paired over 2 test problems: -0.5 [-0.5, -0.5]: B is "
                       "**lower than** A."), paired
  assert len(paired) == 4 and not any(line.startswith(("A - LSTM", "B - LSTM")) for line in paired)
  # A baseline tuned at the edge of its grid is named, with what to do.
  edge = dict(res, optimizers=dict(res["optimizers"], SGD=dict(
      res["optimizers"]["SGD"], learning_rate_at_grid_edge=True)))
  assert ("Tuned at the edge of the learning-rate grid: SGD (0.01); a wider "
          "`--learning_rate_grid` might tune it better.") in tables.figure_table(edge).splitlines()


def test_ci_of_non_negative_losses_stays_non_negative():
  losses = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1e-3]])
  s = curves.summarize_losses(losses)
  assert s["ci95_low"][1] == 0.0 and s["ci95_high"][1] > 0
  signed = curves.summarize_losses(-losses)
  assert signed["ci95_low"][1] < -1e-3 / 3


@pytest.mark.parametrize("jit_compile", [False, True])
def test_trajectory_functions_trace_once_over_problems_and_a_learning_rate_search(jit_compile):
  """One compiled trajectory per (problem, optimizer, steps, XLA) serves new problems and, as the
  learning rate lives in a variable, a whole learning-rate search: it traces once."""
  rng = np.random.RandomState(0)
  mlp = problems.MLPClassifier(rng.randint(0, 256, (64, 12)).astype(np.uint8),
                               rng.randint(0, 10, 64), hidden_sizes=(5,), batch_size=4)
  learned = optimizers.CoordinatewiseLSTM(hidden_sizes=(4,), preprocessing="log_and_sign",
                                          output_scale=0.1)
  adam = optimizers.Adam(0.01)
  for seed in range(3):
    instance, params = mlp.sample(2, problems.split_seed(0, "test", seed))
    for opt in (learned, adam):
      curves.evaluate_losses(mlp, opt, instance, params, 3, jit_compile=jit_compile)
  valid = mlp.sample(2, problems.split_seed(0, "valid"))
  tuning.tune_learning_rate(mlp, adam, *valid, 3, (1e-3, 1e-2, 1e-1), jit_compile=jit_compile)
  for opt in (learned, adam):
    run = unroll.make_trajectory_fn(mlp, opt, 3, jit_compile=jit_compile)
    assert run.experimental_get_tracing_count() == 1, type(opt).__name__


def test_chunk_cache_resumes_an_evaluation_and_keys_on_everything_it_depends_on(tmp_path):
  """A killed figure resumes from its finished chunks: cached chunks are read back (not
  recomputed), and another learning rate, optimizer or problem set is another key."""
  from l2l_tf import optimizers, problems  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import curves  # pylint: disable=g-import-not-at-top
  from l2l_tf.problems import base  # pylint: disable=g-import-not-at-top
  problem = problems.Quadratic(num_dims=3)
  instance, params = problem.sample(6, base.split_seed(0, "test"))
  sgd = optimizers.SGD(0.01)
  plain = curves.evaluate_losses(problem, sgd, instance, params, 5, chunk_size=4)
  cache = tmp_path / "cache"
  with curves.chunk_cache(cache, remove_on_success=False):
    first = curves.evaluate_losses(problem, sgd, instance, params, 5, chunk_size=4)
    files = sorted(cache.glob("*.npy"))
    assert len(files) == 2  # Two chunks (4 + 2 problems).
    np.testing.assert_array_equal(first, plain)
    # Tamper with a cached chunk: it is what a resumed run reads back.
    np.save(files[0], np.full_like(np.load(files[0]), 7.0))
    again = curves.evaluate_losses(problem, sgd, instance, params, 5, chunk_size=4)
    assert (again == 7.0).sum() == np.load(files[0]).size
    sgd.learning_rate.assign(0.02)  # Another rate: new chunks.
    curves.evaluate_losses(problem, sgd, instance, params, 5, chunk_size=4)
    curves.evaluate_losses(problem, optimizers.Adam(0.01), instance, params, 5, chunk_size=4)
    other = problem.sample(6, base.split_seed(1, "test"))
    curves.evaluate_losses(problem, sgd, *other, 5, chunk_size=4)
    assert len(list(cache.glob("*.npy"))) == 8
    (cache / "broken.npy").write_bytes(b"")  # Unrelated debris does not matter.
  assert curves.active_cache() is None
  with curves.chunk_cache(cache):
    assert curves.active_cache() == cache  # What an inner evaluation reuses, not reopens.
  assert not cache.exists()  # Removed once the block succeeds.
  assert curves.active_cache() is None
