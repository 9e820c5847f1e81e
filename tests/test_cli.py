"""Entry-point plumbing: which errors become one line, and --debug."""

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SCRIPT = textwrap.dedent("""
    import sys
    from absl import app
    from l2l_tf import cli, errors

    @cli.run_main
    def main(argv):
      kind = argv[1]
      if kind == "project":
        raise errors.ConfigError("bad value: choose another")
      if kind == "data":
        from l2l_tf.data import datasets
        raise datasets.DataNotFoundError(datasets.DATASETS["mnist"], [("cache x", "not found")])
      if kind == "bug":
        raise ValueError("a bug somewhere")
      raise KeyError("unexpected")

    app.run(main, argv=sys.argv[:2] + sys.argv[2:])
""")


def run(*args):
  return subprocess.run([sys.executable, "-c", SCRIPT, *args], cwd=REPO, capture_output=True,
                        text=True, timeout=120, env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin"})


def test_project_errors_are_one_line_and_others_keep_their_traceback():
  proc = run("project")
  assert proc.returncode == 1
  assert proc.stderr.strip().splitlines()[-1] == "error: bad value: choose another"
  assert "Traceback" not in proc.stderr
  proc = run("data")
  assert proc.returncode == 1 and "Traceback" not in proc.stderr
  assert "python -m l2l_tf.data.prepare" in proc.stderr.strip().splitlines()[-1]
  for kind, name in (("bug", "ValueError: a bug somewhere"), ("other", "KeyError")):
    proc = run(kind)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and name in proc.stderr


def test_debug_shows_the_traceback_of_a_project_error():
  proc = run("project", "--debug")
  assert proc.returncode != 0
  assert "Traceback" in proc.stderr and "ConfigError: bad value" in proc.stderr
