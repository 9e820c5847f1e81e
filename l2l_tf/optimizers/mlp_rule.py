"""A stateless learned update rule (Runarsson & Jonsson 2000 in the L2L setting; seed_systems.md
section 2.2): the review's ablation of "how much of the LSTM's gain is its memory".

One small feed-forward net, shared by every coordinate (the meta-parameters), maps each
coordinate's local inputs to its update, with no memory of earlier steps:

    inputs  = [pre(g_i), theta_i, log(f_t / f_0)]        (gradient, parameter, loss feature)
    update  = output_scale * tanh(w2 . tanh(W1 inputs + b1) + b2)

`pre` is the paper's LogAndSign (or the identity); theta_i is the coordinate's current value;
log(f_t / f_0) is its optimizee's loss relative to where the run began (one value per instance:
the "global" error signal of a distributed learning rule). The bounded output (tanh) is the spec's
0.01 tanh(.) with `output_scale`. The optimizer's state only mirrors theta and f_0 (it adds its own
updates to its copy of theta): nothing of the past is remembered, so it cannot build momentum.
It reads the loss (`uses_loss`), so it runs inside the library's unroll, not as a Keras
optimizer (Keras gives an optimizer gradients only). Meta-trained by ES (`--estimator=es`), as
Runarsson & Jonsson evolved theirs, or by tbptt like the LSTM.
"""

from typing import Optional, Sequence

import tensorflow as tf

from l2l_tf import errors
from l2l_tf.optimizers import base
from l2l_tf.optimizers import fast_weights
from l2l_tf.optimizers import lstm as lstm_lib

_LOG_FLOOR = 1e-30


class StatelessMLPRule(base.Optimizer):
  """The stateless rule (see the module docstring).

  Args:
    hidden_sizes: the tanh layers' widths.
    preprocessing: a stateless preprocessing config for the gradient ("log_and_sign",
      "identity").
    output_scale: the update's bound.
    instance_axis: every tensor's leading axis indexes independent optimizees and `losses` has
      one value per instance (meta-training, evaluation); otherwise all coordinates belong to one
      optimizee and `losses` is a scalar.
    seed, dtype, name: as for `CoordinatewiseLSTM`.
  """

  uses_loss = True

  def __init__(self, hidden_sizes: Sequence[int] = (32,), preprocessing="log_and_sign",
               output_scale: float = 0.1, instance_axis: bool = True, seed: int = 0,
               dtype=tf.float32, name: Optional[str] = None):
    super().__init__(name=name or "mlp_rule")
    self.instance_axis = bool(instance_axis)
    self.hidden_sizes = tuple(int(h) for h in hidden_sizes)
    if not self.hidden_sizes or any(h <= 0 for h in self.hidden_sizes):
      raise errors.ConfigError(f"hidden_sizes must be one or more positive widths, got "
                               f"{list(self.hidden_sizes)}.")
    self.preprocessing = fast_weights._stateless_preprocessing(preprocessing)  # pylint: disable=protected-access
    self.output_scale = float(output_scale)
    self.seed = int(seed)
    self.dtype = tf.as_dtype(dtype)
    self.weights, self.biases = [], []
    width = self.preprocessing.output_size + 2
    with self.name_scope:
      for layer, size in enumerate(self.hidden_sizes + (1,)):
        self.weights.append(fast_weights._weight(  # pylint: disable=protected-access
            [width, size], self.seed + layer, self.dtype, f"w{layer}"))
        self.biases.append(fast_weights._bias(size, self.dtype, f"b{layer}"))  # pylint: disable=protected-access
        width = size

  def initial_state(self, params):
    shape = [tf.shape(params[0])[0]] if self.instance_axis else []
    return {"params": [tf.cast(p, self.dtype) for p in params],
            "log_f0": tf.zeros(shape, self.dtype), "t": tf.zeros([], tf.int32)}

  def step(self, grads, state, losses=None):
    if losses is None:
      raise errors.ConfigError("StatelessMLPRule reads the optimizee's loss: call it through "
                               "l2l_tf.optimizers.base.call_step (the library's unroll does).")
    log_f = tf.math.log(tf.maximum(tf.cast(losses, self.dtype), _LOG_FLOOR))
    log_f0 = tf.where(state["t"] == 0, log_f, state["log_f0"])
    relative = log_f - log_f0  # [num], or a scalar without an instance axis.
    features = []
    for g in grads:
      shape = tf.shape(g)
      if self.instance_axis:
        relative_g = tf.reshape(relative, tf.concat([[-1], tf.ones_like(shape[1:])], 0))
      else:
        relative_g = relative
      features.append(tf.broadcast_to(relative_g, shape))
    flat_g = base.flatten_coordinates(grads)
    x = tf.concat([self.preprocessing(tf.cast(flat_g, self.dtype)),
                   base.flatten_coordinates(state["params"])[:, None],
                   base.flatten_coordinates(features)[:, None]], axis=1)
    for w, b in zip(self.weights[:-1], self.biases[:-1]):
      x = tf.tanh(tf.matmul(x, w) + b)
    out = tf.matmul(x, self.weights[-1]) + self.biases[-1]
    update = self.output_scale * tf.tanh(out[:, 0])
    update = lstm_lib.propagate_non_finite(tf.cast(update, flat_g.dtype), flat_g)
    updates = base.unflatten_coordinates(update, grads)
    new_params = [p + tf.cast(u, self.dtype) for p, u in zip(state["params"], updates)]
    return updates, {"params": new_params, "log_f0": log_f0, "t": state["t"] + 1}

  def get_config(self) -> dict:
    return {"name": "mlp_rule", "hidden_sizes": list(self.hidden_sizes),
            "preprocessing": self.preprocessing.get_config(),
            "output_scale": self.output_scale, "instance_axis": self.instance_axis,
            "seed": self.seed, "dtype": self.dtype.name}
