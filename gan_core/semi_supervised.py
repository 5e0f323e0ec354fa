"""Semi-supervised learning with a GAN (Salimans et al., 2016; the paper's section 7): the labelled subset a run
trains on, its discriminator as a K-way classifier, and the supervised baseline it is compared with.

A semi-supervised model (ModelSpec.semi_supervised, e.g. `paper_mlp_ssl`) keeps `labels_per_class` labelled images
of each class, drawn from the training split by the run's seed (`labelled_subset`) and stored in its run directory
(`store_labelled_subset`), so the subset of any stored run can be read back and drawn again from its seed. The
trainer (gan_core.updates.SemiSupervisedUpdate) adds the labelled images' cross-entropy to D's loss; D's K-way test
error is `ssl_test_error`. The baseline is the same discriminator trained on the labelled subset alone
(`supervised_baseline`): what the unlabelled images and the GAN game add.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from gan_core.checkpoint import load_checkpoint
from gan_core.devices import resolve_device
from gan_core.layout import labelled_subset_file
from gan_core.losses import labelled_loss
from gan_core.models import build_models
from gan_core.storage import write_json_atomic

BASELINE_STEPS = 300  # Adam steps of the supervised baseline (batches of 100 from the labelled subset: it fits them)


def labelled_subset(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """The sorted indices of `per_class` training images of every class in `labels`, drawn without replacement by
    `seed` (numpy's PCG64: the same indices on every machine)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    chosen = []
    for label in np.unique(labels):
        rows = np.flatnonzero(labels == label)
        if len(rows) < per_class:
            raise ValueError(
                f"labels_per_class={per_class}: class {int(label)} has only {len(rows)} training images; use at "
                f"most {len(rows)}"
            )
        chosen.append(rng.choice(rows, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def store_labelled_subset(run_dir: str | os.PathLike[str], indices: np.ndarray, per_class: int, seed: int) -> Path:
    """Write the run's labelled subset (atomically) beside its checkpoint; a stored one must be the same."""
    path = labelled_subset_file(run_dir)
    record = {"seed": seed, "labels_per_class": per_class, "indices": [int(i) for i in indices]}
    if path.is_file():
        stored = json.loads(path.read_text())
        if stored != record:
            raise ValueError(f"{path} holds another labelled subset than seed {seed} draws; move the run away")
        return path
    write_json_atomic(path, record)
    return path


def read_labelled_subset(run_dir: str | os.PathLike[str]) -> np.ndarray:
    """The indices of the training images a stored semi-supervised run kept labelled."""
    return np.asarray(json.loads(labelled_subset_file(run_dir).read_text())["indices"], dtype=np.int64)


def load_discriminator(checkpoint_path: str | os.PathLike[str], num_classes: int, device: str = "auto") -> nn.Module:
    """The discriminator of a semi-supervised run's checkpoint (a K-class classifier), in evaluation mode."""
    dev = resolve_device(device)
    return _discriminator(load_checkpoint(checkpoint_path, dev), num_classes, dev)


def _discriminator(state: dict[str, Any], num_classes: int, device: torch.device) -> nn.Module:
    """The discriminator of a loaded checkpoint `state`, on `device`, in evaluation mode."""
    image_shape = tuple(int(v) for v in state["image_shape"])
    discriminator = build_models(state["config"]["model"], image_shape, num_classes).discriminator  # type: ignore[arg-type]
    discriminator.load_state_dict(state["discriminator"])
    return discriminator.to(device).eval()


@torch.no_grad()
def classification_error(classifier: nn.Module, images: torch.Tensor, labels: np.ndarray, batch: int = 1000) -> float:
    """The fraction of `images` whose most likely of the K classes (`class_logits`) is not their label."""
    device = next(classifier.parameters()).device
    wrong = 0
    for start in range(0, len(images), batch):
        logits = classifier.class_logits(images[start : start + batch].to(device, torch.float32))
        wrong += int((logits.argmax(1).cpu().numpy() != labels[start : start + batch]).sum())
    return wrong / len(images)


def supervised_baseline(
    model: str,
    images: torch.Tensor,
    labels: np.ndarray,
    num_classes: int,
    seed: int,
    steps: int = BASELINE_STEPS,
    device: str = "auto",
) -> nn.Module:
    """`model`'s discriminator trained as a plain classifier on the labelled `images` alone (cross-entropy, Adam
    3e-3 with beta1 0.5 as the semi-supervised run, batches of 100 drawn with replacement by `seed`)."""
    dev = resolve_device(device)
    torch.manual_seed(seed)
    classifier = build_models(model, tuple(images.shape[1:]), num_classes).discriminator.to(dev).train()  # type: ignore[arg-type]
    optimizer = torch.optim.Adam(classifier.parameters(), lr=3e-3, betas=(0.5, 0.999))
    images = images.to(dev, torch.float32)
    targets = torch.as_tensor(labels, device=dev, dtype=torch.long)
    for _ in range(steps):
        rows = torch.randint(len(images), (min(100, len(images)),), device=dev)
        loss = labelled_loss(classifier.class_logits(images[rows]), targets[rows])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return classifier.eval()


def semi_supervised_scores(
    checkpoint_path: str | os.PathLike[str],
    train: tuple[torch.Tensor, np.ndarray],
    test: tuple[torch.Tensor, np.ndarray],
    num_classes: int,
    device: str = "auto",
) -> dict[str, Any]:
    """`ssl_test_error` (the run's discriminator as a K-way classifier of the test images) and
    `supervised_baseline_error` (the same network trained on the run's labelled subset alone), with that subset's size
    and the baseline's seconds. `train` and `test` are (images, labels) of those splits."""
    subset = read_labelled_subset(Path(checkpoint_path).parent)
    dev = resolve_device(device)
    state = load_checkpoint(checkpoint_path, dev)
    config = state["config"]
    discriminator = _discriminator(state, num_classes, dev)
    started = time.perf_counter()
    baseline = supervised_baseline(
        config["model"], train[0][subset], train[1][subset], num_classes, int(config["seed"]), device=str(dev)
    )
    return {
        "ssl_test_error": classification_error(discriminator, *test),
        "supervised_baseline_error": classification_error(baseline, *test),
        "labelled_images": len(subset),
        "baseline_seconds": time.perf_counter() - started,
    }
