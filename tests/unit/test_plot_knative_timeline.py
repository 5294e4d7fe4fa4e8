"""hack/plot-knative-timeline.py draws the JSON a Knative scenario writes (tests/knative/knative_helpers.Timeline)."""

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_timeline_becomes_a_png(tmp_path):
    peak = 1_800_000_000
    start = peak - 12 * 60
    samples = [{"t": start + 10 + i / 2, "revision": "fn-00001", "revision_min_scale": 2 if i < 6 else 9,
                "pa_desired": 2 if i < 7 else 9, "pa_actual": None, "replicas": 2 if i < 7 else 9,
                "ready": 2 if i < 8 else 9, "applied": None if i < 6 else 9} for i in range(20)]
    timeline = {"service": "ns/fn", "peak_at": peak, "bed_start": start,
                "traffic": [{"t": peak + 60 * m, "count": float(1000 - abs(m) * 20)} for m in range(-60, 30)],
                "plans": {"2027-01-15T07:48:00Z": [9, 9, 8, 7]}, "marks": [[start + 10, "policy created"]],
                "samples": samples, "sample_errors": [], "figures": {"floor": 9, "lead_min": 11.7, "revisions_created": 0}}
    source, out = tmp_path / "timeline.json", tmp_path / "timeline.png"
    source.write_text(json.dumps(timeline))
    result = subprocess.run([sys.executable, str(REPO / "hack" / "plot-knative-timeline.py"), str(source), str(out)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20_000
