"""The colcon path: `colcon build` against the wheel-installed ROS underlay, messages importing from
the install space and every executable of executables.txt where `ros2 run` looks for it."""

import importlib.util
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

# The messages built against the ROS wheels: part of the ROS subset that runs on every distribution.
pytestmark = pytest.mark.ros
REPO = Path(__file__).resolve().parents[1]


def executables() -> list[str]:
    lines = (REPO / "executables.txt").read_text().splitlines()
    return [line.split("=")[0].strip() for line in lines if line.strip() and not line.startswith("#")]


@pytest.fixture(scope="module")
def install_space(tmp_path_factory):
    if shutil.which("colcon") is None:
        pytest.skip("colcon is not installed (make venv installs it)")
    base = tmp_path_factory.mktemp("colcon")
    result = subprocess.run(
        [
            "colcon",
            "build",
            "--base-paths",
            str(REPO),
            "--build-base",
            str(base / "build"),
            "--install-base",
            str(base / "install"),
            "--cmake-args",
            "-DBUILD_TESTING=OFF",
        ],
        cwd=base,
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, COLCON_LOG_PATH=str(base / "log")),
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Finished <<< roboscape_r_ros" in result.stdout + result.stderr
    return base / "install"


def run_sourced(install: Path, command: str) -> subprocess.CompletedProcess:
    """Run a shell command after sourcing the install space, from a folder outside the checkout."""
    script = f"source {install}/setup.bash && {command}"
    return subprocess.run(["bash", "-c", script], cwd=install.parent, capture_output=True, text=True, timeout=120)


def test_every_executable_lands_where_ros2_run_looks(install_space):
    lib = install_space / "roboscape_r_ros" / "lib" / "roboscape_r_ros"
    for name in executables():
        path = lib / name
        assert path.is_file() and os.access(path, os.X_OK), f"{name} missing from {lib}"
    assert (install_space / "roboscape_r_ros" / "share" / "roboscape_r_ros" / "package.xml").is_file()


def test_messages_and_code_import_from_the_install_space(install_space):
    result = run_sourced(
        install_space,
        "python -c 'import roboscape_r_ros.msg as m, roboscape_r_ros.cli as c; "
        "print(m.__file__); print(c.__file__); print(m.Action().mode)'",
    )
    assert result.returncode == 0, result.stderr
    msg_file, cli_file, mode = result.stdout.split()
    assert msg_file.startswith(str(install_space)) and cli_file.startswith(str(install_space)), result.stdout
    assert mode == "0"


def test_installed_cli_runs(install_space):
    cli = install_space / "roboscape_r_ros" / "lib" / "roboscape_r_ros" / "roboscape-r"
    result = run_sourced(install_space, f"{cli} --help && roboscape-r collect --help")
    assert result.returncode == 0, result.stderr
    assert "collect" in result.stdout and "env.resolution" in result.stdout


# -- `ros2 launch` of the installed package (needs the real launch sources, see the README's Tests) --
def ros2_launch(install: Path, ros, arguments: str) -> subprocess.Popen:
    """`ros2 launch roboscape_r_ros <arguments>` from the install space, in its own process group
    (so that a SIGINT to the group reaches the launch and every node it started)."""
    if shutil.which("ros2") is None or importlib.util.find_spec("ros2launch") is None:
        pytest.skip("ros2 launch is not installed (not on PyPI; `make launch ROS2_LAUNCH_SRC=<its sources>`)")
    script = f"source {install}/setup.bash && exec ros2 launch roboscape_r_ros {arguments}"
    proc = subprocess.Popen(
        ["bash", "-c", script],
        cwd=install.parent,
        env=ros.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    ros.processes.append(proc)
    return proc


def stop_group(proc: subprocess.Popen) -> str:
    """SIGINT to the launch's process group, as a terminal's Ctrl-C sends it: the launch and every node get it,
    and the launch then signals each node again. Every node must finish cleanly (exit 0)."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        out, _ = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        raise AssertionError(f"ros2 launch did not stop within 60 s of SIGINT:\n{out[-3000:]}") from None
    started = re.findall(r"\[INFO\] \[([\w-]+)\]: process started", out)
    clean = re.findall(r"\[INFO\] \[([\w-]+)\]: process has finished cleanly", out)
    assert started and sorted(clean) == sorted(started) and "process has died" not in out, out[-3000:]
    return out


def count(ros, msg_type, topic: str) -> list:
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    received: list = []
    ros.node.create_subscription(
        msg_type, topic, received.append, QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    )
    return received


def test_ros2_launch_deploy_in_sim_moves_the_arm(install_space, ros):
    from roboscape_r_ros.msg import Action

    actions = count(ros, Action, "/roboscape/action")
    proc = ros2_launch(install_space, ros, "deploy.launch.py target:=sim backend:=expert")
    moved = ros.spin_until(lambda: len(actions) >= 20 or proc.poll() is not None, 90)
    out = stop_group(proc)
    assert moved and len(actions) >= 20, out[-3000:]
    assert {a.source for a in actions} == {"expert"} and all(a.names == ["dx", "dy", "dz", "gripper"] for a in actions)
    assert "Traceback" not in out, out[-3000:]


def test_ros2_launch_train_dreams_rewards_and_acts(install_space, ros, tmp_path):
    from helpers.wm_synthetic import tiny_run
    from roboscape_r_ros.msg import Action, Reward

    actions, rewards = count(ros, Action, "/roboscape/action"), count(ros, Reward, "/roboscape/reward")
    run = tiny_run(tmp_path)
    proc = ros2_launch(install_space, ros, f"train.launch.py world_model:={run}")
    done = ros.spin_until(lambda: (len(actions) >= 5 and len(rewards) >= 5) or proc.poll() is not None, 120)
    out = stop_group(proc)
    assert done and len(actions) >= 5 and len(rewards) >= 5, out[-3000:]
    assert all(r.perceptual_backend for r in rewards) and "Traceback" not in out, out[-3000:]


@pytest.mark.parametrize(
    "arguments, nodes",
    [
        ("camera_ingest.launch.py", {"camera_ingest"}),
        ("deploy.launch.py target:=real", {"camera_ingest", "policy_controller"}),
    ],
)
def test_every_node_of_the_other_launches_finishes_cleanly_on_ctrl_c(install_space, ros, arguments, nodes):
    """The graphs the two tests above do not stop, once every node is up (ros2 launch answers SIGTERM by leaving
    its nodes running, so SIGTERM is tested on the nodes themselves: test_launch_files.py)."""
    proc = ros2_launch(install_space, ros, arguments)
    up = ros.spin_until(lambda: nodes <= set(ros.node.get_node_names()) or proc.poll() is not None, 90)
    out = stop_group(proc)
    assert up, out[-3000:]
