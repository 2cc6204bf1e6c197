"""Temp files a killed process leaves behind, found by who owns them rather than by age alone.

Every temp file or folder the store and the API make is named
``<kind>-<host>.<pid>.<start>-<random>``: the host, process id and process
start time (``/proc/<pid>/stat`` field 22) of its writer. A file whose writer is
on this host and no longer running (no such pid, or a pid reused by a process
started at another time) is litter and goes at once; a live writer's file is
never touched, however old. Files of another host (a data dir on shared
storage) or without an owner tag fall back to an age bound.

Where they live: ``spool/`` (packs being filled), ``tmp/api/`` (request bodies,
joined upload parts, mirror downloads, Xet rebuilds) and, on the folder
backend, ``objects/**/.tmp-*`` (an object being written before its rename).
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

#: Seconds after which a file whose owner cannot be checked is certainly abandoned: no request,
#: ingest or upload of this store runs for a day without touching its temp file again.
STALE_AFTER = 24 * 3600

_OWNER = re.compile(r"-(?P<host>[A-Za-z0-9_-]+)\.(?P<pid>\d+)\.(?P<start>\d+)-")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:64] or "host"


def _start_ticks(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), None if there is no such process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


_mine: dict[int, str] = {}


def owner() -> str:
    """This process's tag, ``host.pid.start`` (recomputed after a fork: the child is another owner)."""
    pid = os.getpid()
    if pid not in _mine:
        _mine[pid] = f"{_host()}.{pid}.{_start_ticks(pid) or 0}"
    return _mine[pid]


def prefix(kind: str) -> str:
    """The temp-name prefix for ``kind`` (``spool``, ``body``, ...) owned by this process."""
    return f"{kind}-{owner()}-"


def abandoned(name: str, mtime: float, now: float | None = None) -> bool:
    """Whether the temp file ``name`` (modified at ``mtime``) belongs to no running process."""
    m = _OWNER.search(name)
    if m and m["host"] == _host() and Path("/proc/self/stat").exists():
        ticks = _start_ticks(int(m["pid"]))
        return ticks is None or ticks != int(m["start"])
    return mtime < (now or time.time()) - STALE_AFTER


@dataclass
class Leftovers:
    paths: list[Path] = field(default_factory=list)
    bytes: int = 0

    def describe(self) -> list[str]:
        return [str(p) for p in self.paths]


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def find(data_dir: Path, objects_dir: Path | None) -> Leftovers:
    """Abandoned temp files and folders of the store at ``data_dir`` (``objects_dir``: folder backend root)."""
    found = Leftovers()
    candidates: list[Path] = []
    for folder in (data_dir / "spool", data_dir / "tmp" / "api"):
        if folder.is_dir():
            candidates += list(folder.iterdir())
    if objects_dir is not None and objects_dir.is_dir():
        candidates += list(objects_dir.rglob(".tmp-*"))
    now = time.time()
    for path in candidates:
        try:
            if abandoned(path.name, path.stat().st_mtime, now):
                found.bytes += _size(path)
                found.paths.append(path)
        except FileNotFoundError:  # finished (renamed or removed) while we looked
            continue
    return found


def sweep(data_dir: Path, objects_dir: Path | None) -> Leftovers:
    """Remove what ``find`` reports; returns it."""
    found = find(data_dir, objects_dir)
    for path in found.paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return found
