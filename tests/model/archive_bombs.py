"""Hostile archives, built header by header, for the unpacking tests (model and reliability).

Each is small on disk and costs a naive reader a lot: a PAX header that declares megabytes, a PAX record
of digits for CVE-2024-6232's regex, a GNU long name that declares a gibibyte, thousands of nested
folders, a gzip bomb, thousands of members, chains of symlinks and of extension headers.
"""

from __future__ import annotations

import io
import os
import tarfile
import zlib
from collections.abc import Iterable
from pathlib import Path

BLOCK = tarfile.BLOCKSIZE


def header(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0, linkname: str = "",
           fmt: int = tarfile.USTAR_FORMAT) -> bytes:
    """One raw 512-byte header, as tar writes it; ``size`` is only declared, no data follows."""
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, size, linkname, 0o644
    return info.tobuf(fmt, "utf-8", "surrogateescape")[:BLOCK]


def pad(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % BLOCK)


def pax_record(key: str, value: str) -> bytes:
    body = f" {key}={value}\n".encode()
    length = len(body) + 1
    while len(str(length)) + len(body) != length:
        length += 1
    return str(length).encode() + body


def member(name: str, data: bytes = b"ok") -> bytes:
    return header(name, size=len(data)) + pad(data)


def end() -> bytes:
    return b"\0" * (2 * BLOCK)


def gz(*parts: bytes | Iterable[bytes], level: int = 6) -> bytes:
    """Gzip the concatenation of ``parts``, streaming: a part may be a generator of chunks."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    out = []
    for part in parts:
        for chunk in ([part] if isinstance(part, bytes) else part):
            out.append(compressor.compress(chunk))
    out.append(compressor.flush())
    return b"".join(out)


def repeated(byte: bytes, total: int, chunk: int = 1 << 20) -> Iterable[bytes]:
    block = byte * chunk
    while total > 0:
        yield block[:min(chunk, total)]
        total -= chunk


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# -- the archives ------------------------------------------------------------------------------------


def huge_pax_header(path: Path, declared: int = 10_000_000) -> Path:
    """A PAX header of ``declared`` digits: the issue's 555-byte archive that froze the control plane."""
    return write(path, gz(header("PaxHeader/victim", tarfile.XHDTYPE, declared), repeated(b"0", declared),
                          b"\0" * (-declared % BLOCK), member("victim"), end(), level=9))


def cve_pax_record(path: Path, digits: int = 60_000) -> Path:
    """A well-formed PAX header under the size limit, one record of ``digits`` digits (CVE-2024-6232)."""
    record = pax_record("comment", "1" * digits)
    return write(path, gz(header("PaxHeader/victim", tarfile.XHDTYPE, len(record)), pad(record), member("victim"),
                          end()))


def gnu_long_name(path: Path, declared: int = 1 << 30, present: int = 1 << 20) -> Path:
    """A GNU long-name header declaring ``declared`` bytes, ``present`` of them really there."""
    return write(path, gz(header("././@LongLink", tarfile.GNUTYPE_LONGNAME, declared), repeated(b"a", present),
                          b"\0" * (-present % BLOCK), member("victim"), end(), level=1))


def nested_folders(path: Path, depth: int) -> Path:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        folder = ""
        for _ in range(depth):
            folder = f"{folder}d/"
            info = tarfile.TarInfo(folder.rstrip("/"))
            info.type = tarfile.DIRTYPE
            tf.addfile(info)
        info = tarfile.TarInfo(f"{folder}deepest.txt")
        info.size = 2
        tf.addfile(info, io.BytesIO(b"ok"))
    return write(path, buf.getvalue())


def gzip_bomb(path: Path, size: int) -> Path:
    """One member of ``size`` zero bytes: about a thousandth of that on disk."""
    return write(path, gz(header("weights.bin", size=size), repeated(b"\0", size), b"\0" * (-size % BLOCK), end(),
                          level=9))


def declared_bomb(path: Path, size: int) -> Path:
    """One member that declares ``size`` bytes (GNU base-256 past 8 GiB), with no data behind it."""
    return write(path, gz(header("weights.bin", size=size, fmt=tarfile.GNU_FORMAT), end()))


def many_members(path: Path, count: int) -> Path:
    return write(path, gz((header(f"f{i}") for i in range(count)), end(), level=1))


def symlink_chain(path: Path, length: int, last_target: str) -> Path:
    """``l0 -> l1 -> ... -> l{length-1} -> last_target``."""
    links = (header(f"l{i}", tarfile.SYMTYPE, linkname=f"l{i + 1}" if i < length - 1 else last_target)
             for i in range(length))
    return write(path, gz(member("target"), links, end()))


def extension_chain(path: Path, length: int) -> Path:
    """``length`` PAX headers in a row before one member: tarfile recurses once per header."""
    record = pax_record("comment", "x")
    return write(path, gz((header("PaxHeader/victim", tarfile.XHDTYPE, len(record)) + pad(record)
                           for _ in range(length)), member("victim"), end()))


def pax_with(path: Path, data: bytes, kind: bytes = tarfile.XHDTYPE) -> Path:
    return write(path, gz(header("PaxHeader/victim", kind, len(data)), pad(data), member("victim"), end()))


def unpack_children(parent: int | None = None) -> list[int]:
    """Pids of unpacking processes still alive (of ``parent``, if given), zombies excluded."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if b"localmaker.model.unpack_child" not in cmdline or fields[0] == "Z":
            continue
        if parent is None or int(fields[1]) == parent:
            found.append(int(entry.name))
    return [pid for pid in found if pid != os.getpid()]
