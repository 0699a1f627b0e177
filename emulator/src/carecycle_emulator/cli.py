"""What both emulator command lines share: the server flags, their emulator settings, and serving until a signal.

``carecycle-emulator`` (:mod:`carecycle_emulator.carecycle.cli`) and ``carecloud-crm-emulator``
(:mod:`carecycle_emulator.carecloud.cli`) are built on it.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from collections.abc import Callable

from carecycle_emulator.base import EmulatorBase


def add_server_arguments(parser: argparse.ArgumentParser, *, rate_limit: int, limited: str) -> None:
    """The flags every emulator CLI has: address, rate limit, latency, faults, seed, customers, port file.

    :param parser: the parser to extend.
    :param rate_limit: the default ``--rate-limit``.
    :param limited: what the rate limit counts per (``"API key"``, ``"token"``), for the help text.
    """
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port (see --port-file)")
    parser.add_argument(
        "--rate-limit", type=int, default=rate_limit, help=f"requests per window per {limited} (0 disables)"
    )
    parser.add_argument("--rate-window", type=float, default=60.0, help="rate-limit window in seconds")
    parser.add_argument("--latency-ms", type=float, default=0)
    parser.add_argument("--fault-rate", type=float, default=0.0, help="probability (0..1) of an injected fault")
    parser.add_argument("--fault-kinds", default="503,500,drop", help="comma-separated subset of 503,500,drop")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--customers", type=int, default=200)
    parser.add_argument("--port-file", help="write the listening port to this file once ready")
    parser.add_argument("--quiet", action="store_true", help="do not print the URL")


def server_settings(args: argparse.Namespace) -> dict[str, object]:
    """The emulator keyword arguments the shared flags describe."""
    return {
        "host": args.host,
        "port": args.port,
        "rate_limit": args.rate_limit,
        "rate_window_s": args.rate_window,
        "latency_ms": args.latency_ms,
        "fault_rate": args.fault_rate,
        "fault_kinds": tuple(k.strip() for k in args.fault_kinds.split(",") if k.strip()),
        "seed": args.seed,
        "customers": args.customers,
    }


def serve(emu: EmulatorBase, args: argparse.Namespace, banner: Callable[[], str], name: str) -> int:
    """Start ``emu``, write ``--port-file``, print ``banner``, and run until SIGTERM/SIGINT; return 0.

    :param emu: the emulator (not started).
    :param args: the parsed command line.
    :param banner: what to print once listening (unless ``--quiet``).
    :param name: the emulator's name, for the stop message.
    """
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    emu.start()
    try:
        if args.port_file:
            tmp = f"{args.port_file}.tmp{os.getpid()}"
            with open(tmp, "w") as fh:
                fh.write(f"{emu.port}\n")
            os.replace(tmp, args.port_file)
        if not args.quiet:
            print(banner(), flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        emu.stop()
    if not args.quiet:
        print(f"{name} stopped", flush=True)
    return 0
