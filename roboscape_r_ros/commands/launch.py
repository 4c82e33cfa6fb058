"""`roboscape-r launch`: run the graph of one mode as real processes, where `ros2 launch` is absent.

The same spec as the launch files (graph.py): the same nodes, parameter files, inline parameters
and remappings, each node in its own process (``python -c`` on its executables.txt entry point
with ``--ros-args``). Output lines are prefixed with the node name. Ctrl-C (or SIGTERM, or
``duration_s``) sends SIGINT to every node once, waits ``stop_timeout_s``, then terminates what is
left; a node that exits by itself stops the whole graph with its exit status.

    roboscape-r launch mode=sim arg.backend=expert arg.task=reach-v3
    roboscape-r launch mode=real arg.camera=/camera/color/image_raw arg.twist_command=/servo/cmd \\
        param.policy_controller.publish_twist=true
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Literal

from roboscape_r_ros.config import ConfigError, option
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.launching import graph

_ARGS_HELP = "launch arguments as in ros2 launch (arg.NAME=VALUE): " + ", ".join(
    f"{name} (default {default})" for name, default, _ in graph.arguments()
)


@dataclass
class LaunchConfig:
    mode: Literal["imagination", "sim", "real"] = option(
        "sim", help="imagination (world model), sim (Meta-World) or real (your camera and arm)"
    )
    namespace: str = option(graph.DEFAULT_NAMESPACE, help="namespace of every node and topic")
    arg: dict[str, Any] = option({}, help=_ARGS_HELP)
    param: dict[str, Any] = option(
        {}, help="extra parameters per node, param.NODE.NAME=VALUE (after the YAML and the graph's own)"
    )
    config_dir: str = option("", help="folder of <node>.yaml parameter files (empty: the package's config/)")
    large_data: bool = option(True, help="set FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA unless the environment sets it")
    duration_s: float = option(0.0, help="stop the graph after this many seconds (0: run until Ctrl-C)", low=0.0)
    stop_timeout_s: float = option(
        10.0, help="how long nodes get to exit after SIGINT before SIGTERM/SIGKILL", above=0.0
    )

    def __post_init__(self) -> None:
        known = graph.argument_defaults()
        unknown = sorted(set(self.arg) - set(known))
        if unknown:
            raise ConfigError(f"unknown launch argument 'arg.{unknown[0]}' (known: {', '.join(known)})")
        for name, values in self.param.items():
            try:
                graph.node(name)
            except graph.GraphError as err:
                raise ConfigError(f"param.{name}: {err}") from None
            if not isinstance(values, dict):
                raise ConfigError(f"param.{name} must be set per parameter, e.g. param.{name}.seed=3")
        if not self.namespace.strip("/") or " " in self.namespace:
            raise ConfigError(f"namespace '{self.namespace}' is not a usable ROS namespace")


class LaunchError(RoboscapeError):
    """A node of the graph failed (its exit status is in the message)."""


@dataclass(frozen=True)
class Process:
    name: str
    argv: list[str]
    on_exit: str  # NodeSpec.on_exit: "respawn" it, or "shutdown" the graph


# What each node process runs: its executables.txt entry point, which handles a stop during the
# node's imports itself (nodes/entry.py).
_LAUNCHER = "import sys\nfrom {module} import {function}\nsys.exit({function}())\n"


def _ros_value(value: Any) -> str:
    """A parameter value as `-p name:=VALUE` wants it (YAML; JSON is YAML)."""
    return json.dumps(value)


def _dotted(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested overrides (param.camera_ingest.record.output=x arrives as {record: {output: x}}) -> ROS's
    dotted parameter names."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            flat |= _dotted(value, f"{prefix}{key}.")
        else:
            flat[prefix + key] = value
    return flat


def plan(cfg: LaunchConfig) -> list[Process]:
    """The processes of cfg.mode: argv of each node (pure: used by tests and by run)."""
    args = {**graph.argument_defaults(), **{k: str(v) for k, v in cfg.arg.items()}}
    config = Path(cfg.config_dir) if cfg.config_dir else graph.config_dir()
    namespace = "/" + cfg.namespace.strip("/")
    processes = []
    for spec in graph.nodes_for(cfg.mode):
        params_file = config / spec.params_file
        if not params_file.is_file():
            raise ConfigError(f"parameter file {params_file} for {spec.name} does not exist")
        module, _, function = spec.entry_point.partition(":")
        argv = [sys.executable, "-c", _LAUNCHER.format(module=module, function=function)]
        argv += [
            "--ros-args",
            "-r",
            f"__node:={spec.name}",
            "-r",
            f"__ns:={namespace}",
            "--params-file",
            str(params_file),
        ]
        parameters: dict[str, Any] = dict(graph.inline_parameters(spec, cfg.mode))
        for arg in spec.parameter_arguments():
            parameters[arg.parameter] = args[arg.name]
        parameters.update(_dotted(cfg.param.get(spec.name, {})))
        for name, value in parameters.items():
            argv += ["-p", f"{name}:={_ros_value(value)}"]
        for topic, arg_name in spec.remappings():
            if args[arg_name] != topic:
                argv += ["-r", f"{topic}:={args[arg_name]}"]
        processes.append(Process(spec.name, argv, spec.on_exit))
    return processes


def _pipe_lines(name: str, stream: IO[str], out: IO[str], lock: threading.Lock) -> None:
    for line in stream:
        with lock:
            out.write(f"[{name}] {line}" if line.endswith("\n") else f"[{name}] {line}\n")
            out.flush()


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def run_launch(cfg: LaunchConfig) -> str | None:
    processes = plan(cfg)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if cfg.large_data:
        env.setdefault("FASTDDS_BUILTIN_TRANSPORTS", graph.LARGE_DATA)
    lock = threading.Lock()
    out = sys.stdout

    def say(text: str) -> None:
        with lock:
            out.write(f"[launch] {text}\n")
            out.flush()

    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    children: list[tuple[Process, subprocess.Popen]] = []
    failed: tuple[str, int] | None = None
    codes: dict[str, int] = {}

    def start(process: Process) -> subprocess.Popen:
        # Own process group: a terminal's Ctrl-C reaches only this runner, which stops each node once.
        child = subprocess.Popen(
            process.argv,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            process_group=0,
            preexec_fn=_die_with_parent,
        )
        threading.Thread(target=_pipe_lines, args=(process.name, child.stdout, out, lock), daemon=True).start()
        say(f"started {process.name} (pid {child.pid})")
        return child

    try:
        for process in processes:
            children.append((process, start(process)))
        if env.get("ROS_AUTOMATIC_DISCOVERY_RANGE") == "LOCALHOST" and cfg.mode != "imagination":
            say(
                "note: with ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST rmw_fastrtps sets its own transports, so "
                "LARGE_DATA does not apply and camera frames over ~64 KB are mostly lost (bench/bench_latency.py); "
                "isolate with a private ROS_DOMAIN_ID instead"
            )
        say(f"mode {cfg.mode}, namespace /{cfg.namespace.strip('/')}; Ctrl-C stops every node")
        deadline = time.monotonic() + cfg.duration_s if cfg.duration_s > 0 else None
        while not stop.is_set() and failed is None:
            for i, (process, child) in enumerate(children):
                if child.poll() is None:
                    continue
                if process.on_exit == "shutdown":
                    failed = (process.name, child.returncode)
                    say(f"{process.name} exited with status {child.returncode}: stopping the graph")
                    break
                say(f"{process.name} exited with status {child.returncode}: respawning in {graph.RESPAWN_DELAY_S:g} s")
                if stop.wait(graph.RESPAWN_DELAY_S):
                    del children[i]  # it died before the stop and was reported: not an unclean stop
                    break
                children[i] = (process, start(process))
            if failed is not None:
                break
            if deadline is not None and time.monotonic() >= deadline:
                say(f"duration of {cfg.duration_s:g} s reached")
                break
            stop.wait(0.1)
        codes = _stop_all(children, cfg.stop_timeout_s, say)
    finally:
        for child in (c for _, c in children if c.poll() is None):
            child.kill()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if failed is not None:
        raise LaunchError(f"node {failed[0]} exited with status {failed[1]}")
    unclean = {name: code for name, code in codes.items() if code != 0}
    if unclean:
        raise LaunchError("nodes did not stop cleanly: " + ", ".join(f"{n} ({c})" for n, c in unclean.items()))
    return None


def _stop_all(children: list[tuple[Process, subprocess.Popen]], timeout_s: float, say) -> dict[str, int]:
    for _, child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    for process, child in children:
        try:
            child.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            say(f"{process.name} did not stop within {timeout_s:g} s: terminating")
            child.terminate()
            try:
                child.wait(timeout=3)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
    codes = {process.name: child.returncode for process, child in children}
    say("all nodes stopped")
    return codes
