"""The L-BFGS baseline against an independent NumPy two-loop recursion."""

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import optimizers, problems
from l2l_tf.evaluation import curves


def numpy_lbfgs(grad_fn, x, lr, memory, steps):
  """Nocedal & Wright Alg. 7.4 with H0 = s'y / y'y I and a fixed step size; returns the iterates."""
  pairs = []
  out = [x.copy()]
  g = grad_fn(x)
  for _ in range(steps):
    q = g.copy()
    alphas = []
    for s, y in reversed(pairs):
      a = (s @ q) / (s @ y)
      alphas.append(a)
      q = q - a * y
    gamma = (pairs[-1][0] @ pairs[-1][1]) / (pairs[-1][1] @ pairs[-1][1]) if pairs else 1.0
    r = gamma * q
    for (s, y), a in zip(pairs, reversed(alphas)):
      b = (y @ r) / (s @ y)
      r = r + (a - b) * s
    step = -lr * r
    x_new = x + step
    g_new = grad_fn(x_new)
    s, y = step, g_new - g
    if s @ y > 1e-10 * np.linalg.norm(s) * np.linalg.norm(y) and s @ y > 0:
      pairs = (pairs + [(s, y)])[-memory:]
    x, g = x_new, g_new
    out.append(x.copy())
  return np.array(out)


@pytest.mark.parametrize("memory,lr", [(3, 0.5), (10, 1.0), (1, 0.2)])
def test_matches_numpy_two_loop_recursion(memory, lr):
  rng = np.random.default_rng(memory)
  a = rng.normal(size=(6, 6))
  b = rng.normal(size=6)
  grad_fn = lambda x: 2 * a.T @ (a @ x - b)
  x0 = rng.normal(size=6) * 0.1
  opt = optimizers.LBFGS(learning_rate=lr, memory=memory, instance_axis=False)
  params = [tf.constant(x0)]
  state = opt.initial_state(params)
  got = [x0]
  for _ in range(12):
    updates, state = opt.step([tf.constant(grad_fn(params[0].numpy()))], state)
    params = [params[0] + updates[0]]
    got.append(params[0].numpy())
  np.testing.assert_allclose(np.array(got), numpy_lbfgs(grad_fn, x0, lr, memory, 12),
                             rtol=1e-7, atol=1e-9)


def test_instances_are_independent_and_it_minimises_quadratics():
  problem = problems.Quadratic(num_dims=5, dtype=tf.float64)
  instance, params = problem.sample(4, problems.split_seed(0, "test"))
  opt = optimizers.LBFGS(learning_rate=0.5, memory=5)
  losses = curves.evaluate_losses(problem, opt, instance, params, 60)
  alone = curves.evaluate_losses(problem, opt, {k: v[2:3] for k, v in instance.items()},
                                 [params[0][2:3]], 60)
  np.testing.assert_allclose(losses[2], alone[0], rtol=1e-8)
  assert np.all(losses[:, -1] < 1e-3 * losses[:, 0])


def test_registered_as_a_tunable_baseline():
  from l2l_tf.optimizers import baselines  # pylint: disable=g-import-not-at-top
  assert baselines.LEGEND_NAMES["lbfgs"] == "L-BFGS"
  opt = optimizers.make_optimizer({"name": "lbfgs", "learning_rate": 0.3, "memory": 4})
  assert opt.get_config()["memory"] == 4
  with pytest.raises(ValueError, match="memory"):
    optimizers.LBFGS(memory=0)
