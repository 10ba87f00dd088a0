"""The SQS seam: one queue behind a small async class over one aiobotocore client.

Amazon delivers ORDER_CHANGE notifications to an SQS queue per seller region. This module knows SQS and nothing
else: it receives messages (long polling, with the receive count and send time), deletes them in batches and
extends their visibility. What a message *means* is the bridge's business (``streams/bridge.py``).

The client is built from the standard AWS configuration only: ``AWS_DEFAULT_REGION``, the credential chain and
``AWS_ENDPOINT_URL_SQS`` (botocore >= 1.31 reads service endpoint variables itself; we checked aiobotocore 3.10
does, which is how tests and local runs point at a moto server). Nothing here reads the environment.

Third-party exceptions (botocore ``ClientError``, ``BotoCoreError``, connection errors) are mapped here and never
escape. The errors are named for what the caller does next::

    SqsError                root; catch it to catch everything this module raises
    ├── SqsRetryLater       throttling, 5xx, timeouts, connection failures: back off and try again
    └── QueueMisconfigured  the queue does not exist, or region/credentials/permissions are wrong: stop and let
                              an operator fix the configuration; retrying cannot help

Per-entry failures of batch calls are not exceptions: they come back as :class:`EntryFailure` values, because a
batch where one receipt handle went stale is an ordinary day for an at-least-once consumer.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
)

__all__ = [
    "MAX_BATCH",
    "MAX_WAIT_SECONDS",
    "EntryFailure",
    "QueueMisconfigured",
    "SqsError",
    "SqsMessage",
    "SqsQueue",
    "SqsRetryLater",
]

MAX_BATCH = 10
"""SQS's limit for ReceiveMessage and every ``*Batch`` call."""
MAX_WAIT_SECONDS = 20
"""SQS's longest long poll."""

_T = TypeVar("_T")

_SYSTEM_ATTRIBUTES = ["ApproximateReceiveCount", "SentTimestamp"]

# Error codes that retrying cannot fix. Everything else (throttling, InternalError, ServiceUnavailable, ...) is
# treated as transient: a wrong guess there costs a few retries, a wrong guess the other way stops the bridge.
_CONFIGURATION_CODES = frozenset(
    {
        "AWS.SimpleQueueService.NonExistentQueue",
        "QueueDoesNotExist",
        "AccessDenied",
        "AccessDeniedException",
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "SignatureDoesNotMatch",
        "InvalidAddress",
        "InvalidSecurity",
        "AuthFailure",
        "KMS.AccessDeniedException",
        "KMS.DisabledException",
    }
)


class SqsError(Exception):
    """Root of every failure this module raises."""


class SqsRetryLater(SqsError):
    """SQS did not answer usefully right now (throttled, 5xx, timeout, connection). Back off and retry."""


class QueueMisconfigured(SqsError):
    """The queue cannot be used as configured (missing queue, region, credentials, permissions). Stop."""


@dataclass(frozen=True, slots=True)
class SqsMessage:
    """One received message: what the bridge needs, nothing of botocore's response shape."""

    message_id: str
    receipt_handle: str
    body: str
    receive_count: int
    """``ApproximateReceiveCount``: 1 on the first delivery, more on every redelivery."""
    sent_timestamp: int | None
    """``SentTimestamp``: when SQS accepted the message, epoch milliseconds."""
    attributes: Mapping[str, str]
    """Every system attribute SQS returned, verbatim."""

    @classmethod
    def from_response(cls, raw: Mapping[str, Any]) -> SqsMessage:
        """Build from one entry of a ReceiveMessage response's ``Messages``."""
        attributes = {str(k): str(v) for k, v in (raw.get("Attributes") or {}).items()}
        sent = attributes.get("SentTimestamp")
        return cls(
            message_id=str(raw["MessageId"]),
            receipt_handle=str(raw["ReceiptHandle"]),
            body=str(raw.get("Body", "")),
            receive_count=_optional_int(attributes.get("ApproximateReceiveCount")) or 1,
            sent_timestamp=_optional_int(sent),
            attributes=attributes,
        )

    def metadata(self) -> dict[str, str]:
        """The SQS facts worth keeping with a dead letter (all strings, as SQS reports them)."""
        meta = {"MessageId": self.message_id, "ApproximateReceiveCount": str(self.receive_count)}
        if self.sent_timestamp is not None:
            meta["SentTimestamp"] = str(self.sent_timestamp)
        return meta


@dataclass(frozen=True, slots=True)
class EntryFailure:
    """One entry of a batch call that SQS refused."""

    message: SqsMessage
    code: str
    detail: str
    sender_fault: bool


class SqsQueue:
    """One SQS queue, used through one shared aiobotocore client (safe for concurrent pollers).

    Build it with :meth:`open`, which owns the client's lifetime. The constructor takes an already-open client,
    for callers that manage their own.
    """

    def __init__(self, client: Any, queue_url: str) -> None:
        self._client = client
        self.url = queue_url

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        queue_url: str,
        *,
        max_connections: int = 10,
        session: AioSession | None = None,
    ) -> AsyncIterator[SqsQueue]:
        """A queue with its own client, created from the standard AWS configuration and closed on exit.

        ``max_connections`` must cover the concurrent calls: one long poll per poller plus the deletes and
        visibility changes running beside them.
        """
        if not queue_url:
            raise QueueMisconfigured("no queue URL given")
        config = AioConfig(
            # Longer than the longest long poll, or every idle poll would end as a read timeout.
            read_timeout=MAX_WAIT_SECONDS + 20,
            connect_timeout=10,
            max_pool_connections=max_connections,
        )
        async with contextlib.AsyncExitStack() as stack:
            try:
                client = await stack.enter_async_context((session or get_session()).create_client("sqs", config=config))
            except NoRegionError:
                raise QueueMisconfigured("no AWS region configured: set AWS_DEFAULT_REGION (e.g. us-east-1)") from None
            except BotoCoreError as exc:
                raise QueueMisconfigured(f"cannot create the SQS client: {exc}") from None
            yield cls(client, queue_url)

    async def receive(
        self,
        *,
        max_messages: int = MAX_BATCH,
        wait_seconds: int = MAX_WAIT_SECONDS,
        visibility_timeout: int | None = None,
    ) -> list[SqsMessage]:
        """Long-poll for up to ``max_messages``; an empty list when none arrived within ``wait_seconds``.

        ``visibility_timeout`` (seconds) overrides the queue's default for the messages of this receive.
        """
        params: dict[str, Any] = {
            "QueueUrl": self.url,
            "MaxNumberOfMessages": max_messages,
            "WaitTimeSeconds": wait_seconds,
            "MessageSystemAttributeNames": _SYSTEM_ATTRIBUTES,
        }
        if visibility_timeout is not None:
            params["VisibilityTimeout"] = visibility_timeout
        response = await self._call("ReceiveMessage", self._client.receive_message, **params)
        return [SqsMessage.from_response(raw) for raw in response.get("Messages", [])]

    async def attributes(self, names: Sequence[str]) -> dict[str, str]:
        """``GetQueueAttributes``: the named attributes SQS returned (an unset one, e.g. ``Policy``, is absent)."""
        response = await self._call(
            "GetQueueAttributes", self._client.get_queue_attributes, QueueUrl=self.url, AttributeNames=list(names)
        )
        return {str(name): str(value) for name, value in (response.get("Attributes") or {}).items()}

    async def delete_batch(self, messages: Sequence[SqsMessage]) -> list[EntryFailure]:
        """Delete ``messages`` (any number, sent in batches of ten); return the entries SQS refused."""
        return await self._batched(
            "DeleteMessageBatch",
            self._client.delete_message_batch,
            messages,
            lambda m: {"ReceiptHandle": m.receipt_handle},
        )

    async def extend_visibility(self, messages: Sequence[SqsMessage], seconds: int) -> list[EntryFailure]:
        """Keep ``messages`` hidden for ``seconds`` more from now; return the entries SQS refused."""
        return await self._batched(
            "ChangeMessageVisibilityBatch",
            self._client.change_message_visibility_batch,
            messages,
            lambda m: {"ReceiptHandle": m.receipt_handle, "VisibilityTimeout": seconds},
        )

    async def _batched(
        self,
        operation: str,
        method: Callable[..., Awaitable[dict[str, Any]]],
        messages: Sequence[SqsMessage],
        entry: Callable[[SqsMessage], dict[str, Any]],
    ) -> list[EntryFailure]:
        failures: list[EntryFailure] = []
        for start in range(0, len(messages), MAX_BATCH):
            chunk = messages[start : start + MAX_BATCH]
            entries = [{"Id": str(i), **entry(m)} for i, m in enumerate(chunk)]
            response = await self._call(operation, method, QueueUrl=self.url, Entries=entries)
            for failed in response.get("Failed", []):
                failures.append(
                    EntryFailure(
                        message=chunk[int(failed["Id"])],
                        code=str(failed.get("Code", "")),
                        detail=str(failed.get("Message", "")),
                        sender_fault=bool(failed.get("SenderFault", False)),
                    )
                )
        return failures

    async def _call(self, operation: str, method: Callable[..., Awaitable[_T]], **params: Any) -> _T:
        try:
            return await method(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            text = f"SQS {operation} on {self.url} failed: {code}: {error.get('Message', '')}"
            if code in _CONFIGURATION_CODES:
                raise QueueMisconfigured(text) from None
            raise SqsRetryLater(text) from None
        except (NoCredentialsError, PartialCredentialsError) as exc:
            raise QueueMisconfigured(f"SQS {operation}: {exc}") from None
        except (BotoCoreError, OSError) as exc:  # connection refused/reset, read/connect timeouts
            raise SqsRetryLater(f"SQS {operation} on {self.url} failed: {exc}") from None


def _optional_int(value: str | None) -> int | None:
    """SQS sends numbers as strings; a missing or garbled one is unknown, not an error."""
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
