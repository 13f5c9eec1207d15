"""Read an archive's raw 512-byte tar headers, refuse what would hurt tarfile, and list its members.

tarfile reads a PAX extended header, or a GNU long name, into memory whole, at the size the header
declares (a 1 GiB long name took 8 GB of memory and 67 s), and CPython before 3.11.10 and 3.12.5 then
runs a backtracking regex over a PAX header (CVE-2024-6232: 80,000 digits cost 20 s of CPU). It follows
each extension header by recursing, so a long chain of them overflows the stack. This walk reads the
decompressed stream one block at a time, as ``TarFile.next`` does (same checksum, same number fields),
and refuses an extension header or a name over its limit, a malformed or sparse PAX header, a chain of
extension headers, too many members or too many bytes, naming the member. Only then does tarfile parse
a member: from the bounded bytes this walk holds in memory (``_parse``), never from the archive, so it
parses exactly what was checked, and its own reading of the member (size, PAX ``size``, which types
have data blocks) decides where the walk looks for the next header. The walk is also the one pass that
lists the members, with their offsets in the real stream, for extraction; the unpacking process's own
resource limits stay the backstop.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import re
import tarfile
from collections.abc import Callable
from pathlib import Path

from localmaker.errors import ArtifactError
from localmaker.model.archive_limits import ArchiveLimits

BLOCK = tarfile.BLOCKSIZE
_CHUNK = 1024 * 1024
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_GNU_LONG = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK)
_PAX_RECORD = re.compile(rb"([0-9]{1,20}) ([^=\n]+)=")  # bounded, anchored: linear time
_DIGIT_RUN = re.compile(rb"[0-9]+")
# Global PAX keywords that would change every later member's size or name: real tools never write them
# (git archive writes "comment"), and tarfile skips data by the header's size but reads by the global one.
_GLOBAL_REFUSED = (b"size", b"path", b"linkpath")


def shown(name: str, keep: int = 80) -> str:
    """A member's name for a refusal: whole if short, else both ends and its length.

    FailureReason holds 1,024 characters; a hostile name must not push the reason's end (the limit
    that was crossed) out of it.
    """
    if len(name) <= 2 * keep + 20:
        return repr(name)
    return f"{name[:keep] + '...' + name[-keep:]!r} ({len(name)} characters)"


def open_decompressed(archive: Path) -> io.BufferedIOBase:
    """The archive's tar stream, decompressed by its magic number as tarfile's ``r:*`` would."""
    with open(archive, "rb") as probe:
        magic = probe.read(6)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(archive, "rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(archive, "rb")
    if magic.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMAFile(archive, "rb")
    return open(archive, "rb")


def _number(field: bytes) -> int | None:
    """A numeric header field as tarfile's ``nti`` reads it (octal, or GNU base-256); None if invalid."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return -(256 ** (len(field) - 1) - value) if field[0] == 0xFF else value
    text = field.split(b"\0", 1)[0].strip()
    try:
        return int(text or b"0", 8)
    except ValueError:
        return None


def _checksum_ok(block: bytes) -> bool:
    """As tarfile's ``calc_chksums``: the unsigned sum, or (some old tars) the signed one."""
    stored = _number(block[148:156])
    unsigned = 256 + sum(block[:148]) + sum(block[156:])
    if stored == unsigned:
        return True
    high = sum(1 for b in block[:148] + block[156:] if b > 127)
    return stored == unsigned - 256 * high


def _text(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


class _Walk:
    """One pass over the stream; ``where`` names what is being read, for refusals and progress."""

    def __init__(self, archive: Path, stream: io.BufferedIOBase, limits: ArchiveLimits,
                 on_member: Callable[[str], None] | None) -> None:
        self.archive, self.stream, self.limits, self.on_member = archive, stream, limits, on_member
        self.offset = 0
        self.members: list[tarfile.TarInfo] = []
        self.global_headers = b""  # every global PAX header so far, replayed before each member's own

    def refuse(self, what: str, why: str) -> ArtifactError:
        return ArtifactError(f"refusing to unpack {self.archive}: {what} {why}")

    def read(self, size: int) -> bytes:
        data = self.stream.read(size)
        self.offset += len(data)
        return data

    def skip(self, size: int) -> bool:
        """Read past ``size`` bytes of data; False if the stream ends first (tarfile then fails too)."""
        while size > 0:
            got = len(self.read(min(size, _CHUNK)))
            if got == 0:
                return False
            size -= got
        return True

    def run(self) -> None:
        members, total, chain = 0, 0, 0
        pax: dict[bytes, bytes] = {}
        long_name: str | None = None
        raw: list[bytes] = []  # the member's extension headers and header, as read
        start = 0
        while True:
            at = self.offset
            block = self.read(BLOCK)
            if len(block) < BLOCK or block.count(0) == BLOCK or not _checksum_ok(block):
                if at == 0 and block.count(0) != len(block) or at == 0 and not block:
                    raise self.refuse("the file", "is not a tar archive (no valid header at byte 0)")
                return  # where TarFile.next stops too
            if not raw:
                start = at
            raw.append(block)
            kind, size = block[156:157], _number(block[124:136])
            name = long_name or _text(block[0:100])
            if size is None or size < 0:
                raise self.refuse(f"the header {shown(name)} at byte {at}", "has an invalid size field")
            if kind in _PAX_TYPES or kind in _GNU_LONG:
                chain += 1
                if chain > self.limits.max_extension_chain:
                    raise self.refuse(f"the header {shown(name)} at byte {at}",
                                      f"is extension header number {chain} in a row before a member, over the "
                                      f"limit of {self.limits.max_extension_chain}")
                if size > self.limits.max_header_bytes:
                    what = "PAX extended header" if kind in _PAX_TYPES else "GNU long-name header"
                    raise self.refuse(f"the {what} {shown(name)} at byte {at}",
                                      f"declares {size} bytes, over the {self.limits.max_header_bytes}-byte "
                                      f"limit on headers")
                padded = self.read(_padded(size))
                if len(padded) < _padded(size):
                    raise self.refuse(f"the header {shown(name)} at byte {at}",
                                      "is cut short: the archive is truncated")
                data = padded[:size]
                if kind in _GNU_LONG:
                    self._check_name(at, name, len(data.split(b"\0", 1)[0]))
                    if kind == tarfile.GNUTYPE_LONGNAME:
                        long_name = _text(data)
                else:
                    records = self._pax_records(at, name, data)
                    if kind == tarfile.XGLTYPE:
                        bad = [k.decode("utf-8", "replace") for k in records if k in _GLOBAL_REFUSED]
                        if bad:
                            raise self.refuse(f"the global PAX header at byte {at}",
                                              f"sets {bad[0]!r} for every member; that is not supported")
                        raw.pop()
                        if raw:  # the member's offsets would then count bytes its own headers lack
                            raise self.refuse(f"the global PAX header at byte {at}", "comes between a member's "
                                              "extension headers; that is not supported")
                        # Replayed before every member's own headers, so kept small (git writes 1 KiB).
                        self.global_headers += block + padded
                        if len(self.global_headers) > self.limits.max_global_header_bytes:
                            raise self.refuse(f"the global PAX header at byte {at}", f"takes the global headers "
                                              f"over the {self.limits.max_global_header_bytes}-byte limit")
                        continue
                    pax.update(records)
                raw.append(padded)
                continue
            name = pax.get(b"path", b"").decode("utf-8", "replace") or name
            if self.on_member is not None:
                self.on_member(name)
            members += 1
            if members > self.limits.max_members:
                raise self.refuse(f"member {shown(name)}", f"is one too many: more than {self.limits.max_members} "
                                  f"members; this looks like a tar bomb")
            if kind == tarfile.GNUTYPE_SPARSE:
                raise self.refuse(f"member {shown(name)}", "is a sparse file")
            # tarfile itself reads the bounded header bytes: its size (a PAX size included) and its rule
            # for which members have data blocks decide where the next header is, as they will later.
            member = self._parse(b"".join(raw), start, name)
            if member.size < 0:
                raise self.refuse(f"member {shown(name)}", "has a negative size")
            has_data = member.isreg() or member.type not in tarfile.SUPPORTED_TYPES
            if has_data:
                total += member.size
                if total > self.limits.max_total_bytes:
                    raise self.refuse(f"member {shown(name)}", f"takes the unpacked size over the "
                                      f"{self.limits.max_total_bytes}-byte cap (tar bomb?)")
            self.members.append(member)
            if has_data and not self.skip(_padded(member.size)):
                raise self.refuse(f"member {shown(name)}", "is cut short: the archive is truncated")
            pax, long_name, chain, raw = {}, None, 0, []

    def _parse(self, raw: bytes, start: int, name: str) -> tarfile.TarInfo:
        """tarfile's own TarInfo for header bytes this walk has bounded, with offsets into the real stream.

        tarfile parses them from memory, so it never reads the archive's headers itself: what it parses
        is exactly what was checked.
        """
        prefix = self.global_headers
        try:
            stub = tarfile.TarFile(fileobj=io.BytesIO(prefix + raw + b"\0" * (2 * BLOCK)), mode="r")
            member = stub.next()
        except tarfile.TarError as exc:
            raise self.refuse(f"member {shown(name)}", f"has a header tarfile cannot read: {exc}") from None
        if member is None:
            raise self.refuse(f"member {shown(name)}", "has a header tarfile cannot read")
        member.offset += start - len(prefix)
        member.offset_data += start - len(prefix)
        return member

    def _check_name(self, at: int, name: str, length: int) -> None:
        if length > self.limits.max_name_bytes:
            raise self.refuse(f"the name in header {shown(name)} at byte {at}",
                              f"is {length} bytes long, over the {self.limits.max_name_bytes}-byte limit on names")

    def _pax_records(self, at: int, name: str, data: bytes) -> dict[bytes, bytes]:
        """Parse ``data`` strictly ("LEN KEY=VALUE\\n", LEN counting the whole record), or refuse it."""
        where = f"the PAX extended header {shown(name)} at byte {at}"
        for run in _DIGIT_RUN.finditer(data):
            if run.end() - run.start() > self.limits.max_digit_run:
                raise self.refuse(where, f"holds a run of {run.end() - run.start()} digits, over the limit of "
                                  f"{self.limits.max_digit_run} (CVE-2024-6232)")
        records: dict[bytes, bytes] = {}
        pos = 0
        while pos < len(data) and data[pos] != 0:
            match = _PAX_RECORD.match(data, pos)
            length = int(match.group(1)) if match else 0
            end = pos + length
            if match is None or end > len(data) or match.end() > end or data[end - 1:end] != b"\n":
                raise self.refuse(where, f"has a malformed record at offset {pos}")
            key, value = match.group(2), data[match.end():end - 1]
            if key.startswith(b"GNU.sparse."):
                raise self.refuse(where, "describes a sparse file")
            if key in (b"path", b"linkpath"):
                self._check_name(at, name, len(value))
            records[key] = value
            pos = end
        return records


def prescan(archive: Path, limits: ArchiveLimits,
            on_member: Callable[[str], None] | None = None) -> list[tarfile.TarInfo]:
    """Every member of ``archive``, as tarfile's TarInfo, read in one pass over its headers.

    Refuses the archive (ArtifactError) if any header, name, count or size in it is over ``limits``.
    The members' offsets are those of the real stream, so ``TarFile.extractall`` can use them.
    """
    with open_decompressed(archive) as stream:
        walk = _Walk(archive, stream, limits, on_member)
        walk.run()
    return walk.members
