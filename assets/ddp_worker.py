"""Data-parallel training under torchrun, started by the `gan_model` asset through Dagster Pipes.

    python -m assets.ddp_worker launch N SETTINGS.json FAILURES.json LOG_DIR   # what PipesSubprocessClient runs
      -> torchrun --standalone --nproc-per-node N -m assets.ddp_worker rank SETTINGS.json   # N ranks

SETTINGS.json (written by the asset) holds the TrainConfig, the dataset file, the run directory and the runtime
options. `launch` is torchrun itself (torch.distributed.run), in this process: if a rank fails, torchrun stops the
others, and `launch` writes each failed rank's exit code, signal and error (from the error file torchrun's `@record`
leaves) to FAILURES.json for the asset to put in the Dagster log. Every rank trains (gan_core.distributed); rank 0
alone opens the Pipes channel, sends its log lines and, at the end, a message with the checkpoint, the per-epoch
history (losses and every rank's weights hash) and the device.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from torch.distributed.elastic.multiprocessing.errors import record


def launch(nproc: int, settings_path: str, failures_path: str, log_dir: str) -> int:
    """Run torchrun with `nproc` ranks of this module; on a rank's failure record it in `failures_path`."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    args = parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", f"--log-dir={log_dir}", "--redirects=3", "--tee=3"]
        + ["-m", "assets.ddp_worker", "rank", settings_path]
    )
    try:
        run(args)
    except ChildFailedError as failed:
        first_rank, _ = failed.get_first_failure()
        failures = [
            {
                "rank": rank,
                "first": rank == first_rank,
                "exitcode": failure.exitcode,
                "signal": failure.signal_name() if failure.exitcode < 0 else None,
                "error": failure.message if isinstance(failure.message, str) else json.dumps(failure.message),
            }
            for rank, failure in sorted(failed.failures.items(), key=lambda item: item[0] != first_rank)
        ]
        Path(failures_path).write_text(json.dumps(failures, indent=2))
        print(failed.format_msg(), file=sys.stderr)
        return 1
    return 0


@record
def train_rank(settings_path: str) -> None:
    import os

    import torch
    import torch.distributed as dist

    from gan_core.config import RuntimeOptions, TrainConfig
    from gan_core.data import load_split, load_split_arrays
    from gan_core.distributed import init_from_environment
    from gan_core.models import get_model_spec
    from gan_core.train import train_gan

    settings: dict[str, Any] = json.loads(Path(settings_path).read_text())
    context = init_from_environment()
    pipes = contextlib.nullcontext(None)
    if context.is_main and "DAGSTER_PIPES_CONTEXT" in os.environ:  # started by the asset (PipesSubprocessClient)
        from dagster_pipes import open_dagster_pipes

        pipes = open_dagster_pipes()
    try:
        with pipes as channel:
            log = channel.log.info if channel is not None else (print if context.is_main else None)
            # the asset's options (RuntimeOptions.portable), on this rank's device, without a graph or a bar
            options = RuntimeOptions(
                **settings["options"], device=str(context.device), cuda_graph=False, progress=False, distributed=context
            )
            images = load_split(settings["dataset_file"], "train")
            config = TrainConfig(**settings["config"])
            labels = None
            if get_model_spec(config.model).conditional:  # only a conditional model reads the labels
                labels = torch.from_numpy(load_split_arrays(settings["dataset_file"], "train").labels)
            result = train_gan(
                config,
                images,
                settings["run_dir"],
                options,
                log=log,
                train_labels=labels,
                num_classes=settings.get("num_classes", 0),
            )
            if channel is not None:
                summary = {**result.summary(), "device": f"{result.device} x {context.world_size} ranks"}
                channel.report_custom_message({**summary, "history": result.history})
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    if sys.argv[1] == "launch":
        sys.exit(launch(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]))
    train_rank(sys.argv[2])
