"""Can Amazon deliver notifications to this SQS queue? The queue's access policy and encryption, read before Amazon is
called (``solicit sellers subscribe``), and the statements to add when the answer is no.

SP-API Notifications publishes from Amazon's AWS account **437568002678**; the queue's policy must let that account
``sqs:SendMessage`` and ``sqs:GetQueueAttributes``, and a queue encrypted with a KMS key needs that account allowed
``kms:GenerateDataKey`` and ``kms:Decrypt`` in the key's policy (``docs/amazon-facts.md`` §8).

Pure: it reads the attributes ``GetQueueAttributes`` returned (``QueueArn``, ``Policy``, ``KmsMasterKeyId``,
``SqsManagedSseEnabled``) and decides. The evaluation is **conservative**: an action counts as allowed only when an
``Allow`` statement certainly covers it, so a "yes" is never wrong and a "no" explains itself:

* the statement names Amazon's publisher as principal (``437568002678`` or ``arn:aws:iam::437568002678:root``) or
  everyone (``*``), covers the action (exactly or by ``*``/``?`` wildcards, case-insensitively) and the queue's ARN;
* it has no ``Condition`` (we do not evaluate conditions: one on the source account, IP or VPC could exclude Amazon)
  and no ``NotPrincipal``/``NotAction``/``NotResource``;
* no ``Deny`` statement may apply to Amazon, the action and the queue (a ``Deny`` with a condition counts as applying).

Encryption: SSE-SQS needs nothing. With SSE-KMS the key's policy cannot be read through SQS, so the check passes and
prints the key statement as a reminder, except for the AWS managed key ``alias/aws/sqs``, whose policy nobody can
change: Amazon can never use such a queue, so that fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AMAZON_PUBLISHER_ACCOUNT",
    "AMAZON_PUBLISHER_ARN",
    "KEY_ACTIONS",
    "QUEUE_ACTIONS",
    "QUEUE_ATTRIBUTES",
    "QueueCheck",
    "check_queue",
    "key_statement",
    "queue_statement",
]

AMAZON_PUBLISHER_ACCOUNT = "437568002678"
"""The AWS account SP-API Notifications sends from (Amazon's Notifications use case guide, step 1)."""
AMAZON_PUBLISHER_ARN = f"arn:aws:iam::{AMAZON_PUBLISHER_ACCOUNT}:root"

QUEUE_ACTIONS = ("sqs:SendMessage", "sqs:GetQueueAttributes")
KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
QUEUE_ATTRIBUTES = ("QueueArn", "Policy", "KmsMasterKeyId", "SqsManagedSseEnabled")
"""What :func:`check_queue` reads (``GetQueueAttributes`` AttributeNames)."""

_AWS_MANAGED_KEY = "alias/aws/sqs"
_PUBLISHER_PRINCIPALS = frozenset({AMAZON_PUBLISHER_ACCOUNT, AMAZON_PUBLISHER_ARN, "*"})
_STATEMENT_ID = "AllowSellingPartnerApiNotifications"


@dataclass(frozen=True, slots=True)
class QueueCheck:
    """The verdict on one queue: which required actions Amazon lacks, why, and the key when SSE-KMS."""

    queue_arn: str
    missing_actions: tuple[str, ...]
    problems: tuple[str, ...]
    """One line per reason, for people (never a policy value other than statement ids and the ARN)."""
    kms_key: str | None
    kms_unusable: bool

    @property
    def ok(self) -> bool:
        """Amazon can deliver: every action allowed and the key (if any) not the AWS managed one."""
        return not self.missing_actions and not self.kms_unusable


def queue_statement(queue_arn: str) -> dict[str, Any]:
    """The statement to add to the queue's access policy."""
    return {
        "Sid": _STATEMENT_ID,
        "Effect": "Allow",
        "Principal": {"AWS": AMAZON_PUBLISHER_ARN},
        "Action": list(QUEUE_ACTIONS),
        "Resource": queue_arn,
    }


def key_statement() -> dict[str, Any]:
    """The statement to add to the KMS key's policy (in a key policy the resource is the key itself: ``*``)."""
    return {
        "Sid": _STATEMENT_ID,
        "Effect": "Allow",
        "Principal": {"AWS": AMAZON_PUBLISHER_ARN},
        "Action": list(KEY_ACTIONS),
        "Resource": "*",
    }


def check_queue(attributes: Mapping[str, str]) -> QueueCheck:
    """Decide from ``GetQueueAttributes``'s answer (see the module docstring for the rules)."""
    queue_arn = attributes.get("QueueArn", "")
    problems: list[str] = []
    statements = _statements(attributes.get("Policy"), problems)
    missing = tuple(action for action in QUEUE_ACTIONS if not _allowed(statements, action, queue_arn, problems))
    if missing and statements:
        problems.append(
            f"no statement certainly allows the AWS account {AMAZON_PUBLISHER_ACCOUNT} {', '.join(missing)}"
        )
    key = attributes.get("KmsMasterKeyId") or None
    unusable = key is not None and (key == _AWS_MANAGED_KEY or key.endswith(":" + _AWS_MANAGED_KEY))
    if unusable:
        problems.append(
            f"the queue is encrypted with the AWS managed key {_AWS_MANAGED_KEY}, whose policy cannot grant another "
            "account: use a customer managed KMS key (with the key statement below) or SSE-SQS"
        )
    return QueueCheck(queue_arn, missing, tuple(dict.fromkeys(problems)), key, unusable)


def _statements(policy: str | None, problems: list[str]) -> list[dict[str, Any]]:
    if not policy:
        problems.append("the queue has no access policy")
        return []
    try:
        document = json.loads(policy)
    except ValueError:
        problems.append("the queue's access policy is not valid JSON")
        return []
    raw = document.get("Statement") if isinstance(document, dict) else None
    items = raw if isinstance(raw, list) else [raw]
    found = [item for item in items if isinstance(item, dict)]
    if not found:
        problems.append("the queue's access policy has no statements")
    return found


def _allowed(statements: list[dict[str, Any]], action: str, arn: str, problems: list[str]) -> bool:
    allowed = False
    for index, statement in enumerate(statements, start=1):
        name = f"statement {statement.get('Sid') or f'#{index}'}"
        if statement.get("Effect") == "Deny":
            if _deny_may_apply(statement, action, arn):
                problems.append(f"{name} denies {action} and may apply to Amazon")
                return False
            continue
        if statement.get("Effect") != "Allow" or not _allow_covers(statement, action, arn):
            continue
        unsure = [key for key in ("Condition", "NotPrincipal", "NotAction", "NotResource") if key in statement]
        if unsure:
            problems.append(f"{name} would allow {action} but has {'/'.join(unsure)}, which solicit does not evaluate")
            continue
        allowed = True
    return allowed


def _allow_covers(statement: Mapping[str, Any], action: str, arn: str) -> bool:
    return (
        _principal_matches(statement.get("Principal"))
        and _any_match(statement.get("Action"), action, ignore_case=True)
        and _any_match(statement.get("Resource"), arn, ignore_case=False)
    )


def _deny_may_apply(statement: Mapping[str, Any], action: str, arn: str) -> bool:
    """Could this Deny cover Amazon, ``action`` and ``arn``? When unsure, yes."""
    if "NotPrincipal" in statement:
        principal = not _principal_matches(statement["NotPrincipal"], wildcard=False)
    else:
        principal = _principal_matches(statement.get("Principal"))
    if "NotAction" in statement:
        covers_action = not _any_match(statement["NotAction"], action, ignore_case=True)
    else:
        covers_action = _any_match(statement.get("Action"), action, ignore_case=True)
    if "NotResource" in statement:
        covers_arn = not _any_match(statement["NotResource"], arn, ignore_case=False)
    else:
        covers_arn = _any_match(statement.get("Resource"), arn, ignore_case=False)
    return principal and covers_action and covers_arn


def _principal_matches(principal: object, *, wildcard: bool = True) -> bool:
    """Does ``principal`` name Amazon's publisher account (or everyone, when ``wildcard``)?"""
    names = _PUBLISHER_PRINCIPALS if wildcard else _PUBLISHER_PRINCIPALS - {"*"}
    if isinstance(principal, str):
        return principal in names
    if isinstance(principal, dict):
        return any(value in names for value in _strings(principal.get("AWS")))
    return False


def _any_match(patterns: object, value: str, *, ignore_case: bool) -> bool:
    return any(_wildcard(pattern, ignore_case).fullmatch(value) for pattern in _strings(patterns))


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [item for item in value if isinstance(item, str)]
    return []


def _wildcard(pattern: str, ignore_case: bool) -> re.Pattern[str]:
    """IAM wildcards: ``*`` any run of characters, ``?`` one character; nothing else is special."""
    body = "".join(".*" if char == "*" else "." if char == "?" else re.escape(char) for char in pattern)
    return re.compile(body, re.IGNORECASE | re.DOTALL if ignore_case else re.DOTALL)
