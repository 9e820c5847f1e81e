"""LogAndSign against the paper's Appendix A formula and DeepMind's clamped form."""

import math

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf.optimizers import preprocessing

GRADS = np.array([0.0, 1e-7, -1e-7, 4.6e-5, -4.5e-5, math.exp(-10), -math.exp(-10), 1e-3, -0.5,
                  1.0, -3.0, 1e3, -1e6], np.float64)


def paper_log_and_sign(g, p):
  """Appendix A, written out case by case."""
  out = []
  for x in g:
    if abs(x) >= math.exp(-p):
      out.append((math.log(abs(x)) / p, float(np.sign(x))))
    else:
      out.append((-1.0, math.exp(p) * x))
  return np.array(out)


@pytest.mark.parametrize("p", [10.0, 5.0, 1.0])
def test_log_and_sign_matches_paper_formula(p):
  got = preprocessing.LogAndSign(p)(tf.constant(GRADS)).numpy()
  np.testing.assert_allclose(got, paper_log_and_sign(GRADS, p), rtol=1e-12, atol=1e-12)


def test_log_and_sign_is_continuous_at_threshold():
  pre = preprocessing.LogAndSign(10.0)
  t = math.exp(-10)
  below = pre(tf.constant([t * (1 - 1e-9)], tf.float64)).numpy()
  above = pre(tf.constant([t * (1 + 1e-9)], tf.float64)).numpy()
  np.testing.assert_allclose(below, above, atol=1e-7)


def test_clamped_log_and_sign_matches_deepmind_code():
  k = 5.0
  got = preprocessing.LogAndSign(k, clamped=True)(tf.constant(GRADS)).numpy()
  eps = np.finfo(np.float64).eps
  log = np.maximum(np.log(np.abs(GRADS) + eps) / k, -1.0)
  sign = np.clip(GRADS * np.exp(k), -1.0, 1.0)
  np.testing.assert_allclose(got, np.stack([log, sign], -1), rtol=1e-12, atol=1e-12)


def test_log_and_sign_gradient_is_finite_at_zero():
  g = tf.constant([0.0, 1e-30, 2.0])
  with tf.GradientTape() as tape:
    tape.watch(g)
    out = preprocessing.LogAndSign(10.0)(g)
  grad = tape.gradient(out, g).numpy()
  assert np.all(np.isfinite(grad))


def test_identity_scales_and_shapes():
  out = preprocessing.Identity(scale=0.5)(tf.constant([2.0, -4.0])).numpy()
  np.testing.assert_array_equal(out, [[1.0], [-2.0]])


def test_invalid_settings_raise():
  with pytest.raises(ValueError, match="p > 0"):
    preprocessing.LogAndSign(0.0)
  with pytest.raises(ValueError, match="Unknown preprocessing"):
    preprocessing.make_preprocessing("nope")


@pytest.mark.parametrize("pre", [preprocessing.Identity(scale=2.0), preprocessing.LogAndSign(),
                                 preprocessing.LogAndSign(p=5.0, clamped=True)])
def test_feature_major_layout_is_the_transpose(pre):
  g = tf.constant([0.0, -1e-6, 3e-3, -0.5, 7.0], tf.float32)
  coordinate_major = pre(g).numpy()
  assert coordinate_major.shape == (5, pre.output_size)
  np.testing.assert_array_equal(pre(g, feature_major=True).numpy(), coordinate_major.T)


def normalized_moments_numpy(grads, decays, b2, eps):
  """An independent transcription: Adam's bias-corrected moments, one coordinate vector."""
  m = np.zeros((len(decays),) + grads[0].shape)
  v = np.zeros_like(grads[0])
  out = []
  for t, g in enumerate(grads, 1):
    m = np.array([b * m_k + (1 - b) * g for b, m_k in zip(decays, m)])
    v = b2 * v + (1 - b2) * g * g
    denominator = np.sqrt(v / (1 - b2 ** t)) + eps
    m_hat = [m_k / (1 - b ** t) for b, m_k in zip(decays, m)]
    out.append(np.stack([g / denominator] + [mh / denominator for mh in m_hat], axis=-1))
  return out


@pytest.mark.parametrize("feature_major", [False, True])
def test_normalized_moments_match_numpy_and_ignore_the_loss_scale(feature_major):
  pre = preprocessing.NormalizedMoments(momentum_decays=(0.5, 0.9), second_moment_decay=0.99,
                                        epsilon=1e-12)
  assert pre.output_size == 3 and pre.state_size == 4
  rng = np.random.default_rng(4)
  grads = [rng.normal(size=6) * 10.0 ** rng.uniform(-4, 2, size=6) for _ in range(5)]
  expected = normalized_moments_numpy(grads, (0.5, 0.9), 0.99, 1e-12)
  for scale in (1.0, 1e3):
    state = tf.zeros([4, 6] if feature_major else [6, 4], tf.float64)
    for g, want in zip(grads, expected):
      x, state = pre(tf.constant(scale * g), state, feature_major=feature_major)
      got = x.numpy().T if feature_major else x.numpy()
      np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-9)
  np.testing.assert_allclose(expected[0][:, 0], np.sign(grads[0]), rtol=1e-6)  # |g| / |g| at t=1.
  with pytest.raises(ValueError, match="decays"):
    preprocessing.NormalizedMoments(momentum_decays=(1.0,))
