"""Does tuned Adam make a recognisable stylised image in 128 steps? (Neural Art, issue 16.)

The sanity check behind the Neural Art loss weights: Adam, its learning rate tuned on the
validation photographs, runs --num_steps steps on the first test images at the training style
(the settings of the flagfile) and at the new style (flags/neural_art_new_style.flags), and the
images are saved. No learned optimizer is needed.

    python examples/neural_art_adam_check.py --flagfile=flags/neural_art.flags \
        --output=docs/figures/neural_art_adam_check.png
"""

import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=g-import-not-at-top,wrong-import-position
from l2l_tf import commands  # pylint: disable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_string("output", "neural_art_adam_check.png", "The PNG to write.")
flags.DEFINE_integer("num_images", 4, "Test images per setting.")


@cli.run_main
def main(argv):
  from l2l_tf.evaluation import neural_art, plots  # pylint: disable=g-import-not-at-top
  cli.require_no_arguments(argv)
  cli.configure_tensorflow()
  new_style = {k: (int(v) if k == "image_size" else v) for k, v in commands.flagfile_values(
      commands.NEW_STYLE_FLAGFILE, commands.NEW_STYLE_FLAGS).items()}
  panels = []
  for label, overrides in (("training style", {}), ("new style", new_style)):
    problem = cli.make_problem("test", **overrides)
    indices = list(range(min(FLAGS.num_images, problem.num_contents)))
    label = f"{label}: {problem.data_config['style_image']}, {problem.image_size} x " \
            f"{problem.image_size}"
    panel = neural_art.image_panel(problem, cli.make_problem("valid", **overrides), {}, indices,
                                   FLAGS.num_steps, FLAGS.num_validation_problems, FLAGS.seed,
                                   cli.learning_rate_grid(), label, FLAGS.jit_compile)
    panels.append(panel)
    print(f"{label}: Adam lr {panel['adam_learning_rate']:g} (validation final loss "
          f"{panel['adam_validation_final_loss']}), final losses "
          f"{[round(v, 4) for v in panel['final_losses']['Adam']]}, "
          f"{panel['timing_cpu_s']:.0f} CPU-s")
  path = plots.plot_neural_art_images(panels, FLAGS.output, f"tuned Adam after {FLAGS.num_steps} "
                                      "steps (test images)")
  print(f"wrote {path}")


if __name__ == "__main__":
  app.run(main)
