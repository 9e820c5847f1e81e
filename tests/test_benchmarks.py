"""The benchmark (`benchmarks/`) runs end to end at tiny sizes, its variants compute the library's
updates and meta-gradients, and its tables print the committed numbers.

No timing is asserted: these machines are shared and noisy. The tiny run checks that every JSON
key the docs rely on is there with a positive, finite value, so that the benchmark cannot rot.
"""

import ast
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import flops, scaling, tables, variants, workloads
from l2l_tf import problems

# The meta-gradient tests call the trainer's truncation loss, as the benchmark does.
# pylint: disable=protected-access

REPO = Path(__file__).resolve().parent.parent
RECORD_KEYS = ("cpu_s_median", "wall_s_median", "threads", "floor_s", "ratio_to_floor",
               "peak_rss_mb")


def run_bench(*args, check=True):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-m", "benchmarks.run", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=900)
  if check:
    assert proc.returncode == 0, proc.stderr[-4000:]
  return proc


def positive(value):
  return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def check_record(record, threads):
  for key in RECORD_KEYS:
    assert positive(record[key]), (key, record[key])
  assert record["threads"] == threads
  assert positive(record["flops"]) and positive(record["matmul_rate_gflops"])
  assert record["cpu_s_samples"] and all(positive(t) for t in record["wall_s_samples"])


def test_tiny_run_writes_every_key(tmp_path):
  out = tmp_path / "bench.json"
  variants_flag = ("library", "library_xla", "feature_major", "fused_cell")
  proc = run_bench("--tiny", "--scaling", "--jobs=2", f"--variants={','.join(variants_flag)}",
                   f"--output={out}")
  result = json.loads(out.read_text())
  assert result["errors"] == []
  assert result["command"].startswith("python -m benchmarks.run --tiny")
  assert result["machine"]["cpu_count"] >= 1 and result["machine"]["tensorflow"]
  for key in ("quadratic_meta_step", "mnist_meta_step", "quadratic_eval_100", "mnist_eval_100"):
    assert set(result[key]) == {"1", "2"}, key
    for threads, record in result[key].items():
      check_record(record, int(threads))
      assert record["tracing_count"] == 1, (key, threads)
  for record in result["mnist_eval_100"].values():
    for sub in ("adam", "learned_xla", "adam_xla"):
      assert positive(record[sub]["cpu_s_median"]) and positive(record[sub]["floor_s"])
    assert positive(record["learned_to_adam_cpu"]) and positive(record["learned_to_adam_cpu_xla"])
    assert positive(record["peak_rss_mb_with_xla"])
  for problem in ("quadratic", "mnist"):
    measured = result["variants"][problem]
    assert set(measured["meta_step"]) == set(variants_flag), measured["skipped"]
    assert set(measured["eval"]) == set(variants_flag), measured["skipped"]
    for record in measured["meta_step"].values():
      assert positive(record["cpu_s_median"]) and positive(record["speedup_vs_library"])
      assert record["max_abs_diff_meta_loss"] < 1e-3 * max(1.0, abs(record["meta_loss"]))
    for record in measured["eval"].values():
      assert record["max_rel_diff_losses"] < 1e-3
    profile = result["profile"][problem]
    assert positive(profile["step_s"]) and positive(profile["ops_per_step"])
    assert profile["top_op_types"] and positive(profile["top_op_types"][0]["s_per_step"])
  assert positive(result["profile"]["mnist_feature_major"]["step_s"])
  evaluation = result["profile"]["mnist_eval"]
  assert evaluation["target"] == "eval" and positive(evaluation["step_s"])
  assert any(row["name"] == "Tanh" for row in evaluation["top_op_types"])
  assert "Profile, mnist 100-step evaluation, no XLA (1 thread)" in proc.stdout
  check = result["profile"]["mnist"]["flop_check"]
  assert check["graph_to_analytic"] == pytest.approx(1.0, rel=0.01)
  points = result["scaling"]["points"]
  for sweep in ("coordinates", "truncation", "checkpoint"):
    for record in points[sweep]:
      assert positive(record["cpu_s_median"]) and positive(record["peak_rss_mb"]), record
  assert {r["checkpoint"]["impl"] for r in points["checkpoint"] if r["checkpoint"]} == {
      "control_deps", "recompute_grad"}
  assert points["checkpoint_probe"][0]["works"] is False
  assert math.isfinite(result["scaling"]["truncation_slope_cpu"])
  # Checkpointing changes memory, not the meta-gradient: one Adam step lands on the same weights.
  sums = {json.dumps(r["checkpoint"]): r["weights_abs_sum_after_first_step"]
          for r in points["checkpoint"]}
  assert max(sums.values()) == pytest.approx(min(sums.values()), rel=1e-5), sums
  assert "| mnist meta-step | 1 |" in proc.stdout
  again = run_bench(f"--table_from={out}")
  assert again.stdout.strip() == proc.stdout.split("wrote ")[0].strip()


def test_bad_flags_are_one_line_errors(tmp_path):
  for args, message in [([], "--output is required"),
                        ([f"--output={tmp_path / 'x.json'}", "--suites=main,bogus"],
                         "Unknown --suites"),
                        ([f"--output={tmp_path / 'x.json'}", "--variants=library,bogus"],
                         "Unknown --variants"),
                        ([f"--output={tmp_path / 'x.json'}", "--hidden_sizes=4"],
                         "--hidden_sizes does not apply")]:
    proc = run_bench(*args, check=False)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def _section(path, heading):
  """The lines of a Markdown file from `heading` to the next heading of the same level."""
  lines = path.read_text().splitlines()
  start = lines.index(heading)
  level = heading.split(" ")[0] + " "
  end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith(level)), len(lines))
  return lines[start:end]


@pytest.mark.parametrize("json_file,doc,heading,first_cells", [
    ("docs/bench_main.json", "README.md", "## Performance", ("| quadratic ", "| mnist ")),
    ("docs/bench_variants.json", "docs/performance.md",
     "## Second round: evaluation without XLA, the meta-step once more",
     ("| library", "| feature_major", "| tanh_form", "| xla_cell")),
    ("docs/bench_scale_out.json", "README.md",
     "## Scale out: meta-training on several processes, machines or GPUs", ("| 1 |", "| 2 |")),
])
def test_tables_print_the_committed_numbers(json_file, doc, heading, first_cells):
  """The docs' tables are what `--table_from` prints for the committed JSON files."""
  printed = tables.markdown_tables(json.loads((REPO / json_file).read_text())).splitlines()
  rows = [line for line in _section(REPO / doc, heading) if line.startswith(first_cells)]
  assert len(rows) >= 4
  assert [row for row in rows if row not in printed] == []


def test_the_library_never_imports_benchmarks():
  for path in sorted((REPO / "l2l_tf").rglob("*.py")):
    for node in ast.walk(ast.parse(path.read_text())):
      names = ([a.name for a in node.names] if isinstance(node, ast.Import)
               else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
      assert not [n for n in names if n.split(".")[0] == "benchmarks"], path


def _tiny_settings(**overrides):
  settings = {"quadratic_dims": 3, "synthetic_data": True, "mnist_batch_size": 4,
              "data_dir": None, "optimizer_path": None, "seed": 0}
  settings.update(overrides)
  return settings


def _variant(name):
  return variants.make_variant(workloads.make_optimizer("mnist", _tiny_settings()), name)


def test_variant_steps_match_the_library_step():
  problem = workloads.make_problem("mnist", _tiny_settings())
  instance, params = problem.sample(1, problems.split_seed(0, "train", 0))
  with tf.GradientTape() as tape:
    tape.watch(params)
    loss = tf.reduce_sum(problem.loss(params, instance, 0))
  grads = tape.gradient(loss, params)
  library = _variant("library")
  expected, state = library.step(grads, library.initial_state(params))
  expected, _ = library.step(grads, state)  # Second step: a non-zero recurrent state.
  for name in ["feature_major"] + list(variants.VARIANT_CLASSES):
    variant = _variant(name)
    updates, state = variant.step(grads, variant.initial_state(params))
    updates, _ = variant.step(grads, state)
    for got, want in zip(updates, expected):
      np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-4, atol=1e-7, err_msg=name)


def _loss_and_meta_gradient(trainer, params, state, instance):
  @tf.function
  def loss_and_grads(params, state, instance):
    with tf.GradientTape() as tape:
      loss, _, _ = trainer._truncation_loss(params, state, instance, tf.constant(0))
    return loss, tape.gradient(loss, trainer.meta_vars)

  return loss_and_grads(params, state, instance)


def _assert_same_meta_gradient(got, want, rtol):
  (loss, grads), (got_loss, got_grads) = want, got
  np.testing.assert_allclose(got_loss.numpy(), loss.numpy(), rtol=1e-5)
  assert max(float(tf.reduce_max(tf.abs(g))) for g in grads) > 1e-6  # Not a vacuous comparison.
  for g, w in zip(got_grads, grads):
    np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=rtol, atol=1e-6)


@pytest.mark.parametrize("name", ["fused_cell", "xla_cell", "tanh_form", "feature_major",
                                  "feature_major_tanh"])
def test_variant_meta_gradients_match_the_library(tmp_path, name):
  """The variants with hand-written gradients (fused_cell, xla_cell) and the reformulated ones
  give the library's meta-gradient, so their meta-step timings compare like with like."""
  problem = workloads.make_problem("mnist", _tiny_settings())
  results = {}
  for variant in ("library", name):
    optimizer = _variant(variant)
    trainer = workloads.make_trainer(problem, optimizer, 3, tmp_path / variant)
    instance, params, state = workloads.meta_step_inputs(problem, optimizer, 1, 0)
    results[variant] = _loss_and_meta_gradient(trainer, params, state, instance)
  _assert_same_meta_gradient(results[name], results["library"], rtol=2e-3)


def test_recompute_grad_checkpointing_has_the_plain_meta_gradient(tmp_path):
  """The benchmark's tf.recompute_grad alternative to the library's checkpointing computes the
  same meta-gradient; with a GradientTape inside the chunks it cannot even trace."""
  problem = problems.Quadratic(num_dims=3)
  instance, params = problem.sample(2, problems.split_seed(0, "train", 0))
  results = []
  for chunk in (None, 2):
    optimizer = workloads.make_optimizer("quadratic", _tiny_settings())
    trainer = workloads.make_trainer(problem, optimizer, 4, tmp_path / str(chunk))
    if chunk:
      trainer._truncation_loss = scaling.recompute_grad_truncation_loss(
          problem, optimizer, 4, chunk)
    results.append(_loss_and_meta_gradient(trainer, params, optimizer.initial_state(params),
                                           instance))
  _assert_same_meta_gradient(results[1], results[0], rtol=1e-4)
  trainer._truncation_loss = scaling.recompute_grad_truncation_loss(
      problem, optimizer, 4, 2, tape_gradients=True)
  with pytest.raises(ValueError):
    _loss_and_meta_gradient(trainer, params, optimizer.initial_state(params), instance)


def test_flop_count_matches_the_graph():
  settings = _tiny_settings()
  problem = workloads.make_problem("mnist", settings)
  optimizer = workloads.make_optimizer("mnist", settings)
  instance, params = problem.sample(2, problems.split_seed(0, "train", 0))
  check = flops.flop_cross_check(problem, optimizer, 2, instance, params)
  assert check["graph_to_analytic"] == pytest.approx(1.0, rel=0.01), check
  assert check["graph_counts"][3]["unknown_shapes"] == 0


def test_slopes_and_floor():
  assert scaling.loglog_slope([10, 100, 1000], [2, 20, 200]) == pytest.approx(1.0)
  assert scaling.loglog_slope([10, 100], [5, 5]) == pytest.approx(0.0)
  assert scaling.loglog_slope([10], [1]) is None
  rates = {"lstm": {"gflops_cpu": 2.0, "gflops_wall": 1.0},
           "problem": {"gflops_cpu": 4.0, "gflops_wall": 4.0}}
  floor = flops.floor_seconds({"lstm_flops": 4e9, "problem_flops": 4e9}, rates)
  assert floor["floor_s"] == pytest.approx(3.0) and floor["floor_wall_s"] == pytest.approx(5.0)


def test_tiny_scale_out_run_measures_one_and_two_workers(tmp_path):
  out = tmp_path / "bench.json"
  run_bench("--tiny", "--suites=scale_out", "--thread_counts=1", f"--output={out}")
  result = json.loads(out.read_text())
  assert result["errors"] == []
  one, two = result["scale_out"]["1"]["1"], result["scale_out"]["1"]["2"]
  assert [r["worker_index"] for r in two["per_worker"]] == [0, 1]
  for record in (one, two):
    for key in ("meta_steps_per_s", "step_wall_s", "step_cpu_s", "compute_cpu_s",
                "step_cpu_s_all_workers", "processes_cpu_s", "gradient_bytes"):
      assert positive(record[key]), (key, record[key])
  assert positive(two["allreduce_wall_s"]) and one["allreduce_wall_s"] == 0.0
  summary = result["scale_out_summary"]["1"]
  assert summary["measured"]["2"]["speedup"] == pytest.approx(
      two["meta_steps_per_s"] / one["meta_steps_per_s"])
  assert sorted(summary["model"], key=int) == ["1", "2", "4", "8", "16"]
  assert summary["model"]["1"]["speedup"] == pytest.approx(1.0)
  assert "| 2 | 1 |" in tables.markdown_tables(result)


def test_estimators_suite_measures_each_estimator_per_step(tmp_path):
  """The estimators suite's record (run in-process on the tiny quadratic) and its table."""
  from benchmarks import estimators, tables  # pylint: disable=g-import-not-at-top
  record = estimators.run_estimators({"kind": "estimators", "problem": "quadratic"},
                                     _tiny_settings(truncation=2, warmup=1, repeats=2,
                                                    quadratic_meta_batch=2),
                                     str(tmp_path))
  record["threads"] = 1
  for name in ("tbptt", "es", "pes", "forward"):
    assert positive(record[name]["cpu_s_per_step"]), name
    assert record[name]["steps"] > 0
  for key in ("es_particle_step_vs_tbptt_step", "pes_particle_step_vs_tbptt_step",
              "es_particle_step_vs_forward_step", "pes_particle_step_vs_forward_step"):
    assert positive(record[key]), key
  text = "\n".join(tables.estimators_table({"estimators": {"quadratic_1": record}}))
  assert "| quadratic_1 |" in text and "PES / forward" in text
