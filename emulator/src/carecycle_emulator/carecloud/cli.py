"""``carecloud-crm-emulator``: run the CareCloud CRM emulator until SIGTERM/SIGINT.

``python -m carecycle_emulator.carecloud.cli`` is the same program.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from carecycle_emulator.carecloud.server import (
    DEFAULT_APP_ID,
    DEFAULT_LOGIN,
    DEFAULT_PASSWORD,
    CareCloudEmulator,
)
from carecycle_emulator.cli import add_server_arguments, serve, server_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="carecloud-crm-emulator", description="Run a local CareCloud CRM REST API emulator."
    )
    add_server_arguments(p, rate_limit=300, limited="token")
    p.add_argument("--days", type=float, default=14.0, help="last_change spreads over this many days before now")
    p.add_argument("--login", default=DEFAULT_LOGIN)
    p.add_argument("--password", default=DEFAULT_PASSWORD)
    p.add_argument("--external-application-id", default=DEFAULT_APP_ID)
    p.add_argument("--token-lifetime", type=float, default=7 * 3600.0, help="bearer token lifetime in seconds")
    p.add_argument("--project-timezone", default="UTC", help="IANA zone of valid_to and last_change")
    return p


def build_emulator(args: argparse.Namespace) -> CareCloudEmulator:
    """The emulator the parsed command line describes (not started)."""
    return CareCloudEmulator(
        login=args.login,
        password=args.password,
        external_application_id=args.external_application_id,
        token_lifetime_s=args.token_lifetime,
        project_timezone=args.project_timezone,
        days=args.days,
        **server_settings(args),
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    emu = build_emulator(args)
    return serve(
        emu,
        args,
        lambda: f"CareCloud CRM emulator listening on {emu.url} (base URL {emu.base_url}, login {args.login!r})",
        "CareCloud CRM emulator",
    )


if __name__ == "__main__":
    sys.exit(main())
