"""CreateTransformJob read and checked as AWS checks it: defaults, limits and enums, in AWS's constraint wording."""

from __future__ import annotations

from typing import Any

import pytest

from localmaker.control_plane.transform_inputs import InputFile, output_location
from localmaker.control_plane.transform_state import TransformRequestError, TransformSpec


def _request(**overrides: Any) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TransformJobName": "job", "ModelName": "model",
        "TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}}},
        "TransformOutput": {"S3OutputPath": "s3://b/out"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    request.update(overrides)
    return request


def test_defaults_are_awss():
    spec = TransformSpec.from_request(_request())
    assert (spec.max_payload_mb, spec.max_concurrent, spec.split_type, spec.compression) == (6, 1, "None", "None")
    assert (spec.assemble_with, spec.invocation_timeout_s, spec.max_retries) == ("None", 600, 3)
    assert spec.data_processing is None
    assert spec.container_environment() == {"SAGEMAKER_BATCH": "true", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "6",
                                            "SAGEMAKER_BATCH_STRATEGY": "MULTI_RECORD",
                                            "SAGEMAKER_MAX_CONCURRENT_TRANSFORMS": "1"}


@pytest.mark.parametrize(("overrides", "message"), [
    ({"MaxPayloadInMB": 101}, "Value '101' at 'maxPayloadInMB' failed to satisfy constraint: Member must have value "
                              "less than or equal to 100"),
    ({"MaxPayloadInMB": 2.5}, "Value '2.5' at 'maxPayloadInMB' failed to satisfy constraint: Member must be a whole"),
    ({"BatchStrategy": "Everything"}, "Value 'Everything' at 'batchStrategy' failed to satisfy constraint: Member "
                                      "must satisfy enum value set: [MultiRecord, SingleRecord]"),
    ({"TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}},
                         "SplitType": "Paragraph"}}, "at 'transformInput.splitType'"),
    ({"TransformOutput": {"S3OutputPath": "/local/folder"}}, "at 'transformOutput.s3OutputPath' failed to satisfy "
                                                             "constraint: Member must satisfy regular expression"),
    ({"ModelClientConfig": {"InvocationsMaxRetries": 4}}, "Member must have value less than or equal to 3"),
    ({"TransformInput": {"DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://b/in/"}},
                         "ContentType": "text/csv"}, "DataProcessing": {"JoinSource": "Input"}},
     "JoinSource Input joins each CSV row with its answer: set SplitType to Line"),
])
def test_values_aws_refuses(overrides, message):
    with pytest.raises(TransformRequestError) as refused:
        TransformSpec.from_request(_request(**overrides))
    assert message in str(refused.value)


def test_output_names_keep_the_path_below_the_prefix():
    assert output_location("s3://b/out/", InputFile("b", "in/sub/a.csv", "sub/a.csv")) == ("b", "out/sub/a.csv.out")
    assert output_location("s3://b", InputFile("b", "in/a.csv", "a.csv")) == ("b", "a.csv.out")
