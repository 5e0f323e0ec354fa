"""The GAN training loop: k discriminator steps per generator step, the paper's SGD or Adam, checkpoint and resume.

The whole training split lives on the device as one tensor and batches are index slices of a device-side
permutation (no DataLoader, no per-image Python work). With `update="simultaneous"` (the released code's scheme, k = 1)
both players' gradients come from the same minibatch, the same noise and the same dropout masks and are applied
together; `update="alternating"` is the paper's Algorithm 1 (k D-steps, then one G-step on fresh noise).

At the paper's batch of 100 a GPU step is a few hundred tiny kernels, so eager PyTorch is bound by the host launching
them. `RuntimeOptions(cuda_graph=True)` captures the whole simultaneous step (forward, both gradients, both optimiser
updates, noise and dropout) once as a CUDA graph and replays it per batch; the batch, learning rate and momentum live
in static device tensors that are refilled before each replay.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gan_core.losses import check_loss_name, discriminator_loss, generator_loss, gradient_penalty
from gan_core.models import MODEL_BUILDERS, build_models, init_output_bias_from_marginals, sample_noise
from gan_core.storage import atomic_output

CHECKPOINT_FORMAT = 1
CHECKPOINT_NAME = "checkpoint.pt"
OPTIMIZERS = ("paper", "adam")
UPDATES = ("simultaneous", "alternating")


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the message names the step and the last good checkpoint."""


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model's weights (defaults: the paper's MNIST configuration)."""

    model: str = "paper_mlp"
    loss: str = "non_saturating"
    optimizer: str = "paper"
    update: str = "simultaneous"
    epochs: int = 100
    batch_size: int = 100
    learning_rate: float = 0.1
    d_steps: int = 1
    momentum_start: float = 0.5
    momentum_end: float = 0.7
    momentum_saturate_epoch: int = 250
    lr_decay: float = 1.000004
    min_learning_rate: float = 1e-6
    adam_beta1: float = 0.5
    adam_beta2: float = 0.999
    gp_weight: float = 10.0
    noise: str = "uniform"
    seed: int = 0
    max_train_images: int = 0
    bf16: bool = False

    def validate(self) -> None:
        """Raise ValueError naming the first bad setting."""
        if self.model not in MODEL_BUILDERS:
            raise ValueError(f"unknown model {self.model!r}; known models: {sorted(MODEL_BUILDERS)}")
        check_loss_name(self.loss)
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; expected one of {list(OPTIMIZERS)}")
        if self.update not in UPDATES:
            raise ValueError(f"unknown update {self.update!r}; expected one of {list(UPDATES)}")
        if self.update == "simultaneous" and self.d_steps != 1:
            raise ValueError(f"update='simultaneous' needs d_steps=1, got d_steps={self.d_steps}")
        if self.noise not in ("uniform", "gaussian"):
            raise ValueError(f"unknown noise {self.noise!r}; expected 'uniform' or 'gaussian'")
        for name in ("epochs", "batch_size", "d_steps"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}")
        if not self.learning_rate > 0 or not math.isfinite(self.learning_rate):
            raise ValueError(f"learning_rate must be positive and finite, got {self.learning_rate}")
        if not self.lr_decay >= 1.0:
            raise ValueError(f"lr_decay must be >= 1 (the rate is divided by it each update), got {self.lr_decay}")
        if self.max_train_images < 0:
            raise ValueError(f"max_train_images must be >= 0 (0 = all), got {self.max_train_images}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run (not what to compute): device, torch.compile, checkpoint cadence, progress display."""

    device: str = "auto"
    compile: bool = False
    cuda_graph: bool = False  # replay the simultaneous paper-SGD step as a CUDA graph (CUDA only; ignored on the CPU)
    checkpoint_every: int = 5
    progress: bool = True
    stop_after_epoch: int | None = None  # stop early (as if killed) after this epoch's checkpoint; for testing resume
    stop_after_time: float | None = None  # time.time() deadline: the first epoch ending past it checkpoints and stops
    on_epoch_end: Callable[[int, nn.Module], None] | None = None  # called with (epoch, generator), e.g. to evaluate


@dataclass
class TrainResult:
    """What a training run produced and how it went."""

    checkpoint_path: Path
    epochs: int
    steps: int
    wall_seconds: float
    images_per_second: float
    device: str
    history: list[dict[str, float]] = field(default_factory=list)
    resumed_from_epoch: int = 0
    finished: bool = True

    @property
    def final(self) -> dict[str, float]:
        return self.history[-1] if self.history else {}


def resolve_device(requested: str = "auto") -> torch.device:
    """CUDA when present (for "auto"), else CPU; an explicit "cuda" without a GPU is an error."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available on this machine")
    return device


class PylearnMomentumSGD(torch.optim.Optimizer):
    """pylearn2's momentum rule: v <- m v - lr g; p <- p + v (learning rate and momentum set by the caller).

    `lr` and `momentum` may be floats or 0-d device tensors; tensors are read on the device, so a captured CUDA graph
    picks up new values without re-capture.
    """

    def __init__(self, params: Any, lr: float, momentum: float) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if not params:
                continue
            velocities = []
            for p in params:
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                velocities.append(state["velocity"])
            grads = [p.grad for p in params]
            torch._foreach_mul_(velocities, group["momentum"])
            if isinstance(group["lr"], torch.Tensor):
                torch._foreach_sub_(velocities, torch._foreach_mul(grads, group["lr"]))
            else:
                torch._foreach_add_(velocities, grads, alpha=-group["lr"])
            torch._foreach_add_(params, velocities)


def paper_learning_rate(config: TrainConfig, updates_done: int) -> float:
    """Learning rate divided by `lr_decay` after every update, floored at `min_learning_rate`."""
    return max(config.learning_rate * math.exp(-updates_done * math.log(config.lr_decay)), config.min_learning_rate)


def paper_momentum(config: TrainConfig, epoch: int) -> float:
    """Momentum rising linearly from `momentum_start` (epoch 1) to `momentum_end` (epoch `momentum_saturate_epoch`)."""
    span = max(1, config.momentum_saturate_epoch - 1)
    alpha = min(1.0, max(0.0, (epoch - 1) / span))
    return config.momentum_start + alpha * (config.momentum_end - config.momentum_start)


def _make_optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    if config.optimizer == "paper":
        return PylearnMomentumSGD(params, lr=config.learning_rate, momentum=config.momentum_start)
    return torch.optim.Adam(params, lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2))


def _set_hyper(optimizer: torch.optim.Optimizer, lr: float, momentum: float | None) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
        if momentum is not None and "momentum" in group:
            group["momentum"] = momentum


def load_checkpoint(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a training checkpoint safely (`weights_only=True`) and check its format."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises several types for corrupt files
        raise ValueError(f"checkpoint {path} is unreadable: {error}") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("format_version") != CHECKPOINT_FORMAT:
        raise ValueError(f"checkpoint {path} is not a gan-pipeline checkpoint of format {CHECKPOINT_FORMAT}")
    return checkpoint


def _optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser's state dict with tensor hyper-parameters (the CUDA-graph path's) stored as floats."""
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        for key in ("lr", "momentum"):
            if isinstance(group.get(key), torch.Tensor):
                group[key] = float(group[key])
    return state


def _save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    with atomic_output(path) as tmp:
        torch.save(payload, tmp)


def train_gan(
    config: TrainConfig,
    train_images: torch.Tensor,
    out_dir: str | os.PathLike[str],
    options: RuntimeOptions | None = None,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train (or resume, or return the finished run in) `out_dir` on `train_images` (N x C x H x W in [0, 1])."""
    from tqdm.auto import tqdm

    config.validate()
    options = options or RuntimeOptions()
    _check_graphable(config, options)
    device = resolve_device(options.device)
    out_dir = Path(out_dir)
    checkpoint_path = out_dir / CHECKPOINT_NAME
    emit = log or (lambda message: None)

    images = train_images[: config.max_train_images or None].to(device=device, dtype=torch.float32).contiguous()
    n_images = images.shape[0]
    batch = config.batch_size
    batches_per_epoch = n_images // batch
    steps_per_epoch = batches_per_epoch // config.d_steps
    if steps_per_epoch == 0:
        raise ValueError(
            f"batch_size={batch} x d_steps={config.d_steps} exceeds the {n_images} training images: no full step fits"
        )

    torch.manual_seed(config.seed)
    pair = build_models(config.model, tuple(images.shape[1:]))
    generator, discriminator = pair.generator.to(device), pair.discriminator.to(device)
    init_output_bias_from_marginals(generator, images)
    g_opt = _make_optimizer(config, generator.parameters())
    d_opt = _make_optimizer(config, discriminator.parameters())
    g_params, d_params = list(generator.parameters()), list(discriminator.parameters())
    g_run, d_run = (
        (torch.compile(generator), torch.compile(discriminator)) if options.compile else (generator, discriminator)
    )

    start_epoch, step, history, elapsed = 0, 0, [], 0.0
    if checkpoint_path.exists():
        state = load_checkpoint(checkpoint_path, device)
        _check_resumable(checkpoint_path, state, config)
        generator.load_state_dict(state["generator"])
        discriminator.load_state_dict(state["discriminator"])
        g_opt.load_state_dict(state["g_optimizer"])
        d_opt.load_state_dict(state["d_optimizer"])
        torch.set_rng_state(state["rng_cpu"].cpu())
        if device.type == "cuda" and state.get("rng_cuda") is not None:
            torch.cuda.set_rng_state(state["rng_cuda"].cpu(), device)
        start_epoch, step, history = int(state["epoch"]), int(state["step"]), list(state["history"])
        elapsed = float(state["elapsed_seconds"])
        emit(f"resuming from {checkpoint_path} at epoch {start_epoch}/{config.epochs}, step {step}")
    resumed_from = start_epoch

    use_graph = options.cuda_graph and device.type == "cuda"
    if use_graph:
        emit("replaying each training step as a CUDA graph (RuntimeOptions.cuda_graph)")
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16, cache_enabled=not use_graph)
    generator.train()
    discriminator.train()

    def apply(optimizer: torch.optim.Optimizer, params: list[nn.Parameter], grads: tuple[torch.Tensor, ...]) -> None:
        for param, grad in zip(params, grads, strict=True):
            param.grad = grad
        optimizer.step()

    def d_terms(real: torch.Tensor, fake: torch.Tensor) -> tuple[Any, torch.Tensor]:
        with autocast:
            fake_logits = d_run(fake)
            terms = discriminator_loss(config.loss, d_run(real).float(), fake_logits.float())
        loss = terms.loss
        if config.loss == "wgan_gp":
            loss = loss + config.gp_weight * gradient_penalty(d_run, real, fake.detach())
        return dataclasses.replace(terms, loss=loss), fake_logits.float()

    def simultaneous_step(real: torch.Tensor) -> torch.Tensor:
        """Both players' gradients from one batch, one noise draw and one set of dropout masks, applied together;
        returns (d_loss, g_loss, mean D(x), mean D(G(z)))."""
        noise = sample_noise(batch, pair.noise_dim, config.noise, device)
        with autocast:
            fake = g_run(noise)
        terms, fake_logits = d_terms(real, fake)
        g_loss = generator_loss(config.loss, fake_logits)
        d_grads = torch.autograd.grad(terms.loss, d_params, retain_graph=True)
        g_grads = torch.autograd.grad(g_loss, g_params)
        apply(d_opt, d_params, d_grads)
        apply(g_opt, g_params, g_grads)
        return torch.stack([terms.loss.detach(), g_loss.detach(), terms.d_real, terms.d_fake])

    graphed_step = _CudaGraphStep(simultaneous_step, images, batch, (g_opt, d_opt)) if use_graph else None

    progress = tqdm(
        total=config.epochs,
        initial=start_epoch,
        unit="epoch",
        disable=None if options.progress else True,
        desc=f"train {config.model}",
    )
    finished = True
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.perf_counter()
        momentum = paper_momentum(config, epoch + 1) if config.optimizer == "paper" else None
        permutation = torch.randperm(n_images, device=device)
        stats = torch.zeros(steps_per_epoch, 4, device=device)  # d_loss, g_loss, D(x), D(G(z))
        for local_step in range(steps_per_epoch):
            lr = paper_learning_rate(config, step) if config.optimizer == "paper" else config.learning_rate
            if graphed_step is not None:
                offset = local_step * batch
                stats[local_step] = graphed_step(permutation[offset : offset + batch], lr, momentum or 0.0)
            else:
                _set_hyper(g_opt, lr, momentum)
                _set_hyper(d_opt, lr, momentum)
                for k in range(config.d_steps):
                    offset = (local_step * config.d_steps + k) * batch
                    real = images[permutation[offset : offset + batch]]
                    if config.update == "simultaneous":
                        stats[local_step] = simultaneous_step(real)
                    else:
                        noise = sample_noise(batch, pair.noise_dim, config.noise, device)
                        with autocast:
                            fake = g_run(noise)
                        terms, _ = d_terms(real, fake.detach())
                        apply(d_opt, d_params, torch.autograd.grad(terms.loss, d_params))
                if config.update == "alternating":
                    noise = sample_noise(batch, pair.noise_dim, config.noise, device)
                    with autocast:
                        fake_logits = d_run(g_run(noise)).float()
                    g_loss = generator_loss(config.loss, fake_logits)
                    apply(g_opt, g_params, torch.autograd.grad(g_loss, g_params))
                    stats[local_step, 0] = terms.loss.detach()
                    stats[local_step, 1] = g_loss.detach()
                    stats[local_step, 2] = terms.d_real
                    stats[local_step, 3] = terms.d_fake
            step += 1
            if local_step % 100 == 99 or local_step == steps_per_epoch - 1:
                _raise_if_diverged(stats[: local_step + 1], step - local_step - 1, epoch, checkpoint_path)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - epoch_start
        elapsed += seconds
        means = stats.mean(0).tolist()
        record = {
            "epoch": epoch + 1,
            "step": step,
            "d_loss": means[0],
            "g_loss": means[1],
            "d_real": means[2],
            "d_fake": means[3],
            "images_per_second": steps_per_epoch * config.d_steps * batch / seconds,
            "seconds": seconds,
            "learning_rate": lr,
            "momentum": momentum if momentum is not None else 0.0,
        }
        history.append(record)
        emit(
            f"epoch {epoch + 1}/{config.epochs} step {step}: d_loss {means[0]:.4f} g_loss {means[1]:.4f} "
            f"D(x) {means[2]:.3f} D(G(z)) {means[3]:.3f} {record['images_per_second']:.0f} img/s on {device}"
        )
        progress.update(1)
        progress.set_postfix(
            d_loss=f"{means[0]:.3f}", g_loss=f"{means[1]:.3f}", img_s=f"{record['images_per_second']:.0f}"
        )
        last = epoch + 1 == config.epochs
        stop = (options.stop_after_epoch is not None and epoch + 1 >= options.stop_after_epoch) or (
            options.stop_after_time is not None and time.time() >= options.stop_after_time
        )
        if last or stop or (epoch + 1) % options.checkpoint_every == 0:
            _save_checkpoint(
                checkpoint_path,
                {
                    "format_version": CHECKPOINT_FORMAT,
                    "config": config.to_dict(),
                    "epoch": epoch + 1,
                    "step": step,
                    "image_shape": list(images.shape[1:]),
                    "noise_dim": pair.noise_dim,
                    "generator": generator.state_dict(),
                    "discriminator": discriminator.state_dict(),
                    "g_optimizer": _optimizer_state(g_opt),
                    "d_optimizer": _optimizer_state(d_opt),
                    "rng_cpu": torch.get_rng_state(),
                    "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "history": history,
                    "elapsed_seconds": elapsed,
                    "device": str(device),
                },
            )
        if options.on_epoch_end is not None:
            generator.eval()
            options.on_epoch_end(epoch + 1, generator)
            generator.train()
        if stop and not last:
            finished = False
            break
    progress.close()
    total_images = sum(r["images_per_second"] * r["seconds"] for r in history[resumed_from:])
    run_seconds = sum(r["seconds"] for r in history[resumed_from:])
    return TrainResult(
        checkpoint_path=checkpoint_path,
        epochs=len(history),
        steps=step,
        wall_seconds=elapsed,
        images_per_second=total_images / run_seconds if run_seconds else 0.0,
        device=str(device),
        history=history,
        resumed_from_epoch=resumed_from,
        finished=finished,
    )


def cuda_graph_supported(config: TrainConfig) -> bool:
    """Whether `RuntimeOptions(cuda_graph=True)` can run `config`: the simultaneous update with the paper's SGD."""
    return config.update == "simultaneous" and config.optimizer == "paper"


def _check_graphable(config: TrainConfig, options: RuntimeOptions) -> None:
    """`cuda_graph` captures the simultaneous paper-SGD step; say which setting stands in the way of anything else."""
    if not options.cuda_graph:
        return
    if not cuda_graph_supported(config):
        raise ValueError(
            f"cuda_graph=True replays the simultaneous paper-SGD step; got update={config.update!r}, "
            f"optimizer={config.optimizer!r}: use update='simultaneous' and optimizer='paper', or cuda_graph=False"
        )
    if options.compile:
        raise ValueError("cuda_graph=True and compile=True exclude each other; choose one of them")


class _CudaGraphStep:
    """Runs `step_fn(real)` eagerly on a side stream for the first `warmup` batches (which are real training steps,
    as CUDA-graph capture needs), then captures it once and replays it. The batch, learning rate and momentum are
    static device tensors refilled before each call; the optimisers read the latter two on the device."""

    def __init__(
        self,
        step_fn: Callable[[torch.Tensor], torch.Tensor],
        images: torch.Tensor,
        batch: int,
        optimizers: tuple[torch.optim.Optimizer, ...],
        warmup: int = 3,
    ) -> None:
        self.step_fn = step_fn
        self.images = images
        self.real = torch.empty(batch, *images.shape[1:], device=images.device, dtype=images.dtype)
        self.lr = torch.zeros((), device=images.device)
        self.momentum = torch.zeros((), device=images.device)
        for optimizer in optimizers:
            _set_hyper(optimizer, self.lr, self.momentum)  # type: ignore[arg-type]
        self.warmup_left = warmup
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: torch.Tensor | None = None

    def __call__(self, batch_indices: torch.Tensor, lr: float, momentum: float) -> torch.Tensor:
        torch.index_select(self.images, 0, batch_indices, out=self.real)
        self.lr.fill_(lr)
        self.momentum.fill_(momentum)
        if self.graph is not None:
            self.graph.replay()
            return self.out  # type: ignore[return-value]
        if self.warmup_left > 0:
            self.warmup_left -= 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                out = self.step_fn(self.real)
            torch.cuda.current_stream().wait_stream(side)
            return out
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.out = self.step_fn(self.real)
        self.graph.replay()
        return self.out


def _check_resumable(checkpoint_path: Path, state: dict[str, Any], config: TrainConfig) -> None:
    """A checkpoint resumes under the same settings; `epochs` alone may be raised to extend a run, because no
    schedule depends on the total (momentum saturates at a fixed epoch, the learning rate decays per update)."""
    saved = {key: value for key, value in state["config"].items() if key != "epochs"}
    wanted = {key: value for key, value in config.to_dict().items() if key != "epochs"}
    if saved != wanted:
        changed = sorted(key for key in saved.keys() | wanted.keys() if saved.get(key) != wanted.get(key))
        raise ValueError(
            f"checkpoint {checkpoint_path} was trained with other settings (differing: {', '.join(changed)}; "
            f"saved: {state['config']}); use another output directory for this configuration"
        )
    if int(state["epoch"]) > config.epochs:
        raise ValueError(
            f"checkpoint {checkpoint_path} is already at epoch {state['epoch']}, past the requested epochs="
            f"{config.epochs}; ask for at least {state['epoch']} epochs or use another output directory"
        )


def _raise_if_diverged(stats: torch.Tensor, first_step: int, epoch: int, checkpoint_path: Path) -> None:
    finite_rows = torch.isfinite(stats).all(dim=1)
    if bool(finite_rows.all()):
        return
    bad = int((~finite_rows).nonzero()[0, 0])
    kept = f"the last good checkpoint {checkpoint_path} is kept" if checkpoint_path.exists() else "no checkpoint yet"
    raise TrainingDiverged(
        f"non-finite loss at step {first_step + bad + 1} (epoch {epoch + 1}): d_loss={stats[bad, 0].item()}, "
        f"g_loss={stats[bad, 1].item()}; lower the learning rate or check the data for NaN; {kept}"
    )


def default_train_config(model: str, loss: str = "non_saturating", **overrides: Any) -> TrainConfig:
    """The recommended settings for a model and loss: the paper's for `paper_mlp*`, DCGAN's Adam recipe for `dcgan`,
    and the WGAN-GP recipe for `wgan_gp`; `overrides` (None values ignored) replace any of them. Validated."""
    settings: dict[str, Any] = {}
    if model == "dcgan" or loss == "wgan_gp":
        settings.update(optimizer="adam", update="alternating", learning_rate=2e-4, adam_beta1=0.5, adam_beta2=0.999)
    if loss == "wgan_gp":
        settings.update(learning_rate=1e-4, adam_beta2=0.9, d_steps=5)
    settings.update({key: value for key, value in overrides.items() if value is not None})
    config = TrainConfig(model=model, loss=loss, **settings)
    config.validate()
    return config


def checkpoint_weights_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 over the generator and discriminator weights of a checkpoint (not timings or file bytes)."""
    import hashlib

    state = load_checkpoint(path)
    digest = hashlib.sha256()
    for part in ("generator", "discriminator"):
        for key, tensor in sorted(state[part].items()):
            digest.update(f"{part}.{key}|{tensor.dtype}|{tuple(tensor.shape)}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def is_finished(checkpoint_path: str | os.PathLike[str], config: TrainConfig) -> bool:
    """True when `checkpoint_path` holds a completed run of exactly `config`."""
    if not Path(checkpoint_path).is_file():
        return False
    try:
        state = load_checkpoint(checkpoint_path)
    except ValueError:
        return False
    return state["config"] == config.to_dict() and int(state["epoch"]) >= config.epochs
