"""The sellers registry in Kafka: publish records and tombstones, read the compacted topic, keep a live view.

The registry is the compacted topic ``solicit.sellers.v1`` (:data:`streams.topics.SELLERS`), key = seller id,
value = :class:`streams.registry.SellerRecord` JSON, ``None`` = removed. There is no other store: the CLI reads the
topic to answer ``sellers list`` and to edit one seller, and every worker keeps a :class:`SellerDirectory`.

Reading goes through :mod:`connectors.kafka` (no consumer group; from the beginning to the end offsets taken at
the start). A record that does not decode (another schema, a hand-written value) is skipped with a WARNING naming its
key and offset, never its value, which holds the encrypted token.

Decryption is not done here: records travel and are cached encrypted, and the sender decrypts a token at the moment
it needs one (:class:`connectors.crypto.TokenCipher`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from types import TracebackType

from aiokafka import ConsumerRecord

from connectors.kafka import KafkaConnection, TopicFollower, TopicMissing, produce_all, read_to_end
from streams.registry import RegistryLoadTimeout, SellerRecord, SellersTopicMissing, UndecodableSellerRecord
from streams.topics import SELLERS

__all__ = [
    "DEFAULT_LOAD_TIMEOUT_S",
    "ChangeCallback",
    "SellerChange",
    "SellerDirectory",
    "load_registry",
    "publish_records",
    "publish_tombstone",
]

log = logging.getLogger(__name__)

DEFAULT_LOAD_TIMEOUT_S = 60.0
"""How long reading the sellers topic to its end may take before :class:`RegistryLoadTimeout`."""

_CLIENT_ID = "solicit-sellers"


async def publish_records(
    connection: KafkaConnection, records: Iterable[SellerRecord], *, topic: str = SELLERS.name
) -> int:
    """Publish every record (key = seller id) and wait until the broker has acknowledged all; return the count."""
    messages = [(record.seller_id.encode(), record.to_json()) for record in records]
    return await produce_all(connection, topic, messages, client_id=_CLIENT_ID)


async def publish_tombstone(connection: KafkaConnection, seller_id: str, *, topic: str = SELLERS.name) -> None:
    """Remove a seller: publish ``None`` under its key (compaction later drops its older records)."""
    await produce_all(connection, topic, [(seller_id.encode(), None)], client_id=_CLIENT_ID)


async def load_registry(
    connection: KafkaConnection, *, topic: str = SELLERS.name, load_timeout: float = DEFAULT_LOAD_TIMEOUT_S
) -> dict[str, SellerRecord]:
    """Every seller on the topic now, tombstones applied.

    Raises :class:`SellersTopicMissing` when the topic does not exist, :class:`RegistryLoadTimeout` when the end is
    not reached within ``load_timeout`` seconds.
    """
    sellers: dict[str, SellerRecord] = {}
    try:
        await read_to_end(
            connection, topic, lambda record: _apply(sellers, record), within=load_timeout, client_id=_CLIENT_ID
        )
    except TopicMissing:
        raise SellersTopicMissing(topic, connection.bootstrap_servers) from None
    except TimeoutError:
        raise RegistryLoadTimeout(topic, load_timeout) from None
    return sellers


@dataclass(frozen=True, slots=True)
class SellerChange:
    """One change the live view applied: ``before``/``after`` are None for an added/removed seller."""

    seller_id: str
    before: SellerRecord | None
    after: SellerRecord | None


ChangeCallback = Callable[[SellerChange], None]
"""Called for each change after :meth:`SellerDirectory.start`; must be quick (set an Event, schedule a task)."""


def _apply(sellers: dict[str, SellerRecord], message: ConsumerRecord[bytes, bytes]) -> SellerChange | None:
    """Apply one topic message to ``sellers``; the change, or None when nothing changed or it was skipped."""
    where = f"{message.topic}[{message.partition}]@{message.offset}"
    if message.key is None:
        log.warning("sellers registry: skipped the record at %s: it has no key", where)
        return None
    try:
        seller_id = message.key.decode("utf-8")
    except UnicodeDecodeError:
        log.warning("sellers registry: skipped the record at %s: its key is not UTF-8", where)
        return None
    before = sellers.get(seller_id)
    if message.value is None:
        if before is None:
            return None
        del sellers[seller_id]
        return SellerChange(seller_id, before, None)
    try:
        after = SellerRecord.from_json(message.value, key=seller_id)
    except UndecodableSellerRecord as exc:
        log.warning("sellers registry: skipped the record for seller %r at %s: %s", seller_id, where, exc.reason)
        return None
    sellers[seller_id] = after
    return SellerChange(seller_id, before, after)


class SellerDirectory(Mapping[str, SellerRecord]):
    """The worker's live, read-only view of the registry: loaded fully at start, then kept current.

    ``await start()`` returns once every record published before it was called is applied, so the worker knows
    its sellers before it handles an order. Later changes are applied as they come, and each calls the
    ``on_change`` callbacks with a :class:`SellerChange` (not for the initial load). A failing callback is logged
    and does not stop the view. Usable as ``async with SellerDirectory(...) as sellers:``.
    """

    def __init__(
        self,
        *,
        connection: KafkaConnection,
        topic: str = SELLERS.name,
        on_change: ChangeCallback | None = None,
        load_timeout: float = DEFAULT_LOAD_TIMEOUT_S,
    ) -> None:
        self._connection = connection
        self._topic = topic
        self._load_timeout = load_timeout
        self._callbacks: list[ChangeCallback] = [on_change] if on_change is not None else []
        self._sellers: dict[str, SellerRecord] = {}
        self._loaded = False
        self._follower = TopicFollower(connection, topic, self._received, client_id=_CLIENT_ID)

    @property
    def topic(self) -> str:
        return self._topic

    @property
    def running(self) -> bool:
        """True while the view follows the topic."""
        return self._follower.running

    def subscribe(self, callback: ChangeCallback) -> Callable[[], None]:
        """Add an ``on_change`` callback; returns a function that removes it again."""
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            if callback in self._callbacks:
                self._callbacks.remove(callback)

        return unsubscribe

    async def start(self) -> None:
        """Load every seller up to the current end of the topic, then follow it."""
        try:
            await self._follower.start(within=self._load_timeout)
        except TopicMissing:
            raise SellersTopicMissing(self._topic, self._connection.bootstrap_servers) from None
        except TimeoutError:
            raise RegistryLoadTimeout(self._topic, self._load_timeout) from None
        self._loaded = True

    async def stop(self) -> None:
        """Stop following. Safe to call twice, or without start()."""
        await self._follower.stop()

    async def __aenter__(self) -> SellerDirectory:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # Mapping: get(), `in`, len(), iteration over seller ids, all over the current state.
    def __getitem__(self, seller_id: str) -> SellerRecord:
        return self._sellers[seller_id]

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._sellers))

    def __len__(self) -> int:
        return len(self._sellers)

    def _received(self, message: ConsumerRecord[bytes, bytes]) -> None:
        change = _apply(self._sellers, message)
        if change is not None and self._loaded:
            self._notify(change)

    def _notify(self, change: SellerChange) -> None:
        for callback in list(self._callbacks):
            try:
                callback(change)
            except Exception:
                log.exception("sellers registry: an on_change callback failed for seller %r", change.seller_id)
