"""The core (everything but nodes/) imports and works where rclpy is missing, as on GPU servers."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

BLOCK_ROS = """
import importlib.abc, sys
ROS = ("rclpy", "rosidl_runtime_py", "sensor_msgs", "std_msgs", "geometry_msgs", "builtin_interfaces",
       "roboscape_r_ros.msg")
class BlockRos(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.startswith(ROS):
            raise ModuleNotFoundError(f"blocked for this test: {name}")
sys.meta_path.insert(0, BlockRos())
"""

SCRIPT = (
    BLOCK_ROS
    + """
import pkgutil, importlib
import roboscape_r_ros
imported = []
for info in pkgutil.walk_packages(roboscape_r_ros.__path__, "roboscape_r_ros."):
    if info.name.startswith(("roboscape_r_ros.nodes", "roboscape_r_ros.msg")):
        continue
    importlib.import_module(info.name)
    imported.append(info.name)
try:
    import rclpy
except ModuleNotFoundError:
    pass
else:
    raise SystemExit("the blocker did not block rclpy")
from roboscape_r_ros.cli import main
assert main(["collect", "--print-config", "env.resolution=32"]) == 0
print("IMPORTED", len(imported))
"""
)


@pytest.mark.slow
def test_core_imports_and_runs_without_rclpy():
    result = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr + result.stdout
    count = int(result.stdout.split("IMPORTED")[-1])
    assert count >= 5, result.stdout
    assert "resolution: 32" in result.stdout
