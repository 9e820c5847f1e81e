"""One writer per run directory: an exclusive `flock` on `<output_dir>/train.lock`.

The lock file holds the pid and host of the process that has it, so a refused process can name the
live one. The kernel drops a `flock` when its process ends, however it ends (SIGKILL included), so a
killed trainer never leaves a stale lock: the file stays, the lock does not.
"""

import fcntl
import os
import socket
import time
from pathlib import Path

from l2l_tf import errors

LOCK_NAME = "train.lock"
_held = {}  # Resolved lock path -> the open descriptor that holds it (for the process's life).


def acquire(output_dir) -> Path:
  """Locks `output_dir` for this process until it ends (again: a no-op); returns the lock file.

  Raises:
    errors.UsageError: another live process holds it (the message names it).
  """
  path = (Path(output_dir) / LOCK_NAME).resolve()
  if str(path) in _held:
    return path
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # No O_TRUNC: the holder's line stays.
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError:
    holder = os.pread(fd, 1024, 0).decode(errors="replace").strip() or "a process starting up"
    os.close(fd)
    raise errors.UsageError(  # pylint: disable=raise-missing-from
        f"--output_dir={output_dir} is in use by a live trainer ({holder}); wait for it to end "
        f"or stop it, then run again to resume, or choose another --output_dir.")
  os.ftruncate(fd, 0)
  os.pwrite(fd, f"pid {os.getpid()} on host {socket.gethostname()}, since "
                f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
  _held[str(path)] = fd
  return path


def release(output_dir):
  """Unlocks `output_dir` if this process holds it (ending the process does the same)."""
  fd = _held.pop(str((Path(output_dir) / LOCK_NAME).resolve()), None)
  if fd is not None:
    os.close(fd)
