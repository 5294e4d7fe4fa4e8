"""What the CLI tests share: the tiny trace's flags, the golden model, the one-line error check."""

from mesp_core.cli import main

from ..paths import GOLDEN_MODEL

GOLDEN = GOLDEN_MODEL
TINY_TRACE = ["--synthetic-functions", "80", "--synthetic-days", "2", "--seed", "1"]  # = conftest.tiny_trace
COMMANDS = ["train", "cluster", "evaluate", "forecast", "extend", "floor", "calibrate", "simulate", "generate", "demo"]


def _one_line_error(capsys, argv) -> str:
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mesp ")]
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]


def write_trace(trace, folder) -> list[str]:
    """The trace as Azure day files, for --trace."""
    from mesp_core.data.writer import write_invocations

    return [str(p) for p in write_invocations(trace, folder)]


def seen_functions_only(model, trace):
    """The functions of `trace` the model trained or validated on."""
    import numpy as np

    from mesp_core.offline.split import held_out_functions

    return trace.subset(np.setdiff1d(np.arange(trace.n_functions), held_out_functions(model, trace)))
