"""Data-parallel meta-training on `tf.distribute` (issue 17): one host's devices or many workers.

`make_replication` builds the strategy of `--strategy`:

* `default`: no replication (`None`); the trainer runs exactly as it always has.
* `mirrored`: `tf.distribute.MirroredStrategy` over the GPUs of this host, or over N logical CPUs
  (`cpu_replicas`, for tests and for trying it without GPUs).
* `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy`, the cluster from `TF_CONFIG`, the
  same command on every worker; a collective timeout (a peer lost mid-run stops the others) and a
  start-up deadline (a worker that never joins does not make the others wait forever).

How a meta-step is split (`Replication.shard`, `Replication.meta_step`): every replica draws the
epoch's whole meta-batch from (run seed, epoch), exactly as one process does, and keeps the slice
of its global replica id r, instances r*b .. (r+1)*b - 1 (b = meta-batch / replicas; drawing is
cheap next to an unroll). So the union of the replicas' problems is the single-process meta-batch,
bit for bit, for any number of replicas, which also makes a run resumable with another number of
workers. Each replica computes the meta-gradient of the mean over its b problems; the gradients
are all-reduced (SUM) after division by the number of replicas, i.e. scaled by the global
meta-batch; every replica (and worker) then applies the same update to its copy of the
meta-parameters, which therefore stay identical. The meta-optimizer is the trainer's own pure Adam
(`checkpointing.apply_if_finite`), applied in the cross-replica context: Sonnet 2's optimizers
refuse `MultiWorkerMirroredStrategy`, and this one needs no strategy support.
"""

import dataclasses
import hashlib
import json
import os
import subprocess
import sys
from typing import Callable, List, Optional

import tensorflow as tf

from l2l_tf import errors
from l2l_tf.meta import checkpointing

STRATEGIES = ("default", "mirrored", "multi_worker")
# What a lost or hung peer raises inside a collective.
PEER_ERRORS = (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
               tf.errors.CancelledError, tf.errors.AbortedError, tf.errors.InternalError)


def peer_error_cause(error: Exception, limit: int = 200) -> str:
  """The informative line of a collective's error (TensorFlow's first line is boilerplate)."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()]
  boilerplate = ("Graph execution error", "Detected at node", "[[", "File ", "The error could be",
                 "Additional GRPC")
  useful = [line for line in lines if not line.startswith(boilerplate)]
  cause = next((line for line in useful if "aborted by" in line), useful[0] if useful else "")
  cause = cause.split("aborted by:", 1)[-1].strip()
  return f"{type(error).__name__}: {cause[:limit]}"


@dataclasses.dataclass
class Replication:
  """A strategy and this process's place in it."""
  strategy: tf.distribute.Strategy
  name: str
  is_chief: bool = True
  worker_index: int = 0
  num_workers: int = 1

  @property
  def num_replicas(self) -> int:
    return self.strategy.num_replicas_in_sync

  def describe(self) -> str:
    where = (f"worker {self.worker_index} of {self.num_workers}"
             + (" (chief)" if self.is_chief else "")) if self.num_workers > 1 else "one process"
    return f"--strategy={self.name}: {self.num_replicas} replica(s), {where}"

  def check_meta_batch(self, meta_batch_size: int):
    if meta_batch_size % self.num_replicas:
      raise checkpointing.TrainingError(
          f"--meta_batch_size={meta_batch_size} does not split over {self.num_replicas} "
          f"replicas ({self.describe()}); choose a multiple of {self.num_replicas}.")

  def gather(self, value: int) -> List[int]:
    """`value` of every replica of the cluster, by global replica id (a collective)."""
    gathered = self.strategy.run(lambda: tf.distribute.get_replica_context().all_gather(
        tf.constant([value], tf.int64), axis=0))
    return [int(v) for v in self.strategy.experimental_local_results(gathered)[0].numpy()]

  def last_collective(self):
    """A last collective before a worker leaves, so that no peer still fetching from it sees it
    gone (a worker serves the values the others fetch); a peer already gone is fine here."""
    try:
      self.gather(0)
    except PEER_ERRORS:
      pass

  def check_same_checkpoint(self, number: Optional[int], output_dir):
    """Every worker sees the same newest checkpoint (`number`; None: no checkpoint) before they
    restore it together (restoring is collective too).

    Raises:
      TrainingError: they differ (the run directory is not one shared directory).
    """
    numbers = self.gather(-1 if number is None else number)
    if len(set(numbers)) > 1:
      self.last_collective()  # Every worker has the answer before any leaves.
      seen = ", ".join("none" if n < 0 else f"ckpt-{n}" for n in numbers)
      raise checkpointing.TrainingError(
          f"The workers see different newest checkpoints ({seen}, by replica): every worker "
          f"must see the chief's checkpoints, so --output_dir={output_dir} must be one shared "
          f"directory (e.g. on NFS) for all of them.")

  def digests(self, variables) -> List[str]:
    """A SHA-256 of every local replica's copy of `variables` (equal copies, equal digests)."""
    copies = [self.strategy.experimental_local_results(v) for v in variables]
    found = []
    for replica in range(len(copies[0]) if copies else 0):
      digest = hashlib.sha256()
      for per_variable in copies:
        digest.update(per_variable[replica].numpy().tobytes())
      found.append(digest.hexdigest()[:16])
    return found

  def shard(self, batch, meta_batch_size: int, finish: Callable = lambda *x: x):
    """Per-replica values: replica r gets `finish(*slice)` of `batch` (a nest of tensors with
    leading axis [meta_batch_size]), the slice being rows r*b .. (r+1)*b - 1."""
    per = meta_batch_size // self.num_replicas
    devices = self.strategy.extended.worker_devices

    def value_fn(context):
      r = context.replica_id_in_sync_group
      with tf.device(devices[r % len(devices)]):
        part = tf.nest.map_structure(lambda t: tf.identity(t[r * per:(r + 1) * per]), batch)
        return finish(*part)

    return self.strategy.experimental_distribute_values_from_function(value_fn)

  def meta_step(self, meta_gradient: Callable, apply: Callable) -> Callable:
    """The compiled replicated meta-step.

    Args:
      meta_gradient: (params, state, instance, start_step) -> (meta_loss, grads, params, state)
        of one replica's problems (meta_loss the mean over them).
      apply: (meta_loss, grads) -> applied (a bool tensor): the meta-update, run once per worker
        in the cross-replica context with the all-reduced loss and gradients.

    Returns:
      A tf.function of per-replica (params, state, instance) and the step tensor, returning
      (global meta_loss, applied, per-replica params, per-replica state).
    """
    strategy = self.strategy

    def replica_fn(params, state, instance, start_step):
      meta_loss, grads, params, state = meta_gradient(params, state, instance, start_step)
      context = tf.distribute.get_replica_context()
      scale = 1.0 / context.num_replicas_in_sync  # The mean of the replicas' means.
      summed = context.all_reduce(tf.distribute.ReduceOp.SUM,
                                  [meta_loss * scale] + [g * scale for g in grads])
      return summed[0], summed[1:], params, state

    @tf.function
    def step(params, state, instance, start_step):
      meta_loss, grads, params, state = strategy.run(
          replica_fn, args=(params, state, instance, start_step))
      # All-reduced values are the same on every replica: take this worker's first.
      first = lambda value: strategy.experimental_local_results(value)[0]
      meta_loss = first(meta_loss)
      grads = [first(g) for g in grads]
      return meta_loss, apply(meta_loss, grads), params, state

    return step


class StartupWatchdog:
  """Ends this process with `message` unless `done()` is called within `seconds`.

  A separate small process does the waiting: TensorFlow holds the GIL while a worker waits for its
  peers in the strategy's constructor, so no Python thread of this process would run.
  """

  _CODE = ("import os, select, signal, sys\n"
           "ready, _, _ = select.select([sys.stdin], [], [], float(sys.argv[2]))\n"
           "if not ready:\n"
           "  sys.stderr.write(sys.argv[3] + '\\n'); sys.stderr.flush()\n"
           "  os.kill(int(sys.argv[1]), signal.SIGKILL)\n")

  def __init__(self, seconds: float, message: str):
    self._proc = subprocess.Popen(
        [sys.executable, "-c", self._CODE, str(os.getpid()), str(seconds), message],
        stdin=subprocess.PIPE)

  def done(self):
    """The deadline is met: the watchdog exits (so it does if this process dies first)."""
    self._proc.stdin.write(b"up\n")
    self._proc.stdin.close()
    self._proc.wait()


def cluster_from_tf_config() -> dict:
  """{"workers": [host:port, ...], "index": this worker's index, "chief": bool} of TF_CONFIG.

  Raises:
    errors.UsageError: TF_CONFIG is missing or is not a worker cluster.
  """
  text = os.environ.get("TF_CONFIG")
  example = ('TF_CONFIG=\'{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
             '"task": {"type": "worker", "index": 0}}\'')
  if not text:
    raise errors.UsageError(
        f"--strategy=multi_worker reads the cluster from TF_CONFIG, which is not set; set it on "
        f"every worker (e.g. {example}, index 0 on the first), or try it on one machine with "
        f"`python -m l2l_tf.launch_local --num_workers=2 -- <train flags>`.")
  try:
    config = json.loads(text)
    cluster, task = config["cluster"], config["task"]
    kinds = set(cluster) - {"worker", "chief"}
    if kinds or task["type"] not in cluster:
      raise ValueError(f"only 'chief' and 'worker' tasks are used, got {sorted(cluster)} and "
                       f"task type {task['type']!r}")
    workers = list(cluster.get("chief", [])) + list(cluster.get("worker", []))
    index = int(task["index"]) + (len(cluster.get("chief", [])) if task["type"] == "worker" else 0)
  except (ValueError, KeyError, TypeError) as e:
    raise errors.UsageError(f"TF_CONFIG is not a worker cluster ({e}); expected e.g. "
                            f"{example}.") from e
  if not 0 <= index < len(workers):
    raise errors.UsageError(f"TF_CONFIG's task index {task['index']} is not in its cluster of "
                            f"{len(workers)} worker(s).")
  return {"workers": workers, "index": index, "chief": index == 0}


def make_replication(name: str, cpu_replicas: int = 0, collective_timeout: float = 60.0,
                     startup_timeout: float = 120.0, log=print) -> Optional[Replication]:
  """The strategy `name` (one of STRATEGIES); `None` for "default". Call it before any other
  TensorFlow call of the process (logical CPUs and the cluster are set up at start-up).

  Raises:
    errors.UsageError: an unknown name, bad timeouts, no devices to mirror, or a bad TF_CONFIG.
  """
  if name not in STRATEGIES:
    raise errors.UsageError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}.")
  if cpu_replicas < 0 or (cpu_replicas and name != "mirrored"):
    raise errors.UsageError(f"--cpu_replicas={cpu_replicas} applies to --strategy=mirrored only "
                            f"(a positive count of logical CPUs, or 0 for this host's GPUs).")
  if name == "default":
    return None
  if name == "mirrored":
    return Replication(tf.distribute.MirroredStrategy(_mirrored_devices(cpu_replicas)), name)
  if not collective_timeout > 0 or not startup_timeout > 0:
    raise errors.UsageError(f"--collective_timeout and --startup_timeout must be positive, got "
                            f"{collective_timeout} and {startup_timeout}.")
  cluster = cluster_from_tf_config()
  workers = cluster["workers"]
  watchdog = StartupWatchdog(startup_timeout, (
      f"error: worker {cluster['index']} of {len(workers)}: the cluster did not come up within "
      f"--startup_timeout={startup_timeout:g} s (TF_CONFIG: {', '.join(workers)}); start the "
      f"same command on every worker of TF_CONFIG, or raise --startup_timeout."))
  options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=collective_timeout)
  strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
  # A first collective: every worker has joined.
  strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(lambda: tf.constant(1.0)), axis=None)
  watchdog.done()
  replication = Replication(strategy, name, is_chief=cluster["chief"],
                            worker_index=cluster["index"], num_workers=len(workers))
  log(f"{replication.describe()}: the cluster is up.")
  return replication


def _mirrored_devices(cpu_replicas: int) -> Optional[List[str]]:
  """The devices of a MirroredStrategy: `cpu_replicas` logical CPUs, or every GPU (None)."""
  if not cpu_replicas:
    if not tf.config.list_physical_devices("GPU"):
      raise errors.UsageError("--strategy=mirrored found no GPU on this host; mirror over "
                              "logical CPUs with --cpu_replicas=N (e.g. 2), or use "
                              "--strategy=default.")
    return None
  cpu = tf.config.list_physical_devices("CPU")[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas)
  except RuntimeError as e:
    raise errors.ConfigError(f"--cpu_replicas={cpu_replicas}: TensorFlow has already started in "
                             f"this process ({e}); choose the strategy first.") from e
  return [d.name for d in tf.config.list_logical_devices("CPU")]
