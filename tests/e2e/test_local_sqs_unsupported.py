"""An SQS action the local stack does not emulate: a typed 400 at once, never a 5xx or a traceback.

Over real sockets to the running stack: raw HTTP in both of SQS's protocols (AWS JSON, which
the stack speaks, and the query protocol, which it answers with the query protocol's XML
error), a stock boto3 client with retries on, and the real aws CLI. A 5xx would be retried by
botocore (and slow every caller down); a 400 is not.
"""

from __future__ import annotations

import http.client
import time
import xml.etree.ElementTree as ET
from typing import Any
from urllib.parse import urlencode

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from .conftest import Stack, local_client
from .test_local_move_tasks import _aws

#: "At once": far below any retry back-off or timeout, far above a loaded machine's jitter.
AT_ONCE_S = 0.5
_NS = "{http://queue.amazonaws.com/doc/2012-11-05/}"


def _post(stack: Stack, body: bytes, headers: dict[str, str], path: str = "/") -> Any:
    host, port = stack.endpoints["sqs_endpoint"].removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    started = time.monotonic()
    try:
        conn.request("POST" if body else "GET", path, body=body or None, headers=headers)
        response = conn.getresponse()
        payload = response.read()
    finally:
        conn.close()
    return response, payload, time.monotonic() - started


def _no_traceback(stack: Stack) -> None:
    assert "Traceback" not in stack.log(), stack.log()[-3000:]


@pytest.mark.parametrize("action", ["TagQueue", "ListQueueTags", "AddPermission", "Nope"])
def test_json_protocol_unsupported_action_is_a_typed_400_at_once(stack: Stack, action: str) -> None:
    # GIVEN a request as boto3 sends it, for an action we do not emulate
    body = f'{{"QueueUrl": "{stack.endpoints["queue_url"]}", "Tags": {{"k": "v"}}}}'.encode()
    response, payload, seconds = _post(
        stack,
        body,
        {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": f"AmazonSQS.{action}"},
    )
    # THEN it is answered at once with SQS's typed 400
    assert response.status == 400 and seconds < AT_ONCE_S, (response.status, seconds)
    assert b"com.amazonaws.sqs#UnsupportedOperation" in payload
    assert response.getheader("x-amzn-query-error") == (
        "AWS.SimpleQueueService.UnsupportedOperation;Sender"
    )
    _no_traceback(stack)


def test_query_protocol_request_is_an_xml_400_at_once(stack: Stack) -> None:
    # GIVEN a query-protocol request (form-encoded Action=...), as old SDKs send it
    form = urlencode(
        {
            "Action": "TagQueue",
            "Version": "2012-11-05",
            "QueueUrl": stack.endpoints["queue_url"],
            "Tag.1.Key": "k",
            "Tag.1.Value": "v",
        }
    ).encode()
    answers = [
        _post(stack, form, {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}),
        _post(stack, b"", {}, path="/?Action=ListQueues&Version=2012-11-05"),
    ]
    for response, payload, seconds in answers:
        # THEN it is a 400 in the query protocol's own XML error shape, at once
        assert response.status == 400 and seconds < AT_ONCE_S, (response.status, seconds)
        assert response.getheader("Content-Type") == "text/xml"
        error = ET.fromstring(payload).find(f"{_NS}Error")
        assert error is not None, payload
        assert error.findtext(f"{_NS}Code") == "AWS.SimpleQueueService.UnsupportedOperation"
        assert error.findtext(f"{_NS}Type") == "Sender"
        assert "AWS JSON protocol" in (error.findtext(f"{_NS}Message") or "")
    _no_traceback(stack)


def test_boto3_gets_the_error_once_without_retrying(stack: Stack) -> None:
    # GIVEN a stock client with retries on (standard mode retries 5xx and throttling)
    sqs = local_client(
        "sqs",
        stack.endpoints["sqs_endpoint"],
        Config(retries={"mode": "standard", "max_attempts": 5}),
    )
    sent: list[str] = []
    sqs.meta.events.register("before-send.sqs.*", lambda request, **_: sent.append(request.url))
    started = time.monotonic()
    with pytest.raises(ClientError) as exc:
        sqs.tag_queue(QueueUrl=stack.endpoints["queue_url"], Tags={"k": "v"})
    seconds = time.monotonic() - started
    # THEN one request, no retry, AWS's code, at once
    response = exc.value.response
    assert response["Error"]["Code"] == "AWS.SimpleQueueService.UnsupportedOperation"
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["ResponseMetadata"]["RetryAttempts"] == 0 and len(sent) == 1, sent
    assert seconds < 2 * AT_ONCE_S
    _no_traceback(stack)


def test_aws_cli_reports_it_after_one_request(stack: Stack) -> None:
    # GIVEN the real aws CLI WHEN it calls an action we do not emulate (debug: every request)
    run = _aws(
        stack, "tag-queue", "--queue-url", stack.endpoints["queue_url"], "--tags", "k=v", "--debug"
    )
    # THEN it fails with SQS's error, after exactly one HTTP request
    assert run.returncode != 0
    assert run.stderr.strip().splitlines()[-1] == (
        "An error occurred (AWS.SimpleQueueService.UnsupportedOperation) when calling the "
        "TagQueue operation: TagQueue is not emulated by the local SQS."
    )
    assert run.stderr.count("Sending http request") == 1, run.stderr[-3000:]
    assert "attempt=2" not in run.stderr
    _no_traceback(stack)
