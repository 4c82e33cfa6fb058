"""Every node parameter is written once, in a dataclass beside the runtime class it configures: its
default, description and range. config/<node>.yaml lists exactly those parameters with those
defaults (the nodes' own declaration of them is checked under ROS in test_launch_files)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest
import yaml

from roboscape_r_ros.launching import graph
from roboscape_r_ros.parameters import ParameterError, build, inherited, parameter, parameter_specs
from roboscape_r_ros.runtime.gates.controller import PolicyControllerParams
from roboscape_r_ros.runtime.sessions.dream_session import DreamerParams
from roboscape_r_ros.runtime.sessions.ingest import CameraIngestParams
from roboscape_r_ros.runtime.sessions.reward_session import RewardPublisherParams
from roboscape_r_ros.runtime.sessions.sim_session import SimBridgeParams

REPO = Path(__file__).resolve().parents[1]
PARAMS = {
    "sim_bridge": SimBridgeParams,
    "camera_ingest": CameraIngestParams,
    "policy_controller": PolicyControllerParams,
    "dreamer": DreamerParams,
    "reward_publisher": RewardPublisherParams,
}


@pytest.mark.parametrize("node", sorted(PARAMS))
def test_each_parameter_file_sets_every_parameter_to_its_default(node):
    spec = next(s for s in graph.NODES if s.name == node)
    values = yaml.safe_load((REPO / "config" / spec.params_file).read_text())[f"/**/{node}"]["ros__parameters"]
    specs = {p.name: p for p in parameter_specs(PARAMS[node])}
    assert list(values) == list(specs), "the YAML lists the parameters in the dataclass's order"
    for name, value in values.items():
        default = specs[name].default
        assert value == (list(default) if isinstance(default, tuple) else default), name
        assert type(value) is type(default) or isinstance(default, tuple), (name, "a YAML type ROS would refuse")
        assert specs[name].description, name


def test_reward_parameters_take_default_and_description_from_the_reward_config():
    from roboscape_r_ros.imagination.reward import RewardConfig

    specs = {p.name: p for p in parameter_specs(RewardPublisherParams)}
    config = {f.name: f for f in dataclasses.fields(RewardConfig)}
    for name in ("done_bonus", "done_threshold", "alignment_offset", "alignment_scale"):
        assert (specs[name].default, specs[name].description) == (config[name].default, config[name].metadata["help"])
    assert RewardPublisherParams().reward_config() == RewardConfig()


@dataclasses.dataclass(frozen=True)
class Inner:
    on: bool = parameter(False, "switch")


@dataclasses.dataclass(frozen=True)
class Example:
    mode: Literal["a", "b"] = parameter("a", "which")
    size: int = parameter(3, "how many", low=1, high=9)
    names: tuple[str, ...] = parameter((), "names")
    inner: Inner = Inner()
    copied: int = inherited(Inner, "on")


def test_parameter_specs_flatten_nested_groups_and_carry_types_ranges_and_choices():
    specs = {p.name: p for p in parameter_specs(Example)}
    assert list(specs) == ["mode", "size", "names", "inner.on", "copied"]
    assert specs["mode"].choices == ("a", "b") and (specs["size"].low, specs["size"].high) == (1, 9)
    assert specs["names"].item_type is str and specs["inner.on"].description == "switch"
    assert specs["copied"].description == "switch"


def test_build_makes_lists_tuples_and_refuses_a_value_outside_the_choices():
    values = {"mode": "b", "size": 4, "names": ["x", "y"], "inner.on": True, "copied": 0}
    built = build(Example, values)
    assert built == Example(mode="b", size=4, names=("x", "y"), inner=Inner(on=True), copied=0)
    with pytest.raises(ParameterError, match="mode 'c' is not one of a, b"):
        build(Example, {**values, "mode": "c"})


@pytest.mark.parametrize("torch_first", [True, False])
def test_a_node_runs_its_networks_on_the_threads_parameter(torch_first):
    """Every network node calls limit_threads(threads) at start: with torch already imported (dreamer) and before
    (the expert backend imports it later, if at all). Two nodes with two spinning threads each on 2 cores made
    the imagination graph 5x slower."""
    assert {"threads"} <= {s.name for s in parameter_specs(DreamerParams)} & {
        s.name for s in parameter_specs(RewardPublisherParams)
    } & {s.name for s in parameter_specs(PolicyControllerParams)}
    code = (
        ("import torch; " if torch_first else "")
        + "from roboscape_r_ros.nodes.node_tools import limit_threads; limit_threads(1); import torch; "
        + "print(torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"
