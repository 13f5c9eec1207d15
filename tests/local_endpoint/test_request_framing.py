"""Where a request ends, from hostile bytes fed in hostile pieces: the instance front's framing."""

from __future__ import annotations

import pytest

from localmaker.local_endpoint.request_framing import RequestFraming, Verdict

HEAD = b"POST /invocations HTTP/1.1\r\nHost: x\r\n"
LIMIT = 1000


def feed_bytewise(data: bytes, limit: int = LIMIT) -> tuple[Verdict, RequestFraming]:
    """One byte at a time, as the slowest client sends: the verdict once it is not NEED_MORE."""
    framing = RequestFraming(limit)
    for index in range(len(data)):
        verdict = framing.feed(data[index:index + 1])
        if verdict is not Verdict.NEED_MORE:
            assert index == len(data) - 1 or verdict is not Verdict.COMPLETE, "complete before its end"
            return verdict, framing
    return Verdict.NEED_MORE, framing


def chunked(*pieces: bytes, trailer: bytes = b"") -> bytes:
    return b"".join(f"{len(p):x};ext=1\r\n".encode() + p + b"\r\n" for p in pieces) + b"0\r\n" + trailer + b"\r\n"


def test_a_request_without_a_body_is_complete_at_the_end_of_its_headers():
    assert feed_bytewise(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")[0] is Verdict.COMPLETE


def test_a_content_length_body_is_complete_at_its_last_byte_and_not_before():
    request = HEAD + b"Content-Length: 5\r\n\r\nhello"
    verdict, framing = feed_bytewise(request)
    assert verdict is Verdict.COMPLETE and bytes(framing.buffer) == request
    assert RequestFraming(LIMIT).feed(request[:-1]) is Verdict.NEED_MORE


def test_a_chunked_body_with_extensions_and_trailers_is_complete_at_its_last_crlf():
    request = HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"ab", b"c" * 20, trailer=b"X-T: 1\r\n")
    verdict, framing = feed_bytewise(request)
    assert verdict is Verdict.COMPLETE and bytes(framing.buffer) == request
    assert RequestFraming(LIMIT).feed(request[:-1]) is Verdict.NEED_MORE


def test_a_chunked_body_over_the_limit_is_refused_on_the_declared_chunk_size_before_its_data():
    framing = RequestFraming(LIMIT)
    assert framing.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + chunked(b"x" * 600)[:-5]) is Verdict.NEED_MORE
    framing = RequestFraming(LIMIT)
    body = b"258\r\n" + b"x" * 600 + b"\r\n" + b"191\r\n"
    verdict = framing.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + body)
    assert verdict is Verdict.BODY_TOO_LARGE  # 600 + 401 > 1000, judged before the 401 bytes come


def test_a_body_of_one_byte_chunks_cannot_grow_the_buffer_past_its_bound():
    framing = RequestFraming(LIMIT)
    verdict = framing.feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n")
    while verdict is Verdict.NEED_MORE:
        verdict = framing.feed(b"0001;" + b"e" * 200 + b"\r\nx\r\n")
    assert verdict is Verdict.BODY_TOO_LARGE and len(framing.buffer) < 2 * 64 * 1024 + 2 * LIMIT + 300


@pytest.mark.parametrize("length", [LIMIT + 1, 10**30])
def test_a_declared_length_over_the_limit_is_refused_at_the_end_of_the_headers(length):
    assert feed_bytewise(HEAD + f"Content-Length: {length}\r\n\r\n".encode())[0] is Verdict.BODY_TOO_LARGE


def test_headers_that_never_end_are_refused_once_over_the_head_limit():
    framing = RequestFraming(LIMIT, max_head_bytes=100)
    assert framing.feed(HEAD) is Verdict.NEED_MORE
    assert framing.feed(b"X-Pad: " + b"p" * 100) is Verdict.HEAD_TOO_LARGE


@pytest.mark.parametrize("headers", [
    b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n",  # smuggling: gunicorn refuses both at once
    b"Content-Length: 5\r\nContent-Length: 6\r\n",
    b"Content-Length: -5\r\n",
    b"Content-Length: 0x10\r\n",
    b"Transfer-Encoding: gzip\r\n",
    b"No colon here\r\n",
])
def test_framing_it_cannot_be_sure_of_is_handed_on_for_gunicorn_to_refuse(headers):
    assert RequestFraming(LIMIT).feed(HEAD + headers + b"\r\nhello") is Verdict.HAND_ON


def test_a_bad_chunk_size_is_handed_on():
    assert RequestFraming(LIMIT).feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n") is Verdict.HAND_ON
    assert RequestFraming(LIMIT).feed(HEAD + b"Transfer-Encoding: chunked\r\n\r\n" + b"1" * 2000) is Verdict.HAND_ON


def test_expect_100_continue_is_answered_by_the_front_and_removed_from_what_gunicorn_reads():
    framing = RequestFraming(LIMIT)
    assert framing.feed(HEAD + b"Expect: 100-continue\r\nContent-Length: 2\r\n\r\n") is Verdict.NEED_MORE
    assert framing.wants_continue
    assert framing.feed(b"{}") is Verdict.COMPLETE
    assert bytes(framing.buffer) == HEAD + b"Content-Length: 2\r\n\r\n{}"
    old = RequestFraming(LIMIT)  # HTTP/1.0 has no 100-continue: ignored, as RFC 9110 says
    old.feed(b"POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert not old.wants_continue
