"""Learned inference (the paper's section 7): an encoder E that predicts z from x, trained for each seed's finished
generator (gan_core.inference), with its reconstructions of test images and a linear probe of E(x).

Downstream of `gan_model` only: E is fitted on the generator's own samples, so no model is trained again, and each
seed's E is cached under its generator's weights and this config.
"""

import functools
import time

import dagster as dg
import numpy as np
import torch

from assets.common import (
    checked_partition,
    compute_or_load_each,
    dataset_and_experiment,
    partition_asset,
    store_figure,
)
from assets.configs import InferenceConfig
from assets.model_assets import gan_model
from assets.resources import StorageResource
from gan_core.data import load_split, load_split_arrays
from gan_core.inference import (
    LatentEncoder,
    encode,
    own_encoder,
    pixel_probe_accuracy,
    reconstruct,
    score_encoder,
    train_encoder,
)
from gan_core.plots import grid_png, png_markdown
from gan_core.sample import load_generator
from gan_core.storage import atomic_output, hash_json

INFERENCE_CODE_VERSION = "2"  # 2: E of 512 units a layer (1024 before); records name their partition
SHOWN_TEST_IMAGES = 30  # the figure: three pairs of rows of 10, test images above their reconstructions


@partition_asset(deps=[gan_model], code_version=INFERENCE_CODE_VERSION, group_name="inference")
def latent_encoder(
    context: dg.AssetExecutionContext, config: InferenceConfig, storage: StorageResource
) -> dg.MaterializeResult:
    """For each seed's trained generator G, an encoder E fitted to predict z from G(z) (the paper's learned
    approximate inference; a BiGAN's own encoder instead, learned with G), judged on the test images: reconstructions
    G(E(x)) (a figure and their pixel MSE) and the accuracy of a logistic regression on E(x) beside the same probe on
    raw pixels."""
    dataset, experiment, layout = checked_partition(context, storage)
    path = layout.dataset_file(dataset)
    train_images = load_split(path, "train", limit=config.probe_train_images)
    train = (train_images, load_split_arrays(path, "train").labels[: len(train_images)])
    test = (load_split(path, "test"), load_split_arrays(path, "test").labels)
    reconstructions: dict[int, np.ndarray] = {}
    pixel_accuracy = functools.cache(lambda: pixel_probe_accuracy(train, test))  # once, for the seeds not stored

    def key_parts(run: dict) -> dict:
        return {"weights": run["weights_hash"], **config.model_dump(exclude={"device"}), "code": INFERENCE_CODE_VERSION}

    def infer(run: dict) -> dict:
        started = time.perf_counter()
        loaded = load_generator(run["checkpoint"], config.device)
        encoder = own_encoder(loaded)
        how = "fitted to (G(z), z) after training" if encoder is None else "learned with G (BiGAN)"
        if encoder is None:
            context.log.info(f"seed {run['seed']}: fitting E(x) -> z for {config.steps} steps of {config.batch_size}")
            encoder = train_encoder(loaded, config.steps, config.batch_size, config.seed, context.log.info)
        else:
            context.log.info(f"seed {run['seed']}: scoring the encoder the model learned with its generator (BiGAN)")
        scores, images = score_encoder(loaded, encoder, train, test, pixel_accuracy(), started)
        reconstructions[run["seed"]] = images
        weights = layout.encoder_weights(dataset, experiment, hash_json(key_parts(run)))
        with atomic_output(weights) as tmp:
            torch.save(encoder.state_dict(), tmp)
        return {
            "dataset": dataset,
            "model": experiment,
            "seed": run["seed"],
            **vars(scores),
            "inverse": how,
            "encoder": str(weights),
            "files": [str(weights)],
        }

    runs = compute_or_load_each(
        context,
        layout.trained_runs(dataset, experiment),
        lambda run, key: layout.evaluation_record("inference", dataset, experiment, key),
        key_parts,
        infer,
        lambda record: (
            f"probe accuracy on E(x) {record['encoder_probe_accuracy']:.3f} (pixels "
            f"{record['pixel_probe_accuracy']:.3f}), reconstruction MSE {record['reconstruction_mse']:.4f}"
        ),
    )
    layout.write_partition_index("inference", dataset, experiment, {"runs": runs})
    first = runs[0]
    shown = reconstructions.get(first["seed"])
    if shown is None:  # cached: the figure is rebuilt from the stored encoder
        checkpoint = layout.trained_runs(dataset, experiment)[0]["checkpoint"]
        shown = _reconstruct_with_stored(first, checkpoint, test[0][:SHOWN_TEST_IMAGES], test[1][:SHOWN_TEST_IMAGES])
    rows = []
    for block in range(3):  # test images (odd rows) above their reconstructions (even rows)
        start = block * 10
        rows += [test[0][start : start + 10].numpy(), shown[start : start + 10]]
    figure = grid_png(np.concatenate(rows), columns=10)
    store_figure(layout, dataset, experiment, "reconstructions", figure)
    return dg.MaterializeResult(
        metadata={
            **{
                name: float(first[name])
                for name in ("encoder_probe_accuracy", "pixel_probe_accuracy", "reconstruction_mse", "latent_mse")
            },
            "seeds": len(runs),
            "cached": all(run["cached"] for run in runs),
            "reconstructions": dg.MetadataValue.md(
                "Test images (odd rows) above G(E(x)) (even rows)\n\n" + png_markdown(figure, "reconstructions")
            ),
        },
        data_version=dg.DataVersion(hash_json([run["key"] for run in runs])),
    )


def _reconstruct_with_stored(record: dict, checkpoint: str, images: torch.Tensor, labels: np.ndarray) -> np.ndarray:
    """G(E(x)) of `images` (of `labels`) from a seed's stored encoder (the figure of a cached record)."""
    loaded = load_generator(checkpoint, "cpu")
    encoder = own_encoder(loaded)
    if encoder is None:
        encoder = LatentEncoder(loaded.image_shape, loaded.noise_dim)
        encoder.load_state_dict(torch.load(record["encoder"], map_location="cpu", weights_only=True))
    return reconstruct(loaded, encode(encoder.eval(), images), labels)


@dg.asset_check(
    asset=latent_encoder,
    description="Each seed's encoder predicts z from G(z) better than a guess of 0 (latent MSE below 1, the noise's "
    "variance); warns otherwise: the generator then ignores much of its noise, or E did not train.",
)
def encoder_predicts_noise(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset, experiment = dataset_and_experiment(context)
    runs = storage.layout.read_partition_index("inference", dataset, experiment)["runs"]
    worst = max(run["latent_mse"] for run in runs)
    return dg.AssetCheckResult(
        passed=bool(worst < 1.0),
        severity=dg.AssetCheckSeverity.WARN,
        description=f"largest latent MSE over {len(runs)} seed(s): {worst:.4f} (a guess of 0 scores 1)",
        metadata={"latent_mse": worst},
    )
