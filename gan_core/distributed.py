"""Data-parallel training across the processes `torchrun` starts (one per GPU, or per CPU slot with gloo).

Every rank builds the same initial weights (same seed), trains on its share of each global batch (the paper's 100
images split evenly across ranks), and applies gradients averaged over all ranks, which is what
DistributedDataParallel does. The update rules take gradients with `torch.autograd.grad` (the simultaneous update
needs both players' gradients from one graph), and DDP's reducer only hooks `.backward()`, so the average is taken
here with one `all_reduce` per player and step over a flattened bucket. The ranks therefore hold identical weights
after every step; only rank 0 writes checkpoints and reports. Noise and dropout masks are drawn per rank, so a
2-rank run is not bit-identical to a 1-process run of the same seed (it is statistically the same training).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in a torchrun job."""

    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def average(self, tensors: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """The mean of each tensor over all ranks (one all_reduce over a flattened bucket)."""
        flat = torch.cat([t.reshape(-1) for t in tensors])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(self.world_size)
        out, offset = [], 0
        for tensor in tensors:
            out.append(flat[offset : offset + tensor.numel()].view_as(tensor))
            offset += tensor.numel()
        return tuple(out)

    def broadcast(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rank 0's tensor on every rank (e.g. the epoch's permutation)."""
        dist.broadcast(tensor, src=0)
        return tensor

    def gather(self, value: object) -> list[object]:
        """Every rank's `value`, in rank order, on every rank."""
        values: list[object] = [None] * self.world_size
        dist.all_gather_object(values, value)
        return values


def init_from_environment() -> DistributedContext:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT): NCCL with one GPU
    per rank on CUDA, gloo on the CPU."""
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", rank=rank, world_size=world_size, device_id=device)
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo", rank=rank, world_size=world_size)
    return DistributedContext(rank, world_size, device)


def state_hash(*modules: torch.nn.Module) -> str:
    """SHA-256 of the modules' weights, to check that every rank holds the same model."""
    digest = hashlib.sha256()
    for module in modules:
        for key, tensor in sorted(module.state_dict().items()):
            digest.update(key.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class Ranks:
    """What the training loop does differently under torchrun, and nothing in one process: this rank's share of each
    global batch, the epoch's permutation from rank 0, gradients and statistics averaged over ranks, and a check
    that every rank holds the same weights after each epoch."""

    def __init__(self, context: DistributedContext | None, config: object) -> None:
        self.context = context
        world = context.world_size if context else 1
        batch = config.batch_size  # type: ignore[attr-defined]
        if batch % world:
            raise ValueError(f"batch_size={batch} must divide evenly across the {world} ranks")
        self.local_batch, self.global_batch = batch // world, batch
        self.local_config = dataclasses.replace(config, batch_size=self.local_batch)  # type: ignore[type-var]

    @property
    def is_main(self) -> bool:
        return self.context is None or self.context.is_main

    def seed_rank(self, seed: int, step: int) -> None:
        """Give every rank but 0 its own noise and dropout stream (rank 0 keeps the single-process one)."""
        if self.context is not None and self.context.rank > 0:
            torch.manual_seed(seed * 1_000_003 + self.context.rank * 7_919 + step)

    def permutation(self, count: int, device: torch.device) -> torch.Tensor:
        permutation = torch.randperm(count, device=device)
        return self.context.broadcast(permutation) if self.context else permutation

    def share(self, indices: torch.Tensor) -> torch.Tensor:
        """This rank's part of one step's indices (each of the step's batches split evenly across ranks)."""
        if self.context is None:
            return indices
        start = self.context.rank * self.local_batch
        return indices.view(-1, self.global_batch)[:, start : start + self.local_batch].reshape(-1)

    def mean(self, stats: torch.Tensor) -> torch.Tensor:
        return self.context.average((stats,))[0] if self.context else stats

    def weights_in_sync(self, *modules: torch.nn.Module) -> list[str]:
        """Every rank's weights hash; raise if they differ (the ranks would be training different models)."""
        if self.context is None:
            return []
        hashes = [str(h) for h in self.context.gather(state_hash(*modules))]
        if len(set(hashes)) > 1:
            raise RuntimeError(f"ranks hold different weights: {hashes}")
        return hashes
