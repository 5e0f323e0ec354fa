"""Asset checks on the preprocessed dataset file. Size and image checks are blocking: bad data stops training."""

import dagster as dg

from assets.common import check_result, final_if_failed
from assets.data_assets import preprocessed_dataset
from assets.resources import StorageResource
from gan_core import checks
from gan_core.sources import get_dataset_spec, read_raw_manifest


@dg.asset_check(asset=preprocessed_dataset, blocking=True, description="Split sizes match the split definition.")
@final_if_failed
def split_sizes_match(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset = context.partition_key
    return check_result(checks.check_split_sizes(storage.layout.dataset_file(dataset), get_dataset_spec(dataset)))


@dg.asset_check(
    asset=preprocessed_dataset, blocking=True, description="uint8 images of the right shape, range in [0, 1]."
)
@final_if_failed
def images_dtype_shape_range(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset = context.partition_key
    return check_result(checks.check_images(storage.layout.dataset_file(dataset), get_dataset_spec(dataset)))


@dg.asset_check(asset=preprocessed_dataset, description="Every class is present in every split.")
def no_empty_classes(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset = context.partition_key
    return check_result(checks.check_classes(storage.layout.dataset_file(dataset), get_dataset_spec(dataset)))


@dg.asset_check(asset=preprocessed_dataset, description="Source checksums are recorded and match the raw manifest.")
def source_checksums_recorded(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset = context.partition_key
    manifest = read_raw_manifest(storage.layout.raw_dir(dataset))
    return check_result(checks.check_checksums(storage.layout.dataset_file(dataset), manifest))
