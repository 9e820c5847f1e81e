"""Issue 19: the memories comparison (LSTM, fast weights, SRWM, NTM-L-BFGS) at equal budget."""

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from l2l_tf import optimizers
from l2l_tf.evaluation import figures
from l2l_tf_experiments.review import ablation as ablation_lib
from l2l_tf_experiments.review import memories, tables
from tests import helpers

REPO = Path(__file__).resolve().parent.parent
TINY = memories.AblationSetting(
    "flags/quadratic.flags", 2,
    ("--num_validation_problems=3", "--validation_every=1", "--checkpoint_every=1",
     "--meta_batch_size=2", "--horizon=4", "--truncation=2", "--fast_size=3",
     "--hidden_sizes=4,4", "--num_dims=3"), horizon=4, num_test_problems=5,
    num_validation_problems=3, horizon_multiples=(1, 2))


def test_each_memory_is_built_from_its_flags():
  from l2l_tf import cli  # pylint: disable=g-import-not-at-top
  for variant in memories.VARIANTS:
    with helpers.parsed_flags(["x", f"--flagfile={REPO / TINY.flagfile}", *variant.flags,
                               *TINY.train_flags]):
      config = cli.optimizer_config()
    for key, value in variant.config:
      assert config[key] == value, (variant.name, key)
    assert optimizers.make_optimizer(config).trainable_variables


def test_tiny_comparison_trains_and_evaluates_against_the_lstm(tmp_path, monkeypatch):
  # Two of the five memories (the LSTM reference and the one with the most flags) keep it short;
  # the others' flags are checked above.
  subset = (memories.VARIANTS[0], memories.VARIANTS[-1])
  monkeypatch.setattr(memories, "VARIANTS", subset)
  # One variant's own meta learning rate (as from a search) reaches its runs only.
  tiny = dataclasses.replace(TINY, variant_flags=(("ntm_lbfgs", ("--meta_learning_rate=0.01",)),))
  dirs = memories.train_all(["quadratic"], [0], tmp_path / "train", REPO,
                            settings={"quadratic": tiny}, log_fn=lambda m: None)
  rates = {name: json.loads((path / "config.json").read_text())["metadata"]["train"][
      "meta_learning_rate"] for name, path in dirs.items()}
  assert rates == {"quadratic_lstm_s0": 0.003, "quadratic_ntm_lbfgs_s0": 0.01}
  assert sorted(dirs) == ["quadratic_lstm_s0", "quadratic_ntm_lbfgs_s0"]
  results = memories.comparison(
      "quadratic", memories.optimizer_dirs(["quadratic"], [0], tmp_path / "train", True,
                                           settings={"quadratic": TINY}),
      eval_seed=0, grid=(0.01, 0.1), settings={"quadratic": TINY}, log_fn=lambda m: None)
  assert results["figure"] == "review_fast_weights_quadratic"
  entry = results["problems"]["quadratic"]
  assert entry["horizons"] == [4, 8] and entry["reference"] == memories.LSTM
  assert list(entry["table"]) == [v.name for v in subset] + [
      "SGD (tuned)", "RMSprop (tuned)", "Adam (tuned)", "NAG (tuned)"]
  for variant in subset[1:]:
    for h in ("4", "8"):
      diff = entry["difference_minus_reference"][variant.name][h]
      want = entry["table"][variant.name][h]["per_seed"][0] - \
          entry["table"][memories.LSTM][h]["per_seed"][0]
      assert diff["per_seed"] == pytest.approx([want])
  assert memories.LSTM not in entry["difference_minus_reference"]
  table = tables.memories_table(results)
  assert "| quadratic | 8 | NTM-L-BFGS |" in table and "(reference)" in table
  assert "| quadratic | 4 | NAG (tuned) |" in table
  # The review's side-by-side table gains a row per memory: Q@1x and Q@2x from this figure, "-"
  # where it was not run, and its meta-training cost.
  hochreiter = {"examples_to_tau": {}, "models": {}}
  side = tables.side_by_side_table({"problems": {}}, hochreiter, memories=[results]).splitlines()
  rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in side[2:]}
  ntm = rows[tables.MEMORY_ROWS["NTM-L-BFGS"]]
  assert tables.MEMORY_ROWS["LSTM"] in rows and tables.MEMORY_ROWS["SRWM"] not in rows
  assert ntm[1].startswith(f"{entry['table']['NTM-L-BFGS']['4']['mean']:.3g} [")
  assert ntm[2].startswith(f"{entry['table']['NTM-L-BFGS']['8']['mean']:.3g} [")
  assert ntm[3:8] == ["-"] * 5 and ntm[-1] == "Q: 16 optimizee gradients per seed |"

  # A run listed under the wrong memory is refused.
  wrong = {"NTM-L-BFGS": {0: dirs["quadratic_lstm_s0"]}}
  with pytest.raises(ValueError, match="name=lstm, but is listed as 'NTM-L-BFGS'"):
    memories.evaluate_problem("quadratic", wrong, TINY, 0, grid=(0.1,), log_fn=lambda m: None)


def test_figures_are_registered_shipped_and_say_what_is_missing_elsewhere():
  """Both figures' 15 optimizers are shipped (5 memories x 3 seeds); pointed elsewhere, the
  figure says which optimizer is missing and how to make it."""
  registry = figures.registry()
  for name in ("review_fast_weights_quadratic", "review_fast_weights_mnist"):
    figure = registry.get(name)
    assert len(figure.requires) == 15  # 5 memories x 3 seeds.
    assert all(Path(p, "config.json").is_file() for p in figure.requires), name
    assert figure.missing() == [], name
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-m", "l2l_tf.reproduce",
                         "--figure=review_fast_weights_quadratic", "--output_dir=/tmp/x",
                         "--review_memories_path=/nonexistent"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  last = proc.stderr.strip().splitlines()[-1]
  assert "--retrain" in last and "/nonexistent/quadratic_lstm_s0" in last


def test_each_memorys_quadratic_recipe_is_the_best_of_its_searches():
  """Each memory's inputs and meta learning rate in memories.SETTINGS["quadratic"] are those of
  the best of its committed searches (memories.QUADRATIC_SEARCHES: the same 6-candidate search,
  with the figure's meta-gradient clip and its 3 seeds, once with the flagfile's identity inputs
  and once with the paper's log-and-sign inputs), where a search's score is its winner's mean over
  seeds of the best validation final loss; and its three shipped runs are that search's runs."""
  setting = memories.SETTINGS["quadratic"]
  own = dict(setting.variant_flags)
  assert sorted(own) == sorted(v.key for v in memories.VARIANTS)
  assert sorted(memories.QUADRATIC_SEARCHES) == sorted(own)
  clip = [f for f in setting.train_flags if f.startswith("--clip_global_norm=")]
  assert clip == ["--clip_global_norm=1.0"]
  for variant in memories.VARIANTS:
    dirs = [REPO / d for d in memories.QUADRATIC_SEARCHES[variant.key]]
    assert dirs[0].parent.name == "memories_q_search_clip", variant.key  # Identity: always.
    chosen = ablation_lib.best_search(dirs)
    searches = {d: json.loads((d / "search.json").read_text()) for d in dirs}
    for d, search in searches.items():
      command = search["command"].split()
      assert clip[0] in command and "--search_seeds=3" in command, d
      assert "--num_candidates=6 --min_rate=3e-4 --max_rate=1e-2" in search["command"], d
      assert all(f in command for f in variant.flags), d
      assert d.name == variant.key and search["seeds"] == [0, 1, 2], d
      scores = search["best_validation_final_loss"]
      assert len(scores) == 6 and search["best_rate"] == float(min(scores, key=scores.get)), d
      for rate, values in search["best_validation_final_loss_per_seed"].items():
        assert scores[rate] == pytest.approx(sum(values) / 3), (d, rate)
    search = searches[chosen]
    inputs = [f for f in search["command"].split() if f.startswith("--preprocessing=")]
    assert own[variant.key] == (*inputs, f"--meta_learning_rate={search['best_rate']:g}"), (
        variant.key, chosen)
    # The shipped runs of the figure are the chosen search's runs at its winning rate.
    for seed, value in enumerate(
        search["best_validation_final_loss_per_seed"][f"{search['best_rate']:g}"]):
      shipped = json.loads((REPO / "l2l_tf_experiments" / "review" / "pretrained" /
                            "review_fast_weights" / f"quadratic_{variant.key}_s{seed}" /
                            "config.json").read_text())
      meta = shipped["metadata"]
      assert meta["best_validation_final_loss"] == value, (variant.key, seed)
      assert meta["train"]["meta_learning_rate"] == search["best_rate"], (variant.key, seed)
      want = inputs[0].split("=")[1] if inputs else "identity"
      assert shipped["optimizer"]["preprocessing"]["name"] == want, (variant.key, seed)


def test_each_finished_mnist_search_sets_that_memorys_meta_learning_rate():
  """On MNIST, a memory whose search has ended (training/memories_m_search/<memory>/search.json:
  3 candidates in [3e-4, 3e-3] for every memory) runs at the search's winner, and the shipped
  NTM-L-BFGS of the information-sharing figure is that winner's run."""
  own = {k: [f for f in v if f.startswith("--meta_learning_rate=")]
         for k, v in memories.SETTINGS["mnist"].variant_flags}
  finished = 0
  for variant in memories.VARIANTS:
    path = REPO / "training" / "memories_m_search" / variant.key / "search.json"
    if not path.exists():
      assert not own.get(variant.key), variant.key  # No rate before its search has ended.
      continue
    finished += 1
    search = json.loads(path.read_text())
    scores = search["best_validation_final_loss"]
    assert len(scores) == 3 and search["best_rate"] == float(min(scores, key=scores.get))
    assert own[variant.key] == [f"--meta_learning_rate={search['best_rate']:g}"], variant.key
    assert "--num_candidates=3 --min_rate=3e-4 --max_rate=3e-3" in search["command"]
    assert all(f in search["command"].split() for f in variant.flags), variant.key
  assert finished >= 1
  shipped = json.loads((REPO / "l2l_tf" / "pretrained" / "mnist_ntm_lbfgs_delta" /
                        "config.json").read_text())
  ntm = json.loads((REPO / "training" / "memories_m_search" / "ntm_lbfgs" /
                    "search.json").read_text())
  assert shipped["metadata"]["train"]["meta_learning_rate"] == ntm["best_rate"]
  assert shipped["metadata"]["best_validation_final_loss"] == min(
      ntm["best_validation_final_loss"].values())


def _fake_search(root, scores_per_seed, best):
  """A finished 3-seed search's layout (search.json, the runs' validation records and logs)."""
  root.mkdir(parents=True)
  for rate, values in scores_per_seed.items():
    for seed, value in enumerate(values):
      run = root / (f"lr_{rate}" if seed == 0 else f"lr_{rate}_s{seed}")
      run.mkdir()
      (run / "validation.jsonl").write_text(json.dumps({"epoch": 1, "loss": value}) + "\n")
      (run / "train.lock").write_text("")
      run.with_name(run.name + ".log").write_text(f"log of {run.name}\n")
  summary = {"best_validation_final_loss": {r: sum(v) / 3 for r, v in scores_per_seed.items()},
             "best_rate": float(best), "seeds": [0, 1, 2],
             "best_runs": [str(root / (f"lr_{best}" if s == 0 else f"lr_{best}_s{s}"))
                           for s in range(3)]}
  (root / "search.json").write_text(json.dumps(summary))


def test_adopt_search_copies_the_best_searchs_winning_runs(tmp_path):
  _fake_search(tmp_path / "identity", {"0.0028": [0.3, 0.5, 0.5], "0.0052": [0.25, 0.6, 0.35]},
               "0.0052")  # Mean 0.4 (the winner's).
  _fake_search(tmp_path / "las", {"0.0028": [0.2, 0.1, 0.3], "0.00736": [0.5, 0.5, 0.5]},
               "0.0028")  # Mean 0.2: the better search.
  searches = [tmp_path / "identity", tmp_path / "las"]
  assert ablation_lib.best_search(searches) == tmp_path / "las"
  assert ablation_lib.best_search(searches[:1]) == tmp_path / "identity"
  train = tmp_path / "train"
  runs = ablation_lib.adopt_search_runs(tmp_path / "las", train, "quadratic", "srwm")
  assert runs == {s: train / f"quadratic_srwm_s{s}" for s in range(3)}
  for seed, name in enumerate(("lr_0.0028", "lr_0.0028_s1", "lr_0.0028_s2")):
    dest = runs[seed]
    assert (dest / "validation.jsonl").read_bytes() == (
        tmp_path / "las" / name / "validation.jsonl").read_bytes()
    assert not (dest / "train.lock").exists()  # A copied lock would block the run's resume.
    assert dest.with_name(dest.name + ".log").read_text() == f"log of {name}\n"
  # Again: the same runs are kept as they are.
  (runs[0] / "marker").write_text("")
  assert ablation_lib.adopt_search_runs(tmp_path / "las", train, "quadratic", "srwm") == runs
  assert (runs[0] / "marker").exists()
  # Another search's runs at those names are refused, or replaced with the old moved aside.
  with pytest.raises(ValueError, match="holds another run.*--replace"):
    ablation_lib.adopt_search_runs(tmp_path / "identity", train, "quadratic", "srwm")
  ablation_lib.adopt_search_runs(tmp_path / "identity", train, "quadratic", "srwm", replace=True)
  assert (train / "quadratic_srwm_s0.replaced" / "marker").exists()
  assert (train / "quadratic_srwm_s1" / "validation.jsonl").read_bytes() == (
      tmp_path / "identity" / "lr_0.0052_s1" / "validation.jsonl").read_bytes()
  # Unfinished or one-seed searches say what to do.
  with pytest.raises(ValueError, match="run \\(or finish\\) the search first"):
    ablation_lib.best_search([tmp_path / "nowhere"])
  one = tmp_path / "one"
  one.mkdir()
  (one / "search.json").write_text(json.dumps({"best_rate": 0.1,
                                               "best_validation_final_loss": {"0.1": 1.0}}))
  with pytest.raises(ValueError, match="--search_seeds=3"):
    ablation_lib.adopt_search_runs(one, train, "quadratic", "srwm")


def test_adopt_search_command_line(tmp_path):
  _fake_search(tmp_path / "las", {"0.0028": [0.2, 0.1, 0.3]}, "0.0028")
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  base = [sys.executable, "-m", "l2l_tf_experiments.review.adopt_search",
          f"--search_dir={tmp_path / 'las'}", "--run_problem=quadratic", "--run_variant=srwm"]
  proc = subprocess.run(base + [f"--train_dir={tmp_path / 'train'}"], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert f"seed 2: {tmp_path / 'train' / 'quadratic_srwm_s2'}" in proc.stdout
  missing = subprocess.run(base, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
  assert missing.returncode == 1 and "Traceback" not in missing.stderr
  assert "--train_dir is required" in missing.stderr
