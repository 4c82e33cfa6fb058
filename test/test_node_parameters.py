"""Every node parameter is written once, in a dataclass beside the runtime class it configures: its
default, description and range. config/<node>.yaml lists exactly those parameters with those
defaults (the nodes' own declaration of them is checked under ROS in test_launch_files)."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from typing import Literal

import pytest
import yaml

from helpers import REPO
from roboscape_r_ros.cli import COMMANDS
from roboscape_r_ros.commands.train_policy import PolicyTrainConfig
from roboscape_r_ros.config import ConfigError, FieldSpec, field_specs, from_dict, load_config
from roboscape_r_ros.launching import graph, parameter_files
from roboscape_r_ros.launching.parameter_files import PARAMETERS as PARAMS
from roboscape_r_ros.parameters import build, inherited, parameter
from roboscape_r_ros.runtime.gates.controller import PolicyControllerParams
from roboscape_r_ros.runtime.sessions.dream_session import DreamerParams
from roboscape_r_ros.runtime.sessions.reward_session import RewardPublisherParams


def test_the_checked_in_parameter_files_and_page_are_the_generated_ones():
    """config/<node>.yaml and docs/parameters.md are written from the dataclasses (make parameters)."""
    assert set(parameter_files.PARAMETERS) == {spec.name for spec in graph.NODES}
    for path, text in parameter_files.generated(REPO).items():
        assert path.read_text() == text, f"{path.relative_to(REPO)} is stale: run make parameters"


def test_the_generator_finds_a_stale_file_and_writes_it(tmp_path):
    main = parameter_files.main
    assert main(["--root", str(tmp_path), "--check"]) == 1  # nothing there yet
    (tmp_path / "config").mkdir()
    (tmp_path / "docs").mkdir()
    assert main(["--root", str(tmp_path)]) == 0 and main(["--root", str(tmp_path), "--check"]) == 0
    path = tmp_path / "config" / "dreamer.yaml"
    path.write_text(path.read_text().replace("max_steps: 40", "max_steps: 41"))
    assert main(["--root", str(tmp_path), "--check"]) == 1


@pytest.mark.parametrize("node", sorted(PARAMS))
def test_each_parameter_file_sets_every_parameter_to_its_default(node):
    spec = next(s for s in graph.NODES if s.name == node)
    values = yaml.safe_load(parameter_files.parameter_file(node))[f"/**/{node}"]["ros__parameters"]
    specs = {p.name: p for p in field_specs(PARAMS[node])}
    assert list(values) == list(specs), "the YAML lists the parameters in the dataclass's order"
    for name, value in values.items():
        default = specs[name].default
        assert value == (list(default) if isinstance(default, tuple) else default), name
        assert type(value) is type(default) or isinstance(default, tuple), (name, "a YAML type ROS would refuse")
        assert specs[name].help, name
    assert spec.params_file == f"{node}.yaml"


def all_field_specs():
    classes = [*PARAMS.values(), *(command.load("config") for command in COMMANDS)]
    return [(cls.__name__, spec) for cls in classes for spec in field_specs(cls)]


def test_every_default_lies_in_its_own_range():
    specs = all_field_specs()
    assert len(specs) > 400 and sum(bool(s.range_text) for _, s in specs) > 80
    for owner, spec in specs:
        if spec.default is not dataclasses.MISSING:
            assert spec.range_error(spec.default) is None, (owner, spec.range_error(spec.default))


def test_a_range_is_checked_wherever_a_value_comes_from():
    """from_dict (presets, overrides, run folders) and build (ROS parameters) read the same bounds."""
    from roboscape_r_ros.rl.ppo import PPOConfig

    with pytest.raises(ConfigError, match=r"option ppo.clip_coef must be > 0, got 0.0"):
        load_config(PolicyTrainConfig, "policy", None, ["ppo.clip_coef=0"])
    with pytest.raises(ConfigError, match=r"option gamma must lie in \[0, 1\], got 1.5"):
        from_dict(PPOConfig, {"gamma": 1.5})
    values = {s.name: s.default for s in field_specs(DreamerParams)}
    with pytest.raises(ConfigError, match=r"option done_threshold must lie in \[0.01, 1\], got 0.0"):
        build(DreamerParams, values | {"done_threshold": 0.0})
    assert build(DreamerParams, values) == DreamerParams()


def test_reward_parameters_take_default_and_description_from_the_reward_config():
    from roboscape_r_ros.imagination.reward import RewardConfig

    specs = {p.name: p for p in field_specs(RewardPublisherParams)}
    config = {f.name: f for f in dataclasses.fields(RewardConfig)}
    for name in ("done_bonus", "done_threshold", "alignment_offset", "alignment_scale"):
        assert (specs[name].default, specs[name].help) == (config[name].default, config[name].metadata["help"])
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


def test_field_specs_flatten_nested_groups_and_carry_types_ranges_and_choices():
    specs = {p.name: p for p in field_specs(Example)}
    assert list(specs) == ["mode", "size", "names", "inner.on", "copied"]
    assert specs["mode"].choices == ("a", "b") and (specs["size"].low, specs["size"].high) == (1, 9)
    assert specs["names"].item_type is str and specs["inner.on"].help == "switch"
    assert specs["copied"].help == "switch"


def test_build_makes_lists_tuples_and_refuses_a_value_outside_the_choices():
    values = {"mode": "b", "size": 4, "names": ["x", "y"], "inner.on": True, "copied": 0}
    built = build(Example, values)
    assert built == Example(mode="b", size=4, names=("x", "y"), inner=Inner(on=True), copied=0)
    with pytest.raises(ConfigError, match="option 'mode' must be one of a, b, got 'c'"):
        build(Example, {**values, "mode": "c"})


@pytest.mark.parametrize("torch_first", [True, False])
def test_a_node_runs_its_networks_on_the_threads_parameter(torch_first):
    """Every network node calls limit_threads(threads) at start: with torch already imported (dreamer) and before
    (the expert backend imports it later, if at all). Two nodes with two spinning threads each on 2 cores made
    the imagination graph 5x slower."""
    assert {"threads"} <= {s.name for s in field_specs(DreamerParams)} & {
        s.name for s in field_specs(RewardPublisherParams)
    } & {s.name for s in field_specs(PolicyControllerParams)}
    code = (
        ("import torch; " if torch_first else "")
        + "from roboscape_r_ros.nodes.node_tools import limit_threads; limit_threads(1); import torch; "
        + "print(torch.get_num_threads())"
    )
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "1"


# -- a bad start-up parameter ends the node with one clear line ------------------------------------------------------
def bad_values(params: type) -> dict[str, str]:
    """``name:=value`` that a node with these parameters must refuse at start, one for each kind of check they have:
    the first parameter with choices set outside them, the first with a range set past its end (a range with both
    ends is ROS's to check, through the parameter's descriptor; choices are the node's own)."""
    specs = field_specs(params)
    bad = {}
    choice = next((s for s in specs if s.choices and all(isinstance(c, str) for c in s.choices)), None)
    if choice is not None:
        bad["choice"] = f"{choice.name}:=not_{choice.choices[0]}"
    ranged = next((s for s in specs if s.range_text), None)
    if ranged is not None:
        bad["range"] = f"{ranged.name}:={past_the_end(ranged)!r}"
    assert bad, f"{params.__name__} has no parameter with choices or a range"
    return bad


def past_the_end(spec: FieldSpec) -> int | float:
    """A value just outside ``spec``'s range (below it where it has a lower end), of the parameter's type."""
    if spec.low is not None:
        value = spec.low - 1
    elif spec.above is not None:
        value = spec.above
    elif spec.high is not None:
        value = spec.high + 1
    else:
        value = spec.below
    return int(value) if isinstance(spec.default, int) else float(value)


BAD = [(node.name, kind, param) for node in graph.NODES for kind, param in bad_values(PARAMS[node.name]).items()]


@pytest.mark.parametrize("node, param", [(n, param) for n, _, param in BAD], ids=[f"{n}-{kind}" for n, kind, _ in BAD])
def test_a_bad_startup_parameter_ends_the_node_with_one_clear_line(ros, node, param):
    """The node as ros2 run starts it (its module, in a process of its own on the harness's ROS_DOMAIN_ID) exits
    with 2 and one line that names the parameter: no traceback, nothing else. The reasons each node gives for
    its own checks are its tests' (startup_error)."""
    proc = ros.start(next(spec for spec in graph.NODES if spec.name == node).module, "-p", param)
    out, _ = proc.communicate(timeout=60)
    lines = [line for line in out.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in out, out
    assert len(lines) == 1 and param.split(":=")[0] in lines[0], out
