"""The ROS tests' clean-up of dead Fast DDS shared memory keeps what a living process uses."""

import os

import pytest

from helpers.dds_shm import SHM, remove_dead_dds_files

# Port numbers above 65535: no real participant can own them.
DEAD, LIVE = "fastrtps_port99991", "fastdds_port99993"


def test_dead_ports_go_with_their_locks_and_mutex_and_live_ones_stay():
    if not SHM.is_dir():
        pytest.skip("no /dev/shm here")
    dead = [SHM / DEAD, SHM / f"{DEAD}_el", SHM / f"sem.{DEAD}_mutex"]
    live = [SHM / LIVE, SHM / f"sem.{LIVE}_mutex"]
    for path in dead + live:
        path.write_bytes(b"")
    held = os.open(SHM / LIVE, os.O_RDONLY)
    try:
        assert remove_dead_dds_files() >= len(dead)
        assert not any(p.exists() for p in dead) and all(p.exists() for p in live)
    finally:
        os.close(held)
        for path in live:
            path.unlink(missing_ok=True)
