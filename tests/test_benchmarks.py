"""The benchmark (`l2l_tf.bench`) runs end to end at tiny sizes, and compiled steps trace once.

No timing is asserted: these machines are shared and noisy. The tiny run checks that every JSON
key the docs rely on is there with a positive, finite value, so that the benchmark cannot rot.
"""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import bench, meta, optimizers, problems
from l2l_tf.evaluation import curves
from l2l_tf.meta import unroll

REPO = Path(__file__).resolve().parent.parent
RECORD_KEYS = ("cpu_s_median", "wall_s_median", "threads", "floor_s", "ratio_to_floor",
               "peak_rss_mb")


def run_bench(*args, check=True):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-m", "l2l_tf.bench", *args], cwd=REPO, env=env,
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
    variants = result["variants"][problem]
    assert set(variants["meta_step"]) == set(variants_flag), variants["skipped"]
    assert set(variants["eval"]) == set(variants_flag), variants["skipped"]
    for record in variants["meta_step"].values():
      assert positive(record["cpu_s_median"]) and positive(record["speedup_vs_library"])
      assert record["max_abs_diff_meta_loss"] < 1e-3 * max(1.0, abs(record["meta_loss"]))
    for record in variants["eval"].values():
      assert record["max_rel_diff_losses"] < 1e-3
    profile = result["profile"][problem]
    assert positive(profile["step_s"]) and positive(profile["ops_per_step"])
    assert profile["top_op_types"] and positive(profile["top_op_types"][0]["s_per_step"])
  evaluation = result["profile"]["mnist_eval"]
  assert evaluation["target"] == "eval" and positive(evaluation["step_s"])
  assert any(row["name"] == "Tanh" for row in evaluation["top_op_types"])
  assert "Profile, mnist 100-step evaluation, no XLA (1 thread)" in proc.stdout
  check = result["profile"]["mnist"]["flop_check"]
  assert check["graph_to_analytic"] == pytest.approx(1.0, rel=0.01)
  scaling = result["scaling"]
  for sweep in ("coordinates", "truncation", "checkpoint"):
    for record in scaling["points"][sweep]:
      assert positive(record["cpu_s_median"]) and positive(record["peak_rss_mb"]), record
  assert scaling["points"]["checkpoint_probe"][0]["works"] is False
  assert math.isfinite(scaling["truncation_slope_cpu"])
  # Checkpointing changes memory, not the meta-gradient: one Adam step lands on the same weights.
  sums = {json.dumps(r["checkpoint"]): r["weights_abs_sum_after_first_step"]
          for r in scaling["points"]["checkpoint"]}
  assert max(sums.values()) == pytest.approx(min(sums.values()), rel=1e-5), sums
  assert "| mnist meta-step | 1 |" in proc.stdout
  again = run_bench(f"--table_from={out}")
  assert again.stdout.strip() == proc.stdout.split("wrote ")[0].strip()


def test_bad_flags_are_one_line_errors(tmp_path):
  for args, message in [([], "--output is required"),
                        ([f"--output={tmp_path / 'x.json'}", "--suites=main,bogus"],
                         "Unknown --suites"),
                        ([f"--output={tmp_path / 'x.json'}", "--hidden_sizes=4"],
                         "--hidden_sizes does not apply")]:
    proc = run_bench(*args, check=False)
    assert proc.returncode == 1 and message in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_meta_step_and_evaluation_trace_once(tmp_path):
  problem = problems.Quadratic(num_dims=3)
  optimizer = optimizers.CoordinatewiseLSTM(hidden_sizes=(4,))
  config = meta.TrainConfig(num_epochs=3, horizon=4, truncation=2, meta_batch_size=2,
                            num_validation_problems=2, validation_every=1, checkpoint_every=10)
  trainer = meta.MetaTrainer(problem, optimizer, config, tmp_path, log_fn=lambda message: None)
  trainer.train(progress=False)  # 3 epochs x 2 truncations, 4 validations, fresh problems each.
  for seed in range(3):
    instance, params = problem.sample(2, problems.split_seed(0, "train", 10 + seed))
    trainer._meta_step(params, optimizer.initial_state(params), instance,
                       tf.constant(2 * seed, tf.int32))
  assert trainer._meta_step.experimental_get_tracing_count() == 1
  assert trainer._validation_fn.experimental_get_tracing_count() == 1
  if trainer._diagnostics_fn is not None:
    assert trainer._diagnostics_fn.experimental_get_tracing_count() == 1

  rng = np.random.RandomState(0)
  mlp = problems.MLPClassifier(rng.randint(0, 256, (64, 12)).astype(np.uint8),
                               rng.randint(0, 10, 64), hidden_sizes=(5,), batch_size=4)
  learned = optimizers.CoordinatewiseLSTM(hidden_sizes=(4,), preprocessing="log_and_sign",
                                          output_scale=0.1)
  adam = optimizers.Adam(0.01)
  for opt in (learned, adam):
    for jit in (False, True):
      run = unroll.make_trajectory_fn(mlp, opt, 3, jit_compile=jit)
      for seed in range(3):
        instance, params = mlp.sample(2, problems.split_seed(0, "test", seed))
        run(instance, params)
      adam.learning_rate.assign(0.02)  # Hyperparameters live in variables: no retrace.
      instance, params = mlp.sample(2, problems.split_seed(0, "test", 9))
      curves.evaluate_losses(mlp, opt, instance, params, 3, jit_compile=jit)
      assert run.experimental_get_tracing_count() == 1, (type(opt).__name__, jit)


def _tiny_settings(**overrides):
  settings = {"quadratic_dims": 3, "synthetic_data": True, "mnist_batch_size": 4,
              "data_dir": None, "optimizer_path": None, "seed": 0}
  settings.update(overrides)
  return settings


def test_variant_steps_match_the_library_step():
  settings = _tiny_settings()
  problem = bench.make_problem("mnist", settings)
  instance, params = problem.sample(1, problems.split_seed(0, "train", 0))
  with tf.GradientTape() as tape:
    tape.watch(params)
    loss = tf.reduce_sum(problem.loss(params, instance, 0))
  grads = tape.gradient(loss, params)
  library = bench.make_optimizer("mnist", settings)
  expected, state = library.step(grads, library.initial_state(params))
  expected, _ = library.step(grads, state)  # Second step: a non-zero recurrent state.
  for name in bench._variant_classes():
    variant = bench.make_optimizer("mnist", settings, name)
    updates, state = variant.step(grads, variant.initial_state(params))
    updates, _ = variant.step(grads, state)
    for got, want in zip(updates, expected):
      np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-4, atol=1e-7, err_msg=name)


@pytest.mark.parametrize("name", ["fused_cell", "xla_cell", "tanh_form", "feature_major"])
def test_variant_meta_gradients_match_the_library(tmp_path, name):
  """The variants with hand-written gradients (fused_cell, xla_cell) and the reformulated ones
  give the library's meta-gradient, so their meta-step timings compare like with like."""
  settings = _tiny_settings()
  problem = bench.make_problem("mnist", settings)
  grads_by_name = {}
  for variant in ("library", name):
    optimizer = bench.make_optimizer("mnist", settings, variant)
    trainer = bench.make_trainer(problem, optimizer, 3, tmp_path / variant)
    instance, params, state = bench.meta_step_inputs(problem, optimizer, 1, 0)

    @tf.function
    def loss_and_grads(params, state, instance, trainer=trainer):
      with tf.GradientTape() as tape:
        loss, _, _ = trainer._truncation_loss(params, state, instance, tf.constant(0))
      return loss, tape.gradient(loss, trainer.meta_vars)

    grads_by_name[variant] = loss_and_grads(params, state, instance)
  (loss, grads), (got_loss, got_grads) = grads_by_name["library"], grads_by_name[name]
  np.testing.assert_allclose(got_loss.numpy(), loss.numpy(), rtol=1e-5)
  assert max(float(tf.reduce_max(tf.abs(g))) for g in grads) > 1e-6  # Not a vacuous comparison.
  for got, want in zip(got_grads, grads):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=2e-3, atol=1e-6)


@pytest.mark.parametrize("impl", ["control_deps", "recompute_grad"])
def test_checkpointed_truncation_has_the_library_meta_gradient(tmp_path, impl):
  problem = problems.Quadratic(num_dims=3)
  results = []
  for chunk in (None, 2):
    optimizer = optimizers.CoordinatewiseLSTM(hidden_sizes=(4,))
    trainer = bench.make_trainer(problem, optimizer, 4, tmp_path / f"{impl}_{chunk}")
    if chunk:
      trainer._truncation_loss = bench.checkpointed_truncation_loss(trainer, chunk, impl)
    instance, params = problem.sample(2, problems.split_seed(0, "train", 0))

    @tf.function
    def loss_and_grads(params, state, instance, trainer=trainer):
      with tf.GradientTape() as tape:
        loss, _, _ = trainer._truncation_loss(params, state, instance, tf.constant(0))
      return loss, tape.gradient(loss, trainer.meta_vars)

    results.append(loss_and_grads(params, optimizer.initial_state(params), instance))
  (loss, grads), (loss_ckpt, grads_ckpt) = results
  np.testing.assert_allclose(loss_ckpt.numpy(), loss.numpy(), rtol=1e-5)
  for got, want in zip(grads_ckpt, grads):
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-6)


def test_flop_count_matches_the_graph():
  settings = _tiny_settings()
  problem = bench.make_problem("mnist", settings)
  optimizer = bench.make_optimizer("mnist", settings)
  instance, params = problem.sample(2, problems.split_seed(0, "train", 0))
  check = bench.flop_cross_check(problem, optimizer, 2, instance, params)
  assert check["graph_to_analytic"] == pytest.approx(1.0, rel=0.01), check
  assert check["graph_counts"][3]["unknown_shapes"] == 0


def test_slopes_and_floor():
  assert bench.loglog_slope([10, 100, 1000], [2, 20, 200]) == pytest.approx(1.0)
  assert bench.loglog_slope([10, 100], [5, 5]) == pytest.approx(0.0)
  assert bench.loglog_slope([10], [1]) is None
  rates = {"lstm": {"gflops_cpu": 2.0, "gflops_wall": 1.0},
           "problem": {"gflops_cpu": 4.0, "gflops_wall": 4.0}}
  floor = bench.floor_seconds({"lstm_flops": 4e9, "problem_flops": 4e9}, rates)
  assert floor["floor_s"] == pytest.approx(3.0) and floor["floor_wall_s"] == pytest.approx(5.0)
