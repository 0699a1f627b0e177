"""``carecycle-emulator``: run the careCycle emulator until SIGTERM/SIGINT.

``python -m carecycle_emulator.carecycle.cli`` is the same program.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from carecycle_emulator.carecycle.server import DEFAULT_API_KEY, CareCycleEmulator
from carecycle_emulator.cli import add_server_arguments, serve, server_settings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carecycle-emulator", description="Run a local careCycle v2 API emulator.")
    add_server_arguments(p, rate_limit=60, limited="API key")
    p.add_argument("--campaigns", type=int, default=3)
    p.add_argument("--dialer-speed", type=float, default=0.0, help="dialer ticks per second (0: only on demand)")
    p.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help=f"accepted API key (repeatable; append ':read' for a read-only key). Default: {DEFAULT_API_KEY}",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    emu = CareCycleEmulator(
        api_keys=tuple(args.api_keys or (DEFAULT_API_KEY,)),
        campaigns=args.campaigns,
        dialer_speed=args.dialer_speed,
        **server_settings(args),
    )

    def banner() -> str:
        return f"careCycle emulator listening on {emu.url} (keys: {', '.join(emu.api_keys)})"

    return serve(emu, args, banner, "careCycle emulator")


if __name__ == "__main__":
    sys.exit(main())
