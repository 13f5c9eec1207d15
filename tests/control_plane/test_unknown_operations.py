"""What the control plane answers for operations and routes nobody knows, and for IAM's policy simulator.

An unknown operation is an AWS error in the shape of the request's protocol (UnknownOperationException
in JSON, InvalidAction in the query protocol's XML), never moto's or werkzeug's HTML page and never a
500. IAM's SimulatePrincipalPolicy, which the SageMaker SDK v3 calls to check its role and moto lacks,
allows everything, as a permissive local account would.
"""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import botocore.parsers
import botocore.session
import pytest
from botocore.exceptions import ClientError

from localmaker.control_plane.api_errors import InternalFailure
from localmaker.control_plane.server import ControlPlane
from localmaker.control_plane.wire_protocols import Protocol, error_answer, protocol_of
from localmaker.spec.names import PLACEHOLDER_ROLE
from tests.control_plane.plane_clients import plane_client
from tests.control_plane.shape_validator import violations

REGION = "eu-west-1"
ACTIONS = ["s3:GetObject", "sagemaker:CreateModel", "iam:PassRole"]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    control_plane = ControlPlane(region=REGION, work_root=tmp_path_factory.mktemp("unknown")).start()
    try:
        yield control_plane
    finally:
        control_plane.stop()


def _signed(service: str) -> dict[str, str]:
    return {"Authorization": f"AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, "
                             "SignedHeaders=host, Signature=0"}


def _signed_environ(service: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": _signed(service)["Authorization"]}


def _request(plane: ControlPlane, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    host, port = plane.url.removeprefix("http://").rsplit(":", 1)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path, body=body, headers=headers or {})
        answer = connection.getresponse()
        return answer.status, {k.lower(): v for k, v in answer.getheaders()}, answer.read()
    finally:
        connection.close()


def _json_error(status: int, headers: dict[str, str], body: bytes, content_type: str) -> str:
    assert status == 400, body
    assert headers["content-type"] == content_type and b"<html" not in body.lower()
    error = json.loads(body)
    assert error["__type"] == headers["x-amzn-errortype"] == "UnknownOperationException"
    parsed = botocore.parsers.create_parser("json").parse({"body": body, "headers": headers, "status_code": status},
                                                          None)  # as boto3 reads it
    assert parsed["Error"] == {"Code": "UnknownOperationException", "Message": error["message"]}
    return str(error["message"])


# -- unknown operations and routes -------------------------------------------------------------------


@pytest.mark.parametrize(("target", "service", "content_type"), [
    ("SageMaker.NoSuchAction", "sagemaker", "application/x-amz-json-1.1"),  # localmaker knows SageMaker's list
    ("Logs_20140328.NoSuchAction", "logs", "application/x-amz-json-1.1"),  # moto answered an empty HTML 404
    ("GraniteServiceVersion20100801.NoSuchAction", "monitoring", "application/x-amz-json-1.0"),
])
def test_an_unknown_json_operation_is_unknown_operation_exception(plane, target, service, content_type):
    status, headers, body = _request(plane, "POST", "/", b"{}", {
        "X-Amz-Target": target, "Content-Type": content_type, **_signed(service)})
    assert "NoSuchAction" in _json_error(status, headers, body, content_type)


@pytest.mark.parametrize(("method", "path"), [("GET", "/no/such/route"), ("POST", "/endpoints/e/no-such-thing"),
                                              ("GET", "/endpoints/e/invocations"), ("POST", "/")])
def test_an_unknown_route_is_unknown_operation_exception_not_an_html_page(plane, method, path):
    # moto answered these with werkzeug's HTML 404 page, or an empty text/html 404.
    status, headers, body = _request(plane, method, path, b"{}" if method == "POST" else None,
                                     {"Content-Type": "application/json", **_signed("sagemaker")})
    assert path in _json_error(status, headers, body, "application/x-amz-json-1.1")


def test_an_unknown_query_action_is_invalid_action_in_xml(plane):
    for service, version in (("iam", "2010-05-08"), ("sts", "2011-06-15")):
        status, headers, body = _request(plane, "POST", "/", f"Action=NoSuchAction&Version={version}".encode(), {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8", **_signed(service)})
        assert (status, headers["content-type"]) == (400, "text/xml"), body
        assert b"<Code>InvalidAction</Code>" in body and b"<Type>Sender</Type>" in body
        assert f"{service.upper()}.NoSuchAction".encode() in body
    with pytest.raises(ClientError) as caught:  # an action IAM has and moto does not: NotImplementedError there
        plane_client(plane, "iam").simulate_custom_policy(PolicyInputList=["{}"], ActionNames=["s3:GetObject"])
    assert caught.value.response["Error"]["Code"] == "InvalidAction"


def test_an_unknown_cbor_operation_is_answered_in_cbor(plane):
    status, headers, body = _request(plane, "POST", "/service/GraniteServiceVersion20100801/operation/NoSuchAction",
                                     b"\xa0", {"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor",
                                               **_signed("monitoring")})
    assert (status, headers["content-type"], headers["smithy-protocol"]) == (400, "application/cbor", "rpc-v2-cbor")
    parser = botocore.parsers.create_parser("smithy-rpc-v2-cbor")
    error = parser.parse({"body": body, "headers": headers, "status_code": status}, None)["Error"]
    assert error["Code"] == "UnknownOperationException" and "NoSuchAction" in error["Message"]


def test_a_service_moto_does_not_simulate_is_unknown_not_a_500(plane):
    status, headers, body = _request(plane, "GET", "/", None, _signed("codeartifact"))
    assert "codeartifact" in _json_error(status, headers, body, "application/x-amz-json-1.1")


def test_what_moto_does_answer_still_passes_unchanged(plane):
    s3 = plane_client(plane, "s3")
    s3.create_bucket(Bucket="still-s3", CreateBucketConfiguration={"LocationConstraint": REGION})
    with pytest.raises(ClientError) as caught:  # S3's bare 404 for a missing key is an answer, not a miss
        s3.head_object(Bucket="still-s3", Key="absent")
    assert caught.value.response["Error"]["Code"] == "404"
    with pytest.raises(ClientError) as missing_role:  # a role never created: NoSuchEntity, as in AWS
        plane_client(plane, "iam").get_role(RoleName="never-created")
    assert missing_role.value.response["Error"]["Code"] == "NoSuchEntity"
    assert plane_client(plane, "sts").get_caller_identity()["Account"] == "123456789012"


# -- IAM's policy simulator -------------------------------------------------------------------------


def test_simulate_principal_policy_allows_every_action_asked(plane):
    iam = plane_client(plane, "iam")
    raw: list[bytes] = []
    iam.meta.events.register("after-call", lambda http_response, **_: raw.append(http_response.content))
    answer = iam.simulate_principal_policy(PolicySourceArn=PLACEHOLDER_ROLE, ActionNames=ACTIONS)
    assert [(r["EvalActionName"], r["EvalDecision"], r["EvalResourceName"]) for r in answer["EvaluationResults"]] == [
        (action, "allowed", "*") for action in ACTIONS]
    assert answer["IsTruncated"] is False
    output = botocore.session.get_session().get_service_model("iam").operation_model(
        "SimulatePrincipalPolicy").output_shape
    assert violations(output, {k: v for k, v in answer.items() if k != "ResponseMetadata"}) == []
    assert raw[0].startswith(b'<SimulatePrincipalPolicyResponse xmlns="https://iam.amazonaws.com/doc/2010-05-08/">')


def test_a_role_a_simulation_names_exists_afterwards_and_trusts_sagemaker(plane):
    iam = plane_client(plane, "iam")
    role = "arn:aws:iam::123456789012:role/service/ModelBuilderRole"
    with pytest.raises(ClientError):
        iam.get_role(RoleName="ModelBuilderRole")
    iam.simulate_principal_policy(PolicySourceArn=role, ActionNames=["ecr:GetAuthorizationToken"])
    iam.simulate_principal_policy(PolicySourceArn=role, ActionNames=["s3:GetObject"])  # once is enough
    created = iam.get_role(RoleName="ModelBuilderRole")["Role"]
    assert created["Path"] == "/service/"
    (statement,) = created["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "sagemaker.amazonaws.com"}


def test_simulate_principal_policy_answers_per_resource_and_pages(plane):
    iam = plane_client(plane, "iam")
    buckets = ["arn:aws:s3:::a/*", "arn:aws:s3:::b/*"]
    answer = iam.simulate_principal_policy(PolicySourceArn=PLACEHOLDER_ROLE, ActionNames=ACTIONS[:1],
                                           ResourceArns=buckets)
    (result,) = answer["EvaluationResults"]
    assert result["EvalDecision"] == "allowed"
    assert [(r["EvalResourceName"], r["EvalResourceDecision"]) for r in result["ResourceSpecificResults"]] == [
        (arn, "allowed") for arn in buckets]
    pages = iam.get_paginator("simulate_principal_policy").paginate(
        PolicySourceArn=PLACEHOLDER_ROLE, ActionNames=ACTIONS, PaginationConfig={"PageSize": 2})
    sizes = [len(page["EvaluationResults"]) for page in pages]
    assert sizes == [2, 1]


def test_simulate_principal_policy_refuses_a_request_without_actions(plane):
    status, headers, body = _request(plane, "POST", "/", (
        f"Action=SimulatePrincipalPolicy&Version=2010-05-08&PolicySourceArn={PLACEHOLDER_ROLE}").encode(),
        {"Content-Type": "application/x-www-form-urlencoded", **_signed("iam")})
    assert (status, headers["content-type"]) == (400, "text/xml")
    assert b"<Code>ValidationError</Code>" in body and b"actionNames" in body


# -- the error's shape follows the request's protocol ------------------------------------------------


@pytest.mark.parametrize(("environ", "protocol"), [
    ({"HTTP_X_AMZ_TARGET": "SageMaker.ListModels"}, Protocol.JSON),
    ({"HTTP_SMITHY_PROTOCOL": "rpc-v2-cbor"}, Protocol.CBOR),
    ({"CONTENT_TYPE": "application/x-www-form-urlencoded", **_signed_environ("iam")}, Protocol.QUERY),
    ({"QUERY_STRING": "Action=GetCallerIdentity&Version=2011-06-15"}, Protocol.QUERY),
    # An object may be uploaded with any Content-Type: S3 stays S3, signed in a header or a presigned URL.
    ({"CONTENT_TYPE": "application/x-www-form-urlencoded", **_signed_environ("s3")}, Protocol.REST_XML),
    ({"QUERY_STRING": f"X-Amz-Credential=testing%2F20260101%2F{REGION}%2Fs3%2Faws4_request"}, Protocol.REST_XML),
    ({"PATH_INFO": "/_localmaker/endpoints"}, Protocol.REST_JSON),
])
def test_the_protocol_is_read_from_the_request_alone(environ, protocol):
    assert protocol_of(environ) is protocol


def test_an_s3_error_is_s3s_xml():
    answer = error_answer(InternalFailure("moto broke"), _signed_environ("s3"))
    assert answer.status == "500 Error" and answer.header("Content-Type") == "application/xml"
    parsed = botocore.parsers.create_parser("rest-xml").parse(
        {"body": answer.body, "headers": dict(answer.headers), "status_code": 500}, None)
    assert parsed["Error"]["Code"] == "InternalFailure" and parsed["Error"]["Message"] == "moto broke"


def test_an_invocation_in_a_form_content_type_still_gets_the_runtime_apis_json_error(plane):
    status, headers, body = _request(plane, "POST", "/endpoints/absent/invocations", b"a=b", {
        "Content-Type": "application/x-www-form-urlencoded", **_signed("sagemaker")})
    assert (status, headers["content-type"]) == (400, "application/json")
    assert json.loads(body) == {"__type": "ValidationError", "message": "Endpoint absent not found."}
