"""A revision's history per path: the newest commit that changed each file or folder (the hub's ``lastCommit``)."""
from __future__ import annotations

from sqlalchemy import select

from weightvault.store.models import Commit, TreeEntry


def _signatures(session, commit_id: int, files: set[str], dirs: set[str]) -> dict[str, object]:
    """What each asked-for path holds at a commit: a file's content id, a folder's (path, content id) list."""
    sig: dict[str, object] = {}
    rows = session.execute(select(TreeEntry.path, TreeEntry.file_id).where(TreeEntry.commit_id == commit_id)
                           .order_by(TreeEntry.path)).all()
    for path, file_id in rows:
        if path in files:
            sig[path] = file_id
        parts = path.split("/")
        for depth in range(1, len(parts)):
            folder = "/".join(parts[:depth])
            if folder in dirs:
                sig.setdefault(folder, []).append((path, file_id))
    return sig


#: Commits one lookup walks back at most: each costs a query over that commit's tree, so a page of
#: paths unchanged for longer gets no lastCommit rather than a request that reads the whole history.
MAX_WALK = 1000


def last_changes(session, head: Commit, files: set[str], dirs: set[str]) -> dict[str, Commit]:
    """For each path of ``files`` and ``dirs`` present at ``head``, the newest commit of head's history changing it.

    Walks back one commit at a time and stops as soon as every path is placed,
    so recently changed paths cost a few commits, not the whole history; paths
    unchanged over the newest ``MAX_WALK`` commits are left out.
    """
    by_oid = {c.oid: c for c in session.scalars(select(Commit).where(Commit.repo_id == head.repo_id))}
    wanted = files | dirs
    found: dict[str, Commit] = {}
    commit, sig = head, _signatures(session, head.id, files, dirs)
    wanted &= set(sig)
    for _ in range(min(len(by_oid), MAX_WALK)):  # the length bound also guards against a cycle
        parent = by_oid.get(commit.parent_oid or "")
        parent_sig = _signatures(session, parent.id, files, dirs) if parent is not None else {}
        for path in [p for p in wanted if p not in found and sig.get(p) != parent_sig.get(p)]:
            found[path] = commit
        if parent is None or len(found) == len(wanted):
            break
        commit, sig = parent, parent_sig
    return found
