"""The colcon path: `colcon build` against the wheel-installed ROS underlay, messages importing from
the install space and every executable of executables.txt where `ros2 run` looks for it."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

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
