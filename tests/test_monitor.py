"""The validation monitor (gan_core.monitor): its estimates in the history, the best checkpoint kept beside the last,
and both through a resume, for a run alone and for seeds stacked as one batched model."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from gan_core.checkpoint import load_checkpoint
from gan_core.config import RuntimeOptions, default_train_config
from gan_core.data import load_split
from gan_core.layout import best_checkpoint_file, tensorboard_dir
from gan_core.monitor import MONITOR_KEY, ValidationMonitor, best_monitored
from gan_core.sample import load_generator
from gan_core.tensorboard import MONITOR_TAG
from gan_core.train import train_gan, train_seeds

QUIET = RuntimeOptions(progress=False, checkpoint_every=1, tensorboard=False)


@pytest.fixture(scope="module")
def digits_valid(digits_h5):  # noqa: ANN001, ANN201
    return load_split(digits_h5, "valid")


def monitored(epochs: int, seed: int = 0):  # noqa: ANN201
    # digits' recipe on 320 images (10 steps an epoch), an estimate every epoch on 200 samples
    return default_train_config(
        "paper_mlp",
        dataset="digits",
        epochs=epochs,
        seed=seed,
        max_train_images=320,
        monitor_every=1,
        monitor_samples=200,
    )


def test_the_best_estimate_keeps_its_checkpoint_and_resumes(digits_train, digits_valid, tmp_path) -> None:
    config = dataclasses.replace(monitored(epochs=6), monitor_every=2)  # epochs 2, 4 and 6
    stopped = train_gan(
        config,
        digits_train,
        tmp_path / "run",
        dataclasses.replace(QUIET, stop_after_epoch=3),
        monitor_images=digits_valid,
    )
    assert stopped.epochs == 3 and not stopped.finished
    resumed = train_gan(config, digits_train, tmp_path / "run", QUIET, monitor_images=digits_valid)
    uninterrupted = train_gan(config, digits_train, tmp_path / "alone", QUIET, monitor_images=digits_valid)
    # every epoch estimated; a resumed run alone is bit-identical to the uninterrupted one, its estimates too
    estimates = [row.get(MONITOR_KEY) for row in resumed.history]
    assert estimates == [row.get(MONITOR_KEY) for row in uninterrupted.history]
    assert [row["epoch"] for row in resumed.history if MONITOR_KEY in row] == [2, 4, 6]
    estimates = [estimate for estimate in estimates if estimate is not None]
    best_epoch, best_estimate = best_monitored(resumed.history)
    assert best_estimate == max(estimates)
    best = load_checkpoint(best_checkpoint_file(tmp_path / "run"))
    assert best["epoch"] == best_epoch and best["history"][-1][MONITOR_KEY] == best_estimate
    again = load_checkpoint(best_checkpoint_file(tmp_path / "alone"))
    for part in ("generator", "generator_average"):
        assert all(torch.equal(best[part][key], again[part][key]) for key in again[part])
    last = load_checkpoint(resumed.checkpoint_path)
    assert last["epoch"] == 6
    # the kept checkpoint samples as its epoch did: the estimate of its generator is the one recorded (the same
    # computation on the same weights: up to the order of the Parzen sums on another thread count, 1e-6 nats)
    loaded = load_generator(best_checkpoint_file(tmp_path / "run"))
    monitor = ValidationMonitor(digits_valid, torch.device("cpu"))
    assert monitor.estimate(config, loaded.generator, loaded.noise_dim) == pytest.approx(best_estimate, abs=1e-6)


def test_stacked_seeds_each_keep_their_best_checkpoint(digits_train, digits_valid, tmp_path) -> None:
    configs = [monitored(epochs=3, seed=seed) for seed in (0, 1)]
    dirs = [tmp_path / "seed0", tmp_path / "seed1"]
    options = dataclasses.replace(QUIET, stack_seeds=True, tensorboard=True)
    outcomes = train_seeds(configs, digits_train, dirs, options, monitor_images=digits_valid)
    events = EventAccumulator(str(tensorboard_dir(dirs[1])), size_guidance={"scalars": 0})
    events.Reload()
    shown = [(event.step, event.value) for event in events.Scalars(MONITOR_TAG)]
    assert shown == [(row["epoch"], pytest.approx(row[MONITOR_KEY])) for row in outcomes[1].history]
    for outcome, run_dir in zip(outcomes, dirs, strict=True):
        best_epoch, best_estimate = best_monitored(outcome.history)
        best = load_checkpoint(best_checkpoint_file(run_dir))
        assert best["epoch"] == best_epoch and best["history"][-1][MONITOR_KEY] == best_estimate
    assert outcomes[0].history[-1][MONITOR_KEY] != outcomes[1].history[-1][MONITOR_KEY]  # each seed its own


def test_the_best_of_a_history_skips_epochs_not_monitored_and_nan() -> None:
    history = [{"epoch": 1}, {"epoch": 2, MONITOR_KEY: float("nan")}, {"epoch": 3, MONITOR_KEY: 5.0}]
    assert best_monitored(history + [{"epoch": 4, MONITOR_KEY: 5.0}]) == (3, 5.0)  # the earliest of equals
    assert best_monitored(history[:2]) is None


def test_a_monitor_without_validation_images_is_refused_in_one_line(digits_train, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"^monitor_every=1 estimates on validation images: pass monitor_images"):
        train_gan(monitored(epochs=1), digits_train, tmp_path / "run", QUIET)
    with pytest.raises(ValueError, match=r"^monitor_sigma must be positive"):
        dataclasses.replace(monitored(epochs=1), monitor_sigma=0.0).validate()
