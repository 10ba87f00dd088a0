"""``solicit sellers import|list|pause|resume|remove|new-key|rekey``: manage the sellers registry in Kafka.

A thin shell over :mod:`streams.registry` (validation) and :mod:`streams.directory` (Kafka). The topic is the
only store, so every action reads it first; ``pause``/``resume`` publish an updated copy of the current record
(the last write wins: do not edit one seller from two terminals at once). ``list`` also reads the alerts topic and
shows, per seller, ``ok`` or the kinds of its open alerts (``--attention``: only the sellers with one).

``import`` is all-or-nothing: the whole file is validated first, every problem is printed (one line each, naming
the seller or entry and the field), and nothing is published unless the file is clean. Each refresh token is
encrypted with the first key of ``SOLICIT_SECRET_KEY`` before it leaves this process; no action ever prints a
token, plaintext or encrypted. Re-importing a seller replaces its record, policy included, so running the same
import again is always safe, e.g. after Kafka failed in the middle of publishing one.

Results go to stdout, errors and notes to stderr. Exit codes (:mod:`streams.cli.shell`): 0 success; 1 error (Kafka,
unknown seller); 2 the import file is invalid (nothing imported) or a setting is bad (a missing or wrong secret key);
130 interrupted. The topic is ``solicit.sellers.v1`` behind ``SOLICIT_KAFKA__TOPIC_PREFIX``, as the worker names it;
``--topic`` (hidden) points an action at another, for tests.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from aiokafka.errors import KafkaError

from connectors.crypto import SecretKeyError, TokenCipher, UndecryptableToken, generate_key
from statemachine.marketplaces import marketplace
from streams.alert_feed import DEFAULT_READ_TIMEOUT_S, AlertsTopicMissing, read_alerts
from streams.cli import backfill
from streams.cli.shell import (
    EXIT_OK,
    EXIT_USAGE,
    CommandError,
    ConfigurationError,
    load_settings,
    print_usage,
    require_kafka,
)
from streams.cli.subscriptions import register as register_subscriptions
from streams.directory import load_registry, publish_records, publish_tombstone
from streams.registry import (
    DEFAULT_APP,
    InvalidImportFile,
    RegistryError,
    SellerRecord,
    UnknownSeller,
    parse_import_file,
)
from streams.settings import Settings
from streams.topic_admin import ensure_topics
from streams.topics import ALERTS, SELLERS

Action = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def register(subparsers: Any) -> None:
    """Add ``sellers`` and its actions to the ``solicit`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sellers",
        help="manage the sellers registry (import, list, pause, resume, remove, new-key, rekey)",
        description=(
            "Manage the sellers registry: the compacted Kafka topic the worker reads its sellers from. Refresh "
            "tokens are stored encrypted with SOLICIT_SECRET_KEY and never printed."
        ),
    )
    parser.set_defaults(run=print_usage(parser))
    actions = parser.add_subparsers(dest="sellers_action", metavar="ACTION", title="actions")

    common = argparse.ArgumentParser(add_help=False)
    # Hidden: tests and staging point an action at another topic.
    # Default: SOLICIT_KAFKA__TOPIC_PREFIX + solicit.sellers.v1.
    common.add_argument("--topic", default=None, help=argparse.SUPPRESS)

    _register_import_and_list(actions, common)
    _register_changes(actions, common)
    register_subscriptions(actions, common)  # subscribe, unsubscribe: streams/cli/subscriptions.py
    backfill.register(actions, common)  # backfill: streams/cli/backfill.py


def _register_import_and_list(actions: Any, common: argparse.ArgumentParser) -> None:
    imports = actions.add_parser(
        "import",
        parents=[common],
        help="add or update the sellers of a JSON file (all-or-nothing)",
        description=(
            'Import {"sellers": [...]} from FILE (format: docs/sellers.md, docs/sellers.example.json). Every entry is '
            "validated first; if any is invalid, every problem is listed and nothing is imported (exit 2). "
            "A seller that exists already is replaced, policy included."
        ),
    )
    imports.add_argument("file", type=Path, metavar="FILE", help="the JSON import file")
    imports.add_argument(
        "--backfill-days", type=int, default=None, metavar="N", help=f"then backfill: {backfill.days_help()}; 0: no"
    )
    imports.set_defaults(run=_guarded(_import))

    listing = actions.add_parser(
        "list",
        parents=[common],
        help="show every seller and whether it needs attention (never a token)",
        description=(
            "Show every seller. ATTENTION is `ok`, or the kinds of the seller's open alerts (read from the alerts "
            "topic; docs/operations.md, Alerts)."
        ),
    )
    listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
    listing.add_argument("--attention", action="store_true", help="only the sellers with open alerts")
    # Hidden: tests point the attention state at another alerts topic. Default: the prefix + solicit.alerts.v1.
    listing.add_argument("--alerts-topic", default=None, help=argparse.SUPPRESS)
    listing.set_defaults(run=_guarded(_list))


def _register_changes(actions: Any, common: argparse.ArgumentParser) -> None:
    for name, help_text, action in (
        ("pause", "hold every send of a seller until it is resumed", _pause),
        ("resume", "let a paused seller send again", _resume),
        ("remove", "remove a seller (publishes a tombstone)", _remove),
    ):
        sub = actions.add_parser(name, parents=[common], help=help_text)
        sub.add_argument("seller_id", metavar="ID", help="the seller id")
        sub.set_defaults(run=_guarded(action))

    new_key = actions.add_parser(
        "new-key",
        help="print a fresh key for SOLICIT_SECRET_KEY",
        description=(
            "Print a new random Fernet key. To rotate, set SOLICIT_SECRET_KEY=<new>,<old> in every process, run "
            "`solicit sellers rekey`, then drop <old>."
        ),
    )
    new_key.set_defaults(run=_new_key)

    rekey = actions.add_parser(
        "rekey",
        parents=[common],
        help="re-encrypt every token with the first key of SOLICIT_SECRET_KEY (key rotation)",
    )
    rekey.set_defaults(run=_guarded(_rekey))


# --- actions -------------------------------------------------------------------------------------------------------


async def _import(args: argparse.Namespace, settings: Settings) -> int:
    entries = parse_import_file(args.file.read_bytes())
    cipher = TokenCipher(settings.secret_key)
    if not entries:
        print(f"{args.file} lists no sellers; nothing imported.")
        return EXIT_OK
    kafka = settings.kafka
    await ensure_topics(kafka, topics=(dataclasses.replace(SELLERS, name=args.topic),))
    current = await load_registry(kafka, topic=args.topic)
    now = settings.sim.clock().now()
    records = [
        SellerRecord.from_entry(entry, refresh_token_encrypted=cipher.encrypt(entry.refresh_token), updated_at=now)
        for entry in entries
    ]
    await publish_records(kafka, records, topic=args.topic)

    added = sum(1 for record in records if record.seller_id not in current)
    print(f"Imported {len(records)} seller(s) into {args.topic}: {added} new, {len(records) - added} updated.")
    for record in records:
        before = current.get(record.seller_id)
        if before is not None and before.policy.paused and not record.policy.paused:
            _note(f"seller {record.seller_id} was paused; this import resumed it (its entry is not paused)")
    for app in sorted({record.app for record in records}):
        if settings.spapi.lwa_app(app) is None:
            where = (
                "SOLICIT_SPAPI__LWA_CLIENT_ID/SOLICIT_SPAPI__LWA_CLIENT_SECRET"
                if app == DEFAULT_APP
                else "SOLICIT_SPAPI__LWA_APPS"
            )
            _note(f"app {app!r} has no LWA credentials here ({where}); the worker needs them to serve its sellers")
    return await backfill.backfill_imported(records, args.backfill_days, settings)


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    sellers = await load_registry(settings.kafka, topic=args.topic)
    attention = await _attention(settings, args.alerts_topic or ALERTS.named(settings.kafka.topic_prefix))
    records = [sellers[seller_id] for seller_id in sorted(sellers)]
    if args.attention:
        records = [record for record in records if attention.get(record.seller_id)]
    if args.json:
        hidden = {"refresh_token_encrypted", "schema_version"}
        print(
            json.dumps(
                [
                    record.model_dump(mode="json", exclude=hidden) | {"attention": attention.get(record.seller_id, [])}
                    for record in records
                ],
                indent=2,
            )
        )
        return EXIT_OK
    if not records:
        print(f"No sellers need attention in {args.topic}." if args.attention else f"No sellers in {args.topic}.")
        return EXIT_OK
    print(_table(records, attention))
    return EXIT_OK


async def _attention(settings: Settings, topic: str) -> dict[str, list[str]]:
    """The kinds of each seller's open alerts (sorted), from the alerts topic."""
    try:
        alerts = await read_alerts(settings.kafka, topic)
    except AlertsTopicMissing:
        _note(f"topic {topic} does not exist yet (no alert was ever raised there): every seller shows ok")
        return {}
    except TimeoutError:
        raise CommandError(f"reading {topic} did not reach its end within {DEFAULT_READ_TIMEOUT_S:g} s") from None
    kinds: dict[str, set[str]] = {}
    for alert in alerts.values():
        if alert.status == "raised" and alert.seller_id is not None:
            kinds.setdefault(alert.seller_id, set()).add(alert.kind.value)
    return {seller_id: sorted(found) for seller_id, found in kinds.items()}


async def _pause(args: argparse.Namespace, settings: Settings) -> int:
    return await _set_paused(args, settings, paused=True)


async def _resume(args: argparse.Namespace, settings: Settings) -> int:
    return await _set_paused(args, settings, paused=False)


async def _set_paused(args: argparse.Namespace, settings: Settings, *, paused: bool) -> int:
    record = await _existing(args, settings)
    state = "paused" if paused else "active (not paused)"
    if record.policy.paused == paused:
        print(f"Seller {record.seller_id} ({record.name}) is already {state}.")
        return EXIT_OK
    updated = record.with_policy(paused=paused, updated_at=settings.sim.clock().now())
    await publish_records(settings.kafka, [updated], topic=args.topic)
    print(f"Seller {record.seller_id} ({record.name}) is now {state}.")
    return EXIT_OK


async def _remove(args: argparse.Namespace, settings: Settings) -> int:
    record = await _existing(args, settings)
    await publish_tombstone(settings.kafka, record.seller_id, topic=args.topic)
    print(f"Removed seller {record.seller_id} ({record.name}) from {args.topic}.")
    return EXIT_OK


async def _rekey(args: argparse.Namespace, settings: Settings) -> int:
    cipher = TokenCipher(settings.secret_key)
    sellers = await load_registry(settings.kafka, topic=args.topic)
    now = settings.sim.clock().now()
    rotated: list[SellerRecord] = []
    failed: list[str] = []
    for seller_id in sorted(sellers):
        record = sellers[seller_id]
        try:
            token = cipher.rotate(record.refresh_token_encrypted, seller_id=seller_id)
        except UndecryptableToken:
            failed.append(seller_id)
            continue
        rotated.append(record.model_copy(update={"refresh_token_encrypted": token, "updated_at": now}))
    if failed:
        for seller_id in failed:
            _note(f"seller {seller_id}: no key in SOLICIT_SECRET_KEY decrypts its refresh token")
        raise CommandError(
            f"{len(failed)} seller(s) cannot be decrypted with the configured keys; "
            "nothing was re-encrypted. Add the missing old key (after the new one) or re-import those sellers."
        )
    await publish_records(settings.kafka, rotated, topic=args.topic)
    print(
        f"Re-encrypted the refresh tokens of {len(rotated)} seller(s) with the first key of SOLICIT_SECRET_KEY. "
        "Keys after the first may now be removed from SOLICIT_SECRET_KEY."
    )
    return EXIT_OK


def _new_key(_args: argparse.Namespace) -> int:
    print(generate_key())
    _note("set it as SOLICIT_SECRET_KEY in every process; to rotate, use SOLICIT_SECRET_KEY=<new>,<old> and run rekey")
    return EXIT_OK


# --- helpers -------------------------------------------------------------------------------------------------------


async def _existing(args: argparse.Namespace, settings: Settings) -> SellerRecord:
    sellers = await load_registry(settings.kafka, topic=args.topic)
    record = sellers.get(args.seller_id)
    if record is None:
        raise UnknownSeller(args.seller_id, args.topic)
    return record


_COLUMNS = (
    "ID",
    "NAME",
    "GROUP",
    "REGION",
    "MARKETPLACES",
    "APP",
    "PAUSED",
    "DRY-RUN",
    "DELAY DAYS",
    "SEND HOURS",
    "ATTENTION",
)


def _table(records: list[SellerRecord], attention: dict[str, list[str]]) -> str:
    rows = [_COLUMNS, *((*_row(record), ",".join(attention.get(record.seller_id, [])) or "ok") for record in records)]
    widths = [max(len(row[column]) for row in rows) for column in range(len(_COLUMNS))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows
    )


def _row(record: SellerRecord) -> tuple[str, ...]:
    policy = record.policy
    hours = policy.send_hours
    return (
        record.seller_id,
        record.name,
        record.group or "-",
        str(record.region),
        ",".join(_country(marketplace_id) for marketplace_id in record.marketplace_ids),
        record.app,
        "yes" if policy.paused else "no",
        "yes" if policy.dry_run else "no",
        f"{policy.delay_days:g}",
        f"{hours.start_hour:02d}-{hours.end_hour:02d}" if hours is not None else "any",
    )


def _country(marketplace_id: str) -> str:
    found = marketplace(marketplace_id)
    return found.country_code if found is not None else marketplace_id


def _note(message: str) -> None:
    print(f"note: {message}", file=sys.stderr)


def _guarded(action: Action) -> Callable[[argparse.Namespace], int]:
    """Load the settings, point the action at the sellers topic, run it; expected failures become exit codes."""

    def run(args: argparse.Namespace) -> int:
        settings = load_settings()
        require_kafka(settings.kafka)
        if getattr(args, "topic", "") is None:
            args.topic = SELLERS.named(settings.kafka.topic_prefix)  # the topic the worker reads
        try:
            return asyncio.run(action(args, settings))
        except InvalidImportFile as exc:
            for problem in exc.problems:
                print(f"{args.file}: {problem}", file=sys.stderr)
            raise CommandError(
                f"{len(exc.problems)} problem(s) in {args.file}; nothing was imported "
                "(imports are all-or-nothing: fix every problem and run the import again)",
                EXIT_USAGE,
            ) from None
        except SecretKeyError as exc:
            raise ConfigurationError([str(exc)]) from None
        except RegistryError as exc:
            raise CommandError(str(exc)) from None
        except KafkaError as exc:
            raise CommandError(f"Kafka at {settings.kafka.bootstrap_servers}: {exc}") from None
        except OSError as exc:  # an unreadable import file (the message names the path)
            raise CommandError(str(exc)) from None

    return run
