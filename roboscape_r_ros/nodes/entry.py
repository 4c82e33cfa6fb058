"""The node executables (executables.txt) and how a node process stops on Ctrl-C or SIGTERM.

Both signals only set ``STOP`` (spin in node_tools reads it), from the process's first line: a node's
imports (MuJoCo, torch) take seconds, and a stop during them ends the process with 0 once they are
done instead of a KeyboardInterrupt traceback. Once a node is stopping, later signals are ignored:
Python's finalization puts the handlers it set back to the default, so a second SIGINT during a slow
exit (ros2 launch sends its own after the terminal's) killed the dreamer with exit code -2.

This module imports nothing heavy: it runs before the node's own imports.
"""

from __future__ import annotations

import importlib
import signal
import threading

STOP = threading.Event()
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def catch_stop_signals() -> threading.Event:
    for sig in _SIGNALS:
        signal.signal(sig, lambda *_: STOP.set())
    return STOP


def ignore_stop_signals() -> None:
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


def _run(node: str, args: list[str] | None) -> int:
    catch_stop_signals()
    main = importlib.import_module(f"roboscape_r_ros.nodes.{node}").main
    if STOP.is_set():
        ignore_stop_signals()
        return 0
    return main(args)


def camera_ingest(args: list[str] | None = None) -> int:
    return _run("camera_ingest", args)


def sim_bridge(args: list[str] | None = None) -> int:
    return _run("sim_bridge", args)


def policy_controller(args: list[str] | None = None) -> int:
    return _run("policy_controller", args)


def dreamer(args: list[str] | None = None) -> int:
    return _run("dreamer", args)


def reward_publisher(args: list[str] | None = None) -> int:
    return _run("reward_publisher", args)
