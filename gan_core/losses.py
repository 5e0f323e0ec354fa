"""GAN objectives on discriminator logits.

`minimax`: G minimises log(1 - D(G(z))), the paper's equation (saturates early in training).
`non_saturating`: G minimises -log D(G(z)), what the paper recommends and its code uses.
`wgan_gp`: Wasserstein critic with gradient penalty (Gulrajani et al., 2017).
For the first two, D minimises 0.5 * [BCE(D(x), 1) + BCE(D(G(z)), 0)] as in the released code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

LOSSES = ("minimax", "non_saturating", "wgan_gp")


def check_loss_name(name: str) -> str:
    """Return `name` if it is a known loss, else raise naming the known ones."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known losses: {list(LOSSES)}")
    return name


@dataclass(frozen=True)
class DiscriminatorTerms:
    """The discriminator's loss and the batch means of D(x) and D(G(z)) (probabilities, or critic values)."""

    loss: torch.Tensor
    d_real: torch.Tensor
    d_fake: torch.Tensor


def discriminator_loss(name: str, real_logits: torch.Tensor, fake_logits: torch.Tensor) -> DiscriminatorTerms:
    """The discriminator/critic objective to minimise (without the gradient penalty)."""
    if name == "wgan_gp":
        loss = fake_logits.mean() - real_logits.mean()
        return DiscriminatorTerms(loss, real_logits.mean().detach(), fake_logits.mean().detach())
    check_loss_name(name)
    loss = 0.5 * (F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean())
    return DiscriminatorTerms(
        loss, torch.sigmoid(real_logits).mean().detach(), torch.sigmoid(fake_logits).mean().detach()
    )


def generator_loss(name: str, fake_logits: torch.Tensor) -> torch.Tensor:
    """The generator objective to minimise."""
    if name == "minimax":
        return -F.softplus(fake_logits).mean()  # log(1 - sigmoid(l)) = -softplus(l)
    if name == "non_saturating":
        return F.softplus(-fake_logits).mean()  # -log sigmoid(l)
    if name == "wgan_gp":
        return -fake_logits.mean()
    raise ValueError(f"unknown loss {name!r}; known losses: {list(LOSSES)}")


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(||grad_x critic(x_hat)|| - 1)^2] at random interpolates x_hat between real and fake images."""
    alpha = torch.rand(real.shape[0], *([1] * (real.ndim - 1)), device=real.device, dtype=real.dtype)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - 1).pow(2).mean()
