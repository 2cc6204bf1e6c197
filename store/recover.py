"""Rebuild the catalog from the object store alone, or compare the two (``verify --deep``).

The bucket holds frames that say which object and frame number they are (store/packs.py)
and records of every catalog change (store/journal.py). ``scan`` reads all of it, replays
the records in time order into the catalog's final state and places every frame; ``rebuild``
writes that state into an empty catalog; ``compare`` says where a catalog and the bucket
disagree, both ways. Only what revisions reach is rebuilt: content no branch or tag
reaches is what gc would drop anyway. Damaged entries are skipped and reported; the rest
is rebuilt.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from sqlalchemy import func, insert, select

from weightvault.errors import PackCorrupt, RecoverError

from .backends import ObjectBackend
from . import journal
from .journal import META_PREFIX, REFERENCES, decode_value, read_record
from .models import (Chunk, Commit, Family, File, Frame, IngestEvent, Object, Pack, Ref, Repo, Segment, Tag, Token,
                     TreeEntry, utcnow)
from .packs import FRAME, RECORD, scan_entries

Progress = Callable[[int], None]


@dataclass
class State:
    """The catalog as the bucket describes it, keyed by natural keys."""

    families: dict[str, dict] = field(default_factory=dict)
    repos: dict[tuple, dict] = field(default_factory=dict)
    objects: dict[str, dict] = field(default_factory=dict)
    files: dict[str, dict] = field(default_factory=dict)
    commits: dict[tuple, dict] = field(default_factory=dict)
    refs: dict[tuple, dict] = field(default_factory=dict)
    tags: dict[tuple, dict] = field(default_factory=dict)
    tokens: dict[str, dict] = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)

    def apply(self, op: list) -> None:
        kind, v = op
        if kind == "family":
            self.families[v["name"]] = v
        elif kind == "repo":
            self.repos[(v["kind"], v["name"])] = v
        elif kind == "object":
            self.objects[v["digest"]] = v
        elif kind == "file":
            self.files[v["sha256"]] = v
        elif kind == "commit":
            self.commits[(*v["repo"], v["oid"])] = v
        elif kind == "ref":
            self.refs[(*v["repo"], v["name"])] = v
        elif kind == "tag":
            self.tags[(*v["repo"], v["name"])] = v
        elif kind == "token":
            self.tokens[v["digest"]] = v
        elif kind == "event":
            self.events.append(v)
        elif kind == "del-repo":
            self._drop_repo(tuple(v))
        elif kind == "del-ref":
            self.refs.pop(tuple(v), None)
        elif kind == "del-tag":
            self.tags.pop(tuple(v), None)
        elif kind == "del-token":
            self.tokens.pop(v[0], None)
        elif kind == "del-family":
            self.families.pop(v[0], None)
            for r in self.repos.values():
                if r.get("family") == v:
                    r["family"] = None
        else:
            raise RecoverError(f"unknown record operation {kind!r}")

    def _drop_repo(self, key: tuple) -> None:
        self.repos.pop(key, None)
        for table in (self.commits, self.refs, self.tags):
            for k in [k for k in table if k[:2] == key]:
                del table[k]
        for row in [*self.families.values(), *self.repos.values()]:
            if row.get("base_repo") and tuple(row["base_repo"]) == key:
                row["base_repo"] = None
        for e in self.events:
            if e.get("repo") and tuple(e["repo"]) == key:
                e["repo"] = None

    def prune(self) -> None:
        """Keep the commits, files and objects that branches and tags reach (with parents and bases)."""
        live = {tuple(r["commit"]) for r in [*self.refs.values(), *self.tags.values()] if r.get("commit")}
        by_oid = self.commits
        stack = list(live)
        while stack:  # parents stay: a hub lists a branch's history
            c = by_oid.get(stack.pop())
            if c and c.get("parent_oid"):
                parent = (*c["repo"], c["parent_oid"])
                if parent in by_oid and parent not in live:
                    live.add(parent)
                    stack.append(parent)
        self.commits = {k: v for k, v in self.commits.items() if k in live}
        shas = {sha for c in self.commits.values() for sha in c.get("tree", {}).values()}
        self.files = {k: v for k, v in self.files.items() if k in shas}
        digests = {seg[5] for f in self.files.values() for seg in f.get("segments", []) if seg[5]}
        stack = list(digests)
        while stack:
            o = self.objects.get(stack.pop())
            if o and o.get("base") and o["base"][0] not in digests:
                digests.add(o["base"][0])
                stack.append(o["base"][0])
        self.objects = {k: v for k, v in self.objects.items() if k in digests}


@dataclass
class Scan:
    """What the bucket holds: packs, where each frame lies, the replayed state, and the damage seen."""

    packs: dict[str, int] = field(default_factory=dict)            # name -> size (frames and records)
    frames: dict[tuple[str, int], list[tuple[str, int, int]]] = field(default_factory=dict)
    at: dict[tuple[str, int], tuple[str, int]] = field(default_factory=dict)  # (pack, offset) -> (digest, seq)
    v1_packs: list[str] = field(default_factory=list)
    records: int = 0
    bytes: int = 0
    damage: list[str] = field(default_factory=list)
    state: State = field(default_factory=State)


def scan(backend: ObjectBackend, progress: Progress = lambda n: None) -> Scan:
    out = Scan()
    records: list[dict] = []
    for prefix in ("packs/", f"{META_PREFIX}/"):
        for stat in backend.list(prefix):
            out.packs[stat.name] = stat.size
            damaged = []
            try:
                for e in scan_entries(backend, stat.name, stat.size, lambda exc, _: damaged.append(str(exc))):
                    if e.kind == FRAME and e.key:
                        loc = (e.key.hex(), e.index)
                        out.frames.setdefault(loc, []).append((stat.name, e.offset, e.size))
                        out.at[(stat.name, e.offset)] = loc
                    elif e.kind == FRAME:
                        if not out.v1_packs or out.v1_packs[-1] != stat.name:
                            out.v1_packs.append(stat.name)
                    elif e.kind == RECORD:
                        try:
                            records.append(read_record(e.payload))
                        except Exception as exc:  # noqa: BLE001 -- a record that fails to parse is damage, reported
                            damaged.append(f"{stat.name}: record does not parse: {exc}")
            except (OSError, KeyError) as exc:
                damaged.append(f"{stat.name}: cannot be read: {exc}")
            out.damage.extend(damaged)
            out.bytes += stat.size
            progress(stat.size)
    records.sort(key=lambda r: r["time_ns"])
    for record in records:
        for op in record["ops"]:
            out.state.apply(op)
    out.records = len(records)
    out.state.prune()
    return out


def locate(sc: Scan, digest: str, frame: list) -> tuple[str, int, int] | None:
    """Where frame ``[seq, raw_offset, raw_size, codec, size, pack, offset]`` of ``digest`` lies now:
    where the record saw it if that entry is still there, else any entry of that frame and size
    (compaction copies frames to new packs)."""
    seq, size, pack, offset = frame[0], frame[4], frame[5], frame[6]
    if sc.at.get((pack, offset)) == (digest, seq) and sc.packs.get(pack):
        return pack, offset, size
    for cand in sc.frames.get((digest, seq), []):
        if cand[2] == size:
            return cand
    return None


def _row(model, values: dict, ids: dict) -> dict:
    """Column values of ``model`` from a record's ``values``, references turned into ids."""
    refs = REFERENCES.get(model, {})
    row = {}
    for col in model.__table__.columns:
        if col.name == "id":
            continue
        if col.name in refs:
            fname, target = refs[col.name]
            key = values.get(fname)
            row[col.name] = ids[target].get(tuple(key)) if key else None
        elif col.name in values:
            row[col.name] = decode_value(values[col.name])
    return row


@dataclass
class RecoverReport:
    repos: int = 0
    commits: int = 0
    refs: int = 0
    tags: int = 0
    files: int = 0
    objects: int = 0
    frames: int = 0
    packs: int = 0
    records: int = 0
    bytes_scanned: int = 0
    problems: list[str] = field(default_factory=list)


def rebuild(catalog, sc: Scan) -> RecoverReport:
    """Write ``sc``'s state into ``catalog``, which must be empty (schema created)."""
    st = sc.state
    report = RecoverReport(records=sc.records, bytes_scanned=sc.bytes, problems=list(sc.damage))
    if sc.v1_packs:
        report.problems.append(f"{len(sc.v1_packs)} version 1 packs hold frames recover cannot place "
                               "(run `weightvault gc --compact-below 1` on the old catalog to rewrite them)")
    with catalog.write_session() as s:
        journal.suppress(s)
        if any(s.scalar(select(func.count()).select_from(m)) for m in (Repo, Object, Pack, Commit)):
            raise RecoverError("the catalog is not empty: recover rebuilds an empty or new catalog "
                               "(drop the database, or use `weightvault verify --deep` to compare)")
        ids: dict[type, dict[tuple, int]] = {m: {} for m in (Family, Repo, Object, File, Commit, Pack)}
        used: set[str] = set()
        frames_of: dict[str, list] = {}
        for digest, obj in st.objects.items():
            placed = []
            for f in obj.get("frames", []):
                where = locate(sc, digest, f)
                if where is None:
                    report.problems.append(f"object {digest[:16]}: frame {f[0]} is in no pack of the bucket")
                    continue
                used.add(where[0])
                placed.append((f, where))
            frames_of[digest] = placed
        now = utcnow()
        for name, size in sorted(sc.packs.items()):
            pack = Pack(name=name, size=size,
                        condemned_at=None if name in used or name.startswith(META_PREFIX + "/") else now)
            s.add(pack)
            s.flush()
            ids[Pack][(name,)] = pack.id
        report.packs = len(sc.packs)
        for model, rows, key in ((Family, st.families, lambda v: (v["name"],)),
                                 (Repo, st.repos, lambda v: (v["kind"], v["name"]))):
            for v in rows.values():
                row = model(**{k: x for k, x in _row(model, v, ids).items() if k not in ("base_repo_id", "family_id")})
                s.add(row)
                s.flush()
                ids[model][key(v)] = row.id
        for model, rows in ((Family, st.families), (Repo, st.repos)):
            for key, v in rows.items():
                values = _row(model, v, ids)
                row = s.get(model, ids[model][key if isinstance(key, tuple) else (key,)])
                for col in ("base_repo_id", "family_id"):
                    if col in values:
                        setattr(row, col, values[col])
        for v in sorted(st.objects.values(), key=lambda o: o.get("depth", 0)):
            row = Object(**_row(Object, v, ids))
            s.add(row)
            s.flush()
            ids[Object][(v["digest"],)] = row.id
            frames = [dict(object_id=row.id, seq=f[0], raw_offset=f[1], raw_size=f[2], codec=f[3],
                           pack_id=ids[Pack][(w[0],)], pack_offset=w[1], size=w[2]) for f, w in frames_of[v["digest"]]]
            if frames:
                s.execute(insert(Frame), frames)
            chunks = [dict(object_id=row.id, raw_offset=o, length=n, hash=h) for o, n, h in v.get("chunks", [])]
            if chunks:
                s.execute(insert(Chunk), chunks)
            report.frames += len(frames)
        report.objects = len(st.objects)
        for v in st.files.values():
            row = File(**_row(File, v, ids))
            s.add(row)
            s.flush()
            ids[File][(v["sha256"],)] = row.id
            segs = []
            for seq, offset, length, name, inline, digest, *rest in v.get("segments", []):
                obj = ids[Object].get((digest,)) if digest else None
                if digest and obj is None:
                    report.problems.append(f"file {v['sha256'][:16]}: object {digest[:16]} is missing")
                segs.append(dict(file_id=row.id, seq=seq, offset=offset, length=length, name=name,
                                 inline=decode_value(inline), object_id=obj, object_offset=rest[0] if rest else 0))
            if segs:
                s.execute(insert(Segment), segs)
        report.files = len(st.files)
        # parents before children, so that ids grow with history as they did
        for key, v in sorted(st.commits.items(), key=lambda kv: kv[1].get("created_at", {}).get("t", "")):
            row = Commit(**_row(Commit, v, ids))
            s.add(row)
            s.flush()
            ids[Commit][key] = row.id
            entries = [dict(commit_id=row.id, path=p, file_id=ids[File][(sha,)])
                       for p, sha in v.get("tree", {}).items() if (sha,) in ids[File]]
            if len(entries) != len(v.get("tree", {})):
                report.problems.append(f"commit {v['oid'][:12]} of {v['repo'][1]}: some files are missing")
            if entries:
                s.execute(insert(TreeEntry), entries)
        report.commits = len(st.commits)
        for model, rows in ((Ref, st.refs), (Tag, st.tags)):
            for v in rows.values():
                values = _row(model, v, ids)
                values["commit_id"] = ids[Commit].get(tuple(v["commit"]))
                if values["commit_id"] is None or values["repo_id"] is None:
                    report.problems.append(f"{model.__tablename__[:-1]} {v['name']} of {v['repo'][1]}: "
                                           "its commit is missing")
                    continue
                s.add(model(**values))
        report.refs, report.tags = len(st.refs), len(st.tags)
        for v in st.tokens.values():
            s.add(Token(**_row(Token, v, ids)))
        for v in st.events:
            s.add(IngestEvent(**_row(IngestEvent, v, ids)))
        report.repos = len(st.repos)
    return report


def catalog_state(catalog) -> dict[str, set]:
    """The facts ``compare`` checks, read from the catalog with natural keys."""
    with catalog.read_session() as s:
        repo = {r.id: (r.kind, r.name) for r in s.scalars(select(Repo))}
        commits = {c.id: (*repo[c.repo_id], c.oid) for c in s.scalars(select(Commit))}
        return {
            "repos": set(repo.values()),
            "refs": {(*repo[r.repo_id], r.name, commits[r.commit_id][2]) for r in s.scalars(select(Ref))},
            "tags": {(*repo[t.repo_id], t.name, commits[t.commit_id][2]) for t in s.scalars(select(Tag))},
            "commits": set(commits.values()),
            # content a revision reaches (the rest waits for gc, and recover leaves it out)
            "files": set(s.scalars(select(File.sha256).join(TreeEntry, TreeEntry.file_id == File.id))),
            "objects": set(s.scalars(select(Object.digest).join(Segment, Segment.object_id == Object.id)
                                     .join(TreeEntry, TreeEntry.file_id == Segment.file_id))),
            "all_objects": set(s.scalars(select(Object.digest))),
            "packs": set(s.scalars(select(Pack.name))),
            "frames": set(s.execute(select(Object.digest, Frame.seq, Pack.name, Frame.pack_offset)
                                    .join(Frame, Frame.object_id == Object.id)
                                    .join(Pack, Pack.id == Frame.pack_id)).all()),
        }


def compare(catalog, sc: Scan) -> list[str]:
    """Where the catalog and the bucket disagree; each line says which side lacks what."""
    cat = catalog_state(catalog)
    st = sc.state
    bucket = {
        "repos": set(st.repos),
        "refs": {(*k, v["commit"][2]) for k, v in st.refs.items()},
        "tags": {(*k, v["commit"][2]) for k, v in st.tags.items()},
        "commits": set(st.commits),
        "files": set(st.files),
        "objects": set(st.objects),
    }
    problems = list(sc.damage)
    for what, mine in bucket.items():
        theirs = cat[what]
        # bases reached only through other objects are in the bucket's set but not the catalog's query
        extra = mine - theirs if what != "objects" else {d for d in mine - theirs if d not in cat["all_objects"]}
        for x in sorted(extra, key=str)[:20]:
            problems.append(f"{what[:-1]} {_show(x)}: in the bucket's records, not in the catalog (recover would add it)")
        for x in sorted(theirs - mine, key=str)[:20]:
            problems.append(f"{what[:-1]} {_show(x)}: in the catalog, in no record of the bucket (lost with the catalog)")
    for name in sorted(cat["packs"] - set(sc.packs))[:20]:
        problems.append(f"pack {name}: in the catalog, missing from the bucket")
    for name in sorted(set(sc.packs) - cat["packs"])[:20]:
        problems.append(f"pack {name}: in the bucket, unknown to the catalog (gc deletes it after the grace period)")
    v1 = set(sc.v1_packs)
    for digest, seq, pack, offset in sorted(cat["frames"])[:1_000_000]:
        if pack in sc.packs and pack not in v1 and sc.at.get((pack, offset)) != (digest, seq):
            problems.append(f"frame {seq} of object {digest[:16]}: the entry at {pack}@{offset} is not that frame")
    return problems


def _show(x) -> str:
    return "/".join(str(p) for p in x) if isinstance(x, tuple) else str(x)[:16]
