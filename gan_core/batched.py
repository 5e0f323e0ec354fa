"""Several seeds of one configuration trained as one batched model.

S seeds of an MLP pair (`paper_mlp`, `paper_mlp_large`) with the simultaneous update and the paper's SGD run as one
model whose every weight has a leading seed dimension: each linear layer is one batched matrix product
(`torch.baddbmm`) over the seeds on CUDA (one product per seed on the CPU, see `_linear`), and the optimiser and the
generator's average act element-wise on the stacked tensors. Each seed draws its epoch permutation, noise and dropout
masks from a random generator of its own, in the order and with the calls a single-seed run makes on the global one,
and keeps its own run directory, lock and checkpoint in the single-seed format: resume, sampling and every downstream
step see S ordinary runs, and a seed trained in a batch can be continued alone (and the other way round).

Agreement with a seed trained alone: on the CPU the draws are the same numbers, every product is computed per seed
with the call a run alone makes (`_linear`), and everything else is element-wise or a per-seed reduction of the same
length, so the weights agree bit for bit on any CPU by construction, not because two kernels happen to sum alike
(`tests/test_batched_seeds.py` checks it after two epochs). On CUDA, dropout in a single-seed run is the fused
kernel, which draws from the generator in another pattern: there the batched seeds are other draws from the same
distributions, not the same run.

A seed whose loss turns NaN or infinite stops alone: its last good checkpoint is kept, the others train on, and its
`TrainingDiverged` names it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gan_core.checkpoint import Checkpoint, TrainingInterrupted, TrainingState
from gan_core.config import RuntimeOptions, TrainConfig
from gan_core.devices import resolve_device
from gan_core.layout import checkpoint_file
from gan_core.locks import exclusive
from gan_core.losses import get_loss
from gan_core.models import Maxout, MaxoutDiscriminator, MLPGenerator, get_model_spec, sample_noise
from gan_core.train import EpochTracker, TrainingDiverged, TrainResult, first_non_finite
from gan_core.updates import (
    STEP_STATISTICS,
    Players,
    PylearnMomentumSGD,
    apply_gradients,
    learning_rate,
    named_statistics,
    paper_momentum,
    set_hyperparameters,
    step_statistics,
)


def why_not_batched(config: TrainConfig) -> str | None:
    """Why seeds of `config` cannot be trained as one batched model, or None when they can."""
    spec = get_model_spec(config.model)
    reasons = [
        (
            not spec.batchable,
            f"model {config.model!r} is not a plain MLP pair (its ModelSpec does not declare batchable=True)",
        ),
        (config.update != "simultaneous", f"update={config.update!r} (batching covers 'simultaneous')"),
        (config.optimizer != "paper", f"optimizer={config.optimizer!r} (batching covers the paper's SGD)"),
        (config.n_generators > 1 or config.n_discriminators > 1, "several generators or discriminators"),
        (config.bf16, "bf16 autocast"),
        (get_loss(config.loss).penalty is not None, f"loss {config.loss!r} has a penalty term"),
    ]
    found = [reason for applies, reason in reasons if applies]
    return "; ".join(found) or None


class StackedWeights:
    """The parameters of S modules of one architecture stacked along a new first (seed) dimension, as leaf tensors
    an optimiser updates, and the way back into each seed's module."""

    def __init__(self, modules: Sequence[nn.Module]) -> None:
        self.modules = list(modules)
        names = [name for name, _ in self.modules[0].named_parameters()]
        by_module = [dict(module.named_parameters()) for module in self.modules]
        self.tensors = {
            name: torch.stack([params[name].detach() for params in by_module]).requires_grad_(True) for name in names
        }

    def leaves(self) -> list[torch.Tensor]:
        return list(self.tensors.values())

    @torch.no_grad()
    def write_back(self, seed_index: int) -> None:
        """Copy seed `seed_index`'s slice into its own module (before that seed's checkpoint is written)."""
        for name, param in self.modules[seed_index].named_parameters():
            param.copy_(self.tensors[name][seed_index])


def _linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """S x B x in -> S x B x out with each seed's weight: nn.Linear batched over the seeds.

    On the CPU each seed's product is the very call `nn.Linear` makes for a run alone (`addmm` of a B x in block by a
    transposed out x in block, the same shapes and strides), so a batched seed matches that run bit for bit whatever
    BLAS kernel the processor selects: one `baddbmm` over the seeds is another kernel on some CPUs (AVX-512 Xeons
    sum in another order), and batching buys nothing on a few CPU cores anyway (bench/results/seeds_cpu.json). On CUDA
    the seeds are one `baddbmm`, where batching is the point and bit-identity is not claimed (see the module's doc).
    """
    if x.device.type == "cpu":
        return torch.stack([torch.addmm(b, rows, w.t()) for rows, w, b in zip(x, weight, bias, strict=True)])
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


def generator_forward(template: MLPGenerator, weights: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
    """`MLPGenerator.forward` for S seeds at once: z is S x B x noise_dim, the images S x B x C x H x W."""
    h = z
    for index, layer in enumerate(template.hidden):
        if isinstance(layer, nn.Linear):
            h = _linear(h, weights[f"hidden.{index}.weight"], weights[f"hidden.{index}.bias"])
        elif isinstance(layer, nn.ReLU):
            h = F.relu(h)
    out = torch.sigmoid(_linear(h, weights["output.weight"], weights["output.bias"]))
    return out.view(z.shape[0], z.shape[1], *template.image_shape)


def discriminator_forward(
    template: MaxoutDiscriminator, weights: dict[str, torch.Tensor], x: torch.Tensor, masks: list[torch.Tensor]
) -> torch.Tensor:
    """`MaxoutDiscriminator.forward` for S seeds at once (x: S x B x C x H x W; logits S x B), the dropout layers
    multiplying by the given masks (already divided by the keep probability, as `F.dropout` does)."""
    h = x.flatten(2)
    masks_left = iter(masks)
    for index, layer in enumerate(template.net):
        if isinstance(layer, nn.Dropout):
            h = h * next(masks_left)
        elif isinstance(layer, Maxout):
            w, b = weights[f"net.{index}.linear.weight"], weights[f"net.{index}.linear.bias"]
            h = _linear(h, w, b).view(h.shape[0], h.shape[1], layer.units, layer.pieces).amax(dim=3)
        else:
            h = _linear(h, weights[f"net.{index}.weight"], weights[f"net.{index}.bias"])
    return h.squeeze(2)


def dropout_masks(
    template: MaxoutDiscriminator, batch: int, device: torch.device, rng: torch.Generator
) -> list[torch.Tensor]:
    """One pass's dropout masks for one seed, drawn as `F.dropout` draws them on the CPU: bernoulli(1 - p) in the
    layers' order, then divided by 1 - p."""
    masks, width = [], None
    for layer in template.net:
        if isinstance(layer, nn.Dropout):
            width = width if width is not None else template.net[1].linear.in_features
            keep = 1 - layer.p
            masks.append(torch.empty(batch, width, device=device).bernoulli_(keep, generator=rng).div_(keep))
        elif isinstance(layer, Maxout):
            width = layer.units
    return masks


@dataclass
class SeedRun:
    """One seed of the batch: its config, players (weights are written back into them before each save), checkpoint,
    state, random generator, epoch tracker, and the error that stopped it (if one did)."""

    config: TrainConfig
    players: Players
    checkpoint: Checkpoint
    state: TrainingState
    rng: torch.Generator
    tracker: EpochTracker
    error: TrainingDiverged | None = None

    def resume_point(self) -> tuple[int, int, int | None]:
        progress = self.state.epoch_progress
        return self.state.epoch, self.state.step, None if progress is None else progress[2]


def train_seeds(
    configs: Sequence[TrainConfig],
    train_images: torch.Tensor,
    out_dirs: Sequence[str | os.PathLike[str]],
    options: RuntimeOptions | None = None,
    log: Callable[[str], None] | None = None,
) -> list[TrainResult | TrainingDiverged]:
    """Train (or resume, or return the finished runs of) the seeds `configs` (equal but for `seed`) into `out_dirs`
    as one batched model; seeds resuming from different points train as one batch per point. Each entry of the
    result is that seed's TrainResult, or the TrainingDiverged that stopped it (the others trained on)."""
    options = options or RuntimeOptions()
    if len({dataclasses.replace(c, seed=0) for c in configs}) != 1 or len(configs) != len(out_dirs):
        raise ValueError("train_seeds takes configs that differ only in `seed`, one output directory each")
    if (reason := why_not_batched(configs[0])) is not None:
        raise ValueError(f"these seeds cannot be trained as one batched model: {reason}")
    if options.on_epoch_end is not None or options.distributed is not None or options.compile:
        raise ValueError("train_seeds supports neither on_epoch_end, torchrun nor torch.compile")
    device = resolve_device(options.device)
    config = configs[0]
    for c in configs:
        c.validate()
    images = train_images[: config.max_train_images or None].to(device=device, dtype=torch.float32).contiguous()
    steps_per_epoch = images.shape[0] // config.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size={config.batch_size} exceeds the {images.shape[0]} training images")
    with contextlib.ExitStack() as locks:
        for out_dir in out_dirs:  # one trainer per run directory, as train_gan
            locks.enter_context(exclusive(checkpoint_file(out_dir), options.holder, log))
        seeds = [
            _restore_seed(c, images, out_dir, options, device, log)
            for c, out_dir in zip(configs, out_dirs, strict=True)
        ]
        groups: dict[tuple[int, int, int | None], list[int]] = defaultdict(list)
        for index, seed in enumerate(seeds):
            if seed.state.epoch < seed.config.epochs:
                groups[seed.resume_point()].append(index)
        for members in groups.values():
            _train_batch([seeds[i] for i in members], images, steps_per_epoch, options, device)
    finished = options.stop_after_epoch is None and options.stop_after_time is None
    return [
        seed.error
        or seed.tracker.result(seed.checkpoint.path, seed.state, finished=finished or seed.state.epoch == c.epochs)
        for seed, c in zip(seeds, configs, strict=True)
    ]


def _restore_seed(
    config: TrainConfig,
    images: torch.Tensor,
    out_dir: str | os.PathLike[str],
    options: RuntimeOptions,
    device: torch.device,
    log: Callable[[str], None] | None,
) -> SeedRun:
    """Build and restore one seed exactly as `train_gan` does, then hand its random state to a generator of its own."""
    torch.manual_seed(config.seed)
    players = Players.build(config, images)
    if not isinstance(players.generator, MLPGenerator) or not isinstance(players.discriminator, MaxoutDiscriminator):
        raise ValueError(
            f"model {config.model!r} declares batchable=True (ModelSpec) but is not an MLPGenerator / "
            "MaxoutDiscriminator pair: set batchable=False in its registry entry"
        )
    checkpoint = Checkpoint(Path(out_dir), config, device, options.checkpoint_seconds, log)
    state = checkpoint.restore(players)
    rng = torch.Generator(device)
    rng.set_state(torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state())
    per_epoch = (images.shape[0] // config.batch_size) * config.batch_size
    tracker = EpochTracker(config, state, per_epoch, device, options.progress, log)
    return SeedRun(config, players, checkpoint, state, rng, tracker)


def _train_batch(
    seeds: list[SeedRun], images: torch.Tensor, steps_per_epoch: int, options: RuntimeOptions, device: torch.device
) -> None:
    """The training loop of `train_gan._train` for seeds standing at the same point, one batched step for all."""
    config, batch = seeds[0].config, seeds[0].config.batch_size
    g_template, d_template = seeds[0].players.generator, seeds[0].players.discriminator
    generators = StackedWeights([s.players.generator for s in seeds])
    discriminators = StackedWeights([s.players.discriminator for s in seeds])
    averages = [s.players.average for s in seeds]
    average = StackedWeights(averages) if all(a is not None for a in averages) else None
    g_opt = PylearnMomentumSGD(generators.leaves(), lr=config.learning_rate, momentum=config.momentum_start)
    d_opt = PylearnMomentumSGD(discriminators.leaves(), lr=config.learning_rate, momentum=config.momentum_start)
    _stack_velocities(g_opt, generators, [s.players.g_opt for s in seeds])
    _stack_velocities(d_opt, discriminators, [s.players.d_opt for s in seeds])
    loss = get_loss(config.loss)
    noise_dim = seeds[0].players.pair.noise_dim

    def save(index: int, progress: tuple[torch.Tensor, torch.Tensor, int] | None = None) -> None:
        seed = seeds[index]
        generators.write_back(index)
        discriminators.write_back(index)
        if average is not None:
            average.write_back(index)
        _unstack_velocities(g_opt, generators, seed.players.g_opt, index)
        _unstack_velocities(d_opt, discriminators, seed.players.d_opt, index)
        seed.checkpoint.save(seed.players, seed.state, images.shape[1:], epoch_progress=progress, rng=seed.rng)

    for epoch in range(seeds[0].state.epoch, config.epochs):
        for seed in seeds:
            seed.tracker.start_epoch()
        momentum = paper_momentum(config, epoch + 1)
        taken = [seed.state.take_epoch_progress() for seed in seeds]
        permutations = [
            t[0] if t else torch.randperm(images.shape[0], device=device, generator=s.rng)
            for t, s in zip(taken, seeds, strict=True)
        ]
        stats = torch.stack(
            [t[1] if t else torch.zeros(steps_per_epoch, len(STEP_STATISTICS), device=device) for t in taken], dim=1
        )
        first = taken[0][2] if taken[0] else 0
        stop_now = False
        for local_step in range(first, steps_per_epoch):
            lr = learning_rate(config, seeds[0].state.step, config.epochs * steps_per_epoch)
            set_hyperparameters(g_opt, lr, momentum)
            set_hyperparameters(d_opt, lr, momentum)
            rows = torch.stack([p[local_step * batch : (local_step + 1) * batch] for p in permutations])
            real = images[rows]  # S x B x C x H x W
            noise, fake_masks, real_masks = [], [], []
            for seed in seeds:  # each seed's draws in a single-seed run's order: noise, D(fake)'s masks, D(real)'s
                noise.append(sample_noise(batch, noise_dim, config.noise, device, generator=seed.rng))
                fake_masks.append(dropout_masks(d_template, batch, device, seed.rng))
                real_masks.append(dropout_masks(d_template, batch, device, seed.rng))
            fake = generator_forward(g_template, generators.tensors, torch.stack(noise))
            stacked_fake_masks = [torch.stack(m) for m in zip(*fake_masks, strict=True)]
            stacked_real_masks = [torch.stack(m) for m in zip(*real_masks, strict=True)]
            fake_logits = discriminator_forward(d_template, discriminators.tensors, fake, stacked_fake_masks)
            real_logits = discriminator_forward(d_template, discriminators.tensors, real, stacked_real_masks)
            terms = [loss.discriminator_terms(r, f) for r, f in zip(real_logits, fake_logits, strict=True)]
            g_losses = [loss.generator_loss(f) for f in fake_logits]
            d_grads = torch.autograd.grad(sum(t.loss for t in terms), discriminators.leaves(), retain_graph=True)
            g_grads = torch.autograd.grad(sum(g_losses), generators.leaves())
            apply_gradients(d_opt, discriminators.leaves(), d_grads)
            apply_gradients(g_opt, generators.leaves(), g_grads)
            if average is not None:
                with torch.no_grad():
                    torch._foreach_lerp_(average.leaves(), generators.leaves(), 1.0 - config.ema_decay)
            stats[local_step] = torch.stack([step_statistics(t, g) for t, g in zip(terms, g_losses, strict=True)])
            for seed in seeds:
                seed.state.step += 1
            if local_step % 100 == 99 or local_step == steps_per_epoch - 1:
                _stop_diverged(seeds, stats[: local_step + 1], seeds[0].state.step - local_step - 1, epoch)
            stop_now = options.interrupted()
            if local_step + 1 < steps_per_epoch and (stop_now or seeds[0].checkpoint.due()):
                _stop_diverged(seeds, stats[: local_step + 1], seeds[0].state.step - local_step - 1, epoch)
                for index, seed in enumerate(seeds):
                    if seed.error is None:
                        save(index, (permutations[index], stats[:, index].clone(), local_step + 1))
                if stop_now:
                    raise _interrupted(seeds)
        last, stop = epoch + 1 == config.epochs, options.should_stop(epoch + 1) or stop_now
        due = last or stop or (epoch + 1) % options.checkpoint_every == 0 or seeds[0].checkpoint.due()
        for index, seed in enumerate(seeds):
            if seed.error is not None:
                continue
            seed.tracker.end_epoch(epoch + 1, seed.state, stats[:, index], lr, momentum)
            if due:
                save(index)
        if stop_now:
            raise _interrupted(seeds)
        if stop or all(seed.error is not None for seed in seeds):
            return


def _interrupted(seeds: list[SeedRun]) -> TrainingInterrupted:
    where = ", ".join(f"seed {s.config.seed} at step {s.state.step}" for s in seeds if s.error is None)
    return TrainingInterrupted(f"training stopped on request ({where}); checkpoints written, the next run resumes")


def _stop_diverged(seeds: list[SeedRun], stats: torch.Tensor, first_step: int, epoch: int) -> None:
    """Mark each seed whose statistics hold a non-finite value as stopped, with its own error (its last good
    checkpoint is kept: a stopped seed is not saved again)."""
    for index, seed in enumerate(seeds):
        bad = None if seed.error is not None else first_non_finite(stats[:, index])
        if bad is None:
            continue
        kept = (
            f"its last good checkpoint {seed.checkpoint.path} is kept"
            if seed.checkpoint.path.exists()
            else ("it has no checkpoint yet")
        )
        step = named_statistics(stats[bad, index])
        seed.error = TrainingDiverged(
            f"seed {seed.config.seed}: non-finite loss at step {first_step + bad + 1} (epoch {epoch + 1}): "
            f"d_loss={step['d_loss']}, g_loss={step['g_loss']}; the other seeds trained on; {kept}"
        )


def _stack_velocities(
    stacked: PylearnMomentumSGD, weights: StackedWeights, per_seed: Sequence[torch.optim.Optimizer]
) -> None:
    """Give the batched optimiser the seeds' momentum velocities (none yet before the first step: zeros)."""
    for name, leaf in weights.tensors.items():
        velocities = []
        for module, optimizer in zip(weights.modules, per_seed, strict=True):
            state = optimizer.state.get(dict(module.named_parameters())[name], {})
            velocities.append(state.get("velocity"))
        if any(v is not None for v in velocities):
            stacked.state[leaf]["velocity"] = torch.stack(
                [v if v is not None else torch.zeros_like(leaf[0]) for v in velocities]
            )


def _unstack_velocities(
    stacked: PylearnMomentumSGD, weights: StackedWeights, optimizer: torch.optim.Optimizer, index: int
) -> None:
    params = dict(weights.modules[index].named_parameters())
    for name, leaf in weights.tensors.items():
        if "velocity" in stacked.state[leaf]:
            optimizer.state[params[name]]["velocity"] = stacked.state[leaf]["velocity"][index].clone()
