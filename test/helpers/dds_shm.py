"""Fast DDS shared-memory files left in /dev/shm by processes that died without closing them.

A node killed with -9 (the reliability battery does it on purpose; a test timeout does it too) leaves
its shared-memory port behind. A later participant on the same domain and participant index reuses
that port together with the dead listener registered in it, and under Jazzy's Fast DDS 2.14 such a
port can stop delivering (eProsima/Fast-DDS#5053): the stale ports of earlier runs sat on most of the
domains the tests pick. `fastdds shm clean` only removes the ports whose lock file is left, so the
files that no living process maps or holds open are removed here, before each ROS test.
"""

from __future__ import annotations

import re
from pathlib import Path

SHM = Path("/dev/shm")
_DDS_FILE = re.compile(r"^(?:sem\.)?(fast(?:rtps|dds)_(?:port\d+|[0-9a-f]{16}))(?:_el|_sl|_mutex)?$")


def _held_by_living_processes() -> set[str]:
    """Names of the /dev/shm files that some process maps or has open."""
    held: set[str] = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            held.update(re.findall(r"/dev/shm/(\S+)", (proc / "maps").read_text()))
            fds = list((proc / "fd").iterdir())
        except OSError:  # gone meanwhile, or not ours to read
            continue
        for fd in fds:
            try:
                link = str(fd.readlink())
            except OSError:  # closed meanwhile (the listing's own descriptor among them)
                continue
            if link.startswith("/dev/shm/"):
                held.add(link.removeprefix("/dev/shm/"))
    return held


def remove_dead_dds_files(shm: Path = SHM) -> int:
    """Delete every Fast DDS port or segment (with its lock files and mutex) that no living process
    uses; the number of files removed."""
    groups: dict[str, list[Path]] = {}
    for path in shm.iterdir() if shm.is_dir() else ():
        match = _DDS_FILE.match(path.name)
        if match:
            groups.setdefault(match.group(1), []).append(path)
    held = _held_by_living_processes()
    removed = 0
    for files in groups.values():
        if not any(f.name in held for f in files):
            for f in files:
                f.unlink(missing_ok=True)
                removed += 1
    return removed
