"""pip install path for roboscape_r_ros (no ROS install needed).

The distribution is named ``roboscape-r-ros-py``, not after the ROS package: with the same name pip
would delete the CMake-installed ``roboscape_r_ros.msg`` (measured here). Messages are built by CMake
(``make venv``); ROS users build the whole package with colcon instead (CMakeLists.txt).
"""

import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def console_scripts() -> list[str]:
    """executables.txt is the one list of executables; CMakeLists.txt reads it too."""
    lines = (HERE / "executables.txt").read_text().splitlines()
    return [re.sub(r"\s*=\s*", " = ", line.strip()) for line in lines if line.strip() and not line.startswith("#")]


def package_version() -> str:
    """package.xml's <version> is the one source of the version (ROS's release tools bump it there)."""
    return re.search(r"<version>([^<]+)</version>", (HERE / "package.xml").read_text()).group(1).strip()


def requirements(name: str) -> list[str]:
    lines = (HERE / "requirements" / name).read_text().splitlines()
    return [line.split("#")[0].strip() for line in lines if line.split("#")[0].strip()]


setup(
    name="roboscape-r-ros-py",
    version=package_version(),
    description="RoboScape-R world models and RL in imagination for ROS 2",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=["roboscape_r_ros", "roboscape_r_ros.*"]),
    package_data={"roboscape_r_ros": ["presets/*/*.yaml"]},
    install_requires=requirements("core.txt"),
    # ONNX Runtime: choose one, they own the same module (requirements/onnxruntime-*.txt)
    extras_require={
        "ros": requirements("ros.txt"),
        "dev": requirements("dev.txt"),
        "onnxruntime-cpu": requirements("onnxruntime-cpu.txt"),
        "onnxruntime-gpu": requirements("onnxruntime-gpu.txt"),
    },
    entry_points={"console_scripts": console_scripts()},
)
