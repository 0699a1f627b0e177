"""``carecycle-emulator``: run the careCycle emulator until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from airflow_provider_carecycle.emulator.server import DEFAULT_API_KEY, CareCycleEmulator


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="carecycle-emulator", description="Run a local careCycle v2 API emulator.")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port (see --port-file)")
    p.add_argument("--rate-limit", type=int, default=60, help="requests per window per API key (0 disables)")
    p.add_argument("--rate-window", type=float, default=60.0, help="rate-limit window in seconds")
    p.add_argument("--latency-ms", type=float, default=0)
    p.add_argument("--fault-rate", type=float, default=0.0, help="probability (0..1) of an injected fault")
    p.add_argument("--fault-kinds", default="503,500,drop", help="comma-separated subset of 503,500,drop")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--customers", type=int, default=200)
    p.add_argument("--campaigns", type=int, default=3)
    p.add_argument("--dialer-speed", type=float, default=0.0, help="dialer ticks per second (0: only on demand)")
    p.add_argument(
        "--api-key",
        action="append",
        dest="api_keys",
        help=f"accepted API key (repeatable; append ':read' for a read-only key). Default: {DEFAULT_API_KEY}",
    )
    p.add_argument("--port-file", help="write the listening port to this file once ready")
    p.add_argument("--quiet", action="store_true", help="do not print the URL")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    emu = CareCycleEmulator(
        api_keys=tuple(args.api_keys or (DEFAULT_API_KEY,)),
        rate_limit=args.rate_limit,
        rate_window_s=args.rate_window,
        latency_ms=args.latency_ms,
        fault_rate=args.fault_rate,
        fault_kinds=tuple(k.strip() for k in args.fault_kinds.split(",") if k.strip()),
        seed=args.seed,
        customers=args.customers,
        campaigns=args.campaigns,
        dialer_speed=args.dialer_speed,
        host=args.host,
        port=args.port,
    )
    stop = threading.Event()

    def _on_signal(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    emu.start()
    try:
        if args.port_file:
            tmp = f"{args.port_file}.tmp{os.getpid()}"
            with open(tmp, "w") as fh:
                fh.write(f"{emu.port}\n")
            os.replace(tmp, args.port_file)
        if not args.quiet:
            print(f"careCycle emulator listening on {emu.url} (keys: {', '.join(emu.api_keys)})", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    if not args.quiet:
        print("careCycle emulator stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
