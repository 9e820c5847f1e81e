"""The figure estimator_bias: which meta-gradient estimators are biased, and how their error grows
with the horizon (issue 18; seed_systems.md section 8.4, Vicol, Metz & Sohl-Dickstein 2021).

Set-up. The paper's 10-d quadratics; a tiny coordinatewise LSTM (one layer of `hidden` units, no
pre- or postprocessing) meta-trained by the paper's truncated BPTT for `train_epochs` epochs
(`MetaTrainer`, seed 0: deterministic), which fixes phi. The quantity every estimator estimates is
the gradient of the whole run's meta-loss

    L(phi) = sum_{t=1..T} mean over the seed's B problems of f(theta_t),

computed exactly per seed by backpropagating through all T steps with the optimizee's second
derivatives (`estimators.full_gradient`; the quadratic's Hessian-vector products are exact).
Everything runs in float64 with sigma = 1e-3: ES and PES estimate the gradient of the Gaussian-
smoothed meta-loss, which equals the point gradient only for small sigma; in float32 with sigma
0.01 the perturbed runs of the trained LSTM diverged often enough that the two differed widely.
For each seed (its own B test problems and perturbation noise) and each estimator the figure
records the error e = estimate - exact:

* `TBPTT (paper)`: truncations of K steps, first-order (the paper drops second derivatives);
* `TBPTT (2nd order)`: the same truncations with second derivatives (truncation bias only; at
  T = K it is the exact gradient);
* `ES`: antithetic ES over the whole run (`population` particles, sigma);
* `PES`: persistent ES over the same truncations as tbptt, the same population.

Left panel (T = `horizon`): the mean over seeds of e projected on the mean exact gradient,
relative to that gradient's norm (0: unbiased; -1: the estimate misses the whole gradient), with a
95% CI over seeds. Right panel: the relative mean squared error E|e|^2 / E|exact|^2 over seeds for
every horizon. The JSON also holds a per-coordinate test of "mean e = 0" (chi-square on the
coordinates' z-scores, diagonal: coordinates treated as independent).
"""

import dataclasses
import math
import time
from pathlib import Path
from typing import Dict, Sequence

import numpy as np
import tensorflow as tf

from l2l_tf import meta, optimizers, problems
from l2l_tf.evaluation import results as results_lib
from l2l_tf.evaluation import stats
from l2l_tf.meta import estimators
from l2l_tf.problems import base as problems_base

FIGURE = "estimator_bias"
ESTIMATOR_NAMES = ("TBPTT (paper)", "TBPTT (2nd order)", "ES", "PES")


@dataclasses.dataclass(frozen=True)
class Settings:
  seeds: int = 200
  horizons: Sequence[int] = (20, 40, 100, 200)
  horizon: int = 100  # The left panel's.
  truncation: int = 20
  problems_per_seed: int = 8
  population: int = 64
  sigma: float = 1e-3
  hidden: int = 4
  train_epochs: int = 300
  seed: int = 0
  dtype: str = "float64"

  def validate(self):
    if self.horizon not in self.horizons:
      raise ValueError(f"the headline horizon {self.horizon} must be one of the horizons "
                       f"{list(self.horizons)}.")
    bad = [h for h in self.horizons if h <= 0 or h % self.truncation]
    if bad:
      raise ValueError(f"every horizon must be a positive multiple of the truncation "
                       f"{self.truncation}; got {bad}.")
    for name in ("seeds", "problems_per_seed", "population", "hidden"):
      if getattr(self, name) <= 0 or (name == "seeds" and self.seeds < 2):
        raise ValueError(f"{name} must be positive (seeds at least 2), got "
                         f"{getattr(self, name)}.")
    estimators.ESConfig(self.population, self.sigma).validate()


def make_problem(dtype="float64"):
  return problems.Quadratic(num_dims=10, family="paper", init_stddev=0.01, dtype=dtype)


def train_optimizer(settings: Settings, output_dir: Path, log_fn=print):
  """The tiny LSTM after `train_epochs` epochs of the paper's tbptt (resumable)."""
  optimizer = optimizers.CoordinatewiseLSTM(hidden_sizes=(settings.hidden,), seed=settings.seed,
                                            dtype=settings.dtype)
  if settings.train_epochs:
    config = meta.TrainConfig(num_epochs=settings.train_epochs, horizon=100,
                              truncation=settings.truncation, meta_batch_size=32,
                              meta_learning_rate=0.003, validation_every=50,
                              num_validation_problems=200, checkpoint_every=50,
                              seed=settings.seed)
    trainer = meta.MetaTrainer(make_problem(settings.dtype), optimizer, config, output_dir, log_fn=log_fn)
    trainer.train(progress=False)
    for v, best in zip(trainer.meta_vars, trainer.best_weights):
      v.assign(best)  # The model-selected phi, as a shipped optimizer would be.
  return optimizer


def _flat(tensors) -> np.ndarray:
  return np.concatenate([np.asarray(t, np.float64).ravel() for t in tensors])


def collect(settings: Settings, optimizer) -> Dict[int, Dict[str, np.ndarray]]:
  """Per horizon: the exact gradients [seeds, d] and each estimator's errors [seeds, d]."""
  problem = make_problem(settings.dtype)
  es_config = estimators.ESConfig(settings.population, settings.sigma, antithetic=True)
  k = settings.truncation
  tbptt = {"TBPTT (paper)": estimators.TruncatedBPTT(problem, optimizer, k),
           "TBPTT (2nd order)": estimators.TruncatedBPTT(problem, optimizer, k,
                                                         second_derivatives=True)}
  example = problem.sample(settings.problems_per_seed, problems_base.split_seed(0, "test", 0))
  pes = estimators.PersistentES(problem, optimizer, k, es_config, example)
  out = {}
  for horizon in settings.horizons:
    es = estimators.EvolutionStrategies(problem, optimizer, horizon, es_config)
    exact_fn = estimators.exact_gradient_fn(problem, optimizer, horizon)
    exact, errors = [], {name: [] for name in ESTIMATOR_NAMES}
    for s in range(settings.seeds):
      seed = problems_base.split_seed(settings.seed, "test", s)
      instance, params = problem.sample(settings.problems_per_seed, seed)
      g = _flat(exact_fn(instance, params)[1])
      exact.append(g)
      for name, estimator in tbptt.items():
        errors[name].append(_flat(estimator.run_gradient(instance, params, horizon)[1]) - g)
      noise = problems_base.fold_in(seed, horizon)
      errors["ES"].append(_flat(es.gradient(instance, params, noise)[1]) - g)
      pes.reset(instance, params)
      total = 0.0
      for j in range(horizon // k):
        total = total + _flat(pes.gradient(instance, j * k,
                                           problems_base.fold_in(noise, 1 + j))[1])
      errors["PES"].append(total - g)
    out[horizon] = {"exact": np.stack(exact), **{n: np.stack(e) for n, e in errors.items()}}
  return out


def summarize(errors: np.ndarray, exact: np.ndarray) -> dict:
  """The relative bias along the mean exact gradient (mean, 95% CI over seeds), the relative
  MSE, and the diagonal chi-square test of mean error = 0."""
  mean_exact = exact.mean(axis=0)
  norm = float(np.linalg.norm(mean_exact))
  along = errors @ mean_exact / norm ** 2
  bias = stats.mean_ci_over_seeds(along)
  bias.pop("per_seed")
  mse = float(np.mean(np.sum(errors ** 2, axis=1)) / np.mean(np.sum(exact ** 2, axis=1)))
  se = errors.std(axis=0, ddof=1) / math.sqrt(errors.shape[0])
  mean = errors.mean(axis=0)
  informative = se > 0
  if informative.any():
    chi2 = float(np.sum((mean[informative] / se[informative]) ** 2))
    dof = int(informative.sum())
    p_value = _chi2_sf(chi2, dof)
  else:  # A deterministic estimator: no spread to test against; a nonzero error is bias.
    chi2, dof, p_value = (math.inf if np.any(mean != 0) else 0.0), 0, (
        0.0 if np.any(mean != 0) else 1.0)
  return {"bias_along_gradient": bias, "relative_mse": mse, "chi2": chi2, "chi2_dof": dof,
          "chi2_p_value": p_value, "cosine_mean_estimate": float(
              (mean + mean_exact) @ mean_exact / max(np.linalg.norm(mean + mean_exact) * norm,
                                                     1e-300))}


def _chi2_sf(x: float, k: int) -> float:
  """P(chi2_k > x) by the Wilson-Hilferty normal approximation (k is the number of meta-
  parameters, large enough for it)."""
  z = ((x / k) ** (1 / 3) - (1 - 2 / (9 * k))) / math.sqrt(2 / (9 * k))
  return 0.5 * math.erfc(z / math.sqrt(2))


def run(output_dir: Path, settings: Settings, log_fn=print) -> dict:
  settings.validate()
  output_dir = Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  start = time.process_time()
  optimizer = train_optimizer(settings, output_dir / "train" / FIGURE, log_fn)
  data = collect(settings, optimizer)
  by_horizon = {}
  for horizon, values in data.items():
    by_horizon[str(horizon)] = {name: summarize(values[name], values["exact"])
                                for name in ESTIMATOR_NAMES}
  results = {
      "figure": FIGURE, "settings": dataclasses.asdict(settings),
      "num_meta_parameters": int(sum(int(np.prod(v.shape))
                                     for v in optimizer.trainable_variables)),
      "by_horizon": by_horizon, "cpu_seconds": time.process_time() - start,
      "description": "Error of each meta-gradient estimator against the exact whole-run "
                     "gradient on 10-d quadratics, at a tiny tbptt-trained LSTM.",
  }
  results_lib.write_json(results, output_dir / f"{FIGURE}.json")
  plot(results, output_dir / f"{FIGURE}.png")
  return results


def plot(results: dict, path) -> Path:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  settings = results["settings"]
  fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
  head = results["by_horizon"][str(settings["horizon"])]
  for i, name in enumerate(ESTIMATOR_NAMES):
    b = head[name]["bias_along_gradient"]
    left.errorbar([i], [b["mean"]], yerr=[[b["mean"] - b["ci95_low"]],
                                          [b["ci95_high"] - b["mean"]]], fmt="o", capsize=4)
  left.axhline(0.0, color="k", lw=0.8)
  left.set_xticks(range(len(ESTIMATOR_NAMES)))
  left.set_xticklabels(ESTIMATOR_NAMES, rotation=15)
  left.set_ylabel("bias along the exact gradient (relative)")
  left.set_title(f"T = {settings['horizon']}, K = {settings['truncation']}, "
                 f"{settings['seeds']} seeds, 95% CI")
  horizons = [int(h) for h in results["by_horizon"]]
  for name in ESTIMATOR_NAMES:  # An exact estimate (0: tbptt 2nd order at T = K) is off the axis.
    values = [results["by_horizon"][str(h)][name]["relative_mse"] for h in horizons]
    right.plot(horizons, [v if v > 0 else float("nan") for v in values], "o-", label=name)
  right.set_xscale("log")
  right.set_yscale("log")
  right.set_xlabel("horizon T (steps)")
  right.set_ylabel("E|estimate - exact|^2 / E|exact|^2")
  right.legend()
  right.set_title("error against horizon (tbptt 2nd order is exact at T = K)")
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)
  return Path(path)


def table(results: dict) -> str:
  settings = results["settings"]
  rows = [f"**{FIGURE}**: {settings['seeds']} seeds, truncation {settings['truncation']}, "
          f"{settings['population']} ES / PES particles, sigma {settings['sigma']}; bias: mean "
          f"error along the mean exact gradient, relative to its norm (0: unbiased)", "","| horizon | estimator | bias along gradient (95% CI) | relative MSE | chi2 p |",
          "|---|---|---|---|---|"]
  for horizon, by_name in results["by_horizon"].items():
    for name in ESTIMATOR_NAMES:
      r = by_name[name]
      b = r["bias_along_gradient"]
      rows.append(f"| {horizon} | {name} | {b['mean']:+.3f} ({b['ci95_low']:+.3f}, "
                  f"{b['ci95_high']:+.3f}) | {r['relative_mse']:.3g} | "
                  f"{r['chi2_p_value']:.2g} |")
  return "\n".join(rows)
