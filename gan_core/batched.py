"""Seeds of one configuration (or a sweep's points differing only in their learning-rate and momentum schedules)
stacked as one batched model: a `Step` of the training loop (gan_core/train.py).

Read `StackedSeeds.step_on` top to bottom: every weight has a leading slice dimension (S x in x out), so each layer of
every slice is one batched product (`baddbmm`); one draw gives every slice its noise and dropout masks for the step;
the loss's terms (the registered `Loss`, vmapped over slices) are vectorised; the gradient of the summed per-slice
losses is each slice's own, and the paper's SGD acts on the stacked tensors with one learning rate and momentum per
slice (`SLICE_SETTINGS`). On CUDA the whole step (gather, forward, backward, update, average, statistics) is captured
once as a CUDA graph and replayed (`CudaGraphStep`); on the CPU the same code runs eagerly.

Random numbers come from a counter-based generator (`CounterRandom`): slice s's noise, masks and epoch permutations
are a hash of (its seed, the step, the element), so a slice draws the same numbers whatever else is stacked beside it,
a resumed run draws what the uninterrupted one would have, and two sweep points with one seed see the same noise
(common random numbers, a paired comparison). They are other draws than torch's generator gives a run alone, so a
stacked seed is another run of the same distribution than that seed trained alone; the loop therefore stacks seeds
only on CUDA by default (`RuntimeOptions.stack_seeds`). Each seed keeps its run directory, lock and checkpoint in the
format of a run alone (its weights are written back into its own players before each save).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import vmap

from gan_core.config import RuntimeOptions, TrainConfig
from gan_core.losses import DiscriminatorTerms, get_loss
from gan_core.models import Maxout, MaxoutDiscriminator, MLPGenerator, get_model_spec
from gan_core.runs import Run, Step
from gan_core.updates import CudaGraphStep


def why_not_batched(config: TrainConfig) -> str | None:
    """Why seeds of `config` cannot be stacked as one batched model, or None when they can."""
    spec = get_model_spec(config.model)
    reasons = [
        (
            not spec.batchable,
            f"model {config.model!r} is not a plain MLP pair (its ModelSpec does not declare batchable=True)",
        ),
        (config.update != "simultaneous", f"update={config.update!r} (batching covers 'simultaneous')"),
        (config.optimizer != "paper", f"optimizer={config.optimizer!r} (batching covers the paper's SGD)"),
        (config.n_generators > 1 or config.n_discriminators > 1, "several generators or discriminators"),
        (get_loss(config.loss).penalty is not None, f"loss {config.loss!r} has a penalty term"),
    ]
    found = [reason for applies, reason in reasons if applies]
    return "; ".join(found) or None


# Settings each slice of a stacked model may have its own: the seed, and the schedule of the paper's SGD (its learning
# rate and momentum at each step, which the loop computes per run). A sweep's points differing only in these stack.
SLICE_SETTINGS = (
    "seed",
    "learning_rate",
    "momentum_start",
    "momentum_end",
    "momentum_saturate_epoch",
    "lr_decay",
    "min_learning_rate",
    "lr_anneal_fraction",
)


def stacks_seeds(configs: Sequence[TrainConfig], options: RuntimeOptions, device: torch.device) -> bool:
    """The one policy: whether the runs of `configs` train stacked (`StackedSeeds`) rather than in turn. Unset
    `options.stack_seeds`: two or more runs on CUDA wherever it applies (seeds of one configuration, or sweep points
    differing only in SLICE_SETTINGS); True: required, even for one run (an error names what prevents it); False:
    never."""
    reasons = [why_not_batched(configs[0])]
    shared = {name: getattr(configs[0], name) for name in SLICE_SETTINGS}
    if len({dataclasses.replace(config, **shared) for config in configs}) > 1:
        reasons.append(
            "the runs differ in more than their seed and learning-rate and momentum schedules "
            f"({', '.join(SLICE_SETTINGS)}: what stacked runs may hold each their own)"
        )
    if options.compile:
        reasons.append("torch.compile (compile=True)")
    reason = "; ".join(filter(None, reasons))
    if options.stack_seeds is True and reason:
        raise ValueError(
            f"stack_seeds=True: these seeds cannot be trained as one batched model: {reason}; "
            "leave stack_seeds unset to train them in turn"
        )
    if options.stack_seeds is True:
        return True
    return options.stack_seeds is None and device.type == "cuda" and len(configs) > 1 and not reason


_MASK32 = 0xFFFFFFFF
# the draws of one step, by purpose (a stream each); permutations use their own stream, counted by epoch
STEP_STREAM, PERMUTATION_STREAM = 1, 2


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (two multiply-xorshift rounds, constant 0x45d9f3b) on int64 tensors holding values in
    [0, 2**32): every product stays below 2**59, so it is exact integer arithmetic on every device."""
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    x = ((x >> 16) ^ x) * 0x45D9F3B & _MASK32
    return (x >> 16) ^ x


def _slice_key(seed: int) -> int:
    """A 32-bit key for `seed` (splitmix64's finaliser, in Python's exact integers)."""
    z = (seed + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return (z ^ (z >> 31)) & _MASK32


class CounterRandom:
    """Random bits for S slices at once, each slice's a function of its seed, a stream, a counter and the element's
    index alone: the same on every device (integer arithmetic), in any stack, after any resume. 24 bits of each hash
    make a uniform float32 in [0, 1) (torch.rand's resolution) or a dropout decision (`keeps`)."""

    def __init__(self, seeds: Sequence[int], device: torch.device) -> None:
        self.keys = torch.tensor([_slice_key(seed) for seed in seeds], dtype=torch.int64, device=device).view(-1, 1)
        self.device = device
        self._indices: dict[int, torch.Tensor] = {}

    def bits(self, stream: int, counter: torch.Tensor | int, count: int) -> torch.Tensor:
        """S x `count` 32-bit hashes (int64) for `counter` (a device tensor, so a CUDA graph replays new values)."""
        if count not in self._indices:  # the elements' own hashes, once: other steps' keys then map them apart
            self._indices[count] = _mix32(torch.arange(count, dtype=torch.int64, device=self.device))
        counter = torch.as_tensor(counter, dtype=torch.int64, device=self.device)
        base = _mix32(self.keys ^ _mix32((counter * 4 + stream) & _MASK32))  # S x 1: this step's key of each slice
        return _mix32(self._indices[count] ^ base)

    def uniform(self, stream: int, counter: torch.Tensor | int, count: int) -> torch.Tensor:
        """S x `count` float32 uniforms in [0, 1)."""
        return uniform_from_bits(self.bits(stream, counter, count))

    def permutations(self, epoch: int, count: int) -> torch.Tensor:
        """S x `count` permutations of range(count), slice s's drawn for (its seed, `epoch`)."""
        return torch.argsort(self.bits(PERMUTATION_STREAM, epoch, count), dim=1, stable=True)


def uniform_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """Float32 uniforms in [0, 1) from 32-bit hashes: their top 24 bits times 2**-24."""
    return (bits >> 8).to(torch.float32).mul_(2.0**-24)


def keeps(bits: torch.Tensor, keep: float) -> torch.Tensor:
    """Dropout's decisions from 32-bit hashes: True where the uniform of `uniform_from_bits` is below `keep` (the
    same comparison in integers, without making the floats)."""
    return (bits >> 8) < _keep_threshold(keep)


@functools.cache
def _keep_threshold(keep: float) -> int:
    """The 24-bit integers below it are the uniforms below `keep` as float32 has it."""
    return math.ceil(float(torch.tensor(keep, dtype=torch.float32)) * 2**24)


def noise_from_uniform(uniform: torch.Tensor, kind: str) -> torch.Tensor:
    """Unit-variance noise from uniforms (gan_core.models.sample_noise's distributions): `uniform` on
    [-sqrt(3), sqrt(3)], `gaussian` by Box-Muller from two halves."""
    if kind == "uniform":
        return uniform.mul(2 * math.sqrt(3.0)).sub_(math.sqrt(3.0))
    first, second = uniform.chunk(2, dim=-1)
    radius = torch.sqrt(-2.0 * torch.log1p(-first))  # 1 - u in (0, 1]
    return torch.cat([radius * torch.cos(2 * math.pi * second), radius * torch.sin(2 * math.pi * second)], dim=-1)


@dataclasses.dataclass(frozen=True)
class _Layer:
    """One layer of a stacked MLP: `kind` in linear / relu / sigmoid / maxout / dropout, the weights' name prefix,
    maxout's pieces, dropout's keep probability."""

    kind: str
    name: str = ""
    pieces: int = 0
    keep: float = 1.0


def _layers_of(module: nn.Module) -> list[_Layer]:
    """The layers of a batchable model's generator or discriminator, in order."""
    if isinstance(module, MLPGenerator) and not module.num_classes:
        named = [(f"hidden.{i}", m) for i, m in enumerate(module.hidden)] + [("output", module.output)]
        return [*(_layer(name, m) for name, m in named), _Layer("sigmoid")]
    if isinstance(module, MaxoutDiscriminator) and not module.num_classes:
        return [_layer(f"net.{i}", m) for i, m in enumerate(module.net)]
    raise ValueError(f"{type(module).__name__} cannot be stacked: gan_core.batched knows the unconditional MLP pair")


def _layer(name: str, module: nn.Module) -> _Layer:
    if isinstance(module, nn.Linear):
        return _Layer("linear", name)
    if isinstance(module, Maxout):
        return _Layer("maxout", f"{name}.linear", pieces=module.pieces)
    if isinstance(module, nn.Dropout):
        return _Layer("dropout", keep=1.0 - module.p)
    if isinstance(module, nn.ReLU):
        return _Layer("relu")
    raise ValueError(f"layer {name} ({type(module).__name__}) cannot be stacked")


def _run_stacked(layers: list[_Layer], weights: dict[str, torch.Tensor], x: torch.Tensor, draws: list) -> torch.Tensor:
    """S x B x features through `layers` with S slices of `weights` (each weight stored transposed, S x in x out, so
    that its gradient is contiguous like it); each dropout takes the next S x B*width random bits from `draws` (and
    keeps a unit where `keeps` says, scaled by 1 / keep)."""
    for layer in layers:
        if layer.kind in ("linear", "maxout"):
            weight, bias = weights[f"{layer.name}.weight"], weights[f"{layer.name}.bias"]
            x = torch.baddbmm(bias.unsqueeze(1), x, weight)
            if layer.kind == "maxout":  # max's backward routes each gradient by index, cheaper than amax's ties
                x = x.view(*x.shape[:2], -1, layer.pieces).max(dim=3).values
        elif layer.kind == "relu":
            x = torch.relu(x)
        elif layer.kind == "sigmoid":
            x = torch.sigmoid(x)
        else:
            mask = keeps(draws.pop(0), layer.keep).view_as(x).to(x.dtype).mul_(1.0 / layer.keep)
            x = x * mask
    return x


def _dropout_widths(layers: list[_Layer], weights: dict[str, torch.Tensor], width: int) -> list[int]:
    """The input width of each dropout in `layers` (S-stacked `weights`; `width`: the network's input)."""
    widths = []
    for layer in layers:
        if layer.kind == "dropout":
            widths.append(width)
        elif layer.kind in ("linear", "maxout"):
            width = weights[f"{layer.name}.weight"].shape[2] // max(layer.pieces, 1)
    return widths


def _terms(terms: DiscriminatorTerms) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return terms.loss, terms.d_real, terms.d_fake


class StackedSeeds(Step):
    """The simultaneous paper-SGD step of S slices (seeds, or sweep points) as one batched model."""

    def __init__(self, runs: list[Run], images: torch.Tensor, use_cuda_graph: bool = False) -> None:
        config, players = runs[0].config, [run.players for run in runs]
        self.runs, self.images, self.config = runs, images, config
        device = images.device
        g_template, d_template = players[0].generator, players[0].discriminator
        self.g_layers, self.d_layers = _layers_of(g_template), _layers_of(d_template)
        self.g_weights = _stack([dict(p.generator.named_parameters()) for p in players], trained=True)
        self.d_weights = _stack([dict(p.discriminator.named_parameters()) for p in players], trained=True)
        self.average = None
        if config.ema_decay > 0:
            self.average = _stack([dict(p.average.named_parameters()) for p in players])
        self.g_velocity = _stack([_velocities(p.generator, p.g_opt) for p in players])
        self.d_velocity = _stack([_velocities(p.discriminator, p.d_opt) for p in players])
        self.random = CounterRandom([run.config.seed for run in runs], device)
        self.noise_dim, self.pixels = players[0].pair.noise_dim, math.prod(images.shape[1:])
        self.d_widths = _dropout_widths(self.d_layers, self.d_weights, self.pixels)
        loss = get_loss(config.loss)
        self.d_terms = vmap(lambda real, fake: _terms(loss.discriminator_terms(real, fake)))
        self.g_loss = vmap(loss.generator_loss)
        # bf16: the products and activations in bfloat16, each weight cast once per step from its float32 master
        # (autocast would cast it at every use); the losses, gradients and updates in float32
        self.compute_dtype = torch.bfloat16 if config.bf16 else torch.float32
        # the step's inputs, filled before each call (static for a CUDA graph): rows of the images, each slice's
        # learning rate and momentum, the step counter the random numbers are drawn for
        slices, batch = len(runs), config.batch_size
        self.rows = torch.zeros(slices, batch, dtype=torch.int64, device=device)
        self.lrs = torch.zeros(slices, device=device)
        self.momenta = torch.zeros(slices, device=device)
        self.counter = torch.zeros((), dtype=torch.int64, device=device)
        self.permutations: torch.Tensor | None = None
        self._drawn: tuple[int, torch.Tensor | None] = (-1, None)  # the epoch whose permutations are drawn, and they
        self.statistics: torch.Tensor | None = None  # S x steps x STEP_STATISTICS: this epoch's, each run's a view
        # each run's learning rate and momentum of the last step (what its own optimiser is given on write-back)
        self.hyperparameters = [(run.config.learning_rate, run.config.momentum_start) for run in runs]
        self.graph = CudaGraphStep(self.step_on, device) if use_cuda_graph else None

    def permutation(self, run: Run, epoch: int) -> torch.Tensor:
        """`run`'s permutation of the training images for `epoch` (0-based), from its own seed alone."""
        if self._drawn[0] != epoch:
            self._drawn = (epoch, self.random.permutations(epoch, len(self.images)))
        return self._drawn[1][self.runs.index(run)]

    def start_epoch(self, runs: list[Run]) -> None:
        """Stack this epoch's permutations and statistics of every slice; each run's become views of them."""
        self.permutations = torch.stack([run.permutation for run in self.runs])
        self.statistics = torch.stack([run.epoch_statistics for run in self.runs])
        for index, run in enumerate(self.runs):
            run.permutation, run.epoch_statistics = self.permutations[index], self.statistics[index]

    def step_on(self) -> torch.Tensor:
        """One simultaneous update of every slice on the images at `rows`; the step's statistics (STEP_STATISTICS x
        S). Reads only the static inputs and writes the weights in place: what a CUDA graph captures."""
        slices, batch = self.rows.shape
        real = self.images[self.rows.view(-1)].view(slices, batch, self.pixels)
        widths = [w * batch for w in self.d_widths]
        counts = [self.noise_dim * batch, *widths, *widths]  # noise, then D's masks on the fake and the real batch
        draws = list(self.random.bits(STEP_STREAM, self.counter, sum(counts)).split(counts, dim=1))
        noise = noise_from_uniform(uniform_from_bits(draws.pop(0)), self.config.noise)
        noise = noise.view(slices, batch, self.noise_dim)
        dtype = self.compute_dtype
        g_weights = {name: weight.to(dtype) for name, weight in self.g_weights.items()}
        d_weights = {name: weight.to(dtype) for name, weight in self.d_weights.items()}
        fake = _run_stacked(self.g_layers, g_weights, noise.to(dtype), [])
        fake_logits = _run_stacked(self.d_layers, d_weights, fake, draws).squeeze(2).float()
        real_logits = _run_stacked(self.d_layers, d_weights, real.to(dtype), draws).squeeze(2).float()
        d_loss, d_real, d_fake = self.d_terms(real_logits, fake_logits)
        g_loss = self.g_loss(fake_logits)
        d_leaves, g_leaves = list(self.d_weights.values()), list(self.g_weights.values())
        # each slice's own gradient times minus its learning rate (the sum's gradient in slice s is -lr_s times its
        # loss's): the update's step, ready for the momentum rule
        d_steps = torch.autograd.grad((d_loss * self.lrs).sum().neg(), d_leaves, retain_graph=True)
        g_steps = torch.autograd.grad((g_loss * self.lrs).sum().neg(), g_leaves)
        with torch.no_grad():
            _momentum_step(d_leaves, list(self.d_velocity.values()), d_steps, self.momenta)
            _momentum_step(g_leaves, list(self.g_velocity.values()), g_steps, self.momenta)
            if self.average is not None:
                torch._foreach_lerp_(list(self.average.values()), g_leaves, 1.0 - self.config.ema_decay)
            return torch.stack([d_loss.detach(), g_loss.detach(), d_real.detach(), d_fake.detach()])

    def __call__(self, runs: list[Run], batch: slice, local_step: int) -> None:
        live = {id(run) for run in runs}  # a stopped run keeps its last values (and goes on, unsaved)
        self.hyperparameters = [
            (run.learning_rate, run.momentum) if id(run) in live else last
            for run, last in zip(self.runs, self.hyperparameters, strict=True)
        ]
        self.lrs.copy_(torch.tensor([lr for lr, _ in self.hyperparameters]), non_blocking=True)
        self.momenta.copy_(torch.tensor([m for _, m in self.hyperparameters]), non_blocking=True)
        self.rows.copy_(self.permutations[:, batch])
        self.counter.fill_(runs[0].state.step)  # the live runs stand at one step (a stopped one's step stays behind)
        self.statistics[:, local_step] = (self.step_on() if self.graph is None else self.graph()).T

    @torch.no_grad()
    def write_back(self, run: Run) -> None:
        index, players = self.runs.index(run), run.players
        parts = [(players.generator, self.g_weights, self.g_velocity, players.g_opt)]
        parts.append((players.discriminator, self.d_weights, self.d_velocity, players.d_opt))
        for module, stacked, velocities, optimizer in parts:
            for name, param in module.named_parameters():
                param.copy_(_unstacked(stacked[name], index))
                velocity = _unstacked(velocities[name], index)
                optimizer.state[param]["velocity"] = velocity.clone(memory_format=torch.contiguous_format)
        if self.average is not None:
            for name, param in players.average.named_parameters():
                param.copy_(_unstacked(self.average[name], index))
        players.set_hyperparameters(*self.hyperparameters[index])


@torch.no_grad()
def _momentum_step(
    leaves: list[torch.Tensor], velocities: list[torch.Tensor], steps: tuple[torch.Tensor, ...], momenta: torch.Tensor
) -> None:
    """PylearnMomentumSGD's rule (v <- m v - lr g; p <- p + v) on stacked leaves, slice s with momenta[s] (a device
    tensor); `steps` are the gradients already times minus each slice's learning rate (v <- step + m v: one pass)."""
    for leaf, velocity, step in zip(leaves, velocities, steps, strict=True):
        torch.addcmul(step, velocity, momenta.view((-1,) + (1,) * (leaf.dim() - 1)), out=velocity)
        leaf.add_(velocity)


def _stack(tensors: list[dict[str, torch.Tensor]], trained: bool = False) -> dict[str, torch.Tensor]:
    """Each name's tensors of the slices stacked (S first), a weight matrix transposed to in x out (contiguous) as
    the stacked layers read it; `trained`: leaves that require gradients."""
    stacked = {}
    for name in tensors[0]:
        rows = [one[name].detach() for one in tensors]
        tensor = torch.stack([row.T if row.dim() == 2 else row for row in rows]).contiguous()
        stacked[name] = tensor.requires_grad_(True) if trained else tensor
    return stacked


def _unstacked(stacked: torch.Tensor, index: int) -> torch.Tensor:
    """Slice `index` of a `_stack`ed tensor in its module's layout."""
    return stacked[index].T if stacked.dim() == 3 else stacked[index]


def _velocities(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The momentum velocity of each of `module`'s parameters (zeros before its first step)."""
    return {
        name: optimizer.state.get(p, {}).get("velocity", torch.zeros_like(p)) for name, p in module.named_parameters()
    }
