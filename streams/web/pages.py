"""The dashboard's routes: sign-in, overview, seller, order and its manual actions (HTML from
:mod:`streams.web.dashboard`, data from :class:`streams.web.api.Api`).

The browser signs in once with a bearer token, kept in an HTTP-only, ``SameSite=Strict`` cookie (so another site's
form cannot post an action with it). Pages read the same numbers the JSON API answers, through the same code; an
order page or action for a partition another worker owns is fetched from that worker with the user's own token (the
actor of a manual action is the user, not the worker).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

from aiohttp import web as aioweb

from streams.web import dashboard
from streams.web.api import Api, ApiError, mount
from streams.web.auth import COOKIE, presented_token

CLOSING_SELLERS = 10
"""The overview lists orders close to their deadline for the sellers with the most of them, this many at most."""
CLOSING_PER_SELLER = 10


def _html(body: str, status: int = 200, **headers: str) -> aioweb.Response:
    return aioweb.Response(text=body, status=status, content_type="text/html", headers=headers)


def _to_login() -> aioweb.Response:
    return aioweb.Response(status=303, headers={"Location": dashboard.LOGIN_PATH})


class Pages:
    """The dashboard's handlers."""

    def __init__(self, api: Api) -> None:
        self.api = api

    def _user(self, request: aioweb.Request) -> str | None:
        try:
            self.api.actor(request)
        except ApiError:
            return None
        return presented_token(request.headers.get("Authorization"), request.cookies.get(COOKIE))

    async def login_form(self, request: aioweb.Request) -> aioweb.Response:
        return _html(dashboard.render_login(None))

    async def login(self, request: aioweb.Request) -> aioweb.Response:
        form = await request.post()
        token = str(form.get("token", ""))
        if self.api.tokens.who(token) is None:
            return _html(dashboard.render_login("That token is not valid."), status=401)
        response = aioweb.Response(status=303, headers={"Location": dashboard.OVERVIEW_PATH})
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", path="/")
        return response

    async def overview(self, request: aioweb.Request) -> aioweb.Response:
        if self._user(request) is None:
            return _to_login()
        stats = await self.api.group_stats()
        alerts = [alert.model_dump(mode="json") for alert in self.api.extras["alerts"].open_alerts()]
        closing = await self._closing(stats)
        page = dashboard.render_overview(
            stats,
            alerts,
            closing,
            stats.get("recent", []),
            group=request.query.get("group") or None,
            sort=request.query.get("sort") or "name",
        )
        return _html(page)

    async def _closing(self, stats: dict[str, Any]) -> list[dict[str, Any]]:
        """Unsent orders closing within 48 h, of the sellers with the most of them."""
        sellers = sorted(stats["sellers"], key=lambda s: -s["closing_48h_unsent"])
        found: list[dict[str, Any]] = []
        for seller in sellers[:CLOSING_SELLERS]:
            if seller["closing_48h_unsent"] == 0:
                break
            page = await self._internal("GET", f"/sellers/{quote(seller['seller_id'])}/orders?closing_within=48")
            for order in page.get("orders", [])[:CLOSING_PER_SELLER]:
                found.append({**order, "seller_id": seller["seller_id"]})
        return sorted(found, key=lambda o: o.get("window_end") or "")

    async def seller(self, request: aioweb.Request, seller_id: str) -> aioweb.Response:
        if self._user(request) is None:
            return _to_login()
        stats = await self.api.group_stats()
        found = next((s for s in stats["sellers"] if s["seller_id"] == seller_id), None)
        if found is None:
            return _html(dashboard.render_login(None).replace("Sign in", "Unknown seller"), status=404)
        after = request.query.get("after")
        query = f"?after={quote(after)}" if after else ""
        orders = await self._internal("GET", f"/sellers/{quote(seller_id)}/orders{query}")
        return _html(dashboard.render_seller(found, orders))

    async def order(self, request: aioweb.Request, seller_id: str, order_id: str) -> aioweb.Response:
        token = self._user(request)
        if token is None:
            return _to_login()
        status, order = await self._as_user(token, "GET", f"/orders/{quote(seller_id)}/{quote(order_id)}")
        if status != 200:
            return _html(
                dashboard.render_order({"order_key": f"{seller_id}/{order_id}"}, error=order.get("detail")), 404
            )
        return _html(dashboard.render_order(order))

    async def act(self, request: aioweb.Request, seller_id: str, order_id: str, action: str) -> aioweb.Response:
        token = self._user(request)
        if token is None:
            return _to_login()
        note = str((await request.post()).get("note", ""))
        path = f"/orders/{quote(seller_id)}/{quote(order_id)}"
        status, answer = await self._as_user(token, "POST", f"{path}/{quote(action)}", {"note": note})
        _, order = await self._as_user(token, "GET", path)
        if status == 200:
            return _html(dashboard.render_order(order, notice=f"{action}: {answer.get('reason', 'done')}"))
        return _html(dashboard.render_order(order, error=answer.get("reason") or answer.get("detail")), status)

    async def _internal(self, method: str, path: str) -> dict[str, Any]:
        """This worker's own API, as the workers call each other (the group's answer)."""
        _status, body = await self._as_user(self.api.tokens.internal() or "", method, path)
        return body

    async def _as_user(
        self, token: str, method: str, path: str, body: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """The JSON API at ``path`` on this worker (which forwards to an owner), with ``token``."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        data = json.dumps(body).encode() if body is not None else None
        answer = await self.api.peers.call(self.api.peers.own_url, method, path, headers, data, forwarded=False)
        return answer.status, json.loads(answer.body or b"{}")


def register_dashboard(api: Api) -> None:
    """Mount the dashboard's pages next to the API."""
    pages, app = Pages(api), api.worker.app
    mount(app, dashboard.LOGIN_PATH, "login", get=pages.login_form, post=pages.login)
    mount(app, dashboard.OVERVIEW_PATH, "dashboard", get=pages.overview)
    mount(app, f"{dashboard.UI_PREFIX}/sellers/{{seller_id}}", "ui_seller", get=pages.seller)
    mount(app, f"{dashboard.UI_PREFIX}/orders/{{seller_id}}/{{order_id}}", "ui_order", get=pages.order)
    mount(app, f"{dashboard.UI_PREFIX}/orders/{{seller_id}}/{{order_id}}/{{action}}", "ui_action", post=pages.act)
