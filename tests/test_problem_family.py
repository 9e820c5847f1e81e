"""Problem families and the scaled objective: deterministic per seed, disjoint across splits."""

import numpy as np
import pytest

from l2l_tf import problems
from l2l_tf.problems import family


def tiny_data(n=64, seed=0):
  rng = np.random.default_rng(seed)
  return rng.integers(0, 256, (n, 16), dtype=np.uint8), rng.integers(0, 10, n)


def make_family():
  images, labels = tiny_data()
  members = family.mlp_family_members({"name": "tiny"}, [3, 5], [1, 2], ["sigmoid", "relu"],
                                      [8], [0.01, 0.1])
  build = lambda c: problems.MLPClassifier(images, labels, **{k: v for k, v in c.items()
                                                               if k != "name"})
  return family.ProblemFamily(members, build)


def test_members_are_every_combination():
  fam = make_family()
  assert len(fam) == 16
  assert {tuple(m["hidden_sizes"]) for m in fam.members} == {(3,), (5,), (3, 3), (5, 5)}
  assert {m["activation"] for m in fam.members} == {"sigmoid", "relu"}
  assert fam.member(3) is fam.member(3)  # Built once.
  assert fam.validation_members(4) == [0, 5, 10, 15]
  assert fam.validation_members(99) == list(range(16))


def test_member_draws_are_deterministic_per_seed_and_cover_the_family():
  fam = make_family()
  seeds = [problems.split_seed(0, "train", e) for e in range(200)]
  first = [fam.member_index(s) for s in seeds]
  assert first == [fam.member_index(s) for s in seeds]
  assert set(first) == set(range(16))  # Uniform over 16 members: all seen in 200 draws.
  other = [fam.member_index(problems.split_seed(1, "train", e)) for e in range(200)]
  assert first != other


def test_instances_of_the_splits_are_disjoint():
  fam = make_family()
  problem = fam.member(0)
  keys = {}
  for split in ("train", "valid", "test"):
    instance, _ = problem.sample(50, problems.split_seed(0, split))
    keys[split] = set(instance["key"].numpy().tolist())
  assert not keys["train"] & keys["valid"] and not keys["train"] & keys["test"]
  assert not keys["valid"] & keys["test"]


def test_scaled_objective_multiplies_each_instance_by_its_factor():
  images, labels = tiny_data()
  inner = problems.MLPClassifier(images, labels, hidden_sizes=(4,), batch_size=8)
  scaled = family.ScaledObjective(inner, log10_range=2.0)
  instance, params = scaled.sample(6, problems.split_seed(3, "train"))
  u = instance["log10_scale"].numpy()
  assert np.all(np.abs(u) <= 2.0) and np.ptp(u) > 0.5
  want = inner.loss(params, instance["inner"], 0).numpy() * 10.0 ** u
  np.testing.assert_allclose(scaled.loss(params, instance, 0).numpy(), want, rtol=1e-5)
  again, _ = scaled.sample(6, problems.split_seed(3, "train"))
  np.testing.assert_array_equal(again["log10_scale"].numpy(), u)
  with pytest.raises(ValueError, match="range"):
    family.ScaledObjective(inner, -1.0)
  assert scaled.get_config()["objective_log10_scale_range"] == 2.0
  assert scaled.param_names == inner.param_names
