"""Property-based tests: the optimizer step on extreme gradients, and the entry points' flags."""

import contextlib
import io

import numpy as np
import pytest
import tensorflow as tf
from hypothesis import HealthCheck, given, settings, strategies as st

from l2l_tf import optimizers
from tests import helpers

OPTIMIZERS = {
    "sgd": lambda: optimizers.SGD(0.1),
    "rmsprop": lambda: optimizers.RMSprop(0.01),
    "adam": lambda: optimizers.Adam(0.01),
    "nag": lambda: optimizers.NAG(0.01),
    "lstm": lambda: optimizers.CoordinatewiseLSTM(hidden_sizes=(6,), seed=1),
    "lstm_log_and_sign": lambda: optimizers.CoordinatewiseLSTM(
        hidden_sizes=(6,), preprocessing={"name": "log_and_sign"}, output_scale=0.1),
}
_BUILT = {name: make() for name, make in OPTIMIZERS.items()}

finite = st.one_of(st.just(0.0), st.floats(-2.0 ** 100, 2.0 ** 100, width=32),
                   st.sampled_from([1e-30, -1e-30, 1e-45, 3e30, -3e30]))
anything = st.one_of(finite, st.sampled_from([np.inf, -np.inf, np.nan]))
SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


def run(opt, values, steps=3):
  g = tf.constant(np.asarray(values, np.float32))
  state = opt.initial_state([g])
  out = []
  for _ in range(steps):
    updates, state = opt.step([g], state)
    out.append(updates[0].numpy())
  return np.array(out)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@SETTINGS
@given(values=st.lists(finite, min_size=1, max_size=8))
def test_finite_gradients_give_finite_updates(name, values):
  assert np.all(np.isfinite(run(_BUILT[name], values)))


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@SETTINGS
@given(values=st.lists(anything, min_size=1, max_size=8))
def test_non_finite_gradients_are_never_hidden(name, values):
  """A coordinate whose gradient is inf or NaN gets a non-finite update: no silent NaN."""
  updates = run(_BUILT[name], values, steps=1)[0]
  bad = ~np.isfinite(np.asarray(values, np.float32))
  assert np.all(~np.isfinite(updates[bad]))
  if name == "lstm" or name.startswith("lstm"):
    assert np.all(np.isfinite(updates[~bad]))  # Coordinatewise: the others are unaffected.


int_flag = st.one_of(st.integers(-3, 8), st.sampled_from([0, 1, 2, 3, 4, 6]))


@SETTINGS
@given(horizon=int_flag, truncation=int_flag, epochs=st.integers(-1, 2),
       batch=st.integers(-1, 2), lr=st.sampled_from([-1.0, 0.0, 1e-3, 0.1, float("nan")]),
       hidden=st.sampled_from(["4", "0", "-2", "x", "3,3", ""]),
       threads=st.integers(-1, 1))
def test_train_flags_never_crash(tmp_path_factory, horizon, truncation, epochs, batch, lr, hidden,
                                 threads):
  """Any combination either trains or exits with a one-line error; never a traceback."""
  from l2l_tf import train  # pylint: disable=g-import-not-at-top
  out = tmp_path_factory.mktemp("run")
  argv = ["train", "--problem=quadratic", "--num_dims=2", "--progress=false",
          "--num_validation_problems=2", "--validation_every=1", "--deterministic=false",
          f"--horizon={horizon}", f"--truncation={truncation}", f"--num_epochs={epochs}",
          f"--meta_batch_size={batch}", f"--meta_learning_rate={lr}",
          f"--hidden_sizes={hidden}", f"--threads={threads}", f"--output_dir={out}"]
  stderr = io.StringIO()
  try:
    with helpers.parsed_flags(argv), contextlib.redirect_stderr(stderr), \
        contextlib.redirect_stdout(io.StringIO()):
      train.main(argv[:1])
    code = 0
  except SystemExit as e:
    code = e.code
  assert code in (0, 1, None)
  if code == 1:
    message = stderr.getvalue().strip()
    assert message.startswith("error: ") and "\n" not in message, message
