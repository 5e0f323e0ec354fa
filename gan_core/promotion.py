"""Which generator of a dataset is the one in use: every experiment's standing, the candidate the criterion picks,
the judgement of that candidate against the generator promoted now, and the promotion itself (its export copied to
a stable path, `layout.promoted_files(dataset)`).

The criterion (CRITERION) ranks experiments by their seeds' mean Fréchet distance; an experiment stands only while
every blocking condition of its partition holds on its stored files (the same functions the Dagster checks call) and
its results are those of its current weights. A candidate is refused when its Fréchet distance is worse than the
promoted generator's by more than the seeds' spread (`judge`), so a retrained generator replaces the one in use only
when it is not worse.
"""

from __future__ import annotations

import math
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from gan_core import checks
from gan_core.checkpoint import load_checkpoint
from gan_core.export import PARITY_TOLERANCE, ExportError, verify_export
from gan_core.layout import ArtifactLayout
from gan_core.records import read_record, write_record
from gan_core.sample import read_samples_h5
from gan_core.storage import atomic_output

if TYPE_CHECKING:
    import pandas as pd

RANKED_BY = "frechet_distance"  # lower is better (evaluation_metrics, the dataset's feature classifier)
CRITERION = (
    "lowest mean Fréchet distance (feature classifier) over the experiment's seeds, among the experiments whose "
    "every seed trained without diverging, drew finite samples in [0, 1], scored a finite Parzen log-likelihood and "
    f"exported within the ONNX/TorchScript parity tolerance ({PARITY_TOLERANCE:g}); of its seeds, the one with the "
    "lowest distance. A candidate is refused when its distance exceeds the promoted generator's by more than the "
    "seeds' spread (the larger standard deviation over seeds of the two experiments)."
)


def partition_problems(layout: ArtifactLayout, dataset: str, experiment: str) -> list[str]:
    """Why a partition's numbers must not be reported or promoted: its training, samples or Parzen results fail a
    blocking check, or its Parzen results score other samples than its current ones (new samples failed, so Parzen
    never ran)."""
    problems = []
    histories = {}
    for run in layout.trained_runs(dataset, experiment):
        histories[run["seed"]] = (load_checkpoint(run["checkpoint"])["history"], run["config"]["epochs"])
    sample_sets = layout.sample_sets(dataset, experiment)
    outcomes = {
        "training_did_not_diverge": checks.check_training_histories(histories),
        "samples_finite_in_unit_range": next(
            (
                o
                for o in (checks.check_samples_range(read_samples_h5(s["path"])[0]) for s in sample_sets)
                if not o.passed
            ),
            checks.CheckOutcome(True, ""),
        ),
        "log_likelihood_finite": checks.check_log_likelihoods(layout.parzen_scores(dataset, experiment)),
    }
    problems += [f"{name} failed ({outcome.description})" for name, outcome in outcomes.items() if not outcome.passed]
    scored = {search["samples_hash"] for search in layout.sigma_searches(dataset, experiment)}
    if scored != {samples["content_hash"] for samples in sample_sets}:
        problems.append("its Parzen results score earlier samples than its current ones")
    return problems


def standing(layout: ArtifactLayout, dataset: str, experiment: str) -> dict[str, Any]:
    """One experiment's standing: its seeds' Fréchet distances (mean, spread), its best seed with that seed's export
    record, its Parzen mean, and `problems` (empty: it may be promoted)."""
    row: dict[str, Any] = {"dataset": dataset, "experiment": experiment, "problems": []}
    try:
        row["problems"] = partition_problems(layout, dataset, experiment)
        runs = {run["seed"]: run for run in layout.trained_runs(dataset, experiment)}
        samples = {entry["seed"]: entry["content_hash"] for entry in layout.sample_sets(dataset, experiment)}
        metrics_index = layout.read_partition_index("metrics", dataset, experiment)
        exports = {
            entry["seed"]: entry for entry in layout.read_partition_index("exports", dataset, experiment)["runs"]
        }
        parzen = [score["mean_log_likelihood"] for score in layout.parzen_scores(dataset, experiment)]
    except (FileNotFoundError, ValueError, KeyError) as error:
        return {**row, "problems": [*row["problems"], str(error)]}
    if metrics_index.get("samples_hashes") != [samples.get(run["seed"]) for run in metrics_index["runs"]]:
        row["problems"].append(
            "its metrics score earlier samples than its current ones: materialise evaluation_metrics"
        )
    distances = {run["seed"]: float(run.get(RANKED_BY, math.nan)) for run in metrics_index["runs"]}
    if set(distances) != set(runs) or not all(math.isfinite(value) for value in distances.values()):
        row["problems"].append(f"{RANKED_BY} is missing or not finite for a seed: {distances}")
        return row
    best_seed = min(distances, key=lambda seed: (distances[seed], seed))
    values = np.array(list(distances.values()))
    row.update(
        seeds=sorted(distances),
        mean=float(values.mean()),
        spread=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
        seed=best_seed,
        seed_value=distances[best_seed],
        parzen_mean=float(np.mean(parzen)) if parzen else math.nan,
        weights_hash=runs[best_seed]["weights_hash"],
    )
    export = exports.get(best_seed)
    if export is None or export["metadata"]["source"].get("weights_hash") != runs[best_seed]["weights_hash"]:
        row["problems"].append(f"seed {best_seed} has no export of its current weights: materialise exported_generator")
        return row
    try:
        verify_export(export)
    except ExportError as error:
        row["problems"].append(str(error))
    parity = export.get("parity", {})
    if not max(parity.get("onnx_max_abs_diff", math.inf), parity.get("torchscript_max_abs_diff", math.inf)) <= (
        PARITY_TOLERANCE
    ):
        row["problems"].append(f"its export's parity {parity} exceeds the tolerance {PARITY_TOLERANCE:g}")
    row["export"] = export
    return row


def choose(standings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The candidate: the standing experiment with the lowest mean (then the lower best seed, then the name)."""
    eligible = [row for row in standings if not row["problems"]]
    return min(eligible, key=lambda row: (row["mean"], row["seed_value"], row["experiment"]), default=None)


def judge(candidate: dict[str, Any], promoted: dict[str, Any] | None) -> tuple[bool, str, dict[str, float]]:
    """(accepted, why, figures): a candidate is refused when its best seed's distance exceeds the promoted one's by
    more than the seeds' spread; the same generator again, or the first one, is accepted."""
    if promoted is None:
        return True, f"first promotion for {candidate['dataset']}: {describe(candidate)}", {}
    if promoted["weights_hash"] == candidate["weights_hash"]:
        return True, f"{describe(candidate)} is already the promoted generator", {}
    spread = max(candidate["spread"], promoted["spread"])
    margin = candidate["seed_value"] - promoted["seed_value"]
    figures = {
        "candidate_" + RANKED_BY: candidate["seed_value"],
        "promoted_" + RANKED_BY: promoted["seed_value"],
        "margin": margin,
        "spread": spread,
    }
    if margin > spread:
        return (
            False,
            f"refused: {describe(candidate)} is worse than the promoted {describe(promoted)} by {margin:.4g} (more "
            f"than the seeds' spread {spread:.4g}); the promoted generator stays",
            figures,
        )
    better = "better than" if margin < 0 else "within the seeds' spread of"
    return True, f"{describe(candidate)} is {better} the promoted {describe(promoted)} ({margin:+.4g})", figures


def describe(row: dict[str, Any]) -> str:
    return f"{row['dataset']}/{row['experiment']} seed {row['seed']} ({RANKED_BY} {row['seed_value']:.4g})"


def promoted(layout: ArtifactLayout, dataset: str) -> dict[str, Any] | None:
    """The promotion record of the generator in use for `dataset` (None: none promoted yet)."""
    path = layout.promoted_files(dataset).record
    return read_record(path, f"best_generator for {dataset}") if path.is_file() else None


def promote(layout: ArtifactLayout, candidate: dict[str, Any], reason: str) -> dict[str, Any]:
    """Copy the candidate's export to the dataset's stable path (each file atomically, the record last, so a reader
    of the record finds its files) and return the promotion record, which keeps the one it replaced as `previous`."""
    dataset = candidate["dataset"]
    before = promoted(layout, dataset)
    target = layout.promoted_files(dataset)
    export = candidate["export"]
    for source, destination in ((export["onnx"], target.onnx), (export["torchscript"], target.torchscript)):
        with atomic_output(destination) as tmp:
            shutil.copyfile(source, tmp)
    record = {
        **{key: value for key, value in candidate.items() if key not in ("problems", "export")},
        "onnx": str(target.onnx),
        "torchscript": str(target.torchscript),
        "onnx_sha256": export["onnx_sha256"],
        "torchscript_sha256": export["torchscript_sha256"],
        "exported_from": {"onnx": export["onnx"], "torchscript": export["torchscript"]},
        "metadata": export["metadata"],
        "criterion": CRITERION,
        "reason": reason,
        "promoted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "previous": None if before is None else {k: v for k, v in before.items() if k != "previous"},
    }
    write_record(target.record, record)
    return record


def last_candidate(layout: ArtifactLayout, dataset: str) -> dict[str, Any] | None:
    """The candidate `generator_candidate` picked last for `dataset`, with its standings (None: never run)."""
    path = layout.promotion_candidate(dataset)
    return read_record(path, f"generator_candidate for {dataset}") if path.is_file() else None


def promotions_table(layout: ArtifactLayout, datasets: list[str]) -> pd.DataFrame:
    """One row per dataset with a promoted generator: what is in use, why, and what became of the last candidate."""
    import pandas as pd

    rows = []
    for dataset in datasets:
        record = promoted(layout, dataset)
        if record is None:
            continue
        candidate = last_candidate(layout, dataset)
        verdict = ""
        if candidate is not None and candidate["candidate"]["weights_hash"] != record["weights_hash"]:
            verdict = judge(candidate["candidate"], record)[1]
        rows.append(
            {
                "dataset": dataset,
                "experiment": record["experiment"],
                "seed": record["seed"],
                RANKED_BY: record["seed_value"],
                "experiment_mean": round(record["mean"], 4),
                "spread": round(record["spread"], 4),
                "parzen_mean": round(record["parzen_mean"], 2),
                "promoted_at": record["promoted_at"],
                # below the data root: the report opens anywhere and names no machine's folders
                "onnx": str(Path(record["onnx"]).relative_to(layout.root)),
                "why": record["reason"],
                "last_candidate": verdict or "the promoted generator",
            }
        )
    return pd.DataFrame(rows)
