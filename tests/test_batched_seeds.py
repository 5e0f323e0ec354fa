"""Seeds trained in one loop (gan_core.train.train_seeds) against the same seeds trained alone.

In turn (the CPU's default, any model): the same weights, averages, optimiser states, statistics and random states;
resume from per-seed checkpoints at different points; a diverging seed stopped alone. Stacked as one batched model
(gan_core.batched, CUDA's default, forced here on the CPU): one seed the run alone up to rounding, several seeds
distinct runs whose checkpoints resume alone. The gan_model asset training its seeds together."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from assets.partitions import dataset_experiment_key
from gan_core.batched import (
    STEP_STREAM,
    CounterRandom,
    keeps,
    noise_from_uniform,
    stacks_seeds,
    uniform_from_bits,
    why_not_batched,
)
from gan_core.checkpoint import TrainingInterrupted, checkpoint_weights_hash, load_checkpoint
from gan_core.config import RuntimeOptions, default_train_config
from gan_core.losses import get_loss
from gan_core.reproduction import CHECKPOINTS, best_and_last
from gan_core.train import TrainingDiverged, train_gan, train_seeds
from gan_core.updates import Players, apply_gradients, learning_rate, paper_momentum
from tests.helpers import digits_graph

QUIET = RuntimeOptions(progress=False, checkpoint_every=1)


def configs(epochs: int, seeds: tuple[int, ...] = (0, 1, 2)) -> list:
    # digits' recipe (batch 32, the generator's average, so every part of a checkpoint is exercised) on 320 images:
    # 10 steps an epoch
    return [
        default_train_config("paper_mlp", dataset="digits", epochs=epochs, seed=seed, max_train_images=320)
        for seed in seeds
    ]


def assert_same_run(batched_path, alone_path, average: bool = True) -> None:
    batched, alone = load_checkpoint(batched_path), load_checkpoint(alone_path)
    for part in ("generator", "discriminator", "generator_average")[: 3 if average else 2]:
        assert batched[part].keys() == alone[part].keys()
        for key in alone[part]:
            assert torch.equal(batched[part][key], alone[part][key]), f"{part}.{key}"
    for part in ("g_optimizer", "d_optimizer"):  # every state tensor: SGD's velocities, Adam's moments and steps
        states, batched_states = alone[part]["state"], batched[part]["state"]
        assert states.keys() == batched_states.keys()
        for key, state in states.items():
            assert state.keys() == batched_states[key].keys()
            assert all(torch.equal(batched_states[key][name], value) for name, value in state.items()), f"{part} {key}"
    assert torch.equal(batched["rng_cpu"], alone["rng_cpu"])
    keys = ("epoch", "step", "d_loss", "g_loss", "d_real", "d_fake", "learning_rate", "momentum")
    assert [{k: r[k] for k in keys} for r in batched["history"]] == [{k: r[k] for k in keys} for r in alone["history"]]


def test_seeds_trained_as_one_batch_are_bit_identical_to_seeds_trained_alone(digits_train, tmp_path) -> None:
    wanted = configs(epochs=2)
    assert why_not_batched(wanted[0]) is None
    outcomes = train_seeds(wanted, digits_train, [tmp_path / f"batched{c.seed}" for c in wanted], QUIET)
    assert [r.steps for r in outcomes] == [2 * 10] * 3
    for config, outcome in zip(wanted, outcomes, strict=True):
        alone = train_gan(config, digits_train, tmp_path / f"alone{config.seed}", QUIET)
        assert_same_run(outcome.checkpoint_path, alone.checkpoint_path)
    # different seeds are different models (not one model copied three times)
    assert len({checkpoint_weights_hash(r.checkpoint_path) for r in outcomes}) == 3


def test_batched_seeds_resume_per_seed_from_different_points(digits_train, tmp_path) -> None:
    wanted = configs(epochs=3, seeds=(0, 1))
    dirs = [tmp_path / f"seed{c.seed}" for c in wanted]
    stopped = train_seeds(wanted, digits_train, dirs, RuntimeOptions(progress=False, stop_after_epoch=1))
    assert [r.epochs for r in stopped] == [1, 1] and not any(r.finished for r in stopped)
    # seed 0 goes on alone for an epoch: the seeds now stand at epochs 2 and 1, and train as two batches
    train_gan(wanted[0], digits_train, dirs[0], RuntimeOptions(progress=False, stop_after_epoch=2))
    resumed = train_seeds(wanted, digits_train, dirs, QUIET)
    assert [r.resumed_from_epoch for r in resumed] == [2, 1] and all(r.finished for r in resumed)
    for config, outcome in zip(wanted, resumed, strict=True):
        uninterrupted = train_gan(config, digits_train, tmp_path / f"alone{config.seed}", QUIET)
        assert_same_run(outcome.checkpoint_path, uninterrupted.checkpoint_path)


def test_a_diverging_seed_stops_alone_and_keeps_its_last_good_checkpoint(digits_train, tmp_path) -> None:
    wanted = configs(epochs=2, seeds=(0, 1))
    dirs = [tmp_path / f"seed{c.seed}" for c in wanted]
    train_seeds(wanted, digits_train, dirs, RuntimeOptions(progress=False, stop_after_epoch=1))
    poisoned = dirs[1] / "checkpoint.pt"
    state = load_checkpoint(poisoned)
    state["discriminator"]["net.5.weight"].fill_(float("nan"))  # D's logit: every loss of seed 1 is NaN
    torch.save(state, poisoned)
    before = poisoned.read_bytes()

    outcomes = train_seeds(wanted, digits_train, dirs, QUIET)

    assert isinstance(outcomes[1], TrainingDiverged)
    assert str(outcomes[1]).startswith("seed 1: non-finite loss at step 11 (epoch 2)")
    assert f"its last good checkpoint {poisoned} is kept" in str(outcomes[1])
    assert poisoned.read_bytes() == before  # not overwritten by the diverged weights
    assert outcomes[0].finished and outcomes[0].epochs == 2
    assert all(math.isfinite(r["d_loss"]) for r in outcomes[0].history)
    alone = train_gan(wanted[0], digits_train, tmp_path / "alone0", QUIET)
    assert_same_run(outcomes[0].checkpoint_path, alone.checkpoint_path)


def test_seeds_of_a_model_that_cannot_be_stacked_train_in_turn_each_as_alone(
    digits_train, digits_labels, tmp_path
) -> None:
    # the conditional model, Adam and the alternating update: none of it can be stacked, all of it takes turns
    wanted = [
        default_train_config(
            "paper_mlp_cond", epochs=2, seed=seed, max_train_images=320, optimizer="adam", update="alternating"
        )
        for seed in (0, 1)
    ]
    assert why_not_batched(wanted[0]) is not None
    dirs = [tmp_path / f"together{c.seed}" for c in wanted]
    outcomes = train_seeds(wanted, digits_train, dirs, QUIET, train_labels=digits_labels, num_classes=10)
    assert [r.steps for r in outcomes] == [2 * 3] * 2  # 320 images, batch 100 = 3 steps an epoch
    for config, outcome in zip(wanted, outcomes, strict=True):
        alone = train_gan(config, digits_train, tmp_path / f"alone{config.seed}", QUIET, None, digits_labels, 10)
        assert_same_run(outcome.checkpoint_path, alone.checkpoint_path, average=False)
    assert checkpoint_weights_hash(outcomes[0].checkpoint_path) != checkpoint_weights_hash(outcomes[1].checkpoint_path)


def test_sweep_points_with_their_own_learning_rates_and_momentum_train_in_one_loop_each_as_alone(
    digits_train, tmp_path
) -> None:
    base = dict(dataset="digits", epochs=2, max_train_images=320)
    wanted = [
        default_train_config("paper_mlp", **base, seed=0, learning_rate=0.05, momentum_end=0.5),
        default_train_config("paper_mlp", **base, seed=0, learning_rate=0.2),
        default_train_config("paper_mlp", **base, seed=1, loss="minimax", update="alternating"),
    ]
    dirs = [tmp_path / f"point{index}" for index in range(len(wanted))]
    outcomes = train_seeds(wanted, digits_train, dirs, QUIET)
    assert [r.history[-1]["learning_rate"] for r in outcomes[:2]] == [
        pytest.approx(0.05, rel=1e-3),
        pytest.approx(0.2, rel=1e-3),
    ]
    for index, (config, outcome) in enumerate(zip(wanted, outcomes, strict=True)):
        alone = train_gan(config, digits_train, tmp_path / f"alone{index}", QUIET)
        assert_same_run(outcome.checkpoint_path, alone.checkpoint_path)
    with pytest.raises(ValueError, match=r"runs in one loop share `batch_size`; got \[32, 64\]: train them apart"):
        other_batch = default_train_config("paper_mlp", **base, batch_size=64)
        train_seeds([wanted[0], other_batch], digits_train, [tmp_path / "a", tmp_path / "b"], QUIET)


STACKED = RuntimeOptions(progress=False, checkpoint_every=1, stack_seeds=True)


def reference_run(config, images: torch.Tensor) -> Players:
    """`config` trained for its epochs by hand with the players' own modules, the registered loss and the paper's
    optimiser, given the numbers the stacked step draws for its seed (CounterRandom: its noise, its dropout masks, put
    in place by forward hooks on the discriminator's real nn.Dropout modules, and its permutations)."""
    images = images[: config.max_train_images]
    torch.manual_seed(config.seed)
    players = Players.build(config, images)
    generator, discriminator = players.generator.train(), players.discriminator.train()
    masks: list[torch.Tensor] = []
    for module in discriminator.modules():
        if isinstance(module, torch.nn.Dropout):
            keep = 1.0 - module.p
            module.register_forward_hook(lambda _m, args, _out, keep=keep: args[0] * keeps(masks.pop(0), keep) / keep)
    loss, random = get_loss(config.loss), CounterRandom([config.seed], images.device)
    batch, widths = config.batch_size, [64 * config.batch_size, 240 * config.batch_size, 240 * config.batch_size]
    steps = len(images) // batch
    for epoch in range(config.epochs):
        permutation = random.permutations(epoch, len(images))[0]
        momentum = paper_momentum(config, epoch + 1)
        for local_step in range(steps):
            step = epoch * steps + local_step
            counts = [100 * batch, *widths, *widths]
            draws = list(random.bits(STEP_STREAM, step, sum(counts))[0].split(counts))
            noise = noise_from_uniform(uniform_from_bits(draws.pop(0)), config.noise).view(batch, 100)
            masks[:] = [draw.view(batch, -1) for draw in draws]  # D sees the fake batch first
            real = images[permutation[local_step * batch : (local_step + 1) * batch]]
            fake_logits = discriminator(generator(noise))
            terms = loss.discriminator_terms(discriminator(real), fake_logits)
            g_loss = loss.generator_loss(fake_logits)
            d_params, g_params = list(discriminator.parameters()), list(generator.parameters())
            d_grads = torch.autograd.grad(terms.loss, d_params, retain_graph=True)
            g_grads = torch.autograd.grad(g_loss, g_params)
            players.set_hyperparameters(learning_rate(config, step, config.epochs * steps), momentum)
            apply_gradients(players.d_opt, d_params, d_grads)
            apply_gradients(players.g_opt, g_params, g_grads)
            players.update_average()
    return players


def test_each_stacked_slice_is_its_settings_trained_by_hand_with_the_models_own_modules(digits_train, tmp_path) -> None:
    # Three slices of digits' recipe (the generator's average included), each with its own seed, learning rate and
    # momentum schedule, stacked and trained for 2 epochs (20 steps), against each trained by hand through the
    # players' own nn.Modules, the registered loss and PylearnMomentumSGD on the same random numbers. What may differ
    # is rounding: a stacked layer is one batched product (baddbmm) where the modules call addmm, which may sum in
    # another order (weights of size 0.05; a wrong mask, noise, gradient or schedule differs by the learning rate
    # times a gradient, 1e-4 and more after one step, so atol 1e-5 after 20 steps tells them apart).
    base, _ = configs(epochs=2, seeds=(0, 1))
    wanted = [
        base,
        dataclasses.replace(base, seed=1, learning_rate=0.05, momentum_end=0.9, momentum_saturate_epoch=2),
        dataclasses.replace(base, seed=2, learning_rate=0.2),
    ]
    dirs = [tmp_path / f"slice{index}" for index in range(3)]
    outcomes = train_seeds(wanted, digits_train, dirs, STACKED)
    for config, outcome in zip(wanted, outcomes, strict=True):
        saved, expected = load_checkpoint(outcome.checkpoint_path), reference_run(config, digits_train).state()
        for part in ("generator", "discriminator", "generator_average"):
            for key, tensor in expected[part].items():
                torch.testing.assert_close(saved[part][key], tensor, rtol=0, atol=1e-5, msg=f"{part}.{key}")
        for part in ("g_optimizer", "d_optimizer"):
            velocities = [state["velocity"] for state in expected[part]["state"].values()]
            for got, want in zip([s["velocity"] for s in saved[part]["state"].values()], velocities, strict=True):
                torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
            assert saved[part]["param_groups"][0]["lr"] == pytest.approx(expected[part]["param_groups"][0]["lr"])
            assert saved[part]["param_groups"][0]["momentum"] == expected[part]["param_groups"][0]["momentum"]
    assert outcomes[1].history[-1]["momentum"] == pytest.approx(0.9)  # its own schedule, recorded


def test_stacked_runs_resume_exactly_and_a_slice_draws_the_same_in_any_stack(digits_train, tmp_path) -> None:
    # A stacked slice's random numbers are a hash of its seed and the step: a run stopped inside an epoch and resumed
    # stacked with another seed is the run stacked with none. Not bit for bit on every CPU: a stack of two is one
    # batched product of another shape than a stack of one, for which the CPU's BLAS may pick another kernel and sum
    # in another order (on a Xeon with AVX-512 the weights differ in the last bits; on an AVX2 EPYC they were equal).
    # A wrong random stream, mask or resume point differs by the learning rate times a gradient (1e-4 and more after
    # one step), so atol 1e-5 after 20 steps tells them apart.
    seed0, seed1 = configs(epochs=2, seeds=(0, 1))
    (uninterrupted,) = train_seeds([seed0], digits_train, [tmp_path / "alone"], STACKED)
    dirs = [tmp_path / "seed0", tmp_path / "seed1"]
    polls = iter(range(1000))
    stop_mid_epoch = dataclasses.replace(STACKED, stop_requested=lambda: next(polls) == 14)  # step 15 of 20
    with pytest.raises(TrainingInterrupted):
        train_seeds([seed0, seed1], digits_train, dirs, stop_mid_epoch)
    assert load_checkpoint(dirs[0] / "checkpoint.pt")["epoch_progress"]["next_step"] == 5
    resumed = train_seeds([seed0, seed1], digits_train, dirs, STACKED)
    assert resumed[0].resumed_from_epoch == 1 and resumed[0].finished
    got, want = load_checkpoint(resumed[0].checkpoint_path), load_checkpoint(uninterrupted.checkpoint_path)
    for part in ("generator", "discriminator", "generator_average"):
        for key, tensor in want[part].items():
            torch.testing.assert_close(got[part][key], tensor, rtol=0, atol=1e-5, msg=f"{part}.{key}")
    assert [r["step"] for r in got["history"]] == [r["step"] for r in want["history"]]
    for got_epoch, want_epoch in zip(got["history"], want["history"], strict=True):
        for key in ("d_loss", "g_loss", "d_real", "d_fake"):
            assert got_epoch[key] == pytest.approx(want_epoch[key], abs=1e-5), key


def test_a_diverging_stacked_seed_stops_alone_and_the_others_keep_their_own_numbers(digits_train, tmp_path) -> None:
    # Seed 0, the stack's first slice, turns NaN in epoch 2; seed 1 trains on, drawing its own numbers for its own
    # steps: the run seed 1 makes stacked with nobody, up to the rounding of products of another stack's shape (1e-6,
    # as above; numbers drawn for another step would differ by far more).
    wanted = configs(epochs=2, seeds=(0, 1))
    dirs = [tmp_path / "seed0", tmp_path / "seed1"]
    train_seeds(wanted, digits_train, dirs, dataclasses.replace(STACKED, stop_after_epoch=1))
    poisoned = dirs[0] / "checkpoint.pt"
    state = load_checkpoint(poisoned)
    state["discriminator"]["net.5.weight"].fill_(float("nan"))
    torch.save(state, poisoned)
    outcomes = train_seeds(wanted, digits_train, dirs, STACKED)
    assert isinstance(outcomes[0], TrainingDiverged) and outcomes[1].finished
    assert str(outcomes[0]).startswith("seed 0: non-finite loss at step 11 (epoch 2)")
    (alone,) = train_seeds([wanted[1]], digits_train, [tmp_path / "alone1"], STACKED)
    got, want = load_checkpoint(outcomes[1].checkpoint_path), load_checkpoint(alone.checkpoint_path)
    for part in ("generator", "discriminator", "generator_average"):
        for key, tensor in want[part].items():
            torch.testing.assert_close(got[part][key], tensor, rtol=0, atol=1e-6, msg=f"{part}.{key}")


def test_counter_random_numbers_are_uniform_and_each_slices_own() -> None:
    random = CounterRandom([0, 1, 0], torch.device("cpu"))
    draws = random.uniform(STEP_STREAM, 7, 200_000)
    assert torch.equal(draws[0], draws[2]) and not torch.equal(draws[0], draws[1])  # by seed, not by position
    assert torch.equal(CounterRandom([1], torch.device("cpu")).uniform(STEP_STREAM, 7, 200_000)[0], draws[1])
    assert not torch.equal(random.uniform(STEP_STREAM, 8, 200_000)[0], draws[0])  # another step, other numbers
    # 200,000 uniforms: mean 1/2 and variance 1/12 within 5 standard errors; a keep probability of 0.8 kept
    # 0.8 of the time (binomial standard error 0.0009)
    assert float(draws.min()) >= 0.0 and float(draws.max()) < 1.0
    assert abs(float(draws[0].mean()) - 0.5) < 5 * (1 / 12 / 200_000) ** 0.5
    assert abs(float(draws[0].var()) - 1 / 12) < 0.002
    bits = random.bits(STEP_STREAM, 7, 200_000)
    assert torch.equal(keeps(bits, 0.8), uniform_from_bits(bits) < 0.8)  # the decision is the uniform's
    assert abs(float(keeps(bits, 0.8)[0].float().mean()) - 0.8) < 5 * 0.0009
    noise = noise_from_uniform(draws, "gaussian")
    assert abs(float(noise.mean())) < 0.01 and abs(float(noise.std()) - 1.0) < 0.01
    # another step's numbers are not this step's in another order (each element hashed before the step's key)
    # (steps 9748 and 10517 of seed 0 shared every one of 2**18 hashes when the index was not hashed first; by
    # chance two sets of 2**18 hashes of 32 bits share about 16)
    one, other = (set(random.bits(STEP_STREAM, step, 1 << 18)[0].tolist()) for step in (9748, 10517))
    assert len(one & other) < 100
    permutations = random.permutations(0, 1000)
    assert all(torch.equal(p.sort().values, torch.arange(1000)) for p in permutations)


def test_stacked_seeds_are_distinct_runs_whose_checkpoints_resume_alone(digits_train, tmp_path) -> None:
    wanted = configs(epochs=2, seeds=(0, 1, 2))
    dirs = [tmp_path / f"seed{c.seed}" for c in wanted]
    stopped = train_seeds(
        wanted, digits_train, dirs, RuntimeOptions(progress=False, stack_seeds=True, stop_after_epoch=1)
    )
    assert [r.epochs for r in stopped] == [1, 1, 1] and not any(r.finished for r in stopped)
    assert len({checkpoint_weights_hash(r.checkpoint_path) for r in stopped}) == 3
    for config, run_dir in zip(wanted, dirs, strict=True):  # each stacked seed's checkpoint goes on as a run alone
        resumed = train_gan(config, digits_train, run_dir, QUIET)
        assert resumed.resumed_from_epoch == 1 and resumed.finished and resumed.steps == 2 * 10
        assert all(math.isfinite(r["d_loss"]) for r in resumed.history)


def test_settings_that_cannot_be_batched_are_named(digits_train, tmp_path) -> None:
    adam = default_train_config("dcgan", epochs=1)
    assert "optimizer='adam'" in why_not_batched(adam) and "not a plain MLP pair" in why_not_batched(adam)
    conditional = why_not_batched(default_train_config("paper_mlp_cond", epochs=1))
    assert (
        conditional == "model 'paper_mlp_cond' is not a plain MLP pair (its ModelSpec does not declare batchable=True)"
    )
    with pytest.raises(ValueError, match="cannot be trained as one batched model"):  # stacked on request
        train_seeds(
            [adam, default_train_config("dcgan", epochs=1, seed=1)],
            digits_train,
            [tmp_path / "a", tmp_path / "b"],
            RuntimeOptions(stack_seeds=True),
        )
    with pytest.raises(ValueError, match="differ in more than their seed"):  # stacking takes seeds of one config
        train_seeds(
            [
                default_train_config("paper_mlp", epochs=1),
                default_train_config("paper_mlp", epochs=1, noise="gaussian"),
            ],
            digits_train,
            [tmp_path / "a", tmp_path / "b"],
            RuntimeOptions(stack_seeds=True),
        )


def test_sweep_points_stacked_each_follow_their_own_learning_rate_and_momentum(digits_train, tmp_path) -> None:
    # Two stacks sharing their first slice (point a) and differing in the second (b against c, each with its own
    # learning-rate and momentum schedule). The slices are independent: a's weights are the same in both stacks, up
    # to the rounding of the batched products (atol 1e-6: a wrong update differs by the learning rate times a
    # gradient, 1e-4 and more), while b and c followed their own schedules.
    point_a, _ = configs(epochs=2, seeds=(0, 1))
    point_b = dataclasses.replace(point_a, seed=1, learning_rate=0.05, momentum_end=0.9)
    point_c = dataclasses.replace(point_a, seed=1, learning_rate=0.2)
    first = train_seeds([point_a, point_b], digits_train, [tmp_path / "a1", tmp_path / "b"], STACKED)
    second = train_seeds([point_a, point_c], digits_train, [tmp_path / "a2", tmp_path / "c"], STACKED)
    a1, a2 = load_checkpoint(first[0].checkpoint_path), load_checkpoint(second[0].checkpoint_path)
    for part in ("generator", "discriminator", "generator_average"):
        for key, tensor in a1[part].items():
            torch.testing.assert_close(a2[part][key], tensor, rtol=0, atol=1e-6, msg=f"{part}.{key}")
    assert checkpoint_weights_hash(first[1].checkpoint_path) != checkpoint_weights_hash(second[1].checkpoint_path)
    for outcome, config in ((first[1], point_b), (second[1], point_c)):  # each slice's own schedule, recorded
        assert outcome.history[-1]["learning_rate"] == pytest.approx(config.learning_rate, rel=1e-3)
        saved = load_checkpoint(outcome.checkpoint_path)
        assert saved["g_optimizer"]["param_groups"][0]["lr"] == pytest.approx(config.learning_rate, rel=1e-3)
    momentum = {name: run.history[-1]["momentum"] for name, run in (("a", first[0]), ("b", first[1]), ("c", second[1]))}
    assert momentum["b"] > momentum["c"] == momentum["a"]  # b's momentum_end is 0.9; c keeps a's
    # and the policy: CUDA stacks such points by default; a setting outside the slices' keeps them in turn
    assert stacks_seeds([point_a, point_b], RuntimeOptions(), torch.device("cuda"))
    assert not stacks_seeds(
        [point_a, dataclasses.replace(point_b, ema_decay=0.5)], RuntimeOptions(), torch.device("cuda")
    )


@pytest.mark.slow
def test_gan_model_trains_its_seeds_as_one_batch_and_the_report_shows_their_spread(
    digits_train, digits_data, tmp_path
) -> None:
    # the validation monitor on (it leaves the weights as they are: its noise has a generator of its own), so
    # reproduction_scores scores each seed's best and last checkpoints and the report shows Table 1's rows of them
    with digits_graph(digits_data) as (storage, defs, instance):
        monitor = {"monitor_every": 1, "monitor_samples": 100}
        run_config = {
            "ops": {
                "gan_model": {"config": {"epochs": 2, "seeds": [0, 1], **monitor}},
                "generated_samples": {"config": {"count": 1000}},
            }
        }
        result = defs.resolve_job_def("training_job").execute_in_process(
            partition_key=dataset_experiment_key("digits", "paper_mlp"), instance=instance, run_config=run_config
        )
        assert result.success
        messages = [e.user_message for e in instance.all_logs(result.run_id)]
        assert any("seeds [0, 1]: training as one batched model" in m for m in messages)
        runs = storage.layout.trained_runs("digits", "paper_mlp")
        assert [run["seed"] for run in runs] == [0, 1]
        assert all(run["epochs"] == 2 and run["images_per_second"] > 0 for run in runs)  # the batch's own figures
        for run in runs:  # the same weights as the seed trained alone with the asset's settings
            config = default_train_config("paper_mlp", dataset="digits", epochs=2, seed=run["seed"])
            alone = train_gan(config, digits_train, tmp_path / f"alone{run['seed']}", QUIET)
            assert run["weights_hash"] == checkpoint_weights_hash(alone.checkpoint_path)

        scores = storage.layout.read_partition_index("reproduction", "digits", "paper_mlp")["runs"]
        expected = [(seed, kind) for seed in (0, 1) for kind in CHECKPOINTS]
        assert sorted((s["seed"], s["checkpoint"]) for s in scores) == expected
        for score in scores:  # the protocol's sample count, and the checkpoint's own epoch and monitor estimate
            assert score["n_samples"] == 10_000 and score["epoch"] in (1, 2) and score["monitor_ll"] is not None
            run_dir = Path(next(r["checkpoint"] for r in runs if r["seed"] == score["seed"])).parent
            kept = load_checkpoint(best_and_last(run_dir)[score["checkpoint"]])
            assert kept["epoch"] == score["epoch"] and kept["history"][-1]["monitor_ll"] == score["monitor_ll"]

        assert defs.resolve_job_def("report_job").execute_in_process(instance=instance).success
        summary = pd.read_csv(storage.layout.report_file("summary.csv")).set_index("model")
        row = summary.loc["paper_mlp"]
        metrics = storage.layout.read_partition_index("metrics", "digits", "paper_mlp")["runs"]
        distances = [m["frechet_distance"] for m in metrics]
        assert row["seeds"] == 2 and row["frechet_distance_std"] == pytest.approx(np.std(distances, ddof=1), abs=1e-4)
        shown = f"{np.mean(distances):.2f} ± {np.std(distances, ddof=1):.2f}"
        assert shown in storage.layout.report_file("report.md").read_text()
        reproduced = pd.read_csv(storage.layout.report_file("reproduction.csv"))
        assert list(reproduced["checkpoint"].str.split().str[0]) == ["best", "last"]
        last_means = [s["mean_log_likelihood"] for s in scores if s["checkpoint"] == "last"]
        assert reproduced["mean"].iloc[1] == pytest.approx(np.mean(last_means))
        assert "Table 1 from the pipeline" in storage.layout.report_file("report.html").read_text()
