"""`mesp operator`: the Kubernetes operator; its options are its own (`mesp operator --help`)."""

from __future__ import annotations

from mesp_core.cli.common import command


def register(sub) -> None:
    p = command(sub, "operator", "run the Kubernetes operator (options: mesp operator --help)", add_help=False)
    p.set_defaults(func=run, rest=[])


def run(args) -> int:
    from mesp_operator.main import run as run_operator

    return run_operator(args.rest)
