"""Names that reach a path (issue 28, item 5): an experiment's, a sweep's, a partition's and every stored path's
component are matched whole against one strict pattern, so a parent reference, an absolute path, an empty name or a
control character (a trailing newline included, which a `$` anchor lets through) is refused in one line."""

from __future__ import annotations

import pytest

from assets.partitions import parse_dataset_experiment_key
from gan_core.experiments import Experiment, ExperimentError, check_name, sweep_experiments
from gan_core.layout import ArtifactLayout

BAD_NAMES = ["../x", "/etc/passwd", "", ".hidden", "a/b", "x\n", "x\ny", "tab\there", "nul\x00", "..", "-flag"]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_a_bad_experiment_or_sweep_name_is_refused_in_one_line(bad) -> None:  # noqa: ANN001
    for refuse in (
        lambda: check_name(bad, "experiment"),
        lambda: Experiment(name=bad, model="paper_mlp"),
        lambda: sweep_experiments(bad, "paper_mlp", {"learning_rate": [0.05]}, [0]),
    ):
        with pytest.raises(ExperimentError) as refused:
            refuse()
        assert "\n" not in str(refused.value).replace(repr(bad), "") and "is not allowed: use 1 to 100 letters" in str(
            refused.value
        )


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_a_bad_path_component_or_partition_is_refused(bad, tmp_path) -> None:  # noqa: ANN001
    layout = ArtifactLayout(tmp_path)
    with pytest.raises(ValueError, match="unsafe path component"):
        layout.run_dir("digits", bad, "0123456789abcdef")
    with pytest.raises(ValueError):
        parse_dataset_experiment_key(f"digits|{bad}")
    assert not any(tmp_path.iterdir())  # nothing made on the way
