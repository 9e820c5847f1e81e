"""Meta-training on tf.distribute (issue 17): 2 local workers and 2 mirrored logical CPUs give the
single-process meta-parameters; a killed worker stops the other with a one-line error and the job
resumes to the uninterrupted result; one writer per run directory; a start-up deadline.

Every process a test starts is killed by its PID when the test ends, whatever happened."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from l2l_tf import local_cluster
from l2l_tf.meta import run_lock

REPO = Path(__file__).resolve().parent.parent
# 3 epochs of 2 truncations on 4 quadratics (2 per replica), a checkpoint every epoch.
TRAIN = ["--problem=quadratic", "--num_dims=3", "--hidden_sizes=4", "--threads=1",
         "--progress=false", "--num_epochs=3", "--horizon=6", "--truncation=3",
         "--meta_batch_size=4", "--num_validation_problems=3", "--validation_every=3",
         "--checkpoint_every=1", "--meta_learning_rate=0.01", "--collective_timeout=30"]
DIGESTS = re.compile(r"meta-parameters sha256 per local replica: ([0-9a-f ]+)")


def env(**extra):
  base = dict(os.environ, PYTHONPATH=str(REPO), TF_CPP_MIN_LOG_LEVEL="3")
  for name in ("TF_CONFIG", "L2L_TF_FAULT_INJECTION"):
    base.pop(name, None)
  return dict(base, **extra)


class Processes:
  """Starts processes and kills every one still running, by PID, at the end of the test."""

  def __init__(self):
    self.procs = []

  def start(self, args, **extra_env):
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, env=env(**extra_env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    self.procs.append(proc)
    return proc

  def run(self, args, timeout=120, **extra_env):
    proc = self.start(args, **extra_env)
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err

  def kill_all(self):
    """SIGTERM first (a launcher then stops its workers by PID), SIGKILL after 10 s."""
    running = [proc for proc in self.procs if proc.poll() is None]
    for proc in running:
      os.kill(proc.pid, signal.SIGTERM)
    for proc in running:
      try:
        proc.wait(10)
      except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def processes():
  started = Processes()
  yield started
  started.kill_all()


def final_state(run_dir):
  """The meta-parameters and meta-optimizer state of the newest checkpoint of `run_dir`."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(Path(run_dir) / "checkpoints")))
  return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
          if k.startswith(("optimizer/", "meta_state/", "epoch/"))}


def assert_close(a, b, exact=False):
  assert sorted(a) == sorted(b) and any(k.startswith("optimizer/") for k in a)
  for key in a:
    if exact:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    else:
      np.testing.assert_allclose(a[key], b[key], rtol=1e-4, atol=1e-6, err_msg=key)


def train_one_process(run_dir, *extra):
  proc = subprocess.run([sys.executable, "-m", "l2l_tf.train", *TRAIN, *extra,
                         f"--output_dir={run_dir}"], cwd=REPO, env=env(), capture_output=True,
                        text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr[-3000:]
  return proc


@pytest.fixture(scope="module")
def single_process_run(tmp_path_factory):
  """The reference: the same flags in one process (--strategy=default); its run directory."""
  out = tmp_path_factory.mktemp("single")
  train_one_process(out)
  return out


@pytest.fixture(scope="module")
def single_process(single_process_run):
  return final_state(single_process_run)


@pytest.fixture(scope="module")
def two_workers(tmp_path_factory):
  """2 local workers through `python -m l2l_tf.launch_local`: (run dir, its output)."""
  out = tmp_path_factory.mktemp("two_workers")
  proc = subprocess.Popen([sys.executable, "-m", "l2l_tf.launch_local", "--num_workers=2", "--",
                           *TRAIN, f"--output_dir={out}"], cwd=REPO, env=env(),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  try:
    stdout, stderr = proc.communicate(timeout=180)
  finally:
    if proc.poll() is None:  # The launcher stops its workers by PID on SIGTERM.
      proc.terminate()
      proc.wait(30)
  assert proc.returncode == 0, (stdout + stderr)[-3000:]
  return out, stdout


def test_two_local_workers_match_one_process(single_process, two_workers):
  run_dir, output = two_workers
  digests = {}
  for worker in (0, 1):
    lines = [l for l in output.splitlines() if l.startswith(f"[worker {worker}]")]
    found = [DIGESTS.search(l) for l in lines]
    digests[worker] = [m.group(1).split() for m in found if m]
    assert len(digests[worker]) == 1, lines[-5:]
  assert digests[0] == digests[1]  # Both workers hold the same meta-parameters, bit for bit.
  assert_close(final_state(run_dir), single_process)
  # Only the chief wrote: one event file, of worker 0's process.
  events = list((run_dir / "tensorboard").glob("events.out.tfevents.*"))
  assert len(events) == 1
  pid0 = re.search(r"started 2 workers \(pids (\d+), (\d+)\)", output).group(1)
  assert f".{pid0}." in events[0].name
  assert (run_dir / "optimizer" / "weights.npz").is_file()


def test_mirrored_two_logical_cpus_match_one_process(single_process, processes, tmp_path):
  code, _, err = processes.run(["-m", "l2l_tf.train", *TRAIN, "--strategy=mirrored",
                                "--cpu_replicas=2", f"--output_dir={tmp_path}"])
  assert code == 0, err[-3000:]
  assert "2 replica(s)" in err
  (replicas,) = [m.group(1).split() for m in DIGESTS.finditer(err)]
  assert len(replicas) == 2 and replicas[0] == replicas[1]
  assert_close(final_state(tmp_path), single_process)


def test_killed_worker_stops_the_other_then_the_job_resumes(two_workers, processes, tmp_path):
  ports = local_cluster.free_ports(2)
  args = ["-m", "l2l_tf.train", *TRAIN, "--strategy=multi_worker", f"--output_dir={tmp_path}"]
  chief = processes.start(args, TF_CONFIG=local_cluster.tf_config(ports, 0))
  # Worker 1 SIGKILLs itself at the end of its second epoch (after 1 checkpoint).
  other = processes.start(args, TF_CONFIG=local_cluster.tf_config(ports, 1),
                          L2L_TF_FAULT_INJECTION="epoch_end:2")
  other.communicate(timeout=120)
  killed_at = time.monotonic()
  assert other.returncode == -signal.SIGKILL
  _, err = chief.communicate(timeout=60)
  assert time.monotonic() - killed_at < 30 + 10  # Within the collective timeout (30 s).
  assert chief.returncode == 1
  assert "Traceback" not in err
  last = err.strip().splitlines()[-1]
  assert last.startswith("error: worker 0 of 2: another worker was lost"), err[-2000:]
  assert "resume from the last checkpoint" in last

  code, out, err = processes.run(["-m", "l2l_tf.launch_local", "--num_workers=2", "--", *TRAIN,
                                  f"--output_dir={tmp_path}"])
  assert code == 0, (out + err)[-3000:]
  assert "[worker 1] Resuming from" in out
  assert_close(final_state(tmp_path), final_state(two_workers[0]), exact=True)


def test_a_two_worker_run_resumes_in_one_process(single_process_run, two_workers, tmp_path):
  # One more epoch of each 3-epoch run, in one process: the 2-worker run resumes as well as the
  # single-process one, and they stay equal (the problems do not depend on the replicas).
  resumed = {}
  for name, run_dir in (("single", single_process_run), ("two_workers", two_workers[0])):
    shutil.copytree(run_dir, tmp_path / name)
    proc = train_one_process(tmp_path / name, "--num_epochs=4")
    assert "Resuming from" in proc.stderr and "(epoch 3)" in proc.stderr
    resumed[name] = final_state(tmp_path / name)
  assert int(resumed["two_workers"]["epoch/.ATTRIBUTES/VARIABLE_VALUE"]) == 4
  assert_close(resumed["two_workers"], resumed["single"])


def test_workers_that_see_different_checkpoints_refuse_to_start(two_workers, processes, tmp_path):
  # The chief's directory holds the finished run; worker 1's holds none (not a shared directory).
  shutil.copytree(two_workers[0], tmp_path / "chief")
  ports = local_cluster.free_ports(2)
  procs = [processes.start(["-m", "l2l_tf.train", *TRAIN, "--strategy=multi_worker",
                            f"--output_dir={tmp_path / name}"],
                           TF_CONFIG=local_cluster.tf_config(ports, index))
           for index, name in enumerate(("chief", "other"))]
  for proc in procs:
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err[-2000:]
    assert err.strip().splitlines()[-1].startswith(
        "error: The workers see different newest checkpoints (ckpt-3, none, by replica)"), \
        err[-2000:]
  assert not (tmp_path / "other").exists()  # Worker 1 wrote nothing.


def test_second_trainer_on_a_run_directory_is_refused(single_process, processes, tmp_path):
  args = ["-m", "l2l_tf.train", *TRAIN, f"--output_dir={tmp_path}"]
  first = processes.start(args)
  lock = tmp_path / "train.lock"
  deadline = time.monotonic() + 60
  while not (lock.is_file() and lock.read_text()) and first.poll() is None:
    assert time.monotonic() < deadline
    time.sleep(0.05)
  code, _, err = processes.run(args)
  assert code == 1
  assert err.strip().splitlines()[-1].startswith(f"error: --output_dir={tmp_path} is in use by "
                                                 f"a live trainer (pid {first.pid} on host ")
  assert "Traceback" not in err
  _, first_err = first.communicate(timeout=120)
  assert first.returncode == 0, first_err[-3000:]
  assert_close(final_state(tmp_path), single_process, exact=True)  # The first is unharmed.
  # Its lock ended with it (no stale lock): this process can take it now.
  run_lock.acquire(tmp_path)
  run_lock.release(tmp_path)


def test_a_worker_that_never_joins_is_a_startup_deadline(processes, tmp_path):
  ports = local_cluster.free_ports(2)
  start = time.monotonic()
  code, _, err = processes.run(["-m", "l2l_tf.train", *TRAIN, "--strategy=multi_worker",
                                "--startup_timeout=2", f"--output_dir={tmp_path}"],
                               timeout=90, TF_CONFIG=local_cluster.tf_config(ports, 0))
  assert code != 0 and time.monotonic() - start < 60
  assert err.strip().splitlines()[-1].startswith(
      "error: worker 0 of 2: the cluster did not come up within --startup_timeout=2 s"), err[-2000:]


@pytest.mark.parametrize("args,message", [
    (["--num_workers=2", "--problem=quadratic"], "--problem: training flags go after `--`"),
    (["--num_workers=0", "--", "--output_dir=x"], "--num_workers must be positive"),
    (["--", "--strategy=mirrored", "--output_dir=x"], "launch_local runs --strategy=multi_worker"),
])
def test_launch_local_bad_input_is_one_line(processes, args, message):
  code, _, err = processes.run(["-m", "l2l_tf.launch_local", *args], timeout=60)
  assert code == 1 and "Traceback" not in err
  assert message in err.strip().splitlines()[-1], err[-2000:]


def test_multi_worker_without_tf_config_says_what_to_do(processes, tmp_path):
  code, _, err = processes.run(["-m", "l2l_tf.train", *TRAIN, "--strategy=multi_worker",
                                f"--output_dir={tmp_path}"], timeout=60)
  assert code == 1
  assert "TF_CONFIG, which is not set" in err.strip().splitlines()[-1]
  assert not list(tmp_path.iterdir())  # Refused before writing anything.


def test_run_lock_refuses_a_second_holder_and_names_the_first(processes, tmp_path):
  holder = processes.start(["-c", "import sys, time; from l2l_tf.meta import run_lock; "
                                  "run_lock.acquire(sys.argv[1]); print('locked', flush=True); "
                                  "time.sleep(600)", str(tmp_path)])
  assert holder.stdout.readline().strip() == "locked"
  with pytest.raises(run_lock.errors.UsageError, match=f"pid {holder.pid} on host "):
    run_lock.acquire(tmp_path)
  os.kill(holder.pid, signal.SIGKILL)  # Killed: the kernel drops its lock, nothing stays stale.
  holder.wait()
  run_lock.acquire(tmp_path)
  run_lock.release(tmp_path)
