"""Dataset assets: raw source files, then one HDF5 file per dataset with train/valid/test splits."""

import dagster as dg

from assets.common import guarded_step
from assets.configs import RawDatasetConfig
from assets.partitions import dataset_partitions
from assets.resources import DatasetSourcesResource, StorageResource
from gan_core.data import read_dataset_info, write_dataset_h5
from gan_core.sources import build_splits, fetch_raw, get_dataset_spec, read_raw_manifest
from gan_core.storage import hash_json


@dg.asset(
    partitions_def=dataset_partitions,
    code_version="1",
    group_name="data",
    kinds={"python"},
)
@guarded_step
def raw_dataset(
    context: dg.AssetExecutionContext,
    config: RawDatasetConfig,
    storage: StorageResource,
    sources: DatasetSourcesResource,
) -> dg.MaterializeResult:
    """The dataset's source files, obtained through torchvision's download code (or scikit-learn's bundled digits, or a
    user-supplied TFD .mat), with their checksums in manifest.json."""
    dataset = context.partition_key
    spec = get_dataset_spec(dataset)
    source = config.source or sources.source_for(dataset)
    raw_dir = storage.layout.raw_dir(dataset)
    context.log.info(f"fetching {dataset} from {source or 'its official location'} into {raw_dir}")
    manifest = fetch_raw(spec.name, raw_dir, source, config.md5_overrides or None)
    for fname, how in manifest.get("verified", {}).items():
        context.log.info(f"{fname}: verified by {how}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(raw_dir)),
            "source": manifest["source"],
            "checksums": dg.MetadataValue.json(manifest["files"]),
            "verified_by": dg.MetadataValue.json(manifest.get("verified", {})),
        },
        data_version=dg.DataVersion(hash_json(manifest["files"])),
    )


@dg.asset(
    partitions_def=dataset_partitions,
    deps=[raw_dataset],
    code_version="1",
    group_name="data",
    kinds={"hdf5"},
)
@guarded_step
def preprocessed_dataset(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """One HDF5 file per dataset: train/valid/test groups of uint8 N x C x H x W images and labels, with source
    checksums, split definition and format version as attributes."""
    dataset = context.partition_key
    spec = get_dataset_spec(dataset)
    layout = storage.layout
    manifest = read_raw_manifest(layout.raw_dir(dataset))
    splits = build_splits(dataset, layout.raw_dir(dataset))
    path = layout.dataset_file(dataset)
    digest = write_dataset_h5(path, dataset, splits, manifest["files"], spec.split_definition)
    info = read_dataset_info(path)
    context.log.info(f"wrote {path}: {info.split_sizes}")
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "content_hash": digest,
            "image_shape": "x".join(map(str, info.image_shape)),
            **{f"{name}_images": size for name, size in info.split_sizes.items()},
        },
        data_version=dg.DataVersion(digest),
    )
