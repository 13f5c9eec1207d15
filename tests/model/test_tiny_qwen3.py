"""The tiny Qwen3 embedding model loads like the real Qwen3-Embedding and builds deterministically."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from localmaker.model.builders.tiny_qwen3 import QUERY_PROMPT, build_tiny_qwen3
from localmaker.model.integrity import sha256_file
from localmaker.model.sources import TINY_QWEN3_DIRNAME


def test_built_under_localmaker_home(tiny_qwen3_dir: Path, localmaker_home: Path) -> None:
    assert tiny_qwen3_dir == localmaker_home / "sources" / TINY_QWEN3_DIRNAME
    assert (tiny_qwen3_dir / "model.safetensors").is_file()
    assert not list(tiny_qwen3_dir.glob("*.bin")) and not list(tiny_qwen3_dir.glob("*.pt"))


def test_build_is_deterministic(tiny_qwen3_dir: Path, tmp_path: Path) -> None:
    again = build_tiny_qwen3(tmp_path / "again")
    for name in ("model.safetensors", "tokenizer.json", "config.json"):
        assert sha256_file(again / name) == sha256_file(tiny_qwen3_dir / name), name


def test_reloads_as_qwen3model(tiny_qwen3_dir: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer, Qwen3Model

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3_dir)
    model = AutoModel.from_pretrained(tiny_qwen3_dir)
    assert type(model) is Qwen3Model
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 2
    assert model.config.vocab_size == len(tokenizer)

    batch = tokenizer(["Ronaldo plays for Portugal", "Argentina"], padding=True, return_tensors="pt")
    eos = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    assert tokenizer.padding_side == "left" and tokenizer.pad_token == "<|endoftext|>"
    assert batch["input_ids"][:, -1].tolist() == [eos, eos]  # every sequence ends in <|endoftext|>
    assert batch["attention_mask"][1, 0].item() == 0  # the shorter one is padded on the left
    assert batch["attention_mask"][:, -1].tolist() == [1, 1]
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    assert hidden.shape[0] == 2 and hidden.shape[-1] == 32
    assert torch.isfinite(hidden).all()


def test_special_tokens_are_single_tokens(tiny_qwen3_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3_dir)
    for token in ("<|endoftext|>", "<|im_start|>", "<|im_end|>"):
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert ids == [tokenizer.convert_tokens_to_ids(token)], token


def test_sentence_transformers_files(tiny_qwen3_dir: Path) -> None:
    modules = json.loads((tiny_qwen3_dir / "modules.json").read_text())
    assert [m["type"].rsplit(".", 1)[-1] for m in modules] == ["Transformer", "Pooling", "Normalize"]
    assert modules[1]["path"] == "1_Pooling"
    pooling = json.loads((tiny_qwen3_dir / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode_lasttoken"] is True
    assert not any(v for k, v in pooling.items() if k.startswith("pooling_mode_") and k != "pooling_mode_lasttoken")
    assert pooling["word_embedding_dimension"] == 32
    st = json.loads((tiny_qwen3_dir / "config_sentence_transformers.json").read_text())
    assert st["prompts"] == {"query": QUERY_PROMPT, "document": ""}
    assert st["default_prompt_name"] is None
    assert json.loads((tiny_qwen3_dir / "sentence_bert_config.json").read_text())["max_seq_length"] == 512


@pytest.mark.parametrize("word", ["Ronaldo", "Portugal", "Argentina"])
def test_demo_words_are_compact(tiny_qwen3_dir: Path, word: str) -> None:
    """The BPE was trained on the demo sentences, so their words are few tokens, not raw bytes."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_qwen3_dir)
    assert len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) <= 2
