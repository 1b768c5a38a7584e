"""A training run's folder (`--out`): checked before any work, then claimed for the run's life.

    check()    no side effects: the folder is not a file, no running training holds it, it
               holds no earlier run unless --resume (which needs its checkpoint) or
               --overwrite, and it (or its nearest existing parent) can be written to
    claim()    creates the folder, takes its lock and (--overwrite) moves an earlier run's files
               aside into DIR/.replaced; when the block ends, the earlier run is deleted if the
               new one wrote a checkpoint (it has started: it can be resumed), and otherwise the
               new run's files are removed and the earlier run put back, so a run that fails to
               start leaves the folder as it found it (a folder it created is removed again)

A replacement cut short by a killed process is settled by the next claim the same way.

The lock is `fcntl.flock` on `DIR/.lock`, which holds the owner's pid. The kernel drops a
flock when its process ends however it ends, so a lock left by a killed run is free: the
next run takes it over (and says whose it was); a second run while the first one lives is
refused at once, naming the first's pid.
"""
from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import tempfile
from pathlib import Path

from .train import BEST, CHECKPOINT, LAST_GOOD

LOCK = ".lock"
REPLACED = ".replaced"      # the earlier run's files while --overwrite's new run has not started
LOG, METRICS, PLOT, TENSORBOARD = "metrics.jsonl", "metrics.json", "loss.png", "tensorboard"
RUN_FILES = (CHECKPOINT, BEST, LAST_GOOD, LOG, METRICS, PLOT, TENSORBOARD)
STARTED = (CHECKPOINT, BEST, LAST_GOOD)    # a run that wrote one of these can be resumed: it has started


class RunFolderError(ValueError):
    """The run folder cannot be used as asked (the message says why and what to do)."""


class RunFolder:
    def __init__(self, path, *, resume: bool = False, overwrite: bool = False):
        if resume and overwrite:
            raise RunFolderError("--resume continues the run in --out and --overwrite replaces it: give one")
        self.path, self.resume, self.overwrite = Path(path), resume, overwrite
        self.took_over_from = None    # pid of a dead run whose lock `claim` took over

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    def check(self) -> None:
        """RunFolderError unless the run can start here (see the module doc); writes nothing."""
        path = self.path
        if path.exists() and not path.is_dir():
            raise RunFolderError(f"--out {path} is a file; expected a folder for the run")
        if (path / LOCK).is_file():
            with _open_lock(path / LOCK) as fd:
                if not _try_lock(fd):
                    raise self._busy(fd)
        self._check_contents()
        _check_writable(path)

    def _check_contents(self):
        if self.resume and not self.checkpoint.is_file():
            raise RunFolderError(f"--resume: {self.path} holds no {CHECKPOINT} to continue from "
                                 "(drop --resume to start a new run there)")
        if not (self.resume or self.overwrite) and any((self.path / name).exists() for name in RUN_FILES):
            raise RunFolderError(f"--out {self.path} already holds a run: pass --resume to continue it or "
                                 "--overwrite to replace it (or choose another --out)")

    def _busy(self, fd) -> RunFolderError:
        return RunFolderError(f"--out {self.path} is in use by another training run (pid {_read_pid(fd) or '?'}); "
                              "wait for it to end or choose another --out")

    @contextlib.contextmanager
    def claim(self):
        """Create the folder and hold its lock inside the `with` block; see the module doc for
        what the folder holds after it."""
        created = _missing_folders(self.path)
        self.path.mkdir(parents=True, exist_ok=True)
        lock_existed = (self.path / LOCK).exists()
        held = started = False
        try:
            with _open_lock(self.path / LOCK) as fd:
                if not _try_lock(fd):
                    raise self._busy(fd)
                held = True
                previous = _read_pid(fd)
                if previous and previous != os.getpid():
                    self.took_over_from = previous
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
                try:
                    self._settle_replacement()      # one a killed run left half done
                    self._check_contents()          # again, now that no other run can write here
                    if self.overwrite:
                        self._move_aside()
                    yield self
                finally:
                    started = self._settle_replacement()
                    os.ftruncate(fd, 0)
                    if not started and not lock_existed:
                        os.unlink(self.path / LOCK)     # still held: no other run can have taken it
        finally:
            if not held or not started:
                _remove_empty(created)

    def _move_aside(self) -> None:
        aside = self.path / REPLACED
        aside.mkdir()
        for name in RUN_FILES:
            if (self.path / name).exists():
                os.replace(self.path / name, aside / name)

    def _settle_replacement(self) -> bool:
        """Whether the folder holds a started run; an earlier run moved aside is deleted when
        it does, else put back in place of what the new run wrote."""
        started = any((self.path / name).is_file() for name in STARTED)
        aside = self.path / REPLACED
        if aside.is_dir():
            if not started:
                _remove(self.path, RUN_FILES)
                for item in aside.iterdir():
                    os.replace(item, self.path / item.name)
            shutil.rmtree(aside)
        elif not started:
            _remove(self.path, (LOG, TENSORBOARD))   # what a run that never saved leaves: no history to keep
        return started


@contextlib.contextmanager
def _open_lock(path: Path):
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        yield fd
    finally:
        os.close(fd)                        # closing the descriptor releases the flock


def _try_lock(fd) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as error:
        if error.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            return False
        raise


def _missing_folders(path: Path) -> list:
    """The folders that `path.mkdir(parents=True)` would create, deepest first."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    return missing


def _remove_empty(folders: list) -> None:
    """Remove the `folders` (deepest first) that are empty; stop at the first that is not."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def _remove(folder: Path, names) -> None:
    for name in names:
        target = folder / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)


def _read_pid(fd) -> int | None:
    text = os.pread(fd, 32, 0).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def _check_writable(path: Path) -> None:
    """RunFolderError unless a file can be created in `path` (or, when it does not exist yet,
    a folder in its nearest existing parent); the probe is removed at once."""
    missing = _missing_folders(path)
    probe_in = missing[-1].parent if missing else path
    try:
        if path.exists():
            tempfile.TemporaryFile(dir=path).close()
        else:
            os.rmdir(tempfile.mkdtemp(dir=probe_in))
    except OSError as error:
        raise RunFolderError(f"--out {path}: cannot write in {probe_in} ({error.strerror})") from None
