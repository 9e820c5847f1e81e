"""Unrolled optimizee training and meta-training (truncated BPTT, ES, PES)."""

from l2l_tf.meta import estimators
from l2l_tf.meta.checkpointing import TrainingError, TrainingRun
from l2l_tf.meta.trainer import MetaTrainer, TrainConfig
from l2l_tf.meta.unroll import make_trajectory_fn, optimizee_step, trajectory
