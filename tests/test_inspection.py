"""The inspection entry point writes the promised TensorBoard data; no l2l_tf name shadows."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from l2l_tf import optimizers, problems
from l2l_tf.meta import unroll

REPO = Path(__file__).resolve().parent.parent
NUM_STEPS = 6


def run(args, module=True, cwd=REPO):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  target = ["-m", "l2l_tf.inspection"] if module else [str(REPO / "l2l_tf" / "inspection.py")]
  return subprocess.run([sys.executable, *target, *args], cwd=cwd, env=env, capture_output=True,
                        text=True, timeout=300)


def read_events(logdir: Path):
  """{tag: {"plugin": name, "steps": [...], "values": [...]}} from the event files in logdir."""
  tags = {}
  for path in sorted(logdir.glob("events.out.tfevents.*")):
    for event in tf.compat.v1.train.summary_iterator(str(path)):
      for value in event.summary.value:
        entry = tags.setdefault(value.tag, {"plugin": value.metadata.plugin_data.plugin_name,
                                            "steps": [], "values": []})
        entry["steps"].append(event.step)
        entry["values"].append(tf.make_ndarray(value.tensor))
  return tags


def test_inspect_logs_losses_histograms_cell_states_and_the_appendix_b_image(tmp_path):
  logdir = tmp_path / "logs"
  proc = run(["--optimizer=quadratic", "--problem=quadratic", "--num_dims=4", f"--logdir={logdir}",
              f"--num_steps={NUM_STEPS}", "--num_coordinates=3", "--seed=2", "--threads=1"])
  assert proc.returncode == 0, proc.stderr[-3000:]
  tags = read_events(logdir)
  expected = {"loss": "scalars", "updates": "histograms", "effective_learning_rate": "histograms",
              "appendix_b/updates_vs_gradient": "images"}
  for layer in (0, 1):
    expected.update({f"cell_state/layer{layer}/mean_abs": "scalars",
                     f"cell_state/layer{layer}/std_abs": "scalars",
                     f"cell_state/layer{layer}": "histograms",
                     f"gates/layer{layer}_forget": "histograms"})
  for tag, plugin in expected.items():
    assert tag in tags, f"missing {tag}; have {sorted(tags)}"
    assert tags[tag]["plugin"] == plugin, tag
  assert tags["updates"]["steps"] == list(range(NUM_STEPS))
  assert tags["loss"]["steps"] == list(range(NUM_STEPS + 1))
  assert all(np.all(v >= 0) for v in tags["cell_state/layer1/mean_abs"]["values"])
  image = tags["appendix_b/updates_vs_gradient"]["values"][0]
  assert image[2][:4] == b"\x89PNG"  # [width, height, encoded PNG]
  written = (logdir / "appendix_b.png").read_bytes()
  np.testing.assert_array_equal(tf.image.decode_png(image[2]).numpy(),
                                tf.image.decode_png(written).numpy())

  # The logged losses are the library trajectory's on the same test instance.
  problem = problems.make_problem({"name": "quadratic", "num_dims": 4})
  instance, params = problem.sample(1, problems.split_seed(2, "test"))
  optimizer = optimizers.load_optimizer("quadratic")
  losses, _, _ = unroll.trajectory(problem, optimizer, instance, params,
                                   optimizer.initial_state(params), NUM_STEPS)
  np.testing.assert_allclose(np.array(tags["loss"]["values"], np.float32), losses.numpy()[:, 0],
                             rtol=1e-4)


def test_no_l2l_tf_module_shadows_the_standard_library_or_a_dependency():
  # `python l2l_tf/<entry point>.py`, as Bazel's py_binary runs entry points, puts l2l_tf/ first on
  # sys.path: a module there named like one of the standard library or of a dependency (formerly
  # inspect.py and keras/) would be imported in its place.
  import importlib.metadata  # pylint: disable=g-import-not-at-top
  dependencies = {name.replace("-", "_").lower()
                  for name in importlib.metadata.packages_distributions()}
  taken = set(sys.stdlib_module_names) | dependencies | {"keras", "tensorflow", "sonnet", "absl"}
  names = {p.stem for p in (REPO / "l2l_tf").glob("*.py")} | {
      p.name for p in (REPO / "l2l_tf").iterdir() if (p / "__init__.py").is_file()}
  assert "inspection" in names and "keras_optimizer" in names
  assert not names & taken, sorted(names & taken)


def test_entry_point_runs_as_a_script_file(tmp_path):
  proc = run(["--optimizer=quadratic", "--problem=quadratic", "--num_dims=3",
              f"--logdir={tmp_path}", "--num_steps=2", "--threads=1"], module=False)
  assert proc.returncode == 0, proc.stderr[-3000:]


def test_bad_input_is_one_line():
  proc = run(["--optimizer=quadratic"])
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == "error: --logdir is required."
  assert "Traceback" not in proc.stderr
