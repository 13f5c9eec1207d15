"""The baseline of ``benchmarks.overhead``: a bare Flask app with the container's two routes, and nothing else.

Served by ``python -m gunicorn ... benchmarks.bare_flask_app:app`` under the same worker settings as an
endpoint instance, so that the difference in latency is what localmaker's own app adds.
"""

from __future__ import annotations

from flask import Flask, Response, request

app = Flask(__name__)


@app.get("/ping")
def ping() -> Response:
    return Response(b"{}", status=200, content_type="application/json")


@app.post("/invocations")
def invocations() -> Response:
    # The same work as the no-op handler: hand the body back with its Content-Type.
    return Response(request.get_data(), status=200, content_type=request.content_type)
