"""``solicit sandbox``: run the local SP-API + LWA sandbox in the foreground until Ctrl-C.

A thin shell over :func:`devstack.sandbox.serve`: it turns Settings and flags into a
:class:`~devstack.sandbox.SandboxConfig`, prints the two endpoint settings to export for the other processes, and
turns expected failures (busy port, unreadable sellers file) into one line and exit code 1. Business time comes
from ``settings.sim.clock()``, so a simulated clock shared with the worker moves the sandbox's delivery windows too.

The app credentials default to ``SOLICIT_SPAPI__LWA_CLIENT_ID`` / ``SOLICIT_SPAPI__LWA_CLIENT_SECRET`` when set
(so the worker and the sandbox agree without flags), else to ``sandbox-client-id`` / ``sandbox-client-secret``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
from pathlib import Path
from typing import Any

from pydantic import SecretStr, TypeAdapter, ValidationError

from devstack.ports import port_is_free
from devstack.sandbox import FaultConfig, SandboxConfig, SellerIn, serve
from devstack.settings import DevSettings
from streams.cli.shell import EXIT_OK, CommandError, describe_problems, load_settings

_DEFAULT_CLIENT_ID = "sandbox-client-id"
_DEFAULT_CLIENT_SECRET = "sandbox-client-secret"  # noqa: S105 - the sandbox's documented demo value


def register(subparsers: Any) -> None:
    """Add ``sandbox`` to the ``solicit`` parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sandbox",
        help="run a local SP-API Solicitations + LWA sandbox (rules, rate limits, faults, ledger)",
        description=(
            "Serve Amazon's Solicitations API and LWA token endpoint locally, with the real rules: per-seller "
            "rate limits (429), the 5-30 day window, one solicitation per order, token expiry, and injectable "
            "faults. Orders and sellers are loaded through the admin API under /_sandbox/."
        ),
    )
    parser.add_argument("--host", default=None, help="interface (default: SOLICIT_LAB__SANDBOX_HOST, else 127.0.0.1)")
    parser.add_argument("--port", type=int, default=None, help="port (default: SOLICIT_LAB__SANDBOX_PORT, 8000)")
    parser.add_argument("--client-id", default=None, help="LWA client id the sandbox accepts")
    parser.add_argument(
        "--client-secret", default=None, help="LWA client secret it accepts (prefer SOLICIT_SPAPI__LWA_CLIENT_SECRET)"
    )
    parser.add_argument(
        "--sellers",
        type=Path,
        default=None,
        metavar="FILE",
        help='JSON list of {"seller_id", "refresh_token", "rate"?, "burst"?} known from the start',
    )
    parser.add_argument(
        "--token-lifetime", type=float, default=3600.0, metavar="SECONDS", help="access token lifetime (default 3600)"
    )
    parser.add_argument("--rate", type=float, default=1.0, help="requests/s per seller and operation (default 1)")
    parser.add_argument("--burst", type=int, default=5, help="bucket size per seller and operation (default 5)")
    parser.add_argument(
        "--error-rate", type=float, default=0.0, help="share of SP-API calls failing 500/503 before any effect"
    )
    parser.add_argument(
        "--ambiguous-rate", type=float, default=0.0, help="share of successful POSTs answered 500 after taking effect"
    )
    parser.add_argument("--latency", type=float, default=0.0, metavar="SECONDS", help="added to every SP-API answer")
    parser.add_argument("--seed", type=int, default=None, help="seed of the fault randomness (reproducible runs)")
    parser.set_defaults(run=_run)


def _load_sellers(path: Path | None) -> tuple[SellerIn, ...]:
    if path is None:
        return ()
    raw = json.loads(path.read_text(encoding="utf-8"))
    return tuple(TypeAdapter(list[SellerIn]).validate_python(raw))


def build_config(args: argparse.Namespace, settings: DevSettings) -> SandboxConfig:
    """The sandbox configuration the flags and settings describe."""
    spapi = settings.spapi
    secret = args.client_secret or spapi.lwa_client_secret.get_secret_value() or _DEFAULT_CLIENT_SECRET
    return SandboxConfig(
        client_id=args.client_id or spapi.lwa_client_id or _DEFAULT_CLIENT_ID,
        client_secret=SecretStr(secret),
        sellers=_load_sellers(args.sellers),
        token_lifetime=args.token_lifetime,
        rate=args.rate,
        burst=args.burst,
        faults=FaultConfig(error_rate=args.error_rate, ambiguous_rate=args.ambiguous_rate, latency=args.latency),
        seed=args.seed,
    )


def _run(args: argparse.Namespace) -> int:
    settings = load_settings(DevSettings)
    host = args.host or settings.lab.sandbox_host
    port = settings.lab.sandbox_port if args.port is None else args.port
    try:
        config = build_config(args, settings)
    except ValidationError as exc:
        # Listed without input values: the entries hold refresh tokens.
        raise CommandError(f"invalid sellers file {args.sellers}: {describe_problems(exc)}") from None
    except (OSError, ValueError) as exc:
        raise CommandError(f"cannot read the sellers file {args.sellers}: {type(exc).__name__}") from None
    if not port_is_free(port, host):
        raise CommandError(f"{host}:{port} is in use; pick another with --port")
    base = f"http://{host}:{port}"
    print(f"SOLICIT_SPAPI__ENDPOINT={base}")
    print(f"SOLICIT_SPAPI__LWA_ENDPOINT={base}/auth/o2/token")
    print(f"SOLICIT_SPAPI__LWA_CLIENT_ID={config.client_id}")
    print(f"admin API: {base}/_sandbox/ (sellers, orders, ledger, faults, reset); Ctrl-C stops", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, clock=settings.sim.clock(), host=host, port=port))
    return EXIT_OK
