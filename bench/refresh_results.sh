#!/usr/bin/env bash
# Copy the long runs' Parzen logs into bench/results and refresh the table and plot in RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
cp runs/mnist_paper/parzen.jsonl bench/results/mnist_uniform_seed0_parzen.jsonl
cp runs/mnist_gaussian_s0/parzen.jsonl bench/results/mnist_gaussian_seed0_parzen.jsonl
table=$(.venv/bin/python bench/parzen_curves.py uniform=bench/results/mnist_uniform_seed0_parzen.jsonl \
    gaussian=bench/results/mnist_gaussian_seed0_parzen.jsonl --png bench/results/mnist_parzen_curves.png | grep '^|')
TABLE="$table" .venv/bin/python - <<'PY'
import os, re
path = "bench/RESULTS.md"
text = open(path).read()
text = re.sub(r"<!-- curve-table -->.*?<!-- /curve-table -->",
              lambda m: "<!-- curve-table -->\n" + os.environ["TABLE"] + "\n<!-- /curve-table -->", text, flags=re.S)
open(path, "w").write(text)
PY
