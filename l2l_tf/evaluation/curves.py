"""Loss curves of an optimizer over many problems, with 95% confidence intervals.

Within `chunk_cache(directory)` every chunk of runs `evaluate_losses` computes is also written to
`directory` (atomically), under a key of everything it depends on (the problem's and optimizer's
configs, the optimizer's variables, learning rate included, the chunk's problems and theta_0, the
number of steps, XLA or not), and read back instead of recomputed: a figure that is killed (a long
conv-net evaluation, a session's end) resumes where it stopped.
"""

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import tensorflow as tf

from l2l_tf.evaluation import stats
from l2l_tf.meta import unroll


def evaluate_losses(problem, optimizer, instance, params, num_steps: int,
                    chunk_size: int = 0, jit_compile: bool = False, progress=None) -> np.ndarray:
  """Runs `optimizer` from a fresh state on every instance.

  Args:
    problem, optimizer: as in `l2l_tf.meta.unroll.trajectory`.
    instance, params: problems and theta_0, leading axis [N].
    num_steps: optimizee steps T.
    chunk_size: instances run at once (bounds memory); 0 runs all N together.
    jit_compile: compile the trajectory with XLA.
    progress: optional callable(num_done) for a progress bar.

  Returns:
    losses [N, T + 1]: f(theta_t) for t = 0..T per instance.
  """
  run = unroll.make_trajectory_fn(problem, optimizer, num_steps, jit_compile=jit_compile)
  compute = lambda i, p: run(i, p).numpy().T
  if _CACHE:
    compute = _cached(compute, _CACHE[-1], [problem.get_config(), optimizer.get_config(),
                                            int(num_steps), bool(jit_compile)], optimizer)
  return run_in_chunks(compute, instance, params, chunk_size, progress)


_CACHE = []  # The active `chunk_cache` directories (innermost last).


def active_cache():
  """The innermost active `chunk_cache` directory, or None outside any."""
  return _CACHE[-1] if _CACHE else None


@contextlib.contextmanager
def chunk_cache(directory, remove_on_success: bool = True):
  """Caches the chunks `evaluate_losses` computes in `directory` (see the module docstring);
  with `remove_on_success` the directory is deleted when the block ends without an error."""
  directory = Path(directory)
  directory.mkdir(parents=True, exist_ok=True)
  _CACHE.append(directory)
  try:
    yield directory
  finally:
    _CACHE.pop()
  if remove_on_success:
    shutil.rmtree(directory, ignore_errors=True)


def _digest(hasher, value):
  if isinstance(value, (tf.Tensor, tf.Variable, np.ndarray)):
    array = np.asarray(value)
    hasher.update(str((array.dtype.str, array.shape)).encode())
    hasher.update(np.ascontiguousarray(array).tobytes())
  else:
    hasher.update(json.dumps(value, sort_keys=True, default=str).encode())


def _cached(compute, directory: Path, description, optimizer):
  """`compute(instance, params)` read from / written to `directory` by a key of its inputs."""
  base = hashlib.sha256()
  _digest(base, description)
  for v in sorted(optimizer.variables, key=lambda v: v.name):
    _digest(base, v.name)
    _digest(base, v)

  def cached(instance, params):
    hasher = base.copy()
    for t in tf.nest.flatten(instance) + list(params):
      _digest(hasher, t)
    path = directory / f"{hasher.hexdigest()}.npy"
    if path.exists():
      try:
        return np.load(path)
      except (OSError, ValueError, EOFError):  # An unreadable file: compute it again.
        pass
    result = np.asarray(compute(instance, params))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
      np.save(f, result)
    os.replace(tmp, path)
    return result

  return cached


def run_in_chunks(fn, instance, params, chunk_size: int = 0, progress=None):
  """`fn(instance, params)` on consecutive chunks of the N instances, results concatenated.

  Args:
    fn: takes a chunk's instances and parameters (leading axis [n]); returns one array [n, ...]
      or a tuple of them (tensors are converted to NumPy).
    instance, params: all N instances and their parameters, leading axis [N].
    chunk_size: instances per call (bounds memory); 0 runs all N together.
    progress: optional callable(num_done) called after each chunk.

  Returns:
    The concatenation over chunks along axis 0: an array, or a tuple of arrays if `fn` returns
    tuples.
  """
  n = int(params[0].shape[0])
  chunk_size = chunk_size or n
  chunks = []
  for start in range(0, n, chunk_size):
    sub = slice(start, min(n, start + chunk_size))
    chunk_instance = tf.nest.map_structure(lambda t: t[sub], instance)
    chunks.append(fn(chunk_instance, [p[sub] for p in params]))
    if progress is not None:
      progress(sub.stop - sub.start)
  if isinstance(chunks[0], tuple):
    return tuple(np.concatenate([np.asarray(o) for o in parts], axis=0) for parts in zip(*chunks))
  return np.concatenate([np.asarray(c) for c in chunks], axis=0)


def summarize_losses(losses: np.ndarray) -> dict:
  """Per-step mean and normal-approximation 95% CI over runs (its lower end clipped at 0 for
  non-negative losses); diverged runs counted, not averaged.

  A run has diverged when any of its losses is non-finite; it is left out of the mean and CI and
  counted in `divergence_rate`, so one divergence does not turn the curve into NaN.
  """
  losses = np.asarray(losses, np.float64)
  finite_runs = np.all(np.isfinite(losses), axis=1)
  kept = losses[finite_runs]
  n = kept.shape[0]
  if n == 0:
    nan = [float("nan")] * losses.shape[1]
    return {"mean": nan, "ci95_low": nan, "ci95_high": nan, "divergence_rate": 1.0,
            "num_runs": int(losses.shape[0])}
  mean = kept.mean(axis=0)
  half = stats.half_width(kept) if n > 1 else np.zeros_like(mean)
  low = mean - half
  if np.all(kept >= 0):  # The mean of non-negative losses is non-negative.
    low = np.maximum(low, 0.0)
  return {"mean": mean.tolist(), "ci95_low": low.tolist(),
          "ci95_high": (mean + half).tolist(),
          "divergence_rate": float(1.0 - n / losses.shape[0]),
          "num_runs": int(losses.shape[0])}
