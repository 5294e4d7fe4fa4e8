"""Operator settings: flags > env > defaults, validated once with one-line errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from mesp_operator.errors import SettingsError
from mesp_operator.settings import OperatorSettings, parse_settings


def test_defaults_are_valid():
    s = parse_settings([], env={})
    assert s == OperatorSettings()
    assert s.template_cooldown_minutes == 10


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


@pytest.mark.parametrize("argv,env,message", [
    (["--prometheus-url", "prom:9090"], {}, "--prometheus-url: 'prom:9090' is not an http(s) URL"),
    (["--loop-interval-seconds", "0"], {}, "--loop-interval-seconds: must be a positive number of seconds, got 0.0"),
    (["--metrics-preset", "knative-2"], {}, "--metrics-preset: unknown preset 'knative-2'; choose one of "
     "knative-legacy, knative-otel, knative-otel-activator"),
    (["--context-minutes", "10"], {}, "--context-minutes: must be between 60 and 20160, got 10"),
    (["--revision-annotations", "maybe"], {}, "--revision-annotations: must be one of auto, revision, template"),
    ([], {"MESP_STALE_PLAN_SECONDS": "soon"}, "MESP_STALE_PLAN_SECONDS='soon' is not a valid value"),
    ([], {"MESP_VERBOSE": "perhaps"}, "MESP_VERBOSE='perhaps' is not a valid value"),
    (["--model", "/nonexistent/model"], {}, "--model: /nonexistent/model is not a directory"),
    (["--kubeconfig", "/nonexistent/kubeconfig"], {}, "--kubeconfig: /nonexistent/kubeconfig does not exist"),
    (["--write-concurrency", "0"], {}, "--write-concurrency: must be between 1 and 128"),
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
