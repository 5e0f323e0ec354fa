"""Several players as settings of the same trainer: a mixture of k generators (each sample from one, named in the
samples file) and k discriminators (GMAN's mean), in gan_core and through the Dagster graph."""

import math

import numpy as np
import pytest
import torch

from assets.partitions import dataset_experiment_key
from gan_core.config import RuntimeOptions, default_train_config
from gan_core.models import GeneratorMixture
from gan_core.sample import generate, generate_from_noise, generator_of_each, load_generator, read_sample_generators
from gan_core.train import train_gan
from tests.helpers import digits_graph

QUIET = RuntimeOptions(progress=False)


@pytest.mark.parametrize(("generators", "discriminators"), [(3, 1), (1, 3), (2, 2)])
def test_player_counts_train_with_finite_losses(digits_train, tmp_path, generators, discriminators) -> None:
    config = default_train_config(
        "paper_mlp",
        epochs=2,
        batch_size=32,
        max_train_images=640,
        n_generators=generators,
        n_discriminators=discriminators,
    )
    result = train_gan(config, digits_train, tmp_path, QUIET)
    assert all(math.isfinite(r[k]) for r in result.history for k in ("d_loss", "g_loss", "d_real", "d_fake"))
    state = torch.load(result.checkpoint_path, weights_only=True)
    assert sum(key.startswith("generators.") and key.endswith("output.weight") for key in state["generator"]) == (
        generators if generators > 1 else 0
    )
    assert sum(key.endswith("net.5.weight") for key in state["discriminator"]) == discriminators


def test_a_mixture_s_samples_name_their_generator(digits_train, tmp_path) -> None:
    config = default_train_config("paper_mlp", epochs=1, batch_size=32, max_train_images=640, n_generators=3)
    loaded = load_generator(train_gan(config, digits_train, tmp_path, QUIET).checkpoint_path, "cpu")
    assert isinstance(loaded.generator, GeneratorMixture) and loaded.n_generators == 3
    samples = generate(loaded, 9, seed=0)
    members = generator_of_each(9, 3)
    assert list(members) == [0, 1, 2] * 3
    noise = torch.randn(1, 100).repeat(3, 1)  # one latent vector through each member
    each = [loaded.generator.generators[k](noise[:1]).detach().numpy() for k in range(3)]
    np.testing.assert_allclose(generate_from_noise(loaded, noise), np.concatenate(each), rtol=0, atol=1e-6)
    assert not np.allclose(each[0], each[1])  # the members are different generators
    assert samples.shape == (9, 1, 8, 8)


def test_multi_player_settings_through_the_graph(digits_data) -> None:
    with digits_graph(digits_data) as (storage, defs, instance):
        run_config = {
            "ops": {
                "gan_model": {"config": {"epochs": 2, "n_generators": 2, "n_discriminators": 2}},
                "generated_samples": {"config": {"count": 1000}},
            }
        }
        trained = defs.resolve_job_def("training_job").execute_in_process(
            partition_key=dataset_experiment_key("digits", "paper_mlp"), instance=instance, run_config=run_config
        )
        assert trained.success
        assert all(e.passed for e in trained.get_asset_check_evaluations() if e.severity.value == "ERROR")
        samples = storage.layout.sample_sets("digits", "paper_mlp")[0]
        np.testing.assert_array_equal(read_sample_generators(samples["path"]), generator_of_each(1000, 2))
        loaded = load_generator(storage.layout.trained_runs("digits", "paper_mlp")[0]["checkpoint"], "cpu")
        assert isinstance(loaded.generator, GeneratorMixture)
        state = torch.load(storage.layout.trained_runs("digits", "paper_mlp")[0]["checkpoint"], weights_only=True)
        assert any(key.startswith("discriminators.1.") for key in state["discriminator"])
