"""Shared fixtures: a temporary data directory and its layout, a Dagster instance, the digits dataset file (built once
per session), the MNIST files, and a local HTTP mirror. Plain helpers live in tests/helpers.py.

The suite runs on pytest-xdist workers (`-n logical` in pyproject.toml). Each worker gets an equal share of the cores
for torch (and the processes it starts), a module's tests run on one worker in file order (`--dist loadscope`: module
fixtures are set up once), the modules holding slow end-to-end tests start first, and the digits data is built once
per run."""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from tests.helpers import SHARED_DATA, TEST_PACKAGES_LINE

# The one reason a skip is allowed under `--fail-on-skip` (CI): the machine has no GPU, and CI never has one.
GPU_SKIP_REASON = "needs a GPU"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fail-on-skip",
        action="store_true",
        help=f"fail every test that skips for a reason other than {GPU_SKIP_REASON!r} (.ci/run sets it through "
        "PYTEST_ADDOPTS: CI installs every server and browser the tests need)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """On an xdist worker: this worker's share of the cores for torch's threads and for every process it starts
    (OMP_NUM_THREADS), so that N workers do not run N x cores spinning OpenMP threads on the same cores."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is None:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    threads = max(1, cores // int(workerinput["workercount"]))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The modules holding `slow` end-to-end tests first, so that the last to start are short and the workers end
    together. A stable sort by module: each module stays whole and in file order, the same on every worker."""
    slow_modules = {item.module for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.module not in slow_modules)


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    return longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)


def _fail_skip(config: pytest.Config, report: pytest.CollectReport | pytest.TestReport) -> None:
    """Under --fail-on-skip, turn a skip (but a GPU one) into a failure that says why it skipped."""
    if not (config.getoption("--fail-on-skip") and report.skipped) or hasattr(report, "wasxfail"):
        return
    reason = _skip_reason(report)
    if GPU_SKIP_REASON not in reason:
        report.outcome = "failed"
        report.longrepr = f"skipped under --fail-on-skip (only {GPU_SKIP_REASON!r} may skip): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):  # noqa: ANN201
    outcome = yield
    _fail_skip(item.config, outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # noqa: ANN201
    outcome = yield
    _fail_skip(collector.config, outcome.get_result())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


@pytest.fixture
def storage(data_dir: Path):  # noqa: ANN201
    from assets.resources import StorageResource

    return StorageResource(root_dir=str(data_dir))


@pytest.fixture
def layout(storage):  # noqa: ANN001, ANN201
    return storage.layout


@pytest.fixture(scope="session")
def digits_h5(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """scikit-learn's digits as this project's dataset file (the same content hash as the pipeline's), built once."""
    from gan_core.data import write_dataset_h5
    from gan_core.sources import build_splits, fetch_raw, get_dataset_spec

    root = tmp_path_factory.mktemp("digits")
    manifest = fetch_raw("digits", root / "raw")
    path = root / "digits.h5"
    write_dataset_h5(
        path,
        "digits",
        build_splits("digits", root / "raw"),
        manifest["files"],
        get_dataset_spec("digits").split_definition,
    )
    return path


@pytest.fixture(scope="session")
def digits_train(digits_h5: Path):  # noqa: ANN201
    """The digits training split as a float32 tensor in [0, 1]."""
    from gan_core.data import load_split

    return load_split(digits_h5, "train")


@pytest.fixture(scope="session")
def digits_labels(digits_h5: Path):  # noqa: ANN201
    """The digits training split's labels (int64 tensor)."""
    import torch

    from gan_core.data import load_split_arrays

    return torch.from_numpy(load_split_arrays(digits_h5, "train").labels)


@pytest.fixture(scope="session")
def digits_data_template(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A data directory holding the digits dataset (raw files, HDF5 splits), its feature classifier and the report's
    real-data reference rows, built once per pytest run through the real `dataset_job` and the report's own functions
    (by the first xdist worker to need it, the others wait on a file lock in the run's shared temporary directory).
    Tests copy it (`digits_data`) instead of building their own: every stored result is keyed by content, so a job run
    on a copy finds them and goes on from there."""
    shared = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # an xdist worker (also works without the xdist plugin loaded)
        shared = shared.parent  # the directory above every worker's own
    root = shared / "digits_data_template" / "data"
    with FileLock(shared / "digits_data_template.lock"):
        complete = root.parent / "complete"
        if not complete.is_file():
            shutil.rmtree(root.parent, ignore_errors=True)  # a build interrupted before it completed
            _build_digits_data(root)
            complete.touch()
    return root


def _build_digits_data(root: Path) -> None:
    import dagster as dg

    from assets.evaluation_assets import reference_result
    from assets.metrics_assets import reference_metrics
    from assets.resources import StorageResource
    from pipelines.definitions import build_definitions
    from tests.helpers import materialize_dataset

    root.mkdir(parents=True)
    with dg.instance_for_test() as scratch_instance:
        defs = build_definitions(storage=StorageResource(root_dir=str(root)))
        materialize_dataset(defs, scratch_instance, "digits", with_classifier=True)
    # the report's real-data rows (Parzen ceiling, real test images' metrics), stored as the report stores them
    layout = StorageResource(root_dir=str(root)).layout
    reference_result(layout, "digits")
    reference_metrics(layout, "digits")


@pytest.fixture
def digits_data(digits_data_template: Path, tmp_path: Path) -> Path:
    """This test's own copy of `digits_data_template`, at tmp_path / "data"."""
    target = tmp_path / "data"
    shutil.copytree(digits_data_template, target)
    return target


@pytest.fixture
def digits_storage(digits_data: Path):  # noqa: ANN201
    """The storage resource over this test's copy of the built digits data."""
    from assets.resources import StorageResource

    return StorageResource(root_dir=str(digits_data))


@pytest.fixture
def instance() -> Iterator:
    import dagster as dg

    from tests.helpers import register_builtin_experiments

    with dg.instance_for_test() as test_instance:
        register_builtin_experiments(test_instance)
        yield test_instance


@pytest.fixture
def mnist_dir() -> Path:
    """The official MNIST .gz files beside the checkout, or in $GAN_PIPELINE_MNIST_DIR (skips where they are absent)."""
    path = Path(os.environ.get("GAN_PIPELINE_MNIST_DIR") or SHARED_DATA / "mnist")
    if not (path / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"official MNIST files not found at {path}")
    return path


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture
def serve_directory() -> Iterator:
    """Start an HTTP server on 127.0.0.1 serving a directory; returns a function dir -> base URL."""
    servers = []

    def start(directory: Path) -> str:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def _server_or_skip(start):  # noqa: ANN001, ANN202
    """Enter a local server context; where its program is missing, skip with the line that installs it."""
    from pipelines.local_servers import ServerUnavailable

    try:
        return start()
    except ServerUnavailable as missing:
        pytest.skip(f"needs Debian's server package: {missing} (all the tests' packages: {TEST_PACKAGES_LINE})")


@pytest.fixture
def postgres() -> Iterator:
    """A throw-away PostgreSQL server on 127.0.0.1 (Debian's postgresql), stopped by its pid afterwards."""
    from pipelines.local_servers import postgres_server

    server = postgres_server()
    yield _server_or_skip(server.__enter__)
    server.__exit__(None, None, None)


@pytest.fixture
def redis() -> Iterator:
    """A throw-away Redis server on 127.0.0.1 (Debian's redis-server), no persistence, stopped by its pid afterwards."""
    from pipelines.local_servers import redis_server

    server = redis_server()
    yield _server_or_skip(server.__enter__)
    server.__exit__(None, None, None)
