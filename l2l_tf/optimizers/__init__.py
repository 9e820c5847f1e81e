"""Optimizers, learned and hand-designed, behind one interface (see `base.Optimizer`)."""

from l2l_tf.optimizers.base import Optimizer
from l2l_tf.optimizers.fast_weights import FastWeightOptimizer, SelfReferentialOptimizer
from l2l_tf.optimizers.baselines import Adam, BASELINES, LEGEND_NAMES, NAG, RMSprop, SGD
from l2l_tf.optimizers.grouped import GroupedOptimizer
from l2l_tf.optimizers.lbfgs import LBFGS
from l2l_tf.optimizers.lstm import CoordinatewiseLSTM
from l2l_tf.optimizers.mlp_rule import StatelessMLPRule
from l2l_tf.optimizers.ntm import NTMBFGS
from l2l_tf.optimizers.preprocessing import Identity, LogAndSign, make_preprocessing
from l2l_tf.optimizers.serialization import (OptimizerLoadError, load_optimizer,
                                             resolve_optimizer_path, save_optimizer)

from l2l_tf import errors

LEARNED = {"lstm": CoordinatewiseLSTM, "lstm_gac": CoordinatewiseLSTM, "ntm_bfgs": NTMBFGS,
           "ntm_lbfgs": NTMBFGS, "fast_weights": FastWeightOptimizer,
           "srwm": SelfReferentialOptimizer, "mlp_rule": StatelessMLPRule}


def make_optimizer(config) -> Optimizer:
  """Builds an optimizer from its `get_config()` dict, or from a name with default settings."""
  if isinstance(config, str):
    config = {"name": config}
  config = dict(config)
  name = config.pop("name", None)
  if name in BASELINES:
    return BASELINES[name](**config)
  if name in LEARNED:
    return LEARNED[name](**config)
  if name == "grouped":
    return GroupedOptimizer({k: make_optimizer(v) for k, v in config["optimizers"].items()},
                            config["assignment"])
  known = sorted(list(BASELINES) + list(LEARNED) + ["grouped"])
  raise errors.ConfigError(f"Unknown optimizer {name!r}; known: {', '.join(known)}.")
