#!/usr/bin/env bash
# One call on a lent GPU machine: the bench scripts' GPU figures, the library's tests on CUDA, then the long MNIST
# reproduction runs until the wall-clock budget is spent (each stops after a checkpointed epoch).
#
#   bench/gpu_session.sh MNIST_GZ_DIR TOTAL_SECONDS [benches|nobench]
#
# Runs resume from runs/mnist_paper (uniform noise) and runs/mnist_gaussian_gpu (gaussian noise) when checkpoints are
# there. Everything worth keeping (machine.txt, bench logs and JSON, the pytest log under gpu_session/; the runs' logs,
# parzen.jsonl and checkpoints under runs/) goes to $OUT as session.tgz.part-* in 15 MB parts (the device tool returns
# at most 8 files of 16 MiB); `cat session.tgz.part-* | tar xzf -` restores them.
set -u -o pipefail
src=$1
total=$2
mode=${3:-benches}
final=${OUT:-/tmp/gpu_session_out}
out=gpu_session
mkdir -p "$out" "$final" runs
export PYTHONPATH=$PWD PYTHONUNBUFFERED=1
end=$((SECONDS + total))
py=python3

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $py -c 'import sys, torch; print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name())'
    echo "cpus: $(nproc)"
} 2>&1 | tee "$out/machine.txt"
$py -c "import sys; sys.path.insert(0, 'bench'); from pathlib import Path; from reproduce_mnist import ensure_mnist; \
print(ensure_mnist('$src', Path('data')))" || exit 1

if [ "$mode" = benches ]; then
    $py bench/train_throughput.py --mnist-source "$src" --images 30000 --bf16 --compile \
        --json "$out/throughput.json" 2>&1 | tee "$out/throughput.log"
    $py bench/train_throughput.py --mnist-source "$src" --images 30000 --workers 4 \
        --json "$out/throughput_workers4.json" 2>&1 | tee -a "$out/throughput.log"
    $py bench/parzen.py --mnist-source "$src" --devices cuda,cpu --reference-points 1000 --skip-sklearn \
        --json "$out/parzen_bench.json" 2>&1 | tee "$out/parzen_bench.log"
fi

left=$((end - SECONDS - 45))
echo "long runs: ${left} s"
$py bench/reproduce_mnist.py --mnist-source "$src" --out runs/mnist_paper --epochs 5000 --eval-every 10 \
    --noise uniform --max-seconds "$left" >>runs/mnist_paper_gpu.log 2>&1 &
$py bench/reproduce_mnist.py --mnist-source "$src" --out runs/mnist_gaussian_gpu --epochs 5000 --eval-every 10 \
    --noise gaussian --max-seconds "$left" >>runs/mnist_gaussian_gpu.log 2>&1 &
if [ "$mode" = benches ]; then
    GAN_PIPELINE_MNIST_DIR="$src" timeout "$left" $py -m pytest -q -p no:cacheprovider tests/test_training.py \
        tests/test_parzen.py tests/test_datasets.py tests/test_metrics.py >"$out/pytest_cuda.log" 2>&1
    tail -3 "$out/pytest_cuda.log"
fi
wait
tail -4 runs/mnist_paper_gpu.log runs/mnist_gaussian_gpu.log
grep -h parzen runs/mnist_paper_gpu.log | tail -3
grep -h parzen runs/mnist_gaussian_gpu.log | tail -3
tar czf - "$out" runs/*_gpu.log runs/mnist_paper/parzen.jsonl runs/mnist_paper/checkpoint.pt \
    runs/mnist_gaussian_gpu/parzen.jsonl runs/mnist_gaussian_gpu/checkpoint.pt | split -b 15M - "$final/session.tgz.part-"
ls -la "$final"
