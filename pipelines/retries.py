"""When a failed run is retried, one rule for the daemon and for `gan-pipeline run`.

A run that failed for a reason a retry can fix (its process killed, a worker lost, the database or the broker away for
a moment) is retried; one that failed for a reason a retry cannot fix is not: the step that failed tagged it
(assets.common.final_failure, final_if_failed: bad settings, divergence, a failed blocking check, a full disk). Under
the daemon, Dagster's run retries (dagster.yaml `run_retries`) re-execute a failed run from its failed step at once.
`gan-pipeline run` executes its runs in its own process, where no daemon sees them (they carry
`dagster/max_retries: 0` so that the daemon leaves them alone); it retries them itself, after a back-off of
`backoff_seconds`, and prints each retry's run id. Finished steps are found stored and training resumes from its last
checkpoint, so a retry redoes only what the failure lost.
"""

from __future__ import annotations

import dagster as dg

from assets.common import NOT_RETRIED_TAG, SERVER_ERRORS, lost_server
from gan_core.errors import error_chain

RETRY_OF_TAG = "gan_pipeline/retry_of"  # on a retry that `gan-pipeline run` launched: the first run's id
ATTEMPT_TAG = "gan_pipeline/attempt"  # 1 for the first run, 2 for its first retry, ...
DAEMON_LEAVES_IT = {"dagster/max_retries": "0"}  # on runs the CLI executes (and retries) itself
FIRST_BACKOFF_SECONDS = 10.0
MAX_FIRST_BACKOFF_SECONDS = 3600.0  # `--retry-backoff` at most: an hour before the first retry
BACKOFF_FACTOR = 3.0


def max_retries(instance: dg.DagsterInstance) -> int:
    """The instance's `run_retries.max_retries`, 0 where run retries are off."""
    return instance.run_retries_max_retries if instance.run_retries_enabled else 0


def backoff_seconds(retry: int, first_wait_seconds: float | None = None) -> float:
    """The wait before retry number `retry` (1, 2, ...): `first_wait_seconds` (FIRST_BACKOFF_SECONDS by default),
    then 3 times longer each retry: 10 s, 30 s, 90 s, ... (a database or broker that restarts is back within seconds;
    one that is not back after minutes needs a person)."""
    first = FIRST_BACKOFF_SECONDS if first_wait_seconds is None else first_wait_seconds
    return first * BACKOFF_FACTOR ** (retry - 1)


INTERRUPTIONS = ("DagsterExecutionInterruptedError", "KeyboardInterrupt")


def was_interrupted(instance: dg.DagsterInstance, run: dg.DagsterRun) -> bool:
    """Whether a failed run failed because its process got SIGTERM or SIGINT outside an asset body (where
    assets.common.guarded_step cancels it): Dagster's own handler then ends it FAILED, "interrupted unexpectedly"."""
    if run.status != dg.DagsterRunStatus.FAILURE:
        return False
    if run.tags.get("dagster/failure_reason") == "UNEXPECTED_TERMINATION":
        return True
    failures = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_FAILURE).records
    for record in failures:
        error = record.event_log_entry.dagster_event.step_failure_data.error  # type: ignore[union-attr]
        while error is not None:
            if error.cls_name in INTERRUPTIONS:
                return True
            error = error.cause
    return False


def not_retried_because(run: dg.DagsterRun | None) -> str | None:
    """Why a failed run is not to be retried (None: retry it)."""
    if run is None:
        return "the run is not in the instance"
    if run.status != dg.DagsterRunStatus.FAILURE:
        return f"it ended {run.status.value}"
    return run.tags.get(NOT_RETRIED_TAG)


def server_named_in(text: str) -> str | None:
    """The server an error's text (a run's failure, as Dagster stored it) says was unreachable, or None."""
    for module, server in SERVER_ERRORS.items():
        if f"{module}." in text and ("Connection" in text or "Operational" in text):
            return server
    return None


def unreachable_server(error: BaseException) -> str | None:
    """The server `error` (or one of its causes) says was unreachable (assets.common.lost_server; "a server" for
    any other connection error), or None for any other error."""
    if (server := lost_server(error)) is not None:
        return server
    return "a server" if any(isinstance(seen, ConnectionError) for seen in error_chain(error)) else None


ATTEMPT_ID_TAG = "gan_pipeline/attempt_id"  # the id `gan-pipeline run` gave one attempt (its run id, in process)


def run_of_attempt(instance: dg.DagsterInstance, attempt_id: str) -> dg.DagsterRun | None:
    """The run of one attempt: run id `attempt_id` (in process) or the run tagged with it (on Celery, where Dagster
    picks the run id)."""
    run = instance.get_run_by_id(attempt_id)
    if run is None:
        runs = instance.get_runs(filters=dg.RunsFilter(tags={ATTEMPT_ID_TAG: attempt_id}), limit=1)
        run = runs[0] if runs else None
    return run


def end_lost_run(instance: dg.DagsterInstance, attempt_id: str, cause: str) -> None:
    """Before a retry: an attempt that lost its server may have stayed STARTED (its last events never arrived):
    mark it failed and free its pool slots, so that it neither looks alive nor holds the `gpu` slot. Does nothing
    while the server is still away (the retry then says so)."""
    from pipelines.recovery import free_slots_of_finished_runs

    try:
        run = run_of_attempt(instance, attempt_id)
        if run is not None and not run.is_finished:
            instance.report_run_failed(run, f"{cause}; `gan-pipeline run` retries it")
        free_slots_of_finished_runs(instance)  # a step lost with its worker or server may still hold its slot
    except Exception as error:  # noqa: BLE001 (the server is still away; the retry meets it and says so)
        if unreachable_server(error) is None:
            raise
