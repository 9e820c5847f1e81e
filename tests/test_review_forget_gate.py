"""Issue 8, item 4: the forget-gate ablation of the L2L optimizer (figure review_forget_gate)."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from l2l_tf import optimizers
from l2l_tf_experiments.review import forget_gate, tables

REPO = Path(__file__).resolve().parent.parent
FORGET, NO_FORGET = (name for name, _, _ in forget_gate.VARIANTS)


def test_per_run_at_leaves_out_runs_diverged_by_then():
  losses = np.array([[1.0, 0.5, 0.25, 0.1], [1.0, 0.7, np.nan, np.nan]])
  out = forget_gate.per_run_at(losses, [1, 3])
  assert out[1] == {"mean": pytest.approx(0.6), "divergence_rate": 0.0}
  assert out[3] == {"mean": pytest.approx(0.1), "divergence_rate": 0.5}


def test_train_command_sets_the_variant_seed_and_budget():
  setting = forget_gate.SETTINGS["mnist"]
  command = forget_gate.train_command(setting, False, 3, "/tmp/x", python="py")
  assert command[:3] == ["py", "-m", "l2l_tf.train"]
  assert "--forget_gate=false" in command and "--seed=3" in command
  assert f"--num_epochs={setting.num_epochs}" in command and "--output_dir=/tmp/x" in command
  assert command.index("--flagfile=flags/mnist.flags") < command.index("--validation_every=50")


def test_tiny_ablation_trains_evaluates_and_reproduces(tmp_path):
  tiny = forget_gate.AblationSetting(
      "flags/quadratic.flags", 2,
      ("--num_validation_problems=3", "--validation_every=1", "--checkpoint_every=1",
       "--meta_batch_size=2", "--horizon=4", "--truncation=2"), horizon=4, num_test_problems=6,
      num_validation_problems=3)
  dirs = forget_gate.train_all(["quadratic"], [0], tmp_path / "train", REPO,
                               settings={"quadratic": tiny}, log_fn=lambda m: None)
  assert set(dirs) == {"quadratic_forget_s0", "quadratic_no_forget_s0"}
  for name, path in dirs.items():
    _, saved = optimizers.serialization.read_config(path)
    assert saved["optimizer"]["forget_gate"] == ("no_forget" not in name)
    assert "--forget_gate=" in saved["metadata"]["command"]
  # Resuming a finished ablation trains nothing more.
  again = forget_gate.train_all(["quadratic"], [0], tmp_path / "train", REPO,
                                settings={"quadratic": tiny}, log_fn=lambda m: None)
  assert again == dirs

  entry = forget_gate.evaluate_problem(
      "quadratic", {FORGET: {0: dirs["quadratic_forget_s0"]},
                    NO_FORGET: {0: dirs["quadratic_no_forget_s0"]}},
      tiny, eval_seed=0, grid=(0.01, 0.1), log_fn=lambda m: None)
  assert entry["horizons"] == [4, 8, 16]
  for h in ("4", "8", "16"):
    with_gate, without = entry["table"][FORGET][h], entry["table"][NO_FORGET][h]
    diff = entry["difference_no_forget_minus_forget"][h]
    assert diff["per_seed"] == pytest.approx([without["per_seed"][0] - with_gate["per_seed"][0]])
    assert entry["table"][forget_gate.ADAM][h]["learning_rate"] in (0.01, 0.1)
    adam = entry["table"][forget_gate.ADAM][h]["mean"]
    assert without["seeds_below_adam"] == int(without["per_seed"][0] < adam)
  assert len(entry["curves"][FORGET]["mean"]) == 17

  # Evaluated on a changed problem (as mnist_relu: the MNIST optimizers on the ReLU MLP).
  other = forget_gate.evaluate_problem(
      "quadratic_3d", {FORGET: {0: dirs["quadratic_forget_s0"]}},
      dataclasses.replace(tiny, problem_overrides=(("num_dims", 3),), horizon_multiples=(1,)),
      eval_seed=0, grid=(0.1,), log_fn=lambda m: None)
  assert other["horizons"] == [4] and other["problem"]["num_dims"] == 3
  assert other["trained_on_problem"]["num_dims"] == 10

  # Listing an optimizer under the wrong variant is refused.
  with pytest.raises(ValueError, match="forget_gate=False"):
    forget_gate.evaluate_problem("quadratic", {FORGET: {0: dirs["quadratic_no_forget_s0"]}},
                                 tiny, 0, log_fn=lambda m: None)

  # The entry point (through reproduce), evaluating these as the "shipped" ablation.
  shipped = tmp_path / "shipped"
  shipped.mkdir()
  for name, path in dirs.items():
    os.symlink(path, shipped / name)
  out = tmp_path / "out"
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  args = ["--figure=review_forget_gate", f"--output_dir={out}", "--threads=1",
          "--review_ablation_problems=quadratic", "--review_ablation_seeds=1",
          f"--review_ablation_path={shipped}", "--review_ablation_num_test_problems=4",
          "--review_ablation_num_validation_problems=2", "--learning_rate_grid=0.1"]
  proc = subprocess.run([sys.executable, "-m", "l2l_tf.reproduce", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  results = json.loads((out / "review_forget_gate.json").read_text())
  assert not (out / ".review_forget_gate_eval_cache").exists()  # Removed once written.
  # With --eval_cache_dir the finished chunks are kept: a rerun (a killed run resumed) reads
  # every one back and writes the same curves.
  cache = tmp_path / "cache"
  cached = subprocess.run([sys.executable, "-m", "l2l_tf.reproduce", *args,
                           f"--output_dir={tmp_path / 'cached'}", f"--eval_cache_dir={cache}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert cached.returncode == 0, cached.stderr[-3000:]
  chunks = sorted(cache.glob("*.npy"))
  assert chunks
  for chunk in chunks:  # A resumed run takes what is cached, not a recomputation.
    np.save(chunk, np.load(chunk) * 2)
  again = subprocess.run([sys.executable, "-m", "l2l_tf.reproduce", *args,
                          f"--output_dir={tmp_path / 'again'}", f"--eval_cache_dir={cache}"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert again.returncode == 0, again.stderr[-3000:]
  assert sorted(cache.glob("*.npy")) == chunks
  doubled = json.loads((tmp_path / "again" / "review_forget_gate.json").read_text())
  np.testing.assert_allclose(
      doubled["problems"]["quadratic"]["table"][NO_FORGET]["100"]["mean"],
      2 * results["problems"]["quadratic"]["table"][NO_FORGET]["100"]["mean"], rtol=1e-5)
  assert (out / "review_forget_gate.png").read_bytes()[:4] == b"\x89PNG"
  assert results["command"].startswith("python -m l2l_tf.reproduce --figure=review_forget_gate")
  assert results["problems"]["quadratic"]["horizons"] == [100, 200, 400]
  assert len(results["steps"]) == 401 and f"quadratic: {NO_FORGET}" in results["optimizers"]
  assert "| quadratic | 4x T = 400 |" in proc.stdout
  cost = results["problems"]["quadratic"]["models"][f"{FORGET} / seed 0"]["optimizee_gradients"]
  assert cost == 2 * 2 * 4  # epochs x meta-batch x horizon of the tiny runs.
  hochreiter = json.loads((REPO / "docs" / "figures" / "review_hochreiter2001.json").read_text())
  table = tables.side_by_side_table(results, hochreiter).splitlines()
  assert table[0].startswith("| system | Q@100 | Q@200 | Q@400 | M@1x |")
  rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in table[2:]}
  assert set(rows) == {forget_gate.ADAM, FORGET, NO_FORGET, "meta-LSTM 2001 (no forget gate)",
                       "meta-LSTM 2001 (forget gate)", "online SGD (tuned)"}
  q100 = results["problems"]["quadratic"]["table"][NO_FORGET]["100"]["mean"]
  assert rows[NO_FORGET][1].startswith(f"{q100:.3g} [")
  assert rows["meta-LSTM 2001 (no forget gate)"][8].startswith("24.5 [23, 26]")
  assert rows[FORGET][-1].startswith("Q: 16 optimizee gradients per seed; H: 1.28e+06")
  missing = subprocess.run([sys.executable, "-m", "l2l_tf.reproduce", *args,
                            "--review_ablation_seeds=2"], cwd=REPO, env=env,
                           capture_output=True, text=True, timeout=300)
  assert missing.returncode == 1 and "--retrain" in missing.stderr
  assert "Traceback" not in missing.stderr


@pytest.mark.parametrize("flag,message", [
    ("--review_ablation_problems=cifar", "--review_ablation_problems: unknown ['cifar']"),
    ("--review_ablation_seeds=0", "--review_ablation_seeds must be positive"),
])
def test_bad_ablation_flags_give_one_line_errors(tmp_path, flag, message):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-m", "l2l_tf_experiments.review.run",
                         "--figure=review_forget_gate", f"--output_dir={tmp_path}", flag],
                        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1 and message in proc.stderr, proc.stderr[-2000:]
  assert "Traceback" not in proc.stderr


def test_shipped_ablation_optimizers_are_found_where_the_figure_and_the_flagfiles_look():
  from l2l_tf_experiments.review import figures  # pylint: disable=g-import-not-at-top
  dirs = forget_gate.optimizer_dirs(["mnist_relu"], [0, 4], figures.PRETRAINED /
                                    "review_forget_gate", trained=False)
  # mnist_relu evaluates the optimizers meta-trained on mnist.
  assert dirs["mnist_relu"][NO_FORGET][4].name == "mnist_no_forget_s4"
  for seeds in dirs["mnist_relu"].values():
    for path in seeds.values():
      _, saved = optimizers.serialization.read_config(path)
      assert saved["metadata"]["train"]["horizon"] == 100
  # flags/mnist_information_sharing.flags names the seed-0 run by its package.
  line = next(line for line in (REPO / "flags" / "mnist_information_sharing.flags").read_text()
              .splitlines() if line.startswith("--optimizer_path="))
  resolved = optimizers.resolve_optimizer_path(line.split("=", 1)[1])
  assert resolved == dirs["mnist_relu"][FORGET][0]
  assert optimizers.load_optimizer(line.split("=", 1)[1]).forget_gate
  with pytest.raises(optimizers.OptimizerLoadError, match="No package 'no_such_package'"):
    optimizers.load_optimizer("package:no_such_package/pretrained/x")

