"""The issue-12 refactor changed no number: short runs of every update rule, loss and recipe give the weights and
samples recorded before it (tests/golden/short_runs.json, recorded at commit b16a6e1 by tests/golden/short_runs.py).

The pinned hashes hold for the torch build and CPU vector instructions they were recorded with (CI's machine); on
another machine the test says so and skips instead of comparing floating-point results across kernels."""

from __future__ import annotations

import json

import pytest

from tests.golden import short_runs


def test_short_runs_are_bit_identical_to_the_recorded_ones(tmp_path) -> None:
    golden = json.loads(short_runs.GOLDEN.read_text())
    if golden["environment"] != short_runs.environment():
        pytest.skip(f"pinned on {golden['environment']}, this machine is {short_runs.environment()}")
    assert short_runs.run_all(tmp_path) == golden["runs"]
