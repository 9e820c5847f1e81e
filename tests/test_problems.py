"""Problems: losses against NumPy, shapes, and disjoint, reproducible seeds."""

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import problems


@pytest.mark.parametrize("family", ["paper", "deepmind"])
def test_quadratic_loss_matches_numpy(family):
  p = problems.Quadratic(family=family, num_averaged=7, dtype=tf.float64)
  instance, params = p.sample(3, problems.split_seed(0, "train"))
  w, y, theta = instance["w"].numpy(), instance["y"].numpy(), params[0].numpy()
  got = p.loss(params, instance, 0).numpy()
  if family == "paper":
    assert w.shape == (3, 10, 10) and y.shape == (3, 10)
    expected = [np.sum((w[i] @ theta[i] - y[i]) ** 2) for i in range(3)]
  else:
    assert w.shape == (3, 7, 10, 10) and w.min() >= 0 and w.max() < 1
    expected = [np.mean([np.sum((w[i, k] @ theta[i] - y[i, k]) ** 2) for k in range(7)])
                for i in range(3)]
  np.testing.assert_allclose(got, expected, rtol=1e-12)


def test_paper_quadratic_statistics():
  p = problems.Quadratic()
  instance, params = p.sample(2000, problems.split_seed(1, "train"))
  w = instance["w"].numpy()
  assert abs(w.mean()) < 0.01 and abs(w.std() - 1) < 0.01
  assert abs(params[0].numpy().std() - 0.01) < 0.001
  # theta_0 ~ 0, so f(theta_0) ~ ||y||^2 ~ chi-square(10): mean 10.
  assert abs(p.loss(params, instance, 0).numpy().mean() - 10.0) < 0.5


def test_splits_are_disjoint_and_reproducible():
  p = problems.Quadratic()
  a = p.sample(4, problems.split_seed(0, "valid"))[0]["w"].numpy()
  b = p.sample(4, problems.split_seed(0, "valid"))[0]["w"].numpy()
  c = p.sample(4, problems.split_seed(0, "test"))[0]["w"].numpy()
  d = p.sample(4, problems.split_seed(1, "valid"))[0]["w"].numpy()
  np.testing.assert_array_equal(a, b)
  assert not np.allclose(a, c) and not np.allclose(a, d)


def test_square_problem():
  p = problems.Square()
  instance, params = p.sample(2, problems.split_seed(0, "train"))
  np.testing.assert_array_equal(params[0].numpy(), [1.0, 1.0])
  np.testing.assert_array_equal(p.loss([tf.constant([2.0, -3.0])], instance, 0).numpy(), [4, 9])


def test_make_problem_errors():
  with pytest.raises(ValueError, match="Unknown problem"):
    problems.make_problem("nope")
  with pytest.raises(ValueError, match="family"):
    problems.Quadratic(family="other")
  with pytest.raises(ValueError, match="split"):
    problems.split_seed(0, "training")
