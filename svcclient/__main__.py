"""The ``svcclient`` command line (``python -m svcclient`` or the ``svcclient`` script).

Subcommands::

    svcclient demo [--quick]                 local services on loopback, narrated
    svcclient doctor SERVICE [options]       where does the path to SERVICE break?
    svcclient config check FILE [--json]     validate a TOML config, show effective values

Each subcommand lives in its own private module, imported only when used, so ``--help``
stays instant.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text!r}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"not a TCP port: {text!r}")
    return int(text)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(
        prog="svcclient",
        description="Resilient service-to-service HTTP: diagnostics, demo and config tools.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="start local services on loopback and narrate discovery, balancing, "
        "failures, the breaker, fallback and metrics",
    )
    demo.add_argument("--quick", action="store_true", help="fewer calls, shorter waits")

    doctor = sub.add_parser(
        "doctor",
        help="check discovery, DNS, TCP, HTTP and TLS for a service",
        description="Walk the path to SERVICE (discovery, DNS, TCP, HTTP, TLS) and say "
        "where it breaks. Exit 0 when healthy, 1 with a one-line reason otherwise, 2 on "
        "a configuration error.",
    )
    doctor.add_argument("service", metavar="SERVICE", help="service name or URL")
    doctor.add_argument("--config", metavar="FILE", help="TOML config (default $SVCCLIENT_CONFIG)")
    doctor.add_argument("--json", action="store_true", help="machine-readable output")
    doctor.add_argument(
        "--health-path", default="/", metavar="PATH", help="path to GET on each endpoint"
    )
    doctor.add_argument("--namespace", metavar="NS", help="Kubernetes namespace for cluster DNS")
    doctor.add_argument("--port", type=_port, metavar="N", help="port for the cluster-DNS rule")
    doctor.add_argument(
        "--dns-nameserver", metavar="IP:PORT", help="ask this nameserver instead of resolv.conf"
    )
    doctor.add_argument(
        "--timeout",
        type=_positive_float,
        default=2.0,
        metavar="S",
        help="seconds per network step (default 2)",
    )

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION")
    check = config_sub.add_parser(
        "check", help="validate a TOML file and print the effective config per service"
    )
    check.add_argument("file", metavar="FILE")
    check.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command == "demo":
            from ._cli.demo import run as run_demo

            return run_demo(quick=args.quick)
        if args.command == "doctor":
            from ._cli.doctor import run as run_doctor

            return run_doctor(
                args.service,
                config_file=args.config,
                as_json=args.json,
                health_path=args.health_path,
                namespace=args.namespace,
                port=args.port,
                dns_nameserver=args.dns_nameserver,
                timeout=args.timeout,
            )
        if args.command == "config" and args.config_command == "check":
            from ._cli.config_check import run as run_check

            return run_check(args.file, as_json=args.json)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # Output piped into `head` that exited: stop quietly, as Unix tools do.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
    if args.command == "config":
        parser.error("config: choose an action (check)")
    parser.print_help()
    return 2


if __name__ == "__main__":
    sys.exit(main())
