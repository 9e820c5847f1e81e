"""Meta-trains a learned optimizer (absl entry point).

    python -m l2l_tf.train --flagfile=flags/quadratic.flags --output_dir=runs/quadratic

A killed run resumes from its newest checkpoint when started again with the same flags; the best
meta-parameters by validation loss are exported to `<output_dir>/optimizer`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position
from l2l_tf import commands  # pylint: disable=wrong-import-position

FLAGS = cli.FLAGS
flags.DEFINE_bool("export_only", False, "Export the best meta-parameters of the run in --output_dir "
                  "so far (e.g. while it still trains) to <output_dir>/optimizer, without "
                  "training; the recorded command is the training command.")


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  cli.configure_tensorflow()
  summary = commands.train_from_flags(FLAGS.output_dir, export_only=FLAGS.export_only)
  print(f"trained {summary['epochs']} epochs; best validation final loss "
        f"{summary['best_validation_final_loss']:.5g} at epoch {summary['best_epoch']}; "
        f"optimizer saved {'' if summary.get('chief', True) else 'by the chief '}to "
        f"{summary['optimizer_dir']}")


if __name__ == "__main__":
  app.run(main)
