"""The AWS wire protocol a request speaks, read from the request alone, and an error answer in its shape.

botocore reads an error the way its service's protocol writes one: JSON (an ``X-Amz-Target`` header:
SageMaker, Logs), query (a form with ``Action=``, answered in XML: IAM, STS), RPC v2 CBOR (a
``smithy-protocol`` header), REST-XML (S3) and REST-JSON (the runtime API; localmaker's own routes answer
the same way). The control plane's app answers every ApiError through ``error_answer``, so a client's
parser finds what it expects, never an HTML page.
"""

from __future__ import annotations

import enum
import re
import struct
import uuid
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

from localmaker.control_plane.answers import AMZ_JSON, Answer, Environ
from localmaker.control_plane.api_errors import ApiError
from localmaker.control_plane.request_bodies import MAX_API_BODY_BYTES, read_body

# SigV4's credential scope, in the Authorization header or (a presigned URL) the query string.
_CREDENTIAL = re.compile(r"Credential=[^/,\s&]+(?:/|%2F)\d{8}(?:/|%2F)[^/,\s&%]+(?:/|%2F)(?P<service>[^/,\s&%]+)"
                         r"(?:/|%2F)aws4_request", re.IGNORECASE)
_QUERY_PARAMETERS = "localmaker.query_parameters"
_CBOR_OPERATION = re.compile(r"^/service/[^/]+/operation/(?P<operation>[^/]+)$")


class Protocol(enum.Enum):
    JSON = "json"
    QUERY = "query"
    CBOR = "smithy-rpc-v2-cbor"
    REST_XML = "rest-xml"
    REST_JSON = "rest-json"


def signing_service(environ: Environ) -> str | None:
    """The service a SigV4 request was signed for: ``Credential=<key>/<date>/<region>/<service>/...``."""
    match = (_CREDENTIAL.search(environ.get("HTTP_AUTHORIZATION", ""))
             or _CREDENTIAL.search(environ.get("QUERY_STRING", "")))
    return match.group("service").lower() if match else None


def protocol_of(environ: Environ) -> Protocol:
    if environ.get("HTTP_X_AMZ_TARGET"):
        return Protocol.JSON
    if environ.get("HTTP_SMITHY_PROTOCOL", "").lower() == "rpc-v2-cbor":
        return Protocol.CBOR
    if signing_service(environ) == "s3":  # before the form: an object may be uploaded with any Content-Type
        return Protocol.REST_XML
    if _is_form(environ) or "Action" in parse_qs(environ.get("QUERY_STRING", "")):
        return Protocol.QUERY
    return Protocol.REST_JSON


def query_parameters(environ: Environ) -> dict[str, str]:
    """A query-protocol request's parameters, from its URL and its form body (put back for moto), read once:
    moto consumes the body, and an error message after it still names the Action."""
    if _QUERY_PARAMETERS not in environ:
        pairs = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        if _is_form(environ):
            try:
                body = read_body(environ, MAX_API_BODY_BYTES)
            except (ValueError, OSError):
                body = b""
            pairs.update(parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True))
        environ[_QUERY_PARAMETERS] = {key: values[-1] for key, values in pairs.items()}
    return dict(environ[_QUERY_PARAMETERS])


def operation_name(environ: Environ) -> str:
    """What a message calls the request: its target, its query Action, its CBOR operation, or method and path."""
    path = environ.get("PATH_INFO", "")
    if target := environ.get("HTTP_X_AMZ_TARGET"):
        return str(target)
    protocol = protocol_of(environ)
    if protocol is Protocol.CBOR and (match := _CBOR_OPERATION.match(path)):
        return match.group("operation")
    if protocol is Protocol.QUERY and (action := query_parameters(environ).get("Action")):
        service = signing_service(environ)
        return f"{service.upper()}.{action}" if service else action
    return f"{environ.get('REQUEST_METHOD')} {path}"


def error_answer(error: ApiError, environ: Environ, json_content_type: str = AMZ_JSON,
                 protocol: Protocol | None = None) -> Answer:
    """``error`` in the shape the request's protocol (``protocol``, else read from the request) reads, with
    ``json_content_type`` where that is JSON."""
    protocol = protocol or protocol_of(environ)
    if protocol is Protocol.QUERY:
        code = getattr(error, "query_code", error.code)
        kind = "Sender" if error.status < 500 else "Receiver"
        xml = (f"<ErrorResponse><Error><Type>{kind}</Type><Code>{escape(code)}</Code>"
               f"<Message>{escape(error.message)}</Message></Error>"
               f"<RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>")
        return Answer.of(error.status, xml.encode("utf-8"), "text/xml", error.headers)
    if protocol is Protocol.REST_XML:
        code = getattr(error, "s3_code", error.code)  # S3 names some errors its own way (AccessDenied)
        xml = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{escape(code)}</Code>'
               f"<Message>{escape(error.message)}</Message><RequestId>{uuid.uuid4()}</RequestId></Error>")
        return Answer.of(error.status, xml.encode("utf-8"), "application/xml", error.headers)
    if protocol is Protocol.CBOR:
        body = _cbor_text_map({"__type": error.code, "message": error.message})
        return Answer.of(error.status, body, "application/cbor", [("smithy-protocol", "rpc-v2-cbor"), *error.headers])
    requested = environ.get("CONTENT_TYPE", "")
    if protocol is Protocol.JSON and requested.startswith("application/x-amz-json-"):
        json_content_type = requested
    return error.answer(json_content_type)


def _is_form(environ: Environ) -> bool:
    return bool(environ.get("CONTENT_TYPE", "").lower().startswith("application/x-www-form-urlencoded"))


def _cbor_text_map(items: dict[str, str]) -> bytes:
    """A CBOR map of text to text (RFC 8949 major types 5 and 3): all an RPC v2 CBOR error needs."""
    return _cbor_head(5, len(items)) + b"".join(_cbor_text(k) + _cbor_text(v) for k, v in items.items())


def _cbor_text(text: str) -> bytes:
    encoded = text.encode("utf-8")
    return _cbor_head(3, len(encoded)) + encoded


def _cbor_head(major: int, length: int) -> bytes:
    if length < 24:
        return bytes([major << 5 | length])
    for info, fmt in ((24, ">B"), (25, ">H"), (26, ">I"), (27, ">Q")):
        if length < 1 << (8 * struct.calcsize(fmt)):
            return bytes([major << 5 | info]) + struct.pack(fmt, length)
    raise ValueError(f"a CBOR item of {length} entries is too long")
