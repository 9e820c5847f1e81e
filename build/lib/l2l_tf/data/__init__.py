"""Datasets of the optimizees: MNIST and Fashion-MNIST with fixed train/valid/test splits.

`load_arrays(name, split)` gives in-memory arrays and `as_tf_dataset(name, split)` a `tf.data`
pipeline of the same examples; `python -m l2l_tf.data.prepare` fetches and caches the data.
"""

from l2l_tf.data.datasets import (DATASETS, SPLITS, DataNotFoundError, as_tf_dataset, cache_path,
                                  default_data_dir, get_spec, load_arrays, load_raw, load_uint8,
                                  split_sizes)
from l2l_tf.data.sources import ChecksumError, DatasetSpec, RawData, WheelSource
