"""The contract checks' names and what each holds the endpoint to, in the order the table lists them.

Kept apart from the checks themselves so that ``localmaker --help`` can list them without importing
numpy and Pillow.
"""

from __future__ import annotations

PING = "ping"
CONTENT_TYPES = "content-types"
UNSUPPORTED_CONTENT_TYPE = "unsupported-content-type"
UNSUPPORTED_ACCEPT = "unsupported-accept"
MALFORMED_BODY = "malformed-body"
PAYLOAD_TOO_LARGE = "payload-too-large"
RESPONSE_CONTENT_TYPE = "response-content-type"
EXAMPLE_PREFIX = "example: "

DESCRIPTIONS = {
    PING: "GET /ping answers 200 within the startup timeout",
    CONTENT_TYPES: "POST /invocations answers each declared Content-Type/Accept pair with a 2xx",
    UNSUPPORTED_CONTENT_TYPE: "an unsupported Content-Type gets a 4xx (415), not a 500",
    UNSUPPORTED_ACCEPT: "an unsupported Accept gets a 4xx (406), not a 500",
    MALFORMED_BODY: "a malformed JSON or .npy body gets a 4xx (400)",
    PAYLOAD_TOO_LARGE: "a body over the 6 MB limit gets 413",
    RESPONSE_CONTENT_TYPE: "every response's Content-Type matches its body, and a 2xx is of an accepted type",
}
PROBE_CHECKS = tuple(name for name in DESCRIPTIONS if name != PING)
