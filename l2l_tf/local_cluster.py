"""A multi-worker meta-training job on this machine (`python -m l2l_tf.launch_local`).

`LocalCluster` starts N copies of `python -m l2l_tf.train ... --strategy=multi_worker`, each with a
`TF_CONFIG` naming every worker on a free 127.0.0.1 port and its own index, forwards their output
line by line with a `[worker i]` prefix, and stops them all (by PID: SIGTERM, then SIGKILL, which
TensorFlow cannot catch) when one fails, on Ctrl-C or on SIGTERM. No TensorFlow in this process.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import List, Optional, Sequence

from l2l_tf import errors


class LaunchError(errors.Error):
  """A worker of the local job failed (the others were stopped)."""


def free_ports(count: int) -> List[int]:
  """`count` distinct ports that were free on 127.0.0.1 a moment ago (bound at once, then closed)."""
  sockets = []
  try:
    for _ in range(count):
      s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
      s.bind(("127.0.0.1", 0))
      sockets.append(s)
    return [s.getsockname()[1] for s in sockets]
  finally:
    for s in sockets:
      s.close()


def tf_config(ports: Sequence[int], index: int) -> str:
  """TF_CONFIG of worker `index` of a cluster of workers on 127.0.0.1 at `ports`."""
  return json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                     "task": {"type": "worker", "index": index}})


class LocalCluster:
  """N worker processes of one command, started together and stopped together.

  Args:
    num_workers: the processes.
    args: the command's arguments after `python` (e.g. ["-m", "l2l_tf.train", ...]).
    env: their environment (default: this process's), to which TF_CONFIG is added.
    out: where their prefixed output goes.
  """

  def __init__(self, num_workers: int, args: Sequence[str], env: Optional[dict] = None,
               out=None, grace_seconds: float = 3.0):
    self.num_workers = num_workers
    self.args = list(args)
    self.env = dict(os.environ if env is None else env)
    self.out = out or sys.stdout
    self.grace_seconds = grace_seconds
    self.procs: List[subprocess.Popen] = []
    self._threads: List[threading.Thread] = []
    self._lock = threading.Lock()

  def start(self):
    ports = free_ports(self.num_workers)
    for index in range(self.num_workers):
      env = dict(self.env, TF_CONFIG=tf_config(ports, index))
      proc = subprocess.Popen([sys.executable] + self.args, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
      self.procs.append(proc)
      thread = threading.Thread(target=self._forward, args=(index, proc), daemon=True)
      thread.start()
      self._threads.append(thread)
    self._print(f"[launch_local] started {self.num_workers} workers (pids "
                f"{', '.join(str(p.pid) for p in self.procs)}) on 127.0.0.1 ports "
                f"{', '.join(map(str, ports))}")

  def _print(self, line: str):
    with self._lock:
      self.out.write(line if line.endswith("\n") else line + "\n")
      self.out.flush()

  def _forward(self, index: int, proc: subprocess.Popen):
    for raw in iter(proc.stdout.readline, b""):
      self._print(f"[worker {index}] {raw.decode(errors='replace').rstrip()}")

  def wait(self, poll_seconds: float = 0.2) -> int:
    """Waits until every worker has exited 0 (returns 0) or one has failed (stops the others and
    raises LaunchError)."""
    while True:
      codes = [p.poll() for p in self.procs]
      failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
      if failed:
        index, code = failed[0]
        stopped = self.stop()
        raise LaunchError(
            f"worker {index} (pid {self.procs[index].pid}) exited with status {code}"
            + (f"; stopped the other workers (pids {', '.join(map(str, stopped))})"
               if stopped else "") + ". Its output above says why; run the same command again "
            "to resume from the last checkpoint.")
      if all(c == 0 for c in codes):
        self._join_output()
        return 0
      time.sleep(poll_seconds)

  def stop(self) -> List[int]:
    """Stops the workers still running, by PID; returns their PIDs."""
    running = [p for p in self.procs if p.poll() is None]
    for p in running:
      p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + self.grace_seconds
    for p in running:
      try:
        p.wait(max(deadline - time.monotonic(), 0.01))
      except subprocess.TimeoutExpired:
        p.kill()  # TensorFlow catches SIGTERM while it waits for its peers.
        p.wait()
    self._join_output()
    return [p.pid for p in running]

  def _join_output(self):
    for thread in self._threads:
      thread.join(timeout=5)

  def run(self) -> int:
    """Starts the workers and waits for them; Ctrl-C or SIGTERM stops them all."""

    def terminate(signum, frame):
      del frame
      raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
      self.start()
      return self.wait()
    except KeyboardInterrupt:
      stopped = self.stop()
      raise LaunchError(f"interrupted; stopped the workers (pids "  # pylint: disable=raise-missing-from
                        f"{', '.join(map(str, stopped)) or 'none running'}).")
    finally:
      signal.signal(signal.SIGTERM, previous)
