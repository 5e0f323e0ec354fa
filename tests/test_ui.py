"""The UI for real: `dagster dev` on 127.0.0.1 with a temporary DAGSTER_HOME, driven through GraphQL and Chromium."""

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.helpers import ASSET_NAMES, REPO_ROOT, TEST_ARTIFACTS, chromium_page

pytestmark = pytest.mark.slow
LOCATION = "gan_pipeline"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Runs the command after it with SIGINT and SIGQUIT at their defaults. A pytest started in the background by a shell
# (`pytest &`) ignores both, its children inherit that, and `dagster dev` then ignores SIGTERM too (it maps SIGTERM to
# whatever SIGINT does): it could not be stopped.
WITH_DEFAULT_INTERRUPTS = [
    sys.executable,
    "-c",
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); signal.signal(signal.SIGQUIT, "
    "signal.SIG_DFL); os.execv(sys.argv[1], sys.argv[1:])",
]


class DagsterDev:
    """A running `dagster dev` and a tiny GraphQL client for it."""

    def __init__(self, home: Path, data: Path, log: Path) -> None:
        self.home, self.data = home, data
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "DAGSTER_HOME": str(home), "GAN_PIPELINE_DATA_DIR": str(data), "PYTHONUNBUFFERED": "1"}
        self.log = log.open("w")
        self.process = subprocess.Popen(
            [
                *WITH_DEFAULT_INTERRUPTS,
                str(Path(sys.executable).parent / "dagster"),
                "dev",
                "-w",
                "workspace.yaml",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
            ],
            cwd=REPO_ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_up(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"dagster dev exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/server_info", timeout=5) as response:
                    if response.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(1)
        else:
            raise TimeoutError("dagster dev did not answer /server_info in time")
        while time.monotonic() < deadline:  # the code location loads after the webserver answers
            status = self.query(
                "{ workspaceOrError { ... on Workspace { locationEntries { name "
                "locationOrLoadError { __typename } } } } }"
            )
            entries = status["workspaceOrError"]["locationEntries"]
            if (
                entries
                and entries[0]["locationOrLoadError"]
                and entries[0]["locationOrLoadError"]["__typename"] == "RepositoryLocation"
            ):
                return
            if (
                entries
                and entries[0]["locationOrLoadError"]
                and entries[0]["locationOrLoadError"]["__typename"] == "PythonError"
            ):
                raise RuntimeError(f"code location failed to load: {status}")
            time.sleep(1)
        raise TimeoutError("the code location did not load in time")

    def query(self, text: str, variables: dict | None = None) -> dict:
        body = json.dumps({"query": text, "variables": variables or {}}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = json.loads(response.read())
        assert "errors" not in payload, payload
        return payload["data"]

    def launch(self, job: str, tags: dict[str, str], run_config: dict | None = None) -> str:
        result = self.query(
            """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
                 __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
                 ... on RunConfigValidationInvalid { errors { message } } } }""",
            {
                "params": {
                    "selector": {
                        "repositoryLocationName": LOCATION,
                        "repositoryName": "__repository__",
                        "jobName": job,
                    },
                    # one process per run (not one per step): the same code path, minutes less on two cores
                    "runConfigData": {"execution": {"config": {"in_process": {}}}, **(run_config or {})},
                    "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
                }
            },
        )["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return result["run"]["runId"]

    def status(self, run_id: str) -> str:
        return self.query("query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id})[
            "runOrError"
        ]["status"]

    def retry_of(self, run_id: str) -> str | None:
        """The run id of the automatic retry of `run_id`, once the daemon has launched one."""
        runs = self.query(
            """query($tag: String!) { runsOrError(filter: {tags: [{key: "dagster/parent_run_id", value: $tag}]}) {
                 ... on Runs { results { runId } } } }""",
            {"tag": run_id},
        )["runsOrError"]["results"]
        return runs[0]["runId"] if runs else None

    def messages(self, run_id: str) -> list[str]:
        """The run's log messages, read from the instance."""
        import dagster as dg

        with dg.DagsterInstance.from_config(str(self.home)) as instance:
            return [entry.user_message for entry in instance.all_logs(run_id)]

    def wait_for_run(self, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status(run_id)
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return status
            time.sleep(0.5)
        raise TimeoutError(f"run {run_id} did not finish in time")

    def experiment_partitions(self) -> list[str]:
        """The experiment dimension's keys of `gan_model`, as the UI lists them."""
        nodes = self.query(
            '{ assetNodeOrError(assetKey: {path: ["gan_model"]}) { ... on AssetNode { '
            "partitionKeysByDimension { name partitionKeys } } } }"
        )
        dims = nodes["assetNodeOrError"]["partitionKeysByDimension"]
        return next(d["partitionKeys"] for d in dims if d["name"] == "experiment")

    def wait_for_experiment_partitions(self, timeout: float = 180) -> None:
        """A fresh instance has no experiment partitions until the `experiment_partitions` sensor (run by the
        daemon `dagster dev` starts) has added the registry's: wait for its first tick."""
        deadline = time.monotonic() + timeout
        while "paper_mlp" not in self.experiment_partitions():
            if time.monotonic() > deadline:
                raise TimeoutError("the experiment_partitions sensor added no partition in time")
            time.sleep(2)

    def stop(self) -> None:
        """SIGTERM to `dagster dev` alone: it asks its webserver and daemon to stop through their shutdown pipes and
        waits for them. Should it not stop, its signal state goes to the log and the whole group gets SIGTERM, then
        SIGKILL."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                try:
                    status = Path(f"/proc/{self.process.pid}/status").read_text()
                except OSError:  # it ended just now
                    status = "gone"
                state = " ".join(line for line in status.splitlines() if line.startswith(("State", "Sig", "Shd")))
                self.log.write(
                    f"\n[test] dagster dev did not stop 20 s after SIGTERM ({state}); SIGTERM to its group\n"
                )
                self.log.flush()
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # whatever is left of its group (a run's process)
        self.log.close()


@pytest.fixture(scope="module")
def dagster_dev(tmp_path_factory: pytest.TempPathFactory, digits_data_template: Path):  # noqa: ANN201
    root = tmp_path_factory.mktemp("ui")
    (root / "home").mkdir()
    shutil.copytree(digits_data_template, root / "data")  # the digits dataset and classifier, built once per run
    shutil.copy(REPO_ROOT / "dagster.yaml", root / "home" / "dagster.yaml")
    server = DagsterDev(root / "home", root / "data", root / "dagster_dev.log")
    try:
        server.wait_until_up()
        server.wait_for_experiment_partitions()
        yield server
    except Exception:
        print((root / "dagster_dev.log").read_text()[-5000:])
        raise
    finally:
        server.stop()


@pytest.fixture(scope="module")
def materialized(dagster_dev: DagsterDev) -> DagsterDev:
    """digits materialised through GraphQL launches: dataset, training (short), report."""
    runs = [
        ("dataset_job", {"dagster/partition": "digits"}, None),
        (
            "training_job",
            {
                "dagster/partition": "digits|paper_mlp",
                "dagster/partition/dataset": "digits",
                "dagster/partition/experiment": "paper_mlp",
            },
            {
                "ops": {
                    "gan_model": {"config": {"epochs": 3, "dataset_recipe": False}},
                    "generated_samples": {"config": {"count": 1000}},
                }
            },
        ),
        ("report_job", {}, None),
    ]
    for job, tags, config in runs:
        status = dagster_dev.wait_for_run(dagster_dev.launch(job, tags, config))
        assert status == "SUCCESS", f"{job} ended {status}"
    return dagster_dev


def test_graphql_lists_assets_and_partitions(dagster_dev: DagsterDev) -> None:
    nodes = dagster_dev.query("{ assetNodes { assetKey { path } partitionKeysByDimension { name partitionKeys } } }")
    by_name = {"/".join(node["assetKey"]["path"]): node for node in nodes["assetNodes"]}
    assert set(ASSET_NAMES) <= set(by_name)
    dims = {d["name"]: d["partitionKeys"] for d in by_name["gan_model"]["partitionKeysByDimension"]}
    assert dims["dataset"] == ["digits", "mnist", "fashion_mnist", "cifar10", "tfd"]
    # the built-in experiments (one per model entry) and the checked-in experiments.yaml's, added by the sensor
    assert "paper_mlp" in dims["experiment"] and "dcgan" in dims["experiment"]
    assert "paper_mlp_3_seeds" in dims["experiment"]
    data_dims = by_name["preprocessed_dataset"]["partitionKeysByDimension"]
    assert data_dims[0]["partitionKeys"] == ["digits", "mnist", "fashion_mnist", "cifar10", "tfd"]


def test_launch_digits_through_graphql_and_read_the_report(materialized: DagsterDev) -> None:
    report = materialized.query(
        """{ assetOrError(assetKey: {path: ["evaluation_report"]}) { ... on Asset {
             assetMaterializations(limit: 1) { metadataEntries { label
               ... on TableMetadataEntry { table { records schema { columns { name type description } } } }
               ... on PathMetadataEntry { path } } } } } }"""
    )["assetOrError"]["assetMaterializations"][0]["metadataEntries"]
    entries = {entry["label"]: entry for entry in report}
    table1 = [json.loads(record) for record in entries["table"]["table"]["records"]]  # a sortable table in the UI
    assert any(row["model"] == "Adversarial nets" and row["log_likelihood"] == "225.0 ± 2.0" for row in table1)
    assert any(row["model"] == "paper_mlp" and row["seeds"] == 1 for row in table1)
    experiments = [json.loads(record) for record in entries["experiments"]["table"]["records"]]  # the comparison
    assert any(row["experiment"] == "paper_mlp" and row["model"] == "paper_mlp" and row["best"] for row in experiments)
    columns = {c["name"]: c for c in entries["metrics"]["table"]["schema"]["columns"]}
    assert columns["recall"]["type"] == "float" and "mode collapse" in columns["recall"]["description"]
    assert Path(entries["report_html"]["path"]).is_file()
    checks = materialized.query(
        """{ assetNodes(assetKeys: [{path: ["preprocessed_dataset"]}]) { assetChecksOrError { ... on AssetChecks {
             checks { name executionForLatestMaterialization { status } } } } } }"""
    )["assetNodes"][0]["assetChecksOrError"]["checks"]
    assert {c["name"]: c["executionForLatestMaterialization"]["status"] for c in checks} == {
        "split_sizes_match": "SUCCEEDED",
        "images_dtype_shape_range": "SUCCEEDED",
        "no_empty_classes": "SUCCEEDED",
        "source_checksums_recorded": "SUCCEEDED",
    }


def test_browser_shows_asset_graph_and_report_tables(materialized: DagsterDev) -> None:
    with chromium_page(1600, 1000) as page:
        page.goto(f"{materialized.url}/asset-groups", wait_until="networkidle")
        skip = page.get_by_role("button", name="Skip")  # Dagster's first-visit newsletter dialog
        if skip.count():
            skip.click()
        page.get_by_text("Global asset lineage").first.wait_for(timeout=60_000)
        TEST_ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(TEST_ARTIFACTS / "ui_asset_graph.png"))
        page.goto(f"{materialized.url}/assets", wait_until="networkidle")  # the catalog lists every asset key
        for name in ASSET_NAMES:
            page.get_by_text(name, exact=True).first.wait_for(timeout=60_000)
        page.goto(f"{materialized.url}/assets/evaluation_report", wait_until="networkidle")
        page.get_by_text("report_html", exact=True).first.wait_for(timeout=60_000)
        page.screenshot(path=str(TEST_ARTIFACTS / "ui_evaluation_report.png"))


RETRY_EPOCHS = 30
RETRY_SAMPLES = 2000


def test_a_run_killed_mid_training_is_retried_by_the_daemon_and_resumes(dagster_dev: DagsterDev) -> None:
    """SIGKILL to the run's process under `dagster dev`: the `recover_dead_runs` sensor marks it failed, the daemon's
    run retry (dagster.yaml `run_retries`) re-executes it from its failed step, training resumes from its checkpoint,
    and the samples equal an uninterrupted run's. Nothing but the kill is done by the test."""
    import dagster as dg
    import torch

    from pipelines.recovery import worker_process
    from tests.helpers import latest_samples_hash, uninterrupted_samples_hash

    data, home = dagster_dev.data, dagster_dev.home
    before = set(data.glob("models/digits/paper_mlp/*/checkpoint.pt"))
    tags = {
        "dagster/partition": "digits|paper_mlp",
        "dagster/partition/dataset": "digits",
        "dagster/partition/experiment": "paper_mlp",
    }
    train = {"epochs": RETRY_EPOCHS, "checkpoint_every": 1, "dataset_recipe": False}
    config = {"ops": {"gan_model": {"config": train}, "generated_samples": {"config": {"count": RETRY_SAMPLES}}}}
    run_id = dagster_dev.launch("training_job", tags, config)

    def checkpoint_epoch() -> int:
        new = set(data.glob("models/digits/paper_mlp/*/checkpoint.pt")) - before
        return torch.load(next(iter(new)), weights_only=True)["epoch"] if new else 0

    deadline = time.monotonic() + 300
    while checkpoint_epoch() < 8:
        status = dagster_dev.status(run_id)
        assert time.monotonic() < deadline and status in ("QUEUED", "STARTING", "STARTED"), status
        time.sleep(0.5)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        pid, _ = worker_process(instance, instance.get_run_by_id(run_id))
    os.kill(pid, signal.SIGKILL)
    killed = time.monotonic()

    assert dagster_dev.wait_for_run(run_id) == "FAILURE"  # found dead by the sensor
    failed = time.monotonic()
    deadline = time.monotonic() + 120
    while (retry := dagster_dev.retry_of(run_id)) is None:
        assert time.monotonic() < deadline, "the daemon launched no retry"
        time.sleep(1)
    assert dagster_dev.wait_for_run(retry) == "SUCCESS"
    done = time.monotonic()
    messages = dagster_dev.messages(retry)
    assert any("resuming from" in message and f"/{RETRY_EPOCHS}" in message for message in messages), messages[-20:]
    assert latest_samples_hash(data) == uninterrupted_samples_hash(data, RETRY_EPOCHS, RETRY_SAMPLES)
    print(
        f"killed at epoch >= 8 of {RETRY_EPOCHS}: marked failed after {failed - killed:.0f} s, the retry {retry} "
        f"finished {done - killed:.0f} s after the kill"
    )
