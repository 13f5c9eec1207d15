"""Run the whole contract against one deployment: ping, the probes, then the declared examples.

The probes go first and the examples last, so an endpoint that stops serving after a bad request (a
worker that crashed and reloads) fails its examples instead of hiding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from localmaker.contract import checks, probes
from localmaker.contract.check_names import PROBE_CHECKS
from localmaker.contract.deployment import ContractTarget, Deployment, deployed
from localmaker.contract.examples import ExampleCase
from localmaker.contract.instance_client import Exchange, InstanceClient, ProbeRequest
from localmaker.contract.results import CheckResult, Outcome
from localmaker.deploy import Session
from localmaker.errors import ConfigurationError
from localmaker.spec.names import MAX_PAYLOAD_BYTES


@dataclass(frozen=True)
class ContractRun:
    target: ContractTarget
    endpoint_name: str
    results: list[CheckResult]

    @property
    def failed(self) -> bool:
        return any(result.outcome is Outcome.FAILED for result in self.results)


def _send(client: InstanceClient, label: str, request: ProbeRequest) -> Exchange:
    return Exchange(label, request, client.invoke(request))


def _judge(deployment: Deployment, cases: Sequence[ExampleCase], timeout_s: float) -> list[CheckResult]:
    pings = [InstanceClient(url, timeout_s).ping() for url in deployment.instance_urls]
    ping = checks.check_ping(deployment.failure, deployment.seconds, pings)
    if ping.outcome is Outcome.FAILED:
        reason = "not run: the endpoint never became healthy"
        return [ping, *(CheckResult.skipped(name, reason) for name in PROBE_CHECKS),
                *(CheckResult.skipped(checks.example_name(case), reason) for case in cases)]

    client = InstanceClient(deployment.instance_urls[0], timeout_s)
    declared = [case for case in cases if case.expects_success]
    base = declared[0].request()
    wrong_type = _send(client, "unsupported Content-Type", probes.unsupported_content_type(base))
    wrong_accept = _send(client, "unsupported Accept", probes.unsupported_accept(base))
    malformed = [_send(client, f"malformed {request.content_type}", request)
                 for request in probes.malformed_bodies((case.content_type for case in declared), base.accept)]
    too_large = _send(client, "over-limit body", probes.oversized(base, MAX_PAYLOAD_BYTES))
    examples = [_send(client, f"example {case.name!r}", case.request()) for case in cases]

    declared_exchanges = [e for case, e in zip(cases, examples, strict=True) if case.expects_success]
    return [
        ping,
        checks.check_content_types(declared_exchanges),
        checks.check_unsupported_content_type(wrong_type),
        checks.check_unsupported_accept(wrong_accept),
        checks.check_malformed_bodies(malformed),
        checks.check_payload_too_large(too_large),
        checks.check_response_content_types([wrong_type, wrong_accept, *malformed, too_large, *examples]),
        *(checks.check_example(case, e) for case, e in zip(cases, examples, strict=True)),
    ]


def run_contract(session: Session, target: ContractTarget, cases: Sequence[ExampleCase]) -> ContractRun:
    """Deploy ``target`` on ``session``, check it against ``cases``, and delete it again."""
    if not any(case.expects_success for case in cases):
        raise ConfigurationError("no example expects a 2xx status; the probes are built from one that does")
    with deployed(session, target) as deployment:
        results = _judge(deployment, cases, target.request_timeout_s)
    return ContractRun(target, deployment.endpoint_name, results)
