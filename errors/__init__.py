"""weightvault.errors: every exception the library raises, in one hierarchy.

Why a package of its own: data flows api -> dedup -> codec -> native and
dedup/api -> store; the codec must not import the store and the store must not
import the codec, yet both raise errors that the API answers over HTTP and the
CLI turns into exit codes. A base class in either would put an edge between
the two leaves, so the hierarchy lives here, in a module that imports nothing
of weightvault and that every layer may import.

Each class carries what the edges need, so there is no second table:

- ``template``: the message, formatted with the keyword fields given to the
  constructor (``RepoNotFound(name="org/x")``); a positional message is kept
  as is, for errors whose detail comes from elsewhere (a C why-string, a path).
- ``exit_code``: the CLI's exit status (api/cli/common.py ``user_errors``).
- ``http_status`` and ``hub_code``: the HTTP status and the hub's
  ``X-Error-Code`` (api/errors.py), which huggingface_hub maps to its own
  exception classes (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``).
- ``retry_after``: seconds a client should wait before retrying (503s only).

An instance may add HTTP ``headers`` of its own (the ``X-Repo-Commit`` of a missing
entry); status and code always come from the class.

Exit codes by area: 2 the request was wrong (as click's usage errors),
3 something named does not exist, 4 a conflict with a concurrent writer,
5 stored data is damaged or missing, 6 the token may not do this,
75 (sysexits EX_TEMPFAIL) run it again.
Classes also keep the builtin base they had (``LookupError``, ``ValueError``...)
so that ``except LookupError`` written against them keeps working.
"""
from __future__ import annotations

from typing import Iterator


class WeightvaultError(Exception):
    """Base of every weightvault error."""

    template = "{detail}"
    exit_code = 1
    http_status = 500
    hub_code = "InternalError"
    retry_after: int | None = None

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None, **fields) -> None:
        self.fields = fields
        self.headers = dict(headers or {})
        super().__init__(message if message is not None else self.template.format(**fields))

    @property
    def message(self) -> str:
        return str(self)


def hierarchy(root: type[WeightvaultError] = WeightvaultError) -> Iterator[type[WeightvaultError]]:
    """``root`` and every class below it (for tests and docs)."""
    yield root
    for sub in root.__subclasses__():
        yield from hierarchy(sub)


# ---- the caller asked for something invalid ------------------------------------------------

class UsageError(WeightvaultError, ValueError):
    """The request itself is wrong; repeating it will not help."""

    exit_code = 2
    http_status = 400
    hub_code = "BadRequest"


class InvalidBody(UsageError):
    """A request body, query or header that does not match its schema (the message names the fields)."""

    http_status = 422
    hub_code = "ValidationError"


class PayloadTooLarge(UsageError):
    """A request body over the route's limit, or longer than it announced."""

    http_status = 413
    hub_code = "PayloadTooLarge"


class MetadataTooLarge(UsageError):
    """A model card or config.json whose parsed YAML/JSON is too large or too deep to keep."""

    template = "metadata is too large or too deep"
    http_status = 413
    hub_code = "MetadataTooLarge"


class InvalidName(UsageError):
    """A repo name, revision or path the hub would refuse (or that could escape the store)."""

    hub_code = "InvalidName"


class FormatError(UsageError):
    """A file named or marked as a container (safetensors, gguf, npy, torch zip, onnx) that does not
    parse. Ingest stores such a file as opaque bytes; only a parser called directly raises it."""

    hub_code = "BadFormat"


class SafetensorsError(FormatError):
    """A file named .safetensors whose header does not describe its bytes."""

    hub_code = "BadSafetensors"


class CompressedEntry(FormatError):
    """A valid zip whose entries are deflated (savez_compressed): its entries cannot be split."""


class RangeNotSatisfiable(UsageError):
    """A Range header that selects no byte of the file."""

    template = "range {header!r} selects no byte of the file"
    http_status = 416
    hub_code = "RangeNotSatisfiable"


class ChecksumMismatch(UsageError):
    """Uploaded bytes that do not hash to the sha256 they were announced or committed with."""

    hub_code = "ChecksumMismatch"


class XetError(UsageError):
    """Xet CAS input (huggingface/xet-core ``spec/``) that does not verify: answered 400, as the spec says."""

    hub_code = "BadXet"


class BadXorb(XetError):
    """A xorb body that is malformed, or whose chunks do not hash to the name it was sent under."""

    hub_code = "BadXorb"


class BadShard(XetError):
    """A shard that is malformed, or whose files' terms disagree with the xorbs they name."""

    hub_code = "BadShard"


class XetContentMissing(XetError):
    """A shard or commit names a xorb or file this token never uploaded through Xet, or whose bytes are gone."""

    hub_code = "XetContentMissing"


class XetStagingFull(UsageError):
    """One token has more Xet uploads waiting for a commit than the server holds for it."""

    http_status = 413
    hub_code = "XetStagingFull"


# ---- something named does not exist --------------------------------------------------------

class NotFound(WeightvaultError, LookupError):
    """Something the request names (repo, revision, family, file) does not exist."""

    exit_code = 3
    http_status = 404
    hub_code = "NotFound"


class RepoNotFound(NotFound):
    template = "repository {name!r} not found"
    hub_code = "RepoNotFound"


class RevisionNotFound(NotFound):
    template = "revision {revision!r} not found in {name!r}"
    hub_code = "RevisionNotFound"


class EntryNotFound(NotFound):
    """A path the revision does not hold (a commit that deletes it, a download)."""

    hub_code = "EntryNotFound"


class FamilyNotFound(NotFound):
    template = "no family named {name!r}; `weightvault families` lists them"
    hub_code = "FamilyNotFound"


class UploadNotFound(NotFound):
    """A multipart upload id that was never started, or that has no parts."""

    hub_code = "UploadNotFound"


class LfsObjectNotFound(NotFound):
    """An LFS object a verify request names that was never uploaded."""

    hub_code = "ObjectNotFound"


class ChunkNotFound(NotFound):
    """A Xet chunk hash no stored file holds (global dedup query)."""

    hub_code = "ChunkNotFound"


class UpstreamMissing(NotFound):
    """The upstream hub of a mirror has no such repo or revision either."""

    hub_code = "RepoNotFound"


# ---- the caller's token may not do this ----------------------------------------------------

class AccessDenied(WeightvaultError):
    """The token presented may not do this (read-only token, another repo, a bad signed URL)."""

    exit_code = 6
    http_status = 403
    hub_code = "Forbidden"


class Unauthorized(AccessDenied):
    """No valid token was presented where one is required (missing, revoked or expired)."""

    http_status = 401
    hub_code = "Unauthorized"


class LoginRequired(Unauthorized):
    """A dashboard page needs a read token: the page answers with the login form, not JSON."""

    template = "a read token is required"


# ---- a concurrent writer got there first ---------------------------------------------------

class ConflictError(WeightvaultError):
    """A concurrent writer changed what this request was based on."""

    exit_code = 4
    http_status = 409
    hub_code = "Conflict"


class CommitConflict(ConflictError):
    """The branch moved since the caller's parent commit (412 Precondition Failed, as on the hub)."""

    template = "{revision!r} is at {current}, not {expected}"
    http_status = 412
    hub_code = "CommitConflict"


class RepoExists(ConflictError):
    """A repo of that name already exists (REST create without exist_ok)."""

    hub_code = "RepoExists"


class TryAgain(ConflictError):
    """A concurrent gc removed something this write relied on; the same request will succeed.

    Answered 503 with Retry-After: hub clients retry those on their own."""

    exit_code = 75
    http_status = 503
    hub_code = "Retry"
    retry_after = 1


class Busy(TryAgain):
    """Every slot for uploads and commits is taken; hub clients retry a 503 on their own."""

    hub_code = "Busy"
    retry_after = 5


class StaleReference(TryAgain):
    """Something this ingest reused was removed by a concurrent gc; run it again."""


class PackClaimLost(TryAgain):
    template = "a pack written by this ingest was collected before it committed; run the ingest again"


# ---- stored data is damaged or missing -----------------------------------------------------

class StorageError(WeightvaultError):
    """The store cannot give back what it holds; ``weightvault verify`` says how much is affected."""

    exit_code = 5
    http_status = 500
    hub_code = "StorageError"

    @property
    def message(self) -> str:
        return f"stored content could not be read: {self}"


class ObjectMissing(StorageError, KeyError):
    """The object backend has no object of that name (or it is shorter than the catalog says)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return Exception.__str__(self)


class PackCorrupt(StorageError):
    """A pack's header, an entry header, length or CRC does not match."""


class IntegrityError(StorageError):
    """Restored bytes do not match what was stored; the message names the file, object or frame."""


class RecoverError(StorageError):
    """The object store does not hold what ``weightvault recover`` needs (the message says what)."""


# ---- the codec ------------------------------------------------------------------------------

class CodecError(StorageError, ValueError):
    """A frame or container cannot be coded or decoded; the message says why.

    Raised while decoding stored frames, so it is a storage error to a client; the
    subclasses below name the cause (the C library's codes map to them one to one).
    """


class CorruptFrame(CodecError):
    """Header, payload or checksum of a frame is inconsistent (damaged or hostile bytes)."""


class MissingBase(CodecError):
    """A delta frame was coded or decoded without the base tensor it is predicted from."""


class UnknownCodec(CodecError):
    """A frame names a codec id this build does not know (written by a newer release?)."""


class UnsupportedCast(CodecError):
    """No prediction from the base's dtype to the tensor's dtype."""


class UnknownDtype(CodecError):
    """A dtype name that is neither a safetensors, numpy nor torch name."""

    template = "unknown dtype {dtype!r}: use a safetensors (BF16), numpy (bfloat16) or torch (torch.bfloat16) name"


class CodecMisuse(CodecError):
    """The caller broke the codec API's contract (buffer sizes, modes): a bug, not bad data."""


class CodecOutOfMemory(CodecError, MemoryError):
    """The C library could not allocate its scratch buffers."""
