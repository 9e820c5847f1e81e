"""The Markdown tables of a benchmark JSON, as the README and docs/performance.md show them."""

import benchmarks

PROBLEMS = benchmarks.PROBLEMS


def fmt(value, digits=3):
  """A number as the tables print it: 3 significant digits, none after the point from 100 on."""
  if value is None:
    return "-"
  if isinstance(value, float):
    if value == 0:
      return "0"
    if abs(value) >= 100:
      return f"{value:.0f}"
    return f"{value:.{digits}g}"
  return str(value)


def _by_problem(table: dict):
  """The items of a {name: record} table, quadratic's before MNIST's."""
  def order(name):
    base = name.split("_")[0]
    return (PROBLEMS.index(base) if base in PROBLEMS else len(PROBLEMS), name)
  return sorted(table.items(), key=lambda kv: order(kv[0]))


def _table(header, rows) -> list:
  """A Markdown table: the header row, its rule, one line per row of cells, and a blank line."""
  line = lambda cells: "|" + "".join(f" {cell} |" if str(cell) else " |" for cell in cells)
  return [line(header), "|" + "---|" * len(header)] + [line(row) for row in rows] + [""]


def main_table(result: dict) -> list:
  """Meta-step and evaluation rows of every problem and thread count, and their ratios."""
  rows = []
  for problem in PROBLEMS:
    for key, label in ((f"{problem}_meta_step", f"{problem} meta-step"),
                       (f"{problem}_eval_100", f"{problem} eval, LSTM")):
      for threads, record in sorted(result.get(key, {}).items()):
        rows.append((label, threads, record))
        if "adam" in record:
          for sub, sublabel in (("learned_xla", f"{problem} eval, LSTM, XLA"),
                                ("adam", f"{problem} eval, Adam"),
                                ("adam_xla", f"{problem} eval, Adam, XLA")):
            rows.append((sublabel, threads, dict(record[sub], peak_rss_mb=None)))
  if not rows:
    return []
  lines = _table(
      ("benchmark", "threads", "CPU s (median)", "wall s (median)", "matmul floor s",
       "CPU / floor", "peak RSS MB"),
      [(label, threads) + tuple(fmt(r.get(key)) for key in (
          "cpu_s_median", "wall_s_median", "floor_s", "ratio_to_floor", "peak_rss_mb"))
       for label, threads, r in rows])
  for problem in PROBLEMS:
    for threads, record in sorted(result.get(f"{problem}_eval_100", {}).items()):
      lines.append(f"- {problem}, {threads} thread(s): LSTM / Adam = "
                   f"{fmt(record['learned_to_adam_cpu'])} "
                   f"({fmt(record['learned_to_adam_cpu_xla'])} with XLA); "
                   f"XLA speed-up LSTM {fmt(record['xla_speedup_learned'])}x, "
                   f"Adam {fmt(record['xla_speedup_adam'])}x")
  for problem in PROBLEMS:
    record = result.get(f"{problem}_meta_step", {}).get("1")
    if record:
      lines.append(f"- {problem} meta-step: {record['coordinates']} coordinates, "
                   f"K = {record['truncation']}, "
                   f"{fmt(record['flops'] / 1e9 if record['flops'] else None)} GFLOP of matmuls, "
                   f"LSTM-shape matmul rate {fmt(record['matmul_rate_gflops'])} GFLOP/s "
                   "(1 thread, CPU time)")
  return lines + [""]


def variant_tables(result: dict) -> list:
  """Per problem: every variant's meta-step and evaluation time and speed-up, and the skipped."""
  lines = []
  for problem, variants in _by_problem(result.get("variants", {})):
    lines += [f"Variants, {problem} (1 thread, interleaved, CPU s median; speed-up vs library):",
              ""]
    rows = []
    for name in benchmarks.VARIANTS:
      if name in variants["meta_step"] or name in variants["eval"]:
        m, e = variants["meta_step"].get(name, {}), variants["eval"].get(name, {})
        rows.append((name, fmt(m.get("cpu_s_median")), fmt(m.get("speedup_vs_library")),
                     fmt(e.get("cpu_s_median")), fmt(e.get("speedup_vs_library"))))
    rows += [(name, f"skipped: {why[:80]}", "", "", "")
             for name, why in variants.get("skipped", {}).items()]
    lines += _table(("variant", "meta-step s", "speed-up", "eval s", "speed-up"), rows)
  return lines


def profile_tables(result: dict) -> list:
  """Per profile: time per step, then the top op types, the top nodes and the categories."""
  lines = []
  for problem, profile in _by_problem(result.get("profile", {})):
    variant = "" if profile.get("variant", "library") == "library" else f", {profile['variant']}"
    what = "100-step evaluation, no XLA" if profile.get("target") == "eval" else "meta-step"
    overhead = fmt(profile["framework_overhead_s_per_step"])
    lines += [f"Profile, {profile.get('problem', {}).get('name', problem)} {what}{variant} "
              f"(1 thread): {fmt(profile['step_s'])} s per step, "
              f"{fmt(profile['ops_per_step'])} op executions, framework overhead {overhead} s", ""]
    lines += _table(("op type", "s per step", "% of step", "calls per step"),
                    [(row["name"], fmt(row["s_per_step"]), fmt(row["pct_of_step"]),
                      fmt(row["calls_per_step"])) for row in profile["top_op_types"][:10]])
    lines += _table(("node (forward, or grad/ for the meta-gradient)", "s per step", "% of step"),
                    [(row["name"], fmt(row["s_per_step"]), fmt(row["pct_of_step"]))
                     for row in profile["top_nodes"][:10]])
    categories = sorted(profile["categories_s_per_step"].items(), key=lambda kv: -kv[1])
    lines += _table(("category", "s per step"),
                    [(name, fmt(seconds)) for name, seconds in categories]
                    + [("framework overhead (not in ops)", overhead)])
  return lines


def _scaling_row(sweep, r) -> tuple:
  ckpt = r.get("checkpoint") or (r.get("task") or {}).get("checkpoint")
  ckpt_text = f"{ckpt['impl']} / {ckpt['chunk']}" if ckpt else "-"
  if r.get("grappler"):
    ckpt_text += " (arithmetic opt. off)"
  if "cpu_s_median" not in r:  # Skipped, failed, or a probe of whether it traces.
    status = r.get("skipped") or r.get("error") or ("works" if r.get("works") else "")
    task = r.get("task") or {}
    return (sweep, r.get("coordinates", task.get("coordinates")),
            r.get("truncation", task.get("truncation")), ckpt_text, status[:90], "", "")
  return (sweep, r["coordinates"], r["truncation"], ckpt_text, fmt(r["cpu_s_median"]),
          fmt(r["peak_rss_mb"]), fmt(r["activation_mb"]))


def scaling_table(result: dict) -> list:
  """Every scaling point, then the fitted log-log slopes."""
  scaling = result.get("scaling")
  if not scaling:
    return []
  sweeps = ["coordinates", "truncation", "checkpoint", "checkpoint_probe"]
  ordered = sorted(scaling["points"].items(),
                   key=lambda kv: sweeps.index(kv[0]) if kv[0] in sweeps else 9)
  lines = _table(("sweep", "n", "K", "checkpoint", "CPU s", "peak RSS MB", "activation MB"),
                 [_scaling_row(sweep, r) for sweep, points in ordered for r in points])
  for key in ("coordinates", "truncation"):
    lines.append(f"- log-log slope vs {key}: time {fmt(scaling.get(f'{key}_slope_cpu'))} "
                 f"(upper half {fmt(scaling.get(f'{key}_slope_cpu_upper_half'))}), activation "
                 f"memory {fmt(scaling.get(f'{key}_slope_memory'))} (upper half "
                 f"{fmt(scaling.get(f'{key}_slope_memory_upper_half'))})")
  return lines + [""]


def scale_out_table(result: dict) -> list:
  """Meta-steps per second and the all-reduce against workers, measured; then the model."""
  measured = result.get("scale_out")
  if not measured:
    return []
  rows = []
  summary = result.get("scale_out_summary", {})
  for threads, by_workers in sorted(measured.items(), key=lambda kv: int(kv[0])):
    ratios = summary.get(threads, {}).get("measured", {})
    for workers, r in sorted(by_workers.items(), key=lambda kv: int(kv[0])):
      rows.append((workers, threads, fmt(r["meta_steps_per_s"]),
                   fmt(ratios.get(workers, {}).get("speedup")),
                   fmt(r["step_wall_s"] * 1e3), fmt(r["step_cpu_s"] * 1e3),
                   fmt(r["compute_cpu_s"] * 1e3),
                   fmt(r["allreduce_wall_s"] * 1e3) if int(workers) > 1 else "-",
                   fmt(r["step_cpu_s_all_workers"] * 1e3), fmt(r["processes_cpu_s"])))
  any_record = next(iter(next(iter(measured.values())).values()))
  lines = [f"Meta-training on MultiWorkerMirroredStrategy over 127.0.0.1 (1 worker: one process, "
           f"no strategy): a global meta-batch of {any_record['meta_batch']} quadratics, "
           f"truncation {any_record['truncation']}, meta-gradient {any_record['gradient_bytes']} "
           f"bytes; medians; all workers on this machine's {result['machine'].get('cpu_count')} "
           f"cores.", ""]
  lines += _table(("workers", "threads", "meta-steps/s", "vs 1 worker", "step ms (wall)",
                   "step CPU ms (a worker)", "meta-gradient CPU ms", "all-reduce ms (wall)",
                   "step CPU ms (all workers)",
                   "process CPU s (all workers, whole run)"), rows)
  for threads, entry in sorted(summary.items(), key=lambda kv: int(kv[0])):
    if not entry.get("model"):
      continue
    inputs = entry["model_inputs"]
    lines.append(f"Model, {threads} thread(s), one worker per machine: t(N) = c / N + o + a(2) "
                 f"(N - 1) with c = {fmt(inputs['compute_s'] * 1e3)} ms (meta-gradient CPU, 1 "
                 f"worker), o = {fmt(inputs['rest_s'] * 1e3)} ms (rest of its step's CPU), "
                 f"a(2) = {fmt(inputs['allreduce_2_workers_s'] * 1e3)} ms (all-reduce wall, 2 "
                 f"workers), measured above:")
    lines.append("")
    lines += _table(("workers N", "step ms (model)", "meta-steps/s (model)", "vs 1 worker"),
                    [(n, fmt(m["step_s"] * 1e3), fmt(m["meta_steps_per_s"]), fmt(m["speedup"]))
                     for n, m in sorted(entry["model"].items(), key=lambda kv: int(kv[0]))])
  return lines


def estimators_table(result: dict) -> list:
  """The suite's markdown table: CPU per step and the ratios, per problem and thread count."""
  measured = result.get("estimators")
  if not measured:
    return []
  rows = []
  for key, r in sorted(measured.items()):
    rows.append((key, fmt(r["tbptt"]["cpu_s_per_step"] * 1e3),
                 fmt(r["es"]["cpu_s_per_step"] * 1e3), fmt(r["pes"]["cpu_s_per_step"] * 1e3),
                 fmt(r["forward"]["cpu_s_per_step"] * 1e3),
                 fmt(r["es_particle_step_vs_tbptt_step"]),
                 fmt(r["pes_particle_step_vs_tbptt_step"]),
                 fmt(r["pes_particle_step_vs_forward_step"])))
  any_record = next(iter(measured.values()))
  lines = [f"Meta-gradient estimators: CPU ms per optimizee step (tbptt: forward and backward, "
           f"per problem of its meta-batch) or per particle-step (ES, PES: forward only, "
           f"{any_record['population']} particles), truncation {any_record['truncation']}; "
           f"medians.", ""]
  return lines + _table(("problem / threads", "tbptt ms/step", "ES ms/particle-step",
                        "PES ms/particle-step", "forward ms/step", "ES / tbptt", "PES / tbptt",
                        "PES / forward"), rows)


def markdown_tables(result: dict) -> str:
  """The README / docs tables of a benchmark JSON."""
  lines = (main_table(result) + variant_tables(result) + profile_tables(result)
           + scaling_table(result) + scale_out_table(result)
           + estimators_table(result))
  if result.get("errors"):
    lines.append(f"{len(result['errors'])} measurement(s) failed; see `errors` in the JSON.")
  return "\n".join(lines)
