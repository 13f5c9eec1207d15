"""Unpack a model.tar.gz without trusting it.

A model archive comes from S3 and may have been built by anyone, so it is judged as a whole before a
single byte is written: paths that escape the destination, links that point outside it, device files
and FIFOs, and archives too large or with too many members (tar bombs) are all refused, naming the
member. Links are judged by name, which is only sound while no name goes through another link: so a
member whose path lies under a link of the same archive, and a link whose target goes through (or
ends at a symlink among) the archive's other links, are refused too, whatever their order in it.
That judging alone keeps extraction inside the destination, on every Python. Extraction then goes
to a temp dir beside the destination and is renamed into place, so a failure half-way (a corrupt
stream, a full disk) leaves nothing behind. ``filter="data"`` is passed as well, as defence in
depth, where the running Python supports it (3.10.12+, 3.11.4+).

Parsing an untrusted archive can itself be the attack (a PAX header that sends CPython's regex into
quadratic time while it holds the interpreter lock, a long name that declares a gigabyte, a tree deep
enough to exhaust recursion), so :func:`unpack` does all of the above in a child process with limits
on CPU, wall time and memory (``unpack_sandbox``), after ``tar_prescan`` has bounded every header and
name before tarfile reads them. :func:`unpack_here` is the part that runs in that child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import posixpath
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from localmaker.errors import ArtifactError, ConfigurationError
from localmaker.model.archive_limits import DEFAULT_LIMITS, ArchiveLimits
from localmaker.model.tar_prescan import prescan, shown
from localmaker.model.unpack_sandbox import unpack_in_child

logger = logging.getLogger(__name__)

DEFAULT_MAX_TOTAL_BYTES = DEFAULT_LIMITS.max_total_bytes
DEFAULT_MAX_MEMBERS = DEFAULT_LIMITS.max_members

_HAS_DATA_FILTER = hasattr(tarfile, "data_filter")
_STREAM_ERRORS = (tarfile.TarError, EOFError, zlib.error, OSError)


def _normalise(name: str) -> str:
    """Archive-relative POSIX path of a member (``./a/b`` → ``a/b``, root entry → ``.``)."""
    return posixpath.normpath(name.replace("\\", "/")) if name else "."


def _is_outside(relpath: str) -> bool:
    return relpath == ".." or relpath.startswith("../") or posixpath.isabs(relpath)


def _refuse(archive: Path, member: tarfile.TarInfo, why: str) -> ArtifactError:
    return ArtifactError(f"refusing to unpack {archive}: member {shown(member.name)} {why}")


def judge_member(archive: Path, member: tarfile.TarInfo) -> None:
    """Raise ArtifactError if extracting ``member`` could write, or point, outside the destination."""
    raw = member.name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) > 1 and raw[1] == ":"):
        raise _refuse(archive, member, "has an absolute path")
    if ".." in raw.split("/"):
        raise _refuse(archive, member, "escapes the destination with '..'")
    name = _normalise(raw)
    if member.issym():
        target = member.linkname.replace("\\", "/")
        if target.startswith("/"):
            raise _refuse(archive, member, f"is a symlink to the absolute path {member.linkname!r}")
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
        if _is_outside(resolved):
            raise _refuse(archive, member, f"is a symlink to {member.linkname!r}, outside the destination")
    elif member.islnk():
        target = member.linkname.replace("\\", "/")
        resolved = posixpath.normpath(target)
        if target.startswith("/") or ".." in target.split("/") or _is_outside(resolved):
            raise _refuse(archive, member, f"is a hard link to {member.linkname!r}, outside the destination")
    elif member.ischr() or member.isblk():
        raise _refuse(archive, member, "is a device file")
    elif member.isfifo():
        raise _refuse(archive, member, "is a FIFO")
    elif member.issparse():
        raise _refuse(archive, member, "is a sparse file")
    elif not (member.isreg() or member.isdir()):
        raise _refuse(archive, member, f"has unsupported type {member.type!r}")


def _key(path: str) -> str:
    """How paths are compared with the archive's links: case-folded, for case-insensitive disks."""
    return path.casefold()


def _link_on_the_way(start: str, target: str, links: dict[str, tarfile.TarInfo]) -> str | None:
    """The first of ``links`` that following ``target`` from the folder ``start`` goes *through*.

    Walks the target a component at a time, as the kernel would, so ``s/..`` goes through ``s``
    although it normalises away. The last component is not "through"; the caller checks it.
    """
    here = [part for part in start.split("/") if part not in ("", ".")]
    steps = [part for part in target.replace("\\", "/").split("/") if part not in ("", ".")]
    for i, step in enumerate(steps):
        if step == "..":
            if not here:  # climbs out: judge_member has already refused that by name
                return None
            here.pop()
            continue
        here.append(step)
        if i < len(steps) - 1 and _key("/".join(here)) in links:
            return "/".join(here)
    return None


def _judge_links(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Refuse paths and link targets that go through another link of the same archive.

    judge_member reads a link's target by name; that is what the filesystem does only while no
    component on the way is itself a link (``a -> sub/x/..`` with ``sub/x -> ..`` really points out
    of the destination). Links later in the archive count too: a target judged before its link
    exists is resolved through it afterwards. A link that ends at a symlink is refused as well:
    tarfile may copy that symlink in its place (a hard link to a symlink to a folder, or its fallback
    when a link cannot be made), and the copy's target is then read from another folder.
    """
    links = {_key(_normalise(m.name)): m for m in members if m.issym() or m.islnk()}
    if not links:
        return
    symlinks = {key for key, m in links.items() if m.issym()}
    for member in members:
        name = _normalise(member.name)
        if name == "." and (member.issym() or member.islnk()):
            raise _refuse(archive, member, "is a link in place of the destination itself")
        parts = name.split("/")
        for depth in range(1, len(parts)):
            under = "/".join(parts[:depth])
            if _key(under) in links:
                why = (
                    f"lies under {under!r}, itself a link in this archive; paths through links can't be judged by name"
                )
                raise _refuse(archive, member, why)
        if not (member.issym() or member.islnk()):
            continue
        kind = "symlink" if member.issym() else "hard link"
        start = posixpath.dirname(name) if member.issym() else ""
        through = _link_on_the_way(start, member.linkname, links)
        if through is not None:
            why = (
                f"is a {kind} to {member.linkname!r}, which goes through {through!r}, itself a link "
                f"in this archive; links through links can't be judged by name"
            )
            raise _refuse(archive, member, why)
        end = posixpath.normpath(posixpath.join(start, member.linkname.replace("\\", "/")))
        if _key(end) in symlinks:
            why = (
                f"is a {kind} to {member.linkname!r}, itself a symlink in this archive; "
                f"links to links can't be judged by name"
            )
            raise _refuse(archive, member, why)


def _judge_archive(archive: Path, members: list[tarfile.TarInfo], limits: ArchiveLimits) -> None:
    """Judge every member (the pre-scan has already counted them and summed their sizes)."""
    for member in members:
        judge_member(archive, member)
        depth = len(_normalise(member.name).split("/"))
        if depth > limits.max_depth:
            raise _refuse(archive, member, f"is {depth} folders deep, over the limit of {limits.max_depth}")
    _judge_links(archive, members)


def make_scratch(dest: Path) -> Path:
    """An empty folder beside ``dest`` to extract into, so the rename into place is atomic."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".unpacking", dir=dest.parent))


def check_destination(dest: Path) -> None:
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise ConfigurationError(f"cannot unpack into {dest}: it exists and is not a directory")
    if dest.is_dir() and any(dest.iterdir()):
        raise ConfigurationError(f"cannot unpack into {dest}: the directory is not empty")


def _reporting(members: list[tarfile.TarInfo], on_member: Callable[[str], None]) -> Iterator[tarfile.TarInfo]:
    for member in members:
        on_member(member.name)
        yield member


def unpack_here(archive: Path, dest: Path, limits: ArchiveLimits = DEFAULT_LIMITS,
                on_member: Callable[[str], None] = lambda name: None, scratch: Path | None = None) -> int:
    """Judge and extract ``archive`` in *this* process; the number of members unpacked.

    Only the unpacking process calls this (``unpack_child``): the limits on time and memory are that
    process's. ``on_member`` hears each member's name before it is read, so a kill can name it.
    ``scratch``, an empty folder beside ``dest``, is where extraction goes before the rename; the caller
    that made it removes it, also when this process is killed half-way.
    """
    check_destination(dest)
    try:
        members = prescan(archive, limits, on_member)
    except ArtifactError:
        raise
    except _STREAM_ERRORS as exc:
        raise ArtifactError(f"{archive} is not a readable tar or tar.gz archive: {exc}") from exc
    _judge_archive(archive, members, limits)
    try:
        # Not a `with`: only the open itself should map to "not a tar"; the `with` follows below.
        tf = tarfile.open(archive, mode="r:*")  # noqa: SIM115
    except _STREAM_ERRORS as exc:
        raise ArtifactError(f"{archive} is not a readable tar or tar.gz archive: {exc}") from exc
    with tf:
        tmp = scratch if scratch is not None else make_scratch(dest)
        try:
            if _HAS_DATA_FILTER:
                tf.extractall(tmp, members=_reporting(members, on_member), filter="data")
            else:  # Pythons without PEP 706: the judging above is the whole guard, and suffices
                tf.extractall(tmp, members=_reporting(members, on_member))
            os.replace(tmp, dest)  # POSIX rename may replace an empty directory, checked above
        except _STREAM_ERRORS as exc:
            raise ArtifactError(f"failed to unpack {archive} into {dest}: {exc}") from exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
    return len(members)


def unpack(
    archive: Path,
    dest: Path,
    *,
    max_total_bytes: int | None = None,
    max_members: int | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
) -> Path:
    """Safely extract ``archive`` (gzip-, bzip2-, xz-compressed or plain tar) into ``dest``; return ``dest``.

    ``dest`` must not exist or be an empty directory. All members are judged before anything is
    written; on any failure ``dest`` is left as it was. ``max_total_bytes`` and ``max_members``, when
    given, override those of ``limits``. The work happens in a child process under ``limits`` (see
    ``unpack_sandbox``), so no archive can stall or bloat the caller's process.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise ArtifactError(f"model archive {archive} does not exist or is not a file")
    check_destination(dest)
    limits = limits.with_overrides(max_total_bytes=max_total_bytes, max_members=max_members)
    created = not dest.parent.exists()
    scratch = make_scratch(dest)
    try:
        members = unpack_in_child(archive, dest, scratch, limits)
    finally:  # a child killed half-way cannot clean up after itself
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
        if created and not dest.exists():
            with contextlib.suppress(OSError):
                dest.parent.rmdir()
    logger.info("unpacked %s (%d members) into %s", archive, members, dest)
    return dest
