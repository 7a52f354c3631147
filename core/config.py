"""Typed configuration: every key is declared once with its default and valid values.

A run's config is one flat mapping of engine keys and domain keys. It is resolved in this order,
each layer overriding the one before: engine defaults, domain defaults, the chosen preset, a
config file (TOML, YAML or JSON), ``--set key=value`` pairs, and explicit CLI flags.
"""

from __future__ import annotations

import difflib
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

import yaml

from polyvae.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


@dataclass(frozen=True)
class Option:
    """One configuration key: its default, its type (taken from the default unless given), and
    optional limits: ``minimum`` and ``maximum`` are allowed values, ``above`` is a bound the
    value must exceed (a learning rate of 0 would train nothing). ``kind`` is one of ``int``,
    ``float``, ``bool``, ``str`` or ``list`` (a list of strings, written ``a,b,c`` on the command
    line)."""

    name: str
    default: Any
    help: str
    choices: tuple[Any, ...] | None = None
    minimum: float | None = None
    maximum: float | None = None
    above: float | None = None
    kind: str | None = None

    @property
    def type_name(self) -> str:
        if self.kind:
            return self.kind
        if isinstance(self.default, bool):
            return "bool"
        if isinstance(self.default, (list, tuple)):
            return "list"
        return type(self.default).__name__

    def coerce(self, value: Any) -> Any:
        """Convert ``value`` (from a file or a ``key=value`` string) to this option's type."""
        kind, original = self.type_name, value
        try:
            if kind == "bool":
                value = _to_bool(value)
            elif kind == "int":
                if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                    raise ValueError
                value = int(value)
            elif kind == "float":
                if isinstance(value, bool):
                    raise ValueError
                value = float(value)
                if not math.isfinite(value):
                    raise ValueError
            elif kind == "list":
                if isinstance(value, str):
                    value = [part.strip() for part in value.split(",") if part.strip()]
                elif isinstance(value, (list, tuple)):
                    value = [str(part) for part in value]
                else:
                    raise ValueError
            elif kind == "str" and not isinstance(value, str):
                raise ValueError
        except (TypeError, ValueError):
            raise ConfigError(
                f"config key '{self.name}': {original!r} is not a valid {kind}"
            ) from None
        self._check_limits(value)
        return value

    def _check_limits(self, value: Any) -> None:
        values = value if isinstance(value, list) else [value]
        if self.choices is not None:
            for one in values:
                if one not in self.choices:
                    valid = ", ".join(str(choice) for choice in self.choices)
                    raise ConfigError(f"config key '{self.name}': {one!r} is not one of: {valid}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigError(
                f"config key '{self.name}': {value} is below the minimum {self.minimum}"
            )
        if self.above is not None and value <= self.above:
            raise ConfigError(f"config key '{self.name}': {value} must be above {self.above:g}")
        if self.maximum is not None and value > self.maximum:
            raise ConfigError(
                f"config key '{self.name}': {value} is above the maximum {self.maximum}"
            )


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError


# A fitted prior's defaults (polyvae.priors, polyvae fit-prior, training's prior_components):
# mixture components, and the training items whose codes it is fitted to.
PRIOR_COMPONENTS = 20
PRIOR_FIT_ITEMS = 20_000
PRECISIONS = ("auto", "fp32", "bf16")


@dataclass(frozen=True)
class Settings:
    """A frozen dataclass whose fields are configuration keys, each declared once with
    :func:`setting`: the class gives both the :class:`Option` schema that validates a flat config
    and typed, read-only access to a resolved one (``EngineConfig.from_mapping(config).lr``)."""

    @classmethod
    def options(cls) -> tuple[Option, ...]:
        """The fields as :class:`Option`s; a tuple default is a list option (lists in the flat
        config, as run.json stores them)."""
        return tuple(
            Option(
                item.name,
                list(item.default) if isinstance(item.default, tuple) else item.default,
                **item.metadata[_OPTION],
            )
            for item in fields(cls)
        )

    @classmethod
    def from_mapping(cls: type[SettingsT], config: Mapping[str, Any]) -> SettingsT:
        """This class's keys from a resolved flat config (other keys are another section's)."""
        values = {item.name: config[item.name] for item in fields(cls)}
        frozen = {name: tuple(v) if isinstance(v, list) else v for name, v in values.items()}
        return cls(**frozen)


SettingsT = TypeVar("SettingsT", bound=Settings)
_OPTION = "polyvae.option"


def setting(
    default: Any,
    help: str,
    *,
    choices: tuple[Any, ...] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
) -> Any:
    """A :class:`Settings` field: its default and the :class:`Option` limits that validate it."""
    limits = {
        "help": help,
        "choices": choices,
        "minimum": minimum,
        "maximum": maximum,
        "above": above,
    }
    return field(default=default, metadata={_OPTION: limits})


@dataclass(frozen=True)
class EngineConfig(Settings):
    """The engine's keys, the same for every domain."""

    latent_dim: int = setting(32, "size of the latent vector z", minimum=1)
    epochs: int = setting(20, "passes over the training data", minimum=1)
    steps_per_epoch: int = setting(
        0,
        "optimizer steps per epoch, so that a large data set is validated and checkpointed more "
        "often than once a pass; the shuffled passes run on across epochs (0: one full pass)",
        minimum=0,
    )
    max_steps: int = setting(0, "stop after this many optimizer steps (0: no limit)", minimum=0)
    time_limit: float = setting(
        0.0,
        "stop cleanly after this many minutes of training, ending with a validated epoch (0: none)",
        minimum=0.0,
    )
    batch_size: int = setting(128, "items per optimizer step", minimum=1)
    length_buckets: int = setting(
        50,
        "batch items of similar length (the domain's unit_counts), sorting windows of this many "
        "batches (0: off)",
        minimum=0,
    )
    lr: float = setting(1e-3, "peak learning rate of AdamW", above=0.0)
    weight_decay: float = setting(1e-4, "AdamW decoupled weight decay", minimum=0.0)
    lr_warmup_steps: int = setting(
        100, "linear learning-rate warm-up before the cosine decay", minimum=0
    )
    lr_min_ratio: float = setting(
        0.1, "final learning rate as a fraction of the peak", minimum=0.0, maximum=1.0
    )
    grad_clip: float = setting(1.0, "clip the gradient norm to this value (0: off)", minimum=0.0)
    beta_schedule: str = setting(
        "linear", "KL weight schedule", choices=("constant", "linear", "cyclical", "logistic")
    )
    beta_min: float = setting(0.0, "KL weight at the start of a warm-up or cycle", minimum=0.0)
    beta_max: float = setting(1.0, "KL weight after warm-up", minimum=0.0)
    beta_warmup_steps: int = setting(2000, "steps of the linear or logistic KL warm-up", minimum=0)
    beta_cycles: int = setting(4, "number of cycles M of the cyclical schedule", minimum=1)
    beta_ratio: float = setting(
        0.5, "share R of each cycle spent increasing beta", minimum=0.0, maximum=1.0
    )
    kl_target: float = setting(
        0.0,
        "hold the KL per item near this many nats with a controller on beta, in place of the "
        "beta schedule (0: off, use the schedule)",
        minimum=0.0,
    )
    free_bits: float = setting(
        0.0, "minimum KL per latent dimension, in nats, before it is penalised", minimum=0.0
    )
    fit_prior: str = setting(
        "gmm",
        "when training ends, fit this density to the training codes and sample from it by "
        "default (polyvae fit-prior; none: sample from N(0, I))",
        choices=("gmm", "flow", "none"),
    )
    prior_components: int = setting(
        PRIOR_COMPONENTS,
        "most components of the fitted Gaussian mixture (the count held-out codes favour is kept)",
        minimum=1,
    )
    condition: tuple[str, ...] = setting(
        (), "item properties the model is conditioned on (e.g. qed,logp)"
    )
    predict: tuple[str, ...] = setting(
        (), "item properties a head on z learns to predict (for optimisation)"
    )
    property_weight: float = setting(
        1.0, "weight of the property head's squared error", minimum=0.0
    )
    val_fraction: float = setting(
        0.1, "share of the data held out for validation", minimum=0.0, maximum=0.5
    )
    patience: int = setting(
        5,
        "epochs without better validation weights (by ELBO; by reconstruction under kl_target) "
        "before stopping (0: never)",
        minimum=0,
    )
    max_items: int = setting(0, "use only the first N items read (0: all)", minimum=0)
    seed: int = setting(0, "seed for initialisation, data order and sampling")
    device: str = setting("auto", "auto, cpu, cuda, cuda:N or mps")
    threads: int = setting(0, "CPU threads for torch (0: torch's default, one per core)", minimum=0)
    precision: str = setting(
        "auto",
        "bf16 autocast on CUDA when auto; on a CPU with native bf16, for training and decoding; "
        "int8 sampling on a CPU with VNNI",
        choices=PRECISIONS,
    )
    compile: bool = setting(False, "torch.compile the model")


ENGINE_OPTIONS = EngineConfig.options()


def schema_for(domain_options: Iterable[Option]) -> dict[str, Option]:
    """The full schema of a domain: the engine's options followed by the domain's own."""
    schema = {option.name: option for option in ENGINE_OPTIONS}
    for option in domain_options:
        if option.name in schema or option.name == "preset":
            raise ValueError(f"domain option '{option.name}' clashes with an engine option")
        schema[option.name] = option
    return schema


def resolve_config(
    schema: Mapping[str, Option],
    presets: Mapping[str, Mapping[str, Any]],
    *layers: Mapping[str, Any],
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge ``layers`` over the defaults, validating every key and value.

    ``base`` (a domain's own engine defaults) sits just above the defaults; a ``preset`` key in
    any layer selects a preset, whose values sit above ``base``.
    """
    preset = None
    for layer in layers:
        preset = layer.get("preset", preset)
    resolved = {name: option.default for name, option in schema.items()}
    overrides: list[Mapping[str, Any]] = [base or {}]
    if preset is not None:
        if preset not in presets:
            valid = ", ".join(presets) or "(this domain has none)"
            raise ConfigError(f"config key 'preset': {preset!r} is not one of: {valid}")
        overrides.append(presets[preset])
    overrides.extend(layers)
    for layer in overrides:
        for key, value in layer.items():
            if key == "preset":
                continue
            if key not in schema:
                raise ConfigError(_unknown_key_message(key, schema))
            resolved[key] = schema[key].coerce(value)
    resolved["preset"] = preset
    return resolved


def _unknown_key_message(key: str, schema: Mapping[str, Option]) -> str:
    close = difflib.get_close_matches(key, list(schema), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return f"unknown config key '{key}'{hint}; valid keys: {', '.join(['preset', *schema])}"


def parse_assignments(pairs: Sequence[str]) -> dict[str, str]:
    """``["a=1", "b=x,y"]`` -> ``{"a": "1", "b": "x,y"}`` (values are coerced later)."""
    assignments = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got {pair!r}")
        assignments[key.strip()] = value.strip()
    return assignments


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a flat config mapping from .toml, .yaml/.yml or .json (safe loaders only)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
        if suffix == ".toml":
            data = tomllib.loads(text)
        elif suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        elif suffix == ".json":
            data = json.loads(text)
        else:
            raise ConfigError(f"config file {path}: use .toml, .yaml, .yml or .json")
    except (UnicodeDecodeError, ValueError, yaml.YAMLError) as error:
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise ConfigError(f"config file {path} is not valid {suffix[1:]}: {first_line}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of keys to values")
    return data
