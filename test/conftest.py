import os

import pytest

os.environ.setdefault("MUJOCO_GL", "egl")


def pytest_collection_modifyitems(items):
    """Every test that uses the `ros` fixture is marked `ros`: `pytest -m ros` is the subset that
    `make test-jazzy` runs against a second ROS 2 distribution."""
    for item in items:
        if "ros" in item.fixturenames:
            item.add_marker(pytest.mark.ros)


@pytest.fixture
def ros():
    """A private ROS 2 domain with a harness node; skipped where rclpy is not installed."""
    pytest.importorskip("rclpy")
    from helpers.ros_harness import RosHarness

    harness = RosHarness()
    yield harness
    harness.close()


@pytest.fixture(scope="module")
def synthetic_dataset(tmp_path_factory):
    """wm_synthetic's dataset (3 episodes of each task and kind), written once for the test module."""
    from helpers.wm_synthetic import write_dataset

    return write_dataset(tmp_path_factory.mktemp("data") / "synthetic")


@pytest.fixture(autouse=True)
def no_dead_dds_ports(request):
    """Before each ROS test, the Fast DDS shared memory of dead processes is removed (helpers/dds_shm.py)."""
    if request.node.get_closest_marker("ros"):
        from helpers.dds_shm import remove_dead_dds_files

        remove_dead_dds_files()


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """One intra-op thread in tests: with two, torch's workers spin against the ROS and render
    processes that tests start on a 2-core machine (a world-model test went from 47 s to 507 s)."""
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
