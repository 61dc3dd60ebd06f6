"""One typed config tree, one slice per concern (STYLE: "One typed config tree").

Every section is a frozen pydantic model with ``extra="forbid"``: an unknown key or a wrong type is an
error that names the key. ``load_config`` reads a YAML file, applies ``--set section.key=value``
overrides and raises :class:`ConfigError` with a one-line message naming the file and the key.

The tree is a union on ``task``: :class:`Config` holds what every task shares (``plugins``, ``task``, ``paths``,
``cluster``, ``execution``) and each registered task (``pipeline.tasks``) adds its own sections in its ``CONFIG``
class, so a synapse config carries no street section. ``execution`` holds how a run is carried out (workers' CPUs
and GPUs, batch sizes of inference, log and checkpoint intervals): no fingerprint reads it. Every ``auto`` that
changes a result is resolved in one place, the task's ``CONFIG.resolved``, as the config is loaded: ``auto`` and
the value it resolves to give one fingerprint.
"""

from __future__ import annotations

import copy
import re
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.tasks import task_of

DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "configs" / "demo.yaml"


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file and the key."""


class Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _existing_path(value: Path | None) -> Path | None:
    if value is not None and not Path(value).expanduser().exists():
        raise ValueError(f"path does not exist: {value}")
    return None if value is None else Path(value).expanduser()


class ClusterConfig(Section):
    address: str | None = None  # None: start Ray locally; "auto" or HOST:PORT: join a cluster
    num_cpus: int | None = None  # for a local Ray only


class PathsConfig(Section):
    workdir: Path = Path("runs/demo")


def import_plugins(modules: tuple[str, ...]) -> tuple[str, ...]:
    """Import each plugin module (it registers its datasets, methods or tasks when imported): in every process
    that validates the config, Ray's workers included."""
    import importlib

    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"plugins: cannot import plugin module {module!r} ({err})") from None
    return modules


class TrainExecution(Section):
    """How a training is carried out; none of it changes what it learns (``workers`` and ``amp`` do: the task's
    ``train``)."""

    cpus_per_worker: int = Field(1, ge=1)
    use_gpu: bool | Literal["auto"] = "auto"  # auto: where the cluster (or, without Ray, this machine) has a GPU
    loader_workers: Annotated[int, Field(ge=0)] | Literal["auto"] = "auto"  # DataLoader processes per stream; auto: (cpus_per_worker - 1) / streams
    max_failures: int = Field(3, ge=0)  # Ray Train restarts of a failed worker group, each from the last checkpoint
    log_every: int = Field(50, ge=1)
    checkpoint_every: int = Field(1000, ge=1)


class EvalExecution(Section):
    batch_size: int = Field(1, ge=1)  # windows or images per forward pass
    num_gpus: float = Field(0.0, ge=0)  # of the Ray actor that holds the model (1 on a cluster: a GPU worker)
    num_cpus: float = Field(1.0, gt=0)


class ExecutionConfig(Section):
    """How each stage runs: Ray resources, batch sizes of inference, intervals. No fingerprint reads it."""

    train: TrainExecution = TrainExecution()
    eval: EvalExecution = EvalExecution()

    def requests(self) -> dict[str, dict[str, float]]:
        """Ray resource request of each kind of task or actor a run starts (CPU, GPU), by name: for the
        cluster-fit check. A task's execution class adds sections of its own, each with its ``requests()``."""
        gpu = 1.0 if self.train.use_gpu is True else 0.0  # "auto" asks for a GPU only where the cluster has one
        asked = {"train worker": {"CPU": float(self.train.cpus_per_worker), "GPU": gpu},
                 "evaluation actor": {"CPU": self.eval.num_cpus, "GPU": self.eval.num_gpus}}
        for name in type(self).model_fields:
            section = getattr(self, name)
            asked |= section.requests() if hasattr(section, "requests") else {}
        return asked


class SplitData(Section):
    """The labelled split every task draws (``stages.split``): a list, or N chosen by a seed."""

    labelled_target: int | Literal["all"] = 20  # N labelled target train images
    split_file: Path | None = None  # a user's list of labelled images; wins over labelled_target
    seed: int = 0  # chooses the labelled split (N from the target train images)
    strict: bool = False  # fail ingest on any rejected file instead of skipping it

    _check_split = field_validator("split_file")(_existing_path)

    @model_validator(mode="after")
    def _labelled(self) -> SplitData:
        if isinstance(self.labelled_target, int) and self.labelled_target < 0:
            raise ValueError("labelled_target: must be >= 0 or 'all'")
        return self


class TrainRun(Section):
    """What every trainer reads (``stages.training``); a task's ``train`` adds its own keys and defaults."""

    iterations: int = Field(40_000, ge=1)
    seed: int = 0
    workers: int = Field(1, ge=1)  # Ray Train workers (DDP ranks): the global batch grows with them


class DyceLoss(Section):
    """DyCE (paper Eq. 9) where a task's supervised terms use it."""

    dyce: bool = True  # False: plain CE (the ablation baseline)
    hard_ratio: float = Field(0.2, gt=0, le=1)  # h: share of hardest pixels (voxels) mined, Eq. 9
    omega: float = Field(0.5, ge=0, le=1)  # ω, Eq. 9


class Config(Section):
    """What every task's config holds; ``Config.model_validate`` returns the config class of the task named by
    ``task`` (``pipeline.tasks``), which adds the task's sections."""

    plugins: tuple[str, ...] = ()  # modules that register datasets, 3D methods or tasks (docs/ARCHITECTURE.md)
    task: str = "street"  # a registered task (pipeline.tasks): street (SSDA on street scenes), synapse (3D CT, Table 5)
    cluster: ClusterConfig = ClusterConfig()
    paths: PathsConfig = PathsConfig()
    execution: ExecutionConfig = ExecutionConfig()

    @model_validator(mode="wrap")
    @classmethod
    def _task_config(cls, data: Any, handler: Any) -> Any:
        if cls is not Config or not isinstance(data, dict):
            return handler(data)
        import_plugins(tuple(data.get("plugins") or ()))  # a plugin may register the task
        return task_config(data.get("task", "street")).model_validate(data)

    def resolved(self) -> Config:
        """This config with every ``auto`` that changes a result made a value (the task's class says how)."""
        return self


def task_config(name: Any) -> type[Config]:
    """The config class of the registered task ``name`` (ValueError naming ``task``)."""
    cls = task_of(str(name)).CONFIG
    if not (isinstance(cls, type) and issubclass(cls, Config)):
        raise ValueError(f"task: {name!r} declares no CONFIG (a subclass of pipeline.config.Config)")
    return cls


# Keys that moved to ``execution`` (they never changed a result): an old config still loads, with a warning
# naming the new spelling.
MOVED = {**{("caption", k): ("execution", "caption", k)
            for k in ("batch_size", "concurrency", "num_gpus", "max_retries", "decode_cpus", "replica_cpus")},
         **{("text", k): ("execution", "text", k) for k in ("batch_size", "concurrency", "num_gpus")},
         **{("train", k): ("execution", "train", k) for k in TrainExecution.model_fields},
         **{("eval", k): ("execution", "eval", k) for k in EvalExecution.model_fields}}


def _migrate(raw: dict[str, Any], source: str, warn: bool = True) -> None:
    """Move each key of ``MOVED`` found in ``raw`` to its new place, with a warning; a section left empty goes."""
    for old, new in MOVED.items():
        section = raw.get(old[0])
        if not (isinstance(section, dict) and old[1] in section):
            continue
        target = raw.setdefault(new[0], {}).setdefault(new[1], {})
        if not isinstance(target, dict) or new[2] in target:
            raise ConfigError(f"{source}: {'.'.join(old)}: moved to {'.'.join(new)}, which is set too; keep that one")
        target[new[2]] = section.pop(old[1])
        if warn:
            warnings.warn(f"{source}: {'.'.join(old)} is now spelt {'.'.join(new)}", FutureWarning, stacklevel=4)
        if not section:
            raw.pop(old[0])


def _check_sections(raw: dict[str, Any], source: str) -> None:
    """A root key the task does not have: named, with the task and the sections it has."""
    try:
        import_plugins(tuple(raw.get("plugins") or ()))
        cls = task_config(raw.get("task", "street"))
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None
    for key in raw:
        if key not in cls.model_fields:
            raise ConfigError(f"{source}: {key}: not a section of task {raw.get('task', 'street')!r} "
                              f"(its sections: {', '.join(cls.model_fields)})")


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    node = tree
    for key in keys[:-1]:
        child = node.setdefault(key, {})
        if not isinstance(child, dict):
            raise ConfigError(f"--set {dotted}: '{key}' is not a section")
        node = child
    node[keys[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.iterations=10"`` → ``("train.iterations", 10)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text}: expected section.key=value")
    try:
        return key.strip(), yaml.safe_load(raw)
    except yaml.YAMLError as err:
        raise ConfigError(f"--set {text}: value is not valid YAML ({err.__class__.__name__})") from None


_KEYED = re.compile(r"^([A-Za-z_][\w.]*): (.*)$")


def _format_error(source: str, err: ValidationError) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    msg = first["msg"].removeprefix("Value error, ")
    keyed = _KEYED.match(msg)  # model validators say "key: problem" for a key below their section
    if keyed:
        loc, msg = ".".join(filter(None, (loc, keyed.group(1)))), keyed.group(2)
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = len(err.errors()) - 1
    return f"{source}: {loc or '<root>'}: {msg}" + (f" (and {more} more)" if more else "")


def config_from_mapping(raw: dict[str, Any], overrides: list[str] | tuple[str, ...], source: str,
                        warn: bool = True) -> Config:
    """``raw`` with ``overrides`` applied, validated; ConfigError naming ``source`` and the key. ``warn``: say so
    when a key of the old spelling moved (False for configs a program wrote: a checkpoint's)."""
    raw = copy.deepcopy(raw)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(raw, key, value)
    _migrate(raw, source, warn)
    _check_sections(raw, source)
    try:
        cfg = Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_format_error(source, err)) from None
    try:
        return cfg.resolved()
    except ValueError as err:
        raise ConfigError(f"{source}: {err}") from None


def load_config(path: Path | str | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read ``path`` (default ``configs/demo.yaml``), apply ``overrides`` and validate."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config ({err.strerror})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{path}: not valid YAML{where}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: <root>: expected a mapping of sections")
    return config_from_mapping(raw, overrides, str(path))
