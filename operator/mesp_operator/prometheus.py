"""Per-minute invocation counts from Prometheus (prometheus-api-client), fetched in batches.

One range query per loop returns the counts of every targeted Service at once (grouped by namespace and
service labels); a policy's own PromQL override is one extra query. Results are cached per series and
only the newest minutes are fetched on the next loop, so a 1,000-Service cluster costs a few small
queries a minute, not 1,000 day-long ones.

Timestamps: the value at minute t is the number of invocations in (t - 60 s, t]. Arrays are oldest first.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import string
from datetime import datetime, timezone
from typing import Iterable, Mapping

import numpy as np

from mesp_operator.errors import MetricsError, PolicyError

log = logging.getLogger("mesp.operator")
STEP_SECONDS = 60
REFETCH_MINUTES = 2  # re-read the newest minutes each loop: late scrapes change them
MAX_POINTS_PER_QUERY = 120_000  # keeps one JSON answer to a few MB
# Mean request durations move slowly: one instant query every 10 minutes, over the last hour.
DURATION_REFRESH_SECONDS = 600


@dataclasses.dataclass(frozen=True)
class Preset:
    """A cluster-wide query returning per-minute counts, one series per (namespace, service)."""

    query: str               # may contain $selector (label matchers limiting namespaces)
    namespace_label: str
    service_label: str
    description: str
    duration_query: str = ""  # mean request duration in ms over the last hour, same labels ($selector too)
    # Series selectors that must each match some series for the query to mean anything (the preset's
    # metric family); zeros from a query whose family is absent are a wrong preset or scrape, not idleness.
    family: tuple[str, ...] = ()


PRESETS: dict[str, Preset] = {
    # Knative Serving <= 1.18 (OpenCensus): queue-proxy's request counter.
    "knative-legacy": Preset(
        query="sum by (namespace_name, service_name) (increase(revision_request_count{$selector}[1m]))",
        namespace_label="namespace_name",
        service_label="service_name",
        description="Knative <= 1.18: revision_request_count (queue-proxy)",
        # revision_request_latencies is a histogram in milliseconds.
        duration_query=(
            "sum by (namespace_name, service_name) (rate(revision_request_latencies_sum{$selector}[1h]))"
            " / sum by (namespace_name, service_name) (rate(revision_request_latencies_count{$selector}[1h]))"
        ),
        family=("revision_request_count",),
    ),
    # Knative Serving >= 1.21 (OpenTelemetry): service names live on target_info, joined per scrape target.
    "knative-otel": Preset(
        query=(
            "sum by (k8s_namespace_name, kn_service_name) ("
            "increase(kn_serving_invocation_duration_seconds_count[1m])"
            " * on (job, instance) group_left (k8s_namespace_name, kn_service_name)"
            " max by (job, instance, k8s_namespace_name, kn_service_name) (target_info{$selector}))"
        ),
        namespace_label="k8s_namespace_name",
        service_label="kn_service_name",
        description="Knative >= 1.21: kn_serving_invocation_duration_seconds_count joined with target_info",
        duration_query=(
            "1000 * sum by (k8s_namespace_name, kn_service_name) ("
            "rate(kn_serving_invocation_duration_seconds_sum[1h])"
            " * on (job, instance) group_left (k8s_namespace_name, kn_service_name)"
            " max by (job, instance, k8s_namespace_name, kn_service_name) (target_info{$selector}))"
            " / sum by (k8s_namespace_name, kn_service_name) ("
            "rate(kn_serving_invocation_duration_seconds_count[1h])"
            " * on (job, instance) group_left (k8s_namespace_name, kn_service_name)"
            " max by (job, instance, k8s_namespace_name, kn_service_name) (target_info{$selector}))"
        ),
        family=("kn_serving_invocation_duration_seconds_count", 'target_info{kn_service_name!=""}'),
    ),
    # Knative Serving >= 1.19 (OpenTelemetry): the activator's series carry the names themselves.
    "knative-otel-activator": Preset(
        query=(
            "sum by (k8s_namespace_name, kn_service_name) "
            "(increase(kn_serving_invocation_duration_seconds_count{$selector}[1m]))"
        ),
        namespace_label="k8s_namespace_name",
        service_label="kn_service_name",
        description="Knative >= 1.19: series labelled kn_service_name/k8s_namespace_name directly",
        duration_query=(
            "1000 * sum by (k8s_namespace_name, kn_service_name) "
            "(rate(kn_serving_invocation_duration_seconds_sum{$selector}[1h]))"
            " / sum by (k8s_namespace_name, kn_service_name) "
            "(rate(kn_serving_invocation_duration_seconds_count{$selector}[1h]))"
        ),
        family=('kn_serving_invocation_duration_seconds_count{kn_service_name!=""}',),
    ),
}
# `auto` picks the first preset whose family Prometheus holds: the newest layout first (a cluster
# upgraded from an older Knative still holds the old family for a while).
AUTO = "auto"
AUTO_ORDER = ("knative-otel", "knative-otel-activator", "knative-legacy")
PRESET_CHOICES = (AUTO, *PRESETS)
# How long a family found stays trusted before Prometheus is asked again (a missing one is asked
# for on every loop, so the operator recovers as soon as the scrape does).
FAMILY_RECHECK_SECONDS = 600

_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
Key = tuple  # (namespace, service) for the batched query, ("policy", namespace, policy) for overrides


def render_override(promql: str, namespace: str, service: str) -> str:
    """A policy's own PromQL with $namespace and $service substituted."""
    try:
        return string.Template(promql).substitute(namespace=namespace, service=service)
    except (KeyError, ValueError) as exc:
        raise PolicyError(f"spec.promql: only $namespace and $service may be substituted ({exc})") from None


def _selector(label: str, namespaces: Iterable[str]) -> str:
    # Namespace names are DNS labels ([a-z0-9-]), which need no escaping in a PromQL regex.
    names = sorted({n for n in namespaces if _DNS_LABEL.fullmatch(n)})
    if not names:
        return ""
    return f'{label}=~"{"|".join(names)}"'


def _aligned_end(now: float) -> int:
    return int(now // STEP_SECONDS) * STEP_SECONDS


class _SeriesCache:
    """Per-key minute values of one query (float32 arrays aligned to the window) and how far they reach."""

    def __init__(self):
        self.first: int | None = None   # unix time of index 0
        self.end: int | None = None     # newest minute fetched successfully
        self.window = 0
        self.data: dict[Key, np.ndarray] = {}
        self.bad: dict[Key, str] = {}   # series with unusable values in the last refresh (and why)

    def range_to_fetch(self, first: int, last: int, window: int) -> tuple[int, int]:
        # A series that had bad values lost part of its history: fetch the whole window again.
        if self.end is None or window != self.window or last < self.end or self.end < first or self.bad:
            self.first, self.end, self.window, self.data = None, None, window, {}  # gap or clock jump: start over
            return first, last
        return max(first, self.end - REFETCH_MINUTES * STEP_SECONDS), last

    def merge(self, start: int, stop: int, fetched: Mapping[Key, np.ndarray], first: int) -> None:
        w = self.window
        if self.first is not None and first != self.first:
            shift = (first - self.first) // STEP_SECONDS
            for arr in self.data.values():
                if shift >= w:
                    arr[:] = 0.0
                else:
                    arr[: w - shift] = arr[shift:].copy()
                    arr[w - shift:] = 0.0
        self.first = first
        lo, hi = (start - first) // STEP_SECONDS, (stop - first) // STEP_SECONDS + 1
        for arr in self.data.values():  # the fetched range is authoritative: absent minutes had no requests
            arr[lo:hi] = 0.0
        for key, values in fetched.items():
            arr = self.data.setdefault(key, np.zeros(w, dtype=np.float32))
            arr[lo:hi] = values[lo:hi]
        self.end = stop

    def series(self, key: Key) -> np.ndarray:
        arr = self.data.get(key)
        return np.zeros(self.window, dtype=np.float32) if arr is None else arr.copy()


@dataclasses.dataclass
class DurationResult:
    durations_ms: dict[Key, float]           # mean request duration over the last hour, where measured
    error: Exception | None = None           # why the last refresh failed (older values are kept)


@dataclasses.dataclass
class FetchResult:
    series: dict[Key, np.ndarray]            # per requested key, float32 [window], oldest first
    errors: dict[Key, Exception]             # per key whose counts are unusable
    end: int                                 # unix time of the newest minute
    preset: str = ""                         # which preset the batched query used, and why


class PrometheusSource:
    """Batched, cached per-minute counts. `fetch` never raises for one bad series; it reports it."""

    def __init__(self, url: str, *, timeout: float = 10.0, preset: str = AUTO,
                 promql: str | None = None, client=None):
        from prometheus_api_client import PrometheusConnect
        from urllib3.util.retry import Retry

        if preset not in PRESET_CHOICES:
            raise ValueError(f"unknown metrics preset {preset!r}")
        if preset == AUTO and promql:
            raise ValueError("a cluster-wide PromQL needs a named preset (the labels it returns)")
        self.auto = preset == AUTO
        # auto: unknown until Prometheus has been asked (see _preset_in_use)
        self.preset_name: str | None = None if self.auto else preset
        self.preset: Preset | None = None if self.auto else PRESETS[preset]
        self.promql = promql
        self.timeout = timeout
        # One quick retry only: the loop itself is the retry; a long backoff would stall every policy.
        self.client = client or PrometheusConnect(
            url=url, disable_ssl=True, timeout=timeout, method="POST",
            retry=Retry(total=1, read=False, backoff_factor=0.1, status_forcelist=[502, 503, 504], allowed_methods=None),
        )
        self._batch_cache = _SeriesCache()
        self._batch_query: str | None = None
        self._override_caches: dict[tuple[Key, str], _SeriesCache] = {}
        self._durations: dict[Key, float] = {}
        self._durations_at: float | None = None
        self._durations_for: frozenset = frozenset()
        self._family_found_at: float | None = None
        self._family_window = 1440  # minutes looked back for the family (the last fetch's window)
        self.preset_note = ""

    # -- public -----------------------------------------------------------------------------------
    def fetch(self, targets: Iterable[tuple[str, str]], overrides: Mapping[Key, str], *,
              now: float, window_minutes: int) -> FetchResult:
        """Counts for every (namespace, service) target and every override key (already rendered PromQL)."""
        end = _aligned_end(now)
        first = end - (window_minutes - 1) * STEP_SECONDS
        targets = list(dict.fromkeys(targets))
        series: dict[Key, np.ndarray] = {}
        errors: dict[Key, Exception] = {}

        if targets:
            self._family_window = window_minutes
            try:
                preset = self._preset_in_use(now)
                query = string.Template(self.promql or preset.query).safe_substitute(
                    selector=_selector(preset.namespace_label, (ns for ns, _ in targets)))
                if query != self._batch_query:
                    # Another set of namespaces (or preset): the cached minutes lack their history, start over.
                    self._batch_cache, self._batch_query = _SeriesCache(), query
                self._refresh(self._batch_cache, query, first, end, window_minutes, self._batch_key,
                              n_series=len(targets))
            except Exception as exc:  # one failure marks every target of this batch
                if isinstance(exc, PolicyError):  # the cluster-wide query is the operator's, not a policy's
                    exc = MetricsError(f"the operator's PromQL was rejected: {exc}", "QueryRejected")
                for key in targets:
                    errors[key] = exc
            else:
                for key in targets:
                    series[key] = self._batch_cache.series(key)
                    if key in self._batch_cache.bad:
                        errors[key] = _garbage(self._batch_cache.bad[key])

        live = set()
        for key, query in overrides.items():
            cache = self._override_caches.setdefault((key, query), _SeriesCache())
            live.add((key, query))
            try:
                self._refresh(cache, query, first, end, window_minutes, lambda metric, key=key: key, n_series=1)
            except Exception as exc:
                errors[key] = exc
            else:
                series[key] = cache.series(key)
                if key in cache.bad:
                    errors[key] = _garbage(cache.bad[key])
        for stale in set(self._override_caches) - live:  # policies deleted or queries changed
            del self._override_caches[stale]
        for key in errors:
            series.pop(key, None)
        return FetchResult(series=series, errors=errors, end=end, preset=self.preset_note)

    def mean_durations(self, targets: Iterable[tuple[str, str]], *, now: float) -> DurationResult:
        """Mean request duration (ms, last hour) per (namespace, service) target, from the preset's
        latency histogram: one instant query, refreshed every DURATION_REFRESH_SECONDS or when the
        targets change. A Service without requests in the last hour keeps its last measured figure
        (so capacity does not jump back to a default while it is idle) and is absent until measured
        once. A failed refresh keeps the previous values and reports the error; it never raises."""
        targets = frozenset(targets)
        if not targets:
            return DurationResult({})
        fresh = (self._durations_at is not None and targets <= self._durations_for
                 and 0 <= now - self._durations_at < DURATION_REFRESH_SECONDS)
        if fresh:
            return DurationResult(self._known_durations(targets))
        try:
            preset = self._preset_in_use(now)
        except MetricsError as exc:
            return DurationResult(self._known_durations(targets), exc)
        if not preset.duration_query:
            return DurationResult({})
        query = string.Template(preset.duration_query).safe_substitute(
            selector=_selector(preset.namespace_label, (ns for ns, _ in targets)))
        try:
            raw = self._query_instant(query, now)
            measured = {}
            if not isinstance(raw, list):
                raise MetricsError("Prometheus answered garbage: result is not a list of series", "MetricsGarbage")
            for item in raw:
                key = self._batch_key(item["metric"])
                value = float(item["value"][1])
                if key in targets and math.isfinite(value) and value > 0:  # NaN: no requests in the hour
                    measured[key] = value
        except MetricsError as exc:
            return DurationResult(self._known_durations(targets), exc)
        except (PolicyError, KeyError, TypeError, ValueError, IndexError) as exc:
            error = MetricsError(f"request durations unusable: {_short(exc)}", "MetricsGarbage")
            return DurationResult(self._known_durations(targets), error)
        self._durations = {**self._known_durations(targets), **measured}
        self._durations_at, self._durations_for = now, targets
        return DurationResult(dict(self._durations))

    def _known_durations(self, targets: frozenset) -> dict[Key, float]:
        """The last measured durations of these targets."""
        return {k: v for k, v in self._durations.items() if k in targets}

    # -- internals --------------------------------------------------------------------------------
    def _preset_in_use(self, now: float) -> Preset:
        """The preset to read with: auto's choice, or the named one, confirmed (again after
        FAMILY_RECHECK_SECONDS) to have its metric family in Prometheus over the fetch window.
        Raises MetricsError (reason MetricMissing) naming what is missing: zeros from an absent
        family would be forecast as an idle Service. A cluster-wide --promql is taken as it is."""
        if self.promql or (self._family_found_at is not None
                           and 0 <= now - self._family_found_at < FAMILY_RECHECK_SECONDS):
            return self.preset
        window = self._family_window
        missing: dict[str, str] = {}
        for name in AUTO_ORDER if self.auto else (self.preset_name,):
            absent = next((sel for sel in PRESETS[name].family
                           if not self._series_exist(sel, now - window * 60, now)), None)
            if absent is None:
                if self.auto and name != self.preset_name:
                    log.info("metrics preset auto: %s (%s found in Prometheus)", name,
                             " and ".join(PRESETS[name].family))
                self.preset_name, self.preset, self._family_found_at = name, PRESETS[name], now
                self.preset_note = f"preset {name}{', chosen by auto' if self.auto else ''}"
                return self.preset
            missing[name] = absent
        self._family_found_at = None
        if self.auto:
            families = "; ".join(f"{n}: {' and '.join(PRESETS[n].family)}" for n in AUTO_ORDER)
            message = (f"no Knative request metric in Prometheus over the last {window} minutes ({families}): "
                       "is Knative's queue-proxy scraped? Not forecasting from zeros")
        else:
            message = (f"no {missing[self.preset_name]} series in Prometheus over the last "
                       f"{window} minutes: preset {self.preset_name} ({self.preset.description}) does not match "
                       "this Knative, or Prometheus does not scrape it (--metrics-preset auto picks the family "
                       "that exists). Not forecasting from zeros")
        raise MetricsError(message, "MetricMissing")

    def _series_exist(self, selector: str, start: float, end: float) -> bool:
        """Whether any series matches `selector` between start and end: the label-values API lists
        metric names only, so this stays cheap however many Services there are."""
        try:
            names = self._call(lambda: self.client.get_label_values("__name__", params={
                "match[]": selector, "start": f"{start:.3f}", "end": f"{end:.3f}"}))
        except PolicyError as exc:
            raise MetricsError(f"Prometheus refused the series lookup {selector}: {exc}", "QueryRejected") from exc
        if not isinstance(names, list):
            raise MetricsError("Prometheus answered garbage: label values are not a list", "MetricsGarbage")
        return selector.split("{", 1)[0] in names

    def _batch_key(self, metric: Mapping[str, str]) -> Key:
        return (metric.get(self.preset.namespace_label, ""), metric.get(self.preset.service_label, ""))

    def _refresh(self, cache: _SeriesCache, query: str, first: int, end: int, window: int, key_of,
                 n_series: int) -> None:
        start, stop = cache.range_to_fetch(first, end, window)
        # Chunk long ranges so one answer stays a few MB even for thousands of series.
        chunk = max(10, min(window, MAX_POINTS_PER_QUERY // max(1, n_series))) * STEP_SECONDS
        fetched: dict[Key, np.ndarray] = {}
        bad: dict[Key, str] = {}
        t = start
        while t <= stop:
            t_end = min(stop, t + chunk - STEP_SECONDS)
            self._parse_into(fetched, self._query_range(query, t, t_end), key_of, first, window, bad)
            t = t_end + STEP_SECONDS
        for key, values in fetched.items():  # float32 sums can overflow where each value did not
            if key not in bad and not np.isfinite(values).all():
                bad[key] = "counts overflow a float32"
        cache.merge(start, stop, {k: v for k, v in fetched.items() if k not in bad}, first)
        for key in bad:
            cache.data.pop(key, None)
        cache.bad = bad

    def _query_range(self, query: str, start: int, end: int):
        return self._call(lambda: self.client.custom_query_range(
            query=query,
            start_time=datetime.fromtimestamp(start, tz=timezone.utc),
            end_time=datetime.fromtimestamp(end, tz=timezone.utc),
            step=str(STEP_SECONDS),
            params={"timeout": f"{self.timeout:g}s"},
        ))

    def _query_instant(self, query: str, at: float):
        return self._call(lambda: self.client.custom_query(
            query=query, params={"time": f"{at:.3f}", "timeout": f"{self.timeout:g}s"}))

    def _call(self, request):
        """Run one Prometheus API call, turning every failure into a MetricsError or PolicyError."""
        import requests
        from prometheus_api_client.exceptions import PrometheusApiClientException

        try:
            return request()
        except (requests.exceptions.JSONDecodeError, ValueError, KeyError, TypeError) as exc:
            # Not the JSON the API promises (requests' JSON error is also a RequestException: check first).
            raise MetricsError(f"Prometheus answered garbage: {_short(exc)}", "MetricsGarbage") from exc
        except requests.Timeout as exc:
            raise MetricsError(f"Prometheus did not answer within {self.timeout:g}s", "PrometheusTimeout") from exc
        except requests.RequestException as exc:
            raise MetricsError(f"Prometheus unreachable: {_short(exc)}", "PrometheusUnavailable") from exc
        except PrometheusApiClientException as exc:
            text = str(exc)
            if "HTTP Status Code 400" in text or "HTTP Status Code 422" in text:
                raise PolicyError(f"PromQL rejected by Prometheus: {_short(text)}") from exc
            raise MetricsError(f"Prometheus error: {_short(text)}", "PrometheusUnavailable") from exc

    @staticmethod
    def _parse_into(out: dict[Key, np.ndarray], raw, key_of, first: int, window: int, bad: dict[Key, str]) -> None:
        """Add one answer's points to `out`. A malformed answer raises; a series with a negative or
        infinite value goes to `bad` instead, so one bad series does not take the others down."""
        if not isinstance(raw, list):
            raise MetricsError("Prometheus answered garbage: result is not a list of series", "MetricsGarbage")
        for item in raw:
            try:
                key = key_of(item["metric"])
                arr = out.get(key)
                if arr is None:
                    arr = out[key] = np.zeros(window, dtype=np.float32)
                for ts, value in item["values"]:
                    number = float(value)
                    if math.isnan(number):  # e.g. increase() across a gap: no data, not an error
                        continue
                    if not 0 <= number <= _FLOAT32_MAX:
                        bad.setdefault(key, f"count {value!r} at {ts} is not a non-negative number a float32 holds")
                        break
                    idx = (int(round(float(ts))) - first) // STEP_SECONDS
                    if 0 <= idx < window:
                        with np.errstate(over="ignore"):  # an overflowing sum is caught after the answer
                            arr[idx] += number
            except (KeyError, TypeError, ValueError, OverflowError) as exc:
                raise MetricsError(f"Prometheus answered garbage: {_short(exc)}", "MetricsGarbage") from exc


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _garbage(why: str) -> MetricsError:
    return MetricsError(f"Prometheus answered garbage: {why}", "MetricsGarbage")


def _short(exc, limit: int = 200) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
