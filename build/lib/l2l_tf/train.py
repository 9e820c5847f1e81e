"""Meta-trains a learned optimizer (absl entry point).

    python -m l2l_tf.train --flagfile=flags/quadratic.flags --output_dir=runs/quadratic

A killed run resumes from its newest checkpoint when started again with the same flags; the best
meta-parameters by validation loss are exported to `<output_dir>/optimizer`.
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position

FLAGS = cli.FLAGS
flags.DEFINE_bool("export_only", False, "Export the best meta-parameters of the run in --output_dir "
                  "so far (e.g. while it still trains) to <output_dir>/optimizer, without "
                  "training; the recorded command is the training command.")


def train_from_flags(output_dir) -> dict:
  """Meta-trains with the current flags into `output_dir`; returns the trainer's summary."""
  from l2l_tf import meta, optimizers  # pylint: disable=g-import-not-at-top
  output_dir = cli.require_writable_dir(output_dir)
  problem = cli.make_problem("train")
  optimizer = optimizers.make_optimizer(cli.optimizer_config())
  command = cli.command_line(drop_flags=("export_only",))
  trainer = meta.MetaTrainer(problem, optimizer, cli.train_config(), output_dir,
                             metadata={"command": command},
                             log_fn=lambda m: print(m, file=sys.stderr),
                             validation_problem=cli.make_problem("valid"))
  if FLAGS.export_only:
    if trainer.resumed_from is None:
      raise cli.UsageError(f"--export_only: no checkpoint in {output_dir}; train first.")
    return {"epochs": int(trainer.epoch.numpy()), "best_epoch": int(trainer.best_epoch.numpy()),
            "best_validation_final_loss": float(trainer.best_score.numpy()),
            "optimizer_dir": str(trainer.export_best())}
  return trainer.train(progress=FLAGS.progress)


@cli.run_main
def main(argv):
  cli.require_no_arguments(argv)
  cli.configure_tensorflow()
  summary = train_from_flags(FLAGS.output_dir)
  print(f"trained {summary['epochs']} epochs; best validation final loss "
        f"{summary['best_validation_final_loss']:.5g} at epoch {summary['best_epoch']}; "
        f"optimizer saved to {summary['optimizer_dir']}")


if __name__ == "__main__":
  app.run(main)
