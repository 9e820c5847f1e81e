"""Several optimizers for one optimizee, each owning a group of its parameter tensors (paper Sec. 3.3).

The paper's CIFAR model uses one coordinatewise LSTM for the convolutional parameters and another
for the fully connected ones; DeepMind's code calls this `net_assignments`.
"""

from typing import Mapping, Optional, Sequence

from l2l_tf.optimizers import base
from l2l_tf import errors


class GroupedOptimizer(base.Optimizer):
  """Routes parameter tensor i to `optimizers[assignment[i]]`.

  Args:
    optimizers: name -> optimizer. Each sees only the tensors assigned to it, so weights are shared
      within a group and never across groups.
    assignment: for every parameter tensor, in order, the name of the optimizer that updates it.
  """

  def __init__(self, optimizers: Mapping[str, base.Optimizer], assignment: Sequence[str],
               name: Optional[str] = None):
    super().__init__(name=name or "grouped")
    unknown = sorted(set(assignment) - set(optimizers))
    if unknown:
      raise errors.ConfigError(f"assignment names optimizers {unknown} that are not among "
                              f"{sorted(optimizers)}.")
    unused = sorted(set(optimizers) - set(assignment))
    if unused:
      raise errors.ConfigError(f"optimizers {unused} are assigned no parameter tensor.")
    self.optimizers = dict(optimizers)
    self.assignment = list(assignment)
    self.group_names = sorted(self.optimizers)

  def _split(self, tensors):
    if len(tensors) != len(self.assignment):
      raise errors.ConfigError(
          f"GroupedOptimizer was given {len(tensors)} tensors but its assignment "
          f"covers {len(self.assignment)}.")
    return {name: [t for t, a in zip(tensors, self.assignment) if a == name]
            for name in self.group_names}

  def initial_state(self, params):
    groups = self._split(params)
    return {name: self.optimizers[name].initial_state(groups[name]) for name in self.group_names}

  @property
  def uses_loss(self) -> bool:
    """Whether one of the groups' optimizers reads the optimizee's loss (it then gets it)."""
    return any(getattr(o, "uses_loss", False) for o in self.optimizers.values())

  def step(self, grads, state, losses=None):
    groups = self._split(grads)
    new_state = {}
    group_updates = {}
    for name in self.group_names:
      group_updates[name], new_state[name] = base.call_step(
          self.optimizers[name], groups[name], state[name], losses)
    positions = {name: iter(group_updates[name]) for name in self.group_names}
    return [next(positions[a]) for a in self.assignment], new_state

  def get_config(self) -> dict:
    return {"name": "grouped",
            "optimizers": {k: v.get_config() for k, v in self.optimizers.items()},
            "assignment": list(self.assignment)}
