"""NTM-BFGS and NTM-L-BFGS: a coordinatewise LSTM+GAC controller with an external memory shared
between coordinates (paper Appendix D; arXiv v1 Sec. 2.3).

BFGS can be read as coordinatewise processes that talk through an inverse-Hessian estimate M:
read g_t = -M_t grad_t, write M_{t+1} = M_t + low-rank terms. NTM-BFGS keeps that structure and
learns the vectors. Per step t, for every problem instance (n coordinates):

1. The controller, a `CoordinatewiseLSTM` with global averaging cells, sees per coordinate the
   preprocessed gradient and the previous step's read values, and emits per coordinate: an update
   proposal u, one read vector entry per read head (r_h), and left and right write vector entries
   per write head (a_w, b_w).
2. Read (before this step's write): i_h = M_t r_h, one n-vector per read head.
3. Update: g_t = output_scale * u + sum_h i_h. (The paper leaves the update's wiring open; adding
   the reads lets the memory act as an inverse-Hessian estimate applied to a controller-chosen
   vector, which is how BFGS uses it.)
4. Write: M_{t+1} = M_t + sum_w a_w b_w^T (only low-rank updates, as in the paper).
5. The reads i_h are fed back to the controller at step t + 1.

M_0 = 0 (the paper does not say; a zero memory makes the optimizer start as its controller).
`memory="dense"` keeps M in full, n x n per instance (NTM-BFGS). `memory="window"` keeps only the
last `window` write pairs (a_k, b_k) and reads M r = sum_k a_k (b_k^T r), O(n * window) memory
(NTM-L-BFGS); with a window that holds every write of the run it equals NTM-BFGS (tested).

The paper's claim: 1 read head, 3 write heads and 2 global averaging cells per layer suffice to
simulate inverse-Hessian BFGS, given a controller that computes arbitrary coordinatewise functions;
those are the defaults.

Issue 19: as written, a read M r sums over all n coordinates, so it starts n times larger on MNIST
(n = 15,910) than on the 10-d quadratic. Two options fix the scale (both off by default, which is
the paper's form and the shipped optimizers'):

* `normalize=True`: the read vectors r and the write keys b are scaled to unit L2 norm over an
  instance's coordinates, so b^T r is a cosine, at most 1 whatever n is.
* `write_rule="delta"` (Schlag, Irie & Schmidhuber 2021; the review's fast-weight reading of
  NTM-BFGS): each write head replaces the value stored under its key instead of adding to it,
  M <- M + (a - M b) b^T = M (I - b b^T) + a b^T, one head after the other; with unit keys the
  memory then never grows by accumulation. In the window form every stored key is projected,
  b_k <- b_k - (b_k^T b) b, before the pair (a, b) is appended: O(window * n).

Normalised and with the delta rule, an untrained NTM-L-BFGS still diverges on MNIST: the stored
values a are the controller's raw outputs, order 0.1-1 per coordinate, and a read returns them
nearly whole (the keys and queries come from the same coordinatewise features, so their cosines
are large), while the proposal is scaled by `output_scale` = 0.1. Meta-training from there finds
the rule that does nothing (validation final loss ln 10 from epoch 25 on). `read_scale` puts the
reads in the proposal's units: update = output_scale * u + read_scale * sum_h i_h (default 1, the
paper's form; on MNIST read_scale = output_scale). That alone still starts at a validation final
loss of 22.8 and meta-training again finds the rule that does nothing by epoch 25 (the probes of
training/README.md). `zero_value_init`
starts the controller's weights onto the written values a at zero (ReZero-like: Bachlechner et
al. 2020): the memory stays empty and the optimizer starts as its controller, while the
meta-gradient of the loss with respect to those weights is not zero (a read returns a weighted by
b^T r), so meta-training turns the memory on only as far as it lowers the meta-loss.
"""

from typing import Optional, Sequence

import tensorflow as tf

from l2l_tf.optimizers import base
from l2l_tf.optimizers import lstm as lstm_lib
from l2l_tf import errors


def dense_read(memory: tf.Tensor, r: tf.Tensor) -> tf.Tensor:
  """M r per instance and head: memory [B, n, n], r [B, n, H] -> [B, n, H]."""
  return tf.einsum("bij,bjh->bih", memory, r)


def dense_write(memory: tf.Tensor, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
  """M + sum_w a_w b_w^T: memory [B, n, n], a and b [B, n, W]."""
  return memory + tf.einsum("biw,bjw->bij", a, b)


def window_read(left: tf.Tensor, right: tf.Tensor, r: tf.Tensor) -> tf.Tensor:
  """sum_k a_k (b_k^T r): left and right [B, K, n] (K stored pairs), r [B, n, H] -> [B, n, H]."""
  return tf.einsum("bki,bkh->bih", left, tf.einsum("bkj,bjh->bkh", right, r))


def unit_columns(x: tf.Tensor, eps: float = 1e-12) -> tf.Tensor:
  """x [B, n, H] scaled to unit L2 norm over the n coordinates (per instance and head)."""
  return x * tf.math.rsqrt(tf.reduce_sum(tf.square(x), axis=1, keepdims=True) + eps)


def dense_delta_write(memory: tf.Tensor, a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
  """M <- M + (a_w - M b_w) b_w^T for each head w in turn: memory [B, n, n], a and b [B, n, W]."""
  for w in range(a.shape[2]):
    stored = tf.einsum("bij,bj->bi", memory, b[:, :, w])
    memory = memory + (a[:, :, w] - stored)[:, :, None] * b[:, None, :, w]
  return memory


def window_delta_write(left, right, a, b):
  """`dense_delta_write` on the window form M = sum_k left_k right_k^T: per head, every stored
  key loses its component along b_w (M (I - b_w b_w^T)), then (a_w, b_w) is appended and the
  oldest pair dropped."""
  for w in range(a.shape[2]):
    key = b[:, :, w]  # [B, n]
    right = right - tf.einsum("bkn,bn->bk", right, key)[:, :, None] * key[:, None, :]
    left = tf.concat([left[:, 1:], a[:, None, :, w]], axis=1)
    right = tf.concat([right[:, 1:], key[:, None, :]], axis=1)
  return left, right


def window_write(left, right, a, b):
  """Appends the W new pairs (a [B, n, W], b [B, n, W]) and drops the W oldest."""
  num_new = tf.shape(a)[2]
  new_left = tf.concat([left[:, num_new:], tf.transpose(a, [0, 2, 1])], axis=1)
  new_right = tf.concat([right[:, num_new:], tf.transpose(b, [0, 2, 1])], axis=1)
  return new_left, new_right


class NTMBFGS(base.Optimizer):
  """A learned optimizer with a coordinatewise LSTM+GAC controller and a shared low-rank memory.

  Args:
    hidden_sizes: controller LSTM layers.
    num_global_cells: global averaging cells per controller layer.
    read_heads, write_heads: heads (paper: 1 and 3).
    memory: "dense" (NTM-BFGS) or "window" (NTM-L-BFGS).
    window: write pairs kept with memory="window".
    preprocessing, output_scale, seed, dtype: as for `CoordinatewiseLSTM`.
    instance_axis: every tensor's leading axis indexes independent instances, each with its own
      memory (meta-training and evaluation); False: all coordinates form one optimizee.
  """

  def __init__(self, hidden_sizes: Sequence[int] = (20, 20), num_global_cells=2,
               read_heads: int = 1, write_heads: int = 3, memory: str = "dense",
               window: int = 20, preprocessing="identity", output_scale: float = 1.0,
               seed: int = 0, dtype: tf.DType = tf.float32, instance_axis: bool = True,
               normalize: bool = False, write_rule: str = "additive",
               read_scale: float = 1.0, zero_value_init: bool = False,
               name: Optional[str] = None):
    super().__init__(name=name or ("ntm_bfgs" if memory == "dense" else "ntm_lbfgs"))
    if write_rule not in ("additive", "delta"):
      raise errors.ConfigError(f"write_rule must be 'additive' or 'delta', got {write_rule!r}.")
    self.normalize = bool(normalize)
    self.write_rule = write_rule
    if not read_scale > 0:
      raise errors.ConfigError(f"read_scale must be positive, got {read_scale}.")
    self.read_scale = float(read_scale)
    if memory not in ("dense", "window"):
      raise errors.ConfigError(f"memory must be 'dense' or 'window', got {memory!r}.")
    if read_heads < 1 or write_heads < 1 or window < 1:
      raise errors.ConfigError("read_heads, write_heads and window must be positive.")
    self.read_heads = int(read_heads)
    self.write_heads = int(write_heads)
    self.memory = memory
    self.window = int(window)
    self.output_scale = float(output_scale)
    self.instance_axis = bool(instance_axis)
    self.dtype = tf.as_dtype(dtype)
    with self.name_scope:
      self.controller = lstm_lib.CoordinatewiseLSTM(
          hidden_sizes=hidden_sizes, preprocessing=preprocessing, output_scale=1.0, seed=seed,
          dtype=dtype, num_global_cells=num_global_cells, instance_axis=True,
          extra_inputs=self.read_heads, outputs=1 + self.read_heads + 2 * self.write_heads,
          name="controller")
    self.zero_value_init = bool(zero_value_init)
    if self.zero_value_init:  # The columns of the written values a: 1 + heads .. + writes.
      keep = tf.constant([0.0 if 1 + self.read_heads <= i < 1 + self.read_heads + self.write_heads
                          else 1.0 for i in range(self.controller.outputs)], self.dtype)
      self.controller.output_weights.assign(self.controller.output_weights * keep)
      self.controller.output_bias.assign(self.controller.output_bias * keep)

  # Coordinates are handled instance-major, [B, n], so each instance's memory is a block.
  def _to_instances(self, tensors):
    if self.instance_axis:
      num = tf.shape(tensors[0])[0]
      return tf.concat([tf.reshape(t, [num, -1]) for t in tensors], axis=1)
    return base.flatten_coordinates(tensors)[None, :]

  def _from_instances(self, matrix, like):
    if not self.instance_axis:
      return base.unflatten_coordinates(tf.reshape(matrix, [-1]), like)
    num = tf.shape(like[0])[0]
    sizes = [tf.size(t) // num for t in like]
    return [tf.reshape(p, tf.shape(t)) for p, t in zip(tf.split(matrix, sizes, axis=1), like)]

  def initial_state(self, params):
    coords = self._to_instances(params)
    num, n = tf.shape(coords)[0], tf.shape(coords)[1]
    state = {"controller": self.controller.initial_state(params),
             "reads": tf.zeros([num * n, self.read_heads], self.dtype)}
    if self.memory == "dense":
      state["memory"] = tf.zeros([num, n, n], self.dtype)
    else:
      state["left"] = tf.zeros([num, self.window, n], self.dtype)
      state["right"] = tf.zeros([num, self.window, n], self.dtype)
    return state

  def step(self, grads, state):
    g = self._to_instances(grads)  # [B, n]
    num, n = tf.shape(g)[0], tf.shape(g)[1]
    flat = tf.reshape(g, [-1])
    inputs = tf.concat([self.controller.preprocessing(flat), state["reads"]], axis=1)
    segment_ids = tf.repeat(tf.range(num), n)
    out, controller_state, _ = self.controller.core(inputs, state["controller"], segment_ids)
    heads = self.read_heads
    writes = self.write_heads
    split = lambda x: tf.reshape(x, [num, n, -1])
    proposal = tf.reshape(out[:, 0], [num, n])
    r = split(out[:, 1:1 + heads])
    a = split(out[:, 1 + heads:1 + heads + writes])
    b = split(out[:, 1 + heads + writes:])
    if self.normalize:
      r, b = unit_columns(r), unit_columns(b)
    new_state = {"controller": controller_state}
    delta = self.write_rule == "delta"
    if self.memory == "dense":
      reads = dense_read(state["memory"], r)
      new_state["memory"] = (dense_delta_write if delta else dense_write)(state["memory"], a, b)
    else:
      reads = window_read(state["left"], state["right"], r)
      new_state["left"], new_state["right"] = (window_delta_write if delta else window_write)(
          state["left"], state["right"], a, b)
    new_state["reads"] = tf.reshape(reads, [num * n, heads])
    update = self.output_scale * proposal + self.read_scale * tf.reduce_sum(reads, axis=2)
    update = tf.reshape(lstm_lib.propagate_non_finite(tf.reshape(update, [-1]), flat), [num, n])
    return self._from_instances(update, grads), new_state

  def get_config(self) -> dict:
    c = self.controller
    return {"name": "ntm_bfgs" if self.memory == "dense" else "ntm_lbfgs",
            "hidden_sizes": list(c.hidden_sizes), "num_global_cells": list(c.num_global_cells),
            "read_heads": self.read_heads, "write_heads": self.write_heads,
            "memory": self.memory, "window": self.window,
            "preprocessing": c.preprocessing.get_config(), "output_scale": self.output_scale,
            "seed": c.seed, "dtype": self.dtype.name, "instance_axis": self.instance_axis,
            # Only when set: the configs of optimizers saved before these options stay the same.
            **({"normalize": True} if self.normalize else {}),
            **({"write_rule": self.write_rule} if self.write_rule != "additive" else {}),
            **({"read_scale": self.read_scale} if self.read_scale != 1.0 else {}),
            **({"zero_value_init": True} if self.zero_value_init else {})}
