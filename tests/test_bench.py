"""The bench suite cannot rot: every bench file's smoke case runs, and the report turns results into ratios."""

import json
import os
import re
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import torch

from bench import gpu_checks, host_overhead, report

ROOT = Path(__file__).resolve().parents[1]


def test_every_bench_file_runs_its_smoke_case_and_the_report_reads_its_results(tmp_path):
    """Each smoke case is measured (one warm-up and one timed round) and recorded; the report then finds a row of
    ratios for every op measured eager and fused, and for the upscale and data cases — so a renamed field or a case
    that stops recording loses no row silently. "fused" is the uncompiled fused arithmetic: the compiled one is
    checked against it in tests/ops/test_fused_compiled.py, and compiling it here cost 2–3 minutes."""
    results = tmp_path / "smoke.json"
    command = [sys.executable, "-m", "pytest", "bench", "--smoke", "-v", "-p", "no:cacheprovider"]
    result = subprocess.run(
        [*command, "--benchmark-json", str(results)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={
            **{name: value for name, value in os.environ.items() if not gpu_checks._changes_the_step(name)},
            "FASTGAN_BENCH_ONE_ROUND": "1",
            "FASTGAN_BENCH_FUSED": "fused-torch",  # no compiling
        },
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    for path in sorted((ROOT / "bench").glob("bench_*.py")):
        passed = [
            line for line in result.stdout.splitlines() if line.startswith(f"bench/{path.name}::") and "PASSED" in line
        ]
        assert passed, f"{path.name} ran no smoke case"
    data = json.loads(results.read_text())
    rows = report.rows(data)
    paired = {b["extra_info"]["op"] for b in data["benchmarks"] if b["extra_info"].get("provider") == "fused"}
    assert paired and {row["op"] for row in rows} == paired
    assert all(row["eager_ms"] > 0 and row["fused_ms"] > 0 and row["speedup"] > 0 for row in rows)
    assert all("interleaved_fused_ms" in row for row in rows if row["mode"] == "full")  # ops and training alike
    assert report.upscale_rows(data) and report.data_rows(data)
    assert report.main([str(results), "--out", str(tmp_path / "report")]) == 0
    assert "| cbn_relu_upsample |" in (tmp_path / "report.md").read_text()


def test_every_gpu_check_of_the_bench_selects_cases(capsys, monkeypatch):
    """The bench steps of `python -m bench.gpu_checks` select cases by name: renaming a case cannot leave a step, or
    a bench file of one, that a short GPU loan runs empty (the cuda-tests step selects by marker)."""
    bench_steps = [step.name for step in gpu_checks.STEPS if step.bench]
    assert gpu_checks.main(["--collect", "--only", *bench_steps]) == 0
    counts = dict(line.split(": ") for line in capsys.readouterr().out.splitlines())
    assert set(counts) == set(bench_steps) and all(re.fullmatch(r"[1-9]\d* cases", count) for count in counts.values())
    empty = gpu_checks.Step("empty", ("bench/bench_data.py", "bench/bench_upscale.py", "-k", "decode"), 1)
    monkeypatch.setattr(gpu_checks, "STEPS", (empty,))
    assert gpu_checks.main(["--collect"]) == 1
    assert "; bench/bench_upscale.py selects no case" in capsys.readouterr().out


def test_a_gpu_check_that_overruns_is_interrupted_and_keeps_what_it_measured(tmp_path, monkeypatch, capsys):
    """A step near its time limit gets Ctrl-C: pytest-benchmark still saves the cases it finished and leaves out the
    one cut short in its first timed round (`bench.interrupts`; without it none would be saved), the run goes on to
    the next step and ends with a failing status."""
    cases = tmp_path / "test_overrun.py"
    cases.write_text(
        "import time\n"
        "def test_quick(benchmark):\n    benchmark.pedantic(sum, args=([1, 2],), rounds=1)\n"
        "def test_slow(benchmark):\n    benchmark.pedantic(time.sleep, args=(120,), rounds=1)\n"
    )
    overrun = gpu_checks.Step("overrun", (str(cases), "--benchmark-only", "-p", "bench.interrupts"), 30)
    monkeypatch.setattr(gpu_checks, "STEPS", (overrun, gpu_checks.Step("next", ("--version",), 30)))
    # interrupted after 7 s, killed after 30 s: pytest-benchmark takes a few seconds to save on a loaded machine
    monkeypatch.setattr(gpu_checks, "GRACE_SECONDS", 23)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    on_sigterm = signal.getsignal(signal.SIGTERM)
    assert gpu_checks.main(["--out", str(tmp_path / "out"), "--archive", str(tmp_path / "returned" / "gpu.tgz")]) == 1
    assert signal.getsignal(signal.SIGTERM) is on_sigterm  # the caller's, back
    with tarfile.open(tmp_path / "returned" / "gpu.tgz") as returned:  # rewritten after each step
        assert {"out/overrun.json", "out/overrun.log", "out/next.log"} <= set(returned.getnames())
    assert [path.name for path in (tmp_path / "returned").iterdir()] == ["gpu.tgz"]
    summary = capsys.readouterr().out
    finished = re.search(r"^overrun: reached its limit: interrupted after (\d+) s \(limit 30 s\)$", summary, re.M)
    assert finished and int(finished.group(1)) < 30  # Ctrl-C sufficed
    assert "next: exit status 0" in summary
    saved = json.loads((tmp_path / "out" / "overrun.json").read_text())["benchmarks"]
    assert [result["name"] for result in saved] == ["test_quick"]
    assert "KeyboardInterrupt" in (tmp_path / "out" / "overrun.log").read_text()


def test_gpu_checks_need_a_gpu_and_an_out_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_checks.main(["--out", str(tmp_path / "out")]) == 2
    assert "no CUDA device here" in capsys.readouterr().err and not (tmp_path / "out").exists()
    with pytest.raises(SystemExit):
        gpu_checks.main([])
    assert "give --out DIR" in capsys.readouterr().err
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU, but the package is not installed
    find_spec = gpu_checks.importlib.util.find_spec
    monkeypatch.setattr(
        gpu_checks.importlib.util, "find_spec", lambda name: None if name == "fastgan.kernels" else find_spec(name)
    )
    assert gpu_checks.main(["--out", str(tmp_path / "out")]) == 2
    assert "pip install --no-deps --no-build-isolation -e ." in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_gpu_checks_default_steps_fit_one_device_command():
    """The steps run without --only fit the device machine's 10-minute command limit, with time for the editable
    install, imports and reports (about 40 s measured on a 2-core CPU)."""
    assert sum(step.seconds for step in gpu_checks.STEPS if step.default) <= 9 * 60


def _result(provider, median, saved, **info):
    extra = {"op": "cbn_relu_upsample", "case": "c", "mode": "full", "provider": provider, "saved_bytes": saved}
    extra |= {"device": "test device", "dtype": "float32", "fused_backend": "fused-torch"} | info
    return {"extra_info": extra, "stats": {"median": median}}


def test_report_pairs_providers_and_writes_table_and_chart(tmp_path):
    data = {
        "datetime": "2026-11-23",
        "benchmarks": [
            _result("eager", 0.004, 1000, traffic_bytes=300, minimum_traffic_bytes=100, fused_backend="triton"),
            _result("fused", 0.002, 250, traffic_bytes=120, minimum_traffic_bytes=100, fused_backend="triton"),
            _result("eager", 0.001, 10, op="lonely"),  # no fused partner: not a row
        ],
    }
    failed = {"name": "test_failed_after_timing", "extra_info": {}, "stats": {"median": 1.0}}  # kept by the plugin
    (tmp_path / "bench.json").write_text(json.dumps(data | {"benchmarks": [*data["benchmarks"], failed]}))
    [row] = report.rows(data)
    assert row["speedup"] == 2.0 and row["memory_ratio"] == 0.25
    assert row["traffic_vs_minimum"] == 1.2 and row["eager_traffic_vs_minimum"] == 3.0
    assert report.main([str(tmp_path / "bench.json"), "--out", str(tmp_path / "out" / "cpu.v2")]) == 0
    table = (tmp_path / "out" / "cpu.v2.md").read_text()  # the dot is part of the name, not a suffix to replace
    assert "| cbn_relu_upsample | c | full | 4.000 | 2.000 | 2.00× |" in table
    assert (tmp_path / "out" / "cpu.v2.png").stat().st_size > 1000


def test_report_gives_no_fused_traffic_for_torch_arithmetic(tmp_path):
    """The fused traffic model counts the Triton kernels' bytes: beside a CPU's torch-arithmetic provider only
    eager's ratio to the minimum is shown, also for results recorded before the suite stopped storing it."""
    data = {
        "benchmarks": [
            _result("eager", 0.004, 1000, traffic_bytes=300, minimum_traffic_bytes=100),
            _result("fused", 0.002, 250, traffic_bytes=120, minimum_traffic_bytes=100),
        ]
    }
    [row] = report.rows(data)
    assert "traffic_vs_minimum" not in row and row["eager_traffic_vs_minimum"] == 3.0
    assert "| – (3.00) |" in report.markdown(data)


def test_report_adds_graphed_iterations_and_gpu_busy_time(tmp_path):
    gpu = {"device_ms": 0.5, "device_achieved_gbps": 2400.0, "device_fraction_of_peak": 0.5}
    data = {
        "benchmarks": [
            _result("eager", 0.010, 1000, device_ms=4.0),
            _result("fused", 0.008, 400, **gpu),
            _result("compiled", 0.006, 900),
            _result("compiled-fused", 0.004, 300),
            _result("fused-graphs", 0.002, None),
            _result("compiled-graphs", 0.003, None),
        ]
    }
    for result in data["benchmarks"][4:]:
        del result["extra_info"]["saved_bytes"]  # a replay keeps nothing for autograd: not measured
    [row] = report.rows(data)
    assert row["fused_graphs_ms"] == 2.0 and "eager_graphs_ms" not in row and row["memory_ratio"] == 0.4
    assert row["compiled_graphs_ms"] == 3.0 and "compiled_fused_graphs_ms" not in row
    assert (row["compiled_ms"], row["compiled_fused_ms"]) == (6.0, 4.0)
    (tmp_path / "bench.json").write_text(json.dumps(data))
    assert report.main([str(tmp_path / "bench.json"), "--out", str(tmp_path / "gpu")]) == 0
    assert (
        "| – | 6.000 / 4.000 (1.50×) | – | 3.000 / – | – / 2.000 | 0.40 | – | – | – | 4.000 / 0.500 | 2400 (50 %) |"
        in (tmp_path / "gpu.md").read_text()
    )


def test_report_adds_the_interleaved_iteration(tmp_path):
    interleaved = _result("interleaved", 0.030, None, eager_ms=16.0, fused_ms=12.8)
    compiled = _result("interleaved-compiled", 0.020, None, eager_ms=10.0, fused_ms=8.0)
    for result in (interleaved, compiled):
        del result["extra_info"]["saved_bytes"]
    data = {"benchmarks": [_result("eager", 0.020, 1000), _result("fused", 0.010, 500), interleaved, compiled]}
    [row] = report.rows(data)
    assert row["interleaved_eager_ms"] == 16.0 and row["interleaved_fused_ms"] == 12.8
    assert row["interleaved_compiled_eager_ms"] == 10.0 and row["interleaved_compiled_fused_ms"] == 8.0
    (tmp_path / "bench.json").write_text(json.dumps(data))
    assert report.main([str(tmp_path / "bench.json"), "--out", str(tmp_path / "cpu")]) == 0
    expected = "| 20.000 | 10.000 | 2.00× | 16.000 / 12.800 (1.25×) | – / – | 10.000 / 8.000 (1.25×) | – / – |"
    assert expected in (tmp_path / "cpu.md").read_text()


def test_the_compile_steps_cases_are_reported_in_the_train_steps_rows(tmp_path):
    """The compile step measures only compiled providers: alone it has no eager/fused pair to table."""
    compiled = [_result("compiled", 0.006, 900), _result("compiled-fused", 0.004, 300)]
    (tmp_path / "compile.json").write_text(json.dumps({"benchmarks": compiled}))
    compile_step = next(step for step in gpu_checks.STEPS if step.name == "compile")
    assert not gpu_checks.write_report(compile_step, tmp_path)  # the train step's results missing: no rows
    pairs = [_result("eager", 0.010, 1000), _result("fused", 0.008, 400)]
    (tmp_path / "train.json").write_text(json.dumps({"benchmarks": pairs}))
    assert gpu_checks.write_report(compile_step, tmp_path)
    assert "| 6.000 / 4.000 (1.50×) |" in (tmp_path / "compile.md").read_text()
    assert len(json.loads((tmp_path / "train+compile.json").read_text())["benchmarks"]) == 4


def test_report_refuses_a_file_without_pairs(tmp_path, capsys):
    (tmp_path / "empty.json").write_text(json.dumps({"benchmarks": []}))
    assert report.main([str(tmp_path / "empty.json")]) == 2
    assert "no eager/fused pairs" in capsys.readouterr().err
    for content in ("[]", "null", "{}", json.dumps({"benchmarks": [{"extra_info": {}}]})):  # another tool's JSON
        (tmp_path / "other.json").write_text(content)
        assert report.main([str(tmp_path / "other.json")]) == 2
        assert "not a fastgan pytest-benchmark JSON" in capsys.readouterr().err
    (tmp_path / "latin1.json").write_bytes(b"\xff\xfe")
    assert report.main([str(tmp_path / "latin1.json")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_report_tables_upscaling_with_its_tiling_overhead(tmp_path):
    def upscale(provider, mode, median, **medians):
        extra = {
            "op": "upscale",
            "case": "512 image",
            "mode": mode,
            "provider": provider,
            "tiles": 9,
            "input_pixels": 512 * 512,
            "device": "test device",
        }
        return {"extra_info": extra | medians, "stats": {"median": median}}

    data = {
        "benchmarks": [
            upscale("torch", "whole", 1.0),
            upscale("torch", "tiled", 1.25),
            upscale("torch", "interleaved", 2.1, whole_ms=1000.0, tiled_ms=1080.0),
        ]
    }
    (tmp_path / "bench.json").write_text(json.dumps(data))
    rows = {row["mode"]: row for row in report.upscale_rows(data)}
    assert rows["tiled"]["tiled_over_whole"] == 1.25 and rows["tiled"]["tiles_per_s"] == 9 / 1.25
    assert rows["interleaved"]["tiled_over_whole"] == 1.08  # its own medians, not the separate whole case's
    assert report.main([str(tmp_path / "bench.json"), "--out", str(tmp_path / "up")]) == 0
    assert "| torch | 512 image | tiled | 1250.00 | 7.2 | 0.210 | 1.250 |" in (tmp_path / "up.md").read_text()


def test_report_tables_data_loading_with_the_data_wait(tmp_path):
    def data(provider, mode, median, items, **info):
        extra = {"op": "data", "case": "folder", "mode": mode, "provider": provider, "items": items}
        extra |= {"unit": "iterations" if mode == "train step" else "images", "device": "test device"} | info
        return {"extra_info": extra, "stats": {"median": median}}

    results = [
        data("torch", "batches", 0.5, 100),
        data("dali", "batches", 0.25, 100),
        data("torch", "train step", 2.0, 10, data_wait_fraction=0.01),
        data("dali", "train step", 2.5, 10, data_wait_fraction=0.002),
    ]
    (tmp_path / "bench.json").write_text(json.dumps({"benchmarks": results}))
    batches, step = report.data_rows({"benchmarks": results})
    assert batches["dali_over_torch"] == 2.0 and step["torch_rate"] == 5.0 and step["dali_wait"] == 0.002
    assert report.main([str(tmp_path / "bench.json"), "--out", str(tmp_path / "data")]) == 0
    table = (tmp_path / "data.md").read_text()
    assert "| folder | batches, images/s | 200.0 | 400.0 | 2.00 | – | – |" in table
    assert "| folder | train step, iterations/s | 5.0 | 4.0 | 0.80 | 1.00 % | 0.20 % |" in table


def test_host_overhead_tables_every_fused_op_and_restores_the_launchers(capsys):
    """Also the caller's thread count: it ran the rest of this suite on one thread."""
    from fastgan.kernels import mobilenet_score

    launcher, threads = mobilenet_score.on_device_of, torch.get_num_threads()
    host_overhead.main(["--calls", "2", "--rounds", "1"])
    assert torch.get_num_threads() == threads
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| ") and "µs" not in line]
    assert [row.split(" | ")[0] for row in rows] == [
        "| cbn_relu_upsample NCHW",
        "| cbn_relu_upsample NHWC",
        "| mobilenet_score",
        "| pixel_shuffle_prelu",
    ]
    assert all(float(value) > 0 for row in rows for value in row.strip("| ").split(" | ")[1:])
    assert mobilenet_score.on_device_of is launcher
    with pytest.raises(SystemExit):
        host_overhead.main(["--calls", "0"])
