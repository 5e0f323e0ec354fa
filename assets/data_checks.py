"""Asset checks on the preprocessed dataset file. Size and image checks are blocking: bad data stops training."""

import dagster as dg

from assets.data_assets import preprocessed_dataset
from gan_core import checks
from gan_core.checks import CheckOutcome
from gan_core.sources import get_dataset_spec, read_manifest
from pipelines.resources import StorageResource


def to_result(
    outcome: CheckOutcome, severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
) -> dg.AssetCheckResult:
    """A Dagster check result from a gan_core outcome."""
    return dg.AssetCheckResult(
        passed=outcome.passed,
        severity=severity,
        description=outcome.description,
        metadata={
            key: dg.MetadataValue.json(value) if isinstance(value, list | dict) else value
            for key, value in outcome.metadata.items()
        },
    )


@dg.asset_check(asset=preprocessed_dataset, blocking=True, description="Split sizes match the split definition.")
def split_sizes_match(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset = context.partition_key
    return to_result(checks.check_split_sizes(storage.dataset_file(dataset), get_dataset_spec(dataset)))


@dg.asset_check(
    asset=preprocessed_dataset, blocking=True, description="uint8 images of the right shape, range in [0, 1]."
)
def images_dtype_shape_range(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset = context.partition_key
    return to_result(checks.check_images(storage.dataset_file(dataset), get_dataset_spec(dataset)))


@dg.asset_check(asset=preprocessed_dataset, description="Every class is present in every split.")
def no_empty_classes(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset = context.partition_key
    return to_result(checks.check_classes(storage.dataset_file(dataset), get_dataset_spec(dataset)))


@dg.asset_check(asset=preprocessed_dataset, description="Source checksums are recorded and match the raw manifest.")
def source_checksums_recorded(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset = context.partition_key
    manifest = read_manifest(storage.raw_dir(dataset))
    return to_result(checks.check_checksums(storage.dataset_file(dataset), manifest))
