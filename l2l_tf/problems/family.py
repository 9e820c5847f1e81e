"""Distributions over optimizees: meta-training on many kinds of problem rather than one (issue 14).

A learned optimizer meta-trained on one optimizee (the paper's sigmoid MLP) learns that problem's
scales and fails beyond it (paper Fig. 5: ReLU). Two ways to widen what it sees, each a flag of
`l2l_tf.train`:

* `ProblemFamily`: a list of member problems (e.g. MLPs of several widths, depths, activations,
  minibatch sizes and initial scales); each meta-step draws one member from its own seed stream,
  so every instance of a meta-batch shares the member's parameter shapes.
* `ScaledObjective`: f(theta) multiplied by a random factor per instance, log-uniform in
  [10^-r, 10^r] (Lv et al. 2017), so the rule cannot learn one loss scale.
"""

import itertools
from typing import Callable, List, Sequence

import tensorflow as tf

from l2l_tf import errors
from l2l_tf.problems import base


class ProblemFamily:
  """Member problems, one drawn per meta-step.

  Args:
    members: the members' problem configs (`l2l_tf.problems.make_problem` dicts).
    build: config -> `Problem` (e.g. `make_problem` on one data split); called once per member.
  """

  def __init__(self, members: Sequence[dict], build: Callable[[dict], base.Problem]):
    if not members:
      raise errors.ConfigError("A problem family needs at least one member.")
    self.members = [dict(m) for m in members]
    self._build = build
    self._problems = {}

  def __len__(self):
    return len(self.members)

  def member(self, index: int) -> base.Problem:
    """The problem of member `index` (built once)."""
    if index not in self._problems:
      self._problems[index] = self._build(self.members[index])
    return self._problems[index]

  def member_index(self, seed: tf.Tensor) -> int:
    """The member of the meta-step with this seed: uniform, deterministic per seed (its own
    stream: the seed is folded with a constant the problems' own draws do not use)."""
    draw = tf.random.stateless_uniform([], base.fold_in(seed, 0x5EED), maxval=len(self.members),
                                       dtype=tf.int32)
    return int(draw)

  def validation_members(self, num: int) -> List[int]:
    """`num` members spread over the list (all of them when `num` >= its length): model
    selection scores the same members at every validation."""
    num = min(int(num), len(self.members))
    return sorted({round(i * (len(self.members) - 1) / max(num - 1, 1)) for i in range(num)})

  def get_config(self) -> dict:
    return {"name": "family", "members": [dict(m) for m in self.members]}


def mlp_family_members(base_config: dict, hidden_widths: Sequence[int],
                       num_layers: Sequence[int], activations: Sequence[str],
                       batch_sizes: Sequence[int], init_stddevs: Sequence[float]) -> List[dict]:
  """Every combination of the choices, as MLP problem configs built on `base_config` (its data
  set, e.g. {"name": "mnist"}): hidden_sizes = [width] * layers."""
  members = []
  for width, layers, activation, batch, std in itertools.product(
      hidden_widths, num_layers, activations, batch_sizes, init_stddevs):
    members.append(dict(base_config, hidden_sizes=[int(width)] * int(layers),
                        activation=activation, batch_size=int(batch), init_stddev=float(std)))
  return members


class ScaledObjective(base.Problem):
  """f(theta) * c with c = 10^u, u ~ U[-r, r] drawn per instance (Lv et al. 2017).

  Args:
    problem: the wrapped optimizee.
    log10_range: r; 0 leaves the objective unchanged.
  """

  def __init__(self, problem: base.Problem, log10_range: float):
    if not log10_range >= 0:
      raise errors.ConfigError(f"The objective's log10 scale range must be >= 0, got "
                               f"{log10_range}.")
    self.problem = problem
    self.log10_range = float(log10_range)
    self.name = getattr(problem, "name", "problem")

  @property
  def param_names(self):
    return self.problem.param_names

  def sample_instances(self, num, seed):
    u = tf.random.stateless_uniform([num], base.fold_in(seed, 1), -self.log10_range,
                                    self.log10_range, dtype=tf.float64)
    return {"inner": self.problem.sample_instances(num, base.fold_in(seed, 0)),
            "log10_scale": u}

  def initial_params(self, instance, seed):
    return self.problem.initial_params(instance["inner"], seed)

  def loss(self, params, instance, step):
    losses = self.problem.loss(params, instance["inner"], step)
    scale = tf.pow(tf.constant(10.0, tf.float64), instance["log10_scale"])
    return losses * tf.cast(scale, losses.dtype)

  def get_config(self):
    return dict(self.problem.get_config(), objective_log10_scale_range=self.log10_range)
