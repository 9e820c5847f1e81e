"""The SavedModel export: written by the entry point, run by TensorFlow alone, as the library."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import optimizers
from l2l_tf.optimizers import serialization

REPO = Path(__file__).resolve().parent.parent

# Runs in a fresh interpreter: isolated mode (-I: no PYTHONPATH, no user site, no script dir on
# sys.path), cwd outside the repository, and l2l_tf made unimportable (the virtualenv may hold an
# editable install of it).
FRESH_SCRIPT = r"""
import sys
sys.modules["l2l_tf"] = None
try:
  import l2l_tf
  raise SystemExit("l2l_tf is importable")
except ImportError:
  pass
import numpy as np
import tensorflow as tf
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)

data = np.load("sample.npz")
grads, expected = data["grads"], data["updates"]
opt = tf.saved_model.load(sys.argv[1])
state = opt.initial_state(grads.shape[1])
flat = opt.signatures["initial_state"](n=tf.constant(grads.shape[1]))
for t in range(len(grads)):
  updates, state = opt.step(tf.constant(grads[t]), state)
  np.testing.assert_allclose(updates.numpy(), expected[t], rtol=1e-5, atol=1e-7)
  out = opt.signatures["step"](grads=tf.constant(grads[t]), **flat)
  np.testing.assert_allclose(out.pop("updates").numpy(), expected[t], rtol=1e-5, atol=1e-7)
  flat = out
assert not any(name == "l2l_tf" or name.startswith("l2l_tf.") for name, m in sys.modules.items()
               if m is not None)
print("config", opt.config_json.numpy().decode())
print("fresh ok", len(state), [tuple(t.shape) for t in tf.nest.flatten(state)])
"""


def run_entry_point(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  return subprocess.run([sys.executable, "-m", "l2l_tf.export", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("preprocessing", ["log_and_sign", "normalized_moments"])
def test_exported_step_runs_without_l2l_tf_and_equals_the_library_step(tmp_path, preprocessing):
  module = optimizers.CoordinatewiseLSTM(hidden_sizes=(6, 3), output_scale=0.1, seed=11,
                                         preprocessing={"name": preprocessing})
  serialization.save_optimizer(module, tmp_path / "opt", metadata={"note": "test"})
  proc = run_entry_point(f"--optimizer={tmp_path / 'opt'}", f"--output_dir={tmp_path / 'sm'}",
                         "--threads=1")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "wrote SavedModel" in proc.stdout

  rng = np.random.default_rng(0)
  grads = (rng.normal(size=(5, 13)) * np.logspace(-6, 1, 13)).astype(np.float32)
  state = module.initial_state([tf.constant(grads[0])])
  updates = []
  for g in grads:
    (u,), state = module.step([tf.constant(g)], state)
    updates.append(u.numpy())
  work = tmp_path / "elsewhere"
  work.mkdir()
  np.savez(work / "sample.npz", grads=grads, updates=np.stack(updates))
  (work / "check.py").write_text(FRESH_SCRIPT)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
  env["TF_CPP_MIN_LOG_LEVEL"] = "3"
  proc = subprocess.run([sys.executable, "-I", "check.py", str(tmp_path / "sm")], cwd=work,
                        env=env, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 0, proc.stderr[-3000:]
  shapes = "[(13, 6), (13, 6), (13, 3), (13, 3)]"
  if preprocessing == "normalized_moments":  # Its state (m_1..m_3, v, t) comes last.
    assert f"fresh ok 3 {shapes[:-1]}, (13, 5)]" in proc.stdout
  else:
    assert f"fresh ok 2 {shapes}" in proc.stdout
  config = json.loads(proc.stdout.split("config ", 1)[1].split("\n", 1)[0])
  assert config["optimizer"] == module.get_config()
  assert config["metadata"] == {"note": "test"}


def test_export_rejects_what_it_cannot_export(tmp_path):
  from l2l_tf import export  # pylint: disable=g-import-not-at-top
  serialization.save_optimizer(optimizers.SGD(0.1), tmp_path / "sgd")
  with pytest.raises(ValueError, match="coordinatewise"):
    export.export_optimizer(tmp_path / "sgd", tmp_path / "out")
  grouped = optimizers.GroupedOptimizer(
      {"a": optimizers.CoordinatewiseLSTM(hidden_sizes=(3,), name="a"),
       "b": optimizers.CoordinatewiseLSTM(hidden_sizes=(2,), name="b")}, ["a", "b"])
  serialization.save_optimizer(grouped, tmp_path / "grouped")
  with pytest.raises(ValueError, match="--group"):
    export.export_optimizer(tmp_path / "grouped", tmp_path / "out")
  assert not (tmp_path / "out").exists()
  path = export.export_optimizer(tmp_path / "grouped", tmp_path / "out", group="b")
  loaded = tf.saved_model.load(str(path))
  assert [tuple(h.shape) for h, _ in loaded.initial_state(4)] == [(4, 2)]


def test_entry_point_reports_a_missing_optimizer_in_one_line(tmp_path):
  proc = run_entry_point(f"--output_dir={tmp_path}")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == (
      "error: --optimizer is required: a shipped name (e.g. quadratic) or a saved optimizer's "
      "directory.")
  assert "Traceback" not in proc.stderr
