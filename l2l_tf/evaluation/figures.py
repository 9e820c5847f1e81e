"""The registry of every figure: what `l2l_tf.reproduce` runs and `l2l_tf.report` tabulates.

A figure is a `Figure` record: its name, how to run it (given an output directory and whether to
meta-train first), how to tabulate its results file, the data sets it needs, its flagfile if it
has one, the flags it reads and tags (`paper`, a data set's name, ...). A `Summary` is a table over
the results of several figures (e.g. every paper figure against the paper).

Where figures come from:

* the paper's: one per flagfile `flags/<name>.flags`, registered here generically
  (`flagfile_figure`); the first comment of the flagfile describes it, and it is tagged `paper`
  when that comment names a paper figure ("Paper Fig. ...");
* the library's figures that are not a flagfile's curves (`library_figures`: the Neural Art
  images of paper Fig. 9), each with the flagfile of its settings;
* figures outside the library (the experiments beside it, e.g. `l2l_tf_experiments.review`, or any
  other package): a plugin module with a function `figures()` returning `Figure`s, and optionally
  `summaries()` returning `Summary`s.

How plugins are found, so that the same figures exist in a checkout, an editable install, an
installed wheel and under Bazel (where nothing is installed):

1. the entry points of group `l2l_tf.figures` of the installed distributions, each naming a
   plugin module (pyproject.toml declares the experiments' module there; another distribution
   adds figures the same way, without changing l2l_tf);
2. `BUILTIN_PLUGINS`, module names imported if they are importable: a checkout or Bazel's
   runfiles have no installed metadata (and an editable install may have metadata older than its
   plugins), so the experiments beside the library are also found by name. A plugin that is not
   there is skipped: the library never needs one. A plugin that is there but fails to import
   raises, so a broken plugin is not silently missing.
"""

import dataclasses
import functools
import importlib
import importlib.metadata
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from l2l_tf.evaluation import tables
from l2l_tf import errors

ENTRY_POINT_GROUP = "l2l_tf.figures"
BUILTIN_PLUGINS = ("l2l_tf_experiments.review.figures", "l2l_tf_experiments.lstm_v2.figures")
# The figures' flagfiles: `flags/` of a checkout, installed as the package data `l2l_tf/flags/`
# (pyproject.toml maps the one to the other), so the paper figures run from a wheel too.
_CHECKOUT_FLAGS = Path(__file__).resolve().parents[2] / "flags"
FLAGS_DIR = (_CHECKOUT_FLAGS if _CHECKOUT_FLAGS.is_dir()
             else Path(__file__).resolve().parents[1] / "flags")


def resolve_flagfile(path) -> Path:
  """A flagfile path as a flagfile or README writes it (`flags/mnist.flags`), wherever the
  flagfiles are (checkout or installed package)."""
  path = Path(path)
  if path.is_absolute():
    return path
  if path.parts[:1] == ("flags",):
    return FLAGS_DIR.joinpath(*path.parts[1:])
  return _CHECKOUT_FLAGS.parent / path
# Flags of the runner (l2l_tf.reproduce) itself, read for every figure.
RUNNER_FLAGS = ("figure", "retrain", "output_dir", "threads", "deterministic", "progress",
                "eval_cache_dir")


@dataclasses.dataclass(frozen=True)
class Figure:
  """One figure.

  Attributes:
    name: the figure's name (`--figure=NAME`; its files are `NAME.json` and `NAME.png`).
    run: `run(output_dir, retrain) -> results`: writes the figure's files into `output_dir` (the
      flags already parsed and checked); with `retrain`, meta-trains what it evaluates first.
    table: the markdown table of a results dict of this figure.
    datasets: the data sets it reads (to fetch before running).
    flagfile: the flagfile holding its settings, if any.
    flags: names of the flags it reads, besides `RUNNER_FLAGS`.
    flag_modules: modules every flag of which it reads too (e.g. "l2l_tf.cli").
    tags: for selecting figures, e.g. ("paper", "mnist").
    description: one or two sentences.
    requires: the shipped optimizers it evaluates (`missing` checks them).
    dataset: the data set its problem reads, if any.
  """
  name: str
  run: Callable[[Path, bool], dict]
  table: Callable[[dict], str] = tables.results_table
  datasets: Tuple[str, ...] = ()
  flagfile: Optional[Path] = None
  flags: Tuple[str, ...] = ()
  flag_modules: Tuple[str, ...] = ()
  tags: Tuple[str, ...] = ()
  description: str = ""
  requires: Tuple[str, ...] = ()
  dataset: Optional[str] = None

  def missing(self) -> List[str]:
    """Why it cannot run from what is shipped (empty when it can): a shipped optimizer it
    evaluates that is not trained yet, or a data set with no offline copy (CIFAR-10 here)."""
    from l2l_tf.data import OFFLINE_DATASETS  # pylint: disable=g-import-not-at-top
    from l2l_tf.optimizers import serialization  # pylint: disable=g-import-not-at-top
    reasons, absent = [], []
    for i, source in enumerate(self.requires):
      try:
        serialization.resolve_optimizer_path(source)
      except serialization.OptimizerLoadError:
        if self.flagfile is None:
          absent.append(source)
        elif i == 0:
          reasons.append(f"the shipped optimizer {source} is not there (train it with --retrain)")
        else:
          reasons.append(f"the shipped optimizer {source} is not there (meta-train it with its "
                         "flagfile: training/README.md)")
    if absent:  # A plugin figure: its --retrain meta-trains every one of them.
      more = f" and {len(absent) - 1} more are" if len(absent) > 1 else " is"
      reasons.append(f"the shipped optimizer {absent[0]}{more} not there (make the figure "
                     "with --retrain to meta-train them)")
    if self.dataset and self.dataset not in OFFLINE_DATASETS:
      reasons.append(f"it needs the data set {self.dataset}, which has no offline copy: place "
                     f"its archive by hand (data/README.md)")
    return reasons

  def flag_names(self) -> frozenset:
    """Every flag this figure reads (the modules of `flag_modules` are imported to list theirs)."""
    from absl import flags  # pylint: disable=g-import-not-at-top
    names = set(self.flags)
    for module in self.flag_modules:
      importlib.import_module(module)
      names.update(f.name for f in flags.FLAGS.get_flags_for_module(module))
    return frozenset(names)


@dataclasses.dataclass(frozen=True)
class Summary:
  """A table over several figures' results, printed when at least `min_figures` of them are given.

  Attributes:
    title: printed above the table.
    figures: the figures it reads.
    table: `table({figure name: results})` (only the figures given, in the order given).
    min_figures: how many of `figures` it needs.
  """
  title: str
  figures: Tuple[str, ...]
  table: Callable[[Dict[str, dict]], str]
  min_figures: int = 2


class UnknownFigureError(KeyError):
  """No figure of that name; the message lists the figures there are."""

  def __str__(self):
    return self.args[0]


def expand_flagfile(path: Path) -> List[str]:
  """The flags of a flagfile, with nested `--flagfile=flags/...` resolved against the repository
  (so figures work from any directory); later lines override earlier ones, as in absl."""
  args = []
  for line in Path(path).read_text().splitlines():
    line = line.strip()
    if not line or line.startswith(("#", "//")):
      continue
    if line.startswith("--flagfile="):
      nested = Path(line.split("=", 1)[1])
      args += expand_flagfile(resolve_flagfile(nested))
    else:
      args.append(line)
  return args


def _description(path: Path) -> str:
  """The flagfile's first comment block, as one line."""
  lines = []
  for line in path.read_text().splitlines():
    if not line.startswith("#"):
      break
    lines.append(line.lstrip("# ").strip())
  return " ".join(lines)


def _run_flagfile_figure(name: str, output_dir: Path, retrain: bool) -> dict:
  from l2l_tf import commands  # pylint: disable=g-import-not-at-top  (the flags' module)
  return commands.paper_figure(name, output_dir, retrain)


def flagfile_figure(path: Path) -> Figure:
  """The figure of a flagfile: evaluated (with `retrain`: meta-trained first) by the library's
  commands with the flagfile's settings, which the flags given on the command line override."""
  from l2l_tf import problems  # pylint: disable=g-import-not-at-top
  from l2l_tf.data import OFFLINE_DATASETS  # pylint: disable=g-import-not-at-top
  path = Path(path)
  problem = "quadratic"
  main, more = None, []  # The trained optimizers it evaluates (later flags override earlier).
  for arg in expand_flagfile(path):
    name, _, value = arg.partition("=")
    if name == "--problem":
      problem = value
    elif name in ("--optimizer_path", "--optimizer"):
      main = value
    elif name == "--learned_optimizers":
      more = [entry.split("=", 1)[-1] for entry in value.split(",") if entry]
  dataset = problems.dataset_of(problem)
  datasets = (dataset,) if dataset in OFFLINE_DATASETS else ()
  description = _description(path)
  tags = (("paper",) if description.startswith("Paper Fig.") else ()) + datasets
  return Figure(name=path.stem, run=functools.partial(_run_flagfile_figure, path.stem),
                table=tables.results_table, datasets=datasets, flagfile=path,
                flag_modules=("l2l_tf.cli",), tags=tags, description=description,
                requires=tuple(([main] if main else []) + more), dataset=dataset)


def _run_neural_art_images(output_dir: Path, retrain: bool) -> dict:
  from l2l_tf import commands  # pylint: disable=g-import-not-at-top  (the flags' module)
  return commands.neural_art_images(output_dir, retrain)


def library_figures() -> List[Figure]:
  """The library's figures that are not one flagfile's curves: paper Fig. 9's images, with the
  settings of flags/neural_art.flags (and the new style's of flags/neural_art_new_style.flags)."""
  return [Figure(
      name="neural_art_images", run=_run_neural_art_images, table=tables.images_table,
      datasets=("photos",), flagfile=FLAGS_DIR / "neural_art.flags",
      flag_modules=("l2l_tf.cli",), tags=("paper", "photos"),
      description="Paper Fig. 9 (Neural Art): content, style, and the images after 128 steps of "
      "the LSTM and of tuned Adam, for test images at the training style (64 x 64) and at the "
      "new style (128 x 128).", requires=("pretrained:neural_art",), dataset="photos")]


def plugin_modules() -> List[str]:
  """The plugin modules: those of the entry points, then the built-in ones (no repeats)."""
  names = [ep.value for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)]
  return list(dict.fromkeys(names + list(BUILTIN_PLUGINS)))


def _import_plugin(name: str):
  """The plugin module, or None if it (or a package it is in) is not installed."""
  try:
    return importlib.import_module(name)
  except ModuleNotFoundError as e:
    parts = name.split(".")
    if e.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
      return None
    raise


@dataclasses.dataclass(frozen=True)
class Registry:
  """Every figure by name, and the summaries."""
  figures: Dict[str, Figure]
  summaries: Tuple[Summary, ...]

  def get(self, name: str) -> Figure:
    if name not in self.figures:
      raise UnknownFigureError(f"Unknown figure {name!r}; choose one of: "
                               f"{', '.join(self.names())}.")
    return self.figures[name]

  def names(self, tags: Iterable[str] = ()) -> List[str]:
    """The names of the figures with every one of `tags`, sorted."""
    tags = set(tags)
    return sorted(n for n, f in self.figures.items() if tags <= set(f.tags))

  def table(self, results: dict) -> str:
    """The table of a results file: its figure's, or the generic one for an unregistered name
    (e.g. `l2l_tf.evaluate --figure_name=...`)."""
    figure = self.figures.get(results.get("figure"))
    return figure.table(results) if figure else tables.results_table(results)

  def summary_tables(self, by_figure: Dict[str, dict]) -> List[Tuple[str, str]]:
    """`(title, table)` of every summary with enough of its figures in `by_figure`."""
    out = []
    for summary in self.summaries:
      given = {n: r for n, r in by_figure.items() if n in summary.figures}
      if len(given) >= summary.min_figures:
        out.append((summary.title, summary.table(given)))
    return out

  def foreign_flags(self, figure: Figure, given: Iterable[str]) -> List[str]:
    """The flags among `given` that other figures read and `figure` does not: it would ignore
    them, so a runner refuses them."""
    claimed = set().union(*(f.flag_names() for f in self.figures.values()))
    own = figure.flag_names() | set(RUNNER_FLAGS)
    return sorted((set(given) & claimed) - own)


def _paper_summary(by_figure: Dict[str, dict]) -> str:
  return tables.paper_summary(list(by_figure.values()))


@functools.lru_cache(maxsize=None)
def registry() -> Registry:
  """The registry: the flagfiles' figures, then every plugin's (names must not repeat)."""
  figures = {}
  summaries = [Summary("Against the paper", tuple(tables.PAPER_FINAL), _paper_summary)]
  found = [flagfile_figure(p) for p in sorted(FLAGS_DIR.glob("*.flags"))] + library_figures()
  for name in plugin_modules():
    module = _import_plugin(name)
    if module is not None:
      found += list(module.figures())
      summaries += list(getattr(module, "summaries", tuple)())
  for figure in found:
    if figure.name in figures:
      raise errors.ConfigError(f"Two figures are named {figure.name!r}; rename one.")
    figures[figure.name] = figure
  return Registry(figures, tuple(summaries))


def with_figure_flagfile(argv: Sequence[str]) -> List[str]:
  """Puts the flags of `--figure`'s flagfile first, so explicit flags override the figure's."""
  figure = None
  for i, arg in enumerate(argv[1:], 1):
    if arg.startswith("--figure="):
      figure = arg.split("=", 1)[1]
    elif arg == "--figure" and i + 1 < len(argv):
      figure = argv[i + 1]
  entry = registry().figures.get(figure)
  if entry is not None and entry.flagfile is not None:
    return [argv[0]] + expand_flagfile(entry.flagfile) + list(argv[1:])
  return list(argv)
