"""Run folders: one folder per training run, shared by every command that trains or evaluates.

    run = RunFolder.open("outputs/runs/wm", lock=True)   # creates it; refuses a second writer
    run.write_config(cfg, must_match=("model", "dataset"))  # config.yaml; a resumed run must agree
    run.log("tokenizer: resumed at step 500")             # appended to train.log with a time stamp
    writer = run.tensorboard()                            # SummaryWriter on run/tensorboard
    run.write_json("split.json", {...}); run.read_json("split.json")

Every file is written atomically (files.write_atomic), so a run killed at any moment
leaves whole files behind. The lock is an flock on `run/.lock`: the kernel releases it when the
holder dies, also after kill -9, so a rerun can always take it over. Under torchrun the ranks other
than 0 open the folder `read_only`: they read and check what rank 0 does, and write nothing.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

import yaml

from roboscape_r_ros.config import to_yaml
from roboscape_r_ros.errors import RoboscapeError
from roboscape_r_ros.files import write_atomic

RUNS_DIR = Path("outputs/runs")


class RunError(RoboscapeError, RuntimeError):
    """A run folder that cannot be used as asked (busy, unwritable, started with other settings)."""


def run_path(run: str, name: str) -> Path:
    """The run folder: `run` when given, else outputs/runs/<name>."""
    if run:
        return Path(run)
    if not name or "/" in name or name in (".", ".."):
        raise RunError(f"run name {name!r} must be a plain folder name")
    return RUNS_DIR / name


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


class RunFolder:
    def __init__(self, path: Path, read_only: bool = False):
        self.path = path
        self.read_only = read_only  # write_config, write_json and log check or return, writing nothing
        self._lock_fd: int | None = None

    @classmethod
    def open(cls, path: str | Path, *, create: bool = True, lock: bool = False, read_only: bool = False) -> RunFolder:
        """The run folder at path (`create`d when missing), holding its lock when `lock` unless `read_only`."""
        path = Path(path)
        if create:
            try:
                path.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise RunError(f"{path}: cannot create the run folder ({err.strerror})") from None
        elif not path.is_dir():
            raise RunError(f"{path}: no such run folder")
        if create and not os.access(path, os.W_OK):
            raise RunError(f"{path}: run folder is not writable")
        run = cls(path, read_only)
        if lock and not read_only:
            run._lock()
        return run

    def _lock(self) -> None:
        fd = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 64).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise RunError(f"{self.path}: run folder is in use by another process (pid {holder})") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    def close(self) -> None:
        if self._lock_fd is not None:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *_: Any) -> None:
        self.close()

    # -- files ----------------------------------------------------------------------------------
    def file(self, name: str) -> Path:
        return self.path / name

    def folder(self, name: str) -> Path:
        folder = self.path / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def write_json(self, name: str, data: Any) -> Path:
        path = self.file(name)
        if self.read_only:
            return path
        write_atomic(path, json.dumps(data, indent=2, allow_nan=True) + "\n")
        return path

    def read_json(self, name: str) -> Any:
        path = self.file(name)
        try:
            return json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise RunError(f"{path}: unreadable JSON ({err})") from None

    def read_config(self) -> dict[str, Any]:
        path = self.file("config.yaml")
        try:
            data = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise RunError(f"{path}: unreadable config ({str(err).splitlines()[0]})") from None
        if not isinstance(data, dict):
            raise RunError(f"{path}: not a config mapping")
        return data

    def write_config(self, cfg: Any, must_match: tuple[str, ...] = (), ignore: tuple[str, ...] = ()) -> None:
        """Write config.yaml (the resolved config). If the run has one already, every option under the
        `must_match` prefixes (except those under `ignore`) must be unchanged: a resumed run continues
        with the settings it started with."""
        path = self.file("config.yaml")
        if path.exists() and must_match:
            # through YAML, as the old one was read: tuples anywhere in the tree become lists
            old, new = flatten(self.read_config()), flatten(yaml.safe_load(to_yaml(cfg)))
            keys = sorted(k for k in old.keys() | new.keys() if k.startswith(must_match) and not k.startswith(ignore))
            changed = [k for k in keys if old.get(k) != new.get(k)]
            if changed:
                key = changed[0]
                raise RunError(
                    f"{self.path} was started with {key}={old.get(key)!r}, now {new.get(key)!r}"
                    f"{f' (+{len(changed) - 1} more)' if len(changed) > 1 else ''}: resume with the "
                    "same settings or use another run folder"
                )
        if not self.read_only:
            write_atomic(path, to_yaml(cfg))

    # -- logs -----------------------------------------------------------------------------------
    def log(self, message: str, name: str = "train.log") -> None:
        if self.read_only:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        with open(self.file(name), "a") as f:
            f.write(f"{stamp} {message}\n")

    def tensorboard(self, name: str = "tensorboard"):
        """A TensorBoard SummaryWriter writing event files under run/<name> (a new file per process);
        on a read-only folder one that writes nothing."""
        if self.read_only:
            return _NoTensorBoard()
        from torch.utils.tensorboard import SummaryWriter

        return SummaryWriter(str(self.folder(name)))


class _NoTensorBoard:
    """The TensorBoard writer of a read-only run folder (a torchrun rank other than 0)."""

    def add_scalar(self, *args: Any, **kwargs: Any) -> None:
        pass

    add_image = flush = close = add_scalar
