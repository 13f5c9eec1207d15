"""A PyTorch forward pass over packed texts: a batch's real tokens in one row, with no padding.

On a CPU the linear layers take nearly all of an encoder's time, and a pad token costs them as much as a
real one. A batch of texts in arrival order pads to its longest text: 32 texts of the peer benchmark's
mix hold 18,013 real tokens and 31,936 padded ones. Packed, the linear layers see the real tokens only.
Attention must keep each text to itself, so ``packed_attention`` spreads the packed queries, keys and
values of each group of like-length texts into a padded [texts, heads, longest, dim] layout and runs SDPA
there; attention is the smaller share of the work. Measured in-process (docs/benchmarks.md),
arrival-order batches of 32 ran 1.5x faster packed than padded, as fast as length-sorted padded batches,
so the model thread can batch requests in arrival order (none waits for others of its length) and lose
nothing to padding.

The packing reaches the attention modules through transformers' attention interface: the forward pass's
keyword arguments carry it down. Positions restart at 0 for each text. A model whose attention bypasses
the interface, or that ignores ``position_ids``, would compute something else when packed, so every start
checks packed against padded states on token ids of mixed lengths. Where they differ, the model serves
padded batches.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from transformers import AttentionInterface

logger = logging.getLogger(__name__)

PACKED_ATTENTION = "localmaker_packed"  # the name the model's config is switched to
PACKING_KWARG = "localmaker_packing"
PROBE_LENGTHS = (3, 11, 29)  # mixed, so the padded reference pads and a leak between texts shows
PROBE_SEED = 0
# Per-token cosine between packed and padded states. Half precision rounds every op, and packing changes
# the shapes the kernels see, so its bar is lower.
MIN_COSINE = 0.9999
MIN_COSINE_HALF = 0.995


class PackingUnsupported(RuntimeError):
    """The model's attention needs something the packed layout does not carry (a window, a softcap)."""


# A text shorter than this share of its attention group's longest starts a new group. Attention runs padded
# to each group's longest text; smaller groups pad less but cost an SDPA call each.
GROUP_FILL = 0.5


@dataclass(frozen=True)
class AttentionGroup:
    """Texts of like length whose attention runs as one padded [texts, heads, longest, dim] SDPA call."""

    tokens: torch.Tensor  # [n]: where the group's tokens are in the packed row
    rows: torch.Tensor  # [n]: each token's text, numbered within the group
    positions: torch.Tensor  # [n]: its position in that text, from 0
    real: torch.Tensor  # [texts, longest], bool: real tokens, left-aligned

    def spread(self, packed: torch.Tensor) -> torch.Tensor:
        """[1, heads, tokens, dim] -> [texts, heads, longest, dim], zeros where a text has no token."""
        tokens = packed[0, :, self.tokens].transpose(0, 1)
        spread = tokens.new_zeros((*self.real.shape, *tokens.shape[1:]))
        spread[self.rows, self.positions] = tokens
        return spread.transpose(1, 2)

    def gather(self, spread: torch.Tensor) -> torch.Tensor:
        """[texts, longest, heads, dim] -> [n, heads, dim]: the group's real tokens, in packed order."""
        return spread[self.rows, self.positions]


@dataclass(frozen=True)
class Packing:
    """Where each packed token sits: its position in its text, and the attention group it runs in."""

    positions: torch.Tensor  # [tokens]: each packed token's position in its text, from 0
    groups: tuple[AttentionGroup, ...]

    @classmethod
    def of(cls, attention_mask: torch.Tensor) -> Packing:
        """The packing of a padded batch's real tokens, in row order; left or right padding alike."""
        mask = attention_mask.bool()
        texts = mask.nonzero(as_tuple=True)[0]
        positions = mask.cumsum(dim=1)[mask] - 1
        lengths = mask.sum(dim=1)
        groups = []
        for members in _like_lengths(lengths.tolist()):
            member = torch.tensor(members, device=mask.device)
            row_in_group = torch.full_like(lengths, -1)
            row_in_group[member] = torch.arange(len(members), device=mask.device)
            tokens = (row_in_group[texts] >= 0).nonzero(as_tuple=True)[0]
            longest = int(lengths[member].max())
            if longest == 0:  # texts with no tokens attend to nothing; their states stay zero, as padded
                continue
            real = torch.arange(longest, device=mask.device).unsqueeze(0) < lengths[member].unsqueeze(1)
            groups.append(AttentionGroup(tokens=tokens, rows=row_in_group[texts[tokens]],
                                         positions=positions[tokens], real=real))
        return cls(positions=positions, groups=tuple(groups))


def _like_lengths(lengths: list[int]) -> list[list[int]]:
    """Text indices in groups, longest first, none shorter than GROUP_FILL of its group's longest."""
    groups: list[list[int]] = []
    for index in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        if groups and lengths[index] >= GROUP_FILL * lengths[groups[-1][0]]:
            groups[-1].append(index)
        else:
            groups.append([index])
    return groups


def packed_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                     attention_mask: torch.Tensor | None, dropout: float = 0.0, scaling: float | None = None,
                     **kwargs: Any) -> tuple[torch.Tensor, None]:
    """transformers' attention-function contract; each text attends only to itself when packed."""
    packing = kwargs.pop(PACKING_KWARG, None)
    if packing is None:
        # transformers builds no mask for an attention function it does not know, so a padded call here
        # would let every text attend to the padding: refused rather than answered wrongly.
        raise PackingUnsupported("a model switched to packed attention was called without a packing")
    if getattr(module, "sliding_window", None) is not None or kwargs.get("softcap") is not None:
        raise PackingUnsupported("the model's attention uses a sliding window or a softcap")
    kv_groups = int(getattr(module, "num_key_value_groups", 1) or 1)
    # SDPA's own rule for a module that does not say (transformers' sdpa_attention_forward).
    causal = kwargs.get("is_causal")
    if causal is None:
        causal = getattr(module, "is_causal", True)
    output = query.new_empty((query.shape[2], query.shape[1], query.shape[3]))  # [tokens, heads, dim]
    for group in packing.groups:
        q, k, v = group.spread(query), group.spread(key), group.spread(value)
        if kv_groups > 1:
            k, v = k.repeat_interleave(kv_groups, dim=1), v.repeat_interleave(kv_groups, dim=1)
        if causal:  # texts are left-aligned, so a real token's causal window holds real tokens only
            attended = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling)
        else:
            attended = F.scaled_dot_product_attention(q, k, v, attn_mask=group.real[:, None, None, :],
                                                      scale=scaling)
        output[group.tokens] = group.gather(attended.transpose(1, 2))
    return output.unsqueeze(0), None


AttentionInterface.register(PACKED_ATTENTION, packed_attention)


class PackedEncoder:
    """``encoder(padded inputs) -> padded last_hidden_state``, as the padded pass's, computed packed."""

    def __init__(self, transformer: Any) -> None:
        self.transformer = transformer

    def __call__(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"].bool()
        packing = Packing.of(mask)
        feed = {name: tensor[mask].unsqueeze(0) for name, tensor in inputs.items() if name != "attention_mask"}
        states = self.transformer(**feed, position_ids=packing.positions.unsqueeze(0),
                                  **{PACKING_KWARG: packing}).last_hidden_state[0]
        padded = states.new_zeros((*mask.shape, states.shape[-1]))
        padded[mask] = states
        return padded


def packed_encoder(transformer: Any) -> PackedEncoder | None:
    """The packed forward pass for ``transformer``, or None where packing would change its states.

    ``transformer`` must run SDPA attention. It is switched to ``packed_attention`` for good, so from
    then on only the returned encoder may call it; it is switched back if the check fails.
    """
    if getattr(transformer.config, "_attn_implementation", None) != "sdpa":
        logger.info("packed batches off: the model does not run SDPA attention")
        return None
    probe = _probe_inputs(transformer)
    with torch.inference_mode():
        expected = transformer(**probe).last_hidden_state
    encoder = PackedEncoder(transformer)
    try:
        transformer.set_attn_implementation(PACKED_ATTENTION)
        if transformer.config._attn_implementation != PACKED_ATTENTION:
            raise PackingUnsupported("the model does not route its attention through transformers' interface")
        with torch.inference_mode():
            agreement = _min_token_cosine(encoder(probe), expected, probe["attention_mask"])
        if agreement < (MIN_COSINE if expected.dtype in (torch.float32, torch.float64) else MIN_COSINE_HALF):
            raise PackingUnsupported(f"packed states differ from padded ones (cosine {agreement:.6f})")
    except Exception as exc:  # noqa: BLE001 - any failure only means this model serves padded batches
        transformer.set_attn_implementation("sdpa")
        logger.info("packed batches off for this model (%s); serving padded batches", exc)
        return None
    logger.info("packed batches on: the forward pass runs the real tokens only, checked against padded")
    return encoder


def _probe_inputs(transformer: Any) -> dict[str, torch.Tensor]:
    device = next(transformer.parameters()).device
    vocabulary = int(getattr(transformer.config, "vocab_size", 1000) or 1000)
    generator = torch.Generator().manual_seed(PROBE_SEED)
    longest = max(PROBE_LENGTHS)
    ids = torch.randint(0, vocabulary, (len(PROBE_LENGTHS), longest), generator=generator)
    mask = (torch.arange(longest).unsqueeze(0) < torch.tensor(PROBE_LENGTHS).unsqueeze(1)).long()
    return {"input_ids": (ids * mask).to(device), "attention_mask": mask.to(device)}


def _min_token_cosine(got: torch.Tensor, expected: torch.Tensor, attention_mask: torch.Tensor) -> float:
    real = attention_mask.bool()
    return float(F.cosine_similarity(got[real].float(), expected[real].float(), dim=-1).min())
