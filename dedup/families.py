"""Model families: which stored repo a new repo's tensors should be coded against.

Evidence, strongest first:
1. the card's ``base_model:`` naming a stored repo;
2. repos with the same tensor names and shapes, or the same architecture config,
   confirmed and ranked by bitwise similarity on a sample of elements (share of
   identical values, share agreeing in sign and exponent) after casting the
   candidate to the new repo's dtype;
3. otherwise the repo starts a family of its own and is its base.

Measured on the shared MiniLM repos: fine-tunes and casts agree with their
base in sign+exponent on 97% or more of sampled elements, while the same
architecture initialised independently agrees on well under half, hence the
0.75 threshold.
"""
from __future__ import annotations

import hashlib
import json
import math
import mmap
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import yaml
from sqlalchemy import distinct, func, or_, select

from weightvault.errors import FormatError
from weightvault.store.models import Family, Object, Ref, Repo, Segment, TreeEntry

from . import fingerprints, formats
from .formats import safetensors
from .choice import MAX_DEPTH, BaseCandidate
from .reader import PREFETCH_BATCH

SIMILAR_ENOUGH = 0.75
#: Elements compared per tensor and tensors compared per candidate: enough for a
#: stable share (±1%) while touching at most a few frames of each base.
SAMPLE_BYTES = 64 * 1024
SAMPLE_TENSORS = 8
MAX_CANDIDATES = 16

CONFIG_FIELDS = ("model_type", "architectures", "hidden_size", "num_hidden_layers", "num_attention_heads",
                 "intermediate_size", "vocab_size", "d_model", "n_layer", "n_head", "n_embd")


@dataclass(frozen=True)
class LocalTensor:
    path: Path
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


@dataclass
class Profile:
    """What a repo folder says about itself, read without decoding any weights."""

    card_bases: list[str] = field(default_factory=list)
    config_signature: str | None = None
    tensor_signature: str | None = None
    tensors: dict[str, LocalTensor] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredTensor:
    object_id: int
    digest: str
    dtype: str | None
    raw_size: int
    depth: int


@dataclass
class Decision:
    family: str
    base_repo: str | None  # repo to code against (None: this repo is a family base)
    reason: str
    #: Candidate repo -> share of sampled values agreeing in sign and exponent.
    scores: dict[str, float] = field(default_factory=dict)


def card_base_models(text: str) -> list[str]:
    if not text.startswith("---"):
        return []
    end = text.find("\n---", 3)
    try:
        meta = yaml.safe_load(text[3:end]) if end > 0 else None
    except (yaml.YAMLError, RecursionError):  # a card is any text: nested thousands deep is still a card
        return []
    bases = meta.get("base_model") if isinstance(meta, dict) else None
    if isinstance(bases, str):
        return [bases]
    return [b for b in bases if isinstance(b, str)] if isinstance(bases, list) else []


def config_signature(config: dict) -> str | None:
    picked = {k: config.get(k) for k in CONFIG_FIELDS if k in config}
    if not picked:
        return None
    return hashlib.sha1(json.dumps(picked, sort_keys=True).encode()).hexdigest()


def tensor_signature(tensors: dict[str, tuple[int, ...] | None]) -> str | None:
    if not tensors:
        return None
    # A torch zip's storages carry no shape (it is in the pickle, which is not parsed).
    listing = "\n".join(f"{n}:{list(s) if s is not None else '?'}" for n, s in sorted(tensors.items()))
    return hashlib.sha1(listing.encode()).hexdigest()


def profile_folder(files: list[tuple[str, Path]]) -> Profile:
    prof = Profile()
    others: list[tuple[str, LocalTensor]] = []
    for rel, real in files:
        if rel == "README.md":
            prof.card_bases = card_base_models(real.read_text(errors="replace"))
        elif rel == "config.json":
            try:
                config = json.loads(real.read_text())
                if isinstance(config, dict):
                    prof.config_signature = config_signature(config)
            except (ValueError, UnicodeDecodeError, RecursionError):
                continue  # not a config this can read: the repo is stored all the same
        elif (parsed := _parsed(rel, real)) is not None:
            if parsed.format == "safetensors":
                for t in parsed.tensors:
                    prof.tensors[t.name] = LocalTensor(real, t.dtype, t.shape, t.start, t.end)
            else:
                others += [(f"{rel}:{t.name}", LocalTensor(real, t.dtype, t.shape, t.start, t.end))
                           for t in parsed.tensors if t.dtype in fingerprints.FLOAT_DTYPES]
    if not prof.tensors:
        # No safetensors: the float tensors of other containers (torch .bin, GGUF, ONNX, npz),
        # named by file, so that a fine-tune saved another way is placed in its family by
        # fingerprint votes rather than started as a family of its own.
        prof.tensors = dict(others)
    prof.tensor_signature = tensor_signature({n: t.shape for n, t in prof.tensors.items()})
    return prof


def _parsed(rel: str, real: Path) -> formats.Parsed | None:
    """Where a file's tensors sit, as ingest will split it; None when it is no container or does
    not parse (ingest then stores it opaque and says so with the file's name)."""
    if real.stat().st_size < 8:
        return None
    with open(real, "rb") as f:
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        return formats.parse(memoryview(mm), rel)
    except FormatError:
        return None


def stored_tensors(session, repo_id: int, revision: str = "main") -> dict[str, StoredTensor]:
    """Tensor name -> object for the tensors a repo's branch holds."""
    ref = session.get(Ref, (repo_id, revision)) or session.scalar(select(Ref).where(Ref.repo_id == repo_id).limit(1))
    if ref is None:
        return {}
    rows = session.connection().execute(  # Core rows: re-basing asks this a few times per member
        select(Segment.name, Object.id, Object.digest, Object.dtype, Object.raw_size, Object.depth)
        .join(Object, Object.id == Segment.object_id)
        .join(TreeEntry, TreeEntry.file_id == Segment.file_id)
        .where(TreeEntry.commit_id == ref.commit_id, Object.kind == "tensor", Segment.name.is_not(None))
    ).all()
    return {name: StoredTensor(oid, dig, dt, size, depth) for name, oid, dig, dt, size, depth in rows}


def cast_bits(data: bytes, src: str | None, dst: str) -> np.ndarray | None:
    """Bit patterns of ``data`` (dtype ``src``) as dtype ``dst`` would hold them, or None if unsupported."""
    if src == dst:
        width = {"BF16": np.uint16, "F16": np.uint16, "F32": np.uint32}.get(dst)
        return np.frombuffer(data, dtype=width) if width else None
    if src != "F32":
        return None
    values = np.frombuffer(data, dtype=np.float32)
    if dst == "BF16":
        bits = values.view(np.uint32).astype(np.uint64)
        return ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype(np.uint16)
    if dst == "F16":
        return values.astype(np.float16).view(np.uint16)
    return None


def similarity(member: np.ndarray, base: np.ndarray) -> tuple[float, float]:
    """(share identical, share agreeing in the top 9 bits: sign and exponent for BF16/F32)."""
    n = min(len(member), len(base))
    if n == 0:
        return 0.0, 0.0
    a, b = member[:n], base[:n]
    shift = a.dtype.itemsize * 8 - 9
    return float(np.mean(a == b)), float(np.mean(((a ^ b) >> shift) == 0))


class FamilyMatcher:
    """Decides a new repo's family and base, and gives the ingest its base tensors."""

    def __init__(self, vault, reader) -> None:
        self.vault = vault
        self.reader = reader

    def decide(self, repo_name: str, prof: Profile) -> Decision:
        with self.vault.catalog.read_session() as s:
            for named in prof.card_bases:
                base = s.scalar(select(Repo).where(Repo.name == named))
                if base is not None and base.name != repo_name:
                    return Decision(self._family_name(s, base), base.name, f"card base_model: {named}")
            if not prof.tensors:
                return Decision(repo_name, None, "no tensors: a family of its own")
            conds = [Repo.tensor_signature == prof.tensor_signature]
            if prof.config_signature:
                conds.append(Repo.config_signature == prof.config_signature)
            candidates = s.scalars(select(Repo).where(or_(*conds), Repo.name != repo_name)
                                   .order_by(Repo.id).limit(MAX_CANDIDATES)).all()
            if not candidates:  # one shard of a sharded upload, or a repo with extra tensors
                candidates = self._by_tensor_names(s, repo_name, prof)
            scored = []
            for cand in candidates:
                exact, high = self._score(s, cand, prof)
                scored.append((high, exact, -self._depth(s, cand), cand))
            scores = {c.name: round(h, 4) for h, _, _, c in scored}
            if scored:
                high, exact, _, best = max(scored, key=lambda t: t[:3])
                if high >= SIMILAR_ENOUGH:
                    return Decision(self._family_name(s, best), best.name,
                                    f"same architecture; {high:.1%} of sampled values agree in sign and exponent "
                                    f"with {best.name} ({exact:.1%} identical)", scores)
            found, sampled, repo = self._by_fingerprint(s, repo_name, prof)
            if repo is not None and found * 2 >= sampled:
                return Decision(self._family_name(s, repo), repo.name,
                                f"{found} of {sampled} sampled tensors found by fingerprint in {repo.name} "
                                "(renamed, reordered or renumbered)", scores)
            return Decision(repo_name, None, "no similar repo stored: a family of its own", scores)

    def _by_fingerprint(self, session, repo_name: str, prof: Profile) -> tuple[int, int, Repo | None]:
        """(tensors found, tensors sampled, the repo holding most of them) for the largest float tensors
        of ``prof``, whatever their names: a distilled model's renumbered layers, keys of another scheme."""
        local = sorted((t for t in prof.tensors.values() if t.dtype in fingerprints.FLOAT_DTYPES),
                       key=lambda t: t.start - t.end)[:SAMPLE_TENSORS]
        found: dict[int, set[int]] = {}  # sampled tensor -> ids of the objects it matches
        for i, t in enumerate(local):
            ours = fingerprints.of(mapped(t), t.dtype)
            if ours is None:
                continue
            hits = {h.object_id for h in fingerprints.lookup(session, ours) if h.fingerprint is not None
                    and fingerprints.score(ours, h.fingerprint, t.dtype)[0] >= fingerprints.SIMILAR_ENOUGH}
            if hits:
                found[i] = hits
        if not found:
            return 0, len(local), None
        votes: dict[int, set[int]] = {}
        for i, hits in found.items():
            for repo_id in session.scalars(
                    select(Ref.repo_id).distinct().join(TreeEntry, TreeEntry.commit_id == Ref.commit_id)
                    .join(Segment, Segment.file_id == TreeEntry.file_id).where(Segment.object_id.in_(hits))):
                votes.setdefault(repo_id, set()).add(i)
        ranked = sorted(((len(v), -rid) for rid, v in votes.items()), reverse=True)
        for n, neg_id in ranked:
            repo = session.get(Repo, -neg_id)
            if repo is not None and repo.name != repo_name:
                return n, len(local), repo
        return 0, len(local), None

    def _by_tensor_names(self, session, repo_name: str, prof: Profile) -> list[Repo]:
        """Repos whose branch heads hold tensors of the same names (a sample of ours)."""
        names = sorted(prof.tensors)[:64]
        hits = func.count(distinct(Segment.name))
        rows = session.execute(
            select(Repo, hits).join(Ref, Ref.repo_id == Repo.id).join(TreeEntry, TreeEntry.commit_id == Ref.commit_id)
            .join(Segment, Segment.file_id == TreeEntry.file_id)
            .where(Segment.name.in_(names), Repo.name != repo_name)
            .group_by(Repo.id).order_by(hits.desc(), Repo.id).limit(MAX_CANDIDATES)).all()
        return [repo for repo, n in rows if n >= len(names) // 2]

    def _family_name(self, session, repo: Repo) -> str:
        fam = session.get(Family, repo.family_id) if repo.family_id else None
        return fam.name if fam else repo.name

    def _depth(self, session, repo: Repo) -> int:
        depth, seen = 0, {repo.id}
        while repo.base_repo_id and repo.base_repo_id not in seen:
            seen.add(repo.base_repo_id)
            repo = session.get(Repo, repo.base_repo_id)
            depth += 1
        return depth

    def _score(self, session, cand: Repo, prof: Profile) -> tuple[float, float]:
        stored = stored_tensors(session, cand.id)
        match = NameMatcher(stored)
        pairs = [(n, m) for n in prof.tensors if (m := match(n)) is not None]
        common = sorted(pairs, key=lambda p: -stored[p[1]].raw_size)[:SAMPLE_TENSORS]
        # Their frame lists in a few queries, not two or four per sampled tensor as object_range
        # asked them one by one: 50 catalog round trips, 88 of the 151 ms the FP32 fine-tune's
        # decision took against five stored candidates.
        self.reader.prefetch(stored[stored_name].object_id for _, stored_name in common)
        exact_sum = high_sum = 0.0
        for name, stored_name in common:
            local, base = prof.tensors[name], stored[stored_name]
            m_bits = cast_bits(_read(local, SAMPLE_BYTES), local.dtype, local.dtype)
            if m_bits is None:
                continue
            ratio = safetensors.DTYPE_BITS.get(base.dtype or "", 8) // safetensors.DTYPE_BITS[local.dtype]
            want = min(base.raw_size, len(m_bits) * m_bits.itemsize * max(ratio, 1))
            b_bits = cast_bits(self.reader.object_range(base.object_id, 0, want), base.dtype, local.dtype)
            if b_bits is None:
                continue
            exact, high = similarity(m_bits, b_bits)
            exact_sum, high_sum = exact_sum + exact, high_sum + high
        n = len(common) or 1
        return exact_sum / n, high_sum / n

    def base_for(self, base_repo: str | None, codec: str = "xor", *, repo: str | None = None,
                 revision: str = "main", prof: Profile | None = None):
        """The ingest's callback: (path, name, dtype, shape, data) -> BaseCandidate or None.

        A tensor's candidates: the tensor its name stands for (NameMatcher) in ``base_repo`` and in
        ``repo``'s branch ``revision`` as stored so far (its previous revision), and every stored
        tensor sharing a fingerprint band with it (dedup/fingerprints.py): of its family, of the
        repo's earlier revisions, of any repo, under any name, dtype or container. The one whose
        fingerprint predicts it best wins (named ones need not pass the similarity bar: a delta that
        does not pay is dropped by choice.py anyway); chains at the depth limit are never candidates.
        The tensors ``prof`` lists (safetensors files) are looked up now, in one session: a session per
        tensor cost 1.3 ms of each lookup."""
        looked_up: dict[bytes, list[fingerprints.Hit]] = {}
        files: dict[Path, memoryview] = {}  # each mapped once, not once per tensor
        with self.vault.catalog.read_session() as s:
            for t in prof.tensors.values() if prof else ():
                whole = files.get(t.path)
                if whole is None:
                    whole = files[t.path] = _map_file(t.path)
                fp = fingerprints.of(whole[t.start:t.end], t.dtype)
                if fp is not None and fp not in looked_up:
                    looked_up[fp] = fingerprints.lookup(s, fp)
            named = []
            for label, name, rev in ((base_repo, base_repo, "main"), ("previous revision", repo, revision)):
                row = s.scalar(select(Repo).where(Repo.name == name)) if name else None
                if row is not None:
                    stored = stored_tensors(s, row.id, rev)
                    named.append((label, stored, NameMatcher(stored)))
            ids = [t.object_id for _, stored, _ in named for t in stored.values()]
            prints = {i: fp for at in range(0, len(ids), PREFETCH_BATCH)
                      for i, fp in s.execute(select(Object.id, Object.fingerprint)
                                             .where(Object.id.in_(ids[at:at + PREFETCH_BATCH])))}
        # Every named tensor's frame list in two queries, not two per tensor (46 lookups cost
        # 0.39 s of a 1.6 s ingest of the BF16 cast).
        self.reader.prefetch(ids)
        mechanism = "checkpoint_delta" if codec == "ckpt" else "family_delta"

        def lookup(rel, name, dtype, shape, data):
            if dtype not in fingerprints.FLOAT_DTYPES:
                return None
            ours = fingerprints.of(data, dtype)
            candidates: dict[int, tuple[StoredTensor, str, bool]] = {}  # object id -> (tensor, why, named)
            for label, stored, match in named if name is not None else ():
                t = stored.get(match(name))
                if t is not None:
                    candidates.setdefault(t.object_id, (t, f"{label}:{match(name)}", True))
            hits = looked_up.get(ours) if ours is not None else []
            if hits is None:
                with self.vault.catalog.read_session() as s:
                    hits = fingerprints.lookup(s, ours)
            for h in hits:
                prints.setdefault(h.object_id, h.fingerprint)
                candidates.setdefault(h.object_id, (StoredTensor(h.object_id, h.digest, h.dtype, h.raw_size, h.depth),
                                                    f"fingerprint match {h.digest[:12]}", False))
            best, best_key = None, None
            elems = fingerprints.elements(len(data), dtype)
            row = math.prod(shape[1:]) if shape else 0
            for oid, (t, why, is_named) in candidates.items():
                n = fingerprints.elements(t.raw_size, t.dtype)
                # Same size, or our first rows (a vocabulary grown by added tokens): content.py then
                # codes the rows they share against it and the added rows alone.
                whole = n == elems
                if t.depth >= MAX_DEPTH or not (whole or (row and 0 < n < elems and n % row == 0)):
                    continue
                theirs = prints.get(oid)
                mine = ours if whole else fingerprints.of(data[:n * fingerprints.BITS[dtype] // 8], dtype)
                if mine is None or theirs is None:
                    agree, lead = 0.0, -1.0  # stored before fingerprints: usable by name, ranked last
                else:
                    agree, lead = fingerprints.score(mine, theirs, dtype)
                if not is_named and agree < fingerprints.SIMILAR_ENOUGH:
                    continue
                # A narrower stored tensor that predicts us best is most likely our own cast (a BF16
                # copy of these FP32 weights that arrived first): coding us against it leaves our low
                # mantissa bits as costly as ever, while the cast re-coded against us (rebase) costs
                # nothing: 287 KB for the pair against 298 KB the other way (tests/test_rebase.py's
                # family). So it is used only when no candidate of our width or wider qualifies.
                wide_enough = fingerprints.BITS[t.dtype] >= fingerprints.BITS[dtype]
                key = (whole, wide_enough, lead, -t.depth, is_named)
                if best_key is None or key > best_key:
                    best, best_key = (t, why), key
            if best is None:
                return None
            t, why = best
            # Decoded by the encode thread that codes against it: read here, it was this thread's
            # wait for each tensor of a family member.
            read = partial(self.reader.object_range, t.object_id, 0, t.raw_size)
            return BaseCandidate(t.digest, t.dtype, t.depth, read, codec, why, mechanism, size=t.raw_size)

        return lookup


class NameMatcher:
    """A new tensor name -> the stored tensor name it stands for: the same name, or the same after
    dropping leading dotted parts on either side (``bert.encoder.layer.0.x`` ~ ``encoder.layer.0.x``,
    a model saved by another class). Suffixes of fewer than two parts (``weight``) or held by
    several stored names never match."""

    def __init__(self, stored_names) -> None:
        self.names = set(stored_names)
        self.by_suffix: dict[str, str | None] = {}
        for name in self.names:
            parts = name.split(".")
            for i in range(1, len(parts) - 1):
                suffix = ".".join(parts[i:])
                self.by_suffix[suffix] = None if suffix in self.by_suffix else name

    def __call__(self, name: str) -> str | None:
        if name in self.names:
            return name
        parts = name.split(".")
        for i in range(len(parts) - 1):
            suffix = ".".join(parts[i:])
            if suffix in self.names:
                return suffix
            if (hit := self.by_suffix.get(suffix)) is not None:
                return hit
        return None


def _read(t: LocalTensor, limit: int) -> bytes:
    with open(t.path, "rb") as f:
        f.seek(t.start)
        return f.read(min(limit, t.end - t.start))


def mapped(t: LocalTensor) -> memoryview:
    """A tensor's bytes, mapped (a fingerprint touches 32 of its elements, not all of them)."""
    return _map_file(t.path)[t.start:t.end]


def _map_file(path: Path) -> memoryview:
    with open(path, "rb") as f:
        return memoryview(mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ))


def family_of(session, repo_name: str) -> str:
    repo = session.scalar(select(Repo).where(Repo.name == repo_name))
    if repo is None:
        from .commits import RepoNotFound

        raise RepoNotFound(name=repo_name)
    fam = session.get(Family, repo.family_id) if repo.family_id else None
    return fam.name if fam else repo.name


def record(session, repo: Repo, decision: Decision, prof: Profile) -> None:
    """Inside the ingest's transaction: put the repo in its family (creating the family if new)."""
    fam = session.scalar(select(Family).where(Family.name == decision.family))
    if fam is None:
        fam = Family(name=decision.family, base_repo_id=None if decision.base_repo else repo.id)
        session.add(fam)
        session.flush()
    repo.family_id = fam.id
    repo.family_reason = decision.reason
    repo.base_repo_id = session.scalar(select(Repo.id).where(Repo.name == decision.base_repo)) if decision.base_repo else None
    repo.tensor_signature = prof.tensor_signature
    repo.config_signature = prof.config_signature
    if fam.base_repo_id is None and decision.base_repo is None:
        fam.base_repo_id = repo.id
