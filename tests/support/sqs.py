"""SQS for tests: one real moto server per session (``moto_sqs``), AWS settings per test (``sqs_environment``), a
client (``sqs_client``) and fresh queues (``sqs_queue``).

The server is moto's ``ThreadedMotoServer`` on a kernel-chosen port: a real HTTP SQS endpoint, so the code under
test goes through botocore exactly as in production, and subprocesses (``solicit bridge``) can use it too. Code
under test finds it the standard way, through ``AWS_ENDPOINT_URL_SQS``. ``sqs_environment`` sets that and dummy
credentials per test (``tests/conftest.py`` strips only ``SOLICIT_*``, so nothing else clears them), and returns the
variables for subprocess environments.

moto semantics worth knowing (docs/architecture.md, "Local SQS with moto"): visibility timeouts are whole seconds, a
long poll returns as soon as a message is visible, and deleting with a stale receipt handle succeeds (AWS refuses).
moto's receive is not atomic: two *concurrent* receives now and then both get the same message (a duplicate, as
SQS's at-least-once delivery allows). A test that counts deliveries exactly should receive from one poller at a time.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import pytest
from aiobotocore.session import get_session

REGION = "us-east-1"


class SqsQueueFactory(Protocol):
    """Creates a fresh, uniquely named queue on the session's moto server and returns its URL."""

    async def __call__(
        self,
        *,
        visibility_timeout: int = 30,
        dead_letter_queue_url: str | None = None,
        max_receive_count: int = 3,
    ) -> str: ...


@dataclass(frozen=True)
class QueueDepth:
    """ApproximateNumberOfMessages / ...NotVisible / ...Delayed (exact on moto)."""

    visible: int
    in_flight: int
    delayed: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight + self.delayed


@pytest.fixture(scope="session")
def moto_sqs() -> Iterator[str]:
    """Endpoint URL (``http://127.0.0.1:<port>``) of a moto server running for the whole session."""
    from moto.server import ThreadedMotoServer  # imported here: moto and Flask take ~0.3 s, only SQS tests pay

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture
def sqs_environment(moto_sqs: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Points the AWS SDK at the moto server for this test; returns the variables (for subprocess environments)."""
    variables = {
        "AWS_ENDPOINT_URL_SQS": moto_sqs,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    return variables


@pytest.fixture
async def sqs_client(sqs_environment: dict[str, str]) -> AsyncIterator[Any]:
    """A raw aiobotocore SQS client on the moto server, for arranging and inspecting queues."""
    async with get_session().create_client("sqs") as client:
        yield client


@pytest.fixture
async def sqs_queue(sqs_client: Any, request: pytest.FixtureRequest) -> AsyncIterator[SqsQueueFactory]:
    """``await sqs_queue(visibility_timeout=2)`` creates a queue named after the test and returns its URL.

    With ``dead_letter_queue_url`` (a queue made by this factory first), messages move there after
    ``max_receive_count`` receives, like an AWS redrive policy. Queues are deleted when the test ends.
    """
    created: list[str] = []
    stem = "".join(c if c.isalnum() else "-" for c in request.node.name)[:50].strip("-") or "test"

    async def create(
        *, visibility_timeout: int = 30, dead_letter_queue_url: str | None = None, max_receive_count: int = 3
    ) -> str:
        attributes = {"VisibilityTimeout": str(visibility_timeout)}
        if dead_letter_queue_url is not None:
            arn = (await sqs_client.get_queue_attributes(QueueUrl=dead_letter_queue_url, AttributeNames=["QueueArn"]))[
                "Attributes"
            ]["QueueArn"]
            attributes["RedrivePolicy"] = (
                f'{{"deadLetterTargetArn": "{arn}", "maxReceiveCount": "{max_receive_count}"}}'
            )
        response = await sqs_client.create_queue(QueueName=f"{stem}-{uuid.uuid4().hex[:8]}", Attributes=attributes)
        url = str(response["QueueUrl"])
        created.append(url)
        return url

    try:
        yield create
    finally:
        for url in reversed(created):
            await sqs_client.delete_queue(QueueUrl=url)


async def send_bodies(client: Any, queue_url: str, bodies: Sequence[str]) -> list[str]:
    """Send ``bodies`` (in batches of ten) and return their MessageIds, in order."""
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        response = await client.send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
        )
        if response.get("Failed"):
            raise AssertionError(f"SendMessageBatch failed: {response['Failed']}")
        by_id = {entry["Id"]: entry["MessageId"] for entry in response["Successful"]}
        ids.extend(by_id[str(i)] for i in range(len(chunk)))
    return ids


async def queue_depth(client: Any, queue_url: str) -> QueueDepth:
    """How many messages the queue holds: visible, in flight (received, not deleted) and delayed."""
    names = [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ]
    attributes = (await client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=names))["Attributes"]
    return QueueDepth(*(int(attributes.get(name, 0)) for name in names))
