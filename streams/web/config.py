"""The web server's settings group (``SOLICIT_WEB__*``)."""

from __future__ import annotations

import socket

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class WebConfig(BaseModel):
    """Faust's web server on every worker: the API, ``/metrics``, health and the dashboard (docs/web-api.md)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(default=True, description="Serve the web API on this worker.")
    bind: str = Field(default="0.0.0.0", description="Address the web server listens on.")  # noqa: S104
    port: int = Field(default=6066, ge=1, le=65535, description="Port of the web server (unique per host).")
    advertised_host: str = Field(
        default_factory=socket.gethostname,
        description="Host name the other workers reach this one at (requests are forwarded to a key's owner).",
    )
    tokens: dict[str, SecretStr] = Field(
        default_factory=dict,
        description=(
            'Bearer tokens by name, JSON (`{"ops": "<token>"}`); the name is recorded as the actor of manual actions. '
            "Without any, every endpoint but health and metrics answers 401."
        ),
    )
    peer_timeout: float = Field(default=5.0, gt=0, description="Seconds to wait for another worker's answer.")
    client_url: str = Field(
        default="http://127.0.0.1:6066",
        description="The worker API that `solicit orders` and `solicit stats` ask (any worker of the group).",
    )
    client_token: SecretStr = Field(
        default=SecretStr(""),
        description="The token `solicit orders` and `solicit stats` present (default: the first of `tokens`).",
    )

    def token_for_client(self) -> str | None:
        """The token the command line presents."""
        if self.client_token.get_secret_value():
            return self.client_token.get_secret_value()
        first = next(iter(self.tokens.values()), None)
        return first.get_secret_value() if first is not None else None

    def url(self) -> str:
        """This worker's address as the others reach it."""
        return f"http://{self.advertised_host}:{self.port}"
