"""Kafka through aiokafka: every client's connection settings in one place, the preflight check, the producer, topic
admin, and the reader of compacted topics.

Every Kafka client of the service (the bridge's producer, the sellers registry's reader and writer, topic admin, the
sender's command feed, the CLI; the Faust worker through :meth:`KafkaConnection.faust_broker` and
:meth:`KafkaConnection.faust_credentials`) is built from one :class:`KafkaConnection`, so a connection setting
(addresses, TLS, SASL) is made once and reaches every client: aiokafka clients take
:meth:`KafkaConnection.client_kwargs`.

:func:`check_connection` connects once the way every client will and turns a failure into one line naming what is
wrong (refused, TLS, authentication): aiokafka's own bootstrap only logs why an address failed and then says
"Unable to bootstrap", and Faust would retry forever. Commands call it before anything else touches Kafka.

Producers here use ``acks=all`` and idempotence: a send that returned is on every in-sync replica, once, in order.

The compacted-topic reader never joins a consumer group: every reader wants the *whole* topic, so partitions are
assigned by hand and read from the beginning to the end offsets taken at the start ("everything published before I
looked"); :class:`TopicFollower` then keeps following it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, get_args

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.conn import AIOKafkaConnection
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAlreadyExistsError,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context
from aiokafka.protocol.metadata import MetadataRequest
from pydantic import BaseModel, ConfigDict, Field, FilePath, SecretStr, field_validator, model_validator

__all__ = [
    "CHECK_TIMEOUT_S",
    "DEFAULT_BOOTSTRAP",
    "KafkaConnection",
    "KafkaUnusable",
    "MskIamTokenError",
    "MskIamTokenProvider",
    "NewTopicSpec",
    "TopicFollower",
    "TopicMissing",
    "admin_client",
    "check_connection",
    "create_missing_topics",
    "group_offsets",
    "idempotent_producer",
    "partition_counts",
    "produce_all",
    "read_to_end",
]

log = logging.getLogger(__name__)

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
"""Where every command looks for Kafka unless told otherwise (the port ``solicit kafka up`` uses)."""


SecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
SaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "AWS_MSK_IAM"]
MSK_SIGNER_MODULE = "aws_msk_iam_sasl_signer"
MSK_EXTRA_HINT = "pip install 'solicit[msk]' (the package aws-msk-iam-sasl-signer-python)"
_SASL_FIELDS = ("sasl_mechanism", "sasl_username", "sasl_password", "msk_region")
_TLS_FIELDS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile", "ssl_key_password")


class KafkaConnection(BaseModel):
    """How to reach the cluster: the one place every Kafka client's connection settings come from.

    ``security_protocol`` and the ``sasl_*``/``ssl_*`` fields are Kafka's own client settings (the names Java and
    librdkafka clients use), checked together when the model is built: a combination that cannot work (SASL without
    a mechanism, a password without SASL, a CA file without TLS, ...) is refused with the field names, never a value.
    Secrets are :class:`~pydantic.SecretStr`: ``repr()``/``str()`` show ``**********``, and validation errors never
    quote the input (``hide_input_in_errors``: pydantic would otherwise print the raw values, password included).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)

    bootstrap_servers: str = Field(
        default=DEFAULT_BOOTSTRAP,
        min_length=1,
        description="Kafka bootstrap servers, comma separated (also read from the standard KAFKA_BOOTSTRAP_SERVERS).",
    )
    security_protocol: SecurityProtocol = Field(
        default="PLAINTEXT",
        description=(
            "How every client talks to the brokers: PLAINTEXT, SSL (TLS), SASL_PLAINTEXT (SASL without TLS) or "
            "SASL_SSL (SASL over TLS: Amazon MSK, Confluent Cloud, Aiven, ...)."
        ),
    )
    sasl_mechanism: SaslMechanism | None = Field(
        default=None,
        description=(
            "With SASL_*: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (user name and password), or AWS_MSK_IAM (Amazon MSK "
            "IAM: OAUTHBEARER with a token signed from the standard AWS credential chain; needs "
            "`pip install 'solicit[msk]'`). PLAIN and SCRAM need sasl_username and sasl_password."
        ),
    )
    sasl_username: str = Field(default="", description="SASL user name (PLAIN, SCRAM).")
    sasl_password: SecretStr = Field(
        default=SecretStr(""), description="SASL password (PLAIN, SCRAM); never logged or printed."
    )
    ssl_cafile: FilePath | None = Field(
        default=None,
        description=(
            "PEM file of the CA certificate(s) the brokers' certificates chain to (SSL, SASL_SSL); unset: the "
            "system's trusted CAs (enough for MSK and most managed clusters)."
        ),
    )
    ssl_certfile: FilePath | None = Field(
        default=None,
        description="PEM client certificate (chain) for mutual TLS; may hold the private key too.",
    )
    ssl_keyfile: FilePath | None = Field(
        default=None, description="PEM private key of ssl_certfile, when the certificate file does not hold it."
    )
    ssl_key_password: SecretStr = Field(
        default=SecretStr(""), description="Password of an encrypted client private key; never logged or printed."
    )
    ssl_check_hostname: bool = Field(
        default=True,
        description=(
            "Check that a broker's certificate names the host connected to. The certificate chain is always "
            "verified; turn this off only for brokers reached by an address their certificate does not name."
        ),
    )
    msk_region: str = Field(
        default="",
        description=(
            "AWS region of the MSK cluster (e.g. us-east-1), for AWS_MSK_IAM; credentials come from the standard AWS "
            "chain (environment, profile, instance or task role)."
        ),
    )

    @field_validator("security_protocol", "sasl_mechanism", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        """``sasl_ssl``, ``scram-sha-512``: Kafka's own clients accept either case, so do we."""
        if isinstance(value, str):
            return value.strip().upper() or None
        return value

    @field_validator("ssl_cafile", "ssl_certfile", "ssl_keyfile", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _consistent(self) -> KafkaConnection:
        problems = self._problems()
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _problems(self) -> list[str]:
        protocol, mechanism = self.security_protocol, self.sasl_mechanism
        problems: list[str] = []
        if self.uses_sasl and mechanism is None:
            problems.append(f"security_protocol {protocol} needs sasl_mechanism ({', '.join(get_args(SaslMechanism))})")
        if not self.uses_sasl:
            stray = [name for name in _SASL_FIELDS if self._set(name)]
            if stray:
                problems.append(f"{', '.join(stray)} set, but security_protocol {protocol} uses no SASL")
        if not self.uses_tls:
            stray = [name for name in _TLS_FIELDS if self._set(name)]
            if stray:
                problems.append(f"{', '.join(stray)} set, but security_protocol {protocol} uses no TLS")
        if mechanism in ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            missing = [name for name in ("sasl_username", "sasl_password") if not self._set(name)]
            if missing:
                problems.append(f"sasl_mechanism {mechanism} needs {' and '.join(missing)}")
        if mechanism == "AWS_MSK_IAM":
            if protocol != "SASL_SSL":
                problems.append("sasl_mechanism AWS_MSK_IAM needs security_protocol SASL_SSL (MSK IAM is over TLS)")
            if not self.msk_region:
                problems.append("sasl_mechanism AWS_MSK_IAM needs msk_region (the cluster's AWS region)")
            if importlib.util.find_spec(MSK_SIGNER_MODULE) is None:
                problems.append(f"sasl_mechanism AWS_MSK_IAM needs the optional signer: {MSK_EXTRA_HINT}")
        if self.ssl_keyfile is not None and self.ssl_certfile is None:
            problems.append("ssl_keyfile set without ssl_certfile (mutual TLS needs the certificate too)")
        if self._set("ssl_key_password") and self.ssl_certfile is None:
            problems.append("ssl_key_password set without ssl_certfile")
        return problems

    def _set(self, name: str) -> bool:
        value = getattr(self, name)
        if isinstance(value, SecretStr):
            return bool(value.get_secret_value())
        return value is not None and value != ""

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def servers(self) -> list[str]:
        """The bootstrap addresses, one ``host:port`` each."""
        return [host.strip() for host in self.bootstrap_servers.split(",") if host.strip()]

    def describe_login(self) -> str:
        """Who we authenticate as, for messages: ``SASL SCRAM-SHA-512 as user 'alice'`` (never a secret)."""
        if self.sasl_mechanism == "AWS_MSK_IAM":
            return f"SASL AWS_MSK_IAM in {self.msk_region}"
        if self.sasl_mechanism is not None:
            return f"SASL {self.sasl_mechanism} as user {self.sasl_username!r}"
        return "no SASL"

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context of every client: the CA file (or the system's CAs), the client certificate for mutual
        TLS, hostname checking as configured. Raises ``OSError``/``ssl.SSLError`` when a file cannot be used."""
        password = self.ssl_key_password.get_secret_value()
        context = create_ssl_context(
            cafile=str(self.ssl_cafile) if self.ssl_cafile is not None else None,
            certfile=str(self.ssl_certfile) if self.ssl_certfile is not None else None,
            keyfile=str(self.ssl_keyfile) if self.ssl_keyfile is not None else None,
            password=password or None,
        )
        context.check_hostname = self.ssl_check_hostname
        return context  # type: ignore[no-any-return]  # aiokafka is untyped

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments every aiokafka client (producer, consumer, admin) takes for the connection.

        A fresh TLS context (and MSK token provider) per call: each client owns its own.
        """
        kwargs: dict[str, Any] = {"bootstrap_servers": self.servers(), "security_protocol": self.security_protocol}
        if self.uses_tls:
            kwargs["ssl_context"] = self.ssl_context()
        if self.sasl_mechanism == "AWS_MSK_IAM":
            kwargs["sasl_mechanism"] = "OAUTHBEARER"
            kwargs["sasl_oauth_token_provider"] = MskIamTokenProvider(self.msk_region)
        elif self.sasl_mechanism is not None:
            kwargs["sasl_mechanism"] = self.sasl_mechanism
            kwargs["sasl_plain_username"] = self.sasl_username
            kwargs["sasl_plain_password"] = self.sasl_password.get_secret_value()
        return kwargs

    def faust_broker(self) -> list[str]:
        """Faust's ``broker`` setting for the same cluster."""
        return [f"kafka://{host}" for host in self.servers()]

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` for the same connection (None for PLAINTEXT).

        Faust hands these to every aiokafka client it makes (``credentials_to_aiokafka_auth``: consumer, producer,
        the client that creates its topics): a :class:`faust.SASLCredentials` (PLAIN, SCRAM; its protocol becomes
        SASL_SSL when it carries a TLS context), :class:`faust.OAuthCredentials` (AWS_MSK_IAM, OAUTHBEARER) or
        :class:`faust.SSLCredentials` (TLS only). Faust is imported here, not at module level: only the worker
        needs it.
        """
        from faust.auth import OAuthCredentials, SASLCredentials, SSLCredentials

        if self.security_protocol == "PLAINTEXT":
            return None
        context = self.ssl_context() if self.uses_tls else None
        if self.security_protocol == "SSL":
            return SSLCredentials(context)
        if self.sasl_mechanism == "AWS_MSK_IAM":
            return OAuthCredentials(oauth_cb=MskIamTokenProvider(self.msk_region), ssl_context=context)
        return SASLCredentials(
            username=self.sasl_username,
            password=self.sasl_password.get_secret_value(),
            ssl_context=context,
            mechanism=self.sasl_mechanism,
        )


class MskIamTokenError(Exception):
    """No MSK IAM token could be signed (no AWS credentials, the signer failed); the message names why."""


def _sign_msk_token(region: str) -> tuple[str, float]:
    """A fresh MSK IAM token and its expiry (Unix seconds), from AWS's signer and the standard credential chain.

    The signer is imported here, at the first token, and not at module level: it is the optional extra ``msk``
    because it brings boto3 with it, which nothing else in the service needs, so deployments that do not use MSK IAM
    neither install nor load it. The settings check (:meth:`KafkaConnection._problems`) looks for the package without
    importing it, so a missing extra is a configuration error naming the install command, not an ImportError later.
    """
    try:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    except ImportError:
        raise MskIamTokenError(f"the MSK IAM signer is not installed: {MSK_EXTRA_HINT}") from None
    try:
        token, expiry_ms = MSKAuthTokenProvider.generate_auth_token(region)
    except Exception as exc:  # botocore's NoCredentialsError and the like; their messages hold no secret
        raise MskIamTokenError(f"could not sign an MSK IAM token in {region}: {exc}") from None
    return str(token), float(expiry_ms) / 1000.0


class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]  # aiokafka is untyped
    """SASL/OAUTHBEARER tokens for Amazon MSK IAM (``sasl_mechanism=AWS_MSK_IAM``).

    A token is a presigned, short-lived (15 min) request signed with the process's AWS credentials by the maintained
    ``aws-msk-iam-sasl-signer-python`` package: we do not sign it ourselves. aiokafka asks for a token on each new
    connection; one is reused until a minute before it expires. Signing may read credentials over the network
    (instance or task role), so it runs in a thread, off the event loop. The token is a credential: it is never
    logged, and ``repr()`` shows only the region.
    """

    REFRESH_MARGIN_S = 60.0

    def __init__(self, region: str) -> None:
        self.region = region
        self._token: str | None = None
        self._expires_at = 0.0

    async def token(self) -> str:
        if self._token is None or time.time() >= self._expires_at - self.REFRESH_MARGIN_S:
            loop = asyncio.get_running_loop()
            token, self._expires_at = await loop.run_in_executor(None, _sign_msk_token, self.region)
            self._token = token
            return token
        return self._token

    def __repr__(self) -> str:
        return f"<MskIamTokenProvider region={self.region}>"


class TopicMissing(KafkaError):  # type: ignore[misc]  # aiokafka is untyped
    """The topic does not exist on the cluster."""

    def __init__(self, topic: str) -> None:
        super().__init__(f"topic {topic} does not exist")
        self.topic = topic


# --- checking the connection ---------------------------------------------------------------------------------------

CHECK_TIMEOUT_S = 10.0
"""How long :func:`check_connection` waits for an address (connect, TLS, SASL, one metadata request)."""
_CLOSE_WAIT_S = 0.5


class KafkaUnusable(Exception):
    """Kafka cannot be used with the connection settings; ``str()`` is one line naming what is wrong, no secret."""


async def check_connection(connection: KafkaConnection, *, timeout: float = CHECK_TIMEOUT_S) -> None:  # noqa: ASYNC109
    """Connect to each bootstrap address as every client will (TCP, TLS, SASL) and ask it for metadata.

    Returns as soon as one address answers. Otherwise raises :class:`KafkaUnusable` with one line naming what is
    wrong, e.g. ``Kafka: authentication failed at 10.0.0.1:9096 (SASL SCRAM-SHA-512 as user 'alice'): ...`` or
    ``Kafka: cannot reach 10.0.0.1:9093 (TLS handshake failed: certificate verify failed: ...)``. The addresses are
    tried concurrently, each within ``timeout`` seconds.
    """
    try:
        kwargs = connection.client_kwargs()
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError: a file that is not PEM, a wrong key password
        raise KafkaUnusable(f"Kafka: the TLS files cannot be used ({_tls_reason(exc)})") from None
    del kwargs["bootstrap_servers"]
    addresses = connection.servers()
    problems = await asyncio.gather(*(_probe(connection, address, kwargs, timeout) for address in addresses))
    if any(problem is None for problem in problems):
        return
    raise KafkaUnusable("Kafka: " + "; ".join(dict.fromkeys(p for p in problems if p is not None)))


async def _probe(connection: KafkaConnection, address: str, kwargs: dict[str, Any], limit: float) -> str | None:
    """None when ``address`` answered a metadata request through the configured protocol; else what went wrong."""
    host, port = _host_port(address)
    conn = AIOKafkaConnection(host, port, client_id="solicit-check", request_timeout_ms=int(limit * 1000), **kwargs)
    problem: str | None = None
    try:
        async with asyncio.timeout(limit):
            await conn.connect()
            # A listener that wants SASL answers ApiVersions without it, but nothing else: ask for metadata too.
            await conn.send(MetadataRequest([]))
    except TimeoutError:
        problem = f"cannot reach {address} (no answer within {limit:g} s)"
    except Exception as exc:
        problem = _problem(connection, address, exc)
    await _closed(conn)
    return problem


async def _closed(conn: AIOKafkaConnection) -> None:
    """Close ``conn`` and let its transport finish closing while this loop runs: one left closing when the loop ends
    is an "unclosed transport" warning. A transport that never opened (refused, TLS failed) has nothing to wait for:
    its future never resolves, so the wait is bounded."""
    closed = conn.close()
    if closed is not None and not closed.done():
        await asyncio.wait([closed], timeout=_CLOSE_WAIT_S)


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():  # no port given: Kafka's default
        return address.strip("[]"), 9092
    return host.strip("[]"), int(port)


_EXPECTS = {"PLAINTEXT": "TLS or SASL", "SSL": "SASL", "SASL_PLAINTEXT": "TLS", "SASL_SSL": "another protocol"}
"""What a listener that closes the connection at once probably wants, by the protocol we spoke."""


def _problem(connection: KafkaConnection, address: str, exc: BaseException) -> str:
    """One phrase naming what went wrong at ``address`` (the messages used here carry no secret)."""
    protocol = connection.security_protocol
    if isinstance(exc, SaslAuthenticationFailed | AuthenticationFailedError):
        said = str(exc.args[0]).strip() if exc.args and isinstance(exc.args[0], str) else ""
        return f"authentication failed at {address} ({connection.describe_login()})" + (f": {said}" if said else "")
    if isinstance(exc, UnsupportedSaslMechanismError):
        enabled = str(exc).partition("Enabled mechanisms are:")[2].strip()
        return f"{address} does not offer SASL {connection.sasl_mechanism}" + (
            f" (it offers {enabled})" if enabled else ""
        )
    if isinstance(exc, MskIamTokenError):
        return str(exc)
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = exc.verify_message or str(exc.reason)
        hint = (
            "" if "hostname" in reason.lower() else "; is SOLICIT_KAFKA__SSL_CAFILE the CA of the broker's certificate?"
        )
        return f"cannot reach {address} (TLS handshake failed: certificate verify failed: {reason}{hint})"
    if isinstance(exc, ssl.SSLError):
        return f"cannot reach {address} (TLS handshake failed: {_tls_reason(exc)}; is it a TLS listener?)"
    if isinstance(exc, socket.gaierror):
        return f"cannot reach {address} (unknown host: {exc.strerror})"
    if isinstance(exc, ConnectionRefusedError):
        return f"cannot reach {address} (connection refused)"
    if isinstance(exc, ConnectionResetError) and connection.uses_tls:
        return f"cannot reach {address} (connection reset during the TLS handshake: is it a TLS listener?)"
    if isinstance(exc, OSError):
        return f"cannot reach {address} ({exc.strerror or type(exc).__name__})"
    if isinstance(exc, KafkaConnectionError):
        return (
            f"{address} closed the connection during the handshake (does its listener expect {_EXPECTS[protocol]}? "
            f"this client uses {protocol})"
        )
    return f"{address} answered {type(exc).__name__}: {exc}"


def _tls_reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):
        return str(exc.reason or exc.strerror or exc)
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return str(exc)


# --- producing ------------------------------------------------------------------------------------------------------


def idempotent_producer(connection: KafkaConnection, *, client_id: str, **kwargs: Any) -> AIOKafkaProducer:
    """A producer with ``acks=all`` and idempotence (not started)."""
    return AIOKafkaProducer(
        **connection.client_kwargs(), client_id=client_id, acks="all", enable_idempotence=True, **kwargs
    )


async def produce_all(
    connection: KafkaConnection, topic: str, messages: Sequence[tuple[bytes, bytes | None]], *, client_id: str
) -> int:
    """Send every (key, value) and wait until the broker acknowledged all of them; return the count."""
    if not messages:
        return 0
    producer = idempotent_producer(connection, client_id=client_id)
    try:
        await producer.start()
        # Send everything, then wait for every acknowledgement: one round trip per batch, not per message.
        pending = [await producer.send(topic, value, key=key) for key, value in messages]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return len(messages)


# --- admin ------------------------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def admin_client(connection: KafkaConnection, *, client_id: str = "solicit-admin") -> AsyncIterator[Any]:
    """A started admin client, closed on exit."""
    admin = AIOKafkaAdminClient(**connection.client_kwargs(), client_id=client_id)
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


@dataclass(frozen=True)
class NewTopicSpec:
    """A topic to create when it is missing."""

    name: str
    partitions: int
    replication_factor: int = 1
    config: dict[str, str] = field(default_factory=dict)


async def create_missing_topics(connection: KafkaConnection, topics: Iterable[NewTopicSpec]) -> list[str]:
    """Create the topics that do not exist yet; return the names created. Existing topics are left alone."""
    async with admin_client(connection) as admin:
        existing = set(await admin.list_topics())
        created: list[str] = []
        for topic in topics:  # one by one: a concurrent creator makes only its own topic fail
            if topic.name in existing:
                continue
            new = NewTopic(
                name=topic.name,
                num_partitions=topic.partitions,
                replication_factor=topic.replication_factor,
                topic_configs=dict(topic.config),
            )
            try:
                await admin.create_topics([new])
                created.append(topic.name)
            except TopicAlreadyExistsError:
                pass
        return created


async def partition_counts(connection: KafkaConnection, names: Iterable[str]) -> dict[str, int]:
    """Partition count of each named topic that exists."""
    async with admin_client(connection) as admin:
        described = await admin.describe_topics(list(names))
    return {d["topic"]: len(d["partitions"]) for d in described if d["error_code"] == 0}


async def _partition_ids(connection: KafkaConnection, topic: str) -> list[int]:
    """The topic's partitions, from fresh metadata (a consumer only learns them after an assignment)."""
    async with admin_client(connection) as admin:
        # Listing first: a metadata request naming a missing topic could auto-create it on some brokers.
        if topic not in await admin.list_topics():
            raise TopicMissing(topic)
        (described,) = await admin.describe_topics([topic])
    if described["error_code"] != 0 or not described["partitions"]:
        raise TopicMissing(topic)
    return sorted(partition["partition"] for partition in described["partitions"])


# --- reading a whole topic --------------------------------------------------------------------------------------------

Apply = Callable[[ConsumerRecord[bytes, bytes]], object]
"""Called with each record in offset order (per partition)."""


def _groupless_consumer(connection: KafkaConnection, client_id: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **connection.client_kwargs(),
        client_id=client_id,
        group_id=None,  # no group: every reader needs every partition, and there is nothing to commit
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


async def _assign_from_start(consumer: AIOKafkaConsumer, connection: KafkaConnection, topic: str) -> list[Any]:
    partitions = [TopicPartition(topic, p) for p in await _partition_ids(connection, topic)]
    consumer.assign(partitions)
    await consumer.seek_to_beginning(*partitions)
    return partitions


async def _consume_to_end(consumer: AIOKafkaConsumer, partitions: list[Any], apply: Apply) -> None:
    """Apply every record up to the end offsets as of now. Compaction leaves offset gaps, so positions decide."""
    ends: dict[Any, int] = await consumer.end_offsets(partitions)
    remaining = {tp for tp in partitions if await consumer.position(tp) < ends[tp]}
    while remaining:
        batches = await consumer.getmany(*remaining, timeout_ms=500)
        for records in batches.values():
            for record in records:
                apply(record)
        remaining = {tp for tp in remaining if await consumer.position(tp) < ends[tp]}


async def read_to_end(connection: KafkaConnection, topic: str, apply: Apply, *, within: float, client_id: str) -> None:
    """Apply every record of ``topic`` published before this call, from the beginning.

    Raises :class:`TopicMissing` when the topic does not exist and :class:`TimeoutError` when its end is not reached
    within ``within`` seconds.
    """
    consumer = _groupless_consumer(connection, client_id)
    try:
        await consumer.start()
        async with asyncio.timeout(within):
            partitions = await _assign_from_start(consumer, connection, topic)
            await _consume_to_end(consumer, partitions, apply)
    finally:
        await consumer.stop()


class TopicFollower:
    """Reads a whole topic, then follows it: :meth:`start` returns once every record published before it was applied;
    a background task applies each later record. Transient read errors are logged and retried."""

    def __init__(self, connection: KafkaConnection, topic: str, apply: Apply, *, client_id: str) -> None:
        self._connection = connection
        self._topic = topic
        self._apply = apply
        self._client_id = client_id
        self._consumer: AIOKafkaConsumer | None = None
        self._tail: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        """True while the tail task runs (it ends only by :meth:`stop` or an unexpected error, which is logged)."""
        return self._tail is not None and not self._tail.done()

    async def start(self, *, within: float) -> None:
        """Read to the current end (``TimeoutError`` after ``within`` s, :class:`TopicMissing`), then follow."""
        if self._consumer is not None:
            raise RuntimeError(f"following {self._topic} started twice")
        consumer = _groupless_consumer(self._connection, self._client_id)
        try:
            await consumer.start()
            async with asyncio.timeout(within):
                partitions = await _assign_from_start(consumer, self._connection, self._topic)
                await _consume_to_end(consumer, partitions, self._apply)
        except BaseException:
            await consumer.stop()
            raise
        self._consumer = consumer
        self._tail = asyncio.create_task(self._follow(consumer), name=f"follow:{self._topic}")
        self._tail.add_done_callback(self._tail_ended)

    async def stop(self) -> None:
        """Stop following and close the consumer. Safe to call twice, or without start()."""
        tail, self._tail = self._tail, None
        if tail is not None:
            tail.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await tail
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=1000)
            except KafkaError as exc:
                # aiokafka reconnects by itself; an error surfacing here is logged and the read retried.
                log.warning("reading %s failed (%s); retrying in 1 s", self._topic, exc)
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                for record in records:
                    self._apply(record)

    def _tail_ended(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("following %s stopped; its view is frozen", self._topic, exc_info=task.exception())


async def group_offsets(
    connection: KafkaConnection, group_id: str, partitions: Iterable[tuple[str, int]]
) -> dict[tuple[str, int], int | None]:
    """The committed offset of ``group_id`` for each (topic, partition); None where it has none."""
    wanted = [TopicPartition(topic, partition) for topic, partition in partitions]
    if not wanted:
        return {}
    async with admin_client(connection, client_id=f"{group_id}-offsets") as admin:
        found = await admin.list_consumer_group_offsets(group_id, partitions=wanted)
    offsets: dict[tuple[str, int], int | None] = {(tp.topic, tp.partition): None for tp in wanted}
    for tp, meta in found.items():
        offsets[(tp.topic, tp.partition)] = meta.offset if meta.offset >= 0 else None
    return offsets
