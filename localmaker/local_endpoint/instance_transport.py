"""How an HTTP exchange with an instance fails, said once for every caller.

The predictor, the control plane's invocation proxy and the contract test all post to an instance's
``/invocations`` with urllib3. What a failure means for a retry depends only on how far the exchange got,
so urllib3's exception classes are mapped here, at one place, onto three that say that (the way httpx
maps httpcore's errors onto its own):

- ``InstanceUnreachable``: no connection was made, so the container never saw the request; sending it
  to another instance cannot run it twice.
- ``ConnectionDropped``: the connection broke while the request or its answer was on the wire.
- ``NoAnswer``: anything else that left the caller without an answer (a read timeout, a garbled reply).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import urllib3


class InstanceTransportError(Exception):
    """The exchange with an instance failed before a whole answer came back."""


class InstanceUnreachable(InstanceTransportError):
    pass


class ConnectionDropped(InstanceTransportError):
    pass


class NoAnswer(InstanceTransportError):
    pass


@contextlib.contextmanager
def mapped_transport_errors() -> Iterator[None]:
    """Run an urllib3 exchange, raising the matching InstanceTransportError in place of urllib3's own."""
    try:
        yield
    # A refused connection is urllib3's NewConnectionError, a subclass of ConnectTimeoutError.
    except urllib3.exceptions.ConnectTimeoutError as exc:
        raise InstanceUnreachable(f"the instance could not be reached: {exc}") from exc
    except urllib3.exceptions.ProtocolError as exc:
        raise ConnectionDropped(f"the instance did not answer: {exc}") from exc
    except urllib3.exceptions.HTTPError as exc:
        raise NoAnswer(f"the instance did not answer: {exc}") from exc
