"""Datasets of the optimizees: MNIST, Fashion-MNIST, CIFAR-10 with fixed train/valid/test splits.

`load_arrays(name, split)` gives in-memory arrays and `as_tf_dataset(name, split)` a `tf.data`
pipeline of the same examples; `python -m l2l_tf.data.prepare` fetches and caches the data.
CIFAR-10 is passed as its spec, `load_arrays(CIFAR10, split)` (it is not among `DATASETS`, the
data sets with an offline copy to fetch: it is in no package registry; `prepare --datasets=cifar10`
caches it from TFDS or a hand-placed archive; see `cifar`).
"""

from l2l_tf.data.cifar import CIFAR10
from l2l_tf.data.datasets import (DATASETS, SPLITS, DataNotFoundError, as_tf_dataset, cache_path,
                                  default_data_dir, get_spec, load_arrays, load_raw, load_uint8,
                                  split_sizes)
from l2l_tf.data.sources import ChecksumError, DatasetSpec, RawData, WheelSource

# The data sets with an offline copy that `prepare` fetches: the labelled ones, and the Neural Art
# photographs (`photos`).
OFFLINE_DATASETS = tuple(DATASETS) + ("photos",)
