"""The two players, their optimisers, and the update rules the trainer applies once per step.

An update rule is a small callable object: given the batch indices of one step (d_steps x batch_size images of the
device-resident training set), the learning rate and the momentum, it updates both players and returns the step's
statistics (d_loss, g_loss, mean D(x), mean D(G(z))) as one device tensor, so the loop never synchronises.

- `SimultaneousUpdate` (the released code's scheme, k = 1): both players' gradients from one batch, one noise draw and
  one set of dropout masks, applied together.
- `AlternatingUpdate` (the paper's Algorithm 1): k D-steps, then one G-step on fresh noise.
- `SemiSupervisedUpdate` (Salimans et al. 2016): D, a K-class classifier, also learns the labels of a labelled
  subset; G follows the loss's objective (feature matching for `feature_matching`).
- `BidirectionalUpdate` (BiGAN / ALI): D tells (x, E(x)) from (G(z), z); G and E learn together to fool it.
- `CudaGraphUpdate` wraps a `SimultaneousUpdate` with the paper's SGD and replays it as a CUDA graph: at the paper's
  batch of 100 a GPU step is a few hundred tiny kernels, so eager PyTorch is bound by the host launching them.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from gan_core.config import TrainConfig
from gan_core.losses import DiscriminatorTerms, Loss, get_loss, labelled_loss
from gan_core.models import (
    ModelPair,
    build_model_pair,
    get_model_spec,
    init_output_bias_from_marginals,
    sample_noise,
)


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


# What every training step records, one row of an epoch's statistics (a steps x 4 tensor) in this order: the
# discriminator's and the generator's losses, and the batch means of D(x) and D(G(z)).
STEP_STATISTICS = ("d_loss", "g_loss", "d_real", "d_fake")


def step_statistics(terms: DiscriminatorTerms, g_loss: torch.Tensor) -> torch.Tensor:
    """One step's row of STEP_STATISTICS."""
    return torch.stack([terms.loss.detach(), g_loss.detach(), terms.d_real, terms.d_fake])


def named_statistics(row: torch.Tensor) -> dict[str, float]:
    """A row of STEP_STATISTICS (or their means) by name."""
    return dict(zip(STEP_STATISTICS, row.tolist(), strict=True))


def paper_learning_rate(config: TrainConfig, updates_done: int) -> float:
    """Learning rate divided by `lr_decay` after every update, floored at `min_learning_rate`."""
    return max(config.learning_rate * math.exp(-updates_done * math.log(config.lr_decay)), config.min_learning_rate)


def learning_rate(config: TrainConfig, updates_done: int, total_updates: int) -> float:
    """The learning rate of update `updates_done` (from 0) of `total_updates`: the paper's decaying rate for its SGD,
    `learning_rate` for Adam, times a linear ramp to 0 over the last `lr_anneal_fraction` of the updates."""
    rate = paper_learning_rate(config, updates_done) if config.optimizer == "paper" else config.learning_rate
    annealed = config.lr_anneal_fraction * total_updates
    left = total_updates - updates_done
    return rate if annealed <= 0 or left >= annealed else rate * max(left, 0) / annealed


def paper_momentum(config: TrainConfig, epoch: int) -> float:
    """Momentum rising linearly from `momentum_start` (epoch 1) to `momentum_end` (epoch `momentum_saturate_epoch`)."""
    span = max(1, config.momentum_saturate_epoch - 1)
    alpha = min(1.0, max(0.0, (epoch - 1) / span))
    return config.momentum_start + alpha * (config.momentum_end - config.momentum_start)


def set_hyperparameters(optimizer: torch.optim.Optimizer, lr: Any, momentum: Any | None) -> None:
    """Set every group's learning rate (and momentum, where the optimiser has one)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if momentum is not None and "momentum" in group:
            group["momentum"] = momentum


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimiser's state dict with tensor hyper-parameters (the CUDA-graph path's) stored as floats."""
    state = optimizer.state_dict()
    for group in state["param_groups"]:
        for key in ("lr", "momentum"):
            if isinstance(group.get(key), torch.Tensor):
                group[key] = float(group[key])
    return state


@dataclass
class Players:
    """Generator and discriminator with their optimisers; `g_run`/`d_run` are the (possibly compiled) callables."""

    pair: ModelPair
    g_opt: torch.optim.Optimizer
    d_opt: torch.optim.Optimizer
    g_run: Callable[[torch.Tensor], torch.Tensor]
    d_run: Callable[[torch.Tensor], torch.Tensor]
    # gradients -> the gradients to apply: the identity in one process, their mean over ranks under torchrun
    sync: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]] = lambda grads: grads
    # the generator's exponential moving average and its decay per step (TrainConfig.ema_decay; None: off)
    average: nn.Module | None = None
    ema_decay: float = 0.0

    @classmethod
    def build(cls, config: TrainConfig, images: torch.Tensor, compile: bool = False, num_classes: int = 0) -> Players:
        """Build the model pair on the images' device (output bias from the pixel means) and its optimisers."""
        pair = build_model_pair(
            config.model, tuple(images.shape[1:]), num_classes, config.n_generators, config.n_discriminators
        )
        pair = dataclasses.replace(
            pair, generator=pair.generator.to(images.device), discriminator=pair.discriminator.to(images.device)
        )
        init_output_bias_from_marginals(pair.generator, images)
        g_opt, d_opt = (_make_optimizer(config, net.parameters()) for net in (pair.generator, pair.discriminator))
        average = copy.deepcopy(pair.generator).requires_grad_(False) if config.ema_decay > 0 else None
        g_run, d_run = pair.generator, pair.discriminator
        if compile:
            g_run, d_run = torch.compile(pair.generator), torch.compile(pair.discriminator)
        return cls(pair, g_opt, d_opt, g_run, d_run, average=average, ema_decay=config.ema_decay)

    @property
    def generator(self) -> nn.Module:
        return self.pair.generator

    @property
    def discriminator(self) -> nn.Module:
        return self.pair.discriminator

    @property
    def sampling_generator(self) -> nn.Module:
        """The generator that samples and scores use: the average when one is kept."""
        return self.average if self.average is not None else self.generator

    @torch.no_grad()
    def update_average(self) -> None:
        """average <- decay * average + (1 - decay) * weights, after every step; buffers (batch-norm statistics) are
        copied, as averaging them has no meaning."""
        if self.average is None:
            return
        averaged, current = list(self.average.parameters()), list(self.generator.parameters())
        torch._foreach_lerp_(averaged, current, 1.0 - self.ema_decay)
        for kept, live in zip(self.average.buffers(), self.generator.buffers(), strict=True):
            kept.copy_(live)

    def set_hyperparameters(self, lr: Any, momentum: Any | None) -> None:
        set_hyperparameters(self.g_opt, lr, momentum)
        set_hyperparameters(self.d_opt, lr, momentum)

    def state(self) -> dict[str, Any]:
        """Weights and optimiser states, as stored in a checkpoint."""
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "g_optimizer": optimizer_state(self.g_opt),
            "d_optimizer": optimizer_state(self.d_opt),
            **({"generator_average": self.average.state_dict()} if self.average is not None else {}),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.g_opt.load_state_dict(state["g_optimizer"])
        self.d_opt.load_state_dict(state["d_optimizer"])
        if self.average is not None:
            self.average.load_state_dict(state["generator_average"])


def _make_optimizer(config: TrainConfig, params: Any) -> torch.optim.Optimizer:
    if config.optimizer == "paper":
        return PylearnMomentumSGD(params, lr=config.learning_rate, momentum=config.momentum_start)
    return torch.optim.Adam(params, lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2))


def apply_gradients(
    optimizer: torch.optim.Optimizer, params: list[nn.Parameter], grads: tuple[torch.Tensor, ...]
) -> None:
    """Step `optimizer` with `grads` as the parameters' gradients (already synchronised across ranks)."""
    for param, grad in zip(params, grads, strict=True):
        param.grad = grad
    optimizer.step()


class Objective:
    """The loss terms of one configuration for a generator `g_run` and a discriminator `d_run` (the players' modules,
    possibly compiled), under bf16 autocast when asked."""

    def __init__(
        self,
        config: TrainConfig,
        noise_dim: int,
        device: torch.device,
        g_run: Callable[..., torch.Tensor],
        d_run: Callable[..., torch.Tensor],
        autocast: torch.autocast,
    ) -> None:
        self.config, self.noise_dim, self.device, self.autocast = config, noise_dim, device, autocast
        self.g_run, self.d_run_any = g_run, d_run
        self.loss: Loss = get_loss(config.loss)

    def fake(self, batch: int, labels: torch.Tensor | None = None) -> torch.Tensor:
        """A batch from fresh noise (of the asked `labels` for a conditional model)."""
        noise = sample_noise(batch, self.noise_dim, self.config.noise, self.device)
        with self.autocast:
            return self.g_run(noise) if labels is None else self.g_run(noise, labels)

    def discriminator_terms(self, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> DiscriminatorTerms:
        """The loss's terms; for k discriminators (logits k x batch) the mean of each one's terms (GMAN's mean)."""
        if real_logits.ndim == 1:
            return self.loss.discriminator_terms(real_logits, fake_logits)
        each = [self.loss.discriminator_terms(r, f) for r, f in zip(real_logits, fake_logits, strict=True)]
        return DiscriminatorTerms(
            *(torch.stack(parts).mean() for parts in zip(*((t.loss, t.d_real, t.d_fake) for t in each), strict=True))
        )

    def generator_loss(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """The generator's loss; against k discriminators, the mean of its loss against each."""
        if fake_logits.ndim == 1:
            return self.loss.generator_loss(fake_logits)
        return torch.stack([self.loss.generator_loss(logits) for logits in fake_logits]).mean()

    def d_run(self, labels: torch.Tensor | None) -> Callable[[torch.Tensor], torch.Tensor]:
        """D as a function of images alone: conditional on `labels` for a conditional model."""
        run = self.d_run_any
        return run if labels is None else lambda images: run(images, labels)

    def discriminator(
        self, real: torch.Tensor, fake: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[DiscriminatorTerms, torch.Tensor]:
        """D's terms (penalty included) and the fake logits; D sees the fake batch first (dropout order matters).
        A conditional model's fake batch was drawn for the real batch's `labels`."""
        d_run = self.d_run(labels)
        with self.autocast:
            fake_logits = d_run(fake)
            terms = self.discriminator_terms(d_run(real).float(), fake_logits.float())
        if self.loss.penalty is not None:
            penalised = terms.loss + self.config.gp_weight * self.loss.penalty(d_run, real, fake.detach())
            terms = DiscriminatorTerms(penalised, terms.d_real, terms.d_fake)
        return terms, fake_logits.float()

    def simultaneous(
        self, real: torch.Tensor, labels: torch.Tensor | None = None
    ) -> tuple[DiscriminatorTerms, torch.Tensor]:
        """The simultaneous update's losses on the batch `real`: D's terms and G's loss from one noise draw (and one
        set of dropout masks), a conditional model's fakes drawn for the real batch's `labels`."""
        terms, fake_logits = self.discriminator(real, self.fake(real.shape[0], labels), labels)
        return terms, self.generator_loss(fake_logits)


class _UpdateRule:
    """What every update rule holds: the players, the training images on the device (and, for a conditional model,
    their labels), and the loss terms."""

    def __init__(
        self,
        players: Players,
        config: TrainConfig,
        images: torch.Tensor,
        autocast: torch.autocast,
        labels: torch.Tensor | None = None,
    ) -> None:
        self.players, self.images, self.labels = players, images, labels
        self.batch, self.d_steps = config.batch_size, config.d_steps
        self.g_params = list(players.generator.parameters())
        self.d_params = list(players.discriminator.parameters())
        device = self.g_params[0].device
        self.objective = Objective(config, players.pair.noise_dim, device, players.g_run, players.d_run, autocast)


class SimultaneousUpdate(_UpdateRule):
    """Both players' gradients from one batch, one noise draw and one set of dropout masks, applied together."""

    def step_on(self, real: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """One update on the batch `real` (the part a CUDA graph captures); a conditional model's fakes are drawn for
        the real batch's `labels`."""
        terms, g_loss = self.objective.simultaneous(real, labels)
        d_grads = torch.autograd.grad(terms.loss, self.d_params, retain_graph=True)
        g_grads = torch.autograd.grad(g_loss, self.g_params)
        apply_gradients(self.players.d_opt, self.d_params, self.players.sync(d_grads))
        apply_gradients(self.players.g_opt, self.g_params, self.players.sync(g_grads))
        return step_statistics(terms, g_loss)

    def __call__(self, indices: torch.Tensor, lr: float, momentum: float | None) -> torch.Tensor:
        self.players.set_hyperparameters(lr, momentum)
        return self.step_on(self.images[indices], None if self.labels is None else self.labels[indices])


class AlternatingUpdate(_UpdateRule):
    """The paper's Algorithm 1: `d_steps` discriminator updates on fresh batches and noise, then a generator update."""

    def __call__(self, indices: torch.Tensor, lr: float, momentum: float | None) -> torch.Tensor:
        self.players.set_hyperparameters(lr, momentum)
        objective, batch = self.objective, self.batch
        for k in range(self.d_steps):
            rows = indices[k * batch : (k + 1) * batch]
            labels = None if self.labels is None else self.labels[rows]
            terms, _ = objective.discriminator(self.images[rows], objective.fake(batch, labels).detach(), labels)
            d_grads = torch.autograd.grad(terms.loss, self.d_params)
            apply_gradients(self.players.d_opt, self.d_params, self.players.sync(d_grads))
        labels = None if self.labels is None else self.labels[indices[:batch]]  # G draws for the first batch's labels
        fake = objective.fake(batch, labels)
        with objective.autocast:
            fake_logits = objective.d_run(labels)(fake).float()
        g_loss = objective.generator_loss(fake_logits)
        g_grads = torch.autograd.grad(g_loss, self.g_params)
        apply_gradients(self.players.g_opt, self.g_params, self.players.sync(g_grads))
        return step_statistics(terms, g_loss)


class SemiSupervisedUpdate(_UpdateRule):
    """Salimans et al. (2016), as openai/improved-gan trains it: per D step, the cross-entropy of D's K class logits on
    a batch of the labelled subset (`labelled`: images and labels on the device, drawn with replacement) plus the
    loss's terms on D's GAN logit for the unlabelled real batch and a fake batch; then one G step on fresh noise,
    which for a loss with `feature_loss` matches D's features of that real batch."""

    def __init__(
        self,
        players: Players,
        config: TrainConfig,
        images: torch.Tensor,
        autocast: torch.autocast,
        labelled: tuple[torch.Tensor, torch.Tensor],
    ) -> None:
        super().__init__(players, config, images, autocast)
        self.labelled_images, self.labelled_labels = labelled

    def __call__(self, indices: torch.Tensor, lr: float, momentum: float | None) -> torch.Tensor:
        self.players.set_hyperparameters(lr, momentum)
        objective, batch, discriminator = self.objective, self.batch, self.players.discriminator
        for k in range(self.d_steps):
            real = self.images[indices[k * batch : (k + 1) * batch]]
            picked = torch.randint(len(self.labelled_labels), (batch,), device=real.device)
            with objective.autocast:
                class_logits = discriminator.class_logits(self.labelled_images[picked]).float()
            terms, _ = objective.discriminator(real, objective.fake(batch).detach())
            supervised = labelled_loss(class_logits, self.labelled_labels[picked])
            terms = DiscriminatorTerms(terms.loss + supervised, terms.d_real, terms.d_fake)
            d_grads = torch.autograd.grad(terms.loss, self.d_params)
            apply_gradients(self.players.d_opt, self.d_params, self.players.sync(d_grads))
        fake = objective.fake(batch)
        with objective.autocast:
            if objective.loss.feature_loss is not None:
                g_loss = objective.loss.feature_loss(
                    discriminator.features(real).float(), discriminator.features(fake).float()
                )
            else:
                g_loss = objective.generator_loss(objective.d_run(None)(fake).float())
        g_grads = torch.autograd.grad(g_loss, self.g_params)
        apply_gradients(self.players.g_opt, self.g_params, self.players.sync(g_grads))
        return step_statistics(terms, g_loss)


class BidirectionalUpdate(_UpdateRule):
    """BiGAN / ALI: per D step, the loss's terms with (x, E(x)) of a real batch as "real" and (G(z), z) of fresh noise
    as "fake"; then one step of the generator and its encoder together (one module, one optimiser) on the loss's
    generator objective for both pairs with the labels swapped: G wants (G(z), z) taken for real, E wants (x, E(x))
    taken for fake (Donahue et al. 2016, the non-saturating form)."""

    def __call__(self, indices: torch.Tensor, lr: float, momentum: float | None) -> torch.Tensor:
        self.players.set_hyperparameters(lr, momentum)
        objective, batch = self.objective, self.batch
        generator, discriminator = self.players.generator, self.players.discriminator
        device = self.g_params[0].device
        for k in range(self.d_steps):
            real = self.images[indices[k * batch : (k + 1) * batch]]
            noise = sample_noise(batch, objective.noise_dim, objective.config.noise, device)
            with torch.no_grad(), objective.autocast:
                codes, fake = generator.encode(real), generator(noise)
            with objective.autocast:
                fake_logits = discriminator(fake, noise).float()
                real_logits = discriminator(real, codes).float()
            terms = objective.loss.discriminator_terms(real_logits, fake_logits)
            d_grads = torch.autograd.grad(terms.loss, self.d_params)
            apply_gradients(self.players.d_opt, self.d_params, self.players.sync(d_grads))
        noise = sample_noise(batch, objective.noise_dim, objective.config.noise, device)
        with objective.autocast:
            fake_logits = discriminator(generator(noise), noise).float()
            real_logits = discriminator(real, generator.encode(real)).float()
        g_loss = objective.loss.generator_loss(fake_logits) + objective.loss.generator_loss(-real_logits)
        g_grads = torch.autograd.grad(g_loss, self.g_params)
        apply_gradients(self.players.g_opt, self.g_params, self.players.sync(g_grads))
        return step_statistics(terms, g_loss)


class CudaGraphStep:
    """Runs `step` eagerly on a side stream for the first `warmup` calls (real training steps, as capture needs),
    then captures it once as a CUDA graph and replays it; `step` reads only static device tensors, which the caller
    refills before each call."""

    def __init__(self, step: Callable[[], torch.Tensor], device: torch.device, warmup: int = 3) -> None:
        self.step, self.warmup_left = step, warmup
        self.side_stream = torch.cuda.Stream(device)
        self.graph: torch.cuda.CUDAGraph | None = None
        self.out: torch.Tensor | None = None

    def __call__(self) -> torch.Tensor:
        if self.graph is not None:
            self.graph.replay()
            return self.out  # type: ignore[return-value]
        if self.warmup_left > 0:
            self.warmup_left -= 1
            self.side_stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(self.side_stream):
                out = self.step()
            torch.cuda.current_stream().wait_stream(self.side_stream)
            return out
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):  # capture records the step without running it: replay it now
            self.out = self.step()
        self.graph.replay()
        return self.out


class CudaGraphUpdate:
    """A `SimultaneousUpdate` replayed as a CUDA graph (`CudaGraphStep`). The batch, learning rate and momentum are
    static device tensors refilled before each call; the optimisers read the latter two on the device."""

    def __init__(self, update: SimultaneousUpdate, warmup: int = 3) -> None:
        images = update.images
        self.update = update
        self.real = torch.empty(update.batch, *images.shape[1:], device=images.device, dtype=images.dtype)
        self.lr = torch.zeros((), device=images.device)
        self.momentum = torch.zeros((), device=images.device)
        update.players.set_hyperparameters(self.lr, self.momentum)
        self.graphed = CudaGraphStep(lambda: update.step_on(self.real), images.device, warmup)

    def __call__(self, indices: torch.Tensor, lr: float, momentum: float | None) -> torch.Tensor:
        torch.index_select(self.update.images, 0, indices, out=self.real)
        self.lr.fill_(lr)
        self.momentum.fill_(momentum or 0.0)
        return self.graphed()


UpdateRule = Callable[[torch.Tensor, float, float | None], torch.Tensor]


def make_update(
    config: TrainConfig,
    players: Players,
    images: torch.Tensor,
    use_cuda_graph: bool,
    autocast: torch.autocast,
    labels: torch.Tensor | None = None,
    labelled: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> UpdateRule:
    """The update rule `config` asks for, wrapped as a CUDA graph when `use_cuda_graph`; `labels` (the training
    images' classes, on their device) for a conditional model; `labelled` (the labelled subset's images and labels)
    for a semi-supervised one."""
    if labelled is not None:
        return SemiSupervisedUpdate(players, config, images, autocast, labelled)
    if get_model_spec(config.model).bidirectional:
        return BidirectionalUpdate(players, config, images, autocast)
    if config.update == "alternating":
        return AlternatingUpdate(players, config, images, autocast, labels)
    update = SimultaneousUpdate(players, config, images, autocast, labels)
    return CudaGraphUpdate(update) if use_cuda_graph else update
