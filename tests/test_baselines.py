"""SGD, RMSprop, Adam and NAG against independent NumPy transcriptions of Torch7 `optim`."""

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import optimizers

RNG = np.random.default_rng(0)
A = RNG.normal(size=(5, 5))
B = RNG.normal(size=5)


def grad_fn(x):
  """Gradient of ||A x - b||^2."""
  return 2.0 * A.T @ (A @ x - B)


def run_library(opt, x0, steps):
  """Pure-step trajectory: the points at which gradients were evaluated."""
  params = [tf.constant(x0)]
  state = opt.initial_state(params)
  visited = []
  for _ in range(steps):
    visited.append(params[0].numpy())
    updates, state = opt.step([tf.constant(grad_fn(params[0].numpy()))], state)
    params = [params[0] + updates[0]]
  return np.array(visited)


def torch_sgd(x, lr, steps):
  out = []
  for _ in range(steps):
    out.append(x.copy())
    x = x - lr * grad_fn(x)
  return np.array(out)


def torch_rmsprop(x, lr, steps, alpha=0.99, eps=1e-8):
  m = np.zeros_like(x)
  out = []
  for _ in range(steps):
    out.append(x.copy())
    g = grad_fn(x)
    m = alpha * m + (1 - alpha) * g * g
    x = x - lr * g / (np.sqrt(m) + eps)
  return np.array(out)


def torch_adam(x, lr, steps, b1=0.9, b2=0.999, eps=1e-8):
  m = np.zeros_like(x)
  v = np.zeros_like(x)
  out = []
  for t in range(1, steps + 1):
    out.append(x.copy())
    g = grad_fn(x)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    step_size = lr * np.sqrt(1 - b2 ** t) / (1 - b1 ** t)
    x = x - step_size * m / (np.sqrt(v) + eps)
  return np.array(out)


def torch_nag(x, lr, steps, mom=0.9):
  """Torch7 nag.lua: x += mom*v (look ahead), g = grad(x), v = mom*v - lr*g, x += -lr*g."""
  v = None
  out = []
  for _ in range(steps):
    if v is None:
      v = np.zeros_like(x)
    else:
      x = x + mom * v
    out.append(x.copy())  # Torch evaluates f and its gradient here.
    g = grad_fn(x)
    v = mom * v - lr * g
    x = x - lr * g
  return np.array(out)


@pytest.mark.parametrize("name,reference,lr", [
    ("sgd", torch_sgd, 0.01), ("rmsprop", torch_rmsprop, 0.01), ("adam", torch_adam, 0.05),
    ("nag", torch_nag, 0.005)])
def test_matches_torch_reference(name, reference, lr):
  x0 = RNG.normal(size=5)
  got = run_library(optimizers.make_optimizer({"name": name, "learning_rate": lr}), x0, 30)
  np.testing.assert_allclose(got, reference(x0.copy(), lr, 30), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name,defaults", [
    ("sgd", {"learning_rate": 1e-3}),
    ("rmsprop", {"learning_rate": 1e-2, "alpha": 0.99, "epsilon": 1e-8}),
    ("adam", {"learning_rate": 1e-3, "beta1": 0.9, "beta2": 0.999, "epsilon": 1e-8}),
    ("nag", {"learning_rate": 1e-3, "momentum": 0.9})])
def test_torch7_defaults(name, defaults):
  config = optimizers.make_optimizer(name).get_config()
  for key, value in defaults.items():
    assert config[key] == pytest.approx(value)


def test_learning_rate_must_be_positive():
  with pytest.raises(ValueError, match="learning_rate must be > 0"):
    optimizers.Adam(learning_rate=0.0)
