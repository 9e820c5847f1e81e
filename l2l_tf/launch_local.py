"""Meta-trains with N local worker processes on tf.distribute's MultiWorkerMirroredStrategy.

    python -m l2l_tf.launch_local --num_workers=2 -- --flagfile=flags/quadratic.flags \
        --output_dir=runs/quadratic_2w

starts `python -m l2l_tf.train <the flags after --> --strategy=multi_worker` N times on free
127.0.0.1 ports (TF_CONFIG each), prefixes their output with `[worker i]`, and stops them all (by
PID) when one fails or on Ctrl-C. The same run on N machines: README, "Scale out".
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from absl import app  # pylint: disable=g-import-not-at-top,wrong-import-position
from absl import flags  # pylint: disable=g-import-not-at-top,wrong-import-position

from l2l_tf import cli  # pylint: disable=wrong-import-position
from l2l_tf import commands  # pylint: disable=wrong-import-position

FLAGS = cli.FLAGS
flags.DEFINE_integer("num_workers", 2, "Worker processes to start on this machine.")


@cli.run_main
def main(argv):
  commands.launch_local_from_flags(FLAGS.num_workers, argv[1:])


if __name__ == "__main__":
  app.run(main)
