#!/usr/bin/env bash
# One call on a lent GPU machine: optional bench figures and CUDA tests, then long MNIST reproduction runs until the
# wall-clock budget is spent (each run stops after a checkpointed epoch).
#
#   bench/gpu_session.sh MNIST_GZ_DIR TOTAL_SECONDS STEPS RUN...
#
# STEPS: comma-separated from benches (throughput incl. bf16/compile/DataLoader workers 0 and 4, Parzen on cuda and
#        cpu), seeds (1, 4, 8, 16 seeds batched against sequential), tests (gan_core's tests on CUDA), graph
#        (CUDA-graph tests and throughput; the runs use --cuda-graph only if those tests pass), cudagraph (the runs use --cuda-graph without those checks), ddp (torchrun with one
#        NCCL rank per GPU on 20,000 MNIST images, 3 epochs, through assets/ddp_worker.py), recipes (12
#        candidates of bench/recipe_search.py at once until the budget is spent; needs MNIST's feature classifier at
#        $CLASSIFIER, default .gpu_carry/models/mnist/feature_classifier.pt), stacked (issue 27: the stacked step's
#        tests on CUDA, its CUDA graph included, then 1/4/8/16 seeds stacked against one and against sequential, and
#        the step against its products), table1 (issue 27: bench/reproduce_table1.py, the paper_reproduction
#        experiment's 3 stacked seeds with the validation monitor, resuming runs/paper_reproduction, until the budget
#        is spent, then best and last scored under the protocol), or none.
# RUN:   NOISE:SEED:DIR, e.g. uniform:0:runs/mnist_paper. A run resumes from DIR/checkpoint.pt when it is there.
#
# Everything worth keeping (gpu_session/: machine.txt, bench logs and JSON, pytest logs; each run's log, parzen.jsonl
# and checkpoint) goes to $OUT as session.tgz.part-* in 15 MB parts (the device tool returns at most 8 files of
# 16 MiB); `cat session.tgz.part-* | tar xzf -` restores them.
set -u -o pipefail
src=$1
total=$2
steps=$3
shift 3
final=${OUT:-/tmp/gpu_session_out}
out=gpu_session
mkdir -p "$out" "$final" runs
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
end=$((SECONDS + total))
py=${PYTHON:-python3}
has() { [[ ",$steps," == *",$1,"* ]]; }
keep=("$out")

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $py -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())'
    echo "cpus: $(nproc)"
} 2>&1 | tee "$out/machine.txt"
$py bench/common.py --dataset mnist --source "$src" --data-dir data || exit 1

graph_flag=""
has cudagraph && graph_flag="--cuda-graph"
if has graph; then
    if $py -m pytest -q -p no:cacheprovider tests/test_training.py -k "cuda_graph or bit_identical or resumed" \
        >"$out/pytest_graph.log" 2>&1; then
        graph_flag="--cuda-graph"
    fi
    tail -5 "$out/pytest_graph.log"
    echo "runs use: ${graph_flag:-eager steps}"
    $py bench/train_throughput.py --mnist-source "$src" --images 30000 --cuda-graph \
        --json "$out/throughput_graph.json" 2>&1 | tee "$out/throughput_graph.log"
fi
if has benches; then
    $py bench/train_throughput.py --mnist-source "$src" --images 30000 --bf16 --compile \
        --json "$out/throughput.json" 2>&1 | tee "$out/throughput.log"
    $py bench/train_throughput.py --mnist-source "$src" --images 30000 --workers 4 \
        --json "$out/throughput_workers4.json" 2>&1 | tee -a "$out/throughput.log"
    $py bench/parzen.py --mnist-source "$src" --devices cuda,cpu --reference-points 1000 --skip-sklearn \
        --json "$out/parzen_bench.json" 2>&1 | tee "$out/parzen_bench.log"
fi

if has seeds; then  # issue 17: S seeds as one batched model against S one after another
    $py bench/train_throughput.py --mnist-source "$src" --images 10000 --seeds 1 4 8 16 \
        --json "$out/seeds.json" 2>&1 | tee "$out/seeds.log"
fi

if has stacked; then  # issue 27: the stacked step on CUDA (graph captured), then its figures
    $py -m pytest -q -p no:cacheprovider tests/test_batched_seeds.py tests/test_monitor.py \
        >"$out/pytest_stacked.log" 2>&1
    tail -5 "$out/pytest_stacked.log"
    $py bench/train_throughput.py --mnist-source "$src" --images 10000 --seeds 1 4 8 16 \
        --json "$out/seeds_stacked.json" 2>&1 | tee "$out/seeds_stacked.log"
    $py bench/train_throughput.py --mnist-source "$src" --images 10000 --products 1 8 \
        --json "$out/products.json" 2>&1 | tee "$out/products.log"
fi

if has ddp; then
    gpus=$($py -c 'import torch; print(torch.cuda.device_count())')
    $py - <<PY
import json, pathlib
from gan_core.config import TrainConfig
settings = {"config": TrainConfig(epochs=3, max_train_images=20000).to_dict(), "dataset_file": "data/datasets/mnist.h5",
            "run_dir": "runs/ddp_check",
            "options": {"checkpoint_every": 1, "checkpoint_seconds": 300.0, "holder": "gpu_session"}}
pathlib.Path("runs").mkdir(exist_ok=True)
pathlib.Path("runs/ddp_check.json").write_text(json.dumps(settings))
PY
    rm -rf runs/ddp_check
    timeout 300 $py -m assets.ddp_worker launch "$gpus" runs/ddp_check.json runs/ddp_failures.json runs/ddp_logs \
        >"$out/ddp.log" 2>&1
    echo "ddp exit $?"; grep -h "epoch\|resuming" "$out/ddp.log" | tail -4
    $py -c 'import torch; h = torch.load("runs/ddp_check/checkpoint.pt", weights_only=True)["history"]; \
print([e["rank_weights"] for e in h][-1], h[-1]["d_loss"], h[-1]["images_per_second"])' 2>&1 | tee -a "$out/ddp.log"
fi

if has recipes; then  # issue 16: which modern recipe reaches the target, and after how many epochs
    mkdir -p data/models/mnist
    cp "${CLASSIFIER:-.gpu_carry/models/mnist/feature_classifier.pt}" data/models/mnist/feature_classifier.pt
    $py bench/recipe_search.py --data-dir data --epochs 20 --eval-every 2 --parallel 12 \
        --candidates dcgan dcgan_init dcgan_bn dcgan_bn_ema dcgan_bn_b128 dcgan_bn_gauss dcgan32_bn dcgan_bn_hinge \
        sn_hinge sn_hinge_init sn_hinge_b0 dcgan_cond \
        --max-seconds $((end - SECONDS - 60)) --jsonl "$out/recipes.jsonl" >"$out/recipes.log" 2>&1
    tail -16 "$out/recipes.log"
fi

if has table1; then  # issue 27: the paper's Table 1 row, 3 seeds stacked, until the budget is spent
    mkdir -p runs
    $py bench/reproduce_table1.py --mnist-source "$src" --out runs/paper_reproduction \
        --max-seconds $((end - SECONDS - 150)) --score --json "$out/table1.json" >"$out/table1.log" 2>&1
    tail -12 "$out/table1.log"  # the checkpoints (3 x 3 x 30 MB) stay on the machine: too big to come back
fi

left=$((end - SECONDS - 45))
((left < 1)) && left=1  # reproduce_mnist reads 0 or less as "no limit"
echo "long runs: ${left} s"
for run in "$@"; do
    IFS=: read -r noise seed dir <<<"$run"
    $py bench/reproduce_mnist.py --mnist-source "$src" --out "$dir" --epochs 5000 --eval-every 10 --noise "$noise" \
        --seed "$seed" --max-seconds "$left" $graph_flag >>"$dir.log" 2>&1 &
    keep+=("$dir.log" "$dir/parzen.jsonl" "$dir/checkpoint.pt")
done
if has tests; then
    GAN_PIPELINE_MNIST_DIR="$src" timeout "$left" $py -m pytest -q -p no:cacheprovider tests/test_training.py \
        tests/test_parzen.py tests/test_datasets.py tests/test_metrics.py >"$out/pytest_cuda.log" 2>&1
    tail -3 "$out/pytest_cuda.log"
fi
wait
for run in "$@"; do
    dir=${run##*:}
    echo "== $dir"
    grep -h "^epoch" "$dir.log" | tail -1
    grep -h "parzen\]" "$dir.log" | tail -3
    tail -1 "$dir.log"
done
tar czf - "${keep[@]}" | split -b 15M - "$final/session.tgz.part-"
ls -la "$final"
