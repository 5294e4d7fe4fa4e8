"""`mesp`: train, cluster, evaluate, forecast, extend, add a floor stage, calibrate quantiles, simulate, generate, run the operator, or the whole demo.

Every command reads traces with `--trace FILE [FILE ...]` (Azure Functions 2019 layout, plain or
.gz, days dNN joined per function) and writes to `--out DIR`; without `--trace` the built-in seeded
generator provides a realistic multi-day trace. Figures go to stdout as tables, or as JSON with
`--json FILE` (`-` for stdout). Bad input ends with a one-line reason and exit code 2.

One module per command (its arguments next to it); `common` holds what they share.
"""

from __future__ import annotations

import argparse
import logging
import sys

from mesp_core.cli import calibrate, cluster, demo, evaluate, extend, floor, forecast, generate, operator, simulate, train
from mesp_core.cli.common import EXIT_BAD_INPUT, CliError, run_parsed

__all__ = ["main", "build_parser", "CliError", "EXIT_BAD_INPUT"]

COMMANDS = (train, cluster, evaluate, forecast, extend, floor, calibrate, simulate, generate, operator, demo)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mesp",
        description="MESP: mixture-of-experts forecasting of serverless invocations and a predictive "
        "min-scale operator for Knative.",
        epilog="Run 'mesp COMMAND --help' for the options of a command. 'mesp demo' runs the whole story "
        "on a generated trace.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug details")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if argv and argv[0] == "operator":  # the operator parses its own options (and --help)
        args = argparse.Namespace(command="operator", func=operator.run, rest=argv[1:], verbose=False)
    else:
        args = parser.parse_args(argv)
    if args.command != "operator":  # the operator configures its own logging (INFO, with times), which this would void
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return run_parsed(args)
