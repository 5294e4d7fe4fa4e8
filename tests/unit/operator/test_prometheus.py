"""PrometheusSource against a local HTTP server speaking the Prometheus query API (good and bad answers)."""

from __future__ import annotations

import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from mesp_operator.errors import MetricsError, PolicyError
from mesp_operator.prometheus import PrometheusSource, render_override


class FakePrometheus:
    """Answers /api/v1/query_range with `mode`: 'ok' (value = minute number mod 50 per series), 'garbage',
    'negative', 'nan', 'notlist', 'slow', '503', '400'. Records every query."""

    def __init__(self):
        self.mode = "ok"
        self.queries: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                params = dict(urllib.parse.parse_qsl(raw or urllib.parse.urlparse(self.path).query))
                outer.queries.append(params)
                status, body = outer.answer(params)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.end_headers()
                    self.wfile.write(body.encode())
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout test)
                    pass

            do_GET = do_POST

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, params):
        start, end, step = int(params["start"]), int(params["end"]), int(params["step"])
        if self.mode == "slow":
            time.sleep(1.5)
        if self.mode == "503":
            return 503, "{}"
        if self.mode == "400":
            return 400, json.dumps({"status": "error", "error": "parse error"})
        if self.mode == "garbage":
            return 200, "<html>not prometheus</html>"
        if self.mode == "notlist":
            return 200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": {"a": 1}}})
        values = [[t, str((t // 60) % 50)] for t in range(start, end + 1, step)]
        if self.mode == "negative":
            values[0][1] = "-3"
        if self.mode == "nan":
            values[0][1] = "NaN"
        other = [list(v) for v in values]
        if self.mode in ("negative-svc", "overflow-svc"):  # only "svc" is bad; "other" is fine
            values = [list(v) for v in values]
            values[-1][1] = "-3" if self.mode == "negative-svc" else "1e39"
        result = [{"metric": {"namespace_name": "ns", "service_name": "svc"}, "values": values},
                  {"metric": {"namespace_name": "ns", "service_name": "other"}, "values": other}]
        return 200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prom():
    server = FakePrometheus()
    yield server
    server.close()


NOW = 1_700_000_000 + 37  # not minute-aligned on purpose


def expected(end: int, minutes: int) -> np.ndarray:
    return np.array([((end - (minutes - 1 - i) * 60) // 60) % 50 for i in range(minutes)], dtype=np.float32)


def test_window_is_aligned_and_oldest_first(prom):
    source = PrometheusSource(prom.url, timeout=2)
    result = source.fetch([("ns", "svc"), ("ns", "absent")], {}, now=NOW, window_minutes=90)
    assert result.end == NOW // 60 * 60
    np.testing.assert_array_equal(result.series[("ns", "svc")], expected(result.end, 90))
    assert not result.series[("ns", "absent")].any()  # no series: no requests
    assert 'namespace_name=~"ns"' in prom.queries[0]["query"]


def test_later_loops_fetch_only_new_minutes_and_shift_the_window(prom):
    source = PrometheusSource(prom.url, timeout=2)
    source.fetch([("ns", "svc")], {}, now=NOW, window_minutes=120)
    later = source.fetch([("ns", "svc")], {}, now=NOW + 5 * 60, window_minutes=120)
    last = prom.queries[-1]
    assert int(last["end"]) - int(last["start"]) == (5 + 2) * 60  # 5 new minutes + 2 re-read
    np.testing.assert_array_equal(later.series[("ns", "svc")], expected(later.end, 120))


def test_long_windows_for_many_series_are_chunked(prom):
    source = PrometheusSource(prom.url, timeout=2)
    targets = [("ns", f"s{i}") for i in range(400)]
    source.fetch(targets, {}, now=NOW, window_minutes=1440)
    spans = [(int(q["end"]) - int(q["start"])) // 60 + 1 for q in prom.queries]
    assert len(spans) > 1 and sum(spans) == 1440 and max(spans) <= 120_000 // 400


@pytest.mark.parametrize("mode,reason", [("garbage", "MetricsGarbage"), ("notlist", "MetricsGarbage"),
                                         ("negative", "MetricsGarbage"), ("503", "PrometheusUnavailable"),
                                         ("slow", "PrometheusTimeout"), ("400", "QueryRejected")])
def test_bad_answers_become_metrics_errors_for_every_target(prom, mode, reason):
    prom.mode = mode
    source = PrometheusSource(prom.url, timeout=0.5)
    result = source.fetch([("ns", "svc"), ("ns", "other")], {}, now=NOW, window_minutes=60)
    assert set(result.errors) == {("ns", "svc"), ("ns", "other")} and not result.series
    for error in result.errors.values():
        assert isinstance(error, MetricsError) and error.reason == reason


def test_nan_points_are_gaps_not_errors(prom):
    prom.mode = "nan"
    result = PrometheusSource(prom.url, timeout=2).fetch([("ns", "svc")], {}, now=NOW, window_minutes=60)
    assert not result.errors and result.series[("ns", "svc")][0] == 0.0


def test_a_rejected_override_is_the_policys_error_only(prom):
    source = PrometheusSource(prom.url, timeout=2)
    prom.mode = "400"
    result = source.fetch([], {("ns", "p"): "sum(broken"}, now=NOW, window_minutes=60)
    assert isinstance(result.errors[("ns", "p")], PolicyError)
    prom.mode = "ok"
    result = source.fetch([("ns", "svc")], {("ns", "p"): 'sum(x{service_name="svc"})'}, now=NOW, window_minutes=60)
    assert not result.errors
    # An override's series are summed into one.
    np.testing.assert_array_equal(result.series[("ns", "p")], 2 * expected(result.end, 60))


def test_override_placeholders():
    assert render_override('x{ns="$namespace",svc="${service}"}', "a", "b") == 'x{ns="a",svc="b"}'
    with pytest.raises(PolicyError, match=r"\$namespace and \$service"):
        render_override('x{a="$other"}', "a", "b")


@pytest.mark.parametrize("mode", ["negative-svc", "overflow-svc"])
def test_one_bad_series_fails_only_its_own_target_and_is_refetched_whole(prom, mode):
    prom.mode = mode
    source = PrometheusSource(prom.url, timeout=2)
    result = source.fetch([("ns", "svc"), ("ns", "other")], {}, now=NOW, window_minutes=60)
    assert set(result.errors) == {("ns", "svc")} and result.errors[("ns", "svc")].reason == "MetricsGarbage"
    np.testing.assert_array_equal(result.series[("ns", "other")], expected(result.end, 60))
    # Fixed at the source: the next loop reads the whole window again, so nothing of it is lost.
    prom.mode = "ok"
    later = source.fetch([("ns", "svc"), ("ns", "other")], {}, now=NOW + 60, window_minutes=60)
    assert not later.errors
    assert (int(prom.queries[-1]["end"]) - int(prom.queries[-1]["start"])) // 60 + 1 == 60
    np.testing.assert_array_equal(later.series[("ns", "svc")], expected(later.end, 60))


def test_a_new_namespace_fetches_the_whole_window_again(prom):
    source = PrometheusSource(prom.url, timeout=2)
    source.fetch([("ns", "svc")], {}, now=NOW, window_minutes=120)
    source.fetch([("ns", "svc"), ("ns2", "new")], {}, now=NOW + 60, window_minutes=120)
    last = prom.queries[-1]
    assert 'namespace_name=~"ns|ns2"' in last["query"] or 'namespace_name=~"ns2|ns"' in last["query"]
    assert sum((int(q["end"]) - int(q["start"])) // 60 + 1 for q in prom.queries[1:]) == 120  # not 3 minutes
