"""``toyllora bench``: its timing statistics, the one-line error without torch, and the check that the
engines being timed compute the same numbers (JAX methods against each other; JAX against PyTorch + PEFT
when the optional extra ``toyllora[peft]`` is installed)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toyllora.harness import bench, bench_allora, bench_engine, bench_timing, bench_torch, bench_workers, cli


def test_median_ci_covers_the_median_and_interleaved_times_every_candidate():
    x = np.arange(1.0, 31.0)
    m = bench_timing.median_ci(x)
    assert m["lo"] <= m["median"] <= m["hi"] and m["n"] == 30 and m["lo"] > x[0] and m["hi"] < x[-1]
    calls = []
    r = bench_timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, warm=1)
    assert calls == ["a", "b"] * 4 and all(len(v) == 3 for v in r["seconds"].values())
    with pytest.raises(ValueError, match="repeats"):
        bench_timing.interleaved({"a": lambda: None}, 0)


def test_alternate_rounds_reverse_the_order_and_the_xla_cost_of_a_step_is_deterministic():
    calls = []
    bench_timing.interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, 3, warm=0,
                             alternate=True)
    assert calls == ["a", "b", "b", "a", "a", "b"]
    cost = lambda: bench_allora.step_candidates(16, 2, 4, methods=("lora", "allora_naive"))["cost"]
    first = cost()
    assert first == cost() and first["allora_naive"]["flops"] > first["lora"]["flops"] > 0   # it forms B A
    assert first["lora"]["bytes_accessed"] > 0


def test_against_peft_without_torch_is_one_line_exit_2_and_writes_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_torch, "missing", lambda: "PyTorch + PEFT not installed (torch missing); "
                        'install them with pip install "toyllora[peft]"')
    out = tmp_path / "bench.json"
    rc = cli.main(["bench", "--fast", "--against", "peft", "--no-compile-cache", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert err.startswith("toyllora: error: against: PyTorch + PEFT not installed") and "toyllora[peft]" in err
    assert not out.exists() and not any(tmp_path.iterdir())


def test_flop_count_of_the_toy_step_matches_a_hand_count():
    # L = 2, d = n = r = 1: forward 2·(2+4) = 12, backward 2·6 + 1·(2+2) = 16
    assert bench_engine.flops_per_step(d=1, n=1, r=1, layers=2) == 28


def test_the_timed_jax_steps_compute_the_same_loss_and_allora_the_same_update():
    """On the same weights, LoRA (s = 1), ALLoRA and the naive (listing) ALLoRA steps that the bench times
    have the same loss (same forward); the two ALLoRA steps make the same update, LoRA's differs."""
    d, r, n = 16, 2, 8
    W, x, y, A, B = bench_allora._case_inputs(d, r, n)
    out = {}
    for m in ("lora", "allora", "allora_naive"):
        step, cfg = bench_allora._make_step(m, r)
        out[m] = step(bench_allora._params(m, cfg, W, A, B), W, x, y)
    tol = 1e3 * float(jnp.finfo(jnp.float32).eps)
    rel = lambda a, b: float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(b)))
    assert rel(out["allora"][1], out["lora"][1]) <= tol and rel(out["allora_naive"][1], out["lora"][1]) <= tol
    (pa, _), (pn, _), (pl, _) = out["allora"], out["allora_naive"], out["lora"]
    assert rel(pn.A, pa.A) <= tol and rel(pn.B, pa.B) <= tol
    assert rel(pl.A - A, pa.A - A) > 100 * tol   # ALLoRA's update is not LoRA's


def test_step_table_and_aims_read_a_result():
    ms = {"median": 2.0, "lo": 1.0, "hi": 3.0}
    case = {"d": 4096, "r": 64, "n": 64, "time_ms": {"lora": 1.0, "allora": 1.02, "allora_naive": 3.0},
            "ratio": {"allora": 1.02}, "ratio_ci95": {"allora": [1.0, 1.04]},
            "torch_ms": {"torch_lora": ms}, "torch_ratios": {"torch_lora/lora": ms}}
    rows = bench.step_table({"cases": [case]})
    assert rows[1][:3] == ("LoRA", "1.00", "2.00 [1.00, 3.00]") and rows[1][4] == "2.00" and rows[2][2] == "-"
    eng = {"small": {"ratios": {"peft_eager/jax_vmapped": {"median": 30.0, "lo": 1, "hi": 2}}},
           "medium": {"ratios": {"matmul_share_scan": {"median": 0.5, "lo": 0.4, "hi": 0.6}}}}
    a = bench.aims({"engine": eng, "allora": {"cases": [case]}})
    assert a["small_vs_peft_eager"]["met"] is True and a["medium_matmul_share"]["met"] is False
    assert a["medium_vs_peft_eager"]["met"] is None and a["allora_over_lora"]["met"] is True


def test_worker_scaling_times_a_job_alone_and_in_concurrent_processes_and_reports_a_dead_worker():
    r = bench_workers.scaling(fast=True, jobs=2, which=("python",))
    v = r["rows"]["python"]
    assert r["jobs"] == 2 and len(v["together_s"]) == 2 and v["alone_s"] > 0 and min(v["together_s"]) > 0
    assert v["scaling"] == pytest.approx(2 * v["alone_s"] / np.median(v["together_s"]))
    rows = bench_workers.table(r)
    assert rows[0][3] == "throughput of 2 / of 1" and rows[1][0] == "python" and len(rows) == 2
    with pytest.raises(RuntimeError, match="failed before timing: ValueError: job: unknown value"):
        bench_workers._together("no-such-job", 1, 1)
    with pytest.raises(ValueError, match="jobs: must be an integer >= 1"):
        bench_workers.scaling(jobs=0)
    with pytest.raises(ValueError, match="job: unknown value 'gpu'"):
        bench_workers.scaling(which=("gpu",))


def test_jax_and_pytorch_peft_compute_the_same_loss_and_gradients():
    pytest.importorskip("torch")
    pytest.importorskip("peft")
    c = bench_torch.consistency(d=8, n=16, r=2, layers=2)
    assert c["ok"], c["errors"]
    assert c["allora_vs_lora_grad_A"] > 100 * c["tolerance"]   # the check would see a plain-LoRA backward


def test_doctests():
    import doctest

    for mod in (bench, bench_timing, bench_torch):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0, mod.__name__
