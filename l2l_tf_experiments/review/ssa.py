"""The Success-Story Algorithm (Schmidhuber, Zhao & Wiering 1997) learning the base optimizer's
hyper-parameters over a lifelong stream of problems (issue 21; seed_systems.md Sec. 4).

One learner lives through a stream of problems without resets of its policy. The policy is the
base optimizer's hyper-parameters: the optimizer (one of the library's SGD, NAG, RMSprop, Adam),
log10 of its learning rate, and its momentum mu (NAG's momentum, Adam's beta1; SGD and RMSprop
have none), and, in this self-referential variant, log10 of its own modification size delta.

* Time t counts optimizee steps over the whole life; the reward of a step is the decrease of the
  mean log loss over the batch of problems being optimised, r_t = mean log f(theta_{t-1}) -
  mean log f(theta_t) (0 for the first step of a problem: a new problem is not the policy's
  doing). R(t) is the sum of rewards since birth.
* A policy modification (PM) comes after every problem (a batch of `batch_size` quadratics run for
  `horizon` steps): one component, drawn uniformly, is changed (log10 lr + N(0, delta^2); mu's
  logit + N(0, delta^2); the optimizer redrawn; log10 delta + N(0, 0.3^2)). Before it, the old
  policy is pushed on a stack with the tag (t, R(t)). PMs between problems, not inside one,
  compare every surviving PM on whole problems (rewards inside a problem are front-loaded).
* Before every PM, SSA enforces the success-story criterion: with tags t_1 < ... < t_k on the
  stack, R(t)/t < (R(t) - R(t_1))/(t - t_1) < ... < (R(t) - R(t_k))/(t - t_k); while it fails,
  the top entry is popped and its saved policy restored.

The frozen policy (the current one at the end of the stream, after a last SSA check) is a
hand-designed optimizer with fixed hyper-parameters: `frozen_optimizer` builds it behind the
library's optimizer interface, and `evaluate` runs it on held-out test problems against the tuned
baselines and the L2L LSTM.
"""

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, List, Optional, Sequence

import numpy as np
import tensorflow as tf

from l2l_tf import errors
from l2l_tf.evaluation import curves, plots, tables
from l2l_tf.meta import unroll
from l2l_tf.optimizers import baselines
from l2l_tf.problems import base as problems_base

FIGURE = "review_ssa"
OPTIMIZERS = ("sgd", "nag", "rmsprop", "adam")
COMPONENTS = ("optimizer", "log10_lr", "momentum", "log10_delta")


@dataclasses.dataclass(frozen=True)
class LifelongConfig:
  """One lifelong run."""
  problem: tuple = (("name", "quadratic"),)
  num_problems: int = 400
  batch_size: int = 32
  horizon: int = 100
  # The policy at birth: a 1,000x too small learning rate for plain SGD.
  initial_policy: tuple = (("optimizer", "sgd"), ("log10_lr", -5.0), ("momentum", 0.5),
                           ("log10_delta", -0.3))
  self_referential: bool = True  # delta is part of the policy (else fixed at its initial value).
  seed: int = 0
  # A lower bound on one problem's reward (None: unbounded, the original run's setting). A
  # diverged problem's reward is about -67 (log 1e30 against log f_0) where a good one's is +1..+5;
  # unbounded, one such problem fails every surviving modification's success story.
  reward_floor: Optional[float] = None

  def check(self):
    for name in ("num_problems", "batch_size", "horizon"):
      if getattr(self, name) < 1:
        raise errors.ConfigError(f"{name} must be >= 1, got {getattr(self, name)}.")
    policy = dict(self.initial_policy)
    if policy.get("optimizer") not in OPTIMIZERS or set(policy) != set(COMPONENTS):
      raise errors.ConfigError(f"initial_policy must set {', '.join(COMPONENTS)} with an optimizer "
                               f"among {', '.join(OPTIMIZERS)}; got {policy}.")
    if not 0 <= policy["momentum"] < 1:
      raise errors.ConfigError(f"momentum must be in [0, 1), got {policy['momentum']}.")
    if self.reward_floor is not None and not (math.isfinite(self.reward_floor)
                                              and self.reward_floor < 0):
      raise errors.ConfigError(f"reward_floor must be a negative number (or None: no floor), got "
                               f"{self.reward_floor}.")


def problem_reward(losses: np.ndarray, floor: Optional[float] = None) -> np.ndarray:
  """The per-step rewards [T] of one problem from its losses [T + 1, batch]: the decrease of the
  mean log loss (a non-finite loss counts as 1e30). With `floor`, the problem's total is bounded
  below by it: every step's reward is scaled by floor / total when the total is below the floor
  (SSA only compares totals at problem boundaries, so only the total matters)."""
  log_losses = np.log(np.maximum(np.where(np.isfinite(losses), losses, 1e30), 1e-30))
  mean_log = log_losses.mean(axis=1)
  rewards = mean_log[:-1] - mean_log[1:]
  total = float(rewards.sum())
  if floor is not None and total < floor:
    rewards = rewards * (floor / total)
  return rewards


def frozen_optimizer(policy: dict):
  """The policy as a library optimizer (`baselines`), behind the optimizer interface."""
  name, lr = policy["optimizer"], 10.0 ** policy["log10_lr"]
  if name == "nag":
    return baselines.NAG(lr, momentum=policy["momentum"])
  if name == "adam":
    return baselines.Adam(lr, beta1=policy["momentum"])
  if name in baselines.BASELINES:
    return baselines.BASELINES[name](lr)
  raise errors.ConfigError(f"Unknown optimizer {name!r} in an SSA policy; known: "
                           f"{', '.join(OPTIMIZERS)}.")


def success_story_holds(stack: Sequence[tuple], t: float, reward: float) -> bool:
  """The success-story criterion at time t with cumulative reward `reward`: the reward rate since
  each surviving tag (t_i, R_i), oldest first, increases, starting from the lifetime rate R/t."""
  rates = [reward / t] + [(reward - r_i) / (t - t_i) for t_i, r_i, _ in stack]
  return all(a < b for a, b in zip(rates, rates[1:]))


def ssa_check(stack: List[tuple], t: float, reward: float, policy: dict) -> tuple:
  """Pops (and restores) until the criterion holds: `(policy, number popped)`."""
  popped = 0
  while stack and not success_story_holds(stack, t, reward):
    _, _, saved = stack.pop()
    policy = saved
    popped += 1
  return policy, popped


def modify(policy: dict, rng: np.random.Generator, self_referential: bool) -> tuple:
  """A policy modification: `(new policy, component changed)`."""
  components = COMPONENTS if self_referential else COMPONENTS[:3]
  component = components[rng.integers(len(components))]
  new = dict(policy)
  delta = 10.0 ** policy["log10_delta"]
  if component == "optimizer":
    new["optimizer"] = OPTIMIZERS[rng.integers(len(OPTIMIZERS))]
  elif component == "log10_lr":
    new["log10_lr"] = float(np.clip(policy["log10_lr"] + delta * rng.normal(), -8.0, 2.0))
  elif component == "momentum":
    logit = math.log(max(policy["momentum"], 1e-6) / max(1.0 - policy["momentum"], 1e-6))
    new["momentum"] = float(1.0 / (1.0 + math.exp(-(logit + delta * rng.normal()))))
    new["momentum"] = min(max(new["momentum"], 0.0), 0.999)
  else:
    new["log10_delta"] = float(np.clip(policy["log10_delta"] + 0.3 * rng.normal(), -2.0, 0.5))
  return new, component


def _run_problem(problem, policy: dict, instance, params, horizon: int) -> np.ndarray:
  """losses [horizon + 1, batch] of one problem under a fixed policy."""
  run = unroll.make_trajectory_fn(problem, frozen_optimizer(policy), horizon)
  return run(instance, params).numpy()


def lifelong_run(config: LifelongConfig, output_dir, command: str = "",
                 log_fn: Callable[[str], None] = print) -> Path:
  """The lifelong run; resumable (its whole state is written after every problem to
  `checkpoint.json`; the problems and random draws are functions of (seed, problem index)).
  Returns the path of `policy.json` (the frozen policy, the stack and the history)."""
  from l2l_tf import problems as problems_lib  # pylint: disable=g-import-not-at-top
  config.check()
  output_dir = Path(output_dir)
  output_dir.mkdir(parents=True, exist_ok=True)
  checkpoint = output_dir / "checkpoint.json"
  config_dict = json.loads(json.dumps(dataclasses.asdict(config)))
  if checkpoint.is_file():
    state = json.loads(checkpoint.read_text())
    state["config"].setdefault("reward_floor", None)  # Runs from before the floor existed.
    if state["config"] != config_dict:
      raise errors.ConfigError(f"{checkpoint} was written by another configuration; use a fresh "
                               "output directory.")
    stack = [tuple(e) for e in state["stack"]]
    log_fn(f"resuming SSA at problem {state['problem_index']} from {checkpoint}")
  else:
    state = {"config": config_dict, "problem_index": 0, "t": 0, "reward": 0.0,
             "policy": dict(config.initial_policy), "history": [], "cpu_seconds": 0.0,
             "modifications": 0, "undone": 0}
    stack = []
  problem = problems_lib.make_problem(dict(config.problem), split="train")
  policy = state["policy"]
  for index in range(state["problem_index"], config.num_problems):
    began = time.process_time()
    rng = np.random.default_rng([config.seed, index])
    # SSA checkpoint, then a PM (not before the first problem: nothing to judge yet).
    popped = 0
    if index > 0:
      policy, popped = ssa_check(stack, state["t"], state["reward"], policy)
      stack.append((state["t"], state["reward"], policy))
      policy, component = modify(policy, rng, config.self_referential)
      state["modifications"] += 1
      state["undone"] += popped
    else:
      component = None
    instance, params = problem.sample(config.batch_size,
                                      problems_base.split_seed(config.seed, "train", index))
    losses = _run_problem(problem, policy, instance, params, config.horizon)
    rewards = problem_reward(losses, config.reward_floor)
    state["reward"] += float(rewards.sum())
    state["t"] += config.horizon
    state["problem_index"] = index + 1
    state["policy"] = policy
    state["history"].append({
        "problem": index, "t": state["t"], "reward": state["reward"],
        "problem_reward": float(rewards.sum()), "final_loss": float(np.mean(losses[-1])),
        "policy": dict(policy), "changed": component, "popped": popped,
        "stack_size": len(stack)})
    state["stack"] = [list(e) for e in stack]
    state["cpu_seconds"] += time.process_time() - began
    _write_json(checkpoint, state)
    if (index + 1) % 25 == 0:
      log_fn(f"SSA seed {config.seed}: problem {index + 1}/{config.num_problems}, reward rate "
             f"{state['reward'] / state['t']:.4f}, stack {len(stack)}, policy {policy}")
  # The frozen policy: the one that survives a last SSA check.
  policy, popped = ssa_check(stack, state["t"], state["reward"], state["policy"])
  out = {"policy": policy, "metadata": {
      "config": config_dict, "command": command, "modifications": state["modifications"],
      "undone": state["undone"] + popped, "stack": [list(e) for e in stack],
      "optimizee_gradients": config.num_problems * config.batch_size * config.horizon,
      "cpu_seconds": state["cpu_seconds"], "history": state["history"]}}
  path = output_dir / "policy.json"
  _write_json(path, out)
  return path


def _write_json(path: Path, value) -> None:
  tmp = path.with_name(f".{path.name}.tmp")
  tmp.write_text(json.dumps(value))
  os.replace(tmp, path)


def load_run(path) -> dict:
  path = Path(path)
  if not path.is_file():
    raise errors.ConfigError(f"No SSA run at {path}; make one with --retrain.")
  saved = json.loads(path.read_text())
  if "policy" not in saved or "metadata" not in saved:
    raise errors.ConfigError(f"{path} does not hold an SSA run (no policy / metadata).")
  return saved


def evaluate(paths: Sequence[Path], seed: int, num_test: int, num_valid: int, grid=None,
             lstm: str = "pretrained:quadratic", command: str = "",
             log_fn: Callable[[str], None] = print) -> dict:
  """The frozen policies of the runs at `paths` on held-out test quadratics, against the tuned
  baselines (learning rates on validation quadratics, `evaluation.compare`) and the LSTM."""
  from l2l_tf import optimizers, problems  # pylint: disable=g-import-not-at-top
  from l2l_tf.evaluation import compare, tuning  # pylint: disable=g-import-not-at-top
  runs = [load_run(p) for p in paths]
  problem_config = dict(runs[0]["metadata"]["config"]["problem"])
  horizon = runs[0]["metadata"]["config"]["horizon"]
  problem = problems.make_problem(problem_config, split="test")
  learned = {"LSTM": optimizers.load_optimizer(lstm)}
  for i, run in enumerate(runs):
    p = run["policy"]
    learned[f"SSA seed {i}: {p['optimizer']} lr {10 ** p['log10_lr']:.3g}"
            + (f" mu {p['momentum']:.3f}" if p["optimizer"] in ("nag", "adam") else "")] = \
        frozen_optimizer(p)
  log_fn(f"review_ssa: {num_test} test quadratics, {len(learned)} frozen optimizers and 4 tuned "
         "baselines")
  results = compare.compare(problem, learned, ["sgd", "nag", "rmsprop", "adam"], horizon,
                            num_test, num_valid, seed, FIGURE,
                            grid=tuple(grid or tuning.DEFAULT_LEARNING_RATE_GRID),
                            progress=False)
  # A frozen policy has a learning rate, but it was not tuned on the grid: mark it as learned.
  results["ssa_runs"] = [{"path": str(p), "policy": r["policy"],
                          **{k: r["metadata"][k] for k in ("command", "modifications", "undone",
                                                            "optimizee_gradients", "cpu_seconds",
                                                            "history", "config")}}
                         for p, r in zip(paths, runs)]
  results["command"] = command
  results["cpu_seconds"] = {}
  return results


def table(results: dict) -> str:
  """Final loss of every frozen SSA policy, the LSTM and the tuned baselines; SSA's cost."""
  curves_ = results["optimizers"]
  lines = [f"**{results['figure']}**: {results['num_test_problems']} test quadratics, step "
           f"{results['steps'][-1]}", ""] + tables.header(
               ["optimizer", "learning rate", "mean loss at final step [95% CI]", "diverged"])
  for name, c in curves_.items():
    lines.append(tables.row([name, "tuned " + f"{c['learning_rate']:g}" if c["learning_rate"]
                             else "learned", tables.final_ci_cell(c),
                             f"{c.get('divergence_rate', 0):.1%}"]))
  best, entry = tables.best_baseline(curves_)
  lines.append("")
  for i, run in enumerate(results["ssa_runs"]):
    name = next(n for n in curves_ if n.startswith(f"SSA seed {i}:"))
    ratio = curves_[name]["mean"][-1] / entry["mean"][-1]
    lstm = curves_["LSTM"]["mean"][-1]
    floor = run["config"].get("reward_floor")
    lines.append(f"SSA seed {i}: {run['modifications']} modifications, {run['undone']} undone"
                 f"{'' if floor is None else f'; reward floor {floor:g}'}; "
                 f"lifelong cost {run['optimizee_gradients']:.3g} optimizee gradients, "
                 f"{run['cpu_seconds']:.0f} CPU-s; final loss / best tuned ({best}) = "
                 f"{ratio:.2f}; / LSTM = {curves_[name]['mean'][-1] / lstm:.2f}")
  return "\n".join(lines)


def plot(results: dict, path) -> Path:
  """Left: the policy over the lifelong stream (learning rate, optimizer); middle: reward rates;
  right: the frozen policies' test curves against the tuned baselines and the LSTM."""
  plt = plots.pyplot()
  fig, axes = plt.subplots(1, 3, figsize=(16, 4.4), dpi=110)
  ax_policy, ax_reward, ax_test = axes
  markers = dict(zip(OPTIMIZERS, "o^sD"))
  for i, run in enumerate(results["ssa_runs"]):
    h = run["history"]
    t = np.array([e["t"] for e in h])
    lr = np.array([e["policy"]["log10_lr"] for e in h])
    ax_policy.plot(t, lr, "-", color=f"C{i}", linewidth=1, label=f"seed {i}: log10 lr")
    for name, marker in markers.items():
      keep = np.array([e["policy"]["optimizer"] == name for e in h])
      if keep.any():
        ax_policy.plot(t[keep][::5], lr[keep][::5], marker, color=f"C{i}", markersize=3,
                       linestyle="none", label=name if i == 0 else None)
    reward = np.array([e["reward"] for e in h])
    per_problem = np.array([e["problem_reward"] for e in h]) / run["config"]["horizon"]
    ax_reward.plot(t, reward / t, "-", color=f"C{i}", label=f"seed {i}: R(t) / t")
    window = 10
    if len(per_problem) >= window:
      smooth = np.convolve(per_problem, np.ones(window) / window, mode="valid")
      ax_reward.plot(t[window - 1:], smooth, ":", color=f"C{i}",
                     label=f"seed {i}: reward per step, last {window} problems")
  ax_policy.set_xlabel("lifelong time t (optimizee steps)")
  ax_policy.set_ylabel("log10 learning rate (markers: optimizer)")
  ax_policy.set_title("SSA's policy over the stream", fontsize=9)
  ax_policy.grid(True, alpha=0.3)
  ax_policy.legend(fontsize=6)
  ax_reward.set_xlabel("lifelong time t (optimizee steps)")
  ax_reward.set_ylabel("reward rate (mean log-loss decrease per step)")
  ax_reward.set_title("reward rate", fontsize=9)
  ax_reward.grid(True, alpha=0.3)
  ax_reward.legend(fontsize=6)
  steps = np.asarray(results["steps"])
  keep = steps >= 0
  for i, (name, c) in enumerate(results["optimizers"].items()):
    plots.plot_curve(ax_test, steps, c, keep, f"C{i}", plots.curve_label(name, c))
  ax_test.set_yscale("log")
  ax_test.set_xlabel("step")
  ax_test.set_ylabel("loss")
  ax_test.set_title(f"frozen policies on {results['num_test_problems']} test quadratics "
                    "(mean, 95% CI)", fontsize=9)
  ax_test.grid(True, which="both", alpha=0.3)
  ax_test.legend(fontsize=6)
  return plots.save_figure(fig, path)
