"""``shadowd run --platform NAME --config SETTINGS.toml``: the vehicle service (under systemd)."""

from __future__ import annotations

import argparse


def add_subparser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "run",
        help="run the vehicle service: rings/CAN → model → divergence → triggers → clips → spool → upload",
        description="Run the shadow-mode service. The settings file says who this vehicle is and how the "
        "service is wired (see shadowd/core/settings.py and docs/service.md); what it does comes from the "
        "signed fleet config, or the factory default until one is applied. SIGTERM finishes pending "
        "post-windows and flushes; SIGHUP reloads.",
    )
    p.add_argument("--platform", required=True, help="platform profile name (nt2, nt2_5, nt3, desktop) or a .toml path")
    p.add_argument("--config", required=True, metavar="SETTINGS", help="service settings TOML file")
    p.set_defaults(func=_do_run)


def _do_run(args: argparse.Namespace) -> int:
    from ..daemon import run_service

    return run_service(args.platform, args.config)
