"""Models, losses and the training loop on small real data (digits, a few thousand MNIST images), on the CPU."""

from __future__ import annotations

import dataclasses
import math
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gan_core.checkpoint import TrainingInterrupted, load_checkpoint
from gan_core.config import RuntimeOptions, TrainConfig, default_train_config
from gan_core.data import load_split, write_dataset_h5
from gan_core.losses import LOSSES
from gan_core.models import MODELS, Maxout, build_models, init_output_bias_from_marginals, sample_noise
from gan_core.sample import asked_labels, generate, generate_from_noise, load_generator
from gan_core.sources import DATASETS, build_splits, fetch_raw
from gan_core.train import TrainingDiverged, train_gan
from gan_core.updates import learning_rate, paper_learning_rate, paper_momentum

QUIET = RuntimeOptions(progress=False, checkpoint_every=1)


def state_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# Every model with every loss, but the 64-million-weight paper_mlp_large with the default loss only: a loss acts on D's
# logits alone, the same for every model, and each paper_mlp_large case costs about 15 s of the suite.
MODEL_LOSS_CASES = [(m, loss) for m in MODELS for loss in LOSSES if m != "paper_mlp_large" or loss == "non_saturating"]


def refusal(model: str, loss: str) -> str | None:
    """What TrainConfig says of a model and loss that do not go together (None: they do)."""
    spec, objective = MODELS[model], LOSSES[loss]
    if spec.recipe.get("n_discriminators", 1) > 1 and objective.penalty is not None:
        return "n_discriminators > 1 averages plain losses"
    if spec.semi_supervised and not objective.probabilistic:
        return "is semi-supervised: its D(x) is a probability"
    if spec.bidirectional and (not objective.probabilistic or objective.feature_loss is not None):
        return "(BiGAN) trains with update='alternating'"
    if objective.feature_loss is not None and not spec.semi_supervised:
        return "matches D's features, which only a semi-supervised model's D has"
    return None


@pytest.mark.parametrize(("model", "loss"), MODEL_LOSS_CASES)
def test_each_model_and_loss_trains_with_finite_losses(digits_train, digits_labels, tmp_path, model, loss) -> None:
    if (refused := refusal(model, loss)) is not None:
        with pytest.raises(ValueError, match=re.escape(refused)):
            default_train_config(model, loss)
        return
    config = default_train_config(model, loss, epochs=2, batch_size=64, max_train_images=320)
    labels = digits_labels if MODELS[model].conditional or MODELS[model].semi_supervised else None
    options = dataclasses.replace(QUIET, checkpoint_every=2)  # one save
    result = train_gan(config, digits_train, tmp_path, options, train_labels=labels, num_classes=10)
    assert result.epochs == 2 and result.steps == 2 * (320 // 64 // config.d_steps)
    for record in result.history:
        assert all(math.isfinite(record[k]) for k in ("d_loss", "g_loss", "d_real", "d_fake"))
    samples = generate(load_generator(result.checkpoint_path, "cpu"), 50, seed=0)
    assert samples.shape == (50, 1, 8, 8) and samples.min() >= 0 and samples.max() <= 1


def test_paper_mlp_matches_the_released_architecture(digits_train) -> None:
    pair = build_models("paper_mlp", (1, 28, 28))
    g_linears = [m for m in pair.generator.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in g_linears] == [(100, 1200), (1200, 1200), (1200, 784)]
    assert all(float(m.weight.detach().abs().max()) <= 0.05 for m in g_linears)
    maxouts = [m for m in pair.discriminator.modules() if isinstance(m, Maxout)]
    assert [(m.linear.in_features, m.units, m.pieces) for m in maxouts] == [(784, 240, 5), (240, 240, 5)]
    d_linears = [m for m in pair.discriminator.modules() if isinstance(m, torch.nn.Linear)]
    assert all(float(m.weight.detach().abs().max()) <= 0.005 for m in d_linears)
    dropouts = [m.p for m in pair.discriminator.modules() if isinstance(m, torch.nn.Dropout)]
    assert dropouts == pytest.approx([0.2, 0.5, 0.5])
    small = build_models("paper_mlp", (1, 8, 8)).generator
    init_output_bias_from_marginals(small, digits_train)
    mean = digits_train.flatten(1).double().mean(0).clamp(1e-7, 1 - 1e-7).float()
    torch.testing.assert_close(torch.sigmoid(small.output.bias), mean, rtol=1e-4, atol=1e-9)
    never_lit_logit = math.log(1e-7 / (1 - 1e-7))
    assert float(small.output.bias.detach().min()) == pytest.approx(never_lit_logit, rel=1e-5)
    large = build_models("paper_mlp_large", (3, 32, 32))
    assert large.generator(torch.zeros(2, 100)).shape == (2, 3, 32, 32)


def test_paper_schedules() -> None:
    config = TrainConfig()
    assert paper_momentum(config, 1) == 0.5 and paper_momentum(config, 250) == pytest.approx(0.7)
    assert paper_momentum(config, 125) == pytest.approx(0.5 + 0.2 * 124 / 249)
    assert paper_learning_rate(config, 0) == 0.1
    assert paper_learning_rate(config, 50_000) == pytest.approx(0.1 / 1.000004**50_000)
    assert paper_learning_rate(config, 10**9) == 1e-6


def test_learning_rate_anneals_linearly_over_the_last_fraction(digits_train, tmp_path) -> None:
    adam = TrainConfig(optimizer="adam", learning_rate=2e-4, lr_anneal_fraction=0.5)
    rates = [learning_rate(adam, step, 100) for step in (0, 49, 50, 75, 99)]
    assert rates == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4, 4e-6])
    paper, off = TrainConfig(lr_anneal_fraction=0.25), TrainConfig()
    assert learning_rate(paper, 90, 100) == pytest.approx(paper_learning_rate(paper, 90) * 10 / 25)
    assert learning_rate(off, 90, 100) == paper_learning_rate(off, 90)  # off: exactly the paper's rate
    with pytest.raises(ValueError, match="lr_anneal_fraction must be in"):
        TrainConfig(lr_anneal_fraction=1.5).validate()
    # in a run (4 epochs of 4 updates, the last 8 annealed), each epoch records its last update's rate
    config = TrainConfig(epochs=4, max_train_images=400, lr_anneal_fraction=0.5)
    history = train_gan(config, digits_train, tmp_path / "run", QUIET).history
    full = [paper_learning_rate(config, step) for step in (3, 7, 11, 15)]
    expected = [full[0], full[1], full[2] * 5 / 8, full[3] * 1 / 8]
    assert [epoch["learning_rate"] for epoch in history] == pytest.approx(expected)
    # the ramp spans the configured epochs, so an annealed run cannot be extended (the rate would jump back up)
    with pytest.raises(ValueError, match="differing: epochs"):
        train_gan(dataclasses.replace(config, epochs=5), digits_train, tmp_path / "run", QUIET)


def test_same_seed_gives_bit_identical_weights_and_samples(digits_train, tmp_path) -> None:
    config = TrainConfig(epochs=2, max_train_images=400)
    first = train_gan(config, digits_train, tmp_path / "a", QUIET)
    second = train_gan(config, digits_train, tmp_path / "b", QUIET)
    a, b = load_checkpoint(first.checkpoint_path), load_checkpoint(second.checkpoint_path)
    assert state_equal(a["generator"], b["generator"]) and state_equal(a["discriminator"], b["discriminator"])
    samples_a = generate(load_generator(first.checkpoint_path, "cpu"), 100, seed=7)
    samples_b = generate(load_generator(second.checkpoint_path, "cpu"), 100, seed=7)
    np.testing.assert_array_equal(samples_a, samples_b)
    other = train_gan(TrainConfig(epochs=2, max_train_images=400, seed=1), digits_train, tmp_path / "c", QUIET)
    assert not state_equal(a["generator"], load_checkpoint(other.checkpoint_path)["generator"])


def test_killed_and_resumed_run_equals_uninterrupted(digits_train, tmp_path) -> None:
    config = TrainConfig(epochs=4, max_train_images=600)
    whole = train_gan(config, digits_train, tmp_path / "whole", QUIET)
    stopped = train_gan(config, digits_train, tmp_path / "resumed", RuntimeOptions(progress=False, stop_after_epoch=2))
    assert not stopped.finished and load_checkpoint(stopped.checkpoint_path)["epoch"] == 2
    resumed = train_gan(config, digits_train, tmp_path / "resumed", QUIET)
    assert resumed.resumed_from_epoch == 2 and resumed.epochs == 4
    a, b = load_checkpoint(whole.checkpoint_path), load_checkpoint(resumed.checkpoint_path)
    assert state_equal(a["generator"], b["generator"]) and state_equal(a["discriminator"], b["discriminator"])
    # a finished run is returned as it is, without training
    again = train_gan(config, digits_train, tmp_path / "whole", QUIET)
    assert again.resumed_from_epoch == 4 and again.steps == whole.steps


def test_time_limit_stops_after_a_checkpointed_epoch_and_the_run_resumes(digits_train, tmp_path) -> None:
    config = TrainConfig(epochs=3, max_train_images=300)
    stopped = train_gan(config, digits_train, tmp_path, RuntimeOptions(progress=False, stop_after_time=0.0))
    assert not stopped.finished and stopped.epochs == 1
    assert load_checkpoint(stopped.checkpoint_path)["epoch"] == 1
    resumed = train_gan(config, digits_train, tmp_path, QUIET)
    assert resumed.finished and resumed.resumed_from_epoch == 1 and resumed.epochs == 3


def test_resume_refuses_other_settings(digits_train, tmp_path) -> None:
    train_gan(TrainConfig(epochs=2, max_train_images=300), digits_train, tmp_path, QUIET)
    with pytest.raises(ValueError, match="trained with other settings.*differing: learning_rate"):
        train_gan(TrainConfig(epochs=2, max_train_images=300, learning_rate=0.05), digits_train, tmp_path, QUIET)
    with pytest.raises(ValueError, match="already at epoch 2, past the requested epochs=1"):
        train_gan(TrainConfig(epochs=1, max_train_images=300), digits_train, tmp_path, QUIET)


def test_raising_epochs_extends_a_finished_run_to_the_uninterrupted_result(digits_train, tmp_path) -> None:
    whole = train_gan(TrainConfig(epochs=3, max_train_images=400), digits_train, tmp_path / "whole", QUIET)
    train_gan(TrainConfig(epochs=2, max_train_images=400), digits_train, tmp_path / "extended", QUIET)
    extended = train_gan(TrainConfig(epochs=3, max_train_images=400), digits_train, tmp_path / "extended", QUIET)
    assert extended.resumed_from_epoch == 2 and extended.epochs == 3 and extended.steps == whole.steps
    a, b = load_checkpoint(whole.checkpoint_path), load_checkpoint(extended.checkpoint_path)
    assert state_equal(a["generator"], b["generator"]) and state_equal(a["discriminator"], b["discriminator"])
    assert b["config"]["epochs"] == 3


def test_nan_in_data_stops_with_step_and_keeps_checkpoint(digits_train, tmp_path) -> None:
    config = TrainConfig(epochs=3, max_train_images=500)
    train_gan(config, digits_train, tmp_path, RuntimeOptions(progress=False, stop_after_epoch=1))
    good = (tmp_path / "checkpoint.pt").read_bytes()
    poisoned = digits_train.clone()
    poisoned[:500:7] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at step \d+ \(epoch 2\).*last good checkpoint"):
        train_gan(config, poisoned, tmp_path, QUIET)
    assert (tmp_path / "checkpoint.pt").read_bytes() == good


def test_huge_learning_rate_diverges_with_clear_error(digits_train, tmp_path) -> None:
    config = TrainConfig(epochs=5, max_train_images=500, learning_rate=1e12)
    with pytest.raises(TrainingDiverged, match=r"non-finite loss at step \d+"):
        train_gan(config, digits_train, tmp_path, QUIET)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"model": "resnet"}, "unknown model 'resnet'"),
        ({"loss": "lsgan"}, "unknown loss 'lsgan'"),
        ({"learning_rate": 0.0}, "learning_rate must be positive"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"d_steps": 2}, "update='simultaneous' needs d_steps=1"),
        ({"optimizer": "rmsprop"}, "unknown optimizer"),
    ],
)
def test_bad_settings_are_rejected_before_training(overrides, message) -> None:
    with pytest.raises(ValueError, match=message):
        TrainConfig(**overrides).validate()


def test_mnist_subset_trains(tmp_path: Path, mnist_dir: Path) -> None:
    manifest = fetch_raw("mnist", tmp_path / "raw", str(mnist_dir))
    write_dataset_h5(
        tmp_path / "mnist.h5",
        "mnist",
        build_splits("mnist", tmp_path / "raw"),
        manifest["files"],
        DATASETS["mnist"].split_definition,
    )
    train = load_split(tmp_path / "mnist.h5", "train", limit=3000)
    result = train_gan(TrainConfig(epochs=2), train, tmp_path / "run", QUIET)
    assert result.steps == 60 and result.history[-1]["images_per_second"] > 0
    # D separates real from generated better than chance once it has trained a little
    assert result.history[-1]["d_real"] > result.history[-1]["d_fake"]
    samples = generate(load_generator(result.checkpoint_path, "cpu"), 20, seed=0)
    assert samples.shape == (20, 1, 28, 28)


def test_bf16_autocast_runs_on_the_cpu(digits_train, tmp_path) -> None:
    fp32 = train_gan(TrainConfig(epochs=1, max_train_images=400), digits_train, tmp_path / "fp32", QUIET)
    bf16 = train_gan(TrainConfig(epochs=1, max_train_images=400, bf16=True), digits_train, tmp_path / "bf16", QUIET)
    assert all(math.isfinite(bf16.final[k]) for k in ("d_loss", "g_loss", "d_real", "d_fake"))
    weights_fp32 = load_checkpoint(fp32.checkpoint_path)["generator"]
    weights_bf16 = load_checkpoint(bf16.checkpoint_path)["generator"]
    assert all(w.dtype == torch.float32 for w in weights_bf16.values())  # master weights stay float32
    assert not state_equal(weights_fp32, weights_bf16)  # the matmuls really ran in bfloat16


def test_cuda_graph_settings_are_checked_and_the_cpu_runs_eagerly(digits_train, tmp_path) -> None:
    graph = RuntimeOptions(progress=False, cuda_graph=True, device="cpu")
    with pytest.raises(ValueError, match="update='alternating', optimizer='adam'"):
        train_gan(default_train_config("dcgan", epochs=1), digits_train, tmp_path / "dcgan", graph)
    with pytest.raises(ValueError, match="exclude each other"):
        train_gan(TrainConfig(epochs=1), digits_train, tmp_path / "both", dataclasses.replace(graph, compile=True))
    config = TrainConfig(epochs=2, max_train_images=400)
    eager = train_gan(config, digits_train, tmp_path / "eager", dataclasses.replace(QUIET, device="cpu"))
    ignored = train_gan(config, digits_train, tmp_path / "graph", graph)
    a, b = load_checkpoint(eager.checkpoint_path), load_checkpoint(ignored.checkpoint_path)
    assert state_equal(a["generator"], b["generator"]) and state_equal(a["discriminator"], b["discriminator"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (CUDA graphs)")
def test_cuda_graph_replay_trains_like_the_eager_loop(digits_train, tmp_path) -> None:
    config = TrainConfig(epochs=3, max_train_images=600)  # 6 steps per epoch: 3 eager warm-up steps, then replays
    cuda = RuntimeOptions(progress=False, device="cuda")
    eager = train_gan(config, digits_train, tmp_path / "eager", cuda)
    graphs = [
        train_gan(config, digits_train, tmp_path / f"graph{i}", dataclasses.replace(cuda, cuda_graph=True))
        for i in range(2)
    ]
    states = [load_checkpoint(r.checkpoint_path) for r in (eager, *graphs)]
    # replays are deterministic: two graph runs give bit-identical weights
    assert state_equal(states[1]["generator"], states[2]["generator"])
    # and follow the eager loop: same noise and dropout streams, only the optimiser's rounding differs
    for part in ("generator", "discriminator"):
        for key, weight in states[0][part].items():
            torch.testing.assert_close(states[1][part][key], weight, rtol=1e-4, atol=1e-5)
    for eager_epoch, graph_epoch in zip(eager.history, graphs[0].history, strict=True):
        assert graph_epoch["d_loss"] == pytest.approx(eager_epoch["d_loss"], rel=1e-4)
    # the checkpoint stores plain float hyper-parameters, so an eager run can resume it
    assert isinstance(states[1]["g_optimizer"]["param_groups"][0]["lr"], float)


def test_stop_request_mid_epoch_checkpoints_and_resumes_bit_identically(digits_train, tmp_path) -> None:
    config = TrainConfig(epochs=3, max_train_images=600)  # 6 steps per epoch
    whole = train_gan(config, digits_train, tmp_path / "whole", QUIET)
    polls = iter(range(1000))
    stop_after_nine_steps = dataclasses.replace(QUIET, stop_requested=lambda: next(polls) >= 8)
    with pytest.raises(TrainingInterrupted, match="checkpoint .* written"):
        train_gan(config, digits_train, tmp_path / "split", stop_after_nine_steps)
    saved = load_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert saved["epoch"] == 1 and saved["step"] == 9 and saved["epoch_progress"]["next_step"] == 3
    logs: list[str] = []
    resumed = train_gan(config, digits_train, tmp_path / "split", QUIET, log=logs.append)
    assert any("+ 3 steps of epoch 2, step 9" in line for line in logs)
    a, b = load_checkpoint(whole.checkpoint_path), load_checkpoint(resumed.checkpoint_path)
    assert state_equal(a["generator"], b["generator"]) and state_equal(a["discriminator"], b["discriminator"])


def test_time_cadence_checkpoints_inside_an_epoch(digits_train, tmp_path) -> None:
    every_step = dataclasses.replace(QUIET, checkpoint_every=100, checkpoint_seconds=0.0, stop_after_epoch=None)
    config = TrainConfig(epochs=2, max_train_images=600)
    polls = iter(range(1000))
    with pytest.raises(TrainingInterrupted):
        train_gan(
            config,
            digits_train,
            tmp_path / "run",
            dataclasses.replace(every_step, stop_requested=lambda: next(polls) >= 4),
        )
    # the time cadence (0 s) wrote a checkpoint after every step, so the stop lost nothing
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 5
    assert load_checkpoint(tmp_path / "run" / "checkpoint.prev.pt")["step"] == 4


def test_a_truncated_checkpoint_is_named_and_the_previous_one_used(digits_train, tmp_path) -> None:
    config = TrainConfig(epochs=3, max_train_images=400)
    whole = train_gan(dataclasses.replace(config, epochs=4), digits_train, tmp_path / "whole", QUIET)
    train_gan(config, digits_train, tmp_path / "run", QUIET)  # checkpoints after epochs 1, 2, 3
    current = tmp_path / "run" / "checkpoint.pt"
    current.write_bytes(current.read_bytes()[: current.stat().st_size // 2])  # a crash mid-write on a bad disk
    logs: list[str] = []
    resumed = train_gan(dataclasses.replace(config, epochs=4), digits_train, tmp_path / "run", QUIET, log=logs.append)
    assert any(f"checkpoint {current} is unreadable" in line for line in logs)
    assert any("resuming from" in line and "epoch 2/4" in line for line in logs)
    a, b = load_checkpoint(whole.checkpoint_path), load_checkpoint(resumed.checkpoint_path)
    assert state_equal(a["generator"], b["generator"])  # epochs 3 and 4 were trained again, to the same weights


def test_a_second_trainer_of_one_run_directory_waits_and_finds_it_finished(digits_train, tmp_path) -> None:
    from gan_core.locks import exclusive

    config = TrainConfig(epochs=1, max_train_images=200)
    logs: list[str] = []
    holder_done = threading.Event()

    def hold_then_train() -> None:
        with exclusive(tmp_path / "run" / "checkpoint.pt", holder="the first trainer"):
            holder_done.wait(10)
            train_gan(config, digits_train, tmp_path / "elsewhere", QUIET)

    thread = threading.Thread(target=hold_then_train)
    thread.start()
    time.sleep(0.5)
    waiter = threading.Thread(target=lambda: train_gan(config, digits_train, tmp_path / "run", QUIET, log=logs.append))
    waiter.start()
    time.sleep(1.0)
    assert any("waiting for" in line and "the first trainer" in line for line in logs)
    holder_done.set()
    thread.join()
    waiter.join()
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["epoch"] == 1


def test_conditional_models_draw_the_asked_labels(digits_train, digits_labels, tmp_path) -> None:
    """A conditional generator's output depends on the label: the same noise drawn for other labels gives other
    images, `generate` draws for `asked_labels`, and training without labels is refused."""
    for model in [name for name, spec in MODELS.items() if spec.conditional]:
        config = default_train_config(model, epochs=1, batch_size=64, max_train_images=640)
        with pytest.raises(ValueError, match="conditional"):
            train_gan(config, digits_train, tmp_path / model, QUIET)
        result = train_gan(config, digits_train, tmp_path / model, QUIET, train_labels=digits_labels, num_classes=10)
        loaded = load_generator(result.checkpoint_path, "cpu")
        assert loaded.num_classes == 10
        noise = torch.Generator().manual_seed(0)
        latents = sample_noise(20, loaded.noise_dim, loaded.noise, "cpu", generator=noise)
        asked = asked_labels(20, 10)
        assert list(asked) == [*range(10), *range(10)]
        as_asked = generate_from_noise(loaded, latents, asked)
        shifted = generate_from_noise(loaded, latents, (asked + 1) % 10)
        assert not np.allclose(as_asked, shifted), model  # the label reaches the generator
        drawn = generate(loaded, 20, seed=0, batch_size=20)
        again = generate_from_noise(
            loaded, sample_noise(20, loaded.noise_dim, loaded.noise, "cpu", generator=torch.Generator().manual_seed(0))
        )
        np.testing.assert_array_equal(drawn, again)  # generate() draws for asked_labels(20, 10)
