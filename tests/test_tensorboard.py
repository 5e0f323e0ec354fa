"""TensorBoard events written by the training loop (gan_core/tensorboard.py), read back with TensorBoard's own
reader: writing them changes no weight; a run stopped and resumed shows each epoch once; seeds trained in one loop
each get their own events."""

import json

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams.plugin_data_pb2 import HParamsPluginData

from gan_core.checkpoint import checkpoint_weights_hash
from gan_core.config import RuntimeOptions, default_train_config
from gan_core.layout import checkpoint_file, tensorboard_dir
from gan_core.tensorboard import EPOCH_SCALARS, GRID_TAG, hparams_of, write_hparams
from gan_core.train import train_gan, train_seeds


def _events(run_dir) -> EventAccumulator:  # noqa: ANN001
    events = EventAccumulator(str(tensorboard_dir(run_dir)), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return events


def test_events_change_no_weight_and_a_resumed_run_shows_each_epoch_once(tmp_path, digits_train) -> None:
    config = default_train_config("paper_mlp", dataset="digits", epochs=4)
    quiet = RuntimeOptions(device="cpu", progress=False, tensorboard=False)
    train_gan(config, digits_train, tmp_path / "without", quiet)

    def crash_after_epoch_3(epoch: int, generator) -> None:  # noqa: ANN001
        if epoch == 3:  # epoch 3's events are written, its checkpoint is not (the cadence is 2): a crash loses it
            raise KeyboardInterrupt

    crashing = RuntimeOptions(
        device="cpu", progress=False, tensorboard_grid_every=2, checkpoint_every=2, on_epoch_end=crash_after_epoch_3
    )
    with pytest.raises(KeyboardInterrupt):
        train_gan(config, digits_train, tmp_path / "with", crashing)
    assert [event.step for event in _events(tmp_path / "with").Scalars("loss/generator")] == [1, 2, 3]
    resumed = RuntimeOptions(device="cpu", progress=False, tensorboard_grid_every=2, checkpoint_every=2)
    train_gan(config, digits_train, tmp_path / "with", resumed)  # from epoch 2: epoch 3 again, TensorBoard purges it
    assert checkpoint_weights_hash(checkpoint_file(tmp_path / "with")) == checkpoint_weights_hash(
        checkpoint_file(tmp_path / "without")
    )
    assert not tensorboard_dir(tmp_path / "without").exists()
    events = _events(tmp_path / "with")
    for tag in EPOCH_SCALARS:
        assert [event.step for event in events.Scalars(tag)] == [1, 2, 3, 4], tag
    assert [event.step for event in events.Images(GRID_TAG)] == [1, 2, 4]
    assert [round(event.value, 6) for event in events.Scalars("schedule/momentum")] == [
        round(record["momentum"], 6) for record in _history(tmp_path / "with")
    ]


def _history(run_dir) -> list[dict]:  # noqa: ANN001
    from gan_core.checkpoint import load_checkpoint

    return load_checkpoint(checkpoint_file(run_dir))["history"]


def test_seeds_in_one_loop_each_write_their_own_events_and_hparams(tmp_path, digits_train) -> None:
    configs = [default_train_config("paper_mlp", dataset="digits", epochs=2, seed=seed) for seed in (0, 1)]
    run_dirs = [tmp_path / f"seed{seed}" for seed in (0, 1)]
    train_seeds(configs, digits_train, run_dirs, RuntimeOptions(device="cpu", progress=False))
    losses = []
    for config, run_dir in zip(configs, run_dirs, strict=True):
        events = _events(run_dir)
        losses.append([event.value for event in events.Scalars("loss/generator")])
        assert losses[-1] == [record["g_loss"] for record in _history(run_dir)]
        written = write_hparams(run_dir, hparams_of(config.to_dict(), "paper_mlp", ""), {"final/fd": 3.5}, 2)
        again = write_hparams(run_dir, hparams_of(config.to_dict(), "paper_mlp", ""), {"final/fd": 2.5}, 2)
        assert not written.exists() and again.exists()  # one hparams file a run: the newest evaluation's
        events = _events(run_dir)
        assert [event.value for event in events.Scalars("final/fd")] == [2.5]
        session = HParamsPluginData.FromString(events.PluginTagToContent("hparams")["_hparams_/session_start_info"])
        assert session.session_start_info.hparams["seed"].number_value == config.seed
    assert losses[0] != losses[1]
    assert json.loads(json.dumps(hparams_of(configs[1].to_dict(), "x", "s")))["seed"] == 1
