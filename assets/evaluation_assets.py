"""Evaluation assets: Parzen bandwidth on validation data, Parzen log-likelihood on test data, the report tables.

Each stored result is keyed by the content hash of the samples it scores plus its settings, so unchanged inputs are
read back (marked `cached`) instead of recomputed.
"""

import functools
import time
from pathlib import Path

import dagster as dg
import pandas as pd

from assets.common import (
    checked_partition,
    compute_or_load_each,
    guarded_step,
    partition_asset,
    publish_hparams,
    store_figure,
    table_metadata,
)
from assets.configs import ParzenBandwidthConfig, ParzenConfig
from assets.metrics_assets import evaluation_metrics, paper_figures, reference_metrics
from assets.model_assets import gan_model, generated_samples
from assets.resources import StorageResource
from gan_core.checkpoint import checkpoint_weights_hash
from gan_core.data import load_split, read_dataset_info
from gan_core.inference import INFERENCE_COLUMNS
from gan_core.layout import ArtifactLayout, EvaluationKind
from gan_core.parzen import across_seeds, evaluate_parzen, score_test_set, search_bandwidth
from gan_core.plots import png_markdown, sigma_search_png
from gan_core.promotion import partition_problems, promotions_table
from gan_core.records import compute_or_load, read_record
from gan_core.report import (
    all_tables,
    metrics_table,
    parzen_table,
    reported_figures,
    reproduction_table,
    shown_experiments,
    sigma_search_table,
    write_report,
)
from gan_core.reproduction import PROTOCOL_SAMPLES, best_and_last, protocol_score, reproduction_rows
from gan_core.sample import read_samples_h5
from gan_core.sources import DATASETS
from gan_core.storage import hash_json

PARZEN_CODE_VERSION = "1"
REPORT_CODE_VERSION = "3"  # 2: the experiments table and the sweep plots; 3: the promoted generators
parzen_asset = functools.partial(partition_asset, code_version=PARZEN_CODE_VERSION, group_name="evaluation")


@parzen_asset(deps=[generated_samples])
def parzen_bandwidth(
    context: dg.AssetExecutionContext, config: ParzenBandwidthConfig, storage: StorageResource
) -> dg.MaterializeResult:
    """The Parzen window width sigma with the highest mean log-likelihood on the first validation images."""
    dataset, experiment, layout = checked_partition(context, storage)
    valid = load_split(layout.dataset_file(dataset), "valid", limit=config.n_valid).flatten(1)
    dataset_hash = read_dataset_info(layout.dataset_file(dataset)).content_hash
    settings = {
        "sigmas": config.sigmas,
        "n_valid": config.n_valid,
        "dataset": dataset_hash,
        "code": PARZEN_CODE_VERSION,
    }

    def search(run: dict) -> dict:
        context.log.info(f"seed {run['seed']}: trying {len(config.sigmas)} widths on {len(valid)} validation images")
        samples = read_samples_h5(run["path"])[0]
        found = search_bandwidth(samples, valid, config.sigmas, config.block_size, config.device)
        return {"seed": run["seed"], "samples_path": run["path"], "samples_hash": run["content_hash"], **found}

    entries = compute_or_load_each(
        context,
        layout.sample_sets(dataset, experiment),
        lambda run, key: layout.evaluation_record("bandwidth", dataset, experiment, key),
        lambda run: {"samples": run["content_hash"], **settings},
        search,
        lambda entry: f"sigma {entry['sigma']:.4f}",
    )
    layout.write_partition_index("bandwidth", dataset, experiment, {"runs": entries})
    first = entries[0]
    grid = [s for s, _ in first["valid_mean_by_sigma"]]
    plot = sigma_search_png(entries)
    store_figure(layout, dataset, experiment, "sigma_search", plot)
    return dg.MaterializeResult(
        metadata={
            "sigma": first["sigma"],
            "sigmas_by_seed": dg.MetadataValue.json({str(e["seed"]): e["sigma"] for e in entries}),
            "sigma_grid_min": min(grid),
            "sigma_grid_max": max(grid),
            "n_valid": first["n_valid"],
            "cached": all(e["cached"] for e in entries),
            "table": table_metadata(sigma_search_table(entries)),
            "plot": dg.MetadataValue.md(png_markdown(plot, "sigma search")),
        },
        data_version=dg.DataVersion(hash_json([[e["samples_hash"], e["sigma"]] for e in entries])),
    )


@parzen_asset(deps=[parzen_bandwidth])
def parzen_log_likelihood(
    context: dg.AssetExecutionContext, config: ParzenConfig, storage: StorageResource
) -> dg.MaterializeResult:
    """Mean Parzen log-likelihood of the test images +- standard error (the paper's Table 1 number)."""
    dataset, experiment, layout = checked_partition(context, storage)
    test = load_split(layout.dataset_file(dataset), "test").flatten(1)

    def score(bandwidth: dict) -> dict:
        samples = read_samples_h5(bandwidth["samples_path"])[0]
        scored = score_test_set(samples, test, bandwidth["sigma"], config.block_size, config.device)
        return {
            "dataset": dataset,
            "model": experiment,
            "seed": bandwidth["seed"],
            "sigma": bandwidth["sigma"],
            **scored,
        }

    results = compute_or_load_each(
        context,
        layout.sigma_searches(dataset, experiment),
        lambda bandwidth, key: layout.evaluation_record("parzen", dataset, experiment, key),
        lambda bandwidth: {"bandwidth": bandwidth["key"], "sigma": bandwidth["sigma"], "code": PARZEN_CODE_VERSION},
        score,
        lambda result: f"{result['mean_log_likelihood']:.2f} +- {result['standard_error']:.2f} nats",
    )
    layout.write_partition_index("parzen", dataset, experiment, {"runs": results})
    publish_hparams(storage, dataset, experiment)
    mean, error_bar = across_seeds(results)
    return dg.MaterializeResult(
        metadata={
            "mean_log_likelihood": mean,
            "standard_error": error_bar,
            "seeds": len(results),
            "sigma": results[0]["sigma"],
            "n_samples": results[0]["n_samples"],
            "n_test": results[0]["n_test"],
            "cached": all(r["cached"] for r in results),
            "by_seed": dg.MetadataValue.json({str(r["seed"]): r["mean_log_likelihood"] for r in results}),
        },
        data_version=dg.DataVersion(hash_json([[r["key"], r["mean_log_likelihood"]] for r in results])),
    )


@parzen_asset(deps=[gan_model])
def reproduction_scores(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """Each seed's best checkpoint by the validation monitor and its last one, scored under the exact protocol
    (gan_core.reproduction): the report's Table 1 row from the pipeline, for experiments that set monitor_every
    (paper_reproduction); nothing to do for the others."""
    dataset, experiment, layout = checked_partition(context, storage)
    monitored = [run for run in layout.trained_runs(dataset, experiment) if run["config"].get("monitor_every")]
    checkpoints = [
        (run, kind, path) for run in monitored for kind, path in best_and_last(Path(run["checkpoint"]).parent).items()
    ]
    if not checkpoints:
        layout.write_partition_index("reproduction", dataset, experiment, {"runs": []})
        return dg.MaterializeResult(metadata={"monitored_seeds": 0})
    dataset_file = layout.dataset_file(dataset)
    valid, test = load_split(dataset_file, "valid"), load_split(dataset_file, "test")
    dataset_hash = read_dataset_info(dataset_file).content_hash

    def score(item: tuple) -> dict:
        run, kind, path = item
        scored = protocol_score(path, valid, test)
        return {"dataset": dataset, "model": experiment, "seed": run["seed"], "checkpoint": kind, **scored}

    entries = compute_or_load_each(
        context,
        checkpoints,
        lambda item, key: layout.evaluation_record("reproduction", dataset, experiment, key),
        lambda item: {
            "weights": checkpoint_weights_hash(item[2]),
            "checkpoint": item[1],
            "samples": PROTOCOL_SAMPLES,
            "dataset": dataset_hash,
            "code": PARZEN_CODE_VERSION,
        },
        score,
        lambda entry: (
            f"{entry['checkpoint']} checkpoint (epoch {entry['epoch']}): "
            f"{entry['mean_log_likelihood']:.2f} +- {entry['standard_error']:.2f} nats"
        ),
    )
    layout.write_partition_index("reproduction", dataset, experiment, {"runs": entries})
    rows = reproduction_rows(entries)
    return dg.MaterializeResult(
        metadata={
            "monitored_seeds": len(monitored),
            "cached": all(e["cached"] for e in entries),
            "table": table_metadata(reproduction_table(rows)),
            **{f"{r['checkpoint']}_mean_log_likelihood": r["mean"] for r in rows},
        },
        data_version=dg.DataVersion(hash_json([[e["key"], e["mean_log_likelihood"]] for e in entries])),
    )


def reference_result(layout: ArtifactLayout, dataset: str, n_samples: int = 10_000, device: str = "auto") -> dict:
    """The estimator applied to up to 10,000 real training images (its ceiling), cached by the dataset's hash."""
    info = read_dataset_info(layout.dataset_file(dataset))

    def score_real_images() -> dict:
        real = load_split(info.path, "train", limit=n_samples).flatten(1)
        result = evaluate_parzen(
            real, load_split(info.path, "valid").flatten(1), load_split(info.path, "test").flatten(1), device=device
        )
        return {"dataset": dataset, **result.to_dict()}

    return compute_or_load(
        lambda key: layout.reference_record("reference_real_train", dataset, key),
        {"dataset": info.content_hash, "n": n_samples, "code": PARZEN_CODE_VERSION},
        score_real_images,
    )[0]


def collect_project_results(layout: ArtifactLayout, kind: EvaluationKind = "parzen") -> list[dict]:
    """Every (dataset, model) result of a kind ("parzen" or "metrics") currently stored, one row per seed."""
    return [row for path in layout.partition_indexes(kind) for row in read_record(path, kind)["runs"]]


def reportable_results(layout: ArtifactLayout) -> tuple[list[dict], dict[str, str]]:
    """(every stored Parzen result of a partition that may be reported, one row per seed; {"dataset|model": why the
    others are left out})."""
    project = collect_project_results(layout)
    if not project:
        raise FileNotFoundError(
            f"no Parzen results under {layout.path('evaluation')}: materialise "
            "parzen_log_likelihood for at least one partition first"
        )
    stored = sorted({(row["dataset"], row["model"]) for row in project})
    left_out = {f"{d}|{m}": "; ".join(problems) for d, m in stored if (problems := partition_problems(layout, d, m))}
    return [row for row in project if f"{row['dataset']}|{row['model']}" not in left_out], left_out


def report_tables(
    layout: ArtifactLayout, project: list[dict], left_out: dict[str, str]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The report's Parzen table (the paper's Table 1 beside `project`, with a real-data reference row per dataset)
    and its metrics table (the reported partitions' metrics beside the real-data and memorising references)."""
    datasets = sorted({row["dataset"] for row in project})
    references = [reference_result(layout, dataset) for dataset in datasets]
    inverses = {(r["dataset"], r["model"], r["seed"]): r for r in collect_project_results(layout, "inference")}
    metric_rows = [
        with_inverse(row, inverses)
        for row in collect_project_results(layout, "metrics")
        if f"{row['dataset']}|{row['model']}" not in left_out
    ]
    metric_references = [row for dataset in datasets for row in reference_metrics(layout, dataset)]
    return parzen_table(project, references), metrics_table(project, metric_rows, metric_references, references)


def with_inverse(row: dict, inverses: dict[tuple[str, str, int], dict]) -> dict:
    """A seed's metrics row with the scores of its learned inverse (latent_encoder's record), where one is stored."""
    inverse = inverses.get((row["dataset"], row["model"], row["seed"]), {})
    return {**row, **{name: inverse[name] for name in INFERENCE_COLUMNS if name in inverse}}


@dg.asset(
    # best_generator by key: assets/serving_assets.py imports this module
    deps=[
        parzen_log_likelihood,
        reproduction_scores,
        evaluation_metrics,
        paper_figures,
        dg.AssetKey("best_generator"),
    ],
    code_version=REPORT_CODE_VERSION,
    # eager() would wait for every dataset x model partition upstream; the report refreshes when any of them updates
    automation_condition=dg.AutomationCondition.any_deps_updated() & ~dg.AutomationCondition.in_progress(),
    group_name="evaluation",
    kinds={"pandas"},
)
@guarded_step
def evaluation_report(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
    """The paper's Table 1 beside this project's Parzen results for every materialised partition, with a real-data
    reference row per dataset; written as CSV, Markdown and HTML."""
    layout = storage.layout
    read_at = time.time()  # what the report covers: the partitions evaluated before it read the stored results
    project, left_out = reportable_results(layout)
    for key, reason in left_out.items():
        context.log.warning(f"report leaves out {key}: {reason}")
    table, metrics = report_tables(layout, project, left_out)
    covered = sorted({f"{row['dataset']}|{row['model']}" for row in project})
    experiments = storage.experiments.all()
    tables = all_tables(table, metrics, experiments)
    promoted = promotions_table(layout, list(DATASETS))
    if not promoted.empty:
        tables["promoted"] = promoted
    reproduced = [
        row for row in collect_project_results(layout, "reproduction") if f"{row['dataset']}|{row['model']}" in covered
    ]
    if reproduced:
        tables["reproduction"] = reproduction_table(reproduction_rows(reproduced))
    figures = reported_figures(layout.figures(), covered, tables["experiments"])
    paths = write_report(
        tables,
        layout.report_file,
        "gan-pipeline evaluation report",
        figures,
        left_out,
        experiments,
    )
    context.log.info(f"report written to {paths['html']}")
    return dg.MaterializeResult(
        metadata={
            "report_html": dg.MetadataValue.path(str(paths["html"])),
            "report_markdown": dg.MetadataValue.path(str(paths["md"])),
            "report_csv": dg.MetadataValue.path(str(paths["parzen_table1_csv"])),
            "summary_csv": dg.MetadataValue.path(str(paths["summary_csv"])),
            "figures_dir": dg.MetadataValue.path(str(layout.path("figures"))),
            "partitions": dg.MetadataValue.json(covered),
            "results_read_at": read_at,
            "left_out": dg.MetadataValue.json(left_out),
            "summary": table_metadata(tables["summary"]),
            "experiments": table_metadata(shown_experiments(tables["experiments"])),
            "experiments_csv": dg.MetadataValue.path(str(paths["experiments_csv"])),
            "promoted": table_metadata(promoted) if not promoted.empty else dg.MetadataValue.text("none yet"),
            "sweep_plots": dg.MetadataValue.json({k: str(v) for k, v in paths.items() if k.startswith("sweep_")}),
            "table": table_metadata(table),
            "metrics": table_metadata(metrics),
            "figures": dg.MetadataValue.json(
                {p: {n: str(f) for n, f in files.items()} for p, files in figures.items()}
            ),
        },
        data_version=dg.DataVersion(hash_json(table.to_csv(index=False))),
    )
