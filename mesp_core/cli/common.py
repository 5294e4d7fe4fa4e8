"""What every `mesp` command shares: the trace options, loading the trace, JSON output, the exit-code
contract (bad input: one line on stderr, exit 2, never a traceback)."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2
MODEL_HELP = "model folder from `mesp train` (default: the model shipped in the package, trained on the real Azure sample)"


class CliError(Exception):
    """A problem with what the user gave us: reported in one line, no traceback."""


def command(sub, name: str, summary: str, **kwargs) -> argparse.ArgumentParser:
    """A subcommand whose --help opens with its one-line summary unless it has a longer description."""
    kwargs.setdefault("description", summary[0].upper() + summary[1:] + ".")
    return sub.add_parser(name, help=summary, **kwargs)


def add_trace(parser: argparse.ArgumentParser, required: bool = False) -> None:
    group = parser.add_argument_group("input trace")
    group.add_argument(
        "--trace",
        nargs="+",
        metavar="FILE",
        required=required,
        help="Azure Functions 2019 invocation files (invocations_per_function_md.anon.dNN.csv[.gz]); "
        "several days are joined per function"
        + ("" if required else ". Default: a generated trace (see --synthetic-functions/--synthetic-days)"),
    )
    group.add_argument("--skip-bad-rows", action="store_true", help="skip and count malformed rows instead of stopping at the first")
    if not required:
        group.add_argument("--synthetic-functions", type=int, default=600, metavar="N", help="functions in the generated trace (default 600)")
        group.add_argument("--synthetic-days", type=int, default=2, metavar="D", help="days in the generated trace (default 2)")
        group.add_argument("--seed", type=int, default=0, help="seed of the generated trace and of training (default 0)")


def add_ray(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_argument_group("past one machine (Ray)")
    group.add_argument("--ray", metavar="auto|ADDRESS",
                       help=f"run {what} on a Ray cluster: 'auto' joins the one in RAY_ADDRESS or started here with "
                       "'ray start --head', else starts a local one; or a cluster address HOST:6379 / ray://HOST:10001. "
                       "Needs the 'ray' extra. Without it: one process, Ray never imported")
    group.add_argument("--shards", type=int, metavar="N",
                       help="function shards with --ray (default: 2 per CPU of the cluster); a worker holds one shard")


@contextlib.contextmanager
def ray_cluster(args):
    """Attached to the Ray cluster --ray names for the length of the block; yields the shard count."""
    from mesp_core.distributed.engine import RayUnavailableError, default_shards, ray_session

    if args.shards is not None and args.shards < 1:
        raise CliError(f"--shards must be >= 1, got {args.shards}")
    try:
        with ray_session(args.ray):
            yield args.shards or default_shards()
    except RayUnavailableError as exc:
        raise CliError(str(exc)) from None


def load_sharded_trace(args, n_shards: int):
    """load_trace for --ray: the day files read into function shards on the cluster."""
    from mesp_core.distributed.trace import ShardedTrace

    if getattr(args, "trace", None):
        sharded = ShardedTrace.read(args.trace, n_shards, on_error="skip" if args.skip_bad_rows else "raise")
        if sharded.skipped:
            first = sharded.problems[0] if sharded.problems else "?"
            print(f"mesp: skipped {sharded.skipped} malformed rows (first: {first})", file=sys.stderr)
        source = f"{len(args.trace)} file(s)"
    else:
        sharded = ShardedTrace.from_trace(load_trace(args, progress=False), n_shards)
        source = "the generated trace"
    print(f"mesp: {sharded.n_functions} functions x {len(sharded.days)} days from {source} in {sharded.n_shards} shards on Ray",
          file=sys.stderr)
    return sharded


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", metavar="FILE", help="also write the figures as JSON to FILE ('-' = stdout, replacing the table)")


def add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", metavar="DIR", help=MODEL_HELP)


def fraction(text: str) -> float:
    """argparse type: a float in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def load_trace(args, progress: bool = True):
    """The trace the user named with --trace, or the generated one; says on stderr what was read."""
    from mesp_core.data.reader import read_invocations

    if getattr(args, "trace", None):
        trace = read_invocations(args.trace, on_error="skip" if args.skip_bad_rows else "raise", progress=progress)
        if trace.skipped:
            print(f"mesp: skipped {trace.skipped} malformed rows (first: {trace.problems[0] if trace.problems else '?'})", file=sys.stderr)
        source = f"{len(args.trace)} file(s)"
    else:
        from mesp_core.data.synthetic import generate_trace

        if args.synthetic_functions < 10 or args.synthetic_days < 1:
            raise CliError("--synthetic-functions must be >= 10 and --synthetic-days >= 1")
        trace = generate_trace(n_functions=args.synthetic_functions, days=args.synthetic_days, seed=args.seed)
        source = f"generated trace (seed {args.seed})"
    if len(trace.keys) == 0:
        raise CliError("the trace has no functions")
    print(f"mesp: {len(trace.keys)} functions x {trace.counts.shape[1]} minutes from {source}", file=sys.stderr)
    return trace


def model_dir(args) -> str:
    """--model, or the packaged model when it is not given."""
    if args.model:
        return str(args.model)
    from mesp_core.forecasting.model import default_model_path

    return str(default_model_path())


def emit(args, payload: dict, table: str) -> None:
    """The table on stdout, and the payload as JSON to --json (or instead of the table with --json -)."""
    target = getattr(args, "json", None)
    if target == "-":
        print(json.dumps(payload, indent=2, default=jsonable))
        return
    print(table)
    if target:
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(json.dumps(payload, indent=2, default=jsonable) + "\n")
        print(f"mesp: figures written to {target}", file=sys.stderr)


def jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(type(value).__name__)


def run_parsed(args) -> int:
    """Run a parsed command under the exit-code contract."""
    from mesp_core.data.trace import TraceFormatError
    from mesp_core.forecasting.artifact import ArtifactError

    try:
        return args.func(args)
    except (CliError, ArtifactError, TraceFormatError, ValueError, FileNotFoundError, PermissionError, IsADirectoryError) as exc:
        print(f"mesp {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"mesp {args.command}: interrupted", file=sys.stderr)
        return 130
