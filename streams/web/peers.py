"""The other workers of the group, as the web API reaches them: who owns a key, and asking everyone.

Faust's partition assignor knows every member's web address (its ``canonical_url``, from ``SOLICIT_WEB__*``) and
which partitions each holds; Faust's own ``table_route`` forwards only GETs without a body, so requests are forwarded
here, with their method, body and bearer token. A forwarded request carries :data:`FORWARDED`: the receiver answers
it itself (503 while ownership is moving) and never forwards it again, so a request cannot bounce between workers.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import faust

log = logging.getLogger(__name__)

FORWARDED = "X-Solicit-Forwarded"


@dataclass(frozen=True)
class Answer:
    """A response from another worker."""

    status: int
    body: bytes
    content_type: str


class Peers:
    """The group's workers, from this worker's point of view."""

    def __init__(self, app: faust.App, own_url: str, timeout: float) -> None:
        self.app = app
        self.own_url = own_url.rstrip("/")
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    def owner(self, table_name: str, key: bytes) -> str | None:
        """The address of the worker that owns ``key``'s partition of ``table_name``; None while unknown."""
        try:
            return str(self.app.router.key_store(table_name, key)).rstrip("/")
        except KeyError:
            return None

    def others(self) -> list[str]:
        """Every other member's address (from the last assignment)."""
        hosts = {str(url).rstrip("/") for url in self.app.router.tables_metadata()}
        return sorted(host for host in hosts if host and host != self.own_url)

    def is_self(self, url: str | None) -> bool:
        return url is None or url.rstrip("/") == self.own_url

    async def call(
        self,
        base: str,
        method: str,
        path_qs: str,
        headers: Mapping[str, str],
        body: bytes | None = None,
        *,
        forwarded: bool = True,
    ) -> Answer:
        """``method path_qs`` on the worker at ``base``, marked as forwarded (unless ``forwarded`` is False: a call
        that the receiver should route and fan out as if a user had made it)."""
        sent = {k: v for k, v in headers.items() if k.lower() in ("authorization", "content-type", "accept")}
        if forwarded:
            sent[FORWARDED] = "1"
        session: aiohttp.ClientSession = self.app.http_client
        async with session.request(
            method, f"{base}{path_qs}", headers=sent, data=body, timeout=self.timeout
        ) as response:
            return Answer(response.status, await response.read(), response.content_type)

    async def gather_json(self, path_qs: str, headers: Mapping[str, str]) -> tuple[list[Any], list[str]]:
        """``GET path_qs`` on every other worker: their JSON answers, and the workers that did not answer."""
        others = self.others()
        answers = await asyncio.gather(
            *(self.call(url, "GET", path_qs, headers) for url in others), return_exceptions=True
        )
        found: list[Any] = []
        missing: list[str] = []
        for url, answer in zip(others, answers, strict=True):
            if isinstance(answer, Answer) and answer.status == 200:
                found.append(_json(answer.body))
            else:
                detail = answer if isinstance(answer, BaseException) else f"HTTP {answer.status}"
                log.warning("worker %s did not answer %s: %s", url, path_qs.split("?")[0], detail)
                missing.append(url)
        return found, missing


def _json(body: bytes) -> Any:
    import json

    return json.loads(body)
