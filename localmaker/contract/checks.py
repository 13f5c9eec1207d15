"""The contract checks: each judges what the endpoint answered and says why it passed or failed.

The checks only judge; the runner sends the requests. The statuses follow SageMaker's contract as
localmaker holds it: a request the handler cannot take is the caller's mistake, so it gets a 4xx
(415 for the Content-Type, 406 for the Accept, 400 for a malformed body, 413 past the size limit),
never a 500, which tells the caller to retry a request that can never succeed.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from localmaker.contract.body_formats import accepted, body_mismatch
from localmaker.contract.check_names import (
    CONTENT_TYPES,
    EXAMPLE_PREFIX,
    MALFORMED_BODY,
    PAYLOAD_TOO_LARGE,
    PING,
    RESPONSE_CONTENT_TYPE,
    UNSUPPORTED_ACCEPT,
    UNSUPPORTED_CONTENT_TYPE,
)
from localmaker.contract.examples import ExampleCase
from localmaker.contract.instance_client import Exchange, Reply
from localmaker.contract.json_subset import json_mismatch
from localmaker.contract.probes import UNSUPPORTED_TYPE
from localmaker.contract.results import CheckResult, Outcome
from localmaker.spec.media_types import media_type


def _seconds(exchanges: Sequence[Exchange]) -> float:
    return sum(exchange.reply.seconds for exchange in exchanges)


def example_name(case: ExampleCase) -> str:
    return EXAMPLE_PREFIX + case.name


def check_ping(deploy_failure: str | None, deploy_seconds: float, pings: Sequence[Reply]) -> CheckResult:
    if deploy_failure is not None:
        return CheckResult.failed(PING, deploy_failure, deploy_seconds)
    unhealthy = [reply for reply in pings if reply.status != 200]
    if unhealthy or not pings:
        detail = unhealthy[0].describe() if unhealthy else "there is no instance to ask"
        return CheckResult.failed(PING, f"InService, but GET /ping {detail}", deploy_seconds)
    return CheckResult.passed(PING, f"InService after {deploy_seconds:.1f} s; GET /ping answered 200 on "
                                    f"{len(pings)} instance(s)", deploy_seconds)


def _pair(exchange: Exchange) -> str:
    return f"{media_type(exchange.request.content_type)} -> {exchange.request.accept or '(no Accept)'}"


def check_content_types(declared: Sequence[Exchange]) -> CheckResult:
    """``declared`` are the examples that expect a 2xx; a pair passes when one of its examples got one."""
    pairs: dict[str, list[Exchange]] = {}
    for exchange in declared:
        pairs.setdefault(_pair(exchange), []).append(exchange)
    refused = [f"{pair} {exchanges[0].reply.describe()}" for pair, exchanges in pairs.items()
               if not any(_is_success(e.reply) for e in exchanges)]
    if refused:
        return CheckResult.failed(CONTENT_TYPES, "; ".join(refused), _seconds(declared))
    return CheckResult.passed(CONTENT_TYPES, f"2xx for {', '.join(pairs)}", _seconds(declared))


def _is_success(reply: Reply) -> bool:
    return reply.status is not None and 200 <= reply.status < 300


def _client_error_expected(name: str, exchange: Exchange, what: str, usual: int) -> CheckResult:
    reply, seconds = exchange.reply, exchange.reply.seconds
    if reply.status is None:
        return CheckResult.failed(name, f"{what} {reply.describe()}", seconds)
    if 400 <= reply.status < 500:
        note = "" if reply.status == usual else f" ({usual} is the usual status)"
        return CheckResult.passed(name, f"{what} answered {reply.status}{note}", seconds)
    if reply.status >= 500:
        return CheckResult.failed(name, f"{what} {reply.describe()}; that is the caller's mistake, so answer "
                                        f"{usual} (raise an error whose status_code is {usual}), not a server error",
                                  seconds)
    return CheckResult.failed(name, f"{what} answered {reply.status}; refuse what the handler does not support "
                                    f"with {usual} rather than guess", seconds)


def check_unsupported_content_type(exchange: Exchange) -> CheckResult:
    return _client_error_expected(UNSUPPORTED_CONTENT_TYPE, exchange, f"Content-Type {UNSUPPORTED_TYPE}", 415)


def check_unsupported_accept(exchange: Exchange) -> CheckResult:
    return _client_error_expected(UNSUPPORTED_ACCEPT, exchange, f"Accept {UNSUPPORTED_TYPE}", 406)


def check_malformed_bodies(exchanges: Sequence[Exchange]) -> CheckResult:
    if not exchanges:
        return CheckResult.skipped(MALFORMED_BODY, "no declared Content-Type is JSON or .npy, the syntaxes "
                                                   "this check knows how to break")
    results = [_client_error_expected(MALFORMED_BODY, e, f"a malformed {e.request.content_type} body", 400)
               for e in exchanges]
    failures = [result.reason for result in results if result.outcome is Outcome.FAILED]
    reason = "; ".join(failures or [result.reason for result in results])
    if failures:
        return CheckResult.failed(MALFORMED_BODY, reason, _seconds(exchanges))
    return CheckResult.passed(MALFORMED_BODY, reason, _seconds(exchanges))


def check_payload_too_large(exchange: Exchange) -> CheckResult:
    reply, size = exchange.reply, len(exchange.request.body)
    if reply.status == 413:
        return CheckResult.passed(PAYLOAD_TOO_LARGE, f"a {size}-byte body answered 413", reply.seconds)
    return CheckResult.failed(PAYLOAD_TOO_LARGE, f"a {size}-byte body {reply.describe()}; expected 413, as SageMaker "
                                                 "refuses real-time bodies over 6 MB", reply.seconds)


def _content_type_problem(exchange: Exchange) -> str | None:
    reply = exchange.reply
    if reply.status is None:
        return None  # no answer: the check that sent it reports that
    mismatch = body_mismatch(reply.content_type, reply.body)
    if mismatch is not None:
        return f"{exchange.label} ({reply.status}, Content-Type {reply.content_type}): {mismatch}"
    if _is_success(reply) and not accepted(exchange.request.accept, reply.content_type):
        return f"{exchange.label} ({reply.status}): asked for {exchange.request.accept}, got {reply.content_type}"
    return None


def check_response_content_types(exchanges: Sequence[Exchange], shown: int = 3) -> CheckResult:
    answered = [e for e in exchanges if e.reply.status is not None]
    problems = [p for p in map(_content_type_problem, answered) if p is not None]
    if problems:
        more = f" (+{len(problems) - shown} more)" if len(problems) > shown else ""
        return CheckResult.failed(RESPONSE_CONTENT_TYPE, "; ".join(problems[:shown]) + more)
    return CheckResult.passed(RESPONSE_CONTENT_TYPE, f"{len(answered)} responses, each body of its Content-Type")


def check_example(case: ExampleCase, exchange: Exchange) -> CheckResult:
    name, reply = example_name(case), exchange.reply
    if reply.status != case.expect_status:
        return CheckResult.failed(name, f"expected {case.expect_status}, {reply.describe()}", reply.seconds)
    if not case.checks_json:
        return CheckResult.passed(name, f"answered {reply.status}", reply.seconds)
    try:
        answer = json.loads(reply.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        return CheckResult.failed(name, f"answered {reply.status} with {reply.content_type} that is not JSON "
                                        f"({exc}), so expect_json cannot match", reply.seconds)
    mismatch = json_mismatch(case.expect_json, answer, case.tolerance)
    if mismatch is not None:
        return CheckResult.failed(name, f"answered {reply.status}, but {mismatch}", reply.seconds)
    return CheckResult.passed(name, f"answered {reply.status}; the JSON matches", reply.seconds)
