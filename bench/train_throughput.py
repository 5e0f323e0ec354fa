"""Trainer throughput: gan_core's device-resident loop next to a plain PyTorch loop fed by a DataLoader, in one run.

    python bench/train_throughput.py --mnist-source ../shared/data/mnist [--images 30000] [--bf16] [--compile]

Both train the `paper_mlp` MNIST configuration (batch 100, the simultaneous update, momentum SGD) for one pass over the
same `--images` training images. The baseline reads torchvision's `MNIST` dataset (ToTensor per image) through a
`DataLoader` with shuffling and copies each batch to the device. Images/s are the best of two alternating repeats.
`--bf16` adds gan_core's trainer with bfloat16 autocast (`TrainConfig(bf16=True)`) to the same repeats, `--compile`
the trainer under `torch.compile`, `--cuda-graph` the trainer replaying each step as a CUDA graph (both: two passes,
the second one's rate, so compilation and capture are left out).

    python bench/train_throughput.py --mnist-source ../shared/data/mnist --seeds 1 4 8 [--images 10000]

`--seeds S...` measures instead, for each S, one epoch of S seeds trained in one loop (`gan_core.train.train_seeds`),
stacked as one batched model and in turn, against the same S seeds trained one after another (`train_gan`), and one
seed alone, side by side in this run: each way's time over the sequential time, and the stacked time over one seed's
(the goal on a GPU: 8 seeds in at most 1.5x the time of one). Times are wall seconds of the whole call, checkpoints
included, best of two.

    python bench/train_throughput.py --mnist-source ../shared/data/mnist --products 1 4 [--images 10000]

`--products S...` measures, for each S, the stacked step (gan_core.batched, forced on any device) in fp32 and in bf16
against the same step's matrix products run alone (the ops and shapes the profiler records in a short run of it,
replayed on random tensors): the fraction of its products' rate the step reaches (the goal on a CPU: fp32 at 85 % or
more), and each against the plain DataLoader loop's images/s (the goal: bf16 at 2x or more), side by side in one run.
"""

from __future__ import annotations

import argparse
import math
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import ensure_mnist, write_json
from torch.profiler import ProfilerActivity, profile
from torch.utils.data import DataLoader, Subset

from gan_core.config import RuntimeOptions, TrainConfig
from gan_core.data import load_split
from gan_core.devices import resolve_device
from gan_core.losses import discriminator_loss, generator_loss
from gan_core.models import build_models, init_output_bias_from_marginals, sample_noise
from gan_core.train import train_gan, train_seeds


def gan_core_images_per_second(
    train: torch.Tensor, device: str, bf16: bool = False, compile: bool = False, cuda_graph: bool = False
) -> float:
    """One pass over `train`; with `compile` or `cuda_graph`, two passes and the second one's rate (compilation or
    capture left out)."""
    epochs = 2 if compile or cuda_graph else 1
    with tempfile.TemporaryDirectory() as out:
        result = train_gan(
            TrainConfig(epochs=epochs, bf16=bf16),
            train,
            out,
            RuntimeOptions(device=device, progress=False, compile=compile, cuda_graph=cuda_graph),
        )
    return result.history[-1]["images_per_second"]


SEED_MODES = ("stacked", "in_turn", "sequential")  # train_seeds stacked, train_seeds in turn, train_gan per seed


def seeds_seconds(train: torch.Tensor, device: str, seeds: int, mode: str) -> float:
    """Wall seconds for one epoch of `seeds` seeds of the paper's MNIST configuration, trained the `mode` way."""
    configs = [TrainConfig(epochs=1, seed=seed) for seed in range(seeds)]
    options = RuntimeOptions(device=device, progress=False)
    with tempfile.TemporaryDirectory() as out:
        dirs = [Path(out) / f"seed{seed}" for seed in range(seeds)]
        started = time.perf_counter()
        if mode == "sequential":
            for config, run_dir in zip(configs, dirs, strict=True):
                train_gan(config, train, run_dir, options)
        else:
            train_seeds(configs, train, dirs, replace(options, stack_seeds=mode == "stacked"))
        return time.perf_counter() - started


def compare_seeds(train: torch.Tensor, device: str, counts: list[int]) -> dict[str, dict[str, float]]:
    """For each seed count: the seconds of each of SEED_MODES (best of two, alternating) and one seed's, side by
    side."""
    one = min(seeds_seconds(train, device, 1, "sequential") for _ in range(2))
    print(f"one seed alone: {one:.2f} s, {len(train) / one:.0f} img/s")
    figures = {}
    for count in counts:
        seconds: dict[str, list[float]] = {mode: [] for mode in SEED_MODES}
        for _ in range(2):
            for mode in SEED_MODES:
                seconds[mode].append(seeds_seconds(train, device, count, mode))
        best = {mode: min(times) for mode, times in seconds.items()}
        q = best["sequential"]
        print(
            f"S={count:2d}: "
            + ", ".join(f"{mode} {best[mode]:7.2f} s ({q / best[mode]:4.2f}x sequential)" for mode in SEED_MODES)
            + f"; stacked / one seed {best['stacked'] / one:5.2f}x"
        )
        figures[str(count)] = {
            **{f"{mode}_s": best[mode] for mode in SEED_MODES},
            "one_seed_s": one,
            "speedup": q / best["stacked"],
        }
    return figures


PRODUCT_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


def stacked_step(train: torch.Tensor, device: str, seeds: int, bf16: bool) -> tuple[float, list[tuple]]:
    """The stacked step of `seeds` seeds of the paper's MNIST configuration: wall seconds per step (one epoch over
    `train`, best of two), and the matrix products one step calls (op name, input shapes), read by the profiler from a
    short run of it."""
    configs = [TrainConfig(epochs=1, seed=seed, bf16=bf16) for seed in range(seeds)]
    options = RuntimeOptions(device=device, progress=False, stack_seeds=True, tensorboard=False)
    per_step = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as out:
            outcome = train_seeds(configs, train, [Path(out) / f"s{i}" for i in range(seeds)], options)[0]
        per_step.append(outcome.history[-1]["seconds"] / (len(train) // 100))
    profiled_steps = 5
    short = [replace(config, max_train_images=100 * profiled_steps) for config in configs]
    with tempfile.TemporaryDirectory() as out, profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        train_seeds(short, train, [Path(out) / f"s{i}" for i in range(seeds)], options)
    products = [(e.name, e.input_shapes) for e in prof.events() if e.name in PRODUCT_OPS]
    return min(per_step), products[: len(products) // profiled_steps]


def product_seconds(products: list[tuple], device: str, dtype: torch.dtype, repeats: int = 20) -> tuple[float, float]:
    """Seconds one step's `products` take alone (the same ops at the same shapes on random tensors, best of
    `repeats` passes), and their floating-point operations."""
    dev = resolve_device(device)
    calls, flops = [], 0.0
    for name, shapes in products:
        tensors = [torch.rand(shape, device=dev, dtype=dtype) for shape in shapes if shape]
        if name in ("aten::mm", "aten::bmm"):
            a, b = tensors[:2]
            calls.append((torch.bmm if name == "aten::bmm" else torch.mm, (a, b)))
        else:
            bias, a, b = tensors[:3]
            calls.append((torch.baddbmm if name == "aten::baddbmm" else torch.addmm, (bias, a, b)))
        flops += 2.0 * math.prod(a.shape) * b.shape[-1]
    best = math.inf
    for _ in range(repeats):
        if dev.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for op, args in calls:
            op(*args)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - started)
    return best, flops


def compare_with_products(train: torch.Tensor, device: str, counts: list[int]) -> dict[str, dict[str, float]]:
    """For each seed count and precision: the stacked step's seconds against its matrix products' alone, side by
    side in this run (the goal on a CPU: fp32 at >= 85 % of the products' rate)."""
    figures = {}
    for count in counts:
        for bf16 in (False, True):
            step, products = stacked_step(train, device, count, bf16)
            alone, flops = product_seconds(products, device, torch.bfloat16 if bf16 else torch.float32)
            name = f"S={count} {'bf16' if bf16 else 'fp32'}"
            print(
                f"{name}: step {step * 1e3:7.2f} ms ({flops / step / 1e9:6.1f} GFLOP/s, {100 * count / step:6.0f} "
                f"img/s), its {len(products)} products alone {alone * 1e3:7.2f} ms ({flops / alone / 1e9:6.1f} "
                f"GFLOP/s): the step runs at {alone / step:5.1%} of its products' rate"
            )
            figures[name] = {
                "step_s": step,
                "products_s": alone,
                "gflop_per_step": flops / 1e9,
                "fraction_of_products_rate": alone / step,
                "images_per_second": 100 * count / step,
            }
    return figures


def dataloader_images_per_second(raw_dir: Path, count: int, device: str, workers: int) -> float:
    from torchvision import datasets, transforms

    dev = resolve_device(device)
    dataset = Subset(
        datasets.MNIST(str(raw_dir), train=True, download=False, transform=transforms.ToTensor()), range(count)
    )
    loader = DataLoader(
        dataset, batch_size=100, shuffle=True, num_workers=workers, drop_last=True, pin_memory=dev.type == "cuda"
    )
    torch.manual_seed(0)
    pair = build_models("paper_mlp", (1, 28, 28))
    generator, discriminator = pair.generator.to(dev), pair.discriminator.to(dev)
    init_output_bias_from_marginals(generator, torch.stack([dataset[i][0] for i in range(1000)]).to(dev))
    g_opt = torch.optim.SGD(generator.parameters(), lr=0.1, momentum=0.5)
    d_opt = torch.optim.SGD(discriminator.parameters(), lr=0.1, momentum=0.5)
    g_params, d_params = list(generator.parameters()), list(discriminator.parameters())
    seen = 0
    if dev.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for real, _ in loader:
        real = real.to(dev, non_blocking=True)
        fake = generator(sample_noise(real.shape[0], 100, "uniform", dev))
        terms = discriminator_loss("non_saturating", discriminator(real), fake_logits := discriminator(fake))
        g_loss = generator_loss("non_saturating", fake_logits)
        for params, grads, opt in (
            (d_params, torch.autograd.grad(terms.loss, d_params, retain_graph=True), d_opt),
            (g_params, torch.autograd.grad(g_loss, g_params), g_opt),
        ):
            for param, grad in zip(params, grads, strict=True):
                param.grad = grad
            opt.step()
        terms.loss.detach().item()  # a typical loop reads the loss each step
        seen += real.shape[0]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - started)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), and whether it has AVX-512 and AMX: what the figures depend on."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")), "CPU")
    flags = next((line.split(":", 1)[1].split() for line in info.splitlines() if line.startswith("flags")), [])
    units = [unit for unit in ("avx512f", "avx512_bf16", "amx_bf16") if unit in flags] or ["avx2" * ("avx2" in flags)]
    return f"{model} ({', '.join(filter(None, units))})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mnist-source", default="")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--images", type=int, default=30_000)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--bf16", action="store_true", help="also measure the trainer under bfloat16 autocast")
    parser.add_argument(
        "--compile", action="store_true", help="also measure the trainer under torch.compile (second epoch's rate)"
    )
    parser.add_argument(
        "--cuda-graph", action="store_true", help="also measure the trainer replaying CUDA graphs (second epoch's rate)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[], help="compare S batched seeds with S sequential")
    parser.add_argument(
        "--products",
        type=int,
        nargs="+",
        default=[],
        help="for these seed counts, the stacked step (fp32 and bf16) against its matrix products alone, and the "
        "DataLoader loop",
    )
    parser.add_argument("--json", default="")
    args = parser.parse_args()

    h5 = ensure_mnist(args.mnist_source, Path(args.data_dir))
    train = load_split(h5, "train", limit=args.images)
    device = str(resolve_device(args.device))
    name = (
        torch.cuda.get_device_name()
        if device.startswith("cuda")
        else f"{cpu_model()}, {torch.get_num_threads()} threads"
    )
    name_of_device = name
    print(f"paper_mlp on {args.images} MNIST images, batch 100, device {device} ({name})")
    if args.products:
        figures = compare_with_products(train, device, args.products)
        raw = Path(args.data_dir) / "raw" / "mnist"
        plain = max(dataloader_images_per_second(raw, args.images, device, args.workers) for _ in range(2))
        print(f"plain DataLoader loop (fp32, one seed): {plain:.0f} img/s")
        for name, row in figures.items():
            row["over_plain_loop"] = row["images_per_second"] / plain
            print(f"{name}: {row['over_plain_loop']:.2f}x the plain loop's images/s")
        if args.json:
            write_json(args.json, {"device": device, "device_name": name_of_device, "plain_loop": plain, **figures})
        return
    if args.seeds:
        figures = compare_seeds(train, device, args.seeds)
        if args.json:
            write_json(args.json, {"device": device, "device_name": name, "images": args.images, "seeds": figures})
        return
    ours, baseline, ours_bf16, ours_compiled, ours_graphed = [], [], [], [], []
    for repeat in range(2):
        ours.append(gan_core_images_per_second(train, device))
        baseline.append(
            dataloader_images_per_second(Path(args.data_dir) / "raw" / "mnist", args.images, device, args.workers)
        )
        line = f"repeat {repeat + 1}: gan_core {ours[-1]:.0f} img/s, DataLoader loop {baseline[-1]:.0f} img/s"
        if args.bf16:
            ours_bf16.append(gan_core_images_per_second(train, device, bf16=True))
            line += f", gan_core bf16 {ours_bf16[-1]:.0f} img/s"
        if args.compile:
            try:
                ours_compiled.append(gan_core_images_per_second(train, device, compile=True))
                line += f", gan_core torch.compile {ours_compiled[-1]:.0f} img/s"
            except Exception as error:  # a compiler failure should not lose the other figures
                line += f", torch.compile failed: {type(error).__name__}: {str(error)[:300]}"
        if args.cuda_graph and device.startswith("cuda"):
            ours_graphed.append(gan_core_images_per_second(train, device, cuda_graph=True))
            line += f", gan_core CUDA graph {ours_graphed[-1]:.0f} img/s"
        print(line)
    best_ours, best_baseline = max(ours), max(baseline)
    print(f"gan_core trainer      : {best_ours:10.0f} images/s")
    print(f"DataLoader baseline   : {best_baseline:10.0f} images/s (num_workers={args.workers})")
    print(f"ratio                 : {best_ours / best_baseline:10.2f}x")
    if ours_bf16:
        print(f"gan_core bf16 autocast: {max(ours_bf16):10.0f} images/s ({max(ours_bf16) / best_ours:.2f}x float32)")
    if ours_graphed:
        best_graphed = max(ours_graphed)
        print(f"gan_core CUDA graph   : {best_graphed:10.0f} images/s ({best_graphed / best_ours:.2f}x eager)")
        print(f"CUDA graph / DataLoader: {best_graphed / best_baseline:9.2f}x")
    if ours_compiled:
        best_compiled = max(ours_compiled)
        print(f"gan_core torch.compile: {best_compiled:10.0f} images/s ({best_compiled / best_ours:.2f}x eager)")
    if args.json:
        write_json(
            args.json,
            {
                "device": device,
                "device_name": name,
                "gan_core": best_ours,
                "dataloader": best_baseline,
                "ratio": best_ours / best_baseline,
                "gan_core_bf16": max(ours_bf16) if ours_bf16 else None,
                "gan_core_compiled": max(ours_compiled) if ours_compiled else None,
                "gan_core_cuda_graph": max(ours_graphed) if ours_graphed else None,
            },
        )


if __name__ == "__main__":
    main()
