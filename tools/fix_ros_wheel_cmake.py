"""Point the CMake exports of the ROS 2 wheels at this interpreter's headers.

The ros-python-wheels are built on manylinux, and their rosidl_generator_py CMake exports name the
build machine's include folders (/opt/python/cp3XX-cp3XX/...). Generating messages against them
fails until those paths name this interpreter's Python and numpy include folders. Idempotent.
"""

import re
import sys
import sysconfig
from pathlib import Path

import numpy


def main() -> int:
    prefix = Path(sys.prefix)
    python_include = sysconfig.get_paths()["include"]
    numpy_include = numpy.get_include()
    patterns = [
        (re.compile(r"/opt/python/cp\d+-cp\d+/lib/python3\.\d+/site-packages/numpy/_core/include"), numpy_include),
        (re.compile(r"/opt/python/cp\d+-cp\d+/include/python3\.\d+"), python_include),
    ]
    changed = 0
    for path in prefix.glob("share/*/cmake/*.cmake"):
        text = path.read_text()
        new = text
        for pattern, replacement in patterns:
            new = pattern.sub(replacement, new)
        if new != text:
            path.write_text(new)
            changed += 1
    print(f"fix_ros_wheel_cmake: {changed} CMake export files now use {python_include}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
