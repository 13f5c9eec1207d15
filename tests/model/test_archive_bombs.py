"""Archives built to hurt the reader are refused quickly, naming the member and the limit, by a child process.

The issue's attacks and variants of our own: headers and names that declare more than they should, the
regex of CVE-2024-6232, trees deeper than recursion, gzip bombs, too many members, chains of links and
of extension headers, and archives that are simply too slow, whose process is killed and reaped.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
from pathlib import Path

import pytest

from localmaker.errors import ArtifactError
from localmaker.model.archive_limits import DEFAULT_LIMITS, ArchiveLimits
from localmaker.model.safe_tar import unpack
from tests.model import archive_bombs as bombs


def refused(archive: Path, dest: Path, within_s: float = 10.0, **options: object) -> str:
    """The refusal's text; also checks it came fast, that nothing was written, and no process is left."""
    started = time.monotonic()
    with pytest.raises(ArtifactError) as info:
        unpack(archive, dest, **options)  # type: ignore[arg-type]
    took = time.monotonic() - started
    message = str(info.value)
    assert took < within_s, f"took {took:.1f} s: {message}"
    assert message.startswith(f"refusing to unpack {archive}: "), message
    assert "Traceback" not in message and "RecursionError" not in message, message
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir() if ".unpacking" in p.name] == []
    assert bombs.unpack_children(os.getpid()) == []
    return message


def test_a_pax_header_declaring_megabytes_is_refused_before_tarfile_reads_it(tmp_path: Path) -> None:
    """100,000 digits: CPython 3.11.7's tarfile spends about 30 s of regex on them, holding the GIL."""
    archive = bombs.huge_pax_header(tmp_path / "evil.tar.gz", declared=100_000)
    assert archive.stat().st_size < 1000
    message = refused(archive, tmp_path / "dest", within_s=5)
    assert "the PAX extended header 'PaxHeader/victim' at byte 0 declares 100000 bytes" in message
    assert "65536-byte limit on headers" in message


def test_a_pax_record_built_for_cve_2024_6232_is_refused(tmp_path: Path) -> None:
    """Under the header limit, yet CPython 3.11.7's regex spends ~11 s on it (measured in-process)."""
    archive = bombs.cve_pax_record(tmp_path / "evil.tar.gz", digits=60_000)
    message = refused(archive, tmp_path / "dest", within_s=5)
    assert "holds a run of 60000 digits, over the limit of 256 (CVE-2024-6232)" in message


def test_a_gnu_long_name_declaring_a_gibibyte_is_refused_without_reading_it(tmp_path: Path) -> None:
    archive = bombs.gnu_long_name(tmp_path / "evil.tar.gz", declared=1 << 30)
    message = refused(archive, tmp_path / "dest", within_s=5)
    assert "the GNU long-name header '././@LongLink' at byte 0 declares 1073741824 bytes" in message


@pytest.mark.parametrize("how", ["gnu", "pax"])
def test_names_longer_than_path_max_are_refused(tmp_path: Path, how: str) -> None:
    name = "n" * 5000
    if how == "gnu":
        archive = bombs.gnu_long_name(tmp_path / "evil.tar.gz", declared=5000, present=5000)
    else:
        archive = bombs.pax_with(tmp_path / "evil.tar.gz", bombs.pax_record("path", name))
    message = refused(archive, tmp_path / "dest")
    assert "is 5000 bytes long, over the 4096-byte limit on names" in message


def test_the_memory_limit_stops_what_the_header_checks_let_through(tmp_path: Path) -> None:
    """With the header limits lifted, tarfile reads a 64 MiB name whole: the child's address space says no."""
    archive = bombs.gnu_long_name(tmp_path / "evil.tar.gz", declared=64 << 20, present=64 << 20)
    limits = ArchiveLimits(max_header_bytes=1 << 30, max_name_bytes=1 << 30, memory_bytes=128 << 20)
    message = refused(archive, tmp_path / "dest", limits=limits)
    assert "the first member's header needs more than the 134217728-byte memory limit of the unpacking process" \
        in message


def test_a_thousand_nested_folders_are_refused_naming_the_member_and_the_limit(tmp_path: Path) -> None:
    archive = bombs.nested_folders(tmp_path / "evil.tar.gz", depth=1000)
    message = refused(archive, tmp_path / "dest")
    # The name is shown by both ends: FailureReason keeps 1,024 characters, and the limit must stay in them.
    assert re.search(r"member '(d/){40}\.\.\.(/d){40}' \(257 characters\) is 129 folders deep, over the limit "
                     r"of 128$", message), message
    assert len(message) < 600


def test_a_tree_at_the_depth_limit_unpacks_and_can_be_removed(tmp_path: Path) -> None:
    archive = bombs.nested_folders(tmp_path / "deep.tar.gz", depth=DEFAULT_LIMITS.max_depth - 1)
    dest = unpack(archive, tmp_path / "dest")
    assert (dest / ("d/" * 127) / "deepest.txt").read_bytes() == b"ok"
    shutil.rmtree(dest)  # recursive in CPython 3.11: the depth limit keeps it well inside the stack


def test_a_gzip_bomb_is_refused_before_it_is_inflated(tmp_path: Path) -> None:
    archive = bombs.gzip_bomb(tmp_path / "evil.tar.gz", size=256 << 20)
    assert archive.stat().st_size < 1 << 20
    message = refused(archive, tmp_path / "dest", within_s=5, max_total_bytes=64 << 20)
    assert "member 'weights.bin' takes the unpacked size over the 67108864-byte cap" in message


def test_a_member_declaring_a_tebibyte_is_refused_by_the_default_cap(tmp_path: Path) -> None:
    archive = bombs.declared_bomb(tmp_path / "evil.tar.gz", size=1 << 40)  # base-256 size field
    message = refused(archive, tmp_path / "dest", within_s=5)
    assert f"member 'weights.bin' takes the unpacked size over the {DEFAULT_LIMITS.max_total_bytes}-byte cap" \
        in message


def test_many_tiny_members_are_refused_at_the_first_one_too_many(tmp_path: Path) -> None:
    archive = bombs.many_members(tmp_path / "evil.tar.gz", count=2001)
    message = refused(archive, tmp_path / "dest", max_members=2000)
    assert "member 'f2000' is one too many: more than 2000 members" in message


def test_an_archive_too_slow_to_unpack_is_killed_naming_the_member(tmp_path: Path) -> None:
    """20,000 members take seconds to write; with a 1-second budget the child is stopped, and reaped."""
    archive = bombs.many_members(tmp_path / "slow.tar.gz", count=20_000)
    limits = ArchiveLimits(wall_seconds_base=1.0, wall_seconds_per_gib=0.0)
    message = refused(archive, tmp_path / "dest", within_s=8, limits=limits)
    assert re.search(r"unpacking was stopped at member 'f\d+', having reached its 1-second time limit", message), \
        message


@pytest.mark.parametrize("escapes", [False, True], ids=["inside", "escaping"])
def test_a_chain_of_symlinks_is_refused(tmp_path: Path, escapes: bool) -> None:
    archive = bombs.symlink_chain(tmp_path / "evil.tar.gz", 50, "../../etc/passwd" if escapes else "target")
    message = refused(archive, tmp_path / "dest")
    if escapes:
        assert "member 'l49' is a symlink to '../../etc/passwd', outside the destination" in message
    else:
        assert "member 'l0' is a symlink to 'l1', itself a symlink in this archive" in message


def test_a_chain_of_extension_headers_is_refused_before_tarfile_recurses_on_it(tmp_path: Path) -> None:
    archive = bombs.extension_chain(tmp_path / "evil.tar.gz", 2000)  # tarfile: RecursionError
    message = refused(archive, tmp_path / "dest")
    assert "is extension header number 5 in a row before a member, over the limit of 4" in message


@pytest.mark.parametrize(
    ("data", "kind", "why"),
    [
        (b"2 2 2 2 2 2 2 2 2 2 2 2 a=b\n", tarfile.XHDTYPE, "has a malformed record at offset 0"),
        (b"0 a=b\n", tarfile.XHDTYPE, "has a malformed record at offset 0"),
        (bombs.pax_record("GNU.sparse.size", "10"), tarfile.XHDTYPE, "describes a sparse file"),
        (bombs.pax_record("size", "99"), tarfile.XGLTYPE, "sets 'size' for every member"),
    ],
    ids=["lengths-that-do-not-add-up", "zero-length", "sparse", "global-size"],
)
def test_malformed_and_unsupported_pax_headers_are_refused(tmp_path: Path, data: bytes, kind: bytes, why: str) -> None:
    message = refused(bombs.pax_with(tmp_path / "evil.tar.gz", data, kind), tmp_path / "dest")
    assert why in message


def test_global_pax_headers_are_bounded(tmp_path: Path) -> None:
    """Each member is parsed after the global headers so far: they may not grow, nor split a member's."""
    x = bombs.pax_record("comment", "x")
    g = bombs.pax_record("comment", "g")
    between = bombs.write(tmp_path / "between.tar.gz", bombs.gz(
        bombs.header("PaxHeader/a", tarfile.XHDTYPE, len(x)), bombs.pad(x),
        bombs.header("GlobalHead", tarfile.XGLTYPE, len(g)), bombs.pad(g), bombs.member("a"), bombs.end()))
    assert "comes between a member's extension headers" in refused(between, tmp_path / "dest")
    big = bombs.pax_record("comment", "g" * 9000)
    many = bombs.write(tmp_path / "many.tar.gz", bombs.gz(
        bombs.header("GlobalHead", tarfile.XGLTYPE, len(big)), bombs.pad(big), bombs.member("a"), bombs.end()))
    assert "takes the global headers over the 8192-byte limit" in refused(many, tmp_path / "dest")


def test_real_pax_gnu_and_global_headers_still_unpack(tmp_path: Path) -> None:
    """What GNU tar, Python and git archive write: long names both ways, a global comment, xattrs."""
    long_name = "code/" + "x" * 200 + "/" + "y" * 150 + ".py"  # past ustar's 100 + 155
    archives = []
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        archive = tmp_path / f"ok-{fmt}.tar.gz"
        with tarfile.open(archive, "w:gz", format=fmt) as tf:
            info = tarfile.TarInfo(long_name)
            info.size = 2
            if fmt == tarfile.PAX_FORMAT:
                info.pax_headers = {"SCHILY.xattr.user.note": "1" * 200, "mtime": "1700000000.123456789"}
            tf.addfile(info, io.BytesIO(b"ok"))
        archives.append(archive)
    comment = bombs.pax_record("comment", "0123456789abcdef" * 2 + "01234567")
    archives.append(bombs.pax_with(tmp_path / "ok-git.tar.gz", comment, tarfile.XGLTYPE))
    for i, archive in enumerate(archives):
        dest = unpack(archive, tmp_path / f"dest{i}")
        files = [str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file()]
        assert files == (["victim"] if archive.name == "ok-git.tar.gz" else [long_name])


def test_the_unpacking_process_dies_with_its_caller(tmp_path: Path) -> None:
    """kill -9 of the caller mid-unpack: the child must not go on writing for minutes on its own."""
    archive = bombs.many_members(tmp_path / "slow.tar.gz", count=60_000)
    script = textwrap.dedent(f"""
        from pathlib import Path
        from localmaker.model.safe_tar import unpack
        unpack(Path({str(archive)!r}), Path({str(tmp_path / 'dest')!r}))
    """)
    caller = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        deadline = time.monotonic() + 20
        while not (children := bombs.unpack_children(caller.pid)):
            assert time.monotonic() < deadline and caller.poll() is None, "the unpacking process never started"
            time.sleep(0.02)
        time.sleep(0.3)  # let it get going
        os.kill(caller.pid, signal.SIGKILL)
        caller.wait()
        deadline = time.monotonic() + 3
        while any(Path(f"/proc/{pid}").exists() and pid in bombs.unpack_children() for pid in children):
            assert time.monotonic() < deadline, f"unpacking process {children} outlived its caller"
            time.sleep(0.02)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait()
