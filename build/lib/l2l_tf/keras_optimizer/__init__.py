"""Trained optimizers in Keras 3: `LearnedOptimizer` for `model.compile(optimizer=...)`."""

from l2l_tf.keras_optimizer.optimizer import (LearnedOptimizer, MetaParameterMismatchError,
                                              check_supported, compute_checksum)
