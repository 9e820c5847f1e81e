"""Issue 21: the step-size controller (Daniel et al. 2016, REPS) and the Success-Story Algorithm
(figures review_step_size_control and review_ssa)."""

import dataclasses
import json

import numpy as np
import pytest
import tensorflow as tf

from l2l_tf import errors, problems
from l2l_tf.meta import unroll
from l2l_tf.optimizers import baselines
from l2l_tf.problems import mlp
from l2l_tf_experiments.review import reps, ssa, step_size_control as ssc, step_size_figure


def _tiny_mlp():
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, size=(40, 6)).astype(np.uint8)
  labels = rng.integers(0, 3, size=40)
  return mlp.MLPClassifier(images, labels, hidden_sizes=(4,), batch_size=5, num_classes=3,
                           init_stddev=0.5)


@pytest.mark.parametrize("base", ["sgd", "rmsprop"])
def test_mlp_statistics_equal_those_of_the_batch_jacobian(base):
  problem = _tiny_mlp()
  instance, params = problem.sample(3, problems.split_seed(0, "test"))
  controller = ssc.StepSizeController(base)
  state = controller.initial_state(params)
  direction = lambda g: controller.direction(g, state)
  losses, grads, along, sq_norms = ssc.per_example_statistics(problem, params, instance, 2,
                                                              direction)
  ref_losses, per_example = ssc.per_example_gradients(problem, params, instance, 2)
  d = tf.concat([tf.reshape(u, [3, -1]) for u in direction(grads)], axis=-1)
  np.testing.assert_allclose(losses, ref_losses, rtol=1e-5)
  np.testing.assert_allclose(losses.numpy().mean(1), problem.loss(params, instance, 2), rtol=1e-5)
  np.testing.assert_allclose(along, tf.einsum("nbp,np->nb", per_example, d), rtol=1e-4, atol=1e-7)
  np.testing.assert_allclose(sq_norms, tf.reduce_sum(per_example ** 2, -1), rtol=1e-4)
  flat = tf.concat([tf.reshape(g, [3, -1]) for g in grads], axis=-1)
  np.testing.assert_allclose(flat, tf.reduce_mean(per_example, 1), rtol=1e-4, atol=1e-7)


def test_quadratic_per_example_losses_average_to_the_loss_and_scale():
  problem = problems.make_problem("quadratic")
  instance, params = problem.sample(4, problems.split_seed(1, "test"))
  per_example = ssc.per_example_losses(problem, params, instance, 0)
  assert per_example.shape == (4, 10)
  np.testing.assert_allclose(per_example.numpy().mean(1), problem.loss(params, instance, 0),
                             rtol=1e-5)
  scaled = ssc.ScaledProblem(problem, 100.0)
  np.testing.assert_allclose(ssc.per_example_losses(scaled, params, instance, 0),
                             100.0 * per_example, rtol=1e-5)
  with pytest.raises(errors.ConfigError, match="per-example losses"):
    ssc.per_example_losses(problems.make_problem("square"), params, instance, 0)


def test_a_zero_policy_is_fixed_rate_sgd_and_a_bias_moves_the_rate():
  problem = problems.make_problem("quadratic")
  instance, params = problem.sample(5, problems.split_seed(2, "test"))
  controller = ssc.StepSizeController("sgd")  # w = 0: the learning rate never changes.
  losses, log_lrs = ssc.evaluate(problem, controller, instance, params, 6, 0.01)
  fixed = unroll.make_trajectory_fn(problem, baselines.SGD(0.01), 6)(instance, params).numpy().T
  np.testing.assert_allclose(losses, fixed, rtol=1e-4)
  np.testing.assert_allclose(np.exp(log_lrs), 0.01, rtol=1e-5)
  # A bias of -0.2 per step (within max_change): eta_t = 0.01 exp(-0.2 (t + 1)).
  controller.weights.assign([0, 0, 0, 0, 0, -0.2])
  _, log_lrs = ssc.evaluate(problem, controller, instance, params, 6, 0.01)
  np.testing.assert_allclose(log_lrs[0], np.log(0.01) - 0.2 * np.arange(1, 7), rtol=1e-5)
  # Clipped at max_change.
  controller.weights.assign([0, 0, 0, 0, 0, 5.0])
  _, log_lrs = ssc.evaluate(problem, controller, instance, params, 3, 0.01)
  np.testing.assert_allclose(log_lrs[0], np.log(0.01) + 1.0 * np.arange(1, 4), rtol=1e-5)


def test_controller_refuses_a_step_without_statistics_and_bad_settings():
  controller = ssc.StepSizeController("rmsprop")
  params = [tf.zeros([2, 3])]
  with pytest.raises(errors.ConfigError, match="observe"):
    controller.step([tf.ones([2, 3])], controller.initial_state(params))
  for kwargs, match in [({"base_optimizer": "adam"}, "base_optimizer"),
                        ({"weights": [1.0, 2.0]}, "6 finite numbers"),
                        ({"decay": 1.0}, "decay"), ({"max_change": 0.0}, "max_change"),
                        ({"initial_learning_rate": -1.0}, "initial_learning_rate")]:
    with pytest.raises(errors.ConfigError, match=match):
      ssc.StepSizeController(**kwargs)


def test_reps_moves_towards_high_returns_within_its_kl_bound():
  rng = np.random.default_rng(0)
  samples = rng.normal(size=(200, 2))
  returns = -np.sum((samples - [1.0, -1.0]) ** 2, axis=1)
  mean, cov, info = reps.update(samples, returns, epsilon=0.5)
  assert mean[0] > 0.2 and mean[1] < -0.2
  assert info["kl"] == pytest.approx(0.5, abs=0.02)
  assert np.all(np.linalg.eigvalsh(cov) > 0)
  # The dual's minimiser: a smaller or larger temperature gives a larger dual.
  lam = info["temperature"]
  for other in (lam * 0.8, lam * 1.25):
    assert reps.dual(other, returns, 0.5) > reps.dual(lam, returns, 0.5)
  # Equal returns: uniform weights, the sample mean.
  mean, _, info = reps.update(samples, np.zeros(200), 0.5)
  np.testing.assert_allclose(mean, samples.mean(0))
  assert info["kl"] == pytest.approx(0.0, abs=1e-12)
  with pytest.raises(errors.ConfigError, match="N >= 2"):
    reps.update(samples[:1], returns[:1], 0.5)


def test_policy_returns_count_a_diverged_run_as_a_million_times_its_start():
  losses = np.array([[2.0, 1.0, 0.5], [2.0, np.inf, np.nan], [2.0, 2.0, 2.0], [2.0, 2.0, 2.0]])
  returns = ssc.policy_returns(losses, 2)
  assert returns[0] == pytest.approx(-np.log((0.5 + 0.25 + 1e6 + 1e6) / 4))
  assert returns[1] == pytest.approx(0.0)


def test_reps_training_is_resumable_and_its_policy_loads(tmp_path):
  config = ssc.ControllerTraining(problem={"name": "quadratic", "num_dims": 3}, iterations=2,
                                  population=3, problems_per_policy=2, horizon=4)
  path = ssc.train_controller(config, tmp_path, log_fn=lambda m: None)
  saved = json.loads(path.read_text())
  assert len(saved["metadata"]["history"]) == 2 and saved["metadata"]["episodes"] == 12
  first = saved["controller"]["weights"]
  # Run again: resumes at the end, nothing more is trained.
  again = json.loads(ssc.train_controller(config, tmp_path, log_fn=lambda m: None).read_text())
  assert again["controller"]["weights"] == first
  controller, meta = ssc.load_controller(tmp_path)
  assert controller.get_config()["weights"] == first and meta["optimizee_gradients"] == 48
  with pytest.raises(errors.ConfigError, match="another configuration"):
    ssc.train_controller(dataclasses.replace(config, population=4), tmp_path, log_fn=print)
  with pytest.raises(errors.ConfigError, match="No controller policy"):
    ssc.load_controller(tmp_path / "nothing")


def test_step_size_figure_from_tiny_policies(tmp_path):
  tiny = {"quadratic": step_size_figure.Setting(
      {b: ssc.ControllerTraining(problem={"name": "quadratic"}, base_optimizer=b, iterations=1,
                                 population=2, problems_per_policy=1, horizon=3)
       for b in step_size_figure.BASE_NAMES},
      (1e-3, 1e-1), "pretrained:quadratic", (1.0, 10.0), 5, 3, horizon=3)}
  step_size_figure.train_all(["quadratic"], tmp_path / "q", settings=tiny, log_fn=lambda m: None)
  results = step_size_figure.run(["quadratic"], tmp_path / "q", 0, grid=(0.01, 0.1),
                                 settings=tiny, log_fn=lambda m: None)
  entry = results["problems"]["quadratic"]
  assert set(entry["sweep"]) == {"SGD", "SGD + controller", "RMSprop", "RMSprop + controller"}
  assert [r["initial_learning_rate"] for r in entry["sweep"]["SGD"]] == [1e-3, 1e-1]
  assert entry["tuned"]["SGD"]["learning_rate"] in (0.01, 0.1)
  assert len(results["optimizers"]) == 5 and len(results["steps"]) == 4
  assert "spread (log10 max/min)" in step_size_figure.table(results)
  assert step_size_figure.plot(results, tmp_path / "f.png").stat().st_size > 0


def test_spread_is_infinite_when_a_point_diverged():
  assert step_size_figure.spread([1.0, 10.0, 100.0], [0, 0, 0]) == pytest.approx(2.0)
  assert step_size_figure.spread([1.0, 10.0], [0, 0.01]) == np.inf


def test_success_story_criterion_and_the_undo():
  # Lifetime rate 1/10; since t=4 the rate is 5/6 (increasing), since t=8 it is 0 (not).
  assert ssa.success_story_holds([(4, 0.0, None)], 10, 5.0)
  assert not ssa.success_story_holds([(4, 0.0, None), (8, 5.0, None)], 10, 5.0)
  stack = [(4, 0.0, {"p": "a"}), (8, 5.0, {"p": "b"})]
  policy, popped = ssa.ssa_check(stack, 10, 5.0, {"p": "c"})
  assert (policy, popped, len(stack)) == ({"p": "b"}, 1, 1)
  # A modification followed by a lower rate than the lifetime average is undone too.
  stack = [(5, 4.0, {"p": "a"})]
  assert ssa.ssa_check(stack, 10, 5.0, {"p": "b"}) == ({"p": "a"}, 1)


def test_a_modification_changes_one_component():
  rng = np.random.default_rng(0)
  policy = dict(ssa.LifelongConfig().initial_policy)
  for _ in range(20):
    new, component = ssa.modify(policy, rng, self_referential=False)
    assert component != "log10_delta"
    assert {k for k in policy if new[k] != policy[k]} <= {component}
  assert isinstance(ssa.frozen_optimizer(dict(policy, optimizer="nag", momentum=0.7)),
                    baselines.NAG)
  assert ssa.frozen_optimizer(dict(policy, optimizer="adam", momentum=0.7)).beta1 == 0.7
  with pytest.raises(errors.ConfigError, match="initial_policy"):
    ssa.LifelongConfig(initial_policy=(("optimizer", "lbfgs"),)).check()


def test_lifelong_run_resumes_to_the_same_policy_and_evaluates(tmp_path):
  config = ssa.LifelongConfig(num_problems=5, batch_size=2, horizon=3)
  straight = json.loads(ssa.lifelong_run(config, tmp_path / "a", log_fn=lambda m: None)
                        .read_text())
  short = dataclasses.replace(config, num_problems=3)
  ssa.lifelong_run(short, tmp_path / "b", log_fn=lambda m: None)
  state = json.loads((tmp_path / "b" / "checkpoint.json").read_text())
  state["config"]["num_problems"] = 5  # As if the 5-problem run had stopped after 3.
  (tmp_path / "b" / "checkpoint.json").write_text(json.dumps(state))
  resumed = json.loads(ssa.lifelong_run(config, tmp_path / "b", log_fn=lambda m: None)
                       .read_text())
  assert resumed["policy"] == straight["policy"]
  assert resumed["metadata"]["history"] == straight["metadata"]["history"]
  assert straight["metadata"]["modifications"] == 4
  results = ssa.evaluate([tmp_path / "a" / "policy.json"], 0, 4, 3, grid=(0.01, 0.1))
  assert results["num_test_problems"] == 4 and len(results["optimizers"]) == 6
  assert "SSA seed 0:" in ssa.table(results)
  assert ssa.plot(results, tmp_path / "s.png").stat().st_size > 0


def test_the_reward_floor_bounds_a_diverged_problem_and_nothing_else():
  losses = np.array([[1.0, 1.0], [0.5, 0.25], [np.inf, 0.1]])  # [T + 1, batch]
  free = ssa.problem_reward(losses)
  expected = np.log([1.0, 1.0]).mean() - np.log([0.5, 0.25]).mean()
  assert free[0] == pytest.approx(expected)
  assert free.sum() == pytest.approx(-(np.log(1e30) + np.log(0.1)) / 2)
  floored = ssa.problem_reward(losses, floor=-5.0)
  assert floored.sum() == pytest.approx(-5.0)
  np.testing.assert_allclose(floored / free, floored[0] / free[0])  # Scaled, not reshaped.
  good = np.array([[1.0], [0.5], [0.1]])
  np.testing.assert_array_equal(ssa.problem_reward(good, floor=-5.0), ssa.problem_reward(good))
  with pytest.raises(errors.ConfigError, match="reward_floor"):
    ssa.LifelongConfig(reward_floor=1.0).check()
