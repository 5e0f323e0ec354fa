"""Refactors change no number: short runs of every update rule, loss and recipe give the weights and samples recorded
in tests/golden/short_runs.json (by tests/golden/short_runs.py, first at commit b16a6e1).

The test never skips. On a machine whose environment (torch build, CPU vector instructions, architecture) has a
recording it compares bit for bit; elsewhere it compares with the nearest recording within each run's stated
tolerance, because other kernels sum in another order. The second test proves that the tolerance does both of its
jobs here, on any CPU: runs forced onto other kernels (torch's scalar ATen kernels, oneDNN limited to SSE4.1) differ
in their bits yet pass, and a run with one setting changed fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import torch

from tests.golden import short_runs
from tests.helpers import REPO_ROOT


def test_short_runs_match_their_recording_exactly_or_within_tolerance(tmp_path) -> None:
    here = short_runs.environment()
    recording = short_runs.nearest_recording(short_runs.load_recordings(), here)
    verdicts = short_runs.judge(short_runs.run_all(tmp_path), recording, here)
    assert {v.name for v in verdicts} == set(short_runs.RUNS)
    if recording["environment"] == here:
        assert all(v.exact for v in verdicts), [v for v in verdicts if not v.exact]
    assert all(v.holds for v in verdicts), (recording["environment"], [v for v in verdicts if not v.holds])


def test_the_pin_passes_other_kernels_and_fails_a_changed_setting(tmp_path) -> None:
    # other kernels, in a process of their own (the choice is read at start-up): different bits, within tolerance
    other_kernels = {**os.environ, "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41"}
    script = (
        "import json, sys; from pathlib import Path; from tests.golden import short_runs; "
        "print(json.dumps({'environment': short_runs.environment(), 'runs': short_runs.run_all(Path(sys.argv[1]))}))"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "other")],
        cwd=REPO_ROOT,
        env=other_kernels,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    measured = json.loads(completed.stdout.strip().splitlines()[-1])
    assert measured["environment"]["cpu_capability"] == "DEFAULT"
    recording = short_runs.nearest_recording(short_runs.load_recordings(), measured["environment"])
    assert recording["environment"] != measured["environment"]  # compared within tolerance, not bit for bit
    verdicts = short_runs.judge(measured["runs"], recording, measured["environment"])
    assert not all(v.exact for v in verdicts)  # the kernels really summed in another order
    assert all(v.holds for v in verdicts), [v for v in verdicts if not v.holds]

    # one setting changed, judged as leniently as a run on a foreign CPU: each is caught
    here = short_runs.environment()
    foreign = {**here, "cpu_capability": "a CPU without a recording"}
    recording = short_runs.nearest_recording(short_runs.load_recordings(), here)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        images = short_runs.digits_train_images(tmp_path)
        paper_sgd = {"optimizer": "paper", "update": "simultaneous", "learning_rate": 0.1}  # over hinge's Adam recipe
        changes = {
            "learning rate 5 % higher": {"learning_rate": 0.105},
            "one epoch less (a missing update)": {"epochs": 2},
            "D updated before G's step (alternating)": {"update": "alternating"},
            # not minimax: at D(G(z)) = 1/2, where these short runs stay, its G gradient equals non_saturating's
            "the loss swapped for hinge": {"loss": "hinge", **paper_sgd},
        }
        for what, change in changes.items():
            changed = short_runs.fingerprint("paper_mlp_simultaneous", images, tmp_path / what, **change)
            (verdict,) = short_runs.judge({"paper_mlp_simultaneous": changed}, recording, foreign)
            assert not verdict.holds, f"{what}: {verdict}"
    finally:
        torch.set_num_threads(threads)
