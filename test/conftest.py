import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


@pytest.fixture
def ros():
    """A private ROS 2 domain with a harness node; skipped where rclpy is not installed."""
    pytest.importorskip("rclpy")
    from ros_harness import RosHarness

    harness = RosHarness()
    yield harness
    harness.close()
