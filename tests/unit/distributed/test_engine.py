"""mesp_core.distributed.engine: Ray stays optional. Without --ray nothing imports it; asked for
without Ray installed, --ray ends in one clear line; with it, `auto` joins the running cluster."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.unit.test_layers import ROOT

NO_RAY = "import sys\nsys.modules['ray'] = None  # as if Ray were not installed\n"


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_without_the_flag_mesp_never_imports_ray(tmp_path):
    out = _run(
        "import sys\nfrom mesp_core.cli import main\n"
        f"code = main(['cluster', '--synthetic-functions', '12', '--synthetic-days', '1', '--k', '2', '--out', {str(tmp_path)!r}])\n"
        "print(code, 'ray' in sys.modules)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "0 False"


@pytest.mark.parametrize("command", ["cluster", "train", "evaluate", "simulate"])
def test_asking_for_ray_without_it_is_one_clear_line(tmp_path, command):
    extra = ["--out", str(tmp_path / "out")] if command in ("cluster", "train") else []
    out = _run(
        NO_RAY + "from mesp_core.cli import main\n"
        f"sys.exit(main([{command!r}, '--synthetic-functions', '12', *{extra!r}, '--ray', 'auto']))"
    )
    assert out.returncode == 2, out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("mesp ")]
    assert len(errors) == 1 and "Traceback" not in out.stderr, out.stderr
    assert f"mesp {command}: error: --ray needs the Ray package" in errors[0]
    assert 'pip install "mesp[ray]"' in errors[0]


def test_the_library_says_the_same_without_ray():
    out = _run(
        NO_RAY + "from mesp_core.distributed.engine import RayUnavailableError, require_ray\n"
        "try:\n    require_ray()\nexcept RayUnavailableError as exc:\n    print(exc)\n"
    )
    assert out.returncode == 0, out.stderr
    assert "not installed" in out.stdout and "mesp[ray]" in out.stdout


def test_auto_joins_the_cluster_this_process_is_attached_to(ray_cluster):
    import ray

    from mesp_core.distributed.engine import connect, default_shards, ray_session

    assert connect("auto") is False  # already attached: nothing started, nothing to stop later
    with ray_session("auto"):
        assert default_shards() == 4  # two CPUs in the test cluster, two shards each
    assert ray.is_initialized()  # the session it did not start is left running
    with pytest.raises(ValueError, match="auto"):
        ray.shutdown()
        try:
            connect("")
        finally:
            ray.init(address=ray_cluster, log_to_driver=False)


def test_the_cli_help_names_the_flag():
    from mesp_core.cli import build_parser

    for command in ("cluster", "train", "evaluate", "simulate"):
        text = build_parser()._subparsers._group_actions[0].choices[command].format_help()
        assert "--ray auto|ADDRESS" in text and "--shards N" in text


def test_an_address_where_no_cluster_listens_is_one_clear_line(tmp_path, capsys):
    import socket

    from mesp_core.cli import main

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = ["cluster", "--synthetic-functions", "12", "--out", str(tmp_path), "--ray", f"127.0.0.1:{port}"]
    assert main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("mesp ")]
    assert len(err) == 1 and f"cannot reach the Ray cluster at '127.0.0.1:{port}'" in err[0], err
    assert main(["cluster", "--synthetic-functions", "12", "--out", str(tmp_path), "--ray", "somewhere"]) == 2
    assert "expected 'auto', HOST:PORT or ray://HOST:PORT" in capsys.readouterr().err
