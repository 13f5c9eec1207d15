"""The SNS message SageMaker publishes when an asynchronous request succeeds or fails.

The shape is the one AWS documents under "Check prediction results": ``awsRegion``, ``eventTime``,
``receivedTime``, ``invocationStatus`` (Completed or Failed), ``requestParameters``,
``responseParameters`` (on success), ``failureReason`` (on failure), ``inferenceId``, ``eventVersion``
1.0, ``eventSource`` aws:sagemaker and ``eventName`` InferenceResult. Where the config's
``IncludeInferenceResponseIn`` names the topic, a response of at most 128 KB rides along, base64
encoded, in ``responseBody``. Publishing goes through moto's SNS, so a subscribed SQS queue receives it.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from localmaker.control_plane.async_config import AsyncEndpointConfig
from localmaker.control_plane.async_requests import AsyncRequest, iso_time

logger = logging.getLogger(__name__)

MAX_INCLUDED_RESPONSE_BYTES = 128 * 1024


def notification(request: AsyncRequest, region: str, succeeded: bool, content_type: str | None,
                 body: bytes | None, failure_reason: str | None, include_response: bool) -> dict[str, Any]:
    """The message body, as SageMaker words it."""
    request_parameters = {"accept": request.accept, "contentType": request.content_type,
                          "customAttributes": request.custom_attributes,
                          "endpointName": request.endpoint_name, "inputLocation": request.input_location}
    message: dict[str, Any] = {
        "awsRegion": region,
        "eventTime": iso_time(time.time()),
        "receivedTime": request.received_time(),
        "invocationStatus": "Completed" if succeeded else "Failed",
    }
    if not succeeded:
        message["failureReason"] = failure_reason
    message["requestParameters"] = {k: v for k, v in request_parameters.items() if v}
    location = {"outputLocation": request.output_location} if succeeded else {
        "failureLocation": request.failure_location}
    message["responseParameters"] = {**({"contentType": content_type} if content_type else {}), **location}
    if include_response and body is not None and len(body) <= MAX_INCLUDED_RESPONSE_BYTES:
        message["responseBody"] = {"content": base64.b64encode(body).decode("ascii"), "encoding": "BASE64"}
    message.update({"inferenceId": request.inference_id, "eventVersion": "1.0", "eventSource": "aws:sagemaker",
                    "eventName": "InferenceResult"})
    return message


class AsyncNotifier:
    """Publishes each outcome to the config's success or error topic, if it names one."""

    def __init__(self, sns: Callable[[], Any], region: str) -> None:
        self._sns = sns
        self._region = region

    def publish(self, config: AsyncEndpointConfig | None, request: AsyncRequest, succeeded: bool,
                content_type: str | None, body: bytes | None, failure_reason: str | None = None) -> None:
        topic = config.topic(succeeded) if config else None
        if config is None or topic is None:
            return
        message = notification(request, self._region, succeeded, content_type, body, failure_reason,
                               config.includes_response(succeeded))
        try:
            self._sns().publish(TopicArn=topic, Message=json.dumps(message))
        except Exception:  # noqa: BLE001 - a topic that is gone loses its message, never the result in S3
            logger.exception("could not publish the result of %s to %s", request.inference_id, topic)
