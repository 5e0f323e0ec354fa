"""Serving assets: each trained generator exported (ONNX, TorchScript), and per dataset the generator in use.

    gan_model --> exported_generator [check: export_matches_pytorch, blocking]
    exported_generator, evaluation_metrics, parzen_log_likelihood (every experiment of the dataset)
        --> generator_candidate [check: candidate_not_worse_than_promoted, blocking] --> best_generator

`generator_candidate` picks the best experiment by gan_core.promotion.CRITERION; its blocking check refuses a
candidate worse than the promoted generator by more than the seeds' spread, which stops `best_generator` in the same
run, so the file at the stable path (`promoted/<dataset>/generator.onnx`) is replaced only by a generator that is not
worse. `best_generator` judges again before it copies (a direct materialisation cannot skip the judgement).
"""

import warnings

import dagster as dg

from assets.common import (
    AFTER_PASSING_UPSTREAM,
    checked_partition,
    compute_or_load_each,
    dataset_and_experiment,
    final_failure,
    final_if_failed,
    guarded_step,
    mark_not_retried,
    partition_asset,
)
from assets.evaluation_assets import parzen_log_likelihood
from assets.metrics_assets import evaluation_metrics
from assets.model_assets import gan_model
from assets.partitions import dataset_partitions
from assets.resources import StorageResource
from gan_core import promotion
from gan_core.export import PARITY_TOLERANCE, ExportError, check_parity, export_generator, verify_export
from gan_core.records import read_record, write_record
from gan_core.storage import hash_json

EXPORT_CODE_VERSION = "1"
PROMOTION_CODE_VERSION = "1"
# every experiment partition of a dataset feeds that dataset's candidate (a mapping Dagster 1.13 calls beta)
with warnings.catch_warnings():
    warnings.simplefilter("ignore", dg.BetaWarning)
    _EVERY_EXPERIMENT = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="dataset")


@partition_asset(
    deps=[gan_model],
    code_version=EXPORT_CODE_VERSION,
    group_name="serving",
    kinds={"onnx", "pytorch"},
    pool=None,  # CPU work: it does not hold a GPU slot
)
def exported_generator(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Each seed's generator as ONNX and TorchScript files that sample without this project (`gan-pipeline sample`),
    with the noise size and distribution, image shape, classes and settings in their metadata, and the parity of each
    against PyTorch on the same noise."""
    dataset, experiment, layout = checked_partition(context, storage)

    def export(run: dict) -> dict:
        files = layout.export_files(dataset, experiment, run["identity"])
        source = {key: run[key] for key in ("seed", "identity", "checkpoint", "weights_hash")}
        record = export_generator(run["checkpoint"], files, {"dataset": dataset, "experiment": experiment, **source})
        record["parity"] = check_parity(run["checkpoint"], record)
        return {"seed": run["seed"], **record, "files": [record["onnx"], record["torchscript"]]}

    def describe(entry: dict) -> str:
        parity = entry["parity"]
        return (
            f"{entry['onnx']}: ONNX max |diff| {parity['onnx_max_abs_diff']:.2e}, TorchScript "
            f"{parity['torchscript_max_abs_diff']:.2e} against PyTorch"
        )

    entries = compute_or_load_each(
        context,
        layout.trained_runs(dataset, experiment),
        lambda run, key: layout.export_files(dataset, experiment, run["identity"]).record,
        lambda run: {"weights": run["weights_hash"], "code": EXPORT_CODE_VERSION},
        export,
        describe,
    )
    layout.write_partition_index("exports", dataset, experiment, {"runs": entries})
    first = entries[0]
    return dg.MaterializeResult(
        metadata={
            "onnx": dg.MetadataValue.path(first["onnx"]),
            "torchscript": dg.MetadataValue.path(first["torchscript"]),
            "files": dg.MetadataValue.json({str(e["seed"]): [e["onnx"], e["torchscript"]] for e in entries}),
            "inputs": dg.MetadataValue.json(list(first["metadata"]["inputs"])),
            "noise": first["metadata"]["noise_description"],
            "parity": dg.MetadataValue.json({str(e["seed"]): e["parity"] for e in entries}),
            "cached": all(e["cached"] for e in entries),
            "sample_command": f"gan-pipeline sample {first['onnx']} -n 64 --out grid.png",
        },
        data_version=dg.DataVersion(hash_json([[e["onnx_sha256"], e["torchscript_sha256"]] for e in entries])),
    )


@dg.asset_check(
    asset=exported_generator,
    blocking=True,
    description=f"The ONNX graph under onnxruntime and the TorchScript file agree with the PyTorch generator on the "
    f"same noise within {PARITY_TOLERANCE:g} per pixel, and the files are the bytes that were written.",
)
@final_if_failed
def export_matches_pytorch(context: dg.AssetCheckExecutionContext, storage: StorageResource) -> dg.AssetCheckResult:
    dataset, experiment = dataset_and_experiment(context)
    layout = storage.layout
    runs = {run["seed"]: run for run in layout.trained_runs(dataset, experiment)}
    figures, problems = {}, []
    for entry in layout.read_partition_index("exports", dataset, experiment)["runs"]:
        try:
            parity = check_parity(runs[entry["seed"]]["checkpoint"], entry)
        except ExportError as error:
            problems.append(str(error))
            continue
        worst = max(parity["onnx_max_abs_diff"], parity["torchscript_max_abs_diff"])
        figures[f"seed_{entry['seed']}_onnx_max_abs_diff"] = parity["onnx_max_abs_diff"]
        figures[f"seed_{entry['seed']}_torchscript_max_abs_diff"] = parity["torchscript_max_abs_diff"]
        if not worst <= PARITY_TOLERANCE:
            problems.append(f"seed {entry['seed']}: max |diff| {worst:.3g} exceeds {PARITY_TOLERANCE:g}")
    description = "; ".join(problems) or (
        f"every seed's ONNX and TorchScript output within {PARITY_TOLERANCE:g} of PyTorch "
        f"(largest {max(figures.values(), default=0.0):.2e})"
    )
    return dg.AssetCheckResult(
        passed=not problems, description=description, metadata={**figures, "tolerance": PARITY_TOLERANCE}
    )


@dg.asset(
    partitions_def=dataset_partitions,
    deps=[
        dg.AssetDep(asset, partition_mapping=_EVERY_EXPERIMENT)
        for asset in (exported_generator, evaluation_metrics, parzen_log_likelihood)
    ],
    code_version=PROMOTION_CODE_VERSION,
    # any experiment's new results may change the best; eager() would wait for every experiment partition
    automation_condition=dg.AutomationCondition.any_deps_updated() & ~dg.AutomationCondition.in_progress(),
    group_name="serving",
)
@guarded_step
def generator_candidate(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """The generator the criterion picks among the dataset's experiments (gan_core.promotion.CRITERION), with every
    experiment's standing and why the others may not be promoted."""
    dataset, layout = context.partition_key, storage.layout
    standings = [promotion.standing(layout, dataset, name) for name in layout.stored_experiments("exports", dataset)]
    chosen = promotion.choose(standings)
    table = "\n".join(
        f"| {row['experiment']} | {row.get('mean', float('nan')):.4g} | {row.get('spread', float('nan')):.3g} | "
        f"{'; '.join(row['problems']) or 'may be promoted'} |"
        for row in sorted(standings, key=lambda row: row.get("mean", float("inf")))
    )
    standings_md = f"| experiment | mean {promotion.RANKED_BY} | spread | standing |\n|---|---|---|---|\n{table}"
    if chosen is None:
        reasons = "; ".join(f"{row['experiment']}: {'; '.join(row['problems'])}" for row in standings)
        mark_not_retried(context, "no generator may be promoted; a retry would find the same")
        raise dg.Failure(
            description=f"no experiment of {dataset} may be promoted: {reasons}"
            if standings
            else f"no experiment of {dataset} has an exported generator: materialise exported_generator first",
            metadata={"standings": dg.MetadataValue.md(standings_md)},
        )
    write_record(
        layout.promotion_candidate(dataset),
        {"candidate": chosen, "standings": standings, "criterion": promotion.CRITERION},
    )
    context.log.info(f"candidate for {dataset}: {promotion.describe(chosen)}")
    return dg.MaterializeResult(
        metadata={
            "experiment": chosen["experiment"],
            "seed": chosen["seed"],
            promotion.RANKED_BY: chosen["seed_value"],
            "experiment_mean": chosen["mean"],
            "spread": chosen["spread"],
            "criterion": promotion.CRITERION,
            "standings": dg.MetadataValue.md(standings_md),
        },
        data_version=dg.DataVersion(chosen["weights_hash"]),
    )


@dg.asset_check(
    asset=generator_candidate,
    blocking=True,
    description="Refuses a candidate worse than the promoted generator by more than the seeds' spread; the promoted "
    "generator then stays.",
)
@final_if_failed
def candidate_not_worse_than_promoted(
    context: dg.AssetCheckExecutionContext, storage: StorageResource
) -> dg.AssetCheckResult:
    dataset, layout = context.partition_key, storage.layout
    candidate = read_record(layout.promotion_candidate(dataset), f"generator_candidate for {dataset}")["candidate"]
    accepted, why, figures = promotion.judge(candidate, promotion.promoted(layout, dataset))
    return dg.AssetCheckResult(passed=accepted, description=why, metadata=figures)


@dg.asset(
    partitions_def=dataset_partitions,
    deps=[generator_candidate],
    code_version=PROMOTION_CODE_VERSION,
    automation_condition=AFTER_PASSING_UPSTREAM,
    group_name="serving",
    kinds={"onnx"},
)
@guarded_step
def best_generator(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """The dataset's promoted generator at a stable path (`promoted/<dataset>/generator.onnx` and `.ts`, with
    promotion.json saying which experiment and seed it is, by what criterion and why), replaced only by a candidate
    that is not worse."""
    dataset, layout = context.partition_key, storage.layout
    candidate = read_record(layout.promotion_candidate(dataset), f"generator_candidate for {dataset}")["candidate"]
    before = promotion.promoted(layout, dataset)
    accepted, why, _ = promotion.judge(candidate, before)
    if not accepted:
        raise final_failure(context, why, "the candidate is worse than the promoted generator")
    unchanged = before is not None and before["weights_hash"] == candidate["weights_hash"]
    if unchanged:
        try:
            verify_export(before)
        except ExportError as error:  # the stable copy was damaged: copy it again
            context.log.warning(f"{error}; copying the export again")
            unchanged = False
    record = before if unchanged else promotion.promote(layout, candidate, why)
    context.log.info(f"promoted for {dataset}: {why} -> {record['onnx']}")
    return dg.MaterializeResult(
        metadata={
            "onnx": dg.MetadataValue.path(record["onnx"]),
            "torchscript": dg.MetadataValue.path(record["torchscript"]),
            "experiment": record["experiment"],
            "seed": record["seed"],
            promotion.RANKED_BY: record["seed_value"],
            "promoted_at": record["promoted_at"],
            "why": why,
            "replaced": record["previous"]["experiment"] if record.get("previous") else "",
            "sample_command": f"gan-pipeline sample {record['onnx']} -n 64 --out grid.png",
        },
        data_version=dg.DataVersion(record["weights_hash"]),
    )
