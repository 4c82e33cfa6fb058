"""Typed configs: dataclasses, YAML presets and dotted command-line overrides.

Every command's config is a dataclass tree whose fields carry a help text
(``field(default=..., metadata={"help": "..."})``). A run's config is built as

    dataclass defaults  <-  preset YAML (presets/<command>/<name>.yaml)  <-  overrides "a.b=value"

and every value is checked against its field's type, so a typo or a wrong type is an error that
names the key, never a silent default.

A preset builds on another with the reserved key ``_base`` in any of its mappings: the mapping
becomes the named preset merged recursively with the mapping's own keys, which win. E.g. in
presets/train_wm/tiny.yaml

    model:
      _base: world_model/tiny   # presets/world_model/tiny.yaml
      image_size: 32            # this one key differs

``_base`` names ``<folder>/<name>`` under presets/ (``<name>`` alone: in the folder of the preset that
names it, the command's own for a preset file) or a YAML file path (relative to the file that names it).
A base may have bases of its own; a cycle is an error. Overrides apply after all bases are merged.

Every field is written once, with ``option``: its default, help text and, where it has one, its range
(``low``/``high`` inclusive, ``above``/``below`` exclusive; for a list, of each item). ``field_specs``
is the one walker over these fields: ``from_dict`` checks every value it is given against them, the
nodes declare their ROS parameters from them (parameters.py), and ``--help``, config/<node>.yaml and
docs/parameters.md are written from them.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from roboscape_r_ros.errors import RoboscapeError

PRESET_DIR = Path(__file__).parent / "presets"
BASE_KEY = "_base"

T = TypeVar("T")


class ConfigError(RoboscapeError, ValueError):
    """A config key, value or preset that cannot be used; the message names the culprit."""


def option(
    default: Any,
    help: str,
    *,
    low: float | None = None,
    high: float | None = None,
    above: float | None = None,
    below: float | None = None,
    read_only: bool = False,
    **kwargs: Any,
) -> Any:
    """A dataclass field with its help text and range; mutable defaults are copied per instance.
    ``read_only``: a node parameter that is read at start only (ROS refuses ``ros2 param set``)."""
    metadata = {"help": help, "low": low, "high": high, "above": above, "below": below, "read_only": read_only}
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        factory = (lambda d=default: type(d)(d)) if isinstance(default, (list, dict)) else type(default)
        return dataclasses.field(default_factory=factory, metadata=metadata, **kwargs)
    return dataclasses.field(default=default, metadata=metadata, **kwargs)


@dataclasses.dataclass(frozen=True)
class FieldSpec:
    """One leaf field of a config or parameter dataclass, as ``option`` wrote it."""

    name: str  # dotted: nested dataclasses flattened (learning.enabled)
    hint: Any  # the field's type (str, int, float, bool, list[...], tuple[...], Literal[...])
    default: Any  # dataclasses.MISSING for a field without one
    help: str
    low: float | None = None
    high: float | None = None
    above: float | None = None
    below: float | None = None
    read_only: bool = False

    @property
    def choices(self) -> tuple[Any, ...]:
        """The values a ``Literal`` type allows; () for any other type."""
        return typing.get_args(self.hint) if typing.get_origin(self.hint) is typing.Literal else ()

    @property
    def item_type(self) -> Any:
        """The element type of a list field (tuple[str, ...] -> str), else None."""
        return typing.get_args(self.hint)[0] if typing.get_origin(self.hint) in (list, tuple) else None

    @property
    def range_text(self) -> str:
        """The range as a reader writes it: "[0, 1]", "(0, 1]", "> 0", "<= 5", or "" for none."""
        lower = ("[", ">=", self.low) if self.low is not None else ("(", ">", self.above)
        upper = ("]", "<=", self.high) if self.high is not None else (")", "<", self.below)
        if lower[2] is not None and upper[2] is not None:
            return f"{lower[0]}{_number(lower[2])}, {_number(upper[2])}{upper[0]}"
        for _, operator, bound in (lower, upper):
            if bound is not None:
                return f"{operator} {_number(bound)}"
        return ""

    def range_error(self, value: Any) -> str | None:
        """What is wrong with ``value`` (for a list, with any item) against the range, or None."""
        items = value if isinstance(value, (list, tuple)) else [value]
        numbers = [v for v in items if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not any(
            (self.low is not None and v < self.low)
            or (self.high is not None and v > self.high)
            or (self.above is not None and v <= self.above)
            or (self.below is not None and v >= self.below)
            for v in numbers
        ):
            return None
        text = self.range_text
        return f"{self.name} must {'be' if text[0] in '<>' else 'lie in'} {text}, got {value!r}"


def _number(value: float) -> str:
    """A bound as people write it: 2147483647, not 2.14748e+09; 0.5, not 0.500000."""
    return str(int(value)) if float(value).is_integer() and abs(value) < 1e16 else f"{value:g}"


def field_specs(cls: type, prefix: str = "") -> list[FieldSpec]:
    """Every leaf field of dataclass ``cls`` in declaration order, nested dataclasses flattened to dotted names."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if isinstance(hint, type) and dataclasses.is_dataclass(hint):
            specs.extend(field_specs(hint, f"{prefix}{f.name}."))
        else:
            specs.append(_spec(f, hint, prefix))
    return specs


def _spec(f: dataclasses.Field[Any], hint: Any, prefix: str) -> FieldSpec:
    meta = {key: f.metadata[key] for key in ("low", "high", "above", "below", "read_only") if key in f.metadata}
    return FieldSpec(prefix + f.name, hint, _field_default(f), f.metadata.get("help", ""), **meta)


def available_presets(command: str) -> list[str]:
    return sorted(p.stem for p in (PRESET_DIR / command).glob("*.yaml"))


def load_config(cls: type[T], command: str, preset: str | None, overrides: list[str]) -> T:
    """Build ``cls`` from its defaults, a named preset (or a YAML file path) and dotted overrides."""
    values: dict[str, Any] = {}
    if preset:
        values = _read_preset(command, preset)
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override '{item}' is not of the form key=value (e.g. env.resolution=96)")
        set_dotted(values, key.strip(), _parse_value(raw))
    return from_dict(cls, values)


def _read_preset(command: str, preset: str, here: Path = Path(), chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset by name (in presets/<command>) or YAML file path (relative to ``here``), its bases merged in."""
    path = Path(preset)
    if path.suffix in (".yaml", ".yml"):
        path = here / path
    else:
        path = PRESET_DIR / command / f"{preset}.yaml"
        if not path.is_file():
            known = ", ".join(available_presets(command)) or "none"
            raise ConfigError(f"unknown preset '{preset}' for '{command}' (available: {known})")
    if not path.is_file():
        raise ConfigError(f"preset file {path} does not exist")
    chain = (*chain, path.resolve())
    if chain[-1] in chain[:-1]:
        raise ConfigError("presets build on each other in a cycle: " + " -> ".join(map(_preset_label, chain)))
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"preset file {path} is not valid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"preset file {path} must hold a mapping of options")
    return _with_bases(data, command, path, chain)


def _with_bases(node: Any, command: str, path: Path, chain: tuple[Path, ...]) -> Any:
    """``node`` (read from ``path``) with the ``_base`` of every mapping in it merged in, own keys winning."""
    if isinstance(node, list):
        return [_with_bases(item, command, path, chain) for item in node]
    if not isinstance(node, dict):
        return node
    own = {key: _with_bases(value, command, path, chain) for key, value in node.items() if key != BASE_KEY}
    if BASE_KEY not in node:
        return own
    base = node[BASE_KEY]
    if not isinstance(base, str):
        raise ConfigError(f"'{BASE_KEY}' in preset file {path} must name a preset, e.g. world_model/tiny; got {base!r}")
    folder, _, name = base.rpartition("/")
    if Path(base).suffix in (".yaml", ".yml"):
        folder, name = "", base
    return _merge(_read_preset(folder or command, name, path.parent, chain), own)


def _merge(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in own.items():
        both = isinstance(value, dict) and isinstance(merged.get(key), dict)
        merged[key] = _merge(merged[key], value) if both else value
    return merged


def _preset_label(path: Path) -> str:
    try:
        return path.relative_to(PRESET_DIR.resolve()).with_suffix("").as_posix()
    except ValueError:
        return str(path)


def _parse_value(raw: str) -> Any:
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """``tree`` with ``value`` at dotted ``key`` ("a.b": tree["a"]["b"]), groups made as needed."""
    parts = key.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{key}': '{part}' is a value, not a group of options")
        node = child
    node[parts[-1]] = value


def from_dict(cls: type[T], values: dict[str, Any], prefix: str = "") -> T:
    """Instantiate dataclass ``cls`` from a nested dict, checking names, types and ranges."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        name = prefix + unknown[0]
        raise ConfigError(f"unknown option '{name}' (known here: {', '.join(prefix + f for f in fields)})")
    kwargs = {}
    for name, value in values.items():
        kwargs[name] = _coerce(hints[name], value, prefix + name)
        if problem := _spec(fields[name], hints[name], prefix).range_error(kwargs[name]):
            raise ConfigError(f"option {problem}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"option '{key}' is a group of options; set its members, e.g. {key}.<name>=...")
        return from_dict(hint, value, prefix=key + ".")
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"option '{key}' must be one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"option '{key}' must be a list, got {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(value) != len(args):
                raise ConfigError(f"option '{key}' must have {len(args)} values, got {len(value)}")
            return tuple(_coerce(a, v, key) for a, v in zip(args, value))
        item = args[0] if args else Any
        coerced = [_coerce(item, v, key) for v in value]
        return tuple(coerced) if origin is tuple else coerced
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"option '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"option '{key}' must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"option '{key}' must be an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, str):
            value = _float_or_str(value)  # YAML 1.1 reads "5e-3" (no dot) as a string
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"option '{key}' must be a number, got {value!r}")
        return float(value)
    if hint is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ConfigError(f"option '{key}' must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"option '{key}' has an unsupported type {hint!r}")


def _float_or_str(text: str) -> float | str:
    try:
        return float(text)
    except ValueError:
        return text


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _plain(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    return v


def to_yaml(cfg: Any) -> str:
    return yaml.safe_dump(_plain(to_dict(cfg)), sort_keys=False)


def _field_default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else dataclasses.MISSING


def _changed(obj: Any) -> dict[str, Any]:
    """The members of dataclass ``obj`` that differ from their defaults (nested groups likewise)."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            if nested := _changed(value):
                out[f.name] = nested
        elif value != _field_default(f):
            out[f.name] = _plain(value)
    return out


def help_default(value: Any) -> list[str]:
    """A default as --help prints it: one line as Python writes it, or for a list of groups one item a line, in
    the YAML that sets it and with only the members that differ from their defaults (from_dict fills in the rest)."""
    if isinstance(value, (list, tuple)) and value and all(dataclasses.is_dataclass(v) for v in value):
        flow = [yaml.safe_dump(_changed(v), default_flow_style=True, sort_keys=False, width=1 << 16) for v in value]
        return ["- " + text.strip() for text in flow]
    return [repr(value)]


def describe(cls: type) -> list[tuple[str, str, Any, str]]:
    """(dotted name, type, default, help) for every leaf option of ``cls``, for --help."""
    rows = []
    for spec in field_specs(cls):
        type_name = getattr(spec.hint, "__name__", None) or str(spec.hint).replace("typing.", "")
        # the field's own default, not cls(): a config whose defaults alone do not validate (export needs a
        # policy or a world model) must still print its help
        help = f"{spec.help} (range {spec.range_text})" if spec.range_text else spec.help
        rows.append((spec.name, type_name, spec.default, help))
    return rows
