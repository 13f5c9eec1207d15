"""Build a tiny, random-weight Qwen3-Embedding look-alike, offline and deterministically.

Tests and the offline demo need a model that goes through exactly the code path real
Qwen3-Embedding-0.6B takes (``AutoTokenizer`` / ``AutoModel`` → ``Qwen3Model``, left padding, an
``<|endoftext|>`` appended to every input, last-token pooling), but cannot download anything and must
build in seconds. So the real classes get a tiny seeded config, and the tokenizer is a byte-level BPE
trained here on a few dozen built-in sentences with the same pre-tokenizer and post-processor shape
as Qwen's. The sentence-transformers files mirror the ones the real checkpoint ships, so code that
reads ``1_Pooling/config.json`` or the ``prompts`` sees the same structure.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

EOS_TOKEN = "<|endoftext|>"
SPECIAL_TOKENS = (EOS_TOKEN, "<|im_start|>", "<|im_end|>")
QUERY_PROMPT = "Instruct: Given a web search query, retrieve relevant passages that answer the query\nQuery:"
HIDDEN_SIZE = 32
MAX_SEQ_LENGTH = 512
_BPE_VOCAB_SIZE = 512
_SEED = 0

# Qwen2/Qwen3's pre-tokenizer split, so words break the same way they do in the real tokenizer.
_QWEN_PRETOKENIZE_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

# Training text: small, fixed and English, with the sports/news sentences the demos search over,
# so those words become whole tokens rather than byte soup.
TRAINING_TEXT: tuple[str, ...] = (
    "Ronaldo plays for Portugal.",
    "Cristiano Ronaldo scored twice for Portugal in the qualifier.",
    "Messi plays for Argentina.",
    "Argentina won the FIFA world cup.",
    "Argentina won the FIFA World Cup in Qatar in 2022.",
    "France reached the final of the world cup.",
    "The football match ended in a draw.",
    "The striker scored a late goal to win the match.",
    "The coach praised the team after the game.",
    "Spain won the European championship.",
    "The tennis player won the final in straight sets.",
    "The basketball team lost at home last night.",
    "The Olympic games will be held in the summer.",
    "The marathon runner broke the world record.",
    "The government announced a new budget today.",
    "The prime minister spoke to reporters in the capital.",
    "Elections will be held in the spring.",
    "The central bank raised interest rates again.",
    "Stock markets fell sharply on Monday.",
    "The company reported record profits this quarter.",
    "Scientists discovered a new species of frog.",
    "The storm caused flooding across the region.",
    "The weather is sunny and warm today.",
    "It will rain tomorrow in the north.",
    "The city opened a new public library.",
    "A new museum of modern art opened downtown.",
    "The film won the award for best picture.",
    "The band released its first album in ten years.",
    "What is the capital of France?",
    "Paris is the capital of France.",
    "Berlin is the capital of Germany.",
    "How do I cook pasta?",
    "Boil water, add salt, and cook the pasta for ten minutes.",
    "Machine learning models turn text into vectors.",
    "Semantic search finds passages that answer a query.",
    "The endpoint returns embeddings for each input sentence.",
    "Instruct: Given a web search query, retrieve relevant passages that answer the query",
    "Query: who won the world cup?",
    "A cat sat on the mat.",
    "The quick brown fox jumps over the lazy dog.",
)


def build_tokenizer() -> Any:
    """Train the byte-level BPE tokenizer and wrap it as a transformers tokenizer.

    ``Qwen2Tokenizer`` is the class the real Qwen3-Embedding checkpoint names, so the saved
    ``tokenizer_config.json`` loads through ``AutoTokenizer`` the same way.
    """
    from tokenizers import Regex, Tokenizer, decoders, normalizers, pre_tokenizers, processors, trainers
    from tokenizers.models import BPE
    from transformers import Qwen2Tokenizer

    tok = Tokenizer(BPE(unk_token=None, fuse_unk=False, byte_fallback=False))
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(_QWEN_PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=_BPE_VOCAB_SIZE,
        min_frequency=1,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(TRAINING_TEXT), trainer=trainer)
    eos_id = tok.token_to_id(EOS_TOKEN)
    # Qwen3-Embedding appends <|endoftext|> to every sequence; its hidden state is the embedding.
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A:0 {EOS_TOKEN}:0",
        pair=f"$A:0 {EOS_TOKEN}:0 $B:1 {EOS_TOKEN}:1",
        special_tokens=[(EOS_TOKEN, eos_id)],
    )
    # No unk token, as in the real checkpoint: byte-level BPE can encode any input.
    no_unk: dict[str, Any] = {"unk_token": None}
    return Qwen2Tokenizer(
        tokenizer_object=tok,
        **no_unk,
        eos_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        padding_side="left",
        model_max_length=MAX_SEQ_LENGTH,
    )


def build_model(vocab_size: int, eos_id: int) -> Any:
    """A real ``Qwen3Model`` with a tiny config; weights seeded without disturbing the caller's RNG."""
    import torch
    from transformers import Qwen3Config, Qwen3Model

    config = Qwen3Config(
        vocab_size=vocab_size,
        hidden_size=HIDDEN_SIZE,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=8,
        intermediate_size=64,
        max_position_embeddings=MAX_SEQ_LENGTH,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        tie_word_embeddings=False,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(_SEED)
        model = Qwen3Model(config)
    return model.eval()


def _write_json(path: Path, data: dict[str, Any] | list[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_sentence_transformers_files(dest: Path, hidden_size: int = HIDDEN_SIZE) -> None:
    """Write the sentence-transformers module files that Qwen3-Embedding ships (last-token pooling)."""
    _write_json(
        dest / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(
        dest / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": hidden_size,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": False,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": True,
            "include_prompt": True,
        },
    )
    _write_json(
        dest / "config_sentence_transformers.json",
        {
            "prompts": {"query": QUERY_PROMPT, "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    _write_json(dest / "sentence_bert_config.json", {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})


def build_tiny_qwen3(dest: Path) -> Path:
    """Write the tiny Qwen3 embedding model into ``dest`` (created if missing) and return it.

    Deterministic: the same tokenizer and byte-identical ``model.safetensors`` on every build.
    """
    from localmaker.logging_setup import quiet_model_libraries

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with quiet_model_libraries():  # no "Writing model shards" bar for a one-file model the user did not ask for
        tokenizer = build_tokenizer()
        model = build_model(vocab_size=len(tokenizer), eos_id=tokenizer.convert_tokens_to_ids(EOS_TOKEN))
        model.save_pretrained(dest, safe_serialization=True)
        tokenizer.save_pretrained(dest)
    write_sentence_transformers_files(dest, hidden_size=model.config.hidden_size)
    logger.info("built tiny Qwen3 embedding model in %s", dest)
    return dest
