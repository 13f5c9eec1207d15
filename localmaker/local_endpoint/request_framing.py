"""Where an HTTP/1.x request ends, found from its bytes as they arrive: no socket, no threads.

The instance's front (``request_front``) feeds each connection's bytes here until the request is whole,
so that a thread only ever serves a complete request. It judges framing only: Content-Length, chunked
transfer coding, and the size limits. Anything it cannot frame with certainty (a malformed or
contradictory header) is handed on as it is, for gunicorn's own parser to refuse in its own words.
"""

from __future__ import annotations

import enum

MAX_HEAD_BYTES = 64 * 1024  # gunicorn's own limits (request line 4094, 100 fields of 8190) fit well inside
MAX_CHUNK_LINE_BYTES = 1024
CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Verdict(enum.Enum):
    NEED_MORE = "need more bytes"
    COMPLETE = "the request is whole"
    HAND_ON = "not framed here: gunicorn's parser answers it"
    BODY_TOO_LARGE = "the body is over the limit"
    HEAD_TOO_LARGE = "the header section is over the limit"


class _State(enum.Enum):
    HEAD = enum.auto()
    FIXED = enum.auto()
    CHUNK_SIZE = enum.auto()
    CHUNK_DATA = enum.auto()
    TRAILERS = enum.auto()


class RequestFraming:
    """The bytes of one request so far, and whether they are the whole request yet."""

    def __init__(self, max_body_bytes: int, max_head_bytes: int = MAX_HEAD_BYTES) -> None:
        self.buffer = bytearray()
        self.max_body_bytes = max_body_bytes
        self.max_head_bytes = max_head_bytes
        # A chunked body of one-byte chunks carries five bytes of framing per byte of payload: the raw
        # bytes are bounded too, or the limit on the payload would not bound memory.
        self._max_raw_bytes = max_head_bytes + 2 * max_body_bytes + 64 * 1024
        self.in_body = False  # past the header section: a stall now is answered 408, not just dropped
        self.wants_continue = False  # the client waits for "100 Continue" before it sends its body
        self._state = _State.HEAD
        self._pos = 0
        self._remaining = 0
        self._payload = 0

    def feed(self, data: bytes) -> Verdict:
        self.buffer += data
        if len(self.buffer) > self._max_raw_bytes:
            return Verdict.HEAD_TOO_LARGE if self._state is _State.HEAD else Verdict.BODY_TOO_LARGE
        return self._advance()

    def _advance(self) -> Verdict:
        if self._state is _State.HEAD:
            verdict = self._read_head()
            if verdict is not None:
                return verdict
        while True:
            if self._state is _State.FIXED:
                taken = min(self._remaining, len(self.buffer) - self._pos)
                self._pos += taken
                self._remaining -= taken
                return Verdict.NEED_MORE if self._remaining else Verdict.COMPLETE
            if self._state is _State.CHUNK_DATA:
                taken = min(self._remaining, len(self.buffer) - self._pos)
                self._pos += taken
                self._remaining -= taken
                if self._remaining:
                    return Verdict.NEED_MORE
                self._state = _State.CHUNK_SIZE
                continue
            line = self._line()
            if line is None:
                return Verdict.HAND_ON if len(self.buffer) - self._pos > MAX_CHUNK_LINE_BYTES else Verdict.NEED_MORE
            if self._state is _State.TRAILERS:
                if not line:
                    return Verdict.COMPLETE
                continue
            try:  # CHUNK_SIZE; extensions after ";" carry nothing for framing
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                return Verdict.HAND_ON
            if size < 0:
                return Verdict.HAND_ON
            if size == 0:
                self._state = _State.TRAILERS
                continue
            self._payload += size
            if self._payload > self.max_body_bytes:  # judged on the declared size, before the data comes
                return Verdict.BODY_TOO_LARGE
            self._remaining = size + 2  # the data and its CRLF
            self._state = _State.CHUNK_DATA

    def _line(self) -> bytes | None:
        end = self.buffer.find(b"\r\n", self._pos)
        if end < 0:
            return None
        line = bytes(self.buffer[self._pos:end])
        self._pos = end + 2
        return line

    def _read_head(self) -> Verdict | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return Verdict.HEAD_TOO_LARGE if len(self.buffer) > self.max_head_bytes else Verdict.NEED_MORE
        if end + 4 > self.max_head_bytes:
            return Verdict.HEAD_TOO_LARGE
        lines = bytes(self.buffer[:end]).split(b"\r\n")
        lengths: set[bytes] = set()
        chunked = expects_continue = False
        kept = [lines[0]]
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                return Verdict.HAND_ON
            field, value = name.strip().lower(), value.strip()
            if field == b"content-length":
                lengths.add(value)
            elif field == b"transfer-encoding":
                if value.lower().rsplit(b",", 1)[-1].strip() != b"chunked":
                    return Verdict.HAND_ON
                chunked = True
            elif field == b"expect" and value.lower() == b"100-continue" and lines[0].endswith(b"HTTP/1.1"):
                expects_continue = True
                continue  # answered here, so gunicorn must not answer it again after the body
            kept.append(line)
        if (chunked and lengths) or len(lengths) > 1 or any(not (v.isascii() and v.isdigit()) for v in lengths):
            return Verdict.HAND_ON  # request smuggling or garbage: gunicorn refuses it
        if expects_continue:
            head = b"\r\n".join(kept) + b"\r\n\r\n"
            self.buffer[:end + 4] = head
            end = len(head) - 4
        self._pos = end + 4
        self.in_body = True
        if chunked:
            self._state = _State.CHUNK_SIZE
        elif lengths:
            self._remaining = int(next(iter(lengths)))
            if self._remaining > self.max_body_bytes:
                return Verdict.BODY_TOO_LARGE
            self._state = _State.FIXED
        else:
            return Verdict.COMPLETE
        self.wants_continue = expects_continue
        return None
