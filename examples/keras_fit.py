"""Trains a Keras model on MNIST with a learned optimizer next to Adam, logging both to TensorBoard.

    python examples/keras_fit.py --optimizer=mnist --dataset=fashion_mnist --epochs=1 \
        --num_examples=10000 --logdir=runs/keras_fit
    tensorboard --logdir=runs/keras_fit

`--model` picks the network:

* `mlp` (default): the paper's MNIST optimizee (784 -> Dense(20, sigmoid) -> Dense(10)),
  initialised as in meta-training (weights and biases ~ N(0, 0.01^2), `--init_stddev`);
* `relu_mlp`: 784 -> Dense(100, relu) -> Dense(10), Keras's default initialisers;
* `relu_convnet`: 28 x 28 x 1 -> Conv2D(16, 3, relu) -> MaxPool -> Conv2D(32, 3, relu) ->
  MaxPool -> Flatten -> Dense(10), Keras's default initialisers: what a new user would try.

Each model is trained twice from the same initial weights: with
`l2l_tf.keras_optimizer.LearnedOptimizer` and with `keras.optimizers.Adam` (Keras's default
learning rate 0.001 unless `--adam_learning_rate`). Each run logs to `<logdir>/<optimizer>/`
(keras.callbacks.TensorBoard); the end is a table of the final training loss, the test loss and
accuracy, and the mean training loss of every epoch (ln 10 = 2.303 is the loss of a uniform guess).
"""

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MODELS = ("mlp", "relu_mlp", "relu_convnet")


def parse_args(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--optimizer", default="mnist",
                      help="Learned optimizer: a shipped name (quadratic, mnist when shipped) or a "
                           "directory written by `python -m l2l_tf.train`.")
  parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion_mnist"])
  parser.add_argument("--model", default="mlp", choices=list(MODELS),
                      help="The network trained (see the module docstring).")
  parser.add_argument("--epochs", type=int, default=1)
  parser.add_argument("--steps", type=int, default=None,
                      help="Batches per epoch (default: the whole training subset).")
  parser.add_argument("--num_examples", type=int, default=None,
                      help="Use the first N training images (default: all 50,000).")
  parser.add_argument("--batch_size", type=int, default=128)
  parser.add_argument("--adam_learning_rate", type=float, default=1e-3)
  parser.add_argument("--init_stddev", type=float, default=0.01,
                      help="--model=mlp only: the stddev of its initial weights and biases.")
  parser.add_argument("--jit_compile", action="store_true", help="Compile train steps with XLA.")
  parser.add_argument("--logdir", default="runs/keras_fit")
  parser.add_argument("--data_dir", default=None, help="Data cache (default: data/cache).")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--threads", type=int, default=0,
                      help="TensorFlow intra- and inter-op threads (0: TensorFlow's default).")
  args = parser.parse_args(argv)
  for name in ("epochs", "batch_size", "steps", "num_examples"):
    value = getattr(args, name)
    if value is not None and value <= 0:
      parser.error(f"--{name} must be positive, got {value}.")
  return args


def make_model(name: str, init_stddev: float, seed: int):
  """A new model of kind `name` (MODELS); the same seed gives the same initial weights."""
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(seed)
  layers = keras.layers
  if name == "mlp":
    init = keras.initializers.RandomNormal(stddev=init_stddev, seed=seed)
    return keras.Sequential([
        keras.Input((784,)),
        layers.Dense(20, activation="sigmoid", kernel_initializer=init, bias_initializer=init),
        layers.Dense(10, kernel_initializer=init, bias_initializer=init),
    ])
  if name == "relu_mlp":
    return keras.Sequential([keras.Input((784,)), layers.Dense(100, activation="relu"),
                             layers.Dense(10)])
  if name == "relu_convnet":
    return keras.Sequential([
        keras.Input((784,)), layers.Reshape((28, 28, 1)),
        layers.Conv2D(16, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
        layers.Flatten(), layers.Dense(10),
    ])
  raise ValueError(f"Unknown model {name!r}; use one of {', '.join(MODELS)}.")


def main(argv=None):
  args = parse_args(argv)
  import keras  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  from l2l_tf import data  # pylint: disable=g-import-not-at-top
  from l2l_tf.keras_optimizer import LearnedOptimizer  # pylint: disable=g-import-not-at-top

  if args.threads:
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
  x_train, y_train = data.load_arrays(args.dataset, "train", args.data_dir)
  x_test, y_test = data.load_arrays(args.dataset, "test", args.data_dir)
  if args.num_examples:
    x_train, y_train = x_train[:args.num_examples], y_train[:args.num_examples]

  runs = {
      f"learned_{os.path.basename(os.path.normpath(args.optimizer))}":
          lambda: LearnedOptimizer.from_pretrained(args.optimizer),
      "adam": lambda: keras.optimizers.Adam(args.adam_learning_rate),
  }
  rows = []
  for name, make_optimizer in runs.items():
    model = make_model(args.model, args.init_stddev, args.seed)
    model.compile(optimizer=make_optimizer(),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"], jit_compile=args.jit_compile)
    keras.utils.set_random_seed(args.seed)
    start = time.time()
    history = model.fit(
        x_train, y_train, batch_size=args.batch_size, epochs=args.epochs,
        steps_per_epoch=args.steps, verbose=0,
        callbacks=[keras.callbacks.TensorBoard(os.path.join(args.logdir, name),
                                               update_freq="batch")])
    seconds = time.time() - start
    test_loss, test_accuracy = model.evaluate(x_test, y_test, batch_size=1000, verbose=0)
    rows.append((name, test_loss, test_accuracy, seconds, history.history["loss"]))

  print(f"{args.dataset}: {len(x_train)} training images, {args.epochs} epoch(s), batch size "
        f"{args.batch_size}, model {args.model}; TensorBoard logs in {args.logdir}")
  print(f"{'optimizer':<22} {'train loss':>10} {'test loss':>10} {'test acc':>9} {'time (s)':>9}"
        f"  train loss per epoch")
  for name, test_loss, test_accuracy, seconds, per_epoch in rows:
    print(f"{name:<22} {per_epoch[-1]:>10.4f} {test_loss:>10.4f} {test_accuracy:>9.4f} "
          f"{seconds:>9.1f}  {' '.join(f'{x:.4f}' for x in per_epoch)}")
  return rows


if __name__ == "__main__":
  main()
  sys.exit(0)
