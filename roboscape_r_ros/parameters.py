"""Node parameters as typed dataclasses, in plain Python (no rclpy).

Each node's parameters are one frozen dataclass beside the runtime class it configures; every field
says its default, description and (optionally) range once, with ``parameter``: the same field spec as
every config (config.option, config.field_specs). A ``Literal`` type gives the allowed choices; a
nested dataclass gives dotted names (``learning.enabled``). The node declares exactly these to ROS
(``nodes.node_tools.declare_parameters``), read-only unless said otherwise: a node reads its
parameters at start. config/<node>.yaml and docs/parameters.md are generated from them
(launching/parameter_files.py).

    @dataclass(frozen=True)
    class SimBridgeParams:
        task: str = parameter("reach-v3", "Meta-World v3 task")
        max_steps: int = parameter(300, "control steps before an episode is truncated", low=1, high=1_000_000)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, TypeVar

from roboscape_r_ros.config import from_dict, option, set_dotted

T = TypeVar("T")


# A dataclass field declared as a ROS parameter: config.option, read-only unless said otherwise (a node
# reads its parameters at start). Lists are written as tuples (frozen dataclasses); ROS declares a
# range only where both ``low`` and ``high`` are given.
parameter = functools.partial(option, read_only=True)


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
    """A parameter whose default, description and range are those of field ``name`` of config dataclass
    ``cls``; ``low`` and ``high`` narrow the range (ROS declares a range with both ends)."""
    source = {f.name: f for f in dataclasses.fields(cls)}[name]
    meta = source.metadata
    low, high = meta.get("low") if low is None else low, meta.get("high") if high is None else high
    return parameter(source.default, meta["help"], low=low, high=high, above=meta.get("above"), below=meta.get("below"))


def build(cls: type[T], values: dict[str, Any]) -> T:
    """``cls`` from the declared values by dotted name: types, choices and ranges checked (config.from_dict)."""
    nested: dict[str, Any] = {}
    for name, value in values.items():
        set_dotted(nested, name, value)
    return from_dict(cls, nested)
