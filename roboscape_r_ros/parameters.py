"""Node parameters as typed dataclasses, in plain Python (no rclpy).

Each node's parameters are one frozen dataclass beside the runtime class it configures; every field
says its default, description and (optionally) range once, with ``parameter``. A ``Literal`` type
gives the allowed choices; a nested dataclass gives dotted names (``learning.enabled``). The node
declares exactly these to ROS (``nodes.node_tools.declare_parameters``) and config/<node>.yaml is
tested against them, so a default or a description lives in one place.

    @dataclass(frozen=True)
    class SimBridgeParams:
        task: str = parameter("reach-v3", "Meta-World v3 task")
        max_steps: int = parameter(300, "control steps before an episode is truncated", low=1, high=1_000_000)
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from roboscape_r_ros.errors import RoboscapeError

T = TypeVar("T")


class ParameterError(RoboscapeError, ValueError):
    """A parameter value outside its choices; the message names the parameter."""


def parameter(default: Any, description: str, *, low: float | None = None, high: float | None = None) -> Any:
    """A dataclass field declared as a ROS parameter; lists are written as tuples (frozen dataclasses)."""
    metadata = {"help": description, "low": low, "high": high}
    return dataclasses.field(default=default, metadata=metadata)


def threads_parameter() -> Any:
    """The CPU threads of a node that runs a network: one definition for every such node."""
    return parameter(
        1,
        "torch and ONNX Runtime CPU threads of this node (1: the nodes of a graph share the cores; more threads "
        "per node spin against each other: 5x fewer imagined steps a second on 2 cores); 0: the libraries' default",
        low=0,
        high=1024,
    )


def inherited(cls: type, name: str, *, low: float | None = None, high: float | None = None) -> Any:
    """A parameter whose default and description are those of field ``name`` of config dataclass ``cls``."""
    source = {f.name: f for f in dataclasses.fields(cls)}[name]
    return parameter(source.default, source.metadata["help"], low=low, high=high)


@dataclass(frozen=True)
class ParameterSpec:
    name: str  # dotted ROS name
    hint: Any  # the field's type (str, int, float, bool, tuple[...], Literal[...])
    default: Any
    description: str
    low: float | None
    high: float | None

    @property
    def choices(self) -> tuple[Any, ...]:
        return _choices(self.hint)

    @property
    def item_type(self) -> type | None:
        """The element type of a list parameter (tuple[str, ...] -> str), else None."""
        return typing.get_args(self.hint)[0] if typing.get_origin(self.hint) is tuple else None


def _choices(hint: Any) -> tuple[Any, ...]:
    """The values a ``Literal`` type allows; () for any other type."""
    return typing.get_args(hint) if typing.get_origin(hint) is typing.Literal else ()


def parameter_specs(cls: type, prefix: str = "") -> list[ParameterSpec]:
    """Every leaf parameter of ``cls`` in declaration order, nested dataclasses flattened to dotted names."""
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            specs.extend(parameter_specs(hint, f"{prefix}{f.name}."))
        else:
            meta = f.metadata
            specs.append(ParameterSpec(prefix + f.name, hint, f.default, meta["help"], meta["low"], meta["high"]))
    return specs


def build(cls: type[T], values: dict[str, Any], prefix: str = "") -> T:
    """``cls`` from the declared values by dotted name (lists become tuples); choices are checked."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        hint, name = hints[f.name], prefix + f.name
        if dataclasses.is_dataclass(hint):
            kwargs[f.name] = build(hint, values, f"{name}.")
            continue
        value = values[name]
        if isinstance(value, list):
            value = tuple(value)
        choices = _choices(hint)
        if choices and value not in choices:
            raise ParameterError(f"{name} '{value}' is not one of {', '.join(map(str, choices))}")
        kwargs[f.name] = value
    return cls(**kwargs)
