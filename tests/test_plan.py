"""Whole-model planning: activity counts vs the real host stream, integer linear vs float,
MILP planner on a synthetic profile, and profile -> plan -> compile -> run on SmolLM2 (models)."""
import json
import math

import numpy as np
import pytest

from nmaccel.errors import NmaccelError
from nmaccel.pack.api import pack_weights
from nmaccel.plan import target as tg
from nmaccel.plan.policy import parse_budget, solve
from nmaccel.plan.profile import DENSE_INT8, config
from nmaccel.plan.runner import integer_linear, quantize_tokens


@pytest.mark.parametrize("cfg", [DENSE_INT8, config(2, 4, 4, group_size=32), config(4, 8, 8)])
def test_activity_counts_equal_the_encoded_stream(rng, cfg):
    """The cycle-model replay counts exactly the host words the encoder writes and the top sends."""
    from nmaccel.program.encoder import encode_gemm
    t = tg.Target(rows=2, cols=2, t_max=4, k_tiles_max=8, n_tiles_max=8, raw_bits=48)
    w = rng.standard_normal((10, 60)).astype(np.float32)
    pk = pack_weights(w, n_keep=cfg["n_keep"], m_group=cfg["m_group"], bits=cfg["bits"],
                      group_size=cfg["group_size"])
    x = rng.integers(-127, 128, size=(11, 60))
    prog = encode_gemm(pk, x, t.top, None, group_scales=pk.granularity == "group")
    words, jobs, mode = prog.words, prog.jobs, prog.mode
    act = {}
    cyc = tg.gemm_cycles(cfg, t, 11, 60, 10, activity=act)
    assert cyc > 0
    assert sum(v for k, v in act.items() if k.startswith("words_") and k != "words_out") == len(words)
    assert act["words_out"] == sum(j.n_nt * j.n_steps for j in jobs) * t.top.words("out")
    e = tg.energy_pj(act, t, mode)
    assert e["dram_high"] == 2 * e["dram_low"] > 0 and e["compute"] > 0 and e["sram"] > 0


@pytest.mark.parametrize("kw", [dict(n_keep=1, m_group=1, bits=8), dict(n_keep=2, m_group=4, bits=4, group_size=128)])
def test_integer_linear_matches_float(rng, kw):
    """Tolerance: per-token INT8 activations (half-LSB error each) and the group-scale top's
    16-bit multipliers; relative error vs x @ W_deq.T stays under 2% for Gaussian data."""
    w = rng.standard_normal((64, 256)).astype(np.float32)
    pk = pack_weights(w, **kw)
    x = rng.standard_normal((5, 256)).astype(np.float32)
    y, x_q, acc = integer_linear(pk, x)
    ref = x.astype(np.float64) @ pk.dequantize().astype(np.float64).T
    assert np.linalg.norm(y - ref) / np.linalg.norm(ref) < 0.02
    assert np.abs(x_q).max() <= 127 and acc.dtype.kind == "i"
    q, s = quantize_tokens(np.zeros((2, 3)))
    assert not q.any() and np.all(s == 1.0)


def _synthetic_profile():
    """3 layers (2 types) x 3 configurations with known cycles, errors and sensitivities."""
    cfgs = [DENSE_INT8, config(2, 4, 8, method="wanda"), config(2, 4, 4, group_size=128, method="wanda")]
    layers = [("blk.0.attn_q.weight", "attn_q"), ("blk.0.ffn_up.weight", "ffn_up"), ("blk.1.ffn_up.weight", "ffn_up")]
    cyc = {cfgs[0]["name"]: 400, cfgs[1]["name"]: 200, cfgs[2]["name"]: 100}
    err = {cfgs[0]["name"]: 1e-4, cfgs[1]["name"]: 1e-2, cfgs[2]["name"]: 2e-2}
    ent = {n: {c["name"]: {"sqnr_db": 40.0 - 10 * i, "out_err_rel": err[c["name"]] * (1 + li), "storage_bits": 1000 - 100 * i,
                           "cycles_prefill": cyc[c["name"]] * 4, "cycles_decode": cyc[c["name"]], "bits_per_weight": 8}
               for i, c in enumerate(cfgs)} for li, (n, _) in enumerate(layers)}
    sens = {c["name"]: {t: {"dlog_ppl": d} for t, d in (("attn_q", 0.01 * (i + 1) ** 2), ("ffn_up", 0.02 * (i + 1) ** 2))}
            for i, c in enumerate(cfgs)}
    return {"schema": "nmaccel.profile/1", "model": {"spec": "x", "sha256": "0"}, "configs": cfgs,
            "layers": [{"name": n, "type": t, "shape": [8, 8]} for n, t in layers], "entries": ent,
            "sensitivity": sens, "target": tg.Target().as_dict(), "prefill_tokens": 4,
            "calibration": {}}


def test_planner_meets_budgets_exactly_like_brute_force():
    import itertools
    prof = _synthetic_profile()
    from nmaccel.plan.policy import tables
    _, _, cn, cyc, d, sq, _ = tables(prof, "prefill")
    for budget in ("ppl:1.05", "ppl:1.1", "ppl:1.3", "speedup:2", "speedup:3", "sqnr:25"):
        plan = solve(prof, budget)
        kind, v = parse_budget(budget)
        pick = [cn.index(l["config"]["name"]) for l in plan["layers"]]
        best = None
        for combo in itertools.product(range(3), repeat=3):
            c = sum(cyc[i, j] for i, j in enumerate(combo))
            dd = sum(d[i, j] for i, j in enumerate(combo))
            ok = {"ppl": dd <= math.log(v) + 1e-12, "speedup": c <= cyc[:, 0].sum() / v + 1e-9,
                  "sqnr": all(sq[i, j] >= v for i, j in enumerate(combo))}[kind]
            score = dd if kind == "speedup" else c
            if ok and (best is None or score < best - 1e-12):
                best = score
        got = sum(d[i, j] for i, j in enumerate(pick)) if kind == "speedup" else sum(cyc[i, j] for i, j in enumerate(pick))
        assert got == pytest.approx(best), budget


def test_uniform_plan_predicts_from_profile_or_cycle_model():
    from nmaccel.plan.policy import tables, uniform
    prof = _synthetic_profile()
    _, _, cn, cyc, d, _, _ = tables(prof, "prefill")
    for j, c in enumerate(prof["configs"]):
        plan = uniform(prof, c)
        assert [l["config"]["name"] for l in plan["layers"]] == [c["name"]] * 3
        assert plan["predicted"]["ppl_ratio"] == pytest.approx(math.exp(d[:, j].sum()))
        assert plan["predicted"]["speedup_prefill"] == pytest.approx(cyc[:, 0].sum() / cyc[:, j].sum())
    other = config(4, 8, 4, group_size=128, method="magnitude")      # not profiled: cycle model, no PPL
    plan = uniform(prof, other)
    t = tg.Target.from_dict(prof["target"])
    assert plan["predicted"]["ppl_ratio"] is None
    assert plan["layers"][0]["predicted"]["cycles_decode"] == tg.gemm_cycles(other, t, 1, 8, 8)
    with pytest.raises(NmaccelError, match="configuration"):
        uniform(prof, {**other, "name": "bogus"})


def test_layer_sensitivity_keeps_a_layers_measured_cost():
    """A layer measured alone at the reference configuration costs at least that (scaled by its
    output error per configuration); without the measurement the type share stands."""
    from nmaccel.plan.policy import tables
    prof = _synthetic_profile()
    _, _, cn, _, d0, _, _ = tables(prof, "prefill")
    ref = cn[2]
    prof["layer_sensitivity"] = {"config": ref, "dlog_ppl": {"blk.0.attn_q.weight": -0.01,
                                                             "blk.0.ffn_up.weight": 0.5,
                                                             "blk.1.ffn_up.weight": 0.0}}
    _, _, _, _, d, _, _ = tables(prof, "prefill")
    e = lambda n, c: prof["entries"][n][c]["out_err_rel"]
    for j, c in enumerate(cn):
        assert d[1, j] == pytest.approx(max(d0[1, j], 0.5 * e("blk.0.ffn_up.weight", c) / e("blk.0.ffn_up.weight", ref)))
    np.testing.assert_array_equal(d[[0, 2]], d0[[0, 2]])      # negative / zero own cost: type share
    assert d[1, 2] == pytest.approx(0.5) and d[1, 2] > d0[1, 2]
    del prof["layer_sensitivity"]["dlog_ppl"]["blk.1.ffn_up.weight"]  # incomplete: not used
    np.testing.assert_array_equal(tables(prof, "prefill")[4], d0)


@pytest.mark.parametrize("budget,best", [("ppl:1.0001", "best reachable perplexity ratio"),
                                         ("speedup:9", "best reachable speedup 4.000x"),
                                         ("sqnr:45", "best reachable per-layer SQNR 40.00 dB")])
def test_infeasible_budget_names_best_reachable(budget, best):
    with pytest.raises(NmaccelError, match=best):
        solve(_synthetic_profile(), budget)


@pytest.mark.parametrize("bad", ["ppl", "ppl:0.9", "speed:2", "sqnr:x", "ppl:nan"])
def test_bad_budget_is_one_line_error(bad):
    with pytest.raises(NmaccelError, match="budget"):
        parse_budget(bad)


def test_fmax_comes_from_the_results_file():
    f, src = tg.fmax(tg.Target(rows=2, cols=2, pipeline="all"))
    rows = json.loads((tg.REPO / src["file"]).read_text())
    assert any(r.get("block") == "top" and r["fmax_mhz"] == f for r in rows)
    with pytest.raises(NmaccelError, match="no measured fmax"):
        tg.fmax(tg.Target(rows=7, cols=7))


@pytest.mark.models
@pytest.mark.tools
@pytest.mark.slow
def test_smollm2_profile_plan_compile_run(tmp_path, capsys):
    """Fresh pipeline on one block: profile --quick -> plan -> compile -> run golden and verilator."""
    from nmaccel.cli import main
    prof, plan, prog = tmp_path / "p.json", tmp_path / "plan.json", tmp_path / "prog"
    assert main(["profile", "smollm2", "-o", str(prof), "--quick", "--blocks", "1",
                 "--calib-tokens", "32", "--sens-tokens", "32"]) == 0
    p = json.loads(prof.read_text())
    assert len(p["layers"]) == 7 and p["model"]["sha256"] and p["commit"]
    assert set(p["sensitivity"]) >= {c["name"] for c in p["configs"]}
    assert main(["profile", "smollm2", "-o", str(prof), "--quick", "--blocks", "1",   # resumes: no work
                 "--calib-tokens", "32", "--sens-tokens", "32"]) == 0
    assert main(["plan", str(prof), "--budget", "speedup:1.5", "-o", str(plan)]) == 0
    assert main(["plan", str(prof), "--budget", "speedup:50", "-o", str(tmp_path / "x.json")]) == 2
    assert "best reachable speedup" in capsys.readouterr().err
    assert main(["compile", "smollm2", str(plan), "-o", str(prog)]) == 0
    assert main(["compile", "smollm2", str(plan), "-o", str(prog)]) == 2          # never overwrites
    capsys.readouterr()
    assert main(["run", str(prog), "--backend", "verilator", "--layers", "blk.0.attn_k.weight",
                 "--tokens", "16", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["rtl_checks"][0]["outputs_equal_golden"] and r["rtl_checks"][0]["cycles_equal_model"]
    assert r["speedup_vs_dense_int8"] >= 1.5 * 0.999 and r["tokens_per_s_decode"] > 0
    assert 0 < r["utilization_decode"] < r["utilization_prefill"] <= 1
    for k in ("ppl", "dense_ppl", "fmax_mhz", "energy_uj_per_token", "bits_per_weight", "tokens_per_s_prefill"):
        assert k in r
    # a layer file that no longer matches the manifest is refused
    f = next((prog / "layers").iterdir())
    f.write_bytes(f.read_bytes()[:-1] + b"\0")
    assert main(["run", str(prog), "--tokens", "8"]) == 2
