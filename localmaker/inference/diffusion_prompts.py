"""Prompt truncation, said out loud.

CLIP's text encoder reads a fixed number of tokens (77 for SD1.5, counting the start and end tokens);
the pipeline silently drops the rest. A caller whose long prompt half-works deserves to know which words
were ignored, so the response carries a warning quoting the start of them.
"""

from __future__ import annotations

import logging
from typing import Any

# The warning goes into the response and the log: a multi-megabyte prompt must not make it as large.
# The start of the dropped text is what tells a caller where the cut fell; the counts say how much went.
QUOTE_CHARS = 200
# diffusers logs the whole dropped text itself, from the module that runs the pipeline; ours replaces it.
_DIFFUSERS_LOGGER = "diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion"
_DIFFUSERS_TRUNCATION = "The following part of your input was truncated"


def truncation_warning(tokenizer: Any, text: str, field: str) -> str | None:
    """A warning naming the dropped text when ``text`` is longer than ``tokenizer`` keeps, else None."""
    limit = int(tokenizer.model_max_length)
    ids = tokenizer(text, truncation=False, add_special_tokens=True, verbose=False)["input_ids"]
    if len(ids) <= limit:
        return None
    # Truncation keeps the start token, the first limit-2 text tokens and the end token, as the
    # pipeline's own tokenizer call does; what is between there and the end token was ignored.
    dropped_ids = ids[limit - 1 : -1]
    # Every CLIP token decodes to at least one character, so QUOTE_CHARS tokens are enough to quote from;
    # decoding only those keeps the cost independent of the prompt's length.
    quoted = tokenizer.decode(dropped_ids[:QUOTE_CHARS], skip_special_tokens=True).strip()
    if len(quoted) > QUOTE_CHARS or len(dropped_ids) > QUOTE_CHARS:
        quoted = quoted[:QUOTE_CHARS].rstrip() + "…"
    return (
        f"{field} is {len(ids)} tokens; CLIP reads the first {limit}, the rest ({len(dropped_ids)} tokens) "
        f"was ignored: '{quoted}'"
    )


class _OursSaysItBetter(logging.Filter):
    """Drops diffusers' own truncation message, which quotes the whole dropped text: the service logs
    ``truncation_warning``'s bounded one for the same request."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (isinstance(record.msg, str) and record.msg.startswith(_DIFFUSERS_TRUNCATION))


def quiet_diffusers_truncation_log() -> None:
    """Keep diffusers from writing a multi-megabyte prompt into the log; idempotent."""
    target = logging.getLogger(_DIFFUSERS_LOGGER)
    if not any(isinstance(existing, _OursSaysItBetter) for existing in target.filters):
        target.addFilter(_OursSaysItBetter())
