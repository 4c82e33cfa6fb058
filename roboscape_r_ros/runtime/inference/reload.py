"""When a policy file on disk was replaced: its (mtime, size) signature differs from the last one seen.

A signature is tried once: a bad file is refused once (one line), and the watch fires again only when
the file changes again. Writers should replace the file atomically (``files.write_atomic``; policy
checkpoints are saved that way), so a half-copied file is rarely seen and, if seen, only refused.
"""

from __future__ import annotations

from pathlib import Path


class FileWatch:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.seen = self.signature()

    def signature(self) -> tuple[int, int] | None:
        try:
            stat = self.path.stat()
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def changed(self) -> bool:
        """True once per new signature of an existing file."""
        now = self.signature()
        if now is None or now == self.seen:
            return False
        self.seen = now
        return True
