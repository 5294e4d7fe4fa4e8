"""Operator settings: flags > env > defaults, validated once with one-line errors."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from mesp_core.policy import DEFAULT_COLD_START_COST
from mesp_operator.errors import SettingsError
from mesp_operator.settings import OperatorSettings, _parser, parse_settings


def test_defaults_are_valid():
    s = parse_settings([], env={})
    assert s == OperatorSettings()
    assert s.template_cooldown_minutes == 10
    assert s.cold_start_cost == DEFAULT_COLD_START_COST  # the library's default, written once there


def test_flags_override_env_and_env_overrides_defaults():
    env = {"MESP_PROMETHEUS_URL": "http://prom:9090", "MESP_LOOP_INTERVAL_SECONDS": "30",
           "MESP_NAMESPACE": "a, b", "MESP_VERBOSE": "true", "MESP_TEMPLATE_COOLDOWN_SECONDS": "90"}
    s = parse_settings(["--loop-interval-seconds", "5", "--metrics-preset", "knative-otel"], env=env)
    assert s.prometheus_url == "http://prom:9090"
    assert s.loop_interval_seconds == 5.0
    assert s.namespaces == ("a", "b")
    assert s.verbose is True
    assert s.metrics_preset == "knative-otel"
    assert s.template_cooldown_minutes == 2  # 90 s rounds up to whole minutes


_COST_RULE = "--cold-start-cost: must be a number of idle instance-minutes in (0, 1e+06]"


@pytest.mark.parametrize("argv,env,message", [
    (["--prometheus-url", "prom:9090"], {}, "--prometheus-url: 'prom:9090' is not an http(s) URL"),
    (["--loop-interval-seconds", "0"], {}, "--loop-interval-seconds: must be a positive number of seconds, got 0.0"),
    (["--metrics-preset", "knative-2"], {}, "--metrics-preset: unknown preset 'knative-2'; choose one of "
     "auto, knative-legacy, knative-otel, knative-otel-activator"),
    (["--promql", "sum(x)"], {}, "--promql: name the preset whose namespace and service labels the query returns "
     "with --metrics-preset (auto cannot tell from a query of yours)"),
    (["--context-minutes", "10"], {}, "--context-minutes: must be between 60 and 20160, got 10"),
    (["--revision-annotations", "maybe"], {}, "--revision-annotations: must be one of auto, revision, template"),
    (["--model-backend", "jax"], {}, "--model-backend: must be one of auto, numpy, torch"),
    ([], {"MESP_STALE_PLAN_SECONDS": "soon"}, "MESP_STALE_PLAN_SECONDS='soon' is not a valid value"),
    ([], {"MESP_VERBOSE": "perhaps"}, "MESP_VERBOSE='perhaps' is not a valid value"),
    (["--model", "/nonexistent/model"], {}, "--model: /nonexistent/model is not a directory"),
    (["--kubeconfig", "/nonexistent/kubeconfig"], {}, "--kubeconfig: /nonexistent/kubeconfig does not exist"),
    (["--write-concurrency", "0"], {}, "--write-concurrency: must be between 1 and 128"),
    (["--cold-start-cost", "0"], {}, f"{_COST_RULE}, got 0.0"),
    (["--cold-start-cost", "-3"], {}, f"{_COST_RULE}, got -3.0"),
    (["--cold-start-cost", "inf"], {}, f"{_COST_RULE}, got inf"),
    ([], {"MESP_COLD_START_COST": "lots"}, "MESP_COLD_START_COST='lots' is not a valid value"),
    (["--clock-speed", "30"], {}, "--clock-speed: needs --clock-start (the wall clock runs at its own speed)"),
    (["--clock-start", "1767225600", "--clock-speed", "0"], {}, "--clock-speed: must be above 0 and at most 3600"),
    (["--shards", "-1"], {}, "--shards: must be between 0 (no sharding) and 1024"),
    ([], {"MESP_LEASE_DURATION_SECONDS": "1"}, "--lease-duration-seconds: must be between 3 and 3600 seconds"),
    (["--replica-id", "Pod_A"], {}, "--replica-id: 'Pod_A' must be lowercase letters, digits, '-' or '.' (at most 63)"),
    (["--lease-name", "x" * 64], {}, f"--lease-name: {'x' * 64!r} must be lowercase letters, digits, '-' or '.' "
     "(at most 63)"),
])
def test_bad_values_get_one_clear_line(argv, env, message):
    with pytest.raises(SettingsError) as info:
        parse_settings(argv, env=env)
    assert str(info.value) == message


def test_a_directory_without_manifest_is_not_a_model(tmp_path: Path):
    with pytest.raises(SettingsError, match="has no manifest.json"):
        parse_settings(["--model", str(tmp_path)], env={})


def test_cli_prints_one_line_and_exits_2_without_traceback():
    result = subprocess.run([sys.executable, "-m", "mesp_operator", "--max-scale-cap", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr == "mesp operator: --max-scale-cap: must be >= 1\n"


def test_the_operator_does_not_import_training_or_plotting_libraries():
    code = ("import sys, mesp_operator.main, mesp_operator.handlers, mesp_operator.reconcile\n"
            "from mesp_operator.settings import parse_settings\n"
            "parse_settings([], env={})\n"
            "print(sorted(m for m in ('optuna', 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


GOLDEN_MODEL = Path(__file__).resolve().parents[3] / "tests" / "golden" / "model_v1"
# Every setting's flag and environment variable, with a valid value and what it parses to. The chart
# and users' scripts depend on these names.
EVERY_SETTING = [
    ("model_path", "--model", "MESP_MODEL", str(GOLDEN_MODEL), GOLDEN_MODEL),
    ("kubeconfig", "--kubeconfig", "MESP_KUBECONFIG", __file__, Path(__file__)),
    ("prometheus_url", "--prometheus-url", "MESP_PROMETHEUS_URL", "http://prom:9090", "http://prom:9090"),
    ("prometheus_timeout_seconds", "--prometheus-timeout-seconds", "MESP_PROMETHEUS_TIMEOUT_SECONDS", "2.5", 2.5),
    ("metrics_preset", "--metrics-preset", "MESP_METRICS_PRESET", "knative-otel", "knative-otel"),
    ("promql", "--promql", "MESP_PROMQL", "sum(x)", "sum(x)"),
    ("loop_interval_seconds", "--loop-interval-seconds", "MESP_LOOP_INTERVAL_SECONDS", "30", 30.0),
    ("context_minutes", "--context-minutes", "MESP_CONTEXT_MINUTES", "120", 120),
    ("cold_start_cost", "--cold-start-cost", "MESP_COLD_START_COST", "25", 25.0),
    ("stale_plan_seconds", "--stale-plan-seconds", "MESP_STALE_PLAN_SECONDS", "90", 90.0),
    ("max_scale_cap", "--max-scale-cap", "MESP_MAX_SCALE_CAP", "7", 7),
    ("revision_annotations", "--revision-annotations", "MESP_REVISION_ANNOTATIONS", "template", "template"),
    ("template_cooldown_seconds", "--template-cooldown-seconds", "MESP_TEMPLATE_COOLDOWN_SECONDS", "120", 120.0),
    ("template_hysteresis", "--template-hysteresis", "MESP_TEMPLATE_HYSTERESIS", "3", 3),
    ("write_concurrency", "--write-concurrency", "MESP_WRITE_CONCURRENCY", "2", 2),
    ("namespaces", "--namespace", "MESP_NAMESPACE", "team-a", ("team-a",)),
    ("metrics_port", "--metrics-port", "MESP_METRICS_PORT", "0", 0),
    ("metrics_address", "--metrics-address", "MESP_METRICS_ADDRESS", "127.0.0.1", "127.0.0.1"),
    ("liveness_endpoint", "--liveness-endpoint", "MESP_LIVENESS_ENDPOINT", "http://0.0.0.0:8081/healthz",
     "http://0.0.0.0:8081/healthz"),
    ("model_backend", "--model-backend", "MESP_MODEL_BACKEND", "torch", "torch"),
    ("torch_threads", "--torch-threads", "MESP_TORCH_THREADS", "2", 2),
    ("clock_start", "--clock-start", "MESP_CLOCK_START", "1767225600", 1767225600.0),
    ("clock_speed", "--clock-speed", "MESP_CLOCK_SPEED", "30", 30.0),
    ("clock_anchor", "--clock-anchor", "MESP_CLOCK_ANCHOR", "1767225000", 1767225000.0),
    ("shards", "--shards", "MESP_SHARDS", "16", 16),
    ("replica_id", "--replica-id", "MESP_REPLICA_ID", "mesp-0", "mesp-0"),
    ("lease_namespace", "--lease-namespace", "MESP_LEASE_NAMESPACE", "mesp-system", "mesp-system"),
    ("lease_name", "--lease-name", "MESP_LEASE_NAME", "mesp", "mesp"),
    ("lease_duration_seconds", "--lease-duration-seconds", "MESP_LEASE_DURATION_SECONDS", "20", 20.0),
]


@pytest.mark.parametrize("name,flag,variable,raw,value", EVERY_SETTING, ids=[s[0] for s in EVERY_SETTING])
def test_every_setting_is_read_from_its_flag_and_its_variable(name, flag, variable, raw, value):
    # A cluster-wide query needs a named preset (its labels); the other settings stand alone.
    base = {"promql": ["--metrics-preset", "knative-legacy"],
            "clock_speed": ["--clock-start", "1767225600"],
            "clock_anchor": ["--clock-start", "1767225600"]}.get(name, [])
    assert getattr(parse_settings([*base, flag, raw], env={}), name) == value
    assert getattr(parse_settings(base, env={variable: raw}), name) == value


def test_the_flags_are_exactly_the_settings_and_each_has_help_with_its_default():
    options = {a.dest: a for a in _parser()._actions if a.dest != "help"}
    assert set(options) == {f.name for f in dataclasses.fields(OperatorSettings)}
    assert {name: options[name].option_strings for name, *_ in EVERY_SETTING} == \
        {name: [flag] for name, flag, *_ in EVERY_SETTING}
    assert options["verbose"].option_strings == ["--verbose"] and parse_settings([], {"MESP_VERBOSE": "1"}).verbose
    assert all(a.help for a in options.values())
    assert options["prometheus_url"].help == "Prometheus base URL (default http://127.0.0.1:9090)"
    assert options["loop_interval_seconds"].help.endswith("(default 60)")
    assert options["cold_start_cost"].help.startswith("how many idle instance-minutes one avoided cold start")
    assert options["cold_start_cost"].help.endswith("(default 10)")
    assert options["metrics_preset"].help.endswith("picks the one whose metric family Prometheus holds (default auto)")
    # One default for the CLI and the chart: auto (tests/unit/test_chart.py checks the chart's).
    assert parse_settings([], env={}).metrics_preset == "auto"
