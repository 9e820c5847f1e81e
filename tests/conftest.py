"""Shared test set-up: one TensorFlow thread per test process (tests run in parallel workers)."""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# Tests never fetch data implicitly: `make test` prepares what they need first (`make data`), and
# the tests of fetching on demand switch it on themselves.
os.environ.setdefault("L2L_TF_FETCH", "0")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import tensorflow as tf  # pylint: disable=g-import-not-at-top,wrong-import-position

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
