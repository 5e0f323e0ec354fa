"""`gan-pipeline`: materialise the whole asset graph for one dataset x experiment from the command line.

    gan-pipeline run --dataset digits --model paper_mlp          # a model entry's built-in experiment
    gan-pipeline experiment add lr05 --model paper_mlp --set learning_rate=0.05 --seeds 0 1 2
    gan-pipeline run --dataset digits --experiment lr05
    gan-pipeline sweep lrm --dataset digits --model paper_mlp --grid learning_rate=0.05,0.1 --grid momentum_end=0.6,0.7
    gan-pipeline sample data/promoted/digits/generator.onnx -n 64 --out grid.png      # from an exported file alone
    gan-pipeline tensorboard                                                          # every run's training curves

Runs are recorded in the Dagster instance at $DAGSTER_HOME (default: ./.dagster_home), so they show up in `dagster dev`
afterwards. The console shows one line per job, a progress bar per long step (on a terminal), every check that warned
or failed, and a closing summary table; Dagster's own event lines only with `--verbose`. Each run's full event log,
tracebacks included, is written to $DAGSTER_HOME/logs/<run id>.log. The command exits non-zero if a check fails or a
step errors, printing the step, the cause and that log file. A bad setting (an unknown dataset or model, malformed JSON,
a value out of its bounds, a batch larger than the training split) is refused in one line before any job starts.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import uuid
from typing import Any

PROMOTION_REFUSED = "generator_candidate:candidate_not_worse_than_promoted"  # the check that keeps the promoted one
# Nothing of assets or gan_core is imported here at module level: `gan-pipeline sample` runs on an exported file
# alone (pipelines/sampling.py), without the training code.


def _open_instance() -> Any:
    """The instance at $DAGSTER_HOME. Opening a new SQLite instance creates its schema; two commands doing that at
    once would corrupt it (two alembic heads), so the first opening holds a lock in $DAGSTER_HOME."""
    import dagster as dg
    from filelock import FileLock

    with FileLock(os.path.join(os.environ["DAGSTER_HOME"], ".gan-pipeline-open.lock")):
        return dg.DagsterInstance.get()


def ensure_dagster_home() -> str:
    """Use $DAGSTER_HOME, else a persistent ./.dagster_home beside the code (created with dagster.yaml if absent)."""
    from assets.resources import REPO_ROOT

    home = os.environ.get("DAGSTER_HOME") or str(REPO_ROOT / ".dagster_home")
    os.makedirs(home, exist_ok=True)
    os.environ["DAGSTER_HOME"] = home
    template = REPO_ROOT / "dagster.yaml"
    target = os.path.join(home, "dagster.yaml")
    if template.is_file() and not os.path.exists(target):
        with open(target, "w") as handle:
            handle.write(template.read_text())
    return home


def _print_checks(result: Any, verbose: bool) -> list[str]:
    """Print the checks that warned or failed (every check with `verbose`) and a count; return the failed ones."""
    failed, counts = [], {"PASS": 0, "WARN": 0, "FAIL": 0}
    for evaluation in result.get_asset_check_evaluations():
        key = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        status = "PASS" if evaluation.passed else ("WARN" if evaluation.severity.value == "WARN" else "FAIL")
        counts[status] += 1
        if status != "PASS" or verbose:
            print(f"      check {status:4} {key}: {evaluation.description or ''}")
        if status == "FAIL":
            failed.append(key)
    print(f"      checks: {counts['PASS']} passed, {counts['WARN']} warned, {counts['FAIL']} failed")
    return failed


def write_run_log(instance: Any, run_id: str) -> str:
    """Every event of a run (what `--verbose` prints, with full tracebacks) in $DAGSTER_HOME/logs/<run id>.log."""
    directory = os.path.join(instance.root_directory, "logs")
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{run_id}.log")
    with open(path, "w") as handle:
        for entry in instance.all_logs(run_id):
            event = entry.dagster_event
            step = f" {entry.step_key}" if entry.step_key else ""
            kind = f" {event.event_type_value}" if event else ""
            handle.write(f"{entry.timestamp:.3f} {entry.job_name}{step}{kind}: {entry.message}\n")
            error = getattr(getattr(event, "event_specific_data", None), "error", None) if event else None
            if error is not None:
                handle.write(error.to_string() + "\n")
    return path


def one_line(text: str, limit: int = 1000) -> str:
    """`text` with its line breaks and runs of spaces collapsed (a message listing one problem a line stays whole),
    cut at `limit` characters."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _failure_line(result: Any, instance: Any, job_name: str, log_path: str, failed_checks: list[str]) -> str:
    """One line: the step that failed and why (or the checks that failed, or why the run itself failed, e.g. a Celery
    worker that died under its step), and where the full log is."""
    for event in result.get_step_failure_events():
        error = event.step_failure_data.error
        # Dagster wraps the asset's own exception; that one is the cause (its own causes are in the log)
        while error is not None and error.cause is not None and error.cls_name.startswith("Dagster"):
            error = error.cause
        cause = one_line(error.message if error is not None else "") or "unknown error"
        return f"{job_name}: step {event.step_key} failed: {cause} (full log: {log_path})"
    if failed_checks:
        return f"{job_name}: checks failed: {', '.join(failed_checks)} (full log: {log_path})"
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        error = getattr(getattr(event, "event_specific_data", None), "error", None) if event else None
        if event is not None and event.is_run_failure and error is not None:
            return f"{job_name}: run failed: {one_line(error.message)} (full log: {log_path})"
    return f"{job_name}: run did not succeed (full log: {log_path})"


def _execute_on_celery(
    instance: Any, partition_key: Any, run_config: dict[str, Any], extra_tags: dict[str, str]
) -> Any:
    """The training job's run with its steps sent to Celery workers; this process orchestrates it."""
    import dagster as dg

    from pipelines.celery_workers import reconstructable_celery_training_job

    tags = {**extra_tags, "dagster/partition": str(partition_key)}
    tags.update({f"dagster/partition/{name}": key for name, key in partition_key.keys_by_dimension.items()})
    with dg.execute_job(
        reconstructable_celery_training_job(), instance=instance, run_config=run_config, tags=tags, raise_on_error=False
    ) as result:
        result.get_asset_check_evaluations()  # read while the result is open
        return result


# Without --verbose the console logger shows nothing: a failed step's events (ERROR, with Dagster's stack) would print
# dozens of lines; the command prints the failure in one line (`_failure_line`) and the assets' warnings
# (`_print_warnings`), and the whole log goes to the run's log file.
QUIET_LOGGERS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def _print_warnings(instance: Any, run_id: str) -> None:
    """The warnings an asset logged in this run (not Dagster's events), one line each: what the quiet console would
    otherwise hide (e.g. "report leaves out mnist|dcgan: ...")."""
    import logging

    for entry in instance.all_logs(run_id):
        if entry.dagster_event is None and logging.WARNING <= entry.level < logging.ERROR:
            print(f"      warning: {one_line(entry.user_message)}", flush=True)


def _execute(
    job_name: str,
    defs: Any,
    instance: Any,
    tags: dict[str, str] | None = None,
    retry_backoff: float | None = None,
    **kwargs: Any,
) -> Any:
    """Run one job in this process after the `gpu` pool has a free slot, tagged with this process's identity (so a
    later CLI can tell if it died). A run that fails for a reason a retry can fix is retried here after a back-off
    (pipelines/retries.py; `retry_backoff` seconds before the first retry, 10 by default), each retry's run id
    printed. SIGTERM or Ctrl-C stops the run cleanly and cancels it (a
    training step first writes a checkpoint); a canceled run ends the command."""
    import time

    import dagster as dg

    from pipelines.recovery import process_tags, wait_for_pool
    from pipelines.retries import (
        ATTEMPT_ID_TAG,
        ATTEMPT_TAG,
        DAEMON_LEAVES_IT,
        RETRY_OF_TAG,
        backoff_seconds,
        end_lost_run,
        max_retries,
        not_retried_because,
        run_of_attempt,
        server_named_in,
        unreachable_server,
        was_interrupted,
    )

    executor = kwargs.pop("executor", "in_process")
    if not kwargs.pop("verbose", False):
        kwargs["run_config"] = {**QUIET_LOGGERS, **(kwargs.get("run_config") or {})}
    retries, attempt_id = max_retries(instance), str(uuid.uuid4())  # in process, an attempt's id is its run id
    first_run_id = attempt_id
    for attempt in range(1, retries + 2):
        run_tags = {**process_tags(), **(tags or {}), **DAEMON_LEAVES_IT, ATTEMPT_TAG: str(attempt)}
        run_tags[ATTEMPT_ID_TAG] = attempt_id
        if attempt > 1:
            run_tags[RETRY_OF_TAG] = first_run_id
        result = None
        try:
            wait_for_pool(instance, "gpu")
            if executor == "celery":
                result = _execute_on_celery(instance, kwargs["partition_key"], kwargs["run_config"], run_tags)
            else:
                result = defs.resolve_job_def(job_name).execute_in_process(
                    instance=instance, raise_on_error=False, run_id=attempt_id, tags=run_tags, **kwargs
                )
            run = run_of_attempt(instance, attempt_id)
            if attempt == 1:
                first_run_id = result.run_id
            if run is not None and was_interrupted(instance, run):  # a signal between steps: a cancel all the same
                instance.report_run_canceled(run, "stopped by a signal (SIGTERM or Ctrl-C) to gan-pipeline")
                run = run_of_attempt(instance, attempt_id)
            why_not = not_retried_because(run)
            if why_not is not None:
                if run is not None and run.status == dg.DagsterRunStatus.CANCELED:
                    raise SystemExit(
                        f"run {result.run_id} ({job_name}) was canceled; the next `gan-pipeline run` resumes it"
                    )
                return result  # succeeded, or failed for good: the caller reports it
            cause = _failure_line(result, instance, job_name, write_run_log(instance, result.run_id), [])
            server = server_named_in(cause)
            cause = f"{cause} [{server} was unreachable]" if server else cause
        except dg.DagsterInvalidConfigError as error:  # refused before a run exists: say which setting, no traceback
            raise SystemExit(_refused(job_name, error)) from None
        except Exception as error:  # a server away in the middle of the run: the run's own events may be lost too
            server = unreachable_server(error)
            if server is None:
                raise
            cause = f"{job_name}: run {attempt_id} lost {server}: {one_line(str(error), 300)}"
        if attempt > retries:
            if result is not None:
                return result
            raise SystemExit(f"{cause} (gave up after {retries} retries)")
        print(f"      {cause}", flush=True)
        wait, lost_attempt, attempt_id = backoff_seconds(attempt, retry_backoff), attempt_id, str(uuid.uuid4())
        which = f"run {attempt_id}" if executor != "celery" else f"the run tagged {ATTEMPT_ID_TAG}={attempt_id}"
        print(f"      retry {attempt} of {retries} in {wait:g} s: {which}", flush=True)
        time.sleep(wait)
        end_lost_run(instance, lost_attempt, cause)
    raise AssertionError("the loop returns or exits")


def run_pipeline(
    dataset: str,
    experiment: str | list[str],
    train_config: dict[str, Any] | None = None,
    instance: Any = None,
    defs: Any = None,
    sample_config: dict[str, Any] | None = None,
    executor: str = "in_process",
    verbose: bool = False,
    tags: dict[str, str] | None = None,
    retry_backoff: float | None = None,
) -> dict[str, Any]:
    """Materialise dataset -> model -> samples -> Parzen -> report for one experiment (a model's name: its built-in
    experiment) or several (one training run each, then one report; a failed one is recorded and the others go on);
    return the report paths, the summary table, the failed checks and the failed partitions. `executor="celery"`
    sends the training job's steps to Celery workers (pipelines/celery_workers.py); `verbose` prints Dagster's event
    lines and every check; `tags` go on every run; `retry_backoff`: the seconds before a failed run's first retry
    (pipelines/retries.py; 10 by default)."""

    from assets.partitions import register_experiments
    from pipelines.definitions import defs as default_defs
    from pipelines.recovery import recover_dead_runs

    defs = defs or default_defs()
    names = [experiment] if isinstance(experiment, str) else list(experiment)
    run_config: dict[str, Any] = {"ops": {}}
    if train_config:
        run_config["ops"]["gan_model"] = {"config": train_config}
    if sample_config:
        run_config["ops"]["generated_samples"] = {"config": sample_config}
    registry = defs.resources["storage"].experiments
    for name in names:
        check_settings(dataset, name, run_config, defs)
    instance = instance or _open_instance()
    recover_dead_runs(instance)
    register_experiments(instance, registry.names())
    return _run_jobs(dataset, names, run_config, defs, instance, executor, verbose, tags or {}, retry_backoff)


def check_names(dataset: str, experiment: str, registry: Any, flag: str = "experiment") -> None:
    """Refuse a dataset or experiment the registries (where the partitions come from) do not know, listing the
    known; `flag` says which flag named the experiment (`--model` names a model's built-in experiment)."""
    from gan_core.experiments import ExperimentError
    from gan_core.models import MODELS
    from gan_core.sources import DATASETS

    if dataset not in DATASETS:
        raise SystemExit(f"--dataset: unknown dataset {dataset!r}; known datasets: {', '.join(DATASETS)}")
    if flag == "model" and experiment not in MODELS:
        raise SystemExit(f"--model: unknown model {experiment!r}; known models: {', '.join(MODELS)}")
    try:
        registry.get(experiment)
    except ExperimentError as error:
        raise SystemExit(f"--{flag}: {error}") from None


def _training_split_size(dataset: str, defs: Any) -> int | None:
    """The dataset's training images where only its stored file knows them (TFD): read from that file if it exists."""
    from gan_core.data import DatasetFileError, read_dataset_info
    from gan_core.sources import get_dataset_spec

    if get_dataset_spec(dataset).split_sizes:
        return None  # the spec's sizes are used
    storage = defs.resources.get("storage")
    try:
        return read_dataset_info(storage.layout.dataset_file(dataset)).split_sizes["train"]
    except (AttributeError, DatasetFileError):
        return None  # not built yet: the training step refuses a batch that does not fit, in one line


def check_settings(dataset: str, experiment: str, run_config: dict[str, Any], defs: Any) -> None:
    """The door: refuse, in one line and before any job starts, an unknown dataset or experiment, a setting out of its
    bounds or a batch larger than the training split (assets.configs.check_run_config, which every asset also runs),
    then anything Dagster's config schema refuses (unknown settings, wrong types)."""
    import dagster as dg

    from assets.configs import check_run_config

    registry = defs.resources["storage"].experiments
    check_names(dataset, experiment, registry)
    ops = {"gan_model": {}, "generated_samples": {}, **run_config["ops"]}  # the recipes too must fit the dataset
    try:
        check_run_config(ops, dataset, registry.get(experiment), _training_split_size(dataset, defs))
        dg.validate_run_config(defs.resolve_job_def("training_job"), run_config)
    except (ValueError, dg.DagsterInvalidConfigError) as error:
        raise SystemExit(_refused("training_job", error)) from None


def _refused(job_name: str, error: Exception) -> str:
    """The one line for settings refused before a run exists: our check's message, or each problem Dagster's config
    schema found."""
    problems = "; ".join(e.message for e in getattr(error, "errors", [])) or str(error)
    return f"{job_name}: invalid settings, nothing was run: {one_line(problems)}"


def _run_jobs(
    dataset: str,
    experiments: list[str],
    run_config: dict[str, Any],
    defs: Any,
    instance: Any,
    executor: str,
    verbose: bool,
    tags: dict[str, str],
    retry_backoff: float | None = None,
) -> dict[str, Any]:
    import time

    from assets.partitions import dataset_experiment_key

    steps: list[tuple[str, str, dict[str, Any]]] = [
        ("dataset_job", f"dataset {dataset}: download, HDF5 splits, checks", {"partition_key": dataset})
    ]
    for experiment in experiments:
        partition = dataset_experiment_key(dataset, experiment)
        steps.append(
            (
                "training_job",
                f"{partition}: train, sample, Parzen, metrics, figures",
                {"partition_key": partition, "run_config": run_config, "executor": executor},
            )
        )
    steps.append(
        (
            "promotion_job",
            f"dataset {dataset}: pick the best generator, promote it unless worse than the one in use",
            {"partition_key": dataset},
        )
    )
    steps.append(("report_job", "evaluation report", {}))
    failed: list[str] = []
    failed_partitions: dict[str, str] = {}  # with several experiments: a failed one's line; the others go on
    refused: list[str] = []  # a candidate worse than the promoted generator: not an error of this run
    promotion_metadata: dict[str, Any] = {}
    for number, (job_name, title, kwargs) in enumerate(steps, start=1):
        print(f"[{number}/{len(steps)}] {title}", flush=True)
        started = time.perf_counter()
        result = _execute(job_name, defs, instance, tags=tags, verbose=verbose, retry_backoff=retry_backoff, **kwargs)
        log_path = write_run_log(instance, result.run_id)
        if not verbose:
            _print_warnings(instance, result.run_id)
        checks_failed = _print_checks(result, verbose)
        if (not result.success or checks_failed) and job_name == "training_job" and len(experiments) > 1:
            line = _failure_line(result, instance, job_name, log_path, checks_failed)
            failed_partitions[str(kwargs["partition_key"])] = line
            print(f"      {line}", flush=True)
            continue
        if job_name == "promotion_job" and checks_failed == [PROMOTION_REFUSED]:
            refused.append(_failure_line(result, instance, job_name, log_path, checks_failed))
            print("      the promoted generator stays; the report follows", flush=True)
            continue
        failed += checks_failed
        if not result.success or failed:
            raise SystemExit(_failure_line(result, instance, job_name, log_path, failed))
        if job_name == "promotion_job":
            promotion_metadata = result.asset_materializations_for_node("best_generator")[0].metadata
        print(f"      done in {time.perf_counter() - started:.0f} s", flush=True)
    materialization = result.asset_materializations_for_node("evaluation_report")[0]
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    paths = {key: value for key, value in metadata.items() if key.startswith("report_")}
    return {
        "report": paths,
        "summary_csv": metadata["summary_csv"],
        "figures_dir": metadata["figures_dir"],
        "failed_checks": failed,
        "failed_partitions": failed_partitions,
        "refused_promotions": refused,
        "promoted_onnx": promotion_metadata["onnx"].value if "onnx" in promotion_metadata else None,
    }


def print_summary(summary_csv: str, dataset: str, experiments: list[str] | None = None) -> None:
    """The report's summary rows of `dataset` (of `experiments` only, where given, beside the references): each
    trained experiment beside the paper and the real-data references."""
    import pandas as pd

    from gan_core.report import presented

    table = pd.read_csv(summary_csv, dtype={"seeds": "Int64"})
    table = table[table["dataset"] == dataset]
    if experiments is not None:
        table = table[table["model"].isin(experiments) | table["seeds"].isna()]
    if not table.empty:  # a metric no row here has (the probe before inference_job)
        table = table.dropna(axis="columns", how="all")
    shown = presented(table).rename(
        columns={
            "log_likelihood": "Parzen (nats)",
            "frechet_distance": "FD",
            "class_coverage": "classes",
            "memorisation_ratio": "memorisation",
            "conditional_accuracy": "asked class",
            "encoder_probe_accuracy": "E(x) probe",
            "ssl_test_error": "SSL error",
            "supervised_baseline_error": "labels alone",
        }
    )
    print(shown.drop(columns=["dataset"]).to_string(index=False))


def run_check(dataset: str, experiment: str, train_config: dict[str, Any] | None, data_dir: str | None) -> int:
    """Materialise everything for `dataset` x `experiment` into a fresh instance and data directory."""
    import tempfile
    import time

    import dagster as dg

    from assets.resources import StorageResource
    from pipelines.definitions import build_definitions

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gan-pipeline-check-") as scratch:
        storage = StorageResource(root_dir=data_dir or os.path.join(scratch, "data"))
        with dg.DagsterInstance.ephemeral(tempdir=os.path.join(scratch, "home")) as instance:
            outcome = run_pipeline(
                dataset,
                experiment,
                train_config,
                instance=instance,
                defs=build_definitions(storage=storage),
                verbose=True,
            )
    print(
        f"all asset checks passed for {dataset}|{experiment} in {time.perf_counter() - started:.0f} s "
        f"(fresh instance, data in {data_dir or 'a temporary directory'})"
    )
    return 0 if not outcome["failed_checks"] else 1


def parse_train_config(text: str | None) -> dict[str, Any]:
    """`--train-config`'s JSON object; malformed JSON or another JSON value is refused in one line."""
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        near = text[max(0, error.pos - 15) : error.pos + 15]
        raise SystemExit(
            f"--train-config: not valid JSON at line {error.lineno} column {error.colno} (char {error.pos}): "
            f"{error.msg}, near {near!r}"
        ) from None
    if not isinstance(value, dict):
        raise SystemExit(
            f"--train-config: must be a JSON object of gan_model settings such as '{{\"learning_rate\": 0.05}}', "
            f"got {type(value).__name__} {one_line(text, 80)!r}"
        )
    return value


# Command-line flags that set one asset setting: checked against that setting's own bounds (assets/configs.py).
FLAG_SETTINGS = {
    "epochs": ("gan_model", "epochs"),
    "seeds": ("gan_model", "seeds"),
    "samples": ("generated_samples", "count"),
}


def settings_from_arguments(args: argparse.Namespace, registry: Any) -> dict[str, Any]:
    """The gan_model config the flags ask for; a bad flag (dataset, experiment, JSON, a number out of its bounds)
    ends the command with one line naming it, before anything is opened or run."""
    from assets.configs import check_setting

    flag = "experiment" if args.experiment else "model"
    check_names(args.dataset, chosen_experiment(args), registry, flag)
    train_config = parse_train_config(getattr(args, "train_config", None))
    for flag, (asset_name, field) in FLAG_SETTINGS.items():
        value = getattr(args, flag, None)
        if value is not None and (problem := check_setting(asset_name, field, value)):
            raise SystemExit(f"--{flag}: {problem}")
    if args.epochs is not None:
        train_config["epochs"] = args.epochs
    if getattr(args, "seeds", None) is not None:
        train_config["seeds"] = args.seeds
    if getattr(args, "paper_settings", False):
        train_config["dataset_recipe"] = False
    return train_config


def chosen_experiment(args: argparse.Namespace) -> str:
    """`--experiment`, else `--model`'s built-in experiment, else paper_mlp; both flags at once are refused."""
    if args.experiment and args.model:
        raise SystemExit(
            f"--experiment {args.experiment} and --model {args.model}: give one (an experiment names its model)"
        )
    return args.experiment or args.model or "paper_mlp"


def _settings_from_flags(texts: list[str] | None, epochs: int | None) -> dict[str, Any]:
    """`--set key=value` flags (and `--epochs`) as an experiment's settings; a malformed one is refused in one line."""
    from gan_core.experiments import ExperimentError, parse_setting

    settings: dict[str, Any] = {}
    try:
        for text in texts or []:
            key, value = parse_setting(text)
            settings[key] = value
    except ExperimentError as error:
        raise SystemExit(f"--set: {error}") from None
    if epochs is not None:
        settings["epochs"] = epochs
    return settings


def _checked_experiments(experiments: list[Any], dataset: str | None) -> None:
    """Refuse, in one line, experiments whose settings gan_model would refuse (unknown, out of bounds; on `dataset`
    where given, a batch larger than its training split too)."""
    from assets.configs import check_experiment_settings, check_run_config

    for experiment in experiments:
        try:
            check_experiment_settings(experiment)
            if dataset is not None:
                check_run_config({"gan_model": {}, "generated_samples": {}}, dataset, experiment)
        except ValueError as error:
            raise SystemExit(f"--set/--grid: {one_line(str(error))}") from None


def add_experiment(args: argparse.Namespace, registry: Any) -> int:
    """`gan-pipeline experiment add NAME --model M --set k=v --seeds 0 1 2`: checked, stored, a partition."""
    from gan_core.experiments import Experiment, ExperimentError

    try:
        experiment = Experiment(
            name=args.name,
            model=args.model,
            settings=_settings_from_flags(args.set, None),
            seeds=tuple(args.seeds or (0,)),
            description=args.description or "",
        )
        _checked_experiments([experiment], None)
        new = registry.add([experiment])
    except ExperimentError as error:
        raise SystemExit(f"experiment add: {error}") from None
    _register(registry)
    status = "added" if new else "already known, unchanged"
    print(f"experiment {experiment.name} {status}: {json.dumps(experiment.to_dict(), sort_keys=True)}")
    print(f"train it: gan-pipeline run --dataset digits --experiment {experiment.name}")
    return 0


def list_experiments(registry: Any) -> int:
    """`gan-pipeline experiment list`: every experiment, one line each."""
    for experiment in registry.all().values():
        settings = ", ".join(f"{k}={v}" for k, v in experiment.settings.items()) or "(the model's recipe)"
        sweep = f" [sweep {experiment.sweep}]" if experiment.sweep else ""
        print(f"{experiment.name}: {experiment.model}, seeds {list(experiment.seeds)}, {settings}{sweep}")
    return 0


def _register(registry: Any) -> None:
    """Make every experiment of `registry` a partition of the instance at $DAGSTER_HOME."""
    from assets.partitions import register_experiments

    ensure_dagster_home()
    register_experiments(_open_instance(), registry.names())


def run_sweep(args: argparse.Namespace, registry: Any) -> int:
    """`gan-pipeline sweep NAME --dataset D --model M --grid k=v1,v2 ... --seeds 0 1 2`: one experiment per grid
    point, checked and stored, then trained (points that share a loop in one loop), evaluated and reported."""
    import time

    from gan_core.experiments import ExperimentError, parse_grid, sweep_experiments

    check_names(args.dataset, args.model, registry, "model")
    try:
        grid = dict(parse_grid(text) for text in args.grid)
        if len(grid) != len(args.grid):
            raise ExperimentError("--grid: each setting may be swept once")
        points = sweep_experiments(args.name, args.model, grid, args.seeds, _settings_from_flags(args.set, args.epochs))
        _checked_experiments(points, args.dataset)
        new = registry.add(points, holder=f"gan-pipeline sweep {args.name}")
    except ExperimentError as error:
        raise SystemExit(f"sweep {args.name}: {error}") from None
    print(f"sweep {args.name}: {len(points)} points x {len(args.seeds)} seeds ({len(new)} new experiments)")
    if args.no_launch:
        _register(registry)
        return 0
    started = time.perf_counter()
    sample_config = {"count": args.samples} if args.samples is not None else None
    outcome = run_pipeline(
        args.dataset,
        [point.name for point in points],
        sample_config=sample_config,
        executor=args.executor,
        verbose=args.verbose,
        tags={SWEEP_TAG: args.name},
        retry_backoff=args.retry_backoff,
    )
    print()
    print_summary(outcome["summary_csv"], args.dataset, [point.name for point in points])
    print()
    print(f"sweep {args.name}: {time.perf_counter() - started:.0f} s; report: {outcome['report']['report_html']}")
    if outcome["failed_partitions"]:  # the others were trained, evaluated and reported
        print(f"sweep {args.name}: {len(outcome['failed_partitions'])} of {len(points)} points failed:")
        for line in outcome["failed_partitions"].values():
            print(f"  {line}")
        return 1
    return 0


SWEEP_TAG = "gan_pipeline/sweep"  # on every run a sweep launches


def _sample(args: argparse.Namespace) -> int:
    """`gan-pipeline sample`: one line on success, one line naming the file or flag on a bad one (exit 2)."""
    from pipelines.sampling import ExportFileError, sample_command

    try:
        print(sample_command(args.model_file, args.count, args.out, args.label, args.seed))
    except (ExportFileError, ValueError) as error:
        print(f"gan-pipeline sample: {error}", file=sys.stderr)
        return 2
    return 0


def run_tensorboard(logdir: Any, port: int) -> int:
    """TensorBoard on `logdir` (every run's events below it), bound to 127.0.0.1, until interrupted. This process
    becomes TensorBoard (exec, not a child), so a signal to its pid, Ctrl-C or a supervisor's stop, reaches TensorBoard
    itself and leaves nothing running behind."""
    if not logdir.is_dir():
        print(
            f"gan-pipeline tensorboard: {logdir} holds no runs yet; train one first (gan-pipeline run)", file=sys.stderr
        )
        return 2
    command = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--host", "127.0.0.1"]
    print(f"TensorBoard on http://127.0.0.1:{port}/ for {logdir} (Ctrl-C stops it)", flush=True)
    os.execv(sys.executable, [*command, "--port", str(port)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="gan-pipeline", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="materialise every asset (and run every check) for one dataset x experiment")
    run.add_argument("--dataset", default="digits")
    run.add_argument("--model", default=None, help="a model entry: its built-in experiment (default: paper_mlp)")
    run.add_argument("--experiment", default=None, help="an experiment (`gan-pipeline experiment list`)")
    run.add_argument("--epochs", type=int, default=None, help="training epochs (default: the asset config's)")
    run.add_argument("--seeds", type=int, nargs="+", default=None, help="training seeds (default: the experiment's)")
    run.add_argument("--train-config", default=None, help="JSON object of further gan_model config fields")
    run.add_argument(
        "--paper-settings",
        action="store_true",
        help="train with the model's own recipe (the paper's, for paper_mlp) instead of the dataset's recommended "
        "settings (digits: batch 32, 150 epochs, generator average)",
    )
    run.add_argument("--samples", type=int, default=None, help="samples per seed (default: the asset config's 10,000)")
    run.add_argument("--verbose", action="store_true", help="print Dagster's event lines and every check's result")
    executor_flag = {
        "choices": ["in_process", "celery"],
        "default": "in_process",
        "help": "celery: send the training job's steps to Celery workers (see `Running on several machines` in README)",
    }
    retry_backoff_flag = {
        "type": float,
        "default": None,
        "metavar": "SECONDS",
        "help": "the wait before the first retry of a run that failed for a reason a retry can fix, 3 times longer "
        "each retry after it (default: 10; at most 3600)",
    }
    run.add_argument("--executor", **executor_flag)
    run.add_argument("--retry-backoff", **retry_backoff_flag)
    check = sub.add_parser(
        "check",
        help="CI: the whole graph with a fresh instance and data directory; "
        "prints every asset check and fails if any fails",
    )
    check.add_argument("--dataset", default="digits")
    check.add_argument("--model", default=None)
    check.add_argument("--experiment", default=None)
    check.add_argument("--epochs", type=int, default=None)
    check.add_argument("--data-dir", default=None, help="keep the data here (default: a temporary directory)")
    experiment = sub.add_parser("experiment", help="declare experiments (a model entry with settings and seeds)")
    what = experiment.add_subparsers(dest="action", required=True)
    add = what.add_parser("add", help="add an experiment: a partition from now on")
    add.add_argument("name")
    add.add_argument("--model", required=True, help="the model entry it trains")
    add.add_argument("--set", action="append", metavar="KEY=VALUE", help="a gan_model setting, e.g. learning_rate=0.05")
    add.add_argument("--seeds", type=int, nargs="+", default=None, help="its seeds (default: 0)")
    add.add_argument("--description", default=None)
    what.add_parser("list", help="every experiment, one line each")
    sweep = sub.add_parser("sweep", help="a grid of settings x seeds: one experiment per point, trained and reported")
    sweep.add_argument("name")
    sweep.add_argument("--dataset", default="digits")
    sweep.add_argument("--model", default="paper_mlp")
    sweep.add_argument(
        "--grid", action="append", required=True, metavar="KEY=V1,V2", help="a swept setting and its values"
    )
    sweep.add_argument("--seeds", type=int, nargs="+", default=[0], help="seeds of every point (default: 0)")
    sweep.add_argument("--set", action="append", metavar="KEY=VALUE", help="a setting every point shares")
    sweep.add_argument("--epochs", type=int, default=None, help="training epochs of every point (a shared setting)")
    sweep.add_argument("--samples", type=int, default=None, help="samples per seed (default: 10,000)")
    sweep.add_argument("--no-launch", action="store_true", help="declare the points only")
    sweep.add_argument("--verbose", action="store_true")
    sweep.add_argument("--executor", **executor_flag)
    sweep.add_argument("--retry-backoff", **retry_backoff_flag)
    draw = sub.add_parser(
        "sample", help="a grid of samples from an exported generator file alone (no training code, no Dagster)"
    )
    draw.add_argument("model_file", metavar="MODEL_FILE", help="generator.onnx or generator.ts an export wrote")
    draw.add_argument("-n", type=int, default=64, dest="count", help="how many samples (default: 64)")
    draw.add_argument("--out", required=True, help="the PNG file to write")
    draw.add_argument(
        "--label", type=int, default=None, help="a conditional model's class (default: 0, 1, ... in turn)"
    )
    draw.add_argument("--seed", type=int, default=0, help="the noise seed (default: 0)")
    board = sub.add_parser("tensorboard", help="TensorBoard on every run's training events (127.0.0.1)")
    board.add_argument("--port", type=int, default=6006)
    board.add_argument("--data-dir", default=None, help="the data root (default: $GAN_PIPELINE_DATA_DIR or ./data)")
    args = parser.parse_args(argv)
    if args.command == "sample":
        return _sample(args)
    if (backoff := getattr(args, "retry_backoff", None)) is not None:
        from pipelines.retries import MAX_FIRST_BACKOFF_SECONDS

        if not (math.isfinite(backoff) and 0 <= backoff <= MAX_FIRST_BACKOFF_SECONDS):
            raise SystemExit(
                f"--retry-backoff: must be a number of seconds from 0 to {MAX_FIRST_BACKOFF_SECONDS:g}, got {backoff:g}"
            )

    from assets.resources import StorageResource

    data_dir = getattr(args, "data_dir", None)
    if args.command == "tensorboard":
        return run_tensorboard(StorageResource(root_dir=data_dir or "").layout.models_dir(), args.port)
    registry = StorageResource(root_dir=data_dir or "").experiments
    if args.command == "experiment":
        return add_experiment(args, registry) if args.action == "add" else list_experiments(registry)
    if sys.stderr.isatty():  # steps' stderr is captured to a file, so tell them the console can show progress bars
        os.environ.setdefault("GAN_PIPELINE_PROGRESS_BARS", "1")
    if args.command == "sweep":
        ensure_dagster_home()
        return run_sweep(args, registry)
    train_config = settings_from_arguments(args, registry)
    if args.command == "check":
        return run_check(args.dataset, chosen_experiment(args), train_config or None, args.data_dir)
    home = ensure_dagster_home()
    sample_config = {"count": args.samples} if args.samples is not None else None
    outcome = run_pipeline(
        args.dataset,
        chosen_experiment(args),
        train_config or None,
        sample_config=sample_config,
        executor=args.executor,
        verbose=args.verbose,
        retry_backoff=args.retry_backoff,
    )
    print()
    print_summary(outcome["summary_csv"], args.dataset)
    print()
    print(f"report:  {outcome['report']['report_html']} (self-contained; also report.md and CSV files beside it)")
    print(f"figures: {outcome['figures_dir']}")
    for line in outcome["refused_promotions"]:
        print(f"promotion refused: {line}")
    if outcome["promoted_onnx"]:
        print(f"promoted generator: {outcome['promoted_onnx']} (gan-pipeline sample FILE -n 64 --out grid.png)")
    print(f"history: DAGSTER_HOME={home} dagster dev -w workspace.yaml (or `dg dev`)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
