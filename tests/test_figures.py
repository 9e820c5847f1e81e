"""The figure registry (l2l_tf.evaluation.figures): flagfile figures, plugins, flags, tables."""

import importlib.metadata
import json
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest

from l2l_tf.evaluation import figures

REPO = Path(__file__).resolve().parent.parent
FLAGFILES = sorted((REPO / "flags").glob("*.flags"))
MNIST_PAPER = ["mnist", "mnist_200_steps", "mnist_2_layers", "mnist_40_units",
               "mnist_architecture_sweep", "mnist_relu"]
REVIEW = ["estimator_bias", "review_fast_weights_mnist", "review_fast_weights_quadratic",
          "review_forget_gate", "review_hochreiter2001", "review_ssa", "review_step_size_control"]
LSTM_V2 = ["mnist_v2_ablation"]  # l2l_tf_experiments.lstm_v2's plugin.
LIBRARY = ["neural_art_images"]  # The library's figures that are not a flagfile's curves.


@pytest.fixture(name="fresh")
def fixture_fresh(monkeypatch):
  """The registry built anew for a test (and again after it)."""
  figures.registry.cache_clear()
  yield monkeypatch
  figures.registry.cache_clear()


def test_every_flagfile_is_a_figure_with_its_data_sets_and_tags():
  registry = figures.registry()
  for path in FLAGFILES:
    figure = registry.get(path.stem)
    assert figure.flagfile == path and figure.flag_modules == ("l2l_tf.cli",)
    assert figure.datasets == (("mnist",) if path.stem.startswith(("mnist", "es_rule_mnist")) else
                               ("fashion_mnist",) if path.stem.startswith("conv_fashion") else
                               ("photos",) if path.stem.startswith("neural_art") else ())
  assert registry.names(["paper", "mnist"]) == MNIST_PAPER  # make reproduce-mnist
  conv = [p.stem for p in FLAGFILES if p.stem.startswith(("conv_", "cifar"))]
  assert len(conv) == 6
  neural_art = ["neural_art", "neural_art_images", "neural_art_new_style"]
  assert registry.names(["paper", "photos"]) == neural_art
  assert registry.names(["paper"]) == sorted(MNIST_PAPER + ["quadratic"] + conv + neural_art)
  assert registry.names() == sorted([p.stem for p in FLAGFILES] + REVIEW + LSTM_V2 + LIBRARY)
  assert registry.get("mnist_relu").description.startswith("Paper Fig. 5 (right)")


def test_experiment_figures_are_found_without_installed_metadata(fresh):
  # A checkout or Bazel: no entry points, the built-in plugin list finds the experiments.
  fresh.setattr(importlib.metadata, "entry_points", lambda **kwargs: [])
  registry = figures.registry()
  assert set(REVIEW) <= set(registry.figures)
  assert registry.get("review_forget_gate").datasets == ("mnist",)
  assert [s.title for s in registry.summaries] == ["Against the paper",
                                                   "The review's side-by-side table"]


def test_plugins_found_through_an_entry_point_and_none_needed(fresh, tmp_path):
  plugin = types.ModuleType("l2l_tf_test_plugin")
  plugin.figures = lambda: [figures.Figure("plugged_in", lambda output_dir, retrain: {},
                                           flags=("plugged_in_flag",))]
  fresh.setitem(sys.modules, "l2l_tf_test_plugin", plugin)
  entry = importlib.metadata.EntryPoint("test", "l2l_tf_test_plugin", figures.ENTRY_POINT_GROUP)
  fresh.setattr(importlib.metadata, "entry_points", lambda **kwargs: [entry])
  fresh.setattr(figures, "BUILTIN_PLUGINS", ())
  registry = figures.registry()
  assert "plugged_in" in registry.figures and not set(REVIEW) & set(registry.figures)
  assert registry.foreign_flags(registry.get("quadratic"), ["plugged_in_flag"]) == [
      "plugged_in_flag"]
  # Without plugins the library has its own figures only.
  fresh.setattr(importlib.metadata, "entry_points", lambda **kwargs: [])
  figures.registry.cache_clear()
  assert figures.registry().names() == sorted([p.stem for p in FLAGFILES] + LIBRARY)


def test_a_missing_plugin_is_skipped_and_a_broken_one_raises(fresh, tmp_path):
  fresh.setattr(importlib.metadata, "entry_points", lambda **kwargs: [])
  fresh.setattr(figures, "BUILTIN_PLUGINS", ("no_such_package.figures",
                                             "l2l_tf_experiments.no_such_module"))
  assert figures.registry().names() == sorted([p.stem for p in FLAGFILES] + LIBRARY)
  (tmp_path / "broken_plugin.py").write_text("import no_such_dependency\n")
  fresh.syspath_prepend(str(tmp_path))
  fresh.setattr(figures, "BUILTIN_PLUGINS", ("broken_plugin",))
  figures.registry.cache_clear()
  with pytest.raises(ModuleNotFoundError, match="no_such_dependency"):
    figures.registry()


def test_unknown_figure_lists_the_choices():
  with pytest.raises(figures.UnknownFigureError) as error:
    figures.registry().get("nope")
  assert str(error.value).startswith("Unknown figure 'nope'; choose one of: cifar10, ")
  assert "quadratic, " in str(error.value) and "review_step_size_control." in str(error.value)


def test_the_neural_art_images_figure_has_the_training_settings_and_needs_the_photographs():
  registry = figures.registry()
  images = registry.get("neural_art_images")
  assert images.flagfile == registry.get("neural_art").flagfile
  assert images.datasets == ("photos",) and images.requires == ("pretrained:neural_art",)
  assert images.description.startswith("Paper Fig. 9")
  argv = figures.with_figure_flagfile(["prog", "--figure=neural_art_images"])
  assert "--problem=neural_art" in argv and "--style_image=ihc" in argv
  assert registry.get("neural_art_new_style").requires == ("pretrained:neural_art",)
  assert not any("no offline copy" in r for r in images.missing())  # The photographs are fetched.


def test_figures_say_what_they_miss_to_run_from_what_is_shipped():
  registry = figures.registry()
  assert registry.get("quadratic").missing() == []
  assert registry.get("mnist_information_sharing").missing() == []  # package: paths resolve.
  cifar = registry.get("cifar2")
  assert cifar.requires == ("pretrained:cifar10", "pretrained:cifar_sub_2",
                            "pretrained:cifar10_one_lstm")
  reasons = cifar.missing()
  assert any("pretrained:cifar10 is not there" in r for r in reasons)
  assert any("data set cifar10, which has no offline copy" in r for r in reasons)


@pytest.mark.parametrize("figure,given,foreign", [
    ("quadratic", ["review_budget", "num_steps", "output_dir", "retrain", "helpfull"],
     ["review_budget"]),
    ("review_forget_gate", ["num_steps", "seed", "learning_rate_grid", "review_budget",
                            "review_ablation_seeds", "threads"], ["num_steps", "review_budget"]),
    ("review_hochreiter2001", ["review_ablation_seeds", "review_budget", "data_dir", "seed"],
     ["data_dir", "review_ablation_seeds"]),
])
def test_flags_of_other_figures_are_foreign(figure, given, foreign):
  registry = figures.registry()
  assert registry.foreign_flags(registry.get(figure), given) == foreign


def test_flagfile_flags_come_first_so_the_command_line_overrides_them():
  argv = figures.with_figure_flagfile(["prog", "--figure=mnist_relu", "--activation=sigmoid"])
  assert argv[0] == "prog" and argv[-2:] == ["--figure=mnist_relu", "--activation=sigmoid"]
  assert argv.index("--problem=mnist") < argv.index("--activation=relu") < len(argv) - 1
  assert figures.with_figure_flagfile(["prog", "--figure=review_forget_gate"]) == [
      "prog", "--figure=review_forget_gate"]


def test_report_prints_each_figure_table_and_the_summaries_as_in_the_readme(capsys):
  from l2l_tf import report  # pylint: disable=g-import-not-at-top
  names = ["mnist", "mnist_200_steps", "mnist_40_units", "mnist_2_layers", "mnist_relu",
           "review_forget_gate", "review_hochreiter2001", "review_step_size_control",
           "review_ssa", "review_fast_weights_quadratic", "review_fast_weights_mnist"]
  by_figure = {n: json.loads((REPO / "docs" / "figures" / f"{n}.json").read_text())
               for n in names + ["quadratic"]}
  report.main(["report"] + [str(REPO / "docs" / "figures" / f"{n}.json") for n in names])
  out = capsys.readouterr().out
  registry = figures.registry()
  summaries = registry.summary_tables({n: by_figure[n] for n in names})
  assert [title for title, _ in summaries] == ["Against the paper",
                                               "The review's side-by-side table"]
  printed = {n: registry.table(by_figure[n]) for n in names}
  assert all(text in out for text in list(printed.values()) + [t for _, t in summaries])
  printed["quadratic"] = registry.table(by_figure["quadratic"])
  # The README's tables are what report prints (those the README shows in full).
  readme = (REPO / "README.md").read_text()
  shown = [printed["quadratic"], printed["review_forget_gate"]] + [t for _, t in summaries]
  missing = [line for text in shown for line in text.splitlines()
             if line.startswith("| ") and line not in readme]
  assert not missing, missing
  assert registry.summary_tables({"quadratic": by_figure["quadratic"]}) == []
  assert registry.table(dict(by_figure["quadratic"], figure="tiny")).startswith("**tiny**")


def test_reproduce_refuses_a_flag_of_another_figure():
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  proc = subprocess.run([sys.executable, "-m", "l2l_tf.reproduce", "--figure=quadratic",
                         "--review_budget=5", "--output_dir=/nonexistent/out"], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert "error: --review_budget: not read by --figure=quadratic" in proc.stderr
  listed = subprocess.run([sys.executable, "-m", "l2l_tf.reproduce", "--list_figures",
                           "--tags=paper,mnist"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
  assert listed.stdout.split() == MNIST_PAPER


def test_report_plot_draws_a_curve_figure_again_and_refuses_a_file_without_curves(tmp_path):
  results = json.loads((REPO / "docs" / "figures" / "quadratic.json").read_text())
  (tmp_path / "quadratic.json").write_text(json.dumps(results))
  (tmp_path / "images.json").write_text(json.dumps({"figure": "neural_art_images", "panels": []}))
  run = lambda name: subprocess.run(
      [sys.executable, "-m", "l2l_tf.report", "--plot", "--plot_first_step=10",
       str(tmp_path / name)], cwd=REPO, capture_output=True, text=True, check=False)
  done = run("quadratic.json")
  assert done.returncode == 0, done.stderr
  assert (tmp_path / "quadratic.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
  assert f"wrote {tmp_path / 'quadratic.png'}" in done.stdout
  refused = run("images.json")
  assert refused.returncode == 1 and "has no loss curves to plot" in refused.stderr
  assert not (tmp_path / "images.png").exists()


@pytest.mark.parametrize("name", [
    "quadratic", "quadratic_information_sharing", "mnist_information_sharing",
    "mnist_architecture_sweep", "mnist_long_horizon", "conv_fashion_mnist_10",
    "conv_fashion_mnist_5", "conv_fashion_mnist_2", "es_rule_quadratic", "es_rule_mnist",
    "estimator_bias", "review_step_size_control", "review_ssa", "review_ssa_floor", "neural_art",
    "neural_art_new_style", "neural_art_images", "review_fast_weights_quadratic"])
def test_readme_shows_the_table_report_prints_for_the_committed_results(name):
  """README shows these figures' tables in full: every line `report` prints after the title (the
  table, the ratio and verdict lines, the paired comparisons) is in README, so a rerun figure or a
  changed table cannot leave README behind."""
  results = json.loads((REPO / "docs" / "figures" / f"{name}.json").read_text())
  lines = [line for line in figures.registry().table(results).splitlines()[2:] if line.strip()]
  readme = (REPO / "README.md").read_text()
  assert lines and [line for line in lines if line not in readme] == []
