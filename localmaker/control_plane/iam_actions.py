"""IAM's SimulatePrincipalPolicy, answered as a permissive local account would: everything allowed.

SageMaker SDK v3's ModelBuilder checks its role with this call before it deploys; moto has no such
action (it fails with a 500, which botocore cannot parse). localmaker checks no permissions anywhere, so
the truthful answer is that every action asked is allowed, on every resource asked. IAM speaks the query
protocol: a form with ``Action=...``, ``ActionNames.member.N=...``, answered in XML in the shape of
botocore's ``SimulatePolicyResponse`` (one EvaluationResult per action, as IAM answers now, with the
per-resource decisions under ResourceSpecificResults). Every other IAM action goes to moto, which keeps
roles as they were created: a GetRole for a role never created is NoSuchEntity there, as in AWS, which
the SDKs' get-or-create role helpers rely on. The one exception is a role a simulation names (see
IamActions).
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import Callable
from typing import Any
from xml.sax.saxutils import escape

from localmaker.control_plane.answers import Answer, Environ
from localmaker.control_plane.api_errors import ValidationError
from localmaker.control_plane.wire_protocols import Protocol, protocol_of, query_parameters, signing_service

IAM_VERSION = "2010-05-08"
_NAMESPACE = f"https://iam.amazonaws.com/doc/{IAM_VERSION}/"
_DEFAULT_MAX_ITEMS = 100  # IAM's own default page size for SimulatePrincipalPolicy
ALLOWED = "allowed"
_ROLE_ARN = re.compile(r"arn:aws[a-z-]*:iam::\d{12}:role(?P<path>/(?:[\w+=,.@-]+/)*)(?P<name>[\w+=,.@-]{1,64})")
SAGEMAKER_TRUST_POLICY = {"Version": "2012-10-17", "Statement": [
    {"Effect": "Allow", "Principal": {"Service": "sagemaker.amazonaws.com"}, "Action": "sts:AssumeRole"}]}


class IamActions:
    """The IAM actions localmaker answers itself; None for every request it leaves to moto.

    A role that a policy simulation names is in use, so it exists in a real account: it is created in
    moto, trusting SageMaker, if it was not already (ModelBuilder's next check is GetRole's trust policy).
    """

    def __init__(self, aws: Callable[[str], Any]) -> None:
        self._aws = aws  # boto3 clients that talk to this very control plane

    def answer(self, environ: Environ) -> Answer | None:
        if protocol_of(environ) is not Protocol.QUERY or signing_service(environ) not in (None, "iam"):
            return None
        parameters = query_parameters(environ)
        if parameters.get("Action") != "SimulatePrincipalPolicy":
            return None
        if signing_service(environ) is None and parameters.get("Version") != IAM_VERSION:
            return None  # an unsigned form that is not IAM's
        answer = simulate_principal_policy(parameters)
        self._ensure_role(parameters["PolicySourceArn"])
        return answer

    def _ensure_role(self, arn: str) -> None:
        match = _ROLE_ARN.fullmatch(arn)
        if match is None:
            return  # a user or group: simulated as allowed, nothing to create
        iam = self._aws("iam")
        with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
            iam.create_role(RoleName=match["name"], Path=match["path"],
                            AssumeRolePolicyDocument=json.dumps(SAGEMAKER_TRUST_POLICY))


def simulate_principal_policy(parameters: dict[str, str]) -> Answer:
    if not parameters.get("PolicySourceArn"):
        raise ValidationError("1 validation error detected: Value null at 'policySourceArn' failed to satisfy "
                              "constraint: Member must not be null")
    actions = _members(parameters, "ActionNames")
    if not actions:
        raise ValidationError("1 validation error detected: Value null at 'actionNames' failed to satisfy "
                              "constraint: Member must not be null")
    resources = _members(parameters, "ResourceArns")
    start, size = _page(parameters)
    page = actions[start:start + size]
    truncated = start + size < len(actions)
    results = "".join(_evaluation(action, resources) for action in page)
    marker = f"<Marker>{start + size}</Marker>" if truncated else ""
    body = (f'<SimulatePrincipalPolicyResponse xmlns="{_NAMESPACE}"><SimulatePrincipalPolicyResult>'
            f"<IsTruncated>{str(truncated).lower()}</IsTruncated>{marker}"
            f"<EvaluationResults>{results}</EvaluationResults></SimulatePrincipalPolicyResult>"
            f"<ResponseMetadata><RequestId>{uuid.uuid4()}</RequestId></ResponseMetadata>"
            "</SimulatePrincipalPolicyResponse>")
    return Answer.of(200, body.encode("utf-8"), "text/xml")


def _evaluation(action: str, resources: list[str]) -> str:
    if not resources:
        return (f"<member><EvalActionName>{escape(action)}</EvalActionName><EvalResourceName>*</EvalResourceName>"
                f"<EvalDecision>{ALLOWED}</EvalDecision></member>")
    per_resource = "".join(f"<member><EvalResourceName>{escape(r)}</EvalResourceName>"
                           f"<EvalResourceDecision>{ALLOWED}</EvalResourceDecision></member>" for r in resources)
    return (f"<member><EvalActionName>{escape(action)}</EvalActionName>"
            f"<EvalResourceName>{escape(resources[0])}</EvalResourceName><EvalDecision>{ALLOWED}</EvalDecision>"
            f"<ResourceSpecificResults>{per_resource}</ResourceSpecificResults></member>")


def _members(parameters: dict[str, str], name: str) -> list[str]:
    """A query-protocol list: ``Name.member.1``, ``Name.member.2``, ... in order."""
    prefix = f"{name}.member."
    numbered = [(int(k[len(prefix):]), v) for k, v in parameters.items()
                if k.startswith(prefix) and k[len(prefix):].isdigit()]
    return [value for _, value in sorted(numbered)]


def _page(parameters: dict[str, str]) -> tuple[int, int]:
    """Where this page starts (the Marker a truncated answer gave) and how many results it holds."""
    marker, max_items = parameters.get("Marker", "0"), parameters.get("MaxItems", str(_DEFAULT_MAX_ITEMS))
    if not marker.isdigit():
        raise ValidationError(f"Invalid Marker {marker!r}: pass the Marker of the previous answer")
    if not max_items.isdigit() or not 1 <= int(max_items) <= 1000:
        raise ValidationError(f"1 validation error detected: Value '{max_items}' at 'maxItems' failed to satisfy "
                              "constraint: Member must have value between 1 and 1000")
    return int(marker), int(max_items)
