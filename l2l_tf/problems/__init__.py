"""Optimizee problems (see `base.Problem`)."""

from l2l_tf.problems.base import Problem, fold_in, split_seed
from l2l_tf.problems.quadratic import Quadratic, Square

PROBLEMS = {"quadratic": Quadratic, "square": Square}


def make_problem(config) -> Problem:
  """Builds a problem from its `get_config()` dict or its name."""
  if isinstance(config, str):
    config = {"name": config}
  config = dict(config)
  name = config.pop("name", None)
  if name not in PROBLEMS:
    raise ValueError(f"Unknown problem {name!r}; known: {', '.join(sorted(PROBLEMS))}.")
  return PROBLEMS[name](**config)
