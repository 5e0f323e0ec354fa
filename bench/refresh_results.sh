#!/usr/bin/env bash
# Copy the long runs' Parzen logs into bench/results and refresh the table and plot in RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
copy() { if [ -f "$1" ]; then cp "$1" "bench/results/$2"; fi; }
copy runs/mnist_paper/parzen.jsonl mnist_uniform_seed0_parzen.jsonl
copy runs/mnist_uniform_s1_gpu/parzen.jsonl mnist_uniform_seed1_gpu_parzen.jsonl
copy runs/mnist_gaussian_s0/parzen.jsonl mnist_gaussian_seed0_parzen.jsonl
copy runs/mnist_gaussian_gpu/parzen.jsonl mnist_gaussian_seed0_gpu_parzen.jsonl
table=$(.venv/bin/python bench/parzen_curves.py \
    "uniform s0 (CPU to 600, then H100)=bench/results/mnist_uniform_seed0_parzen.jsonl" \
    "uniform s1 (H100, CUDA graph)=bench/results/mnist_uniform_seed1_gpu_parzen.jsonl" \
    "gaussian s0 (CPU)=bench/results/mnist_gaussian_seed0_parzen.jsonl" \
    "gaussian s0 (H100)=bench/results/mnist_gaussian_seed0_gpu_parzen.jsonl" \
    --every 100 --also 20,40,60,80,140,160,180,250,300 --png bench/results/mnist_parzen_curves.png | grep '^|')
TABLE="$table" .venv/bin/python - <<'PY'
import os, re
path = "bench/RESULTS.md"
text = open(path).read()
text = re.sub(r"<!-- curve-table -->.*?<!-- /curve-table -->",
              lambda m: "<!-- curve-table -->\n" + os.environ["TABLE"] + "\n<!-- /curve-table -->", text, flags=re.S)
open(path, "w").write(text)
PY
