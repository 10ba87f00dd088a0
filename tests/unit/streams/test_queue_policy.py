"""The queue check before ``solicit sellers subscribe``: which policies let Amazon's publisher deliver, which do not."""

from __future__ import annotations

import json
from typing import Any

import pytest

from streams.queue_policy import (
    AMAZON_PUBLISHER_ACCOUNT,
    AMAZON_PUBLISHER_ARN,
    check_queue,
    key_statement,
    queue_statement,
)

ARN = "arn:aws:sqs:us-east-1:123456789012:order-change"
SEND, GET = "sqs:SendMessage", "sqs:GetQueueAttributes"


def allow(principal: Any = None, action: Any = None, resource: Any = ARN, **extra: Any) -> dict[str, Any]:
    statement = {
        "Effect": "Allow",
        "Principal": {"AWS": AMAZON_PUBLISHER_ACCOUNT} if principal is None else principal,
        "Action": [SEND, GET] if action is None else action,
        "Resource": resource,
    }
    return {**statement, **extra}


def attributes(*statements: dict[str, Any], **more: str) -> dict[str, str]:
    policy = {"Version": "2012-10-17", "Statement": list(statements)}
    return {"QueueArn": ARN, "Policy": json.dumps(policy), **more}


@pytest.mark.parametrize(
    "statements",
    [
        pytest.param([allow()], id="account id"),
        pytest.param([allow(principal={"AWS": AMAZON_PUBLISHER_ARN}, action="sqs:*")], id="root arn, sqs:*"),
        pytest.param([allow(principal="*", resource="*")], id="anyone, no condition"),
        pytest.param([allow(principal={"AWS": "*"}, action="*")], id="AWS *, action *"),
        pytest.param(
            [
                allow(principal={"AWS": ["arn:aws:iam::111122223333:root", AMAZON_PUBLISHER_ACCOUNT]}, action=SEND),
                allow(action="sqs:Get*"),
            ],
            id="actions split over two statements, wildcard",
        ),
        pytest.param([allow(action=["SQS:sendmessage", "sqs:getqueueattributes"])], id="actions ignore case"),
        pytest.param([allow(resource="arn:aws:sqs:us-east-1:123456789012:*")], id="resource wildcard"),
        pytest.param([allow(resource="arn:aws:sqs:us-east-1:123456789012:order-chang?")], id="resource ?"),
        pytest.param(
            [
                allow(),
                {"Effect": "Deny", "NotPrincipal": {"AWS": AMAZON_PUBLISHER_ARN}, "Action": "sqs:*", "Resource": ARN},
            ],
            id="deny everyone but Amazon",
        ),
        pytest.param(
            [allow(), {"Effect": "Deny", "Principal": "*", "Action": "sqs:DeleteMessage", "Resource": ARN}],
            id="deny of another action",
        ),
    ],
)
def test_policies_that_let_amazon_deliver(statements: list[dict[str, Any]]) -> None:
    check = check_queue(attributes(*statements))
    assert check.ok, check.problems
    assert check.missing_actions == ()
    assert check.queue_arn == ARN


def test_a_single_statement_object_counts_like_a_list() -> None:
    policy = json.dumps({"Version": "2012-10-17", "Statement": allow()})
    assert check_queue({"QueueArn": ARN, "Policy": policy}).ok


@pytest.mark.parametrize(
    ("statements", "missing", "reason"),
    [
        pytest.param([allow(action=SEND)], (GET,), "no statement certainly allows", id="SendMessage only"),
        pytest.param(
            [allow(principal={"AWS": "arn:aws:iam::111122223333:root"})], (SEND, GET), "certainly", id="other account"
        ),
        pytest.param(
            [allow(principal={"Service": "sqs.amazonaws.com"})], (SEND, GET), "certainly", id="service principal"
        ),
        pytest.param(
            [allow(principal="*", Condition={"StringEquals": {"aws:SourceAccount": AMAZON_PUBLISHER_ACCOUNT}})],
            (SEND, GET),
            "has Condition, which solicit does not evaluate",
            id="anyone with a condition",
        ),
        pytest.param(
            [allow(Condition={"IpAddress": {"aws:SourceIp": "10.0.0.0/8"}})],
            (SEND, GET),
            "has Condition",
            id="exact principal with a condition",
        ),
        pytest.param(
            [{"Effect": "Allow", "Principal": "*", "NotAction": "sqs:DeleteQueue", "Resource": ARN}],
            (SEND, GET),
            "certainly",
            id="NotAction",
        ),
        pytest.param([allow(resource=ARN + "-other")], (SEND, GET), "certainly", id="another queue"),
        pytest.param(
            [
                allow(),
                {
                    "Effect": "Deny",
                    "Principal": "*",
                    "Action": SEND,
                    "Resource": ARN,
                    "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                },
            ],
            (SEND,),
            "denies sqs:SendMessage and may apply to Amazon",
            id="deny with a condition counts as applying",
        ),
        pytest.param(
            [
                allow(),
                {
                    "Effect": "Deny",
                    "NotPrincipal": {"AWS": "arn:aws:iam::111122223333:root"},
                    "Action": "sqs:*",
                    "Resource": "*",
                },
            ],
            (SEND, GET),
            "denies",
            id="deny everyone but another account",
        ),
    ],
)
def test_policies_that_do_not(statements: list[dict[str, Any]], missing: tuple[str, ...], reason: str) -> None:
    check = check_queue(attributes(*statements))
    assert not check.ok
    assert check.missing_actions == missing
    assert any(reason in problem for problem in check.problems), check.problems


@pytest.mark.parametrize(
    ("policy", "reason"),
    [(None, "has no access policy"), ("{not json", "not valid JSON"), ('{"Statement": []}', "has no statements")],
)
def test_missing_or_unreadable_policy_fails(policy: str | None, reason: str) -> None:
    values = {"QueueArn": ARN} if policy is None else {"QueueArn": ARN, "Policy": policy}
    check = check_queue(values)
    assert check.missing_actions == (SEND, GET)
    assert any(reason in problem for problem in check.problems)


def test_the_printed_statement_makes_a_failing_queue_pass() -> None:
    assert not check_queue(attributes(allow(action=SEND))).ok
    assert check_queue(attributes(allow(action=SEND), queue_statement(ARN))).ok
    assert queue_statement(ARN) == {
        "Sid": "AllowSellingPartnerApiNotifications",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::437568002678:root"},
        "Action": ["sqs:SendMessage", "sqs:GetQueueAttributes"],
        "Resource": ARN,
    }


def test_sse_sqs_needs_nothing() -> None:
    check = check_queue(attributes(allow(), SqsManagedSseEnabled="true"))
    assert check.ok and check.kms_key is None


def test_a_customer_managed_key_passes_with_its_statement_to_print() -> None:
    check = check_queue(attributes(allow(), KmsMasterKeyId="alias/solicit-queue"))
    assert check.ok
    assert check.kms_key == "alias/solicit-queue"
    assert key_statement() == {
        "Sid": "AllowSellingPartnerApiNotifications",
        "Effect": "Allow",
        "Principal": {"AWS": "arn:aws:iam::437568002678:root"},
        "Action": ["kms:GenerateDataKey", "kms:Decrypt"],
        "Resource": "*",
    }


@pytest.mark.parametrize("key", ["alias/aws/sqs", "arn:aws:kms:us-east-1:123456789012:alias/aws/sqs"])
def test_the_aws_managed_key_can_never_work(key: str) -> None:
    check = check_queue(attributes(allow(), KmsMasterKeyId=key))
    assert not check.ok and check.kms_unusable
    assert check.missing_actions == ()
    assert any("AWS managed key" in problem for problem in check.problems)
