"""``carecloud-crm-emulator``: run the CareCloud CRM emulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from airflow_provider_carecycle.emulator.carecloud import (
    DEFAULT_APP_ID,
    DEFAULT_LOGIN,
    DEFAULT_PASSWORD,
    CareCloudEmulator,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="carecloud-crm-emulator", description="Run a local CareCloud CRM REST API emulator."
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (see --port-file)")
    p.add_argument("--rate-limit", type=int, default=300, help="requests per window per token (0 disables)")
    p.add_argument("--rate-window", type=float, default=60.0, help="rate-limit window in seconds")
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--fault-rate", type=float, default=0.0, help="probability (0..1) of an injected fault")
    p.add_argument("--fault-kinds", default="503,500,drop", help="comma-separated subset of 503,500,drop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--customers", type=int, default=200)
    p.add_argument("--days", type=float, default=14.0, help="last_change spreads over this many days before now")
    p.add_argument("--login", default=DEFAULT_LOGIN)
    p.add_argument("--password", default=DEFAULT_PASSWORD)
    p.add_argument("--external-application-id", default=DEFAULT_APP_ID)
    p.add_argument("--token-lifetime", type=float, default=7 * 3600.0, help="bearer token lifetime in seconds")
    p.add_argument("--project-timezone", default="UTC", help="IANA zone of valid_to and last_change")
    p.add_argument("--port-file", help="write the listening port to this file once ready")
    p.add_argument("--quiet", action="store_true", help="do not print the URL")
    return p


def build_emulator(args: argparse.Namespace) -> CareCloudEmulator:
    """The emulator the parsed command line describes (not started)."""
    return CareCloudEmulator(
        login=args.login,
        password=args.password,
        external_application_id=args.external_application_id,
        token_lifetime_s=args.token_lifetime,
        project_timezone=args.project_timezone,
        customers=args.customers,
        days=args.days,
        rate_limit=args.rate_limit,
        rate_window_s=args.rate_window,
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        fault_kinds=tuple(k.strip() for k in args.fault_kinds.split(",") if k.strip()),
        seed=args.seed,
        host=args.host,
        port=args.port,
    )


def _write_port(path: str, port: int) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(f"{port}\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    emu = build_emulator(args)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    emu.start()
    try:
        if args.port_file:
            _write_port(args.port_file, emu.port)
        if not args.quiet:
            print(
                f"CareCloud CRM emulator listening on {emu.url} (base URL {emu.base_url}, login {args.login!r})",
                flush=True,
            )
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    if not args.quiet:
        print("CareCloud CRM emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
