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
from mesp_operator.prometheus import AUTO_ORDER, FAMILY_RECHECK_SECONDS, PRESETS, PrometheusSource, render_override


class FakePrometheus:
    """Answers /api/v1/query_range with `mode`: 'ok' (value = minute number mod 50 per series), 'garbage',
    'negative', 'nan', 'notlist', 'slow', '503', '400'. Records every query. The series lookup
    (/api/v1/label/__name__/values?match[]=S) finds the selectors in `existing` (the legacy family
    unless a test says otherwise) and records them in `lookups`."""

    def __init__(self):
        self.mode = "ok"
        self.queries: list[dict] = []
        self.existing = set(PRESETS["knative-legacy"].family)
        self.lookups: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode()
                params = dict(urllib.parse.parse_qsl(raw or urllib.parse.urlparse(self.path).query))
                if "/api/v1/label/" in self.path:
                    params = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(self.path).query))
                    outer.lookups.append(params)
                    status, body = outer.series_lookup(params)
                else:
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

    def series_lookup(self, params):
        if self.mode == "503":
            return 503, "{}"
        selector = params["match[]"]
        names = [selector.split("{")[0]] if selector in self.existing else []
        return 200, json.dumps({"status": "success", "data": names})

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
    source = PrometheusSource(prom.url, timeout=2, preset="knative-legacy")
    result = source.fetch([("ns", "svc"), ("ns", "absent")], {}, now=NOW, window_minutes=90)
    assert result.end == NOW // 60 * 60
    np.testing.assert_array_equal(result.series[("ns", "svc")], expected(result.end, 90))
    assert not result.series[("ns", "absent")].any()  # no series: no requests
    assert 'namespace_name=~"ns"' in prom.queries[0]["query"]


def test_later_loops_fetch_only_new_minutes_and_shift_the_window(prom):
    source = PrometheusSource(prom.url, timeout=2, preset="knative-legacy")
    source.fetch([("ns", "svc")], {}, now=NOW, window_minutes=120)
    later = source.fetch([("ns", "svc")], {}, now=NOW + 5 * 60, window_minutes=120)
    last = prom.queries[-1]
    assert int(last["end"]) - int(last["start"]) == (5 + 2) * 60  # 5 new minutes + 2 re-read
    np.testing.assert_array_equal(later.series[("ns", "svc")], expected(later.end, 120))


def test_long_windows_for_many_series_are_chunked(prom):
    source = PrometheusSource(prom.url, timeout=2, preset="knative-legacy")
    targets = [("ns", f"s{i}") for i in range(400)]
    source.fetch(targets, {}, now=NOW, window_minutes=1440)
    spans = [(int(q["end"]) - int(q["start"])) // 60 + 1 for q in prom.queries]
    assert len(spans) > 1 and sum(spans) == 1440 and max(spans) <= 120_000 // 400


@pytest.mark.parametrize("mode,reason", [("garbage", "MetricsGarbage"), ("notlist", "MetricsGarbage"),
                                         ("negative", "MetricsGarbage"), ("503", "PrometheusUnavailable"),
                                         ("slow", "PrometheusTimeout"), ("400", "QueryRejected")])
def test_bad_answers_become_metrics_errors_for_every_target(prom, mode, reason):
    prom.mode = mode
    source = PrometheusSource(prom.url, timeout=0.5, preset="knative-legacy")
    result = source.fetch([("ns", "svc"), ("ns", "other")], {}, now=NOW, window_minutes=60)
    assert set(result.errors) == {("ns", "svc"), ("ns", "other")} and not result.series
    for error in result.errors.values():
        assert isinstance(error, MetricsError) and error.reason == reason


def test_nan_points_are_gaps_not_errors(prom):
    prom.mode = "nan"
    result = PrometheusSource(prom.url, timeout=2, preset="knative-legacy").fetch([("ns", "svc")], {}, now=NOW, window_minutes=60)
    assert not result.errors and result.series[("ns", "svc")][0] == 0.0


def test_a_rejected_override_is_the_policys_error_only(prom):
    source = PrometheusSource(prom.url, timeout=2, preset="knative-legacy")
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
    source = PrometheusSource(prom.url, timeout=2, preset="knative-legacy")
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
    source = PrometheusSource(prom.url, timeout=2, preset="knative-legacy")
    source.fetch([("ns", "svc")], {}, now=NOW, window_minutes=120)
    source.fetch([("ns", "svc"), ("ns2", "new")], {}, now=NOW + 60, window_minutes=120)
    last = prom.queries[-1]
    assert 'namespace_name=~"ns|ns2"' in last["query"] or 'namespace_name=~"ns2|ns"' in last["query"]
    assert sum((int(q["end"]) - int(q["start"])) // 60 + 1 for q in prom.queries[1:]) == 120  # not 3 minutes


def _otel_answer(params):
    """The batched query's answer in the OpenTelemetry layout (the labels knative-otel groups by)."""
    start, end, step = int(params["start"]), int(params["end"]), int(params["step"])
    values = [[t, "5"] for t in range(start, end + 1, step)]
    result = [{"metric": {"k8s_namespace_name": "ns", "kn_service_name": "svc"}, "values": values}]
    return 200, json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})


def test_auto_reads_the_newest_family_prometheus_holds_and_says_so(prom):
    prom.existing |= set(PRESETS["knative-otel"].family)  # an upgraded cluster: both families
    prom.answer = _otel_answer
    source = PrometheusSource(prom.url, timeout=2)  # auto is the default
    result = source.fetch([("ns", "svc")], {}, now=NOW, window_minutes=60)
    assert not result.errors and source.preset_name == "knative-otel"
    assert result.series[("ns", "svc")].sum() == 5 * 60
    assert result.preset == "preset knative-otel, chosen by auto"
    assert 'k8s_namespace_name=~"ns"' in prom.queries[-1]["query"]
    # Looked up over the fetch window, newest layout first, and not again within the recheck interval.
    assert [q["match[]"] for q in prom.lookups] == list(PRESETS["knative-otel"].family)
    assert float(prom.lookups[0]["end"]) - float(prom.lookups[0]["start"]) == 60 * 60
    source.fetch([("ns", "svc")], {}, now=NOW + 60, window_minutes=60)
    assert len(prom.lookups) == 2


def test_auto_falls_back_through_the_families_in_order(prom):
    source = PrometheusSource(prom.url, timeout=2)
    result = source.fetch([("ns", "svc")], {}, now=NOW, window_minutes=60)
    assert not result.errors and source.preset_name == "knative-legacy"
    np.testing.assert_array_equal(result.series[("ns", "svc")], expected(result.end, 60))
    # otel's first selector is missing, so its second is not asked; then the activator's, then legacy's.
    asked = [q["match[]"] for q in prom.lookups]
    assert asked == [PRESETS["knative-otel"].family[0], *PRESETS["knative-otel-activator"].family,
                     *PRESETS["knative-legacy"].family]
    assert AUTO_ORDER == ("knative-otel", "knative-otel-activator", "knative-legacy")


def test_a_missing_family_is_an_error_naming_the_metric_not_an_idle_service(prom):
    """A named preset whose metric Prometheus does not hold, or auto finding none: every target is
    a MetricMissing error (never zeros), durations too; found later, the counts come back."""
    named = PrometheusSource(prom.url, timeout=2, preset="knative-otel")
    result = named.fetch([("ns", "svc"), ("ns", "other")], {}, now=NOW, window_minutes=60)
    assert not result.series and set(result.errors) == {("ns", "svc"), ("ns", "other")}
    error = result.errors[("ns", "svc")]
    assert isinstance(error, MetricsError) and error.reason == "MetricMissing"
    assert str(error).startswith("no kn_serving_invocation_duration_seconds_count series in Prometheus over "
                                 "the last 60 minutes: preset knative-otel")
    assert not prom.queries  # no counts asked for
    assert named.mean_durations([("ns", "svc")], now=NOW).error.reason == "MetricMissing"

    prom.existing = set()
    auto = PrometheusSource(prom.url, timeout=2)
    error = auto.fetch([("ns", "svc")], {}, now=NOW, window_minutes=60).errors[("ns", "svc")]
    assert error.reason == "MetricMissing" and "revision_request_count" in str(error)
    assert "kn_serving_invocation_duration_seconds_count" in str(error)
    # Missing is asked again on the next loop (no waiting out the recheck interval).
    prom.existing = set(PRESETS["knative-legacy"].family)
    assert not auto.fetch([("ns", "svc")], {}, now=NOW + 60, window_minutes=60).errors


def test_a_family_found_is_checked_again_after_the_recheck_interval(prom):
    source = PrometheusSource(prom.url, timeout=2, preset="knative-legacy")
    assert not source.fetch([("ns", "svc")], {}, now=NOW, window_minutes=60).errors
    prom.existing = set()  # e.g. the scrape was removed
    assert not source.fetch([("ns", "svc")], {}, now=NOW + 60, window_minutes=60).errors
    later = source.fetch([("ns", "svc")], {}, now=NOW + FAMILY_RECHECK_SECONDS + 60, window_minutes=60)
    assert later.errors[("ns", "svc")].reason == "MetricMissing"


def test_a_failed_lookup_is_the_usual_metrics_error_and_a_cluster_query_is_not_looked_up(prom):
    prom.mode = "503"
    result = PrometheusSource(prom.url, timeout=2).fetch([("ns", "svc")], {}, now=NOW, window_minutes=60)
    assert result.errors[("ns", "svc")].reason == "PrometheusUnavailable"
    prom.mode = "ok"
    custom = PrometheusSource(prom.url, timeout=2, preset="knative-legacy", promql="sum by (namespace_name, service_name) (x)")
    prom.lookups.clear()
    assert not custom.fetch([("ns", "svc")], {}, now=NOW, window_minutes=60).errors and not prom.lookups
    with pytest.raises(ValueError, match="named preset"):
        PrometheusSource(prom.url, preset="auto", promql="sum(x)")
