"""The one place that turns a device setting ("auto", "cpu", "cuda", "cuda:1") into a torch.device."""

from __future__ import annotations

import torch

DEVICE_HELP = "'auto' (CUDA when present, else the CPU), 'cpu', 'cuda' or 'cuda:N'"


def resolve_device(requested: str | torch.device | None = "auto") -> torch.device:
    """CUDA when present (for "auto" or None), else the CPU; an explicit CUDA device without a GPU is an error."""
    if requested is None or requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise ValueError(f"device {requested!r} is not a device name; use {DEVICE_HELP}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {requested!r} requested but CUDA is not available on this machine")
    return device
