"""Prompt truncation, said out loud.

CLIP's text encoder reads a fixed number of tokens (77 for SD1.5, counting the start and end tokens);
the pipeline silently drops the rest. A caller whose long prompt half-works deserves to know which words
were ignored, so the response carries a warning quoting them.
"""

from __future__ import annotations

from typing import Any


def truncation_warning(tokenizer: Any, text: str, field: str) -> str | None:
    """A warning naming the dropped text when ``text`` is longer than ``tokenizer`` keeps, else None."""
    limit = int(tokenizer.model_max_length)
    ids = tokenizer(text, truncation=False, add_special_tokens=True, verbose=False)["input_ids"]
    if len(ids) <= limit:
        return None
    # Truncation keeps the start token, the first limit-2 text tokens and the end token, as the
    # pipeline's own tokenizer call does; what is between there and the end token was ignored.
    dropped = tokenizer.decode(ids[limit - 1 : -1], skip_special_tokens=True).strip()
    return f"{field} is {len(ids)} tokens; CLIP reads the first {limit}, the rest was ignored: '{dropped}'"
