"""What the entry points do with the shared flags (train, evaluate, a figure), in one place.

The entry points are thin: each parses its flags and calls one function here, so no entry point
imports another (and a flag of one is never silently accepted by another). Like `l2l_tf.cli`, this
module reads the flags and hands the library plain arguments.
"""

import contextlib
import sys
from pathlib import Path

from l2l_tf import cli

FLAGS = cli.FLAGS


def train_from_flags(output_dir, export_only: bool = False) -> dict:
  """Meta-trains with the current flags into `output_dir`; returns the trainer's summary. With
  `export_only`, exports the run's best meta-parameters so far without training."""
  from l2l_tf import meta, optimizers  # pylint: disable=g-import-not-at-top
  from l2l_tf.meta import replication as replication_lib, run_lock  # pylint: disable=g-import-not-at-top
  log = lambda m: print(m, file=sys.stderr, flush=True)
  if export_only and FLAGS.strategy != "default":
    raise cli.UsageError("--export_only runs in one process; drop --strategy.")
  chief = (FLAGS.strategy != "multi_worker"
           or replication_lib.cluster_from_tf_config()["chief"])
  if chief:  # The other workers of a multi-worker run write nothing into the run directory.
    output_dir = cli.require_writable_dir(output_dir)
    if not export_only:  # (An export may run beside the training it reads.)
      run_lock.acquire(output_dir)
  elif not output_dir:
    raise cli.UsageError("--output_dir is required.")
  # Before any other TensorFlow call: it sets up logical devices or joins the cluster.
  replication = replication_lib.make_replication(
      FLAGS.strategy, FLAGS.cpu_replicas, FLAGS.collective_timeout, FLAGS.startup_timeout, log)
  with _peer_errors_as_one_line(replication, output_dir):
    problem = cli.make_training_problem("train")
    with replication.strategy.scope() if replication else contextlib.nullcontext():
      optimizer = optimizers.make_optimizer(cli.optimizer_config())
    command = cli.command_line(drop_flags=("export_only",))
    trainer = meta.MetaTrainer(problem, optimizer, cli.train_config(), output_dir,
                               metadata={"command": command}, log_fn=log,
                               validation_problem=cli.make_training_problem("valid"),
                               replication=replication)
    if replication and replication.num_workers > 1:
      return trainer.train(progress=FLAGS.progress)
  if export_only:
    if trainer.resumed_from is None:
      raise cli.UsageError(f"--export_only: no checkpoint in {output_dir}; train first.")
    return {"epochs": int(trainer.epoch.numpy()), "best_epoch": int(trainer.best_epoch.numpy()),
            "best_validation_final_loss": float(trainer.best_score.numpy()),
            "optimizer_dir": str(trainer.export_best())}
  return trainer.train(progress=FLAGS.progress)


@contextlib.contextmanager
def _peer_errors_as_one_line(replication, output_dir):
  """With several workers, a lost or hung peer becomes a one-line TrainingError."""
  from l2l_tf import meta  # pylint: disable=g-import-not-at-top
  from l2l_tf.meta import replication as replication_lib  # pylint: disable=g-import-not-at-top
  if replication is None or replication.num_workers == 1:
    yield
    return
  try:
    yield
  except replication_lib.PEER_ERRORS as e:
    raise meta.TrainingError(
        f"worker {replication.worker_index} of {replication.num_workers}: another worker was "
        f"lost or did not answer within --collective_timeout={FLAGS.collective_timeout:g} s "
        f"({replication_lib.peer_error_cause(e)}); stopped. Start the job again (the same "
        f"command on every worker) to resume from the last checkpoint in "
        f"{Path(output_dir) / 'checkpoints'}.") from e


def launch_local_from_flags(num_workers: int, train_args) -> int:
  """Runs `python -m l2l_tf.train <train_args> --strategy=multi_worker` as `num_workers` local
  workers (`l2l_tf.local_cluster`); the training flags come after `--`."""
  from l2l_tf import local_cluster  # pylint: disable=g-import-not-at-top
  misplaced = [f"--{flag.name}" for flag in FLAGS.get_flags_for_module("l2l_tf.cli")
               if flag.present and flag.name != "debug"]
  if misplaced:
    raise cli.UsageError(f"{', '.join(misplaced)}: training flags go after `--` "
                         f"(python -m l2l_tf.launch_local --num_workers=2 -- <train flags>).")
  if num_workers < 1:
    raise cli.UsageError(f"--num_workers must be positive, got {num_workers}.")
  strategies = [a.split("=", 1)[1] for a in train_args if a.startswith("--strategy=")]
  if any(s != "multi_worker" for s in strategies):
    raise cli.UsageError(f"launch_local runs --strategy=multi_worker, got "
                         f"--strategy={strategies[-1]}; drop the flag.")
  if not any(a.startswith(("--output_dir=", "--flagfile=")) for a in train_args):
    raise cli.UsageError("Give the workers --output_dir=DIR after `--` (one run directory, "
                         "written by worker 0).")
  args = ["-m", "l2l_tf.train", *train_args] + ([] if strategies else ["--strategy=multi_worker"])
  return local_cluster.LocalCluster(num_workers, args).run()


def evaluate_from_flags(figure: str, output_dir, optimizer_path, expected_config=None) -> dict:
  """Runs the comparison the flags describe and writes JSON, PNG and TensorBoard logs.

  With `--sweep_hidden_units` it is the architecture sweep of paper Fig. 6 instead (see
  `sweep_from_flags`)."""
  if FLAGS.sweep_hidden_units:
    return sweep_from_flags(figure, output_dir, optimizer_path, expected_config)
  from l2l_tf.evaluation import compare, curves, plots, results as results_lib, tables  # pylint: disable=g-import-not-at-top
  cli.require_positive("num_steps", "num_test_problems", "num_validation_problems")
  if not 0 <= FLAGS.plot_first_step < FLAGS.num_steps:
    raise cli.UsageError(f"--plot_first_step must be in [0, --num_steps), got "
                         f"{FLAGS.plot_first_step}.")
  if FLAGS.eval_chunk_size < 0:
    raise cli.UsageError(f"--eval_chunk_size must be >= 0, got {FLAGS.eval_chunk_size}.")
  output_dir = cli.require_writable_dir(output_dir)
  grid = cli.learning_rate_grid()
  problem = cli.make_problem("test")
  learned, provenance = load_learned(optimizer_path, expected_config)
  # A killed evaluation resumes from its finished chunks (deleted once the figure is written).
  # Inside `reproduce` the figure's cache is already open: chunks go there, opened once.
  open_cache = curves.active_cache()
  cache = FLAGS.eval_cache_dir or output_dir / f".{figure}_eval_cache"
  with (contextlib.nullcontext(open_cache) if open_cache else
        curves.chunk_cache(cache, remove_on_success=not FLAGS.eval_cache_dir)):
    results = compare.compare(
        problem, learned, FLAGS.baselines, FLAGS.num_steps, FLAGS.num_test_problems,
        FLAGS.num_validation_problems, FLAGS.seed, figure, grid, FLAGS.eval_chunk_size,
        FLAGS.jit_compile, FLAGS.progress,
        extra={"command": cli.command_line(), "learned_optimizers": provenance},
        validation_problem=cli.make_problem("valid"))
    results_lib.write_results(results, output_dir / f"{figure}.json")
    plots.plot_results(results, output_dir / f"{figure}.png",
                       step_range=(FLAGS.plot_first_step, FLAGS.num_steps))
  results_lib.log_results_to_tensorboard(results, output_dir / "tensorboard" / figure)
  print(tables.final_step_table(results))
  print(f"wrote {output_dir / (figure + '.json')} and {output_dir / (figure + '.png')}")
  return results


def load_learned(optimizer_path, expected_config=None):
  """The figure's learned optimizers: `--learned_name` from `optimizer_path` (if any), then each
  NAME=PATH of `--learned_optimizers`; returns (name -> optimizer, name -> provenance)."""
  from l2l_tf import optimizers  # pylint: disable=g-import-not-at-top
  sources = [(FLAGS.learned_name, optimizer_path, expected_config)] if optimizer_path else []
  for entry in FLAGS.learned_optimizers:
    name, sep, path = entry.partition("=")
    if not sep or not name or not path:
      raise cli.UsageError(f"--learned_optimizers entries take the form NAME=PATH, got {entry!r}.")
    sources.append((name, path, None))
  learned, provenance = {}, {}
  for name, path, expected in sources:
    learned[name] = optimizers.load_optimizer(path, expected)
    resolved, saved = optimizers.serialization.read_config(path)
    provenance[name] = {"path": str(resolved), "metadata": saved.get("metadata", {})}
  return learned, provenance


def sweep_from_flags(figure: str, output_dir, optimizer_path, expected_config=None) -> dict:
  """Final loss against the MLP optimizee's architecture (paper Fig. 6), for the learned optimizer
  (trained on one architecture) and the baselines tuned anew for every architecture."""
  from l2l_tf.evaluation import compare, plots, results as results_lib, sweep  # pylint: disable=g-import-not-at-top
  if FLAGS.problem not in ("mnist", "fashion_mnist"):
    raise cli.UsageError("--sweep_hidden_units needs an MLP problem (--problem=mnist).")
  cli.require_positive("num_steps", "num_test_problems", "num_validation_problems")
  units = cli.int_list("sweep_hidden_units")
  layers = cli.int_list("sweep_num_layers")
  output_dir = cli.require_writable_dir(output_dir)
  grid = cli.learning_rate_grid()
  learned, provenance = load_learned(optimizer_path, expected_config)
  entries = []
  trained = cli.int_list("optimizee_hidden_sizes")
  core = None
  for num_layers in layers:
    for width in units:
      hidden = [width] * num_layers
      res = compare.compare(
          cli.make_problem("test", hidden_sizes=hidden), learned, FLAGS.baselines,
          FLAGS.num_steps, FLAGS.num_test_problems, FLAGS.num_validation_problems, FLAGS.seed,
          f"{figure} {num_layers}x{width}", grid, FLAGS.eval_chunk_size, FLAGS.jit_compile,
          FLAGS.progress, validation_problem=cli.make_problem("valid", hidden_sizes=hidden))
      entries.append(sweep.final_losses(res, hidden))
      if hidden == trained:
        core = res
      print(f"{num_layers} x {width}: " + ", ".join(
          f"{n} {c['mean'][-1]:.4g}" for n, c in res["optimizers"].items()))
  if core is None:
    raise cli.UsageError(f"The sweep must include the trained architecture "
                         f"--optimizee_hidden_sizes={','.join(map(str, trained))}.")
  results = dict(core, figure=figure, sweep=entries, trained_hidden_sizes=trained,
                 command=cli.command_line(), learned_optimizers=provenance)
  results_lib.write_results(results, output_dir / f"{figure}.json")
  plots.plot_sweep(results, output_dir / f"{figure}.png")
  print(f"wrote {output_dir / (figure + '.json')} and {output_dir / (figure + '.png')}")
  return results


def paper_figure(name: str, output_dir: Path, retrain: bool) -> dict:
  """A flagfile's figure (its flags already applied): the shipped optimizer (`--optimizer_path`),
  or with `retrain` one meta-trained first into `<output_dir>/train/<name>` (resumable)."""
  optimizer_path = FLAGS.optimizer_path
  if retrain:
    optimizer_path = train_from_flags(output_dir / "train" / name)["optimizer_dir"]
  return evaluate_from_flags(name, output_dir, optimizer_path,
                             expected_config=cli.optimizer_config())


# The second setting of the Neural Art images (paper Fig. 9): these flags of its curves' flagfile.
NEW_STYLE_FLAGFILE = "flags/neural_art_new_style.flags"
NEW_STYLE_FLAGS = ("image_size", "style_image")
NEURAL_ART_IMAGES_PER_SETTING = 4  # The first test crops: each test photograph's central square.


def flagfile_values(path, names) -> dict:
  """The values (strings) that the flagfile `path` gives the flags `names` (the last one wins)."""
  from l2l_tf.evaluation import figures  # pylint: disable=g-import-not-at-top
  values = {}
  for arg in figures.expand_flagfile(figures.resolve_flagfile(path)):
    name, _, value = arg.partition("=")
    if name[2:] in names:
      values[name[2:]] = value
  return values


def neural_art_images(output_dir: Path, retrain: bool) -> dict:
  """Paper Fig. 9: content, style and the images after --num_steps steps of the learned optimizer
  (--optimizer_path; with `retrain`, meta-trained first) and of tuned Adam, for the first test
  images, at the flags' setting (the training style) and at the new style's of
  `NEW_STYLE_FLAGFILE`. Writes neural_art_images.{png,json}."""
  from l2l_tf import optimizers  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import neural_art, plots, results as results_lib, tables  # pylint: disable=g-import-not-at-top
  if FLAGS.problem != "neural_art":
    raise cli.UsageError("neural_art_images needs --problem=neural_art.")
  cli.require_positive("num_steps", "num_validation_problems")
  cli.require_optimizer_path()
  output_dir = cli.require_writable_dir(output_dir)
  optimizer_path = FLAGS.optimizer_path
  if retrain:
    optimizer_path = train_from_flags(output_dir / "train" / "neural_art")["optimizer_dir"]
  learned = {FLAGS.learned_name: optimizers.load_optimizer(optimizer_path,
                                                           cli.optimizer_config())}
  new_style = {k: (int(v) if k == "image_size" else v)
               for k, v in flagfile_values(NEW_STYLE_FLAGFILE, NEW_STYLE_FLAGS).items()}
  settings = [("training style", {}), ("new style", new_style)]
  panels = []
  for label, overrides in settings:
    problem = cli.make_problem("test", **overrides)
    indices = list(range(min(NEURAL_ART_IMAGES_PER_SETTING, problem.num_contents)))
    label = (f"{label}: {problem.data_config['style_image']}, "
             f"{problem.image_size} x {problem.image_size}")
    panel = neural_art.image_panel(problem, cli.make_problem("valid", **overrides), learned,
                                   indices, FLAGS.num_steps, FLAGS.num_validation_problems,
                                   FLAGS.seed, cli.learning_rate_grid(), label,
                                   FLAGS.jit_compile)
    panel["sources"] = [problem.content_sources[i] for i in indices]
    panels.append(panel)
    print(f"{label}: " + ", ".join(f"{n} mean final loss {sum(v) / len(v):.4g}"
                                   for n, v in panel["final_losses"].items()))
  results = {"figure": "neural_art_images", "num_steps": FLAGS.num_steps,
             "panels": neural_art.to_json(panels), "command": cli.command_line(),
             "learned_optimizers": {FLAGS.learned_name: str(optimizer_path)}}
  path = output_dir / "neural_art_images.json"
  results_lib.write_json(results, path)
  png = plots.plot_neural_art_images(
      panels, output_dir / "neural_art_images.png",
      f"neural_art_images: after {FLAGS.num_steps} steps of {FLAGS.learned_name} and tuned Adam "
      "(test images)")
  print(tables.images_table(results))
  print(f"wrote {path} and {png}")
  return results


def given_flags():
  """The names of the flags set on the command line or in a flagfile."""
  return [name for name in FLAGS if FLAGS[name].present]


def reproduce_from_flags(names=None) -> dict:
  """Makes `--figure` (one of `names`, default: every registered figure) into `--output_dir`,
  after refusing the flags of other figures, which it would ignore; returns its results."""
  from l2l_tf.evaluation import figures  # pylint: disable=g-import-not-at-top
  registry = figures.registry()
  names = registry.names() if names is None else list(names)
  if FLAGS.figure not in names:
    raise cli.UsageError(f"Unknown --figure={FLAGS.figure}; choose one of: {', '.join(names)}.")
  figure = registry.get(FLAGS.figure)
  foreign = registry.foreign_flags(figure, given_flags())
  if foreign:
    raise cli.UsageError(
        f"{', '.join('--' + f for f in foreign)}: not read by --figure={figure.name} (a flag of "
        f"other figures), so it would be ignored; drop it or choose the figure it belongs to.")
  output_dir = cli.require_writable_dir(FLAGS.output_dir)
  cli.configure_tensorflow()
  # Every figure's evaluation resumes from its finished chunks when killed (the experiments'
  # figures too, not only the flagfiles'); the cache goes once the figure is written, unless
  # --eval_cache_dir names it (e.g. a directory kept across machines).
  from l2l_tf.evaluation import curves  # pylint: disable=g-import-not-at-top
  cache = FLAGS.eval_cache_dir or output_dir / f".{figure.name}_eval_cache"
  with curves.chunk_cache(cache, remove_on_success=not FLAGS.eval_cache_dir):
    return figure.run(output_dir, FLAGS.retrain)
