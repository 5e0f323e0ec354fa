"""GAN objectives on discriminator logits, one registry entry per loss.

`minimax`: G minimises log(1 - D(G(z))), the paper's equation (saturates early in training).
`non_saturating`: G minimises -log D(G(z)), what the paper recommends and its code uses.
`wgan_gp`: Wasserstein critic with gradient penalty (Gulrajani et al., 2017).
`hinge`: D minimises E[max(0, 1 - D(x))] + E[max(0, 1 + D(G(z)))], G minimises -D(G(z)) (Lim & Ye 2017; Miyato et al.
2018, used with spectral normalisation).
`feature_matching`: D as for the first two; G matches the batch mean of D's last hidden layer on real and fake
images (Salimans et al. 2016; the semi-supervised models, whose D has that layer).
For the first two, D minimises 0.5 * [BCE(D(x), 1) + BCE(D(G(z)), 0)] as in the released code.

A `Loss` owns everything the trainer needs to know about an objective: both players' terms, an optional penalty on
the critic, and the optimiser recipe it recommends. Adding a loss is one `Loss(...)` entry in `LOSSES`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from gan_core.registry import by_name, lookup


@dataclass(frozen=True)
class DiscriminatorTerms:
    """The discriminator's loss and the batch means of D(x) and D(G(z)) (probabilities, or critic values)."""

    loss: torch.Tensor
    d_real: torch.Tensor
    d_fake: torch.Tensor


Penalty = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Loss:
    """One GAN objective: D's terms from (real, fake) logits, G's loss from fake logits, an optional critic penalty
    (weighted by `TrainConfig.gp_weight`), and the training settings it recommends (applied after the model's)."""

    name: str
    discriminator_terms: Callable[[torch.Tensor, torch.Tensor], DiscriminatorTerms]
    generator_loss: Callable[[torch.Tensor], torch.Tensor]
    penalty: Penalty | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    # G's loss from D's features of a real and a fake batch instead of the fake logits (feature matching): needs a
    # discriminator with `features` (a semi-supervised model's)
    feature_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    # D(x) is a probability (its terms are binary cross-entropies), which a semi-supervised D's log-sum-exp logit is
    probabilistic: bool = False


def _bce_terms(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> DiscriminatorTerms:
    loss = 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())
    return DiscriminatorTerms(
        loss, torch.sigmoid(real_logits).mean().detach(), torch.sigmoid(fake_logits).mean().detach()
    )


def _critic_terms(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> DiscriminatorTerms:
    loss = fake_logits.mean() - real_logits.mean()
    return DiscriminatorTerms(loss, real_logits.mean().detach(), fake_logits.mean().detach())


def _critic_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """G raises the critic's value of its samples (WGAN-GP and the hinge loss alike)."""
    return -fake_logits.mean()


def _hinge_terms(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> DiscriminatorTerms:
    loss = F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    return DiscriminatorTerms(loss, real_logits.mean().detach(), fake_logits.mean().detach())


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x critic(x_hat)|| - 1)^2] at random interpolates x_hat between real and fake images."""
    alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()


def feature_matching_loss(real_features: torch.Tensor, fake_features: torch.Tensor) -> torch.Tensor:
    """Mean squared difference of the batch means of D's features on real and fake images (improved-gan's loss_gen);
    the real features are a fixed target (no gradient reaches D)."""
    return (real_features.detach().mean(0) - fake_features.mean(0)).pow(2).mean()


def labelled_loss(class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """A semi-supervised D's supervised term: cross-entropy of its K class logits on labelled images."""
    return F.cross_entropy(class_logits, labels)


def _reads_features(fake_logits: torch.Tensor) -> torch.Tensor:
    raise ValueError("loss 'feature_matching' trains G on D's features, not its logits: use a semi-supervised model")


# Radford et al. (2016): Adam with lr 2e-4 and beta1 0.5, D and G updated in turn (also the dcgan models' recipe)
ADAM_ALTERNATING = {"optimizer": "adam", "update": "alternating", "learning_rate": 2e-4, "adam_beta1": 0.5}

LOSSES: Mapping[str, Loss] = by_name(
    Loss(
        "minimax",
        _bce_terms,
        lambda fake_logits: -F.softplus(fake_logits).mean(),  # log(1 - sigmoid(l)) = -softplus(l)
        description="the paper's equation: G minimises log(1 - D(G(z)))",
        probabilistic=True,
    ),
    Loss(
        "non_saturating",
        _bce_terms,
        lambda fake_logits: F.softplus(-fake_logits).mean(),  # -log sigmoid(l)
        description="G minimises -log D(G(z)), as the paper recommends and its code does",
        probabilistic=True,
    ),
    Loss(
        "feature_matching",
        _bce_terms,
        _reads_features,
        recipe={"optimizer": "adam", "update": "alternating"},  # the learning rate is the model's
        description="G matches the mean of D's last hidden layer on real images (Salimans et al., 2016); D as "
        "non_saturating; semi-supervised models",
        feature_loss=feature_matching_loss,
        probabilistic=True,
    ),
    Loss(
        "wgan_gp",
        _critic_terms,
        _critic_generator_loss,
        penalty=gradient_penalty,
        recipe={**ADAM_ALTERNATING, "learning_rate": 1e-4, "adam_beta2": 0.9, "d_steps": 5},
        description="Wasserstein critic with gradient penalty (Gulrajani et al., 2017), Adam, 5 critic steps",
    ),
    Loss(
        "hinge",
        _hinge_terms,
        _critic_generator_loss,
        recipe=ADAM_ALTERNATING,
        description="hinge loss (Lim & Ye, 2017; Miyato et al., 2018), Adam, D and G in turn",
    ),
)


def get_loss(name: str) -> Loss:
    """The registered loss called `name`; an unknown name lists the known ones."""
    return lookup(LOSSES, name, "loss")


def discriminator_loss(name: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> DiscriminatorTerms:
    """The discriminator/critic objective of loss `name` (without its penalty)."""
    return get_loss(name).discriminator_terms(real_logits, fake_logits)


def generator_loss(name: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator objective of loss `name`."""
    return get_loss(name).generator_loss(fake_logits)
