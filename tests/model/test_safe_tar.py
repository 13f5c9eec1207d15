"""unpack refuses hostile archives before writing anything, and leaves nothing behind on failure."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import pytest

from localmaker.errors import ArtifactError, ConfigurationError
from localmaker.model import safe_tar
from localmaker.model.safe_tar import unpack


def _file(name: str, data: bytes = b"ok") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _special(name: str, kind: bytes, linkname: str = "") -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info, None


def _make(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]], mode: Literal["w:gz", "w"] = "w:gz") -> Path:
    with tarfile.open(path, mode) as tf:
        for info, data in members:
            tf.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _assert_nothing_written(dest: Path) -> None:
    assert not dest.exists()
    assert [p.name for p in dest.parent.iterdir() if p.name != "evil.tar.gz"] == []


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    d = tmp_path / "work"
    d.mkdir()
    return d


GOOD = _file("config.json", b"{}")

HOSTILE: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes | None]], str]] = {
    "dotdot": ([GOOD, _file("../evil")], "'..'"),
    "nested dotdot": ([GOOD, _file("code/../../evil")], "'..'"),
    "absolute": ([GOOD, _file("/abs")], "absolute path"),
    "symlink to /etc/passwd": ([GOOD, _special("passwd", tarfile.SYMTYPE, "/etc/passwd")], "symlink"),
    "relative symlink escape": ([GOOD, _special("a", tarfile.SYMTYPE, "../../x")], "is a symlink to '../../x'"),
    "nested symlink escape": ([GOOD, _special("code/a", tarfile.SYMTYPE, "../../x")], "is a symlink to '../../x'"),
    "hardlink outside": ([GOOD, _special("h", tarfile.LNKTYPE, "../outside")], "hard link"),
    "hardlink absolute": ([GOOD, _special("h", tarfile.LNKTYPE, "/etc/passwd")], "hard link"),
    "fifo": ([GOOD, _special("pipe", tarfile.FIFOTYPE)], "FIFO"),
    "char device": ([GOOD, _special("null", tarfile.CHRTYPE)], "device"),
    "block device": ([GOOD, _special("sda", tarfile.BLKTYPE)], "device"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused_before_writing(workdir: Path, case: str) -> None:
    members, why = HOSTILE[case]
    archive = _make(workdir / "evil.tar.gz", members)
    dest = workdir / "dest"
    with pytest.raises(ArtifactError) as info:
        unpack(archive, dest)
    message = str(info.value)
    assert repr(members[-1][0].name) in message and why in message
    _assert_nothing_written(dest)


def test_too_many_members_is_refused(workdir: Path) -> None:
    archive = _make(workdir / "evil.tar.gz", [_file(f"f{i}") for i in range(6)])
    dest = workdir / "dest"
    with pytest.raises(ArtifactError, match="more than 5 members"):
        unpack(archive, dest, max_members=5)
    _assert_nothing_written(dest)
    assert unpack(archive, dest, max_members=6) == dest  # the cap is inclusive


def test_too_large_total_is_refused(workdir: Path) -> None:
    archive = _make(workdir / "evil.tar.gz", [_file("a", b"x" * 600), _file("b", b"x" * 600)])
    dest = workdir / "dest"
    with pytest.raises(ArtifactError, match="'b'.*1000-byte cap"):
        unpack(archive, dest, max_total_bytes=1000)
    _assert_nothing_written(dest)
    unpack(archive, dest, max_total_bytes=1200)
    assert (dest / "b").stat().st_size == 600


def test_links_inside_dest_and_dot_prefixes_are_fine(workdir: Path) -> None:
    root = tarfile.TarInfo(".")
    root.type = tarfile.DIRTYPE
    archive = _make(
        workdir / "ok.tar.gz",
        [
            (root, None),
            _file("./config.json", b"{}"),
            _file("./code/inference.py", b"x = 1\n"),
            _special("code/link.py", tarfile.SYMTYPE, "inference.py"),
            _special("code/hard.py", tarfile.LNKTYPE, "code/inference.py"),
        ],
    )
    dest = unpack(archive, workdir / "dest")
    assert (dest / "config.json").read_bytes() == b"{}"
    assert (dest / "code" / "link.py").read_text() == "x = 1\n"
    assert (dest / "code" / "hard.py").read_text() == "x = 1\n"


def test_plain_tar_is_accepted(workdir: Path) -> None:
    archive = _make(workdir / "model.tar", [GOOD], mode="w")
    assert (unpack(archive, workdir / "dest") / "config.json").is_file()


@pytest.mark.parametrize(
    "make_bad",
    [
        lambda p: p.write_bytes(b"this is not a tar file at all" * 40),
        lambda p: p.write_bytes(b""),
    ],
    ids=["garbage", "empty"],
)
def test_not_a_tar_is_an_artifact_error(workdir: Path, make_bad: Callable[[Path], object]) -> None:
    bad = workdir / "evil.tar.gz"
    make_bad(bad)
    with pytest.raises(ArtifactError):
        unpack(bad, workdir / "dest")
    _assert_nothing_written(workdir / "dest")


def test_truncated_archive_leaves_nothing(workdir: Path) -> None:
    good = _make(workdir / "good.tar.gz", [_file("a", bytes(range(256)) * 4000), _file("b", b"y" * 50_000)])
    data = good.read_bytes()
    good.unlink()
    bad = workdir / "evil.tar.gz"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(ArtifactError):
        unpack(bad, workdir / "dest")
    _assert_nothing_written(workdir / "dest")


def test_os_error_during_extraction_cleans_up(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk mid-extraction must not leave a partial tree at dest or beside it."""
    archive = _make(workdir / "evil.tar.gz", [_file("a"), _file("b")])
    real_extractall = tarfile.TarFile.extractall

    def disk_full(self: tarfile.TarFile, path: str, *args: object, **kwargs: object) -> None:
        (Path(path) / "a").write_bytes(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tarfile.TarFile, "extractall", disk_full)
    with pytest.raises(ArtifactError, match="No space left"):
        safe_tar.unpack_here(archive, workdir / "dest")  # what the unpacking process runs, patched here
    _assert_nothing_written(workdir / "dest")
    monkeypatch.setattr(tarfile.TarFile, "extractall", real_extractall)
    assert (unpack(archive, workdir / "dest") / "b").read_bytes() == b"ok"


def test_missing_archive_and_non_empty_dest(workdir: Path) -> None:
    with pytest.raises(ArtifactError, match="does not exist"):
        unpack(workdir / "nope.tar.gz", workdir / "dest")
    archive = _make(workdir / "model.tar.gz", [GOOD])
    dest = workdir / "dest"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    with pytest.raises(ConfigurationError, match="not empty"):
        unpack(archive, dest)
    assert [p.name for p in dest.iterdir()] == ["keep"]
    (dest / "keep").unlink()
    assert (unpack(archive, dest) / "config.json").is_file()  # an empty dest is fine


def _sym(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return _special(name, tarfile.SYMTYPE, target)


def _hard(name: str, target: str) -> tuple[tarfile.TarInfo, None]:
    return _special(name, tarfile.LNKTYPE, target)


def _dir(name: str) -> tuple[tarfile.TarInfo, None]:
    return _special(name, tarfile.DIRTYPE)


# Each is lexically fine member by member; the named member goes through (or to) another link.
# "escaped" members are what would land outside the destination if the chain were followed.
THROUGH_LINKS: dict[str, tuple[list[tuple[tarfile.TarInfo, bytes | None]], str, str]] = {
    "symlink chained through an earlier symlink": (
        [GOOD, _dir("sub"), _sym("sub/x", ".."), _sym("a", "sub/x/.."), _file("a/escaped", b"pwned")],
        "a",
        "goes through 'sub/x'",
    ),
    "symlink chained through later symlinks": (
        [GOOD, _sym("a", "b/x/.."), _dir("sub"), _sym("b", "sub"), _sym("sub/x", ".."), _file("a/escaped")],
        "a",
        "goes through 'b'",
    ),
    "file written through an earlier directory symlink": (
        [GOOD, _file("sub/keep"), _sym("link", "sub"), _file("link/file")],
        "link/file",
        "lies under 'link'",
    ),
    "hard link through a symlink": (
        [GOOD, _file("sub/file"), _sym("link", "sub"), _hard("h", "link/file")],
        "h",
        "goes through 'link'",
    ),
    "hard link to a symlink, re-read from another folder": (
        [GOOD, _dir("deep/a"), _sym("deep/a/s", "../.."), _hard("h", "deep/a/s"), _file("h/escaped", b"pwned")],
        "h",
        "itself a symlink in this archive",
    ),
}


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("data_filter", [True, False], ids=["data-filter", "no-data-filter"])
@pytest.mark.parametrize("case", sorted(THROUGH_LINKS))
def test_paths_and_links_through_links_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str, data_filter: bool
) -> None:
    """Judged by the module itself, before extraction, so the outcome doesn't hang on the Python version.

    ``no-data-filter`` is the extraction of Pythons without PEP 706 (3.10.0-3.10.11, 3.11.0-3.11.3).
    """
    if data_filter and not hasattr(tarfile, "data_filter"):
        pytest.skip("this Python has no tarfile.data_filter")
    monkeypatch.setattr(safe_tar, "_HAS_DATA_FILTER", data_filter)
    members, culprit, why = THROUGH_LINKS[case]
    workdir = tmp_path / "work"
    workdir.mkdir()
    archive = _make(workdir / "evil.tar.gz", members)
    # The unpacking process runs this Python's tarfile; the patched flag only reaches an in-process run.
    run = unpack if data_filter else safe_tar.unpack_here
    with pytest.raises(ArtifactError) as info:
        run(archive, workdir / "dest")
    message = str(info.value)
    assert message.startswith(f"refusing to unpack {archive}: member {culprit!r} "), message
    assert why in message and "can't be judged by name" in message, message
    assert _tree(tmp_path) == ["work", "work/evil.tar.gz"]  # nothing at dest, beside it, or above it


def test_links_that_do_not_go_through_links_still_unpack_without_data_filter(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fallback extraction is really used (no filter passed) and links inside the folder still work."""
    monkeypatch.setattr(safe_tar, "_HAS_DATA_FILTER", False)
    calls: list[dict[str, object]] = []
    real_extractall = tarfile.TarFile.extractall

    def spy(self: tarfile.TarFile, *args: object, **kwargs: object) -> None:
        calls.append(kwargs)
        real_extractall(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tarfile.TarFile, "extractall", spy)
    archive = _make(
        workdir / "ok.tar.gz",
        [
            _file("vendor/lib.py", b"y = 2\n"),
            _file("code/inference.py", b"x = 1\n"),
            _sym("code/lib.py", "../vendor/lib.py"),
            _sym("code/vendor", "../vendor"),
            _hard("code/hard.py", "code/inference.py"),
            _sym("code/via_hard.py", "hard.py"),  # a symlink may end at a hard link: that is a file
            _sym("code/self", "."),
        ],
    )
    dest = workdir / "dest"
    safe_tar.unpack_here(archive, dest)  # in this process, where the spy and the patched flag are
    assert calls and all("filter" not in kw for kw in calls)
    assert (dest / "code" / "lib.py").read_text() == "y = 2\n"
    assert (dest / "code" / "vendor" / "lib.py").read_text() == "y = 2\n"
    assert (dest / "code" / "hard.py").read_text() == "x = 1\n"
    assert (dest / "code" / "via_hard.py").read_text() == "x = 1\n"
    assert (dest / "code" / "self" / "inference.py").read_text() == "x = 1\n"
