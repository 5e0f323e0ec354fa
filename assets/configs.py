"""Run configuration (`dg.Config`) of every asset, and a check of a whole run's config before any work starts.

The training settings are derived from `gan_core.config.TrainConfig`, not copied: every field of it (but the model,
which is the partition, and the seed, which `seeds` lists) is a setting here, unset meaning "the model's and the loss's
recommended value". Enumerated settings (loss, optimizer, update, noise) are enums built from the registries and the
`Literal` annotations, so Dagster rejects `loss: non_saturting` before a run starts and lists the allowed values;
numeric bounds are the pydantic `Field` constraints of TrainConfig's annotations.

Each config class names its asset (`asset_name`); `check_run_config` builds every one present in a run config and says
in one line what is wrong and what is allowed (`learning_rate: Input should be a finite number (allowed: > 0 and
finite), got nan`). It is the one place that decides validity: `gan-pipeline run` calls it before any job starts, and
every asset (`validate_run_config`) before any work, for runs launched elsewhere. Non-finite numbers are refused for
every float setting.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import typing
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Optional

import annotated_types
import dagster as dg
import pydantic
from pydantic import Field
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from gan_core.config import Bounds, RuntimeOptions, TrainConfig, default_train_config
from gan_core.experiments import Experiment, builtin_experiment
from gan_core.losses import LOSSES
from gan_core.parzen import PAPER_SIGMAS, PAPER_VALID_POINTS
from gan_core.sources import get_dataset_spec

_CONFIG_CLASSES: dict[str, type[AssetConfig]] = {}


class AssetConfig(dg.Config):
    """Base of every asset's config: registers the class under its asset's name for `check_run_config`; NaN and
    infinities are refused for every float setting (no bound or recipe means anything for them)."""

    model_config = pydantic.ConfigDict(allow_inf_nan=False)
    asset_name: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if cls.asset_name:
            _CONFIG_CLASSES[cls.asset_name] = cls

    def check_across_fields(self, dataset: str, experiment: Experiment, train_size: int | None = None) -> None:
        """Checks across fields that pydantic's per-field constraints cannot express (none by default) for a
        partition's dataset and experiment; `train_size`: the dataset's training images, where known."""


def _choices(name: str, values: typing.Iterable[str]) -> type[enum.Enum]:
    return enum.Enum(name, {value: value for value in values}, type=str)  # type: ignore[return-value]


def _training_settings() -> type[AssetConfig]:
    """An AssetConfig with one optional field per TrainConfig field (model and seed excepted)."""
    hints = typing.get_type_hints(TrainConfig, include_extras=True)
    annotations: dict[str, Any] = {}
    for field in dataclasses.fields(TrainConfig):
        if field.name in ("model", "seed"):
            continue
        hint = hints[field.name]
        if field.name == "loss":
            hint = _choices("Loss", LOSSES)
        elif typing.get_origin(hint) is Literal:
            hint = _choices(field.name.title(), typing.get_args(hint))
        elif typing.get_origin(hint) is Annotated:
            base, *extras = typing.get_args(hint)
            bounds = [dataclasses.asdict(extra) for extra in extras if isinstance(extra, Bounds)]
            hint = Annotated[base, Field(**{k: v for b in bounds for k, v in b.items() if v is not None})]
        annotations[field.name] = Optional[hint]  # noqa: UP045 (pydantic needs the typing form here)
    namespace = {"__annotations__": annotations, "__module__": __name__, **dict.fromkeys(annotations)}
    namespace["__doc__"] = "Every training setting of gan_core.config.TrainConfig; unset = the recommended value."
    return type("TrainingSettings", (AssetConfig,), namespace)  # type: ignore[return-value]


TrainingSettings = _training_settings()
Launcher = _choices("Launcher", ["in_process", "torchrun"])


class RawDatasetConfig(AssetConfig):
    """Override the dataset's source for this run: a mirror URL, a local directory, or (TFD) the .mat file."""

    asset_name: ClassVar[str] = "raw_dataset"
    source: str = ""
    # {archive file name: MD5} replacing torchvision's expected checksum, for a mirror serving other (e.g. test) files
    md5_overrides: dict[str, str] = Field(default_factory=dict)


class GanTrainingConfig(TrainingSettings):  # type: ignore[misc,valid-type]
    """Training settings (unset = the model's and loss's recommended value: the paper's for paper_mlp), the seeds to
    train, and how to run them."""

    asset_name: ClassVar[str] = "gan_model"
    seeds: list[Annotated[int, Field(ge=0)]] = Field(default=[0], min_length=1)
    # Train the seeds in one loop (gan_core.train.train_seeds): stacked as one batched model on CUDA where the settings
    # allow it (gan_core.batched: a model declared batchable, simultaneous update, the paper's SGD), so S seeds cost
    # little more than one; elsewhere in turn, each bit-identical to the seed alone. In process only; false trains
    # them one after another.
    batch_seeds: bool = True
    # Apply the dataset's recommended settings for this model (gan_core.sources DatasetSpec.recipes; digits has
    # settings fitted to its 8x8 images); false trains with the model's own recipe (the paper's for paper_mlp).
    dataset_recipe: bool = True
    device: str = "auto"
    compile: bool = False
    # On CUDA, replay the simultaneous paper-SGD step as a CUDA graph (8x the eager loop at batch 100 on an H100).
    # Unset: wherever it applies (gan_core.config.RuntimeOptions.use_cuda_graph); true: required; false: never.
    cuda_graph: Optional[bool] = None  # noqa: UP045
    # With batch_seeds, stack the seeds as one batched model (gan_core.batched). Unset: on CUDA wherever it applies,
    # in turn elsewhere (each seed bit-identical to the seed alone); true: required; false: in turn.
    stack_seeds: Optional[bool] = None  # noqa: UP045
    checkpoint_every: int = Field(default=5, gt=0)  # epochs
    checkpoint_minutes: float = Field(default=5.0, gt=0)  # also inside an epoch, once this long since the last one
    # in_process (default), or torchrun: a DDP run of `nproc_per_node` ranks (NCCL on GPUs, gloo on the CPU) started
    # as an external process through Dagster Pipes; the batch is split across the ranks
    launcher: Launcher = Launcher.in_process
    nproc_per_node: int = Field(default=2, ge=1)

    def runtime_options(self, holder: str, progress: bool | None) -> RuntimeOptions:
        """How to run (the one place these settings become gan_core's RuntimeOptions); `holder` names the run to a
        second trainer that waits for it, `progress` switches the progress bars."""
        return RuntimeOptions(
            device=self.device,
            compile=self.compile,
            cuda_graph=self.cuda_graph,
            stack_seeds=self.stack_seeds,
            checkpoint_every=self.checkpoint_every,
            checkpoint_seconds=self.checkpoint_minutes * 60,
            holder=holder,
            progress=progress,
        )

    def for_experiment(self, experiment: Experiment) -> GanTrainingConfig:
        """This run's config applied to an experiment: the experiment's settings and seeds, then every setting this
        run config sets itself (a run config overrides an experiment; unset or null settings, as the launchpad's
        scaffold writes them, keep the experiment's)."""
        given = {name: value for name in self.model_fields_set if (value := getattr(self, name)) is not None}
        try:
            return type(self)(**{**experiment.settings, "seeds": list(experiment.seeds), **given})
        except pydantic.ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {describe_error(type(self), e)}" for e in error.errors()
            )
            raise ValueError(f"experiment {experiment.name!r} settings: {problems}") from None

    def train_configs(self, dataset: str, experiment: Experiment | str) -> list[TrainConfig]:
        """One validated TrainConfig per seed of `experiment` (a model's name: its built-in experiment) on `dataset`:
        the model's, loss's and (with `dataset_recipe`) dataset's recipes, then the experiment's settings, then every
        setting this run config gives (enum members as their values); the one place this config becomes TrainConfigs."""
        experiment = builtin_experiment(experiment) if isinstance(experiment, str) else experiment
        merged = self.for_experiment(experiment)
        names = [field.name for field in dataclasses.fields(TrainConfig) if field.name not in ("model", "seed")]
        given = {name: getattr(merged, name) for name in names}
        settings = {name: value.value if isinstance(value, enum.Enum) else value for name, value in given.items()}
        loss = settings.pop("loss") or None  # None: the model's own (ModelSpec.loss)
        try:
            recipe_of = dataset if merged.dataset_recipe else None
            return [
                default_train_config(experiment.model, loss, recipe_of, seed=seed, **settings) for seed in merged.seeds
            ]
        except ValueError as error:
            raise ValueError(f"gan_model config: {error}") from None

    @pydantic.field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({seed for seed in seeds if seeds.count(seed) > 1})
        if repeated:
            raise ValueError(f"must be distinct (each seed trains one model), got {seeds}: {repeated} repeated")
        return seeds

    def check_across_fields(self, dataset: str, experiment: Experiment, train_size: int | None = None) -> None:
        """TrainConfig.validate for every seed, and one full step of the batch must fit in the training split (its
        size from the dataset's spec, else `train_size`: for TFD only the stored dataset file knows it)."""
        config = self.train_configs(dataset, experiment)[0]  # the seeds differ in nothing else
        split_sizes = get_dataset_spec(dataset).split_sizes
        train_size = split_sizes["train"] if split_sizes else train_size
        if train_size is None:
            return
        images = min(train_size, config.max_train_images or train_size)
        if config.batch_size * config.d_steps > images:
            where = f"the training split of {dataset!r} has {train_size} images"
            if images < train_size:
                where = f"max_train_images={images} of the {train_size} in the training split of {dataset!r}"
            if config.d_steps > 1:
                where += f", and d_steps={config.d_steps} batches make one step"
            raise ValueError(
                f"gan_model config: batch_size: must be at most {images // config.d_steps} ({where}), "
                f"got {config.batch_size}"
            )


# What an experiment may set: every training setting, and whether the dataset's recipe applies (the rest of
# GanTrainingConfig says how to run, not what is trained)
EXPERIMENT_SETTINGS = [*TrainingSettings.model_fields, "dataset_recipe"]


class SamplingConfig(AssetConfig):
    """How many samples to draw per trained seed and from which noise seed."""

    asset_name: ClassVar[str] = "generated_samples"
    count: int = Field(default=10_000, gt=0)
    sample_seed: int = 0
    batch_size: int = Field(default=1000, gt=0)
    device: str = "auto"


class ParzenBandwidthConfig(AssetConfig):
    """The sigma grid (default: numpy.logspace(-1, 0, 10), the paper's) and how many validation images choose it."""

    asset_name: ClassVar[str] = "parzen_bandwidth"
    sigmas: list[Annotated[float, Field(gt=0)]] = Field(default=list(PAPER_SIGMAS), min_length=1)
    n_valid: int = Field(default=PAPER_VALID_POINTS, gt=0)
    block_size: int = Field(default=1024, gt=0)
    device: str = "auto"


class ParzenConfig(AssetConfig):
    """Settings of the Parzen log-likelihood on the test split."""

    asset_name: ClassVar[str] = "parzen_log_likelihood"
    block_size: int = Field(default=1024, gt=0)
    device: str = "auto"


class ClassifierConfig(AssetConfig):
    """The feature classifier's training length (0: about 60,000 images' worth of updates) and seed."""

    asset_name: ClassVar[str] = "feature_classifier"
    epochs: int = Field(default=0, ge=0)
    seed: int = 0
    device: str = "auto"


class InferenceConfig(AssetConfig):
    """The learned inverse E of each seed's generator (gan_core.inference): its training steps and batch, how many
    training images the linear probe is fitted on, its seed and device."""

    asset_name: ClassVar[str] = "latent_encoder"
    steps: int = Field(default=1000, ge=1)  # Adam steps on fresh (G(z), z) batches
    batch_size: int = Field(default=100, ge=1)
    # the logistic-regression probe's training images (the first ones of the split); its test images are the test split
    probe_train_images: int = Field(default=10_000, ge=10)
    seed: int = 0
    device: str = "auto"


_BOUND_SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<="}
_BOUND_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}


def _collect_bounds(item: Any, bounds: dict[str, float]) -> bool:
    """Gather the gt/ge/lt/le constraints found anywhere in a field (its FieldInfo, Optional[...], list[...] and
    Annotated metadata) into `bounds`; return whether it holds a float."""
    if item is float:
        return True
    if isinstance(item, annotated_types.BaseMetadata):
        bounds.update({key: getattr(item, key) for key in _BOUND_SYMBOLS if hasattr(item, key)})
        return False
    parts = [item.annotation, *item.metadata] if isinstance(item, FieldInfo) else typing.get_args(item)
    return any([_collect_bounds(part, bounds) for part in parts])  # a list: visit every part


def allowed_values(config_class: type[AssetConfig], field: str) -> str:
    """What a numeric setting allows, from its pydantic constraints: "> 0 and finite", "a positive integer"."""
    bounds: dict[str, float] = {}
    is_float = _collect_bounds(config_class.model_fields[field], bounds)
    ranges = " and ".join(f"{_BOUND_SYMBOLS[key]} {bounds[key]:g}" for key in _BOUND_SYMBOLS if key in bounds)
    if is_float:
        return f"{ranges} and finite" if ranges else "a finite number"
    names = {(("gt", 0),): "a positive integer", (("ge", 0),): "a non-negative integer"}
    return names.get(tuple(bounds.items()), f"an integer {ranges}".rstrip())


def describe_error(config_class: type[AssetConfig], error: ErrorDetails) -> str:
    """One pydantic error of `config_class` (without the setting's name): pydantic's words, what is allowed, the value
    given: "Input should be a finite number (allowed: > 0 and finite), got nan"."""
    got = f"got {error['input']!r}"
    if error["type"] in _BOUND_ERRORS:
        return f"{error['msg']} (allowed: {allowed_values(config_class, str(error['loc'][0]))}), {got}"
    if error["type"] == "value_error":  # a validator's own message
        return str(error.get("ctx", {}).get("error", error["msg"]))
    return f"{error['msg']} ({got})" if "got" in error["msg"] else f"{error['msg']}, {got}"


def check_setting(asset_name: str, field: str, value: Any) -> str | None:
    """What is wrong with one setting of an asset's config ("must be a positive integer, got 0"), or None if it is
    allowed; for a command-line flag that sets one field."""
    config_class = _CONFIG_CLASSES[asset_name]
    try:
        config_class(**{field: value})
    except pydantic.ValidationError as error:
        return "; ".join(
            f"must be {allowed_values(config_class, field)}, got {e['input']!r}"
            if e["type"] in _BOUND_ERRORS
            else describe_error(config_class, e)
            for e in error.errors()
        )
    return None


def check_run_config(
    ops: Mapping[str, Any], dataset: str, experiment: Experiment | str, train_size: int | None = None
) -> None:
    """Build every asset config in a run config's `ops` and run its cross-field check (`AssetConfig.check`) for the
    partition's dataset and experiment (a model's name: its built-in experiment); raise
    ValueError with one line naming the asset, the setting, what is wrong and what is allowed. Ops without a config
    class are left to Dagster's own schema."""
    for name, settings in ops.items():
        config_class = _CONFIG_CLASSES.get(name)
        if config_class is None:
            continue
        values = (settings or {}).get("config") if isinstance(settings, Mapping) else settings
        values = {} if values is None else values
        if not isinstance(values, Mapping):
            raise ValueError(f"{name} config: must be a mapping of setting names to values, got {values!r}")
        unknown = [key for key in values if key not in config_class.model_fields]
        if unknown:
            close = difflib.get_close_matches(str(unknown[0]), config_class.model_fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            known = ", ".join(config_class.model_fields)
            raise ValueError(f"{name} config: unknown setting {unknown[0]!r}{hint}; known settings: {known}")
        try:
            config_class(**values).check_across_fields(dataset, experiment, train_size)
        except pydantic.ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(map(str, e['loc']))}: {describe_error(config_class, e)}" for e in error.errors()
            )
            raise ValueError(f"{name} config: {problems}") from None


def validate_run_config(context: dg.AssetExecutionContext, experiment: Experiment) -> None:
    """`check_run_config` of this run's config for its dataset x `experiment` partition, before an asset does any
    work (a run launched from the UI or a schedule meets the same checks as `gan-pipeline run`)."""
    ops = (context.run.run_config or {}).get("ops", {})
    dataset = context.partition_key.keys_by_dimension["dataset"]  # type: ignore[union-attr]
    check_run_config(ops, dataset, experiment)


def check_experiment_settings(experiment: Experiment, dataset: str = "digits") -> None:
    """Refuse, in one line, an experiment whose settings are not gan_model's training settings or are out of their
    bounds (what `gan-pipeline experiment add` and `sweep` check before storing anything)."""
    unknown = [name for name in experiment.settings if name not in EXPERIMENT_SETTINGS]
    if unknown:
        close = difflib.get_close_matches(unknown[0], EXPERIMENT_SETTINGS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"experiment {experiment.name!r}: unknown setting {unknown[0]!r}{hint}; "
            f"known settings: {', '.join(EXPERIMENT_SETTINGS)}"
        )
    GanTrainingConfig().train_configs(dataset, experiment)
