"""What is measured: problems, optimizers, trainers; the main table's meta-step and evaluation."""

import numpy as np
import tensorflow as tf

from benchmarks import flops as flops_lib
from benchmarks import harness
from l2l_tf import meta, optimizers, problems
from l2l_tf.meta import unroll

# The benchmark times MetaTrainer's own compiled meta-step, which is not public API.
# pylint: disable=protected-access


class DiagonalQuadratic(problems.Problem):
  """The scaling suite's cheap problem: f(theta) = mean_i a_i (theta_i - y_i)^2, O(n) per loss;
  a, y per instance, theta_0 ~ N(0, 0.01^2)."""

  name = "diagonal_quadratic"

  def __init__(self, num_coordinates: int):
    self.num_coordinates = int(num_coordinates)

  @property
  def param_names(self):
    return ["theta"]

  def sample_instances(self, num, seed):
    shape = [num, self.num_coordinates]
    return {"a": tf.random.stateless_uniform(shape, problems.fold_in(seed, 0), 0.5, 1.5),
            "y": tf.random.stateless_normal(shape, problems.fold_in(seed, 1))}

  def initial_params(self, instance, seed):
    return [0.01 * tf.random.stateless_normal(tf.shape(instance["y"]), seed)]

  def loss(self, params, instance, step=None):
    return tf.reduce_mean(instance["a"] * tf.square(params[0] - instance["y"]), axis=-1)

  def get_config(self):
    return {"name": self.name, "num_coordinates": self.num_coordinates}


def default_optimizer_config(problem_name: str) -> dict:
  """The figures' untrained 2 x 20 LSTM: identity on quadratics, LogAndSign(10) x 0.1 on MNIST."""
  if problem_name == "mnist":
    return {"name": "lstm", "hidden_sizes": [20, 20],
            "preprocessing": {"name": "log_and_sign", "p": 10.0}, "output_scale": 0.1}
  return {"name": "lstm", "hidden_sizes": [20, 20], "preprocessing": {"name": "identity"},
          "output_scale": 1.0}


def make_problem(name: str, settings: dict, num_coordinates: int = 0):
  """The benchmark's problem `name`: quadratic, mnist (cache or synthetic) or diagonal."""
  if name == "quadratic":
    return problems.Quadratic(num_dims=settings["quadratic_dims"])
  if name == "diagonal":
    return DiagonalQuadratic(num_coordinates)
  if name != "mnist":
    raise ValueError(f"Unknown benchmark problem {name!r}.")
  if settings["synthetic_data"]:
    rng = np.random.RandomState(0)
    images = rng.randint(0, 256, size=(1000, 784)).astype(np.uint8)
    labels = rng.randint(0, 10, size=1000)
    return problems.MLPClassifier(images, labels, hidden_sizes=(20,),
                                  batch_size=settings["mnist_batch_size"], name="mnist",
                                  data_config={"split": "synthetic"})
  return problems.make_problem({"name": "mnist", "hidden_sizes": [20],
                                "batch_size": settings["mnist_batch_size"]},
                               split="train", data_dir=settings["data_dir"])


def make_optimizer(problem_name: str, settings: dict):
  """The library's learned optimizer under test: `--optimizer_path`, else the untrained default
  for `problem_name` (`variants.make_variant` turns it into another step with the same weights)."""
  if settings.get("optimizer_path"):
    return optimizers.load_optimizer(settings["optimizer_path"])
  return optimizers.make_optimizer(default_optimizer_config(problem_name))


def make_trainer(problem, optimizer, truncation: int, workdir, recompute_chunk: int = 0):
  """A MetaTrainer whose `_meta_step` is the library's meta-step (checkpoints go to `workdir`)."""
  config = meta.TrainConfig(num_epochs=1, horizon=truncation, truncation=truncation,
                            num_validation_problems=1, recompute_chunk=recompute_chunk)
  return meta.MetaTrainer(problem, optimizer, config, workdir, log_fn=lambda message: None)


def meta_step_inputs(problem, optimizer, num: int, seed: int):
  """`num` training problems with their theta_0 and the optimizer's fresh state."""
  instance, params = problem.sample(num, problems.split_seed(seed, "train", 0))
  return instance, params, optimizer.initial_state(params)


def blocking(fn, *args):
  """A zero-argument callable that runs fn(*args) and waits for its first output."""

  def call():
    out = fn(*args)
    first = tf.nest.flatten(out)[0]
    return first.numpy()

  return call


def problem_count(name, settings, kind):
  """Problems run at once: per meta-step (`kind` "meta") or per evaluation ("eval")."""
  if name == "mnist":
    return settings["mnist_meta_batch"] if kind == "meta" else settings["mnist_eval_problems"]
  return settings["quadratic_meta_batch"] if kind == "meta" else settings["quadratic_eval_problems"]


def run_meta_step(task, settings, workdir) -> dict:
  """The library's meta-step on one problem: timing, FLOPs, floor and memory."""
  problem = make_problem(task["problem"], settings)
  optimizer = make_optimizer(task["problem"], settings)
  num = problem_count(task["problem"], settings, "meta")
  truncation = settings["truncation"]
  trainer = make_trainer(problem, optimizer, truncation, workdir)
  instance, params, state = meta_step_inputs(problem, optimizer, num, settings["seed"])
  sizes = flops_lib.param_sizes(params)
  flops = flops_lib.meta_step_flops(problem, optimizer, num, sizes, truncation)
  rss_before = harness.current_rss_mb()
  start = tf.constant(0, tf.int32)
  timing = harness.time_calls(blocking(trainer._meta_step, params, state, instance, start),
                              settings["warmup"], settings["repeats"])
  peak = harness.peak_rss_mb()
  rates = flops_lib.measure_matmul_rates(flops["gate_shapes"], flops["problem_shapes"])
  record = dict(timing)
  record.update(flops_lib.floor_fields(record, flops, rates))
  record.update({
      "peak_rss_mb": peak, "rss_before_mb": rss_before,
      "coordinates": sum(sizes), "meta_batch": num, "truncation": truncation,
      "tracing_count": trainer._meta_step.experimental_get_tracing_count(),
      "problem": problem.get_config(), "optimizer": optimizer.get_config()})
  return record


def run_evaluation(task, settings, workdir) -> dict:
  """`steps` forward-only optimizee steps of the learned optimizer and of Adam, +/- XLA, as the
  library runs them (`unroll.make_trajectory_fn`)."""
  del workdir
  problem = make_problem(task["problem"], settings)
  learned = make_optimizer(task["problem"], settings)
  adam = optimizers.Adam(learning_rate=0.01)
  num = problem_count(task["problem"], settings, "eval")
  steps = settings["eval_steps"]
  instance, params, _ = meta_step_inputs(problem, learned, num, settings["seed"])
  sizes = flops_lib.param_sizes(params)
  rss_before = harness.current_rss_mb()
  records, rates, peak_plain = {}, None, None
  for name, optimizer, jit in (("adam", adam, False), ("learned", learned, False),
                               ("adam_xla", adam, True), ("learned_xla", learned, True)):
    if jit and peak_plain is None:
      peak_plain = harness.peak_rss_mb()
    fn = unroll.make_trajectory_fn(problem, optimizer, steps, jit_compile=jit)
    timing = harness.time_calls(blocking(fn, instance, params), settings["warmup"],
                                settings["repeats"])
    flops = flops_lib.evaluation_flops(problem, optimizer, num, sizes, steps)
    if rates is None:
      gate_shapes = flops_lib.evaluation_flops(problem, learned, num, sizes, steps)["gate_shapes"]
      rates = flops_lib.measure_matmul_rates(gate_shapes, flops["problem_shapes"])
    timing.update(flops_lib.floor_fields(timing, flops, rates))
    timing["tracing_count"] = fn.experimental_get_tracing_count()
    timing["jit_compile"] = jit
    records[name] = timing
  record = dict(records.pop("learned"))
  record.update({
      "adam": records["adam"], "learned_xla": records["learned_xla"],
      "adam_xla": records["adam_xla"],
      "learned_to_adam_cpu": record["cpu_s_median"] / records["adam"]["cpu_s_median"],
      "learned_to_adam_cpu_xla": (records["learned_xla"]["cpu_s_median"]
                                  / records["adam_xla"]["cpu_s_median"]),
      "xla_speedup_learned": record["cpu_s_median"] / records["learned_xla"]["cpu_s_median"],
      "xla_speedup_adam": records["adam"]["cpu_s_median"] / records["adam_xla"]["cpu_s_median"],
      "peak_rss_mb": peak_plain, "peak_rss_mb_with_xla": harness.peak_rss_mb(),
      "rss_before_mb": rss_before, "steps": steps, "problems": num,
      "coordinates": sum(sizes), "problem": problem.get_config(),
      "optimizer": learned.get_config()})
  return record
