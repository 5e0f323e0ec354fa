"""Evaluation report tables: a replica of the paper's Table 1 beside this project's results, as CSV/Markdown/HTML."""

from __future__ import annotations

import html as html_lib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gan_core.metrics import METRIC_COLUMNS
from gan_core.storage import atomic_output

# Table 1 of Goodfellow et al. (2014): Parzen-window log-likelihood (nats), mean +- standard error.
PAPER_TABLE1: list[dict[str, Any]] = [
    {"dataset": "mnist", "model": "DBN", "mean": 138.0, "error": 2.0},
    {"dataset": "mnist", "model": "Stacked CAE", "mean": 121.0, "error": 1.6},
    {"dataset": "mnist", "model": "Deep GSN", "mean": 214.0, "error": 1.1},
    {"dataset": "mnist", "model": "Adversarial nets", "mean": 225.0, "error": 2.0},
    {"dataset": "tfd", "model": "DBN", "mean": 1909.0, "error": 66.0},
    {"dataset": "tfd", "model": "Stacked CAE", "mean": 2110.0, "error": 50.0},
    {"dataset": "tfd", "model": "Deep GSN", "mean": 1890.0, "error": 29.0},
    {"dataset": "tfd", "model": "Adversarial nets", "mean": 2057.0, "error": 26.0},
]


def _fmt(mean: float, error: float) -> str:
    return f"{mean:.1f} ± {error:.1f}"


def parzen_table(
    project_results: Iterable[dict[str, Any]], reference_results: Iterable[dict[str, Any]]
) -> pd.DataFrame:
    """One row per (dataset, model): paper rows, this project's rows (mean ± std across seeds, or ± standard error
    for a single seed), and a reference row per dataset for the estimator on real training images.

    `project_results` items: {dataset, model, seed, mean_log_likelihood, standard_error, sigma, n_samples, n_test}.
    `reference_results` items: {dataset, mean_log_likelihood, standard_error, sigma, n_samples, n_test}.
    """
    rows: list[dict[str, Any]] = []
    project = pd.DataFrame(list(project_results))
    datasets = sorted(set(project["dataset"]) if len(project) else set())
    for paper_row in PAPER_TABLE1:
        if paper_row["dataset"] in datasets or paper_row["dataset"] in ("mnist", "tfd"):
            rows.append(
                {
                    "dataset": paper_row["dataset"],
                    "model": paper_row["model"],
                    "source": "paper (Table 1)",
                    "seeds": np.nan,
                    "sigma": np.nan,
                    "log_likelihood": _fmt(paper_row["mean"], paper_row["error"]),
                    "mean": paper_row["mean"],
                    "error": paper_row["error"],
                }
            )
    if len(project):
        for (dataset, model), group in project.groupby(["dataset", "model"], sort=True):
            means = group["mean_log_likelihood"].to_numpy(dtype=float)
            if len(means) > 1:
                mean, error, kind = (
                    float(means.mean()),
                    float(means.std(ddof=1)),
                    "this project (mean ± std over seeds)",
                )
            else:
                mean, error, kind = float(means[0]), float(group["standard_error"].iloc[0]), "this project (± s.e.)"
            rows.append(
                {
                    "dataset": dataset,
                    "model": model,
                    "source": kind,
                    "seeds": len(means),
                    "sigma": float(group["sigma"].median()),
                    "log_likelihood": _fmt(mean, error),
                    "mean": mean,
                    "error": error,
                }
            )
    for ref in reference_results:
        rows.append(
            {
                "dataset": ref["dataset"],
                "model": f"real training images (n={ref['n_samples']})",
                "source": "reference: estimator ceiling",
                "seeds": np.nan,
                "sigma": ref["sigma"],
                "log_likelihood": _fmt(ref["mean_log_likelihood"], ref["standard_error"]),
                "mean": ref["mean_log_likelihood"],
                "error": ref["standard_error"],
            }
        )
    table = pd.DataFrame(
        rows, columns=["dataset", "model", "source", "seeds", "sigma", "log_likelihood", "mean", "error"]
    )
    return table.sort_values(["dataset", "source", "model"], kind="stable").reset_index(drop=True)


def metrics_table(
    parzen_rows: Iterable[dict[str, Any]],
    metric_rows: Iterable[dict[str, Any]],
    reference_rows: Iterable[dict[str, Any]],
    parzen_references: Iterable[dict[str, Any]],
) -> pd.DataFrame:
    """Parzen beside the modern metrics, one row per (dataset, model) (means over seeds) plus reference rows:
    real test images, and a memorising model returning training images (its Parzen is the real-training reference)."""
    parzen = pd.DataFrame(list(parzen_rows))
    metrics = pd.DataFrame(list(metric_rows))
    rows: list[dict[str, Any]] = []
    if len(metrics):
        for (dataset, model), group in metrics.groupby(["dataset", "model"], sort=True):
            row: dict[str, Any] = {"dataset": dataset, "model": model, "seeds": len(group)}
            row.update({name: float(group[name].mean()) for name in METRIC_COLUMNS})
            if len(parzen):
                match = parzen[(parzen["dataset"] == dataset) & (parzen["model"] == model)]
                row["parzen"] = float(match["mean_log_likelihood"].mean()) if len(match) else np.nan
            rows.append(row)
    parzen_by_dataset = {ref["dataset"]: ref["mean_log_likelihood"] for ref in parzen_references}
    for ref in reference_rows:
        row = {"dataset": ref["dataset"], "model": ref["model"], "seeds": np.nan}
        row.update({name: float(ref[name]) for name in METRIC_COLUMNS})
        row["parzen"] = (
            parzen_by_dataset.get(ref["dataset"], np.nan) if ref["model"].startswith("memorising") else np.nan
        )
        rows.append(row)
    table = pd.DataFrame(rows, columns=["dataset", "model", "seeds", "parzen", *METRIC_COLUMNS])
    table["seeds"] = table["seeds"].astype("Int64")
    return table.round(4)


def table_markdown(table: pd.DataFrame) -> str:
    """A table as Markdown with blanks for missing values."""
    shown = table.astype(object).where(table.notna(), "")
    return shown.to_markdown(index=False)


def write_report(
    tables: dict[str, pd.DataFrame],
    out_dir: str | os.PathLike[str],
    title: str,
    figures: dict[str, str] | None = None,
    left_out: dict[str, str] | None = None,
) -> dict[str, Path]:
    """Write every table as CSV, one Markdown file and one HTML file (atomically), linking `figures` ({caption:
    path}) and listing the partitions `left_out` ({partition: reason}); return the paths."""
    figures, left_out = figures or {}, left_out or {}
    left_out_md = "\n".join(f"- {key}: {reason}" for key, reason in left_out.items())
    left_out_html = "".join(
        f"<li>{html_lib.escape(key)}: {html_lib.escape(reason)}</li>" for key, reason in left_out.items()
    )
    out_dir = Path(out_dir)
    paths: dict[str, Path] = {}
    for name, table in tables.items():
        csv_path = out_dir / f"{name}.csv"
        with atomic_output(csv_path) as tmp:
            table.to_csv(tmp, index=False)
        paths[f"{name}_csv"] = csv_path
    markdown = "\n\n".join(
        [f"# {title}"]
        + [f"## {name}\n\n{table_markdown(t)}" for name, t in tables.items()]
        + ([f"## partitions left out\n\n{left_out_md}"] if left_out else [])
    )
    html = "\n".join(
        [f"<html><head><meta charset='utf-8'><title>{title}</title></head><body><h1>{title}</h1>"]
        + [f"<h2>{name}</h2>{t.to_html(index=False, na_rep='', classes='report')}" for name, t in tables.items()]
        + ([f"<h2>partitions left out</h2><ul>{left_out_html}</ul>"] if left_out else [])
        + (
            ["<h2>figures</h2>"]
            + [
                f"<figure><img src='file://{path}' alt='{html_lib.escape(caption)}'>"
                f"<figcaption>{html_lib.escape(caption)}</figcaption></figure>"
                for caption, path in figures.items()
            ]
            if figures
            else []
        )
        + ["</body></html>"]
    )
    for suffix, text in (("md", markdown + "\n"), ("html", html)):
        path = out_dir / f"report.{suffix}"
        with atomic_output(path) as tmp:
            tmp.write_text(text)
        paths[suffix] = path
    return paths
