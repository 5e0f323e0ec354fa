"""Experiments: a name bound to a model entry, training settings and seeds; the registry that knows them all.

An experiment is what a researcher compares: the paper's settings against a changed learning rate, three seeds of
each. Its name is the second key of a dataset x experiment partition (``digits|paper_mlp``) and the directory its
results are stored under, so every experiment keeps its own runs and nothing is overwritten by another.

Three places declare experiments, read in this order (a name may be declared once, or again with the same definition):

- the built-ins: one per model entry (gan_core.models.MODELS), named after it, with no settings of its own, so
  ``digits|paper_mlp`` is the partition it always was and its stored runs keep their keys;
- a checked-in YAML file (``experiments.yaml`` beside the code): ``{name: {model, settings, seeds, description}}``;
- experiments added at run time (``gan-pipeline experiment add``, ``gan-pipeline sweep``), kept in the data root's
  ``experiments.json`` (gan_core.layout), written atomically.

What a setting may be is the Dagster config's business (assets.configs checks an experiment's settings like a run
config); this module checks names, the model entry, the seeds and the shape of the files.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from gan_core.locks import exclusive
from gan_core.models import MODELS
from gan_core.storage import write_json_atomic

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}")  # whole names only (fullmatch: `$` admits a "\n")
NAME_RULE = "1 to 100 letters, digits, '_', '-' or '.', not starting with '-' or '.'"
EXPERIMENT_FIELDS = ("model", "settings", "seeds", "sweep", "swept", "description")


class ExperimentError(ValueError):
    """An experiment that cannot be declared: the message names the experiment, the field and what is allowed."""


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A model entry with training settings (gan_model settings: learning_rate, momentum, epochs, ...) and seeds.
    `sweep` names the sweep that made it and `swept` the settings that sweep varies (its grid's keys)."""

    name: str
    model: str
    settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    seeds: tuple[int, ...] = (0,)
    sweep: str = ""
    swept: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        check_name(self.name, "experiment")
        if self.model not in MODELS:
            raise ExperimentError(
                f"experiment {self.name!r}: model: unknown model {self.model!r}; known: {list(MODELS)}"
            )
        if not self.seeds or any(not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in self.seeds):
            raise ExperimentError(
                f"experiment {self.name!r}: seeds: must be a non-empty list of non-negative integers, "
                f"got {list(self.seeds)}"
            )
        if len(set(self.seeds)) != len(self.seeds):
            raise ExperimentError(f"experiment {self.name!r}: seeds: must be distinct, got {list(self.seeds)}")
        for reserved in ("model", "seed", "seeds"):
            if reserved in self.settings:
                raise ExperimentError(
                    f"experiment {self.name!r}: settings: {reserved!r} is not a setting (give it as the experiment's "
                    f"{'model' if reserved == 'model' else 'seeds'})"
                )

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what is stored with the experiment's results and shown in the UI)."""
        return {
            "name": self.name,
            "model": self.model,
            "settings": dict(self.settings),
            "seeds": list(self.seeds),
            "sweep": self.sweep,
            "swept": list(self.swept),
            "description": self.description,
        }

    @classmethod
    def from_dict(cls, name: str, fields: Mapping[str, Any], where: str) -> Experiment:
        """An experiment from a file's entry; a malformed entry is refused naming the file and the field."""
        if not isinstance(fields, Mapping):
            raise ExperimentError(
                f"{where}: experiment {name!r}: must be a mapping of {EXPERIMENT_FIELDS}, got {fields!r}"
            )
        unknown = [key for key in fields if key not in (*EXPERIMENT_FIELDS, "name")]
        if unknown:
            raise ExperimentError(
                f"{where}: experiment {name!r}: unknown field {unknown[0]!r}; known fields: {list(EXPERIMENT_FIELDS)}"
            )
        if "model" not in fields:
            raise ExperimentError(f"{where}: experiment {name!r}: model: missing (a model entry: {list(MODELS)})")
        settings = fields.get("settings") or {}
        if not isinstance(settings, Mapping):
            raise ExperimentError(f"{where}: experiment {name!r}: settings: must be a mapping, got {settings!r}")
        seeds = fields.get("seeds", [0])
        seeds = [seeds] if isinstance(seeds, int) else seeds
        if not isinstance(seeds, list):
            raise ExperimentError(f"{where}: experiment {name!r}: seeds: must be a list of integers, got {seeds!r}")
        try:
            return cls(
                name=str(name),
                model=str(fields["model"]),
                settings=dict(settings),
                seeds=tuple(seeds),
                sweep=str(fields.get("sweep") or ""),
                swept=tuple(fields.get("swept") or ()),
                description=str(fields.get("description") or ""),
            )
        except ExperimentError as error:
            raise ExperimentError(f"{where}: {error}") from None


def check_name(name: str, what: str) -> str:
    """`name` if it may name an experiment or a sweep (a partition key and a directory name), else one line why."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ExperimentError(f"{what} name: {name!r} is not allowed: use {NAME_RULE}")
    return name


def builtin_experiment(model: str) -> Experiment:
    """A model entry's own experiment: its recipe as it is, seed 0 (what `digits|paper_mlp` always trained)."""
    return Experiment(name=model, model=model, description="the model entry's own recipe")


def parse_setting(text: str) -> tuple[str, Any]:
    """`key=value` from the command line, the value read as YAML (0.05 a number, true a bool, adam a string)."""
    key, separator, value = text.partition("=")
    if not separator or not key.strip():
        raise ExperimentError(f"setting {text!r}: must look like key=value, e.g. learning_rate=0.05")
    return key.strip(), _scalar(value.strip(), key.strip())


def parse_grid(text: str) -> tuple[str, list[Any]]:
    """`key=v1,v2,...` from the command line: a swept setting and its values (at least one, distinct)."""
    key, value = parse_setting(text)
    values = [_scalar(v.strip(), key) for v in str(value).split(",")] if isinstance(value, str) else [value]
    if any(v == "" for v in values):
        raise ExperimentError(f"--grid {text!r}: an empty value; write key=v1,v2")
    if len(set(map(repr, values))) != len(values):
        raise ExperimentError(f"--grid {text!r}: values must be distinct, got {values}")
    return key, values


def _scalar(text: str, key: str) -> Any:
    try:
        value = yaml.safe_load(text) if text else ""
    except yaml.YAMLError:
        value = text
    if isinstance(value, list | dict):
        raise ExperimentError(f"setting {key!r}: must be a single value, got {text!r}")
    return text if value is None else value


def _point_label(value: Any) -> str:
    """A swept value as part of a name: 0.05 -> 0.05, true -> true, adam -> adam."""
    text = str(value).lower() if isinstance(value, bool) else str(value)
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def sweep_experiments(
    sweep: str,
    model: str,
    grid: Mapping[str, Sequence[Any]],
    seeds: Sequence[int],
    settings: Mapping[str, Any] | None = None,
) -> list[Experiment]:
    """One experiment per point of `grid` (the product of its values, in the order given), each with `settings`
    and the point's values, named `<sweep>-<key><value>-...` (`lrsweep-learning_rate0.05-momentum0.5`)."""
    check_name(sweep, "sweep")
    if not grid:
        raise ExperimentError(
            f"sweep {sweep!r}: --grid: give at least one setting to sweep, e.g. learning_rate=0.05,0.1"
        )
    repeated = sorted(set(grid) & set(settings or {}))
    if repeated:
        raise ExperimentError(f"sweep {sweep!r}: {repeated[0]!r} is both swept (--grid) and fixed (--set); keep one")
    points = []
    for values in itertools.product(*grid.values()):
        point = dict(zip(grid, values, strict=True))
        name = "-".join([sweep, *(f"{key}{_point_label(value)}" for key, value in point.items())])
        points.append(
            Experiment(
                name=name,
                model=model,
                settings={**(settings or {}), **point},
                seeds=tuple(seeds),
                sweep=sweep,
                swept=tuple(grid),
                description=f"sweep {sweep}: " + ", ".join(f"{k}={v}" for k, v in point.items()),
            )
        )
    return points


class ExperimentRegistry:
    """Every experiment known: the built-ins, the declared file's (YAML) and those added at run time (`stored_file`,
    JSON in the data root). Read afresh on every call, so a long-lived code location sees experiments added since."""

    def __init__(self, stored_file: Path, declared_file: Path | None = None) -> None:
        self.stored_file = Path(stored_file)
        self.declared_file = Path(declared_file) if declared_file else None

    def _declared(self) -> list[Experiment]:
        path = self.declared_file
        if path is None or not path.is_file():
            return []
        try:
            entries = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ExperimentError(f"{path}: not valid YAML: {' '.join(str(error).split())}") from None
        if not isinstance(entries, Mapping):
            raise ExperimentError(f"{path}: must map experiment names to {{model, settings, seeds}}, got {entries!r}")
        return [Experiment.from_dict(str(name), fields, str(path)) for name, fields in entries.items()]

    def _stored(self) -> list[Experiment]:
        if not self.stored_file.is_file():
            return []
        entries = json.loads(self.stored_file.read_text())
        return [Experiment.from_dict(name, fields, str(self.stored_file)) for name, fields in entries.items()]

    def all(self) -> dict[str, Experiment]:
        """Every experiment by name: built-ins first, then the declared file's, then those added at run time."""
        found: dict[str, Experiment] = {}
        sources: dict[str, str] = {}
        builtins = [builtin_experiment(model) for model in MODELS]
        for source, experiments in (
            ("built in", builtins),
            (str(self.declared_file), self._declared()),
            (str(self.stored_file), self._stored()),
        ):
            for experiment in experiments:
                if experiment.name in found and found[experiment.name] != experiment:
                    raise ExperimentError(
                        f"experiment {experiment.name!r} is declared twice with different definitions "
                        f"({sources[experiment.name]} and {source}); rename one"
                    )
                found.setdefault(experiment.name, experiment)
                sources.setdefault(experiment.name, source)
        return found

    def names(self) -> list[str]:
        return list(self.all())

    def get(self, name: str) -> Experiment:
        """The experiment called `name`; an unknown name lists the known ones."""
        experiments = self.all()
        if name not in experiments:
            shown = list(experiments)[:30]
            more = f" and {len(experiments) - 30} more" if len(experiments) > 30 else ""
            raise ExperimentError(
                f"unknown experiment {name!r}; known experiments: {', '.join(shown)}{more} "
                "(add one with `gan-pipeline experiment add NAME --model M --set key=value`)"
            )
        return experiments[name]

    def sweep_points(self, sweep: str) -> list[Experiment]:
        """The experiments a sweep made, in the order they were added."""
        return [experiment for experiment in self.all().values() if experiment.sweep == sweep]

    def add(self, experiments: Iterable[Experiment], holder: str = "gan-pipeline experiment add") -> list[Experiment]:
        """Store `experiments` (atomically, one writer at a time); one already known with the same definition is
        kept as it is, one with the same name and another definition is refused before anything is written.
        Return the experiments that are new."""
        experiments = list(experiments)
        with exclusive(self.stored_file, holder):
            known = self.all()
            for experiment in experiments:
                if experiment.name in known and known[experiment.name] != experiment:
                    raise ExperimentError(
                        f"experiment {experiment.name!r} exists with another definition "
                        f"({json.dumps(known[experiment.name].to_dict(), sort_keys=True)}): choose another name"
                    )
            new = [experiment for experiment in experiments if experiment.name not in known]
            if new:
                stored = json.loads(self.stored_file.read_text()) if self.stored_file.is_file() else {}
                for experiment in new:
                    fields = experiment.to_dict()
                    stored[fields.pop("name")] = fields
                write_json_atomic(self.stored_file, stored)
        return new
