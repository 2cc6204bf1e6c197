"""Stored (uncompressed) zip archives, as torch.save and np.savez write them: where each
entry's bytes sit, checked before anything is trusted (encrypted or compressed entries,
sizes or offsets outside the file, overlapping entries raise FormatError)."""
from __future__ import annotations

import struct
from typing import NamedTuple

from weightvault.errors import CompressedEntry, FormatError


_EOCD = b"PK\x05\x06"
_EOCD64 = b"PK\x06\x06"
_EOCD64_LOC = b"PK\x06\x07"
_CENTRAL = b"PK\x01\x02"
_LOCAL = b"PK\x03\x04"
_MAX_COMMENT = 0xFFFF


class Entry(NamedTuple):
    name: str
    header_offset: int
    data_offset: int
    size: int


def _u(fmt: str, data: bytes, offset: int, what: str) -> tuple:
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(data):
        raise FormatError(f"zip: {what} at byte {offset} runs past the end of the file ({len(data)} bytes)")
    return struct.unpack_from(fmt, data, offset)


def _find_eocd(data: bytes) -> int:
    start = max(0, len(data) - 22 - _MAX_COMMENT)
    pos = data.rfind(_EOCD, start)
    while pos >= 0:
        (comment_len,) = _u("<H", data, pos + 20, "end of central directory")
        if pos + 22 + comment_len == len(data):
            return pos
        pos = data.rfind(_EOCD, start, pos)
    raise FormatError("zip: no end-of-central-directory record (not a zip file, or truncated)")


def _central_directory(data: bytes) -> tuple[int, int, int]:
    """(offset, size, entry count) of the central directory, zip64-aware."""
    eocd = _find_eocd(data)
    _, disk, cd_disk, n_disk, n_total, cd_size, cd_offset, _ = _u("<4sHHHHIIH", data, eocd, "EOCD")
    if disk != 0 or cd_disk != 0 or n_disk != n_total:
        raise FormatError("zip: multi-disk archives are not supported")
    if eocd >= 20 and data[eocd - 20:eocd - 16] == _EOCD64_LOC:
        _, _, rec_offset, _ = _u("<4sIQI", data, eocd - 20, "zip64 EOCD locator")
        sig, _, _, _, disk, cd_disk, n_disk, n_total, cd_size, cd_offset = _u(
            "<4sQHHIIQQQQ", data, rec_offset, "zip64 EOCD record")
        if sig != _EOCD64:
            raise FormatError(f"zip: zip64 EOCD locator points at byte {rec_offset}, which is no zip64 record")
        if disk != 0 or cd_disk != 0 or n_disk != n_total:
            raise FormatError("zip: multi-disk archives are not supported")
        end = rec_offset
    else:
        end = eocd
    if cd_offset + cd_size > end:
        raise FormatError(f"zip: central directory ({cd_offset}+{cd_size}) runs past its end record at {end}")
    return cd_offset, cd_size, n_total


def _zip64_extra(extra: bytes, want: list[str], values: dict[str, int]) -> None:
    """Fill the 0xFFFFFFFF fields named in ``want`` from the zip64 extra field."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4:pos + 4 + size]
        if tag == 0x0001:
            if len(body) < 8 * len(want):
                raise FormatError("zip: zip64 extra field too short")
            for i, field in enumerate(want):
                (values[field],) = struct.unpack_from("<Q", body, 8 * i)
            return
        pos += 4 + size
    if want:
        raise FormatError("zip: 32-bit size or offset is 0xFFFFFFFF but no zip64 extra field")


def entries(data, what: str = "zip") -> list[Entry]:
    """The stored entries of a zip; FormatError (prefixed ``what``) for an encrypted or compressed entry,
    a size or offset outside the file, or overlapping entries."""
    try:
        return _entries(data)
    except ValueError as exc:  # CompressedEntry stays itself; a ValueError of a decode becomes a FormatError
        cls = type(exc) if isinstance(exc, FormatError) else FormatError
        raise cls(f"{what}: {str(exc).removeprefix('zip: ')}") from None


def _entries(data) -> list[Entry]:
    cd_offset, cd_size, count = _central_directory(data)
    entries, pos, cd_end = [], cd_offset, cd_offset + cd_size
    for i in range(count):
        (sig, _, _, flags, method, _, _, _, csize, usize, nlen, elen, clen, _, _, _,
         hoff) = _u("<4sHHHHHHIIIHHHHHII", data, pos, f"central directory entry {i}")
        if sig != _CENTRAL:
            raise FormatError(f"zip: central directory entry {i} at byte {pos} has a bad signature")
        if pos + 46 + nlen + elen + clen > cd_end:
            raise FormatError(f"zip: central directory entry {i} runs past the directory")
        raw_name = data[pos + 46:pos + 46 + nlen]
        name = raw_name.decode("utf-8", "replace")
        extra = data[pos + 46 + nlen:pos + 46 + nlen + elen]
        if flags & 0x41:
            raise FormatError(f"zip: entry {name!r} is encrypted")
        if method != 0:
            raise CompressedEntry(f"zip: entry {name!r} is compressed (method {method}); only stored entries are split")
        values = {"usize": usize, "csize": csize, "hoff": hoff}
        _zip64_extra(extra, [f for f in ("usize", "csize", "hoff") if values[f] == 0xFFFFFFFF], values)
        if values["usize"] != values["csize"]:
            raise FormatError(f"zip: stored entry {name!r} has different sizes ({values['csize']} vs {values['usize']})")
        hoff = values["hoff"]
        (lsig, _, _, _, _, _, _, _, _, lnlen, lelen) = _u("<4sHHHHHIIIHH", data, hoff, f"local header of {name!r}")
        if lsig != _LOCAL:
            raise FormatError(f"zip: entry {name!r}: no local header at byte {hoff}")
        if data[hoff + 30:hoff + 30 + lnlen] != raw_name:
            raise FormatError(f"zip: entry {name!r}: local header names another file")
        start = hoff + 30 + lnlen + lelen
        if start + values["csize"] > cd_offset:
            raise FormatError(f"zip: entry {name!r} ({start}+{values['csize']}) runs into the central directory "
                             f"at {cd_offset} or past the file")
        entries.append(Entry(name, hoff, start, values["csize"]))
        pos += 46 + nlen + elen + clen
    spans = sorted(entries, key=lambda e: e.header_offset)
    for a, b in zip(spans, spans[1:]):
        if a.data_offset + a.size > b.header_offset:
            raise FormatError(f"zip: entries {a.name!r} and {b.name!r} overlap")
    return entries
