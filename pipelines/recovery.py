"""Keeping an unattended instance working: runs whose process died are marked failed and their pool slots freed, and a
step that needs a pool slot waits visibly (naming the run that holds it) instead of silently.

A run whose process is killed (SIGKILL, out of memory, reboot) stays STARTED in Dagster and keeps its `gpu` pool slot,
so every later GPU step waits forever. Runs launched by `gan-pipeline` carry their process's host, pid and start time
as tags; runs launched by the daemon in a local (SQLite) instance are found through the pid Dagster logs when their
process starts. `recover_dead_runs` marks a run failed when that process no longer exists on this host, and frees its
slots. The CLI calls it before launching anything; the `recover_dead_runs` sensor calls it every 30 s under the
daemon. Dagster's own run monitoring (`dagster.yaml`) covers start and cancel timeouts and frees slots of finished runs.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg

HOST_TAG = "gan_pipeline/host"
PID_TAG = "gan_pipeline/pid"
PROCESS_START_TAG = "gan_pipeline/process_start"
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


def process_start_ticks(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (/proc/<pid>/stat field 22), or None if it does not exist.
    Together with the pid it names one process: a pid reused by another process has another start time."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def process_tags() -> dict[str, str]:
    """Tags naming this process, for the runs it launches."""
    return {
        HOST_TAG: socket.gethostname(),
        PID_TAG: str(os.getpid()),
        PROCESS_START_TAG: process_start_ticks(os.getpid()) or "",
    }


def worker_process(instance: dg.DagsterInstance, run: dg.DagsterRun) -> tuple[int, str | None] | None:
    """(pid, start ticks or None) of the process executing `run` on this host, if known."""
    tags = run.tags
    if PID_TAG in tags:
        if tags.get(HOST_TAG) != socket.gethostname():
            return None  # another machine's run: only that machine can tell whether its process lives
        return int(tags[PID_TAG]), tags.get(PROCESS_START_TAG) or None
    if "sqlite" not in type(instance.run_storage).__name__.lower():
        return None  # a shared instance: runs without our tags may live on another host
    for record in instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=20).records:
        metadata = record.event_log_entry.dagster_event.event_specific_data.metadata  # type: ignore[union-attr]
        if "pid" in metadata:
            return int(metadata["pid"].value), None
    return None


def dead_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """In-progress runs of this instance whose process no longer exists on this host."""
    dead = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS)):
        process = worker_process(instance, run)
        if process is None:
            continue
        pid, start = process
        alive_start = process_start_ticks(pid)
        if alive_start is None or (start is not None and alive_start != start):
            dead.append(run)
    return dead


def describe_run(run: dg.DagsterRun) -> str:
    partition = run.tags.get("dagster/partition")
    return f"run {run.run_id} ({run.job_name}{f', partition {partition}' if partition else ''})"


def free_slots_of_finished_runs(instance: dg.DagsterInstance, log: Callable[[str], None] = print) -> list[str]:
    """Free pool slots still held by runs that have ended (an executor that lost a step's process, such as a Celery
    worker killed mid-step, may end its run without releasing the step's slot); return those runs' ids."""
    freed = []
    for run_id in instance.event_log_storage.get_concurrency_run_ids():
        run = instance.get_run_by_id(run_id)
        if run is None or run.is_finished:
            instance.event_log_storage.free_concurrency_slots_for_run(run_id)
            what = describe_run(run) if run else f"run {run_id} (deleted)"
            log(f"freed the pool slots still held by {what}, which ended {run.status.value if run else ''}".strip())
            freed.append(run_id)
    return freed


def recover_dead_runs(instance: dg.DagsterInstance, log: Callable[[str], None] = print) -> list[str]:
    """Mark every dead run failed, free its pool slots (and those of ended runs), and log one line per run; return
    the dead runs' ids."""
    free_slots_of_finished_runs(instance, log)
    recovered = []
    for run in dead_runs(instance):
        message = (
            f"{describe_run(run)} was {run.status.value} but its process is gone (killed, out of memory or a "
            "reboot); marked failed and its pool slots freed. Re-running it resumes from its last checkpoint."
        )
        instance.report_run_failed(run, message)
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
        log(message)
        recovered.append(run.run_id)
    return recovered


def wait_for_pool(
    instance: dg.DagsterInstance, pool: str, log: Callable[[str], None] = print, poll_seconds: float = 2.0
) -> None:
    """Return once `pool` has a free slot; meanwhile say which runs hold it (every 30 s). Plain sleeps, so Ctrl-C
    stops the wait at once."""
    announced = 0.0
    while True:
        info = instance.event_log_storage.get_concurrency_info(pool)
        limit = info.limit if info.limit is not None else info.slot_count
        if not limit or len(info.claimed_slots) < limit:
            return
        if time.monotonic() - announced >= 30:
            holders = ", ".join(
                f"{describe_run(run)} step {slot.step_key}"
                if (run := instance.get_run_by_id(slot.run_id))
                else slot.run_id
                for slot in info.claimed_slots
            )
            log(
                f"waiting for a slot of pool '{pool}' ({len(info.claimed_slots)}/{limit} held by {holders}); "
                "Ctrl-C stops the wait"
            )
            announced = time.monotonic()
        recover_dead_runs(instance, log)
        time.sleep(poll_seconds)


@dg.sensor(
    name="recover_dead_runs",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Marks runs whose process died (kill -9, out of memory, reboot) failed and frees their pool slots, "
    "so scheduled retraining never waits behind a dead run.",
)
def recover_dead_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    recovered = recover_dead_runs(context.instance, context.log.warning)
    return dg.SkipReason(f"recovered {len(recovered)} dead run(s): {recovered}" if recovered else "no dead runs")
