"""Seeds of one configuration (or a sweep's points differing only in their learning-rate and momentum schedules)
stacked as one batched model: a `Step` of the training loop (gan_core/train.py).

Every weight gets a leading seed dimension (`torch.func.stack_module_state`); the simultaneous update's losses
(`gan_core.updates.Objective.simultaneous`, the very code a run alone executes) are evaluated for all seeds in one
`torch.func.vmap` over `functional_call`s of the real networks, so each linear layer is one batched product over the
seeds; the gradient of the summed per-seed losses is each seed's own, and the paper's SGD and the generator's average
act element-wise on the stacked tensors (with one learning rate and momentum per slice where the runs' schedules
differ: `SLICE_SETTINGS`). Each seed keeps its run directory, lock and checkpoint in the format of a run
alone (its weights are written back into its own players before each save).

The noise and dropout masks come from one vmapped draw (`randomness="different"`: other numbers for each seed), so
stacked seeds are other draws from the same distributions than the seeds trained alone, not the same runs; the loop
therefore stacks seeds only on CUDA by default, where the batching is the point (`RuntimeOptions.stack_seeds`). On
the CPU seeds take turns instead (gan_core.train.RunsInTurn) and each is bit-identical to that seed alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
from torch.func import functional_call, stack_module_state, vmap

from gan_core.config import RuntimeOptions, TrainConfig
from gan_core.losses import DiscriminatorTerms, get_loss
from gan_core.models import get_model_spec
from gan_core.runs import Run, Step
from gan_core.updates import Objective, PylearnMomentumSGD, apply_gradients, set_hyperparameters, step_statistics


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
        (config.bf16, "bf16 autocast"),
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


class StackedSeeds(Step):
    """The simultaneous paper-SGD step of S seeds as one vmapped call over their stacked weights."""

    def __init__(self, runs: list[Run], images: torch.Tensor) -> None:
        config, players = runs[0].config, [run.players for run in runs]
        self.runs, self.images, self.ema_decay = runs, images, config.ema_decay
        g_template, d_template = players[0].generator, players[0].discriminator
        self.g_weights = stack_module_state([p.generator for p in players])[0]
        self.d_weights = stack_module_state([p.discriminator for p in players])[0]
        self.average = stack_module_state([p.average for p in players])[0] if config.ema_decay > 0 else None
        self.g_opt = PylearnMomentumSGD(list(self.g_weights.values()), config.learning_rate, config.momentum_start)
        self.d_opt = PylearnMomentumSGD(list(self.d_weights.values()), config.learning_rate, config.momentum_start)
        _stack_velocities(self.g_opt, self.g_weights, [(p.generator, p.g_opt) for p in players])
        _stack_velocities(self.d_opt, self.d_weights, [(p.discriminator, p.d_opt) for p in players])
        autocast = torch.autocast(images.device.type, enabled=False)
        noise_dim, device = players[0].pair.noise_dim, images.device

        def losses(g_weights: dict, d_weights: dict, real: torch.Tensor) -> tuple[torch.Tensor, ...]:
            def g_run(*args: torch.Tensor) -> torch.Tensor:
                return functional_call(g_template, g_weights, args)

            def d_run(*args: torch.Tensor) -> torch.Tensor:
                return functional_call(d_template, d_weights, args)

            terms, g_loss = Objective(config, noise_dim, device, g_run, d_run, autocast).simultaneous(real)
            return terms.loss, g_loss, terms.d_real, terms.d_fake

        self.losses = vmap(losses, randomness="different")
        # each run's learning rate and momentum of the last step (what its own optimiser is given on write-back)
        self.hyperparameters: list[tuple[float, float | None]] = [
            (run.config.learning_rate, run.config.momentum_start) for run in runs
        ]

    def __call__(self, runs: list[Run], batch: slice, local_step: int) -> None:
        rows = torch.stack([run.permutation[batch] for run in self.runs])  # a stopped seed goes on, unsaved
        d_loss, g_loss, d_real, d_fake = self.losses(self.g_weights, self.d_weights, self.images[rows])
        d_leaves, g_leaves = list(self.d_weights.values()), list(self.g_weights.values())
        d_grads = torch.autograd.grad(d_loss.sum(), d_leaves, retain_graph=True)  # each seed's own gradient
        g_grads = torch.autograd.grad(g_loss.sum(), g_leaves)
        live = {id(run) for run in runs}  # a stopped run keeps its last values
        self.hyperparameters = [
            (run.learning_rate, run.momentum) if id(run) in live else last
            for run, last in zip(self.runs, self.hyperparameters, strict=True)
        ]
        if len(set(self.hyperparameters)) == 1:  # seeds of one configuration: one schedule, the optimiser's step
            lr, momentum = self.hyperparameters[0]
            for optimizer in (self.d_opt, self.g_opt):
                set_hyperparameters(optimizer, lr, momentum)
            apply_gradients(self.d_opt, d_leaves, d_grads)
            apply_gradients(self.g_opt, g_leaves, g_grads)
        else:  # a sweep's points: the same rule, each slice with its own learning rate and momentum
            lrs = torch.tensor([lr for lr, _ in self.hyperparameters], device=rows.device)
            momenta = torch.tensor([m for _, m in self.hyperparameters], device=rows.device)
            _per_slice_momentum_step(self.d_opt, d_leaves, d_grads, lrs, momenta)
            _per_slice_momentum_step(self.g_opt, g_leaves, g_grads, lrs, momenta)
        if self.average is not None:
            with torch.no_grad():
                torch._foreach_lerp_(list(self.average.values()), g_leaves, 1.0 - self.ema_decay)
        statistics = step_statistics(DiscriminatorTerms(d_loss, d_real, d_fake), g_loss)  # STEP_STATISTICS x S
        for index, run in enumerate(self.runs):
            run.epoch_statistics[local_step] = statistics[:, index]

    @torch.no_grad()
    def write_back(self, run: Run) -> None:
        index, players = self.runs.index(run), run.players
        parts = [(players.generator, self.g_weights, self.g_opt, players.g_opt)]
        parts.append((players.discriminator, self.d_weights, self.d_opt, players.d_opt))
        for module, stacked, stacked_opt, optimizer in parts:
            for name, param in module.named_parameters():
                param.copy_(stacked[name][index])
                velocity = stacked_opt.state[stacked[name]].get("velocity")
                if velocity is not None:
                    optimizer.state[param]["velocity"] = velocity[index].clone()
        if self.average is not None:
            for name, param in players.average.named_parameters():
                param.copy_(self.average[name][index])
        players.set_hyperparameters(*self.hyperparameters[index])


@torch.no_grad()
def _per_slice_momentum_step(
    optimizer: PylearnMomentumSGD,
    leaves: list[torch.Tensor],
    grads: tuple[torch.Tensor, ...],
    lrs: torch.Tensor,
    momenta: torch.Tensor,
) -> None:
    """PylearnMomentumSGD's rule (v <- m v - lr g; p <- p + v) on stacked leaves, slice s with lrs[s] and
    momenta[s]; the velocities stay in `optimizer`'s state, where write-back and checkpoints find them."""
    for leaf, grad in zip(leaves, grads, strict=True):
        shape = (-1,) + (1,) * (leaf.dim() - 1)
        velocity = optimizer.state[leaf].setdefault("velocity", torch.zeros_like(leaf))
        velocity.mul_(momenta.to(leaf.dtype).view(shape)).sub_(grad * lrs.to(leaf.dtype).view(shape))
        leaf.add_(velocity)


def _stack_velocities(
    stacked: PylearnMomentumSGD,
    weights: dict[str, torch.Tensor],
    per_seed: list[tuple[torch.nn.Module, torch.optim.Optimizer]],
) -> None:
    """Give the stacked optimiser the seeds' momentum velocities (none yet before the first step: zeros)."""
    for name, leaf in weights.items():
        params = [dict(module.named_parameters())[name] for module, _ in per_seed]
        velocities = [
            opt.state.get(param, {}).get("velocity") for param, (_, opt) in zip(params, per_seed, strict=True)
        ]
        if any(v is not None for v in velocities):
            stacked.state[leaf]["velocity"] = torch.stack(
                [v if v is not None else torch.zeros_like(leaf[0]) for v in velocities]
            )
