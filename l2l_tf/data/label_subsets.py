"""Label-subset tasks (paper Fig. 7: CIFAR-5, CIFAR-2) and the disjoint labels LSTM-sub trains on.

The paper tests on subsets of 5 and 2 of the 10 labels and adds "LSTM-sub", an optimizer
meta-trained only on held-out labels, to measure transfer to unseen classes. The paper does not
say which labels; this project fixes them by a rule that needs no seed:

* the k-label task uses labels 0 .. k-1 (`task_labels(k)`);
* LSTM-sub for that task meta-trains on the next k labels, k .. 2k-1 (`held_out_labels(k)`), so
  its optimizee has the same architecture (a k-way softmax) and never sees a test label.

Fashion-MNIST: 5 labels = T-shirt/top, Trouser, Pullover, Dress, Coat (LSTM-sub: Sandal, Shirt,
Sneaker, Bag, Ankle boot); 2 labels = T-shirt/top, Trouser (LSTM-sub: Pullover, Dress).
CIFAR-10: 5 labels = airplane, automobile, bird, cat, deer (LSTM-sub: dog, frog, horse, ship,
truck); 2 labels = airplane, automobile (LSTM-sub: bird, cat).

A subset keeps the examples of its labels in every split (train / valid / test, as cut from the
full files) and renumbers the labels 0 .. k-1 in the order given.
"""

from typing import Sequence, Tuple

import numpy as np

from l2l_tf import errors

NUM_LABELS = 10
LABEL_NAMES = {
    "mnist": tuple(str(d) for d in range(10)),
    "fashion_mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"),
    "cifar10": ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                "truck"),
}


def task_labels(num_labels: int) -> Tuple[int, ...]:
  """The labels of the `num_labels`-way test task: 0 .. num_labels - 1."""
  if not 1 < num_labels <= NUM_LABELS:
    raise errors.ConfigError(f"num_labels must be in 2..{NUM_LABELS}, got {num_labels}.")
  return tuple(range(num_labels))


def held_out_labels(num_labels: int) -> Tuple[int, ...]:
  """The labels LSTM-sub meta-trains on for the `num_labels`-way task: the next `num_labels`."""
  if not 1 < num_labels <= NUM_LABELS // 2:
    raise errors.ConfigError(f"A disjoint subset of {num_labels} labels needs 2 <= num_labels "
                             f"<= {NUM_LABELS // 2}, got {num_labels}.")
  return tuple(range(num_labels, 2 * num_labels))


def check_labels(labels: Sequence[int]) -> Tuple[int, ...]:
  """`labels` as a tuple, checked: at least 2, distinct, each in 0 .. 9."""
  labels = tuple(int(l) for l in labels)
  if len(labels) < 2 or len(set(labels)) != len(labels) or not all(
      0 <= l < NUM_LABELS for l in labels):
    raise errors.ConfigError(f"A label subset needs at least 2 distinct labels in "
                             f"0..{NUM_LABELS - 1}, got {list(labels)}.")
  return labels


def select_labels(images: np.ndarray, labels: np.ndarray,
                  kept: Sequence[int]) -> Tuple[np.ndarray, np.ndarray]:
  """The examples whose label is in `kept`, in their original order, labels renumbered to their
  position in `kept` (int32).

  Raises:
    ValueError: bad `kept`, or a kept label without any example (a wrong data set or split).
  """
  kept = check_labels(kept)
  labels = np.asarray(labels)
  lookup = np.full(max(NUM_LABELS, int(labels.max(initial=0)) + 1), -1, np.int32)
  lookup[list(kept)] = np.arange(len(kept), dtype=np.int32)
  new_labels = lookup[labels]
  mask = new_labels >= 0
  counts = np.bincount(new_labels[mask], minlength=len(kept))
  if counts.min() == 0:
    missing = [l for l, c in zip(kept, counts) if c == 0]
    raise errors.ConfigError(f"No example has label {missing}.")
  return np.asarray(images)[mask], new_labels[mask]
