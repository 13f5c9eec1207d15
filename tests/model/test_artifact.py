"""pack / repack write a SageMaker-layout model.tar.gz that unpack reads back."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from localmaker.errors import ArtifactError, ConfigurationError
from localmaker.model.artifact import pack, repack
from localmaker.model.safe_tar import unpack


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    d = tmp_path / "model"
    (d / "1_Pooling").mkdir(parents=True)
    (d / "config.json").write_text('{"model_type": "bert"}')
    (d / "model.safetensors").write_bytes(b"\x00weights" * 100)
    (d / "1_Pooling" / "config.json").write_text("{}")
    (d / ".localmaker-cache").mkdir()
    (d / ".localmaker-cache" / "junk").write_text("x")
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "x.pyc").write_bytes(b"x")
    return d


@pytest.fixture
def builtin_code(tmp_path: Path) -> Path:
    """Stands in for localmaker/inference/, which another part of the project provides."""
    d = tmp_path / "builtin"
    d.mkdir()
    (d / "__init__.py").write_text("")
    (d / "inference.py").write_text("def model_fn(model_dir):\n    return 'builtin'\n")
    (d / "pooling.py").write_text("X = 1\n")
    (d / "requirements.txt").write_text("numpy\n")
    (d / "notes.md").write_text("not code")
    return d


@pytest.fixture
def user_code(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    (d / "lib").mkdir(parents=True)
    (d / "serve.py").write_text("def model_fn(model_dir):\n    return 'user'\n")
    (d / "lib" / "helpers.py").write_text("Y = 2\n")
    (d / "__pycache__").mkdir()
    (d / "__pycache__" / "serve.cpython-311.pyc").write_bytes(b"x")
    (d / ".git").mkdir()
    (d / ".git" / "HEAD").write_text("ref")
    return d


def _names(archive: Path) -> set[str]:
    with tarfile.open(archive) as tf:
        return {m.name for m in tf.getmembers() if m.isfile()}


def test_pack_unpack_round_trip_with_builtin_code(model_dir: Path, builtin_code: Path, tmp_path: Path) -> None:
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text('{"text": "Ronaldo plays for Portugal"}\n')
    archive = pack(model_dir, tmp_path / "out" / "model.tar.gz", corpus=corpus, builtin_code=builtin_code)
    assert _names(archive) == {
        "config.json",
        "model.safetensors",
        "1_Pooling/config.json",
        "corpus.jsonl",
        "code/inference.py",
        "code/pooling.py",
        "code/requirements.txt",
    }
    out = unpack(archive, tmp_path / "unpacked")
    assert (out / "model.safetensors").read_bytes() == (model_dir / "model.safetensors").read_bytes()
    assert (out / "code" / "inference.py").read_text() == (builtin_code / "inference.py").read_text()
    assert (out / "corpus.jsonl").read_text() == corpus.read_text()
    assert not list(tmp_path.glob("out/.*"))  # no temp file left beside the archive


def test_members_do_not_leak_local_users(model_dir: Path, builtin_code: Path, tmp_path: Path) -> None:
    archive = pack(model_dir, tmp_path / "model.tar.gz", builtin_code=builtin_code)
    with tarfile.open(archive) as tf:
        for m in tf.getmembers():
            assert (m.uid, m.gid, m.uname, m.gname) == (0, 0, "", ""), m.name
            assert m.mode in (0o644, 0o755)


def test_pack_with_user_source_dir(model_dir: Path, user_code: Path, tmp_path: Path) -> None:
    (model_dir / "code").mkdir()
    (model_dir / "code" / "old.py").write_text("stale")
    archive = pack(model_dir, tmp_path / "model.tar.gz", code_dir=user_code, entry_point="serve.py")
    names = _names(archive)
    assert {"code/serve.py", "code/lib/helpers.py"} <= names
    assert "code/old.py" not in names
    assert not any("__pycache__" in n or ".git" in n for n in names)


def test_corpus_txt_keeps_its_suffix_and_others_are_rejected(
    model_dir: Path, builtin_code: Path, tmp_path: Path
) -> None:
    txt = tmp_path / "docs.txt"
    txt.write_text("one\ntwo\n")
    archive = pack(model_dir, tmp_path / "a.tar.gz", corpus=txt, builtin_code=builtin_code)
    assert "corpus.txt" in _names(archive)
    csv = tmp_path / "docs.csv"
    csv.write_text("a,b\n")
    with pytest.raises(ConfigurationError, match=".jsonl"):
        pack(model_dir, tmp_path / "b.tar.gz", corpus=csv, builtin_code=builtin_code)
    assert not (tmp_path / "b.tar.gz").exists()


def test_missing_entry_point_is_a_configuration_error(model_dir: Path, user_code: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="nope.py"):
        pack(model_dir, tmp_path / "model.tar.gz", code_dir=user_code, entry_point="nope.py")
    with pytest.raises(ConfigurationError, match="inference.py"):  # the default entry point
        pack(model_dir, tmp_path / "model.tar.gz", code_dir=user_code)
    with pytest.raises(ConfigurationError):
        pack(model_dir, tmp_path / "model.tar.gz", code_dir=user_code, entry_point="../model/config.json")
    assert not (tmp_path / "model.tar.gz").exists()


def test_builtin_code_without_inference_py_fails(model_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ArtifactError, match="inference.py"):
        pack(model_dir, tmp_path / "model.tar.gz", builtin_code=empty)


def test_missing_model_dir_is_a_configuration_error(tmp_path: Path, builtin_code: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        pack(tmp_path / "nope", tmp_path / "model.tar.gz", builtin_code=builtin_code)


def test_repack_replaces_code_in_place(model_dir: Path, builtin_code: Path, user_code: Path, tmp_path: Path) -> None:
    archive = pack(model_dir, tmp_path / "model.tar.gz", builtin_code=builtin_code)
    repack(archive, archive, code_dir=user_code, entry_point="serve.py")
    names = _names(archive)
    assert "code/serve.py" in names and "code/lib/helpers.py" in names
    assert "code/inference.py" not in names and "code/pooling.py" not in names
    assert {"config.json", "model.safetensors", "1_Pooling/config.json"} <= names
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model", "builtin", "src", "model.tar.gz"]
    )  # no temp dirs or files left behind


def test_repack_checks_entry_point(model_dir: Path, builtin_code: Path, user_code: Path, tmp_path: Path) -> None:
    archive = pack(model_dir, tmp_path / "model.tar.gz", builtin_code=builtin_code)
    before = archive.read_bytes()
    with pytest.raises(ConfigurationError, match="missing.py"):
        repack(archive, archive, code_dir=user_code, entry_point="missing.py")
    assert archive.read_bytes() == before


def test_pack_dereferences_symlinked_files(builtin_code: Path, tmp_path: Path) -> None:
    """HF cache snapshots are symlinks into blobs/; the archive must hold the bytes."""
    blob = tmp_path / "blobs" / "abc"
    blob.parent.mkdir()
    blob.write_bytes(b"real weights")
    snap = tmp_path / "snapshot"
    snap.mkdir()
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").symlink_to(blob)
    archive = pack(snap, tmp_path / "model.tar.gz", builtin_code=builtin_code)
    with tarfile.open(archive) as tf:
        member = tf.getmember("model.safetensors")
        assert member.isfile()
        fh = tf.extractfile(member)
        assert fh is not None and fh.read() == b"real weights"


def test_pack_real_minilm(minilm_dir: Path, builtin_code: Path, tmp_path: Path) -> None:
    archive = pack(minilm_dir, tmp_path / "model.tar.gz", builtin_code=builtin_code)
    names = _names(archive)
    assert {"model.safetensors", "config.json", "modules.json", "code/inference.py"} <= names


def test_pack_follows_symlinked_folders_inside_and_outside(builtin_code: Path, tmp_path: Path) -> None:
    """A pipeline folder assembled from links: each linked folder is packed as the files it points to."""
    real_unet = tmp_path / "real" / "unet"
    real_unet.mkdir(parents=True)
    (real_unet / "config.json").write_text('{"unet": true}')
    (real_unet / "weights.safetensors").write_bytes(b"unet weights")
    blob = tmp_path / "blobs" / "abc"
    blob.parent.mkdir()
    blob.write_bytes(b"vae weights")
    pipe = tmp_path / "pipe"
    (pipe / "vae").mkdir(parents=True)
    (pipe / "model_index.json").write_text("{}")
    (pipe / "vae" / "weights.safetensors").symlink_to(blob)  # a file link outside, as before
    (pipe / "unet").symlink_to(Path("..") / "real" / "unet", target_is_directory=True)  # a folder outside
    (pipe / "vae_copy").symlink_to("vae", target_is_directory=True)  # a sibling inside: no loop
    archive = pack(pipe, tmp_path / "model.tar.gz", builtin_code=builtin_code)
    assert {n for n in _names(archive) if not n.startswith("code/")} == {
        "model_index.json", "unet/config.json", "unet/weights.safetensors", "vae/weights.safetensors",
        "vae_copy/weights.safetensors"}
    with tarfile.open(archive) as tf:
        assert all(m.isfile() or m.isdir() for m in tf.getmembers())  # bytes, never links
    out = unpack(archive, tmp_path / "unpacked")
    assert (out / "unet" / "weights.safetensors").read_bytes() == b"unet weights"
    assert (out / "vae_copy" / "weights.safetensors").read_bytes() == b"vae weights"


@pytest.mark.parametrize("link, target, message", [
    ("loop", ".", "a folder that contains it"),  # the folder holding the link
    ("a/b/up", "../..", "a folder that contains it"),  # an ancestor further up
    ("self", "self", "fix or remove the link"),  # a link to itself, neither file nor folder
])
def test_pack_refuses_a_symlink_loop(link: str, target: str, message: str, builtin_code: Path,
                                     tmp_path: Path) -> None:
    model = tmp_path / "model"
    (model / "a" / "b").mkdir(parents=True)
    (model / "config.json").write_text("{}")
    (model / link).symlink_to(target)
    with pytest.raises(ArtifactError, match=message) as caught:
        pack(model, tmp_path / "model.tar.gz", builtin_code=builtin_code)
    assert str(model / link) in str(caught.value)
    assert not list(tmp_path.glob("*.tar.gz*")) and not list(tmp_path.glob(".model.tar.gz*"))
