"""l2l_tf: "Learning to learn by gradient descent by gradient descent" in TensorFlow 2 and Sonnet 2.

Andrychowicz et al., NIPS 2016 (arXiv:1606.04474). The library is organised by concept:

* `l2l_tf.optimizers`: learned (coordinatewise LSTM) and hand-designed optimizers behind one pure
  interface, `initial_state(params)` and `step(grads, state) -> (updates, new_state)`.
* `l2l_tf.problems`: optimizees as pure functions (initial parameters, instance sampling, loss).
* `l2l_tf.meta`: the unrolled optimizee trajectory, truncated BPTT meta-training and the
  checkpointed training loop.
* `l2l_tf.evaluation`: test curves with confidence intervals, baseline tuning on validation
  problems, the results file, its tables and plots, and the registry of every figure.

The entry points (`python -m l2l_tf.<name>`) are thin: flags in, one call of `l2l_tf.commands`.
Experiments that use the library sit beside it, in `l2l_tf_experiments` (the same wheel).
"""

__version__ = "0.1.0"
