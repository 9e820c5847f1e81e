"""Main of every Bazel py_test (see BUILD): runs pytest on the one test file given as argument.

    bazel test //:test_meta   ->   pytest -q tests/test_meta.py (in the test's runfiles)

Each test process uses one TensorFlow/OpenMP thread (Bazel runs several tests at once; the
tests' conftest.py sets TensorFlow's thread pools too). pytest's temporary directories,
Hypothesis' database and Matplotlib's cache go under Bazel's per-test $TEST_TMPDIR, and results
go to Bazel's $XML_OUTPUT_FILE, so nothing is written into the source tree or the runfiles.
"""

import os
import sys

ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "TF_NUM_INTRAOP_THREADS": "1",
    "TF_NUM_INTEROP_THREADS": "1",
    "TF_CPP_MIN_LOG_LEVEL": "3",
}


def pytest_args(argv, environ):
  """The pytest command line for this Bazel test, and the environment to set first."""
  if len(argv) < 2:
    raise SystemExit("usage: pytest_runner.py tests/test_<name>.py [pytest options]")
  env = dict(ONE_THREAD)
  args = ["-q", "-p", "no:cacheprovider"]
  tmp = environ.get("TEST_TMPDIR")
  if tmp:
    env["HYPOTHESIS_STORAGE_DIRECTORY"] = os.path.join(tmp, "hypothesis")
    env["MPLCONFIGDIR"] = os.path.join(tmp, "matplotlib")
    args.append("--basetemp=" + os.path.join(tmp, "pytest"))
  xml = environ.get("XML_OUTPUT_FILE")
  if xml:
    args.append("--junitxml=" + xml)
  return args + argv[1:], env


def main():
  args, env = pytest_args(sys.argv, os.environ)
  for name, value in env.items():
    os.environ.setdefault(name, value)
  import pytest  # pylint: disable=g-import-not-at-top  (after the environment is set)
  sys.exit(pytest.main(args))


if __name__ == "__main__":
  main()
