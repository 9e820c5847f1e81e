#!/usr/bin/env bash
# CPU time of the five MNIST figures with LSTM v2 (as shipped) and without it (the figures before
# issue 14: --learned_optimizers= drops the row), the two sequences run side by side so that both
# see the same machine. Writes <out>/{with_v2,without_v2}/time.txt: per figure, user and system
# CPU seconds and wall seconds (GNU time); the figures' JSONs hold each row's CPU time
# (`timing_cpu_s`). Usage: bash benchmarks/figures_cpu.sh [out_dir] (default runs/figures_cpu).
set -uo pipefail
cd "$(dirname "$0")/.."
out=${1:-runs/figures_cpu}
shift || true
figures=("$@")
[ ${#figures[@]} -gt 0 ] || figures=(mnist mnist_200_steps mnist_40_units mnist_2_layers mnist_relu)
py=${PYTHON:-.venv/bin/python}
run() {  # $1 = with_v2 | without_v2
  dir=$out/$1; mkdir -p "$dir"; : > "$dir/time.txt"
  extra=(); [ "$1" = without_v2 ] && extra=(--learned_optimizers=)
  for f in "${figures[@]}"; do
    /usr/bin/time -f "$f %U %S %e" -a -o "$dir/time.txt" "$py" -m l2l_tf.reproduce \
      --figure=$f --output_dir="$dir" --threads=1 "${extra[@]}" > "$dir/$f.log" 2>&1 || exit 1
  done
}
run with_v2 & a=$!
run without_v2 & b=$!
wait $a && wait $b || { echo "a figure failed: see $out/*/*.log" >&2; exit 1; }
for d in with_v2 without_v2; do
  awk -v d=$d '{cpu += $2 + $3} END {printf "%s: %.0f CPU-s for the figures\n", d, cpu}' \
    "$out/$d/time.txt"
done
