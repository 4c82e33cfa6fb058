"""The launch files, `roboscape-r launch` and the parameter files against the one graph spec.

`launch`/`launch_ros` are not on PyPI (ROS 2 ships them in its distribution), so the launch files run against a
recording stand-in of the launch API that lives only in this test (put into sys.modules); a small
evaluator then resolves what `ros2 launch` would start for given arguments, and ``spec_problems``
compares that with roboscape_r_ros/launching/graph.py. The checker itself is tested against
tampered launches, so a launch file that drops a node, a parameter file or a remapping fails.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import signal
import subprocess
import sys
import time
import types
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from roboscape_r_ros.commands.launch import LaunchConfig, plan
from roboscape_r_ros.launching import graph

REPO = Path(__file__).resolve().parents[1]
SHARE = "/opt/test-share/roboscape_r_ros"


# -- a recording stand-in of the launch API ------------------------------------------------------
class Recorded:
    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs


class LaunchDescription(Recorded):
    pass


class DeclareLaunchArgument(Recorded):
    pass


class SetEnvironmentVariable(Recorded):
    pass


class LaunchConfiguration(Recorded):
    pass


class PythonExpression(Recorded):
    pass


class PathJoinSubstitution(Recorded):
    pass


class EnvironmentVariable(Recorded):
    pass


class IfCondition(Recorded):
    pass


class Node(Recorded):
    pass


class Shutdown(Recorded):
    pass


STAND_IN = {
    "launch": {"LaunchDescription": LaunchDescription},
    "launch.actions": {
        "DeclareLaunchArgument": DeclareLaunchArgument,
        "SetEnvironmentVariable": SetEnvironmentVariable,
        "Shutdown": Shutdown,
    },
    "launch.substitutions": {
        "LaunchConfiguration": LaunchConfiguration,
        "PythonExpression": PythonExpression,
        "PathJoinSubstitution": PathJoinSubstitution,
        "EnvironmentVariable": EnvironmentVariable,
    },
    "launch.conditions": {"IfCondition": IfCondition},
    "launch_ros": {},
    "launch_ros.actions": {"Node": Node},
    "ament_index_python": {},
    "ament_index_python.packages": {
        "get_package_share_directory": lambda package: SHARE if package == graph.PACKAGE else 1 / 0
    },
}


@pytest.fixture
def stand_in(monkeypatch):
    for name, attrs in STAND_IN.items():
        module = types.ModuleType(name)
        module.__path__ = []  # a package, so that submodules import
        for key, value in attrs.items():
            setattr(module, key, value)
        monkeypatch.setitem(sys.modules, name, module)


def load_launch_file(name: str):
    spec = importlib.util.spec_from_file_location(name.replace(".", "_"), REPO / "launch" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate_launch_description()


# -- what ros2 launch would do with it -------------------------------------------------------------
@dataclass
class Started:
    package: str
    executable: str
    name: str
    namespace: str
    params_files: list[str]
    params: dict
    remappings: dict[str, str]
    output: str
    on_exit: str  # "respawn", "shutdown" (the launch ends) or "nothing" (the rest keeps running)


@dataclass
class Launch:
    arguments: dict[str, str]
    env: dict[str, str]
    nodes: list[Started] = field(default_factory=list)


def evaluate(value, args: dict, env: dict):
    if isinstance(value, (list, tuple)):
        return "".join(str(evaluate(v, args, env)) for v in value)
    if isinstance(value, LaunchConfiguration):
        return args[value.args[0]]
    if isinstance(value, EnvironmentVariable):
        return env.get(value.args[0], value.kwargs.get("default_value", ""))
    if isinstance(value, PythonExpression):
        return str(eval(evaluate(value.args[0], args, env)))  # test-only evaluator of our own expressions
    if isinstance(value, PathJoinSubstitution):
        return os.path.join(*(evaluate(v, args, env) for v in value.args[0]))
    return value


def run(description: LaunchDescription, overrides: dict[str, str], env: dict[str, str] | None = None) -> Launch:
    env = dict(env or {})
    args: dict[str, str] = {}
    declared = [a for a in description.args[0] if isinstance(a, DeclareLaunchArgument)]
    names = [a.args[0] for a in declared]
    unknown = set(overrides) - set(names)
    assert not unknown, f"launch arguments not declared: {unknown}"
    for a in declared:
        name = a.args[0]
        assert a.kwargs.get("description"), f"launch argument {name} has no description"
        args[name] = overrides[name] if name in overrides else evaluate(a.kwargs["default_value"], args, env)
        if "choices" in a.kwargs:
            assert args[name] in a.kwargs["choices"], (name, args[name])
    launch = Launch(args, env)
    for action in description.args[0]:
        if isinstance(action, SetEnvironmentVariable):
            env[action.args[0]] = evaluate(action.args[1], args, env)
        elif isinstance(action, Node):
            kw = action.kwargs
            condition = kw.get("condition")
            if condition is not None and evaluate(condition.args[0], args, env) != "True":
                continue
            files, params = [], {}
            for entry in kw.get("parameters", []):
                if isinstance(entry, dict):
                    params.update({k: evaluate(v, args, env) for k, v in entry.items()})
                else:
                    files.append(evaluate(entry, args, env))
            remaps = {evaluate(k, args, env): evaluate(v, args, env) for k, v in kw.get("remappings", [])}
            launch.nodes.append(
                Started(
                    kw["package"],
                    kw["executable"],
                    kw.get("name"),
                    evaluate(kw.get("namespace", ""), args, env),
                    files,
                    params,
                    remaps,
                    kw.get("output", ""),
                    "respawn"
                    if kw.get("respawn") is True
                    else "shutdown"
                    if any(isinstance(a, Shutdown) for a in kw.get("on_exit", []))
                    else "nothing",
                )
            )
    return launch


def spec_problems(launch: Launch, mode: str) -> list[str]:
    """Everything in which the started nodes differ from graph.py for this mode and these arguments."""
    a = launch.arguments
    problems = []
    expected = {n.name: n for n in graph.nodes_for(mode)}
    started = {n.name: n for n in launch.nodes}
    problems += [f"missing node {name}" for name in expected.keys() - started.keys()]
    problems += [f"node {name} is not in the spec for {mode}" for name in started.keys() - expected.keys()]
    if len(started) != len(launch.nodes):
        problems.append("a node is started twice")
    for name in expected.keys() & started.keys():
        spec, node = expected[name], started[name]
        if (node.package, node.executable) != (graph.PACKAGE, spec.executable):
            problems.append(f"{name}: runs {node.package}/{node.executable}")
        if node.namespace != a["namespace"]:
            problems.append(f"{name}: namespace {node.namespace}")
        if os.path.join(a["config_dir"], spec.params_file) not in node.params_files:
            problems.append(f"{name}: parameter file {spec.params_file} missing ({node.params_files})")
        want = {k: str(v) for k, v in graph.inline_parameters(spec, mode).items()}
        want.update({arg.parameter: a[arg.name] for arg in spec.parameter_arguments()})
        got = {k: str(v) for k, v in node.params.items()}
        if got != want:
            problems.append(f"{name}: parameters {got} instead of {want}")
        for topic, arg in spec.remappings():
            if node.remappings.get(topic) != a[arg]:
                problems.append(f"{name}: remapping {topic} -> {a[arg]} missing ({node.remappings})")
        if node.on_exit != spec.on_exit:
            problems.append(f"{name}: on exit {node.on_exit} instead of {spec.on_exit}")
        extra = set(node.remappings) - {topic for topic, _ in spec.remappings()}
        problems += [f"{name}: remapping of {topic} is not in the spec" for topic in extra]
    if launch.env.get("FASTDDS_BUILTIN_TRANSPORTS") != launch.arguments["fastdds_transports"]:
        problems.append("FASTDDS_BUILTIN_TRANSPORTS is not set")
    return problems


CUSTOM = {  # every topic argument away from its default, so that an ignored argument shows
    "namespace": "lab",
    "config_dir": "/etc/roboscape",
    "backend": "expert",
    "task": "push-v3",
    **{arg.name: f"/remapped/{arg.topic}" for arg in graph.TOPIC_ARGUMENTS},
}
CASES = [
    ("train.launch.py", {}, "imagination"),
    ("deploy.launch.py", {}, "sim"),
    ("deploy.launch.py", {"target": "real"}, "real"),
]


@pytest.mark.parametrize("arguments", [{}, CUSTOM], ids=["defaults", "custom"])
@pytest.mark.parametrize("launch_file, target, mode", CASES, ids=[c[2] for c in CASES])
def test_launch_files_start_exactly_the_spec(stand_in, launch_file, target, mode, arguments):
    launch = run(load_launch_file(launch_file), {**target, **arguments})
    assert spec_problems(launch, mode) == []
    assert launch.env["FASTDDS_BUILTIN_TRANSPORTS"] == graph.LARGE_DATA
    assert all(n.output == "screen" for n in launch.nodes)
    if not arguments:
        assert launch.arguments["config_dir"] == os.path.join(SHARE, "config")
    started = sorted(n.name for n in launch.nodes)
    assert (
        started
        == {
            "imagination": ["dreamer", "policy_controller", "reward_publisher"],
            "sim": ["camera_ingest", "policy_controller", "sim_bridge"],
            "real": ["camera_ingest", "policy_controller"],
        }[mode]
    )


def test_large_data_is_the_default_but_an_explicit_transport_choice_is_kept(stand_in):
    launch = run(load_launch_file("deploy.launch.py"), {}, env={"FASTDDS_BUILTIN_TRANSPORTS": "UDPv4"})
    assert launch.env["FASTDDS_BUILTIN_TRANSPORTS"] == "UDPv4" and spec_problems(launch, "sim") == []


def test_the_checker_fails_a_launch_that_drops_a_node_a_parameter_file_or_a_remapping(stand_in):
    def tampered(change):
        launch = run(load_launch_file("deploy.launch.py"), CUSTOM)
        change(launch)
        return spec_problems(launch, "sim")

    assert tampered(lambda launch: launch.nodes.pop(0)) == ["missing node sim_bridge"]
    assert any(
        "parameter file policy_controller.yaml missing" in p
        for p in tampered(lambda launch: launch.nodes[2].params_files.clear())
    )
    assert any(
        "remapping image_raw -> /remapped/image_raw missing" in p
        for p in tampered(lambda launch: launch.nodes[1].remappings.pop("image_raw"))
    )
    assert any(
        "remapping action -> /remapped/action missing" in p
        for p in tampered(lambda launch: launch.nodes[0].remappings.update(action="action"))
    )
    assert any("parameters" in p for p in tampered(lambda launch: launch.nodes[2].params.update(use_sim_time=False)))
    assert any("not set" in p for p in tampered(lambda launch: launch.env.pop("FASTDDS_BUILTIN_TRANSPORTS")))
    assert tampered(lambda launch: setattr(launch.nodes[0], "on_exit", "nothing")) == [
        "sim_bridge: on exit nothing instead of shutdown"
    ]


def test_the_world_model_nodes_run_in_imagination_on_the_world_model_argument():
    assert {n.name for n in graph.nodes_for("imagination")} == {"dreamer", "reward_publisher", "policy_controller"}
    dreamer, reward = graph.node("dreamer"), graph.node("reward_publisher")
    assert ("action", "command") in dreamer.remappings() and graph.inline_parameters(dreamer, "imagination") == {
        "use_sim_time": False,
        "mode": "imagine",
    }
    assert graph.inline_parameters(reward, "imagination") == {
        "use_sim_time": False,
        "done_source": "topic",
    }  # the dreamer's done
    assert {n.name for n in graph.NODES if any(a.name == "world_model" for a in n.parameter_arguments())} == {
        "dreamer",
        "reward_publisher",
    }


# -- executables, parameter files, the runner --------------------------------------------------------
def executables() -> dict[str, str]:
    lines = (REPO / "executables.txt").read_text().splitlines()
    return dict(
        tuple(part.strip() for part in line.split("=", 1))
        for line in lines
        if line.strip() and not line.startswith("#")
    )


def test_every_node_has_its_executable_and_parameter_file():
    listed = executables()
    for spec in graph.NODES:
        assert listed.get(spec.executable) == spec.entry_point, spec.name
        data = yaml.safe_load((REPO / "config" / spec.params_file).read_text())
        assert list(data) == [f"/**/{spec.name}"] and "ros__parameters" in data[f"/**/{spec.name}"], spec.name
    assert graph.config_dir() == REPO / "config"


def test_parameter_files_match_the_declared_parameters_and_every_parameter_is_described(ros, tmp_path):
    """Each node, built in this process from its YAML: the YAML sets exactly what the node declares
    (a typo in a YAML would otherwise be ignored silently), and every parameter has a description."""
    import importlib

    import rclpy

    from helpers.wm_synthetic import tiny_run

    world_model = ["-p", f"world_model:={tiny_run(tmp_path)}"]  # the YAML leaves it empty (launch argument)
    services: dict[str, set[str]] = {}
    for spec in graph.NODES:
        path = REPO / "config" / spec.params_file
        keys = set(yaml.safe_load(path.read_text())[f"/**/{spec.name}"]["ros__parameters"])
        module = spec.module
        classes = {
            "sim_bridge": "SimBridge",
            "camera_ingest": "CameraIngest",
            "policy_controller": "PolicyController",
            "dreamer": "Dreamer",
            "reward_publisher": "RewardPublisher",
        }
        extra = world_model if spec.name in ("dreamer", "reward_publisher") else []
        rclpy.init(args=["--ros-args", "--params-file", str(path), *extra], domain_id=ros.domain_id)
        try:
            node = getattr(importlib.import_module(module), classes[spec.name])()
            declared = set(node._parameters) - {"use_sim_time", "start_type_description_service"}
            assert keys == declared, (spec.name, keys ^ declared)
            for descriptor in node.describe_parameters(sorted(declared)):
                assert descriptor.description, (spec.name, descriptor.name)
            services[spec.name] = {service.srv_name for service in node.services}
            node.destroy_node()
        finally:
            rclpy.shutdown()
    # One namespace holds every node: no two may offer the same service (the dreamer's reset was sim_bridge's).
    for a, b in itertools.combinations(services, 2):
        assert not services[a] & services[b], (a, b, services[a] & services[b])


def argv_without_remaps_and_clock(argv: list[str]) -> list[str]:
    out, i = [], 0
    while i < len(argv):
        if argv[i] == "-r" and not argv[i + 1].startswith("__"):
            i += 2
            continue
        if argv[i] == "-p" and argv[i + 1].startswith("use_sim_time:="):
            i += 2
            continue
        out.append(argv[i])
        i += 1
    return out


def test_the_policy_controller_process_is_the_same_in_every_mode_but_for_remappings():
    args = {"camera": "/camera/color/image_raw", "twist_command": "/servo/delta_twist_cmds"}
    runs = {mode: {p.name: p.argv for p in plan(LaunchConfig(mode=mode, arg=args))} for mode in graph.MODES}
    controller = {mode: argv_without_remaps_and_clock(runs[mode]["policy_controller"]) for mode in graph.MODES}
    assert controller["imagination"] == controller["sim"] == controller["real"]
    assert (
        "twist_command" not in str(controller)
        and "cmd_twist:=/servo/delta_twist_cmds" in runs["real"]["policy_controller"]
    )
    # The camera argument lands on producer and consumer alike.
    assert (
        "image_raw:=/camera/color/image_raw" in runs["sim"]["sim_bridge"]
        and "image_raw:=/camera/color/image_raw" in runs["sim"]["camera_ingest"]
    )
    assert (
        "use_sim_time:=true" in runs["sim"]["policy_controller"]
        and "use_sim_time:=false" in runs["real"]["policy_controller"]
    )
    assert "use_sim_time:=false" in runs["sim"]["sim_bridge"]  # the clock source
    # dotted parameter names given as param.NODE.group.name=... reach the node as group.name
    recording = LaunchConfig(mode="sim", param={"camera_ingest": {"record": {"output": "out", "poses": []}}})
    ingest = next(p.argv for p in plan(recording) if p.name == "camera_ingest")
    assert 'record.output:="out"' in ingest and "record.poses:=[]" in ingest


def test_the_runner_refuses_unknown_arguments_nodes_and_modes():
    from roboscape_r_ros.cli import main

    assert main(["launch", "arg.camra=/x"]) == 2
    assert main(["launch", "param.dreamr.seed=1"]) == 2
    assert main(["launch", "mode=gazebo"]) == 2


# -- RViz ----------------------------------------------------------------------------------------------
def test_rviz_config_shows_real_dreamed_and_goal_frames_and_the_reward():
    config = yaml.safe_load((REPO / "config" / "roboscape.rviz").read_text())
    displays = config["Visualization Manager"]["Displays"]
    topics = {d["Name"]: (d["Class"], d["Topic"]["Value"]) for d in displays if "Topic" in d}
    assert topics["Real (observation)"] == ("rviz_default_plugins/Image", "/roboscape/observation")
    assert topics["Dreamed"] == ("rviz_default_plugins/Image", "/roboscape/dream/image")
    assert topics["Goal"] == ("rviz_default_plugins/Image", "/roboscape/goal_image")
    assert topics["Reward"][1] == "/roboscape/reward/marker"
    known = {t for n in graph.NODES for t in n.topics}
    for _, topic in topics.values():
        relative = topic.removeprefix("/" + graph.DEFAULT_NAMESPACE + "/")
        assert relative in known or relative.split("/")[0] in known, topic


@pytest.mark.skipif(
    importlib.util.find_spec("launch_ros") is None,
    reason="launch_ros is not installed (not on PyPI; `make launch ROS2_LAUNCH_SRC=<its sources>` installs it)",
)
def test_launch_files_with_the_real_launch_api():
    """Under the real launch/launch_ros (installed by `make launch` when their sources sit beside the
    repository): the files build, and declare every topic argument of the graph with a description."""
    from launch import LaunchDescription as Real  # noqa: F811

    for name in ("train.launch.py", "deploy.launch.py"):
        description = load_launch_file(name)
        assert isinstance(description, Real)
        arguments = {a.name: a for a in description.get_launch_arguments()}
        assert {t.name for t in graph.TOPIC_ARGUMENTS} <= set(arguments), name
        assert all(a.description for a in arguments.values()), name


@pytest.mark.parametrize("mode, sig", [("imagination", signal.SIGTERM), ("sim", signal.SIGINT)])
@pytest.mark.parametrize("when", ["importing", "running"])
def test_every_node_exits_0_on_stop_signals_while_importing_or_running(ros, tmp_path, mode, sig, when):
    """Each node process of the graph as its executable runs it, signalled during its imports or once it is
    up, and again every 0.2 s until it exits (ros2 launch signals each node after the terminal did): a
    signal in the imports ended it with a traceback, one in its exit (torch's teardown) with -signal."""
    from helpers.wm_synthetic import tiny_run

    processes = plan(LaunchConfig(mode=mode, arg={"world_model": str(tiny_run(tmp_path))}))
    children = {
        p.name: subprocess.Popen(p.argv, env=ros.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for p in processes
    }
    ros.processes.extend(children.values())
    if when == "running":
        names = set(children)
        assert ros.spin_until(lambda: names <= set(ros.node.get_node_names()), 120), ros.node.get_node_names()
    else:
        time.sleep(1.5)  # past the interpreter start, inside the imports (torch, MuJoCo: seconds)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(c.poll() is None for c in children.values()):
        for child in children.values():
            if child.poll() is None:
                child.send_signal(sig)
        time.sleep(0.2)
    outputs = {name: child.communicate()[0] for name, child in children.items()}
    for name, child in children.items():
        assert child.returncode == 0 and "Traceback" not in outputs[name], (
            name,
            child.returncode,
            outputs[name][-2000:],
        )
