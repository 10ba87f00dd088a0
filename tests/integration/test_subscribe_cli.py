"""``solicit sellers subscribe|unsubscribe`` end to end: the sellers topic on a real broker, moto SQS, the sandbox.

``main()`` runs in-process on a thread of its own (it runs its own event loop) while the sandbox serves on the test's.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from connectors.crypto import TokenCipher, generate_key
from connectors.kafka import KafkaConnection
from devstack.sandbox import SandboxServer
from statemachine.marketplaces import Region
from streams.cli import main
from streams.directory import publish_records
from streams.queue_policy import queue_statement
from streams.registry import SellerRecord
from tests.support.kafka import KafkaTopicFactory
from tests.support.spapi import SandboxFactory, seller
from tests.support.sqs import SqsQueueFactory

pytestmark = pytest.mark.integration

US, DE = "ATVPDKIKX0DER", "A1PA6795UKMFR9"
SECRET_KEY = generate_key()
Run = Callable[..., Awaitable[tuple[int, str, str]]]


def record(index: int, region: Region, marketplace: str, **overrides: Any) -> SellerRecord:
    cipher = TokenCipher(SecretStr(SECRET_KEY))
    fields: dict[str, Any] = {
        "seller_id": f"SELLER{index}",
        "name": f"Shop {index}",
        "region": region,
        "marketplace_ids": (marketplace,),
        "refresh_token_encrypted": cipher.encrypt(seller(index).refresh_token),
        "updated_at": datetime(2026, 3, 1, tzinfo=UTC),
    }
    return SellerRecord(**{**fields, **overrides})


@pytest.fixture
async def sellers_topic(kafka_topic_factory: KafkaTopicFactory, kafka_bootstrap: str) -> str:
    topic = await kafka_topic_factory(partitions=1, config={"cleanup.policy": "compact"})
    records = [record(1, Region.NA, US), record(2, Region.EU, DE)]
    await publish_records(KafkaConnection(bootstrap_servers=kafka_bootstrap), records, topic=topic)
    return topic


@pytest.fixture
async def sandbox(sandbox_factory: SandboxFactory) -> SandboxServer:
    return await sandbox_factory()


@pytest.fixture
def queue_arn() -> Callable[[str], str]:
    return lambda url: "arn:aws:sqs:us-east-1:123456789012:" + url.rsplit("/", 1)[-1]


async def allow_amazon(sqs_client: Any, url: str, arn: str, **attributes: str) -> None:
    policy = {"Version": "2012-10-17", "Statement": [queue_statement(arn)]}
    await sqs_client.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy), **attributes})


@pytest.fixture
def run(
    sandbox: SandboxServer,
    sellers_topic: str,
    kafka_bootstrap: str,
    sqs_environment: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    config = sandbox.state.config
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    monkeypatch.setenv("SOLICIT_SECRET_KEY", SECRET_KEY)
    monkeypatch.setenv("SOLICIT_SPAPI__ENDPOINT", sandbox.url)
    monkeypatch.setenv("SOLICIT_SPAPI__LWA_ENDPOINT", sandbox.lwa_url)
    monkeypatch.setenv("SOLICIT_SPAPI__LWA_CLIENT_ID", config.client_id)
    monkeypatch.setenv("SOLICIT_SPAPI__LWA_CLIENT_SECRET", config.client_secret.get_secret_value())
    monkeypatch.setenv("SOLICIT_SPAPI__BACKOFF_BASE", "0.05")

    async def invoke(*args: str) -> tuple[int, str, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(main, ["sellers", *args, "--topic", sellers_topic])
        out, err = capsys.readouterr()
        for index in (1, 2, 3):
            assert seller(index).refresh_token.get_secret_value() not in out + err
        assert "Atza|" not in out + err and config.client_secret.get_secret_value() not in out + err
        return code, out, err

    return invoke


def by_seller(out: str) -> dict[str, str]:
    return dict(re.findall(r"^(SELLER\d+): ([a-z ]+?)(?: \(|:)", out, flags=re.MULTILINE))


async def test_subscribe_twice_then_unsubscribe(
    run: Run,
    sandbox: SandboxServer,
    sqs_queue: SqsQueueFactory,
    sqs_client: Any,
    queue_arn: Callable[[str], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    url = await sqs_queue()
    arn = queue_arn(url)
    await allow_amazon(sqs_client, url, arn)
    rules = sandbox.state.notifications

    code, out, err = await run("subscribe", "--all", "--queue-url", url)
    assert code == 0, out + err
    assert by_seller(out) == {"SELLER1": "subscribed", "SELLER2": "subscribed"}
    assert re.search(r"^destination \(app default, region EU\): created \w+ \(" + re.escape(arn), out, re.MULTILINE)
    assert "2 seller(s): 2 subscribed, 0 already subscribed, 0 failed." in out
    (destination,) = rules.destinations.values()
    assert destination.arn == arn
    assert {(s.seller_id, s.destination_id) for s in rules.subscriptions.values()} == {
        ("SELLER1", destination.destination_id),
        ("SELLER2", destination.destination_id),
    }
    calls_before = len(sandbox.state.calls)

    monkeypatch.setenv("SOLICIT_BRIDGE__QUEUE_URL", url)  # the bridge's queue is the default
    code, out, _ = await run("subscribe", "--all")
    assert code == 0
    assert by_seller(out) == {"SELLER1": "already subscribed", "SELLER2": "already subscribed"}
    assert out.rstrip().endswith("Nothing changed at Amazon.")
    again = {call.operation for call in sandbox.state.calls[calls_before:]}
    assert again == {"lwaToken", "getDestinations", "getSubscription"}
    async with httpx.AsyncClient(base_url=sandbox.url) as http:
        ledger = (await http.get("/_sandbox/ledger")).json()
    assert len(ledger["destinations"]) == 1 and len(ledger["subscriptions"]) == 2

    code, out, _ = await run("unsubscribe", "--all", "--destination")
    assert code == 0, out
    assert by_seller(out) == {"SELLER1": "unsubscribed", "SELLER2": "unsubscribed"}
    assert "deleted" in out
    assert rules.subscriptions == {} and rules.destinations == {}

    code, out, _ = await run("unsubscribe", "SELLER1")
    assert code == 0 and by_seller(out) == {"SELLER1": "not subscribed"}
    assert "Nothing changed at Amazon." in out


@pytest.mark.parametrize("kms_key", [None, "alias/aws/sqs"], ids=["no policy", "AWS managed key"])
async def test_a_queue_amazon_cannot_deliver_to_exits_2_and_amazon_is_never_called(
    run: Run,
    sandbox: SandboxServer,
    sqs_queue: SqsQueueFactory,
    sqs_client: Any,
    queue_arn: Callable[[str], str],
    kms_key: str | None,
) -> None:
    url = await sqs_queue()
    arn = queue_arn(url)
    if kms_key is not None:
        await allow_amazon(sqs_client, url, arn, KmsMasterKeyId=kms_key)  # moto: one call, or Policy is dropped

    code, out, err = await run("subscribe", "--all", "--queue-url", url)

    assert code == 2
    assert "configuration error" in err and "437568002678" in err and "Nothing was sent to Amazon" in err
    statements = [json.loads(block) for block in re.findall(r"^\{\n.*?^\}", out, flags=re.MULTILINE | re.DOTALL)]
    if kms_key is None:
        assert statements[0] == queue_statement(arn)
        assert "has no access policy" in err
    else:
        assert statements[0]["Action"] == ["kms:GenerateDataKey", "kms:Decrypt"]
        assert "AWS managed key" in err
    assert sandbox.state.calls == []


async def test_configuration_problems_are_all_found_before_amazon(
    run: Run,
    sandbox: SandboxServer,
    sellers_topic: str,
    kafka_bootstrap: str,
    sqs_queue: SqsQueueFactory,
    sqs_client: Any,
    queue_arn: Callable[[str], str],
) -> None:
    url = await sqs_queue()
    await allow_amazon(sqs_client, url, queue_arn(url))
    other = TokenCipher(SecretStr(generate_key()))
    records = [
        record(3, Region.EU, DE, app="eu-app"),
        record(4, Region.NA, US, refresh_token_encrypted=other.encrypt(SecretStr("Atzr|other-key"))),
    ]
    await publish_records(KafkaConnection(bootstrap_servers=kafka_bootstrap), records, topic=sellers_topic)

    code, _, err = await run("subscribe", "--all", "--queue-url", url)

    assert code == 2
    assert "app 'eu-app' (seller(s) SELLER3) has no LWA credentials (SOLICIT_SPAPI__LWA_APPS)" in err
    assert "seller SELLER4: no key in SOLICIT_SECRET_KEY decrypts its refresh token" in err
    assert sandbox.state.calls == []


async def test_one_sellers_amazon_failure_exits_1_and_the_others_are_served(
    run: Run,
    sandbox: SandboxServer,
    sqs_queue: SqsQueueFactory,
    sqs_client: Any,
    queue_arn: Callable[[str], str],
) -> None:
    url = await sqs_queue()
    await allow_amazon(sqs_client, url, queue_arn(url))
    sandbox.state.revoke_seller("SELLER2")

    code, out, err = await run("subscribe", "SELLER1", "SELLER2", "--queue-url", url)

    assert code == 1, err
    assert by_seller(out) == {"SELLER1": "subscribed", "SELLER2": "failed"}
    assert "SELLER2: failed: seller SELLER2 must re-authorize the app" in out
    assert "1 subscribed, 0 already subscribed, 1 failed" in out


async def test_usage_errors(run: Run, sandbox: SandboxServer) -> None:
    for args, message in [
        (("subscribe",), "name the sellers (ID ...) or pass --all, not both"),
        (("subscribe", "SELLER1", "--all"), "name the sellers"),
        (("unsubscribe", "SELLER1", "--queue-url", "https://q"), "--queue-url is used only with --destination"),
        (("subscribe", "--all"), "SOLICIT_BRIDGE__QUEUE_URL: not set"),
    ]:
        code, _, err = await run(*args)
        assert (code, message in err) == (2, True), (args, err)
    code, _, err = await run("unsubscribe", "SELLER9")
    assert code == 1 and "no seller 'SELLER9'" in err
    assert sandbox.state.calls == []
