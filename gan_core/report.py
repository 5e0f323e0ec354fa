"""The evaluation report: the paper's Table 1 beside this project's results, the sample-quality metrics, a summary, and
each trained model's figures; written as CSV and Markdown (for machines) and one self-contained HTML file (for people).

The HTML file needs nothing beside it: the style sheet is inline, every figure is a `data:` URI, every text is escaped,
and no path is written into it, so it opens from any folder, as an e-mail attachment or from a web server.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gan_core.experiments import Experiment
from gan_core.metrics import METRIC_COLUMNS
from gan_core.plots import sweep_png
from gan_core.promotion import CRITERION
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
PAPER_SOURCE = "paper (Table 1)"
CEILING_SOURCE = "reference: estimator ceiling"
REAL_TEST_PREFIX = "real test images"
MEMORISING_PREFIX = "memorising model"

# Decimals shown per column (the CSV files keep full precision).
DECIMALS: dict[str, int] = {
    "sigma": 4,
    "parzen": 2,
    "frechet_distance": 2,
    "kid": 3,
    "precision": 3,
    "recall": 3,
    "density": 3,
    "coverage": 3,
    "class_coverage": 2,
    "class_kl": 3,
    "inception_score": 2,
    "memorisation_ratio": 3,
    "conditional_accuracy": 3,
    "class_frechet_distance": 2,
    "ssl_test_error": 4,
    "supervised_baseline_error": 4,
    "encoder_probe_accuracy": 3,
    "pixel_probe_accuracy": 3,
    "reconstruction_mse": 4,
}

# One sentence per column on how to read it.
COLUMN_GUIDE: dict[str, str] = {
    "seeds": "How many training seeds the row averages over (blank for reference rows).",
    "sigma": "The Parzen window width chosen on validation images (the median over seeds).",
    "log_likelihood": "Mean Parzen-window log-likelihood of the test images in nats, ± the standard error for one seed "
    "or ± the standard deviation over seeds; higher is better.",
    "parzen": "Mean Parzen-window log-likelihood of the test images in nats; higher is better, but the memorising row "
    "(training images themselves) is the estimator's ceiling, so it rewards copying.",
    "frechet_distance": "Fréchet distance between Gaussians fitted to the feature classifier's features of the samples "
    "and of training images; lower is better, and the real test images' row is the floor a perfect model reaches.",
    "kid": "Kernel (MMD²) distance on the same features; unbiased, so matching sets give values around 0, even "
    "slightly negative; lower is better.",
    "precision": "Share of samples that fall inside the real images' k-nearest-neighbour manifold (k = 3): how "
    "realistic the samples are.",
    "recall": "Share of real images that fall inside the samples' manifold: how much of the data's variety the model "
    "produces; near 0 means mode collapse.",
    "density": "How many real images' neighbourhoods hold each sample, about 1 for real data; far above 1 means "
    "samples crowd around few real images.",
    "coverage": "Share of real images with a sample in their neighbourhood (k = 5).",
    "class_coverage": "Share of classes that receive at least a tenth of their share in the data among the samples, "
    "by the feature classifier; 1 means every class is drawn.",
    "class_kl": "KL divergence of the samples' class histogram from the data's class distribution; 0 is a match.",
    "inception_score": "exp(E KL(p(y|x) ‖ p(y))) with the dataset's own classifier: high for confident and varied "
    "samples, at most the number of classes.",
    "conditional_accuracy": "Conditional models only: the feature classifier's accuracy on the samples against the "
    "labels they were drawn for (for real test images: the classifier's own test accuracy).",
    "class_frechet_distance": "Conditional models only: the mean over classes of the Fréchet distance between the "
    "samples drawn for a class and the real images of that class.",
    "ssl_test_error": "Semi-supervised models only: the discriminator's K-way error on the test images (it saw "
    "labels_per_class labels of each class).",
    "supervised_baseline_error": "Semi-supervised models only: the test error of the same network trained on the same "
    "labelled images alone (what the unlabelled images and the GAN game add).",
    "encoder_probe_accuracy": "Learned inference: test accuracy of a logistic regression on E(x), the latent code an "
    "encoder trained on (G(z), z) infers, fitted on training images.",
    "pixel_probe_accuracy": "The same logistic regression on raw pixels (the probe's baseline).",
    "reconstruction_mse": "Learned inference: mean squared pixel error of G(E(x)) against the test image x.",
    "memorisation_ratio": "Median distance from a sample to its nearest training image over the same for held-out real "
    "images: about 1 means the model generalises like real data, near 0 means it returns copies of training images.",
}

# Figures per trained model, in the order the report shows them, with their captions.
FIGURE_CAPTIONS: dict[str, str] = {
    "samples": "100 samples of the first seed",
    "class_grid": "Conditional model: one row per class (0 at the top), samples drawn for that label",
    "loss_curves": "Discriminator and generator loss per epoch, one line per seed",
    "sigma_search": "Parzen window width search: mean validation log-likelihood per σ",
    "figure2_nearest_neighbours": "Figure 2: samples (odd rows) above their nearest training image (even rows)",
    "figure3_interpolations": "Figure 3: linear interpolations between random latent vectors",
    "reconstructions": "Learned inference: test images (odd rows) above their reconstructions G(E(x)) (even rows)",
}


def _pm(mean: float, error: float) -> str:
    return f"{mean:.1f} ± {error:.1f}"


def sigma_search_table(searches: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per seed and sigma of the stored bandwidth searches, the chosen sigma of each seed marked."""
    return pd.DataFrame(
        [
            {"seed": e["seed"], "sigma": s, "mean_valid_log_likelihood": v, "chosen": s == e["sigma"]}
            for e in searches
            for s, v in e["valid_mean_by_sigma"]
        ]
    )


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
                    "source": PAPER_SOURCE,
                    "seeds": np.nan,
                    "sigma": np.nan,
                    "log_likelihood": _pm(paper_row["mean"], paper_row["error"]),
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
                    "log_likelihood": _pm(mean, error),
                    "mean": mean,
                    "error": error,
                }
            )
    for ref in reference_results:
        rows.append(
            {
                "dataset": ref["dataset"],
                "model": f"real training images (n={ref['n_samples']})",
                "source": CEILING_SOURCE,
                "seeds": np.nan,
                "sigma": ref["sigma"],
                "log_likelihood": _pm(ref["mean_log_likelihood"], ref["standard_error"]),
                "mean": ref["mean_log_likelihood"],
                "error": ref["standard_error"],
            }
        )
    table = pd.DataFrame(
        rows, columns=["dataset", "model", "source", "seeds", "sigma", "log_likelihood", "mean", "error"]
    )
    table["seeds"] = table["seeds"].astype("Int64")
    return table.sort_values(["dataset", "source", "model"], kind="stable").reset_index(drop=True)


def reproduction_table(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Table 1's rows trained and scored by the pipeline (gan_core.reproduction.reproduction_rows: each seed's best
    checkpoint by the validation monitor and its last, mean ± std over seeds) beneath the paper's row of each dataset
    they cover, with the epochs trained (mean over seeds) and the training wall time."""
    rows = list(rows)
    datasets = sorted({row["dataset"] for row in rows})
    table = [
        {
            "dataset": paper["dataset"],
            "model": paper["model"],
            "checkpoint": "",
            "seeds": np.nan,
            "log_likelihood": _pm(paper["mean"], paper["error"]),
            "epochs": np.nan,
            "wall_hours": np.nan,
            "mean": paper["mean"],
            "error": paper["error"],
        }
        for paper in PAPER_TABLE1
        if paper["dataset"] in datasets
    ]
    for row in rows:
        table.append(
            {
                "dataset": row["dataset"],
                "model": row["model"],
                "checkpoint": f"{row['checkpoint']} (this project, mean ± {row['spread']})",
                "seeds": row["seeds"],
                "log_likelihood": _pm(row["mean"], row["error"]),
                "epochs": row["epochs"],
                "wall_hours": row["wall_seconds"] / 3600,
                "mean": row["mean"],
                "error": row["error"],
            }
        )
    frame = pd.DataFrame(
        table,
        columns=["dataset", "model", "checkpoint", "seeds", "log_likelihood", "epochs", "wall_hours", "mean", "error"],
    )
    frame["seeds"] = frame["seeds"].astype("Int64")
    return frame.round({"epochs": 1, "wall_hours": 3})


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
            row.update({name: _mean(group, name) for name in METRIC_COLUMNS})
            row.update({name + STD: _std(group, name) for name in METRIC_COLUMNS})
            if len(parzen):
                match = parzen[(parzen["dataset"] == dataset) & (parzen["model"] == model)]
                row["parzen"] = float(match["mean_log_likelihood"].mean()) if len(match) else np.nan
                row["parzen" + STD] = _std(match, "mean_log_likelihood") if len(match) else np.nan
            rows.append(row)
    parzen_by_dataset = {ref["dataset"]: ref["mean_log_likelihood"] for ref in parzen_references}
    for ref in reference_rows:
        row = {"dataset": ref["dataset"], "model": ref["model"], "seeds": np.nan}
        row.update({name: _number(ref.get(name)) for name in METRIC_COLUMNS})
        row["parzen"] = (
            parzen_by_dataset.get(ref["dataset"], np.nan) if ref["model"].startswith(MEMORISING_PREFIX) else np.nan
        )
        rows.append(row)
    spreads = [name + STD for name in ("parzen", *METRIC_COLUMNS)]
    table = pd.DataFrame(rows, columns=["dataset", "model", "seeds", "parzen", *METRIC_COLUMNS, *spreads])
    table["seeds"] = table["seeds"].astype("Int64")
    return table.round(4)


# Suffix of the column holding a metric's standard deviation over seeds (ddof 1; blank for one seed): the report
# shows the pair as "mean ± std".
STD = "_std"


def _mean(group: pd.DataFrame, name: str) -> float:
    """Mean of a metric over seeds; NaN where it does not apply (conditional accuracy of an unconditional model)."""
    return float(pd.to_numeric(group[name], errors="coerce").mean()) if name in group.columns else np.nan


def _std(group: pd.DataFrame, name: str) -> float:
    """Standard deviation of a metric over seeds (ddof 1); NaN for one seed or where it does not apply."""
    if name not in group.columns or len(group) < 2:
        return np.nan
    return float(pd.to_numeric(group[name], errors="coerce").std(ddof=1))


def _number(value: Any) -> float:
    return np.nan if value is None else float(value)


SUMMARY_COLUMNS = [
    "dataset",
    "model",
    "seeds",
    "log_likelihood",
    "frechet_distance",
    "precision",
    "recall",
    "class_coverage",
    "memorisation_ratio",
    "encoder_probe_accuracy",  # the learned inverse's linear probe (assets/inference_assets.py)
    # of some models only, each left out of a summary without one: conditional; semi-supervised (its test error and
    # its supervised baseline's)
    "conditional_accuracy",
    "ssl_test_error",
    "supervised_baseline_error",
]
OPTIONAL_SUMMARY_COLUMNS = ("conditional_accuracy", "ssl_test_error", "supervised_baseline_error")


def summary_table(parzen: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Per dataset with a trained model: each trained model (Parzen mean ± error and the headline metrics), the paper's
    adversarial-nets row, and the real-data references (real test images; training images, the Parzen ceiling)."""
    rows: list[dict[str, Any]] = []
    trained = parzen[parzen["source"].str.startswith("this project")]
    for dataset in sorted(set(trained["dataset"])):
        in_dataset = metrics[metrics["dataset"] == dataset]
        for _, row in trained[trained["dataset"] == dataset].iterrows():
            match = in_dataset[in_dataset["model"] == row["model"]]
            rows.append({**_headline(match), "model": row["model"], "log_likelihood": row["log_likelihood"]})
            rows[-1].update(dataset=dataset, seeds=row["seeds"])
        paper = parzen[
            (parzen["dataset"] == dataset)
            & (parzen["source"] == PAPER_SOURCE)
            & (parzen["model"] == "Adversarial nets")
        ]
        for _, row in paper.iterrows():
            rows.append(
                {"dataset": dataset, "model": "adversarial nets (the paper)", "log_likelihood": row["log_likelihood"]}
            )
        real_test = in_dataset[in_dataset["model"].str.startswith(REAL_TEST_PREFIX)]
        if len(real_test):
            rows.append({**_headline(real_test), "dataset": dataset, "model": real_test["model"].iloc[0]})
        ceiling = parzen[(parzen["dataset"] == dataset) & (parzen["source"] == CEILING_SOURCE)]
        memorising = in_dataset[in_dataset["model"].str.startswith(MEMORISING_PREFIX)]
        if len(ceiling):
            rows.append(
                {
                    **_headline(memorising),
                    "dataset": dataset,
                    "model": f"{ceiling['model'].iloc[0]}: the ceiling",
                    "log_likelihood": ceiling["log_likelihood"].iloc[0],
                }
            )
    spreads = [name + STD for name in SUMMARY_COLUMNS[4:]]
    table = pd.DataFrame(rows, columns=[*SUMMARY_COLUMNS, *spreads])
    table["seeds"] = table["seeds"].astype("Int64")
    for column in OPTIONAL_SUMMARY_COLUMNS:
        if table.loc[table["seeds"].notna(), column].isna().all():  # no model of that kind trained
            table = table.drop(columns=[column, column + STD])
    return table


EXPERIMENT_COLUMNS = ["dataset", "best", "experiment", "model", "sweep", "settings", "seeds"]
SWEEP_METRICS = {
    "frechet_distance": "Fréchet distance (lower is better)",
    "log_likelihood_mean": "Parzen log-likelihood, nats",
    "precision": "precision",
    "recall": "recall",
}
TOP_EXPERIMENTS = 20  # rows of a dataset's experiments table shown in the report (the CSV holds every one)
TOP_SWEEPS = 10  # sweeps shown with their plot and points; the others get a row each


def _best_distance(table: pd.DataFrame, key: str) -> float:
    """The best Fréchet distance of a sweep's points ("<dataset>|<sweep>"); NaN sorts last."""
    dataset, sweep = key.split("|", 1)
    distances = table.loc[(table["dataset"] == dataset) & (table["sweep"] == sweep), "frechet_distance"]
    best = distances.min()
    return float("inf") if pd.isna(best) else float(best)


def experiments_table(
    summary: pd.DataFrame, parzen: pd.DataFrame, experiments: Mapping[str, Experiment]
) -> pd.DataFrame:
    """Every trained experiment of each dataset (the summary's rows, mean ± std over seeds), with its model entry,
    sweep and settings, sorted by Fréchet distance (best first, marked), then the paper's row and the real-data rows.
    `log_likelihood_mean`/`_std` hold the Parzen score as numbers (for the sweep plots)."""
    trained_parzen = parzen[parzen["source"].str.startswith("this project")]
    spread = {(r["dataset"], r["model"]): (r["mean"], r["error"], r["seeds"]) for _, r in trained_parzen.iterrows()}
    rows = []
    for dataset in sorted(set(summary["dataset"])):
        in_dataset = summary[summary["dataset"] == dataset]
        trained = in_dataset[in_dataset["seeds"].notna()].copy()
        trained = trained.sort_values("frechet_distance", na_position="last", kind="stable")
        for position, (_, row) in enumerate(trained.iterrows()):
            experiment = experiments.get(row["model"])
            mean, error, seeds = spread.get((dataset, row["model"]), (np.nan, np.nan, 0))
            rows.append(
                {
                    **row.to_dict(),
                    "experiment": row["model"],
                    "model": experiment.model if experiment else "",
                    "sweep": experiment.sweep if experiment else "",
                    "settings": ", ".join(f"{k}={v}" for k, v in experiment.settings.items()) if experiment else "",
                    "best": position == 0 and not pd.isna(row["frechet_distance"]),
                    "log_likelihood_mean": mean,
                    "log_likelihood_mean" + STD: error if seeds and seeds > 1 else np.nan,
                }
            )
        for _, row in in_dataset[in_dataset["seeds"].isna()].iterrows():  # the paper's and the real-data rows
            rows.append({**row.to_dict(), "experiment": row["model"], "model": "", "best": False})
    rest = [c for c in summary.columns if c not in EXPERIMENT_COLUMNS]
    table = pd.DataFrame(rows, columns=[*EXPERIMENT_COLUMNS, *rest, "log_likelihood_mean", "log_likelihood_mean" + STD])
    table["seeds"] = table["seeds"].astype("Int64")
    table["best"] = table["best"].fillna(False).astype(bool)
    return table


def shown_experiments(table: pd.DataFrame, top: int = TOP_EXPERIMENTS) -> pd.DataFrame:
    """What the report shows of the experiments table: per dataset the `top` best trained experiments and the
    reference rows; the numeric Parzen columns stay in the CSV."""
    trained = table[table["seeds"].notna()].groupby("dataset", sort=True).head(top)
    shown = pd.concat([trained, table[table["seeds"].isna()]]).sort_index(kind="stable")
    return shown.drop(columns=["log_likelihood_mean", "log_likelihood_mean" + STD])


def reported_figures(
    figures: Mapping[str, Mapping[str, Path]], covered: Iterable[str], experiments: pd.DataFrame
) -> dict[str, Mapping[str, Path]]:
    """The stored figures ({"<dataset>|<experiment>": {name: path}}) the report embeds: those of the reported
    partitions (`covered`), and with more than TOP_EXPERIMENTS of them only those the experiments table shows."""
    covered = set(covered)
    chosen = {partition: files for partition, files in figures.items() if partition in covered}
    if len(chosen) > TOP_EXPERIMENTS:
        shown = shown_experiments(experiments)
        keep = {f"{dataset}|{name}" for dataset, name in zip(shown["dataset"], shown["experiment"], strict=True)}
        chosen = {partition: files for partition, files in chosen.items() if partition in keep}
    return chosen


def sweep_figures(table: pd.DataFrame, experiments: Mapping[str, Experiment]) -> dict[str, bytes]:
    """One plot per sweep and dataset ("<dataset>|<sweep>"): each metric against the first swept setting, error bars
    over seeds, a line per value of the second swept setting."""
    figures = {}
    trained = table[table["seeds"].notna() & (table["sweep"] != "")]
    for (dataset, sweep), group in trained.groupby(["dataset", "sweep"], sort=True):
        swept = experiments[group["experiment"].iloc[0]].swept
        if not swept:
            continue
        points = []
        for _, row in group.iterrows():
            settings = experiments[row["experiment"]].settings
            point = {name: settings.get(name) for name in swept}
            for column in SWEEP_METRICS:
                point[column] = None if pd.isna(row[column]) else float(row[column])
                spread = row.get(column + STD)
                point[column + STD] = None if spread is None or pd.isna(spread) else float(spread)
            points.append(point)
        group_by = swept[1] if len(swept) > 1 else None
        figures[f"{dataset}|{sweep}"] = sweep_png(points, swept[0], SWEEP_METRICS, group_by)
    return figures


def _headline(match: pd.DataFrame) -> dict[str, Any]:
    if not len(match):
        return {}
    names = [*SUMMARY_COLUMNS[4:], *(name + STD for name in SUMMARY_COLUMNS[4:])]
    return {name: match[name].iloc[0] for name in names if name in match.columns}


def presented(table: pd.DataFrame) -> pd.DataFrame:
    """The table as text for people: fixed decimals per column, "mean ± std" where a metric has its spread over
    seeds (the `_std` columns), seeds as integers, blanks for missing values, and the machine-only columns (`mean`,
    `error`: `log_likelihood` shows them; the `_std` columns) dropped."""
    hidden = [c for c in table.columns if c in ("mean", "error") or c.endswith(STD)]
    shown = table.drop(columns=hidden)
    out = pd.DataFrame(index=shown.index)
    for column in shown.columns:
        values = shown[column]
        if column in DECIMALS:
            places = DECIMALS[column]
            spreads = table[column + STD] if column + STD in table.columns else pd.Series(np.nan, index=table.index)
            out[column] = [
                "" if pd.isna(v) else f"{float(v):.{places}f}" + ("" if pd.isna(s) else f" ± {float(s):.{places}f}")
                for v, s in zip(values, spreads, strict=True)
            ]
        else:
            out[column] = ["" if pd.isna(v) else str(v) for v in values]
    return out


def table_markdown(table: pd.DataFrame) -> str:
    """A table as Markdown (pandas + tabulate) in its presented form."""
    return presented(table).to_markdown(index=False)


def _table_html(table: pd.DataFrame, guide: bool) -> str:
    shown = presented(table)
    numeric = {c for c in shown.columns if c in DECIMALS or c == "seeds"}
    head = "".join(
        f"<th{' class=num' if c in numeric else ''}{_title(c) if guide else ''}>{html.escape(_label(c))}</th>"
        for c in shown.columns
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td{' class=num' if c in numeric else ''}>{html.escape(str(value))}</td>"
            for c, value in zip(shown.columns, values, strict=True)
        )
        + "</tr>"
        for values in shown.itertuples(index=False)
    )
    text = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if guide:
        items = "".join(
            f"<dt>{html.escape(_label(c))}</dt><dd>{html.escape(COLUMN_GUIDE[c])}</dd>"
            for c in shown.columns
            if c in COLUMN_GUIDE
        )
        text += f"<dl class=guide>{items}</dl>"
    return text


def _label(column: str) -> str:
    return {"log_likelihood": "Parzen log-likelihood (nats)", "parzen": "Parzen (nats)", "kid": "KID"}.get(
        column, column.replace("_", " ")
    )


def _title(column: str) -> str:
    return f' title="{html.escape(COLUMN_GUIDE[column])}"' if column in COLUMN_GUIDE else ""


def _figure_html(caption: str, png: bytes) -> str:
    uri = "data:image/png;base64," + base64.b64encode(png).decode()
    text = html.escape(caption)
    return f'<figure><img src="{uri}" alt="{text}"><figcaption>{text}</figcaption></figure>'


STYLE = """
body{font:15px/1.5 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1d2433;max-width:1100px;margin:2em auto;
padding:0 1em}h1{font-size:1.7em;margin-bottom:.2em}h2{border-bottom:1px solid #d7dce5;padding-bottom:.2em;
margin-top:2em}h3{margin-top:1.5em}p.lede{color:#4a5568}table{border-collapse:collapse;margin:.8em 0;font-size:.9em}
th,td{padding:.3em .7em;border-bottom:1px solid #e2e6ee;text-align:left;vertical-align:top}
th{background:#f3f5f9;font-weight:600}td.num,th.num{text-align:right;font-variant-numeric:tabular-nums}
tbody tr:hover{background:#fafbfd}dl.guide{font-size:.85em;color:#4a5568;display:grid;
grid-template-columns:max-content 1fr;gap:.2em 1em}dl.guide dt{font-weight:600}dl.guide dd{margin:0}
.figures{display:flex;flex-wrap:wrap;gap:1.2em}figure{margin:0;max-width:480px}
figure img{max-width:100%;image-rendering:pixelated;border:1px solid #e2e6ee}
figcaption{font-size:.85em;color:#4a5568}footer{margin-top:3em;font-size:.8em;color:#718096}
"""


def render_html(
    title: str,
    tables: Mapping[str, pd.DataFrame],
    figures: Mapping[str, Mapping[str, bytes]],
    left_out: Mapping[str, str],
    summary_text: str,
    sweeps: Mapping[str, bytes] | None = None,
) -> str:
    """The report as one self-contained HTML document (inline CSS, figures as data: URIs, escaped text); with an
    `experiments` table, its section (the best experiments of each dataset) and one plot per sweep (`sweeps`)."""
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        "<p class=lede>Goodfellow et al., <i>Generative Adversarial Nets</i> (2014), reproduced by gan-pipeline: "
        "Parzen-window log-likelihood as in the paper's Table 1, modern sample-quality metrics on a feature "
        "classifier trained on each dataset, and the paper's figures.</p>",
        "<h2 id=summary>Summary</h2>",
        f"<p>{html.escape(summary_text)}</p>",
        _table_html(tables["summary"], guide=False),
        *_experiments_html(tables.get("experiments"), sweeps or {}),
        *_promoted_html(tables.get("promoted")),
        "<h2 id=table1>Table 1: Parzen-window log-likelihood</h2>",
        "<p>The paper's rows beside this project's. The estimator fits a Gaussian window to 10,000 samples, chooses "
        "its width on validation images and scores the test images; the ceiling row applies it to real training "
        "images. The paper itself warns that this estimate has high variance and does not perform well in high "
        "dimensions.</p>",
        _table_html(tables["parzen_table1"], guide=True),
        *_reproduction_html(tables.get("reproduction")),
        "<h2 id=metrics>Sample-quality metrics</h2>",
        "<p>Means over seeds, against the first training images in the feature space of a small classifier trained "
        "on the dataset itself (offline; not Inception features, so values are comparable within a dataset only). "
        "Hover a column heading for its meaning; all columns are explained below.</p>",
        _table_html(tables["metrics"], guide=True),
    ]
    if figures:
        sections.append("<h2 id=models>Models</h2>")
        for partition, pngs in figures.items():
            shown = [_figure_html(FIGURE_CAPTIONS.get(name, name), png) for name, png in _ordered(pngs)]
            sections += [f"<h3>{html.escape(partition)}</h3>", f"<div class=figures>{''.join(shown)}</div>"]
    if left_out:
        items = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>" for k, v in left_out.items())
        sections += ["<h2 id=left-out>Partitions left out</h2>", f"<ul>{items}</ul>"]
    sections.append(
        "<footer>Written by gan-pipeline's evaluation_report asset. The same tables, at full precision, are in the "
        "CSV files and report.md beside this file.</footer>"
    )
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def _reproduction_html(table: pd.DataFrame | None) -> list[str]:
    """Table 1's row produced by the pipeline: the best checkpoint by the validation monitor and the last."""
    if table is None or table.empty:
        return []
    return [
        "<h3 id=reproduction>Table 1 from the pipeline: best by the validation monitor, and last</h3>",
        "<p>Each seed keeps the checkpoint with the best cheap validation Parzen estimate (as the paper's code "
        "logged) beside its last; both are scored under the exact protocol above. The test images never choose.</p>",
        _table_html(table, guide=False),
    ]


def _promoted_html(table: pd.DataFrame | None) -> list[str]:
    """The generators in use (best_generator), why each was promoted and what became of the last candidate."""
    if table is None or table.empty:
        return []
    return [
        "<h2 id=promoted>Promoted generators</h2>",
        f"<p>The generator in use for each dataset, at its stable path. Chosen by: {html.escape(CRITERION)}</p>",
        _table_html(table, guide=False),
    ]


def _experiments_html(table: pd.DataFrame | None, sweeps: Mapping[str, bytes]) -> list[str]:
    """The experiments section: per dataset its best experiments (sorted by Fréchet distance, the best marked) beside
    the paper's and real-data rows, then per sweep its plot and its points."""
    if table is None or not table["seeds"].notna().any():
        return []
    sections = [
        "<h2 id=experiments>Experiments</h2>",
        f"<p>Every trained experiment of a dataset, mean ± std over seeds, sorted by Fréchet distance; the best is "
        f"marked. At most {TOP_EXPERIMENTS} per dataset are shown here; experiments.csv beside this file holds every "
        f"one. The {TOP_SWEEPS} sweeps holding the best points have a section each below, the others a row.</p>",
    ]
    shown = shown_experiments(table)
    for dataset in sorted(set(shown["dataset"])):
        in_dataset = shown[shown["dataset"] == dataset]
        trained = int(table[(table["dataset"] == dataset) & table["seeds"].notna()].shape[0])
        more = trained - int(in_dataset["seeds"].notna().sum())
        note = f"<p>{more} more experiments of {html.escape(dataset)} in experiments.csv.</p>" if more > 0 else ""
        sections += [f"<h3>{html.escape(dataset)}</h3>", _table_html(in_dataset, guide=False), note]
    ranked = sorted(sweeps, key=lambda key: _best_distance(table, key))  # the sweep holding the best point first
    for key in ranked[:TOP_SWEEPS]:
        dataset, sweep = key.split("|", 1)
        points = table[(table["dataset"] == dataset) & (table["sweep"] == sweep)]
        sections += [
            f"<h3 id=sweep-{html.escape(sweep)}>Sweep {html.escape(sweep)} on {html.escape(dataset)}</h3>",
            _figure_html(
                f"sweep {sweep}: each metric against the swept settings, error bars: std over seeds", sweeps[key]
            ),
            _table_html(
                points.head(TOP_EXPERIMENTS).drop(columns=["log_likelihood_mean", "log_likelihood_mean" + STD]),
                guide=False,
            ),
        ]
        if len(points) > TOP_EXPERIMENTS:
            sections.append(f"<p>The best {TOP_EXPERIMENTS} of its {len(points)} points; all in experiments.csv.</p>")
    if len(ranked) > TOP_SWEEPS:  # the rest: one row each, their plots beside this file
        rest = []
        for key in ranked[TOP_SWEEPS:]:
            dataset, sweep = key.split("|", 1)
            points = table[(table["dataset"] == dataset) & (table["sweep"] == sweep)]
            rest.append(
                {
                    "dataset": dataset,
                    "sweep": sweep,
                    "points": len(points),
                    "experiment": points["experiment"].iloc[0],
                    "frechet_distance": points["frechet_distance"].iloc[0],
                    "plot": f"sweep_{dataset}_{sweep}.png",
                }
            )
        sections += [
            f"<h3 id=more-sweeps>{len(rest)} more sweeps</h3>",
            "<p>Each with its best point; its plot is the PNG file named here, beside this file.</p>",
            _table_html(pd.DataFrame(rest), guide=False),
        ]
    return sections


def _ordered(pngs: Mapping[str, bytes]) -> list[tuple[str, bytes]]:
    order = list(FIGURE_CAPTIONS)
    return sorted(pngs.items(), key=lambda item: (order.index(item[0]) if item[0] in order else len(order), item[0]))


def summary_sentence(summary: pd.DataFrame) -> str:
    """One sentence per trained model: its Parzen score against the paper's and the estimator's ceiling, and the
    headline metrics against real test images."""
    text = presented(summary)
    sentences = []
    for index in summary.index[summary["seeds"].notna()]:
        row, shown = summary.loc[index], text.loc[index]
        same = text[(summary["dataset"] == row["dataset"]) & summary["seeds"].isna()]
        paper = same[same["model"].str.contains("the paper")]["log_likelihood"]
        ceiling = same[same["model"].str.endswith("the ceiling")]["log_likelihood"]
        real = same[same["model"].str.startswith(REAL_TEST_PREFIX)]
        seeds = f"{row['seeds']} seed{'s' if row['seeds'] != 1 else ''}"
        against = f"the paper's adversarial nets: {paper.iloc[0]}" if len(paper) else "the paper has no such row"
        if len(ceiling):
            against += f"; real training images, the estimator's ceiling: {ceiling.iloc[0]}"
        sentence = f"{row['dataset']}|{row['model']} ({seeds}): Parzen {shown['log_likelihood']} nats ({against})."
        if shown["frechet_distance"]:
            reference = f" (real test images: {real['frechet_distance'].iloc[0]})" if len(real) else ""
            sentence += (
                f" Fréchet distance {shown['frechet_distance']}{reference}, precision {shown['precision']}, "
                f"recall {shown['recall']}, class coverage {shown['class_coverage']}, memorisation ratio "
                f"{shown['memorisation_ratio']}."
            )
        sentences.append(sentence)
    return " ".join(sentences) or "No trained model passed its checks."


def all_tables(
    parzen: pd.DataFrame, metrics: pd.DataFrame, experiments: Mapping[str, Experiment] | None = None
) -> dict[str, pd.DataFrame]:
    """Every table of the report, in its order: the summary, Table 1 (`parzen`), the metrics and, given every
    experiment by name, the experiments table (each computed once, for the files and for the caller's metadata)."""
    summary = summary_table(parzen, metrics)
    tables = {"summary": summary, "parzen_table1": parzen, "metrics": metrics}
    if experiments is not None:
        tables["experiments"] = experiments_table(summary, parzen, experiments)
    return tables


def write_report(
    tables: dict[str, pd.DataFrame],
    path_of: Callable[[str], Path],
    title: str,
    figures: Mapping[str, Mapping[str, Path]] | None = None,
    left_out: Mapping[str, str] | None = None,
    experiments: Mapping[str, Experiment] | None = None,
) -> dict[str, Path]:
    """Write every table of `all_tables` as CSV (`path_of("<name>.csv")`), report.md and a self-contained
    report.html (each atomically), with each partition's figures ({partition: {figure name: PNG path}}) embedded and
    the partitions `left_out` ({partition: reason}) listed; with an experiments table and `experiments` (every
    experiment by name), one plot per sweep. Return the paths."""
    figures, left_out = figures or {}, left_out or {}
    sweeps = sweep_figures(tables["experiments"], experiments) if "experiments" in tables and experiments else {}
    paths: dict[str, Path] = {}
    for name, table in tables.items():
        csv_path = path_of(f"{name}.csv")
        with atomic_output(csv_path) as tmp:
            table.to_csv(tmp, index=False)
        paths[f"{name}_csv"] = csv_path
    summary_text = summary_sentence(tables["summary"])
    left_out_md = "\n".join(f"- {key}: {reason}" for key, reason in left_out.items())
    markdown = "\n\n".join(
        [f"# {title}", summary_text]
        + [
            f"## {name}\n\n{table_markdown(shown_experiments(t) if name == 'experiments' else t)}"
            for name, t in tables.items()
        ]
        + ([f"## partitions left out\n\n{left_out_md}"] if left_out else [])
    )
    pngs = {
        partition: {name: Path(p).read_bytes() for name, p in files.items()} for partition, files in figures.items()
    }
    for key, png in sweeps.items():  # each sweep's plot also as a file of its own
        dataset, sweep = key.split("|", 1)
        path = path_of(f"sweep_{dataset}_{sweep}.png")
        with atomic_output(path) as tmp:
            tmp.write_bytes(png)
        paths[f"sweep_{dataset}_{sweep}"] = path
    page = render_html(title, tables, pngs, left_out, summary_text, sweeps)
    for suffix, text in (("md", markdown + "\n"), ("html", page)):
        path = path_of(f"report.{suffix}")
        with atomic_output(path) as tmp:
            tmp.write_text(text)
        paths[suffix] = path
    return paths
