"""Pure functions that turn token states into one vector per text, and post-process those vectors.

Kept free of model and I/O so each can be checked against a hand computation. Padding may be on either
side: Qwen3-Embedding pads on the left, BERT-style tokenizers on the right, so every function finds the
real tokens through the attention mask instead of assuming a layout.
"""

from __future__ import annotations

import numpy as np
import torch

_EPS = 1e-12


def mean_pool(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Attention-masked mean over the sequence: ``(batch, seq, hidden) -> (batch, hidden)``."""
    mask = attention_mask.unsqueeze(-1).to(token_states.dtype)
    summed = (token_states * mask).sum(dim=1)
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def last_real_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's last real token, whether the batch is padded on the left or the right."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions.unsqueeze(0) * (attention_mask != 0)).max(dim=1).values


def first_real_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Index of each row's first real token (0 with right padding, after the pads with left padding)."""
    return (attention_mask != 0).to(torch.int64).argmax(dim=1)


def _gather_rows(token_states: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(token_states.shape[0], device=token_states.device)
    return token_states[rows, index.to(token_states.device)]


def last_token_pool(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The state of each row's last real token (for decoder models such as Qwen3-Embedding)."""
    return _gather_rows(token_states, last_real_token_index(attention_mask))


def cls_pool(token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """The state of each row's first real token (the [CLS] position for BERT-style encoders)."""
    return _gather_rows(token_states, first_real_token_index(attention_mask))


def exclude_prompt_tokens(attention_mask: torch.Tensor, prompt_length: int | torch.Tensor) -> torch.Tensor:
    """A copy of the mask with each row's first ``prompt_length`` real tokens switched off.

    For models whose pooling config says ``include_prompt: false`` (INSTRUCTOR-style): the prompt steers
    the encoder but is not averaged into the embedding. ``prompt_length`` is one length for every row,
    or one per row when a batch mixes requests with different prompts.
    """
    lengths = torch.as_tensor(prompt_length, device=attention_mask.device).reshape(-1, 1)
    if not bool((lengths > 0).any()):
        return attention_mask
    first = first_real_token_index(attention_mask).unsqueeze(1)
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device).unsqueeze(0)
    return attention_mask * (positions >= first + lengths).to(attention_mask.dtype)


def pool(mode: str, token_states: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Dispatch to the pooling named by ``mode`` (``mean``, ``last_token`` or ``cls``)."""
    if mode == "mean":
        return mean_pool(token_states, attention_mask)
    if mode == "last_token":
        return last_token_pool(token_states, attention_mask)
    if mode == "cls":
        return cls_pool(token_states, attention_mask)
    raise ValueError(f"unknown pooling mode {mode!r}; expected mean, last_token or cls")


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Scale each row to unit length, so a dot product is the cosine similarity."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit: np.ndarray = vectors / np.maximum(norms, _EPS)
    return unit


def truncate_dimensions(vectors: np.ndarray, dimensions: int, normalize: bool = True) -> np.ndarray:
    """Matryoshka truncation: keep the first ``dimensions`` components, then renormalise if asked."""
    truncated = vectors[:, :dimensions]
    return l2_normalize(truncated) if normalize else truncated
