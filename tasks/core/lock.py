"""One run at a time per working directory: an exclusive lock on <workdir>/.medsafe/run.lock.

    with workdir_lock(workdir, "medsafe data", wait=True, notify=print):
        ...  # the only run writing this workdir

The lock is `fcntl.flock` on the file, so the kernel drops it when its holder exits, however it exits: a
run that was killed never blocks the next one, which takes over and overwrites the holder line. While
held, the file names its holder (pid, host, command, start time) for the message a second run shows.
The lock file is never deleted (deleting it would let two runs lock two different files).
Taken again inside the process that holds it, the lock is a no-op (a flow that locks inside a command
that already locked). Local file systems only: flock over NFS is not to be trusted.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from tasks.core.errors import MedsafeError

LOCK_NAME = Path(".medsafe") / "run.lock"
_held: set[Path] = set()  # lock files this process holds now


class WorkdirBusy(MedsafeError):
    """Another run holds the workdir's lock and the caller would not wait."""


def lock_path(workdir: str | Path) -> Path:
    return Path(workdir).resolve() / LOCK_NAME


def describe_holder(path: Path) -> str:
    """Who holds (or last held) the lock, from the line its holder wrote; a best effort for messages."""
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "another medsafe process (it has not written its name yet)"
    return (
        f"`{info.get('command', '?')}` (pid {info.get('pid', '?')} on {info.get('host', '?')}, "
        f"since {info.get('started_at', '?')})"
    )


@contextmanager
def workdir_lock(
    workdir: str | Path,
    command: str,
    *,
    wait: bool = True,
    notify: Callable[[str], None] | None = None,
    poll_s: float = 0.5,
) -> Iterator[Path]:
    """Hold the workdir's run lock for the block. Busy: `wait` polls until it is free (telling `notify`
    once who holds it), else raises WorkdirBusy naming the holder. `notify` also hears of a takeover."""
    path = lock_path(workdir)
    if path in _held:
        yield path
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _acquire(fd, path, wait, notify, poll_s)
        if os.fstat(fd).st_size and notify is not None:  # the last holder died without unlocking
            notify(f"taking over the lock left by {describe_holder(path)}, which is no longer running")
        _write_holder(fd, command)
        _held.add(path)
        try:
            yield path
        finally:
            _held.discard(path)
            os.ftruncate(fd, 0)  # before unlocking: a file that names no one is never stale
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, wait: bool, notify: Callable[[str], None] | None, poll_s: float) -> None:
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        workdir = path.parent.parent
        if not wait:
            raise WorkdirBusy(
                f"workdir {workdir} is in use by {describe_holder(path)}; wait for it to finish "
                "(run again without --no-wait to wait), or use another --workdir"
            )
        if not told and notify is not None:
            notify(
                f"workdir {workdir} is in use by {describe_holder(path)}; "
                "waiting for it to finish (Ctrl-C to stop, --no-wait to refuse instead)"
            )
            told = True
        time.sleep(poll_s)


def _write_holder(fd: int, command: str) -> None:
    info = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command,
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    os.fsync(fd)
