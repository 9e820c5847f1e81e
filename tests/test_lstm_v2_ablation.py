"""Issue 14: the ablation of LSTM v2 (one part of its meta-training off per row)."""

import dataclasses
import json
import math

import numpy as np
import pytest

from l2l_tf import optimizers
from l2l_tf.evaluation import figures, stats
from l2l_tf_experiments.lstm_v2 import ablation
from l2l_tf_experiments.lstm_v2 import figures as v2_figures
from l2l_tf_experiments.review import ablation as ablation_lib
from tests import helpers

REPO = helpers.REPO


def _configs(*flags):
  from l2l_tf import cli  # pylint: disable=g-import-not-at-top
  with helpers.parsed_flags(["x", f"--flagfile={REPO / ablation.SETTINGS['v2'].flagfile}",
                             *flags]):
    return (cli.optimizer_config(), cli.make_training_problem("train").get_config(),
            dataclasses.asdict(cli.train_config()))


def test_each_row_switches_off_its_part_and_only_that():
  full = _configs()
  assert full[0]["preprocessing"]["name"] == "normalized_moments"
  assert len(full[1]["members"]) == 48
  train = full[2]
  assert train["meta_loss_weighting"] == "log" and train["meta_batch_size"] == 2
  assert train["horizon_curriculum"] == ((0, 100), (200, 200))
  for variant in ablation.VARIANTS[1:]:
    off = _configs(*variant.flags)
    changed = [i for i in range(3) if off[i] != full[i]]
    # The problem changes exactly for the rows marked so (the same-problem check exempts them).
    assert (1 in changed) == variant.changes_problem, variant.name
    assert changed, variant.name
    # The row's flags are those of its flagfile in flags/train/ (which people run by hand).
    flagfile = REPO / "flags" / "train" / f"mnist_v2_{variant.key}.flags"
    lines = [l for l in flagfile.read_text().splitlines() if l and not l.startswith("#")]
    assert lines == ["--flagfile=flags/train/mnist_v2.flags", *ablation.PINNED_FLAGS,
                     *variant.flags], variant.key
  no_family = _configs(*ablation.VARIANTS[2].flags)[1]
  assert "members" not in no_family and no_family["hidden_sizes"] == [20]
  assert full[1]["members"][0]["objective_log10_scale_range"] == 1
  unscaled = _configs("--objective_log10_scale_range=0")[1]["members"][0]
  assert "objective_log10_scale_range" not in unscaled


def test_evaluation_problems_are_the_figures_optimizees():
  for name, activation, hidden in (("mnist", "sigmoid", [20]), ("mnist_relu", "relu", [20]),
                                   ("mnist_2_layers", "sigmoid", [20, 20]),
                                   ("mnist_40_units", "sigmoid", [40])):
    values = helpers.flagfile_values(name)
    problem = dict(ablation.SETTINGS[name].problem)
    assert problem["activation"] == values.get("activation", "sigmoid") == activation
    assert problem["hidden_sizes"] == hidden == [
        int(x) for x in values["optimizee_hidden_sizes"].split(",")]
    assert problem["batch_size"] == int(values["batch_size"])
    assert problem["init_stddev"] == float(values["init_stddev"])
    assert ablation.SETTINGS[name].trained_on == ablation.TRAINED_ON


def _saved(tmp_path, name, problem, seed):
  optimizer = optimizers.make_optimizer({"name": "lstm", "hidden_sizes": [3], "seed": seed})
  path = tmp_path / name
  optimizers.serialization.save_optimizer(
      optimizer, path, metadata={"problem": problem, "train": {}, "epochs_trained": 1})
  return path


def test_rows_trained_on_another_problem_are_evaluated_on_the_setting_problem(tmp_path):
  quadratic = {"name": "quadratic", "num_dims": 3}
  scaled = dict(quadratic, num_dims=4)  # Stands in for the family a row changes.
  variants = (ablation_lib.Variant("ref", "ref", ()),
              ablation_lib.Variant("own", "own", (), changes_problem=True))
  setting = ablation_lib.AblationSetting("x", 1, (), 4, 6, 3, horizon_multiples=(1, 2),
                                         problem=tuple(quadratic.items()))
  dirs = {"ref": {0: _saved(tmp_path, "ref", quadratic, 0)},
          "own": {0: _saved(tmp_path, "own", scaled, 1)}}
  entry = ablation_lib.evaluate_problem("q", dirs, setting, 0, variants, grid=(0.1,),
                                        baselines=("sgd", "adam"), reference="ref",
                                        log_fn=lambda m: None)
  assert entry["problem"] == quadratic and entry["trained_on_problem"] == quadratic
  assert entry["models"]["own / seed 0"]["problem"] == scaled
  for h in (4, 8):
    diff = entry["difference_minus_reference_over_test_problems"]["own"][str(h)]
    assert diff["num_pairs"] == 6
    # The pooled curves hold the same 6 runs: their mean difference is the paired mean.
    want = entry["curves"]["own"]["mean"][h] - entry["curves"]["ref"]["mean"][h]
    assert diff["mean"] == pytest.approx(want, rel=1e-5, abs=1e-7)
    assert diff["ci95_low"] <= diff["mean"] <= diff["ci95_high"]
  # Without the setting's problem, a row trained elsewhere is still refused as before.
  plain = (ablation_lib.Variant("own", "own", ()),) + variants[:1]
  with pytest.raises(ValueError, match="meta-trained on"):
    ablation_lib.evaluate_problem("q", {"ref": dirs["ref"], "own": dirs["own"]},
                                  dataclasses.replace(setting, problem=()), 0, plain,
                                  grid=(0.1,), log_fn=lambda m: None)

  results = {"figure": ablation.FIGURE, "problems": {"q": entry}}
  table = ablation.table(results)
  assert "| q | 8 | own |" in table and "(reference)" in table
  assert "| q | 4 | Adam (tuned) |" in table
  assert v2_figures.plot(results, tmp_path / "v2.png").is_file()


def test_paired_difference_by_hand():
  out = stats.paired_difference([1.0, 2.0, np.inf, 4.0], [0.5, 1.0, 1.0, 2.0])
  d = np.array([0.5, 1.0, 2.0])
  assert out["num_pairs"] == 4 and out["non_finite_pairs"] == 1
  assert out["mean"] == pytest.approx(d.mean())
  assert out["ci95_high"] - out["mean"] == pytest.approx(1.96 * d.std(ddof=1) / math.sqrt(3))


def test_figure_is_registered_and_refuses_missing_runs_in_one_line():
  figure = figures.registry().get("mnist_v2_ablation")
  assert len(figure.requires) == len(ablation.VARIANTS)
  if not all((helpers.REPO / p / "config.json").is_file() for p in figure.requires):
    assert any("--retrain" in r for r in figure.missing())


def test_shipped_mnist_v2_is_what_its_flagfile_trains_and_the_figures_run_it():
  """`pretrained:mnist_v2` has the optimizer, problem family and meta-training settings that
  `flags/train/mnist_v2.flags` gives (so the command in its README trains it), its best epoch is
  within the flagfile's budget, and the MNIST figures built on `flags/mnist.flags` run it as
  `LSTM v2` beside the paper's LSTM."""
  from l2l_tf.optimizers import serialization  # pylint: disable=g-import-not-at-top
  optimizer, problem, train = _configs()
  _, saved = serialization.read_config("pretrained:mnist_v2")
  meta = saved["metadata"]
  assert saved["optimizer"] == optimizers.make_optimizer(optimizer).get_config()
  assert meta["problem"] == problem
  train = json.loads(json.dumps(train))  # As saved: tuples become lists.
  assert {k: train[k] for k in meta["train"]} == meta["train"]
  assert 0 < meta["best_epoch"] <= train["num_epochs"] == meta["epochs_trained"]
  readme = (REPO / "l2l_tf" / "pretrained" / "mnist_v2" / "README.md").read_text()
  assert "python -m l2l_tf.train --flagfile=flags/train/mnist_v2.flags" in readme
  registry = figures.registry()
  for name in ("mnist", "mnist_200_steps", "mnist_40_units", "mnist_2_layers", "mnist_relu",
               "mnist_architecture_sweep", "mnist_1000_steps"):
    figure = registry.get(name)
    assert "pretrained:mnist_v2" in figure.requires and figure.missing() == [], name
  for name in ("mnist_gac", "mnist_ntm_lbfgs"):  # Single-optimizer figures keep one row.
    assert "pretrained:mnist_v2" not in registry.get(name).requires, name
