"""The sellers registry's data: the wire record on ``solicit.sellers.v1`` and the import file, both validated here.

One :class:`SellerRecord` per seller is the value on the compacted sellers topic (key = seller id): who the seller
is, which marketplaces and SP-API region and app serve it, its per-seller policy, and its refresh token **encrypted**
(:mod:`connectors.crypto`). The worker reads the topic as a table; nothing else stores sellers.

The import file (``solicit sellers import FILE``, format in ``docs/sellers.md``) is parsed
into :class:`SellerEntry` objects, whose refresh token is a :class:`pydantic.SecretStr`, so an entry can be printed
or logged without the token. Import is **all-or-nothing**: :func:`parse_import_file` validates every entry (and
duplicate ids across entries) before anything is published, and reports every problem at once, each naming the
seller (or the entry's position when its id is missing) and the field. Problems are built from pydantic's field
locations and messages only, never from input values, so a misplaced token cannot end up on a terminal.

Pure data: no Kafka and no key here (``streams.directory`` does the IO, the CLI owns the cipher).

Our exception hierarchy::

    RegistryError                 root
    ├── InvalidImportFile         the import file is unusable; ``problems`` lists every one; nothing was imported
    ├── UndecodableSellerRecord   a value on the sellers topic is not a SellerRecord: skip it (log key, not value)
    ├── UnknownSeller             no seller with this id in the registry
    ├── SellersTopicMissing       the sellers topic does not exist on this cluster (nothing imported yet?)
    └── RegistryLoadTimeout       the topic could not be read to its end in time
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails

from connectors.crypto import TokenCipher
from statemachine.marketplaces import Region, marketplace
from statemachine.policy import SellerPolicy
from statemachine.types import IsoDateTime, SellerIdStr

__all__ = [
    "InvalidImportFile",
    "Problem",
    "RegistryError",
    "RegistryLoadTimeout",
    "SellerEntry",
    "SellerRecord",
    "SellersTopicMissing",
    "UndecodableSellerRecord",
    "UnknownSeller",
    "parse_import_file",
]

SCHEMA_VERSION: Literal[1] = 1

DEFAULT_APP = "default"
"""The LWA application a seller belongs to when it names none."""

AppName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
"""An SP-API application's name: a key of SOLICIT_SPAPI__LWA_APPS, or ``default``."""

Label = Annotated[str, Field(min_length=1, max_length=200)]

_MARKETPLACE_ID_SHAPE = re.compile(r"[A-Z0-9]{8,16}")


# --- errors --------------------------------------------------------------------------------------------------------


class RegistryError(Exception):
    """Root of every sellers-registry error; ``str()`` is a complete message for a person."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason an import file was refused: where (``seller X``, ``entry N`` or ``file``), which field, why."""

    where: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.field}: {self.message}" if self.field else f"{self.where}: {self.message}"


class InvalidImportFile(RegistryError):
    """The import file has problems; nothing from it may be imported."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        places = {problem.where for problem in self.problems}
        super().__init__(
            f"{len(self.problems)} problem(s) in {len(places)} place(s); nothing was imported:\n"
            + "\n".join(f"  {problem}" for problem in self.problems)
        )


class UndecodableSellerRecord(RegistryError):
    """A sellers-topic value that is not a valid :class:`SellerRecord`. The message never contains the value."""

    def __init__(self, reason: str, *, key: str | None = None) -> None:
        self.key = key
        self.reason = reason
        super().__init__(f"undecodable seller record (key {key!r}): {reason}")


class UnknownSeller(RegistryError):
    """No seller with this id in the registry."""

    def __init__(self, seller_id: str, topic: str) -> None:
        self.seller_id = seller_id
        super().__init__(f"no seller {seller_id!r} in {topic} (`solicit sellers list` shows the known ids)")


class SellersTopicMissing(RegistryError):
    """The sellers topic does not exist on the cluster."""

    def __init__(self, topic: str, bootstrap_servers: str) -> None:
        self.topic = topic
        super().__init__(
            f"topic {topic} does not exist on the Kafka cluster at {bootstrap_servers}: import sellers first "
            "(`solicit sellers import FILE` creates it), or check KAFKA_BOOTSTRAP_SERVERS"
        )


class RegistryLoadTimeout(RegistryError):
    """The sellers topic could not be read up to its end offsets within the time limit."""

    def __init__(self, topic: str, seconds: float) -> None:
        super().__init__(f"reading {topic} to its end took longer than {seconds:g} s; is the broker healthy?")


# --- models --------------------------------------------------------------------------------------------------------


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


class _SellerFields(BaseModel):
    """What the import file and the wire record share, validated the same way in both."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seller_id: SellerIdStr
    """Amazon's selling-partner (merchant) id, as in ORDER_CHANGE notifications."""
    name: Label
    """Display name, for people."""
    group: Label | None = None
    """Agency, client or group label, for people and filtering; no effect on sending."""
    region: Annotated[Region, BeforeValidator(_upper)]
    """The SP-API region (endpoint) the seller's refresh token is valid for; any case (Amazon's own host names
    write it in lower case: ``sellingpartnerapi-na``)."""
    marketplace_ids: tuple[str, ...] = Field(min_length=1)
    """Every marketplace the seller sells in; each must be a known marketplace of ``region``."""
    app: AppName = DEFAULT_APP
    """The SP-API application the seller authorized (its LWA credentials come from settings)."""
    policy: SellerPolicy = SellerPolicy()

    @model_validator(mode="after")
    def _overrides_name_own_marketplaces(self) -> Self:
        unknown = sorted(set(self.policy.marketplaces) - set(self.marketplace_ids))
        if unknown:
            raise ValueError(
                f"policy.marketplaces overrides {', '.join(unknown)}, not among the seller's marketplace_ids"
            )
        return self

    @field_validator("marketplace_ids")
    @classmethod
    def _known_and_in_region(cls, ids: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        region = info.data.get("region")  # absent when the region itself was invalid (reported there)
        problems: list[str] = []
        for position, marketplace_id in enumerate(ids, start=1):
            found = marketplace(marketplace_id)
            if found is None:
                # Echo the value only when it looks like a marketplace id: a misplaced token must not be printed.
                shown = repr(marketplace_id) if _MARKETPLACE_ID_SHAPE.fullmatch(marketplace_id) else "(not shown)"
                problems.append(f"item {position}, {shown}, is not a known marketplace id")
            elif region is not None and found.region != region:
                problems.append(
                    f"marketplace {marketplace_id} ({found.country_code}) is served by region {found.region}, "
                    f"not {region}"
                )
        if len(set(ids)) != len(ids):
            problems.append("a marketplace id is listed more than once")
        if problems:
            hint = "known ids: statemachine/marketplaces.py; a seller's marketplaces must all be in its region"
            raise ValueError(f"{'; '.join(problems)} ({hint})")
        return ids


class SellerRecord(_SellerFields):
    """The value of one seller on ``solicit.sellers.v1``; JSON bytes on the wire."""

    schema_version: Literal[1] = SCHEMA_VERSION
    refresh_token_encrypted: str = Field(min_length=1, repr=False)
    """Fernet ciphertext of the seller's LWA refresh token (:class:`connectors.crypto.TokenCipher`)."""
    updated_at: IsoDateTime

    @classmethod
    def from_entry(cls, entry: SellerEntry, *, refresh_token_encrypted: str, updated_at: datetime) -> SellerRecord:
        """The record for an imported entry, given its token's ciphertext."""
        fields = entry.model_dump(exclude={"refresh_token"})
        return cls(**fields, refresh_token_encrypted=refresh_token_encrypted, updated_at=updated_at)

    def refresh_token(self, cipher: TokenCipher) -> SecretStr:
        """The plaintext refresh token, for the LWA call only; :class:`connectors.crypto.UndecryptableToken` if no
        configured key opens it."""
        return cipher.decrypt(self.refresh_token_encrypted, seller_id=self.seller_id)

    def with_policy(self, *, updated_at: datetime, **changes: Any) -> SellerRecord:
        """A copy with some policy fields changed (validated like an import)."""
        policy = SellerPolicy.model_validate({**self.policy.model_dump(), **changes})
        return self.model_copy(update={"policy": policy, "updated_at": updated_at})

    def to_json(self) -> bytes:
        """The Kafka value."""
        return self.model_dump_json().encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, *, key: str | None = None) -> SellerRecord:
        """Parse a Kafka value; :class:`UndecodableSellerRecord` (without the value in it) when it is not a record.

        ``key``, when given, must equal the record's seller id: a record under the wrong key would shadow another
        seller after compaction.
        """
        try:
            record = cls.model_validate_json(data)
        except ValidationError as exc:
            raise UndecodableSellerRecord(_describe(exc.errors()), key=key) from None
        if key is not None and record.seller_id != key:
            raise UndecodableSellerRecord(f"seller_id {record.seller_id!r} differs from the key", key=key)
        return record


class SellerEntry(_SellerFields):
    """One seller in an import file; the refresh token is in plaintext here, held as a SecretStr."""

    refresh_token: SecretStr = Field(min_length=1)

    @field_validator("refresh_token")
    @classmethod
    def _no_whitespace(cls, token: SecretStr) -> SecretStr:
        # A pasted token with a trailing newline would fail at LWA weeks later; refuse it now (without echoing it).
        if any(char.isspace() for char in token.get_secret_value()):
            raise ValueError("contains whitespace (a copy-paste error?); LWA refresh tokens have none")
        return token


# --- the import file -----------------------------------------------------------------------------------------------


def parse_import_file(data: bytes | str) -> list[SellerEntry]:
    """Every entry of an import file, or :class:`InvalidImportFile` listing every problem in it.

    The format: ``{"sellers": [{"seller_id", "name", "region", "marketplace_ids", "refresh_token", "group"?,
    "app"?, "policy"?: {"delay_days"?, "send_hours"?: {"start_hour", "end_hour"}, "paused"?, "dry_run"?}}]}``.
    """
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        # json's message gives line and column only, never the text around them.
        reason = f"line {exc.lineno} column {exc.colno}: {exc.msg}" if isinstance(exc, json.JSONDecodeError) else ""
        raise InvalidImportFile([Problem("file", "", f"not valid JSON ({reason or 'not UTF-8 text'})")]) from None
    if not isinstance(document, dict) or set(document) != {"sellers"} or not isinstance(document["sellers"], list):
        raise InvalidImportFile(
            [Problem("file", "", 'must be a JSON object with exactly one key, "sellers", holding a list')]
        )

    entries: list[SellerEntry] = []
    problems: list[Problem] = []
    first_index: dict[str, int] = {}
    for index, raw in enumerate(document["sellers"], start=1):
        where = _where(raw, index)
        try:
            entry = SellerEntry.model_validate(raw)
        except ValidationError as exc:
            problems.extend(Problem(where, _field(error), _message(error)) for error in exc.errors())
            continue
        if entry.seller_id in first_index:
            message = f"duplicate seller id (also entry {first_index[entry.seller_id]}); each seller appears once"
            problems.append(Problem(where, "seller_id", message))
            continue
        first_index[entry.seller_id] = index
        entries.append(entry)
    if problems:
        raise InvalidImportFile(problems)
    return entries


def _where(raw: object, index: int) -> str:
    """``seller <id>`` when the entry has a usable id, else ``entry <index>`` (1-based)."""
    if isinstance(raw, dict):
        seller_id = raw.get("seller_id")
        if isinstance(seller_id, str) and seller_id.isascii() and seller_id.isalnum() and len(seller_id) <= 64:
            return f"seller {seller_id} (entry {index})"
    return f"entry {index}"


def _field(error: ErrorDetails) -> str:
    return ".".join(str(part) for part in error["loc"]) or "(entry)"


def _message(error: ErrorDetails) -> str:
    """pydantic's message for one error (never its input value), without the ``Value error, `` prefix."""
    return error["msg"].removeprefix("Value error, ")


def _describe(errors: list[ErrorDetails]) -> str:
    """pydantic errors as ``field: message; ...``, without the input values (they may hold a token)."""
    shown = "; ".join(f"{_field(error)}: {_message(error)}" for error in errors[:5])
    return f"{shown}; and {len(errors) - 5} more" if len(errors) > 5 else shown
