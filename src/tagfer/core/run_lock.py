"""Exclusive holds: a run directory, an AU cache being built, a trace file being written belong to one
live process.

:func:`hold` takes an OS file lock (``fcntl.flock(LOCK_EX | LOCK_NB)``) on a lock file beside what it
protects (:func:`lock_file_for`: ``<dir>/.lock`` for a directory, ``<parent>/.<name>.lock`` for a file)
and writes who holds it into that file: PID, host, start time (UTC), the command line and the launch
(:func:`launch_job`). A second process asking for the same hold stops at once with
:class:`PathHeldError`, which names the path and the holder.

The hold is the kernel's lock, not the file: it vanishes when its process ends in any way (``kill -9``
included), and a lock file left behind holds nothing. The lock belongs to the open file, so forked
children (DataLoader workers, AU-cache build workers) share it while they live.

Ranks of one distributed launch are not rivals: when the holder names the same launch
(:func:`launch_job`: the SLURM job step, or torchrun's/Lightning's master address and port) the second
process waits for the first instead (e.g. the first rank of every node preparing the same AU cache on a
shared filesystem).

Where the lock works: local filesystems (ext4, xfs, btrfs, tmpfs) always. NFS: Linux emulates ``flock``
with NFS byte-range locks, so it holds across client machines — unless the filesystem is mounted with
``nolock`` or ``local_lock=flock|all`` (then only processes on one machine see each other), and a crashed
client's lock lasts until the server's lease expires (NFSv4: about 90 s). Lustre: across nodes only when
mounted with ``-o flock``; ``localflock`` makes it per node; ``noflock`` makes locking fail — that, and
any filesystem without locks, is logged as a warning and the work goes on unprotected. GPFS holds
``flock`` cluster-wide; BeeGFS only with ``tuneUseGlobalFileLocks``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

log = logging.getLogger(__name__)

#: errno values of a lock that another process holds.
_HELD = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: written into the lock file by the holder."""

    pid: int
    host: str
    since: str  # ISO 8601, UTC
    command: str
    job: str | None = None  # launch_job() of the holder

    def describe(self) -> str:
        return f"PID {self.pid} on host {self.host} since {self.since} ({self.command})"


class PathHeldError(RuntimeError):
    """Another live process holds ``path``; ``holder`` says who (None when its lock file was unreadable)."""

    def __init__(self, path: Path, what: str, holder: Holder | None):
        self.path, self.what, self.holder = path, what, holder
        who = holder.describe() if holder else "another process (its lock file names no holder yet)"
        super().__init__(f"{what} {path} is in use by {who}; one process at a time: wait for it to finish, stop it, or choose another path")


def lock_file_for(target: str | os.PathLike, *, directory: bool) -> Path:
    """The lock file of ``target``: ``<target>/.lock`` for a directory, ``<parent>/.<name>.lock`` for a file."""
    target = Path(target)
    return target / ".lock" if directory else target.with_name(f".{target.name}.lock")


def launch_job(env: Mapping[str, str]) -> str | None:
    """The distributed launch this process belongs to, or None for a plain process.

    ``slurm:<job>.<step>`` under ``srun``; ``master:<addr>:<port>`` under torchrun or Lightning's own
    multi-node launch (``MASTER_ADDR`` and ``MASTER_PORT`` set). Two launches cannot share a master
    address and port while both live, so equal values mean ranks of one launch.
    """
    if env.get("SLURM_JOB_ID") and env.get("SLURM_STEP_ID"):
        return f"slurm:{env['SLURM_JOB_ID']}.{env['SLURM_STEP_ID']}"
    if env.get("MASTER_ADDR") and env.get("MASTER_PORT"):
        return f"master:{env['MASTER_ADDR']}:{env['MASTER_PORT']}"
    return None


def is_launch_leader(env: Mapping[str, str]) -> bool:
    """Whether this process is global rank 0 of its launch (a plain process is).

    Read from the launcher's variables before any process group exists: ``RANK`` (torchrun),
    ``SLURM_PROCID`` (srun), else ``NODE_RANK`` and ``LOCAL_RANK`` (Lightning's own launcher).
    """
    for key in ("RANK", "SLURM_PROCID"):
        if env.get(key, "") != "":
            return int(env[key]) == 0
    return int(env.get("NODE_RANK") or 0) == 0 and int(env.get("LOCAL_RANK") or 0) == 0


def read_holder(lock_file: str | os.PathLike) -> Holder | None:
    """The holder recorded in ``lock_file`` (None when it is missing, empty or not ours)."""
    try:
        data = json.loads(Path(lock_file).read_text(encoding="utf-8"))
        return Holder(**data)
    except (OSError, ValueError, TypeError):
        return None


def _holder_of(lock_file: Path, attempts: int = 20) -> Holder | None:
    """The holder, waiting up to ~1 s for a holder that has the lock but has not written its name yet."""
    for _ in range(attempts):
        holder = read_holder(lock_file)
        if holder is not None:
            return holder
        time.sleep(0.05)
    return None


@contextmanager
def hold(target: str | os.PathLike, what: str, *, directory: bool, env: Mapping[str, str] | None = None) -> Iterator[Holder]:
    """Hold ``target`` exclusively for the ``with`` block (module docstring); yields this process's :class:`Holder`.

    Args:
        target: the directory or file to hold (a directory is created; a file's parent is).
        what: how the error names it, e.g. ``"run directory"``, ``"AU cache"``, ``"trace file"``.
        directory: whether ``target`` is a directory.
        env: the environment (default ``os.environ``), for :func:`launch_job`.

    Raises :class:`PathHeldError` when another process holds it (a rank of this same launch is waited for).
    """
    env = os.environ if env is None else env
    lock_file = lock_file_for(target, directory=directory)
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    me = Holder(
        pid=os.getpid(),
        host=socket.gethostname(),
        since=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        command=" ".join([Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]),
        job=launch_job(env),
    )
    fd = os.open(lock_file, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)  # never truncates: the holder's name stays
    try:
        if not _lock(fd, lock_file, target, what, me):
            yield me
            return
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(asdict(me)).encode(), 0)
        try:
            yield me
        finally:
            os.ftruncate(fd, 0)  # released: name no holder
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _lock(fd: int, lock_file: Path, target, what: str, me: Holder) -> bool:
    """Take the lock on ``fd``; False when the filesystem has no locks (warned). Raises :class:`PathHeldError`."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError as err:
        if err.errno not in _HELD:
            log.warning(
                "cannot lock %s (%s): this filesystem offers no file locks; %s %s is not protected against a second process",
                lock_file,
                err,
                what,
                target,
            )
            return False
    holder = _holder_of(lock_file)
    if holder is None or holder.job is None or holder.job != me.job:
        raise PathHeldError(Path(target), what, holder)
    log.info("%s %s: waiting for %s of this launch", what, target, holder.describe())
    fcntl.flock(fd, fcntl.LOCK_EX)
    return True


def hold_run_dir(run_dir: str | os.PathLike):
    """The hold on a run directory, taken by global rank 0 of the launch (:func:`is_launch_leader`); the
    other ranks of that launch write into the directory under rank 0's hold (a null context for them)."""
    return hold(run_dir, "run directory", directory=True) if is_launch_leader(os.environ) else nullcontext(None)
