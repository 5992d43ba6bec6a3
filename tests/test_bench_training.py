"""``benchmarks/bench_training.py`` runs every recipe under every precision and reports positive rates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_training.py"


def test_tiny_run_reports_every_recipe_and_variant(tmp_path):
    out = tmp_path / "bench.json"
    # A subprocess, as users run it: the script's own imports, argparse and thread settings are exercised.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(BENCH), "--tiny", "--steps", "2", "--warmup", "1", "--threads", "1",
                          "--json", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    text = run.stdout
    for words in ("synthetic", "load average", "CPU capability", "native CPU bf16", "threads"):
        assert words in text
    report = json.loads(out.read_text())
    assert report["synthetic"] and report["tiny"]
    assert set(report["environment"]) >= {"device", "threads", "cpu_capability", "cpu_native_bf16", "load_average"}
    assert set(report["recipes"]) == {"codec", "vocoder", "lm"}
    for recipe, numbers in report["recipes"].items():
        assert numbers["skipped"] == {}, recipe
        assert set(numbers["variants"]) == {"fp32", "bf16"}, recipe
        assert f"\n{recipe}:" in text
        for name, row in numbers["variants"].items():
            assert row["examples_per_s"] > 0 and row["units_per_s"] > 0 and row["vs_fp32"] > 0, (recipe, name)
            assert len(numbers["step_times"][name]) == 2
            assert any(line.startswith(name + " ") for line in text.splitlines())
        assert numbers["variants"]["fp32"]["vs_fp32"] == 1.0
    assert report["recipes"]["lm"]["unit"] == "tokens" and report["recipes"]["codec"]["unit"] == "audio s"
