"""The catalog schema: what a repository holds and where every byte of it lives.

A revision's tree maps paths to content-addressed ``File`` rows. A file is
rebuilt from ordered ``Segment`` rows: inline bytes (a safetensors header) or
a reference to an ``Object``, a content-addressed run of bytes (one tensor, or
an opaque blob such as a tokenizer). An object is coded as ``Frame`` rows, each
an opaque entry in an immutable ``Pack``. The catalog names codecs but never
interprets frames: that is the codec layer's job.
"""
from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    pass


class Family(Base):
    """Repositories whose tensors predict each other; members are delta-coded against ``base_repo_id``."""

    __tablename__ = "families"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: Not a foreign key (repos and families point at each other); ``rm`` clears it.
    base_repo_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Repo(Base):
    __tablename__ = "repos"
    __table_args__ = (UniqueConstraint("kind", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="model")  # model | dataset | space
    name: Mapped[str] = mapped_column(String(200))  # "org/name"
    private: Mapped[bool] = mapped_column(default=False)
    family_id: Mapped[int | None] = mapped_column(ForeignKey("families.id", ondelete="SET NULL"))
    #: Why the repo joined its family ("card base_model", "config + tensor shapes", ...).
    family_reason: Mapped[str | None] = mapped_column(Text)
    #: The repo whose tensors this repo's tensors were delta-coded against, if any.
    base_repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="SET NULL"))
    #: sha1 of the sorted (tensor name, shape) list: repos sharing it are family candidates.
    tensor_signature: Mapped[str | None] = mapped_column(String(40), index=True)
    #: sha1 of the architecture-defining config fields (model_type, sizes, layers).
    config_signature: Mapped[str | None] = mapped_column(String(40), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Commit(Base):
    __tablename__ = "commits"
    __table_args__ = (UniqueConstraint("repo_id", "oid"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), index=True)
    oid: Mapped[str] = mapped_column(String(40))  # 40-hex, as a hub shows it
    parent_oid: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str] = mapped_column(Text, default="")
    #: The user of the token that made the commit (None for ``weightvault ingest`` and mirror fetches).
    author: Mapped[str | None] = mapped_column(String(96))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Ref(Base):
    """A branch: a name (``main``, ``dev/v1``, ``refs/pr/1``) pointing at a commit."""

    __tablename__ = "refs"
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    commit_id: Mapped[int] = mapped_column(ForeignKey("commits.id", ondelete="CASCADE"))


class Tag(Base):
    """A tag: a name (``v1.0``) fixed on a commit. Kept apart from branches: commits never move it."""

    __tablename__ = "tags"
    repo_id: Mapped[int] = mapped_column(ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    commit_id: Mapped[int] = mapped_column(ForeignKey("commits.id", ondelete="CASCADE"))
    message: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TreeEntry(Base):
    """One path of one commit."""

    __tablename__ = "tree_entries"
    commit_id: Mapped[int] = mapped_column(ForeignKey("commits.id", ondelete="CASCADE"), primary_key=True)
    path: Mapped[str] = mapped_column(String(1024), primary_key=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="RESTRICT"), index=True)


class File(Base):
    """Whole-file content, stored once whatever the number of paths and repos holding it."""

    __tablename__ = "files"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    git_sha1: Mapped[str] = mapped_column(String(40))  # the hub's ETag for small files; "" for LFS-size ones
    size: Mapped[int] = mapped_column(BigInteger)
    format: Mapped[str] = mapped_column(String(32), default="blob")  # safetensors | torch-zip | blob
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Segment(Base):
    """A contiguous run of a file: either ``inline`` bytes or ``length`` bytes of an object
    from ``object_offset`` (a whole tensor, or a run of chunks another file stored first)."""

    __tablename__ = "segments"
    file_id: Mapped[int] = mapped_column(ForeignKey("files.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    offset: Mapped[int] = mapped_column(BigInteger)
    length: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str | None] = mapped_column(String(512))  # tensor name, for reports
    inline: Mapped[bytes | None] = mapped_column(LargeBinary)
    object_id: Mapped[int | None] = mapped_column(ForeignKey("objects.id", ondelete="RESTRICT"), index=True)
    object_offset: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class Object(Base):
    """A content-addressed run of bytes (a tensor or an opaque blob), coded into frames."""

    __tablename__ = "objects"
    #: Ids are never reused (readers cache frame lists by object id for a while).
    __table_args__ = {"sqlite_autoincrement": True}
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the raw bytes
    kind: Mapped[str] = mapped_column(String(16))  # tensor | blob
    dtype: Mapped[str | None] = mapped_column(String(16))
    shape: Mapped[str | None] = mapped_column(Text)  # JSON list
    raw_size: Mapped[int] = mapped_column(BigInteger)
    stored_size: Mapped[int] = mapped_column(BigInteger)
    codec: Mapped[str] = mapped_column(String(32))  # the coding path chosen (planes, xor, ckpt, zstd, raw)
    #: What the coding saved is credited to in reports: plane_coding, family_delta or checkpoint_delta.
    mechanism: Mapped[str] = mapped_column(String(32), default="plane_coding")
    base_id: Mapped[int | None] = mapped_column(ForeignKey("objects.id", ondelete="RESTRICT"), index=True)
    depth: Mapped[int] = mapped_column(Integer, default=0)  # base references followed to restore
    reason: Mapped[str | None] = mapped_column(Text)  # why this codec, for the report
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: A float tensor's content fingerprint (dedup/fingerprints.py: 32 sampled values, 128 bytes) and
    #: its four band keys, indexed, by which a new tensor finds this one as its base whatever its name.
    #: Recorded with the object like any column, so recover rebuilds the index without decoding.
    fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary)
    fp_band0: Mapped[int | None] = mapped_column(BigInteger, index=True)
    fp_band1: Mapped[int | None] = mapped_column(BigInteger, index=True)
    fp_band2: Mapped[int | None] = mapped_column(BigInteger, index=True)
    fp_band3: Mapped[int | None] = mapped_column(BigInteger, index=True)


class Chunk(Base):
    """A content-defined chunk of an object's raw bytes (codec/chunking.py), by Xet chunk hash:
    bytes of an opaque file that some object already holds are found here and referenced."""

    __tablename__ = "chunks"
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"), primary_key=True)
    raw_offset: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    length: Mapped[int] = mapped_column(Integer)
    #: Not unique: two objects may hold the same chunk (tensors are coded whole, never split by chunk).
    hash: Mapped[str] = mapped_column(String(64), index=True)


class Pack(Base):
    """An immutable file of frames in the object backend."""

    __tablename__ = "packs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: Set by gc when no frame refers to the pack; deleted after a grace period
    #: so that readers that resolved frames before it went away finish first.
    condemned_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Frame(Base):
    __tablename__ = "frames"
    __table_args__ = (Index("ix_frames_pack", "pack_id"),)
    object_id: Mapped[int] = mapped_column(ForeignKey("objects.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    raw_offset: Mapped[int] = mapped_column(BigInteger)
    raw_size: Mapped[int] = mapped_column(Integer)
    codec: Mapped[str] = mapped_column(String(32))
    pack_id: Mapped[int] = mapped_column(ForeignKey("packs.id", ondelete="RESTRICT"))
    pack_offset: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(Integer)


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    digest: Mapped[str] = mapped_column(String(64), unique=True)  # sha256 of the secret
    scope: Mapped[str] = mapped_column(String(8))  # read | write
    name: Mapped[str] = mapped_column(String(200), default="")
    #: Who the token speaks for: ``whoami``'s name and the author of the commits it makes.
    user: Mapped[str] = mapped_column(String(96), default="weightvault", server_default="weightvault")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: After this the token is refused everywhere (None: it never expires).
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    #: Space-separated repo patterns the token is limited to (``org/*``, ``org/name``); None: every repo.
    repos: Mapped[str | None] = mapped_column(Text)


class IngestEvent(Base):
    """One landed ingest or commit: what it brought and what it cost, for savings over time."""

    __tablename__ = "ingest_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repo_id: Mapped[int | None] = mapped_column(ForeignKey("repos.id", ondelete="SET NULL"))
    repo_name: Mapped[str] = mapped_column(String(200))
    commit_oid: Mapped[str] = mapped_column(String(40))
    raw_bytes: Mapped[int] = mapped_column(BigInteger)
    new_stored_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
