"""Asset checks on trained models and their samples."""

import dagster as dg

from assets.common import check_result, dataset_and_experiment, final_if_failed
from assets.model_assets import gan_model, generated_samples
from assets.resources import StorageResource
from gan_core import checks
from gan_core.checkpoint import load_checkpoint
from gan_core.data import load_split_arrays
from gan_core.sample import read_samples_h5


@dg.asset_check(asset=gan_model, blocking=True, description="Training ran every epoch and ended with finite losses.")
@final_if_failed
def training_did_not_diverge(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset, experiment = dataset_and_experiment(context)
    histories = {}
    for run in storage.layout.trained_runs(dataset, experiment):
        state = load_checkpoint(run["checkpoint"])
        histories[run["seed"]] = (state["history"], state["config"]["epochs"])
    outcome = checks.check_training_histories(histories)
    return check_result(outcome)


@dg.asset_check(asset=generated_samples, blocking=True, description="Samples are finite and inside [0, 1].")
@final_if_failed
def samples_finite_in_unit_range(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> dg.AssetCheckResult:
    dataset, experiment = dataset_and_experiment(context)
    outcomes = [
        checks.check_samples_range(read_samples_h5(entry["path"])[0])
        for entry in storage.layout.sample_sets(dataset, experiment)
    ]
    failed = [o for o in outcomes if not o.passed]
    return check_result(failed[0] if failed else outcomes[0])


@dg.asset_check(asset=generated_samples, description="Warns when samples spread far less than real data (collapse).")
def samples_not_collapsed(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset, experiment = dataset_and_experiment(context)
    real = load_split_arrays(storage.layout.dataset_file(dataset), "valid").images.astype("float32") / 255.0
    outcomes = [
        checks.check_sample_spread(read_samples_h5(entry["path"])[0], real)
        for entry in storage.layout.sample_sets(dataset, experiment)
    ]
    worst = min(outcomes, key=lambda o: o.metadata["ratio"])
    return check_result(worst, severity=dg.AssetCheckSeverity.WARN)
