"""Benchmark trace ingestion: the shared sample and a full-size generated day (plain and gzip).

    python bench/bench_trace.py [--functions 46000] [--no-slow-path] [--json out.json]

A public Azure 2019 day file has ~46,000 rows x 1444 columns. The script generates a day of that
size with mesp_core.data.synthetic, writes it with write_invocations (plain and gzip), reads it back and
reports wall-clock seconds for each step. It also times the second pass that runs only when a
file has a bad row (one negative count near the end, read with on_error="skip").
Everything is written to a temporary directory that is removed afterwards.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from mesp_core.data.synthetic import generate_trace
from mesp_core.data.reader import read_invocations
from mesp_core.data.writer import write_invocations

# ../shared sits beside the checkout (CI too).
SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "azure2019" / "invocations_per_function_md.sample.csv.gz"


def timed(label: str, results: dict, fn, *args, **kwargs):
    # CPU seconds beside wall seconds: the machine may be shared, and CPU time shows the cost
    start, cpu_start = time.perf_counter(), time.process_time()
    value = fn(*args, **kwargs)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    results[label] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}
    print(f"{label:<48} wall {wall:8.2f} s   cpu {cpu:8.2f} s", flush=True)
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--functions", type=int, default=46000, help="rows in the generated day (default 46000)")
    parser.add_argument("--sample", type=Path, default=SAMPLE, help="the shared Azure sample (skipped if absent)")
    parser.add_argument("--no-slow-path", action="store_true", help="skip timing the bad-row (second pass) read")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    results: dict[str, dict[str, float]] = {}
    info = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg()[0],
        "functions": args.functions,
    }
    if args.sample.exists():
        trace = timed("read shared sample (6,418 rows, gzip)", results, read_invocations, args.sample)
        info["sample_rows"] = trace.n_functions
    else:
        print(f"shared sample not found at {args.sample}; skipping it", file=sys.stderr)

    trace = timed(f"generate {args.functions} functions x 1 day", results, generate_trace, n_functions=args.functions, days=1, seed=0)
    with tempfile.TemporaryDirectory(prefix="mesp-bench-trace-") as tmp:
        plain_dir, gz_dir = Path(tmp, "plain"), Path(tmp, "gzip")
        (plain,) = timed("write day (plain csv)", results, write_invocations, trace, plain_dir)
        (gz,) = timed("write day (gzip)", results, write_invocations, trace, gz_dir, gzip=True)
        info["plain_mb"] = round(plain.stat().st_size / 1e6, 1)
        info["gzip_mb"] = round(gz.stat().st_size / 1e6, 1)
        back = timed("read day (plain csv)", results, read_invocations, plain)
        assert back == trace, "round trip changed the trace"
        back = timed("read day (gzip)", results, read_invocations, gz)
        assert back == trace, "round trip changed the trace"
        if not args.no_slow_path:
            # corrupt one count near the end: the first pass rejects the file, the second names the line
            lines = plain.read_text().splitlines(keepends=True)
            fields = lines[-2].split(",")
            fields[10] = "-1"
            lines[-2] = ",".join(fields)
            bad = Path(tmp, "bad", plain.name)
            bad.parent.mkdir()
            bad.write_text("".join(lines))
            del lines
            skipped = timed("read day with one bad row (skip, 2nd pass)", results, read_invocations, bad, on_error="skip")
            assert skipped.skipped == 1 and skipped.problems[0][1] == len(trace.keys), skipped.problems
    report = json.dumps({"timings": results, **info}, indent=2)
    print(report)
    if args.json:
        args.json.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
