"""Whole-model run of a compiled program: planned linears through the accelerator's integer
pipeline, the rest (embeddings, norms, RoPE, attention softmax, LM head) in float on the host.

Per planned linear and token: activations are quantized to INT8 per token (symmetric, scale
max|x_t| / 127, computed on the host), the GEMM runs as the top computes it (golden twin:
nmaccel.run.runner.reference, i.e. exact integer sums, with fixed-point group scales on the
group-scale top), the raw sums come back and the host multiplies them by the activation scale and
the weight scale (per channel, or the group-scale top's per-channel base 2^(E-F)). Cycles and
activity per layer come from the cycle model replay (nmaccel.plan.target.gemm_cycles) for a
prefill GEMM of the plan's T and a decode GEMM (T = 1). With backend pyrtl / verilator, the layers
named in `rtl_layers` also run through the RTL on the first `rtl_tokens` tokens: outputs must
equal golden bit for bit and cycles must equal the model.
"""
import time

import numpy as np

from nmaccel.errors import require
from nmaccel.golden.groupscale import groupscale_params
from nmaccel.models.llama import Llama
from nmaccel.models.loaders import heldout_text
from nmaccel.plan import target as tg
from nmaccel.plan.profile import DENSE_INT8, ModelSource, pack_config
from nmaccel.run.runner import reference, run_gemm

A_MAX = 127
_BASELINES = {}


def quantize_tokens(x):
    """Per-token symmetric INT8: (x_q int64 (T, K), scale float64 (T,))."""
    x = np.asarray(x, dtype=np.float64)
    s = np.abs(x).max(axis=1) / A_MAX
    s = np.where(s > 0, s, 1.0)
    return np.clip(np.floor(x / s[:, None] + 0.5), -A_MAX, A_MAX).astype(np.int64), s


def out_scale(packed):
    """(group_scales, float64 (out,)): value of one raw-sum LSB per unit activation scale."""
    if packed.granularity == "group":
        return True, groupscale_params(packed).acc_scale
    return False, np.asarray(packed.column_scales(padded=True)[:, 0], dtype=np.float64)


def integer_linear(packed, x):
    """y (T, out) float32 of x (T, in) through the integer pipeline; also (x_q, acc)."""
    gs, osc = out_scale(packed)
    x_q, xs = quantize_tokens(x)
    acc = reference(packed, x_q, group_scales=gs)
    return (acc * xs[:, None] * osc[None, :]).astype(np.float32), x_q, acc


def integer_model(model, packed_layers, capture=None):
    """A copy of Llama `model` whose linears in `packed_layers` run through integer_linear.
    capture: optional dict filled with the first call's (x_q, acc) per layer."""

    class IntLlama(Llama):
        def _linear(self, name, x, on_input):
            pk = packed_layers.get(name)
            if pk is None:
                return super()._linear(name, x, on_input)
            x2 = x.reshape(-1, x.shape[-1])
            y, x_q, acc = integer_linear(pk, x2)
            if capture is not None and name not in capture:
                capture[name] = (x_q, acc)
            return y.reshape(*x.shape[:-1], -1)

    new = IntLlama.__new__(IntLlama)
    new.__dict__.update(model.__dict__)
    return new


def layer_costs(cfg, target, shape, T):
    """Cycles and activity-based energy of one linear (out, in) for a T-token GEMM and T=1."""
    out = {}
    for phase, t in (("prefill", T), ("decode", 1)):
        act = {}
        cyc = tg.gemm_cycles(cfg, target, t, shape[1], shape[0], activity=act)
        e = tg.energy_pj(act, target, tg.mode_of(cfg))
        out[phase] = {"tokens": t, "cycles": cyc, "activity": act, "energy_pj": e}
    return out


def totals(costs, phase):
    cyc = sum(c[phase]["cycles"] for c in costs.values())
    e = {k: sum(c[phase]["energy_pj"][k] for c in costs.values()) for k in ("compute", "sram", "dram_low", "dram_high")}
    return cyc, e


def run_program(prog, *, backend="golden", rtl_layers=(), rtl_tokens=2, text=None, n_tokens=512,
                ctx=256, fmax_file=None, progress=True):
    """Run a loaded program (nmaccel.plan.compiler.load_program) on a text; returns a result dict."""
    require(backend in ("golden", "pyrtl", "verilator"), f"backend {backend!r}: use golden, pyrtl or verilator")
    t0 = time.time()
    target = tg.Target.from_dict(prog["manifest"]["target"])
    fmax, fsrc = tg.fmax(target, fmax_file)
    src = ModelSource(prog["manifest"]["model"]["spec"])
    require(src.sha256 == prog["manifest"]["model"]["sha256"],
            f"model {src.spec} has sha256 {src.sha256[:12]}..., the program was compiled for "
            f"{prog['manifest']['model']['sha256'][:12]}...: recompile the program for this model")
    require(src.kind == "llama", "nmaccel run measures perplexity of Llama models (smollm2 or a Llama .gguf)")
    packed = prog["packed"]
    unknown = [n for n in rtl_layers if n not in packed]
    require(not unknown, f"layer {unknown[0] if unknown else ''!r} is not in the program: use one of "
            f"{', '.join(list(packed)[:3])}, ... (see manifest.json)")
    require(backend != "golden" or not rtl_layers, "--layers selects layers for the RTL: use --backend pyrtl or verilator")
    ids = np.asarray(src.tokenizer.encode(text if text is not None else heldout_text()), dtype=np.int64)[:n_tokens]
    require(ids.size >= 2, "the text gives fewer than 2 tokens: pass a longer --text")
    ctx = min(ctx, ids.size)
    model = src.model
    T = int(prog["manifest"]["prefill_tokens"])
    key = (src.sha256, ids.tobytes(), ctx, tuple(packed))
    if key not in _BASELINES:           # dense float and dense INT8 perplexity of this text
        dense_int8 = {n: pack_config(model.weights[n], DENSE_INT8, None) for n in packed}
        _BASELINES.clear()
        _BASELINES[key] = (model.perplexity(ids, ctx=ctx), integer_model(model, dense_int8).perplexity(ids, ctx=ctx))
    ppl_float, ppl_int8 = _BASELINES[key]
    capture = {}
    ppl = integer_model(model, packed, capture).perplexity(ids, ctx=ctx)
    layers, costs, base = [], {}, {}
    for e in prog["manifest"]["layers"]:
        n, cfg = e["name"], e["config"]
        shape = tuple(e["shape"])
        costs[n] = layer_costs(cfg, target, shape, T)
        base[n] = layer_costs(DENSE_INT8, target, shape, T)
        layers.append({"name": n, "config": cfg["name"], "cycles_prefill": costs[n]["prefill"]["cycles"],
                       "cycles_decode": costs[n]["decode"]["cycles"],
                       "dense_int8_cycles_prefill": base[n]["prefill"]["cycles"],
                       "dense_int8_cycles_decode": base[n]["decode"]["cycles"]})
    rtl = []
    for n in rtl_layers:
        x_q, acc = capture[n]
        x_q, acc = x_q[:rtl_tokens], acc[:rtl_tokens]
        pk = packed[n]
        gs, _ = out_scale(pk)
        r = run_gemm(pk, x_q, target.array, backend=backend, top_cfg=target.top, group_scales=gs)
        model_cyc = tg.gemm_cycles(prog["manifest"]["layers_by_name"][n]["config"], target, x_q.shape[0],
                                   pk.in_features, pk.out_features)
        eq = bool(np.array_equal(r.outputs, acc))
        rtl.append({"layer": n, "backend": backend, "tokens": int(x_q.shape[0]), "outputs_equal_golden": eq,
                    "rtl_cycles": int(r.cycles), "model_cycles": int(model_cyc),
                    "cycles_equal_model": int(r.cycles) == int(model_cyc), "sim_s": round(r.sim_s, 2)})
    cp, ep = totals(costs, "prefill")
    cd, ed = totals(costs, "decode")
    bp, _ = totals(base, "prefill")
    bd, _ = totals(base, "decode")
    hz = fmax * 1e6
    a = target.array
    peak = a.rows * a.cols * a.n_max                     # multiplier lanes (x2 products in INT4)

    def util(phase):
        """Useful MACs / (lanes x products per lane x cycles) over the planned linears."""
        full = sum(costs[e["name"]][phase]["tokens"] * e["shape"][0] * e["shape"][1] * e["config"]["n_keep"]
                   / e["config"]["m_group"] / (peak * (2 if tg.mode_of(e["config"]) == "int4" else 1))
                   for e in prog["manifest"]["layers"])
        return full / sum(c[phase]["cycles"] for c in costs.values())
    uj = lambda e, k, t: (e["compute"] + e["sram"] + e[k]) / t / 1e6
    n_w = sum(pk.out_features * pk.in_features for pk in packed.values())
    res = {
        "ppl": ppl, "dense_ppl": ppl_float, "dense_int8_ppl": ppl_int8,
        "ppl_ratio_vs_float": ppl / ppl_float, "ppl_ratio_vs_dense_int8": ppl / ppl_int8,
        "text_tokens": int(ids.size), "ctx": int(ctx),
        "prefill_tokens": T, "cycles_prefill": cp, "cycles_decode_per_token": cd,
        "speedup_vs_dense_int8": bp / cp, "speedup_vs_dense_int8_decode": bd / cd,
        "utilization_prefill": util("prefill"), "utilization_decode": util("decode"),
        "fmax_mhz": fmax, "fmax_source": fsrc,
        "tokens_per_s_prefill": hz * T / cp, "tokens_per_s_decode": hz / cd,
        "dense_int8_tokens_per_s_prefill": hz * T / bp, "dense_int8_tokens_per_s_decode": hz / bd,
        "energy_uj_per_token": {"decode_dram_low": uj(ed, "dram_low", 1), "decode_dram_high": uj(ed, "dram_high", 1),
                                "prefill_dram_low": uj(ep, "dram_low", T), "prefill_dram_high": uj(ep, "dram_high", T),
                                "decode_on_chip": (ed["compute"] + ed["sram"]) / 1e6,
                                "prefill_on_chip": (ep["compute"] + ep["sram"]) / T / 1e6},
        "energy_source": tg.ENERGY_SOURCE,
        "bits_per_weight": sum(pk.storage_bits() for pk in packed.values()) / n_w,
        "planned_linears": len(packed), "backend": backend, "rtl_checks": rtl,
        "layers": layers, "scope": "cycles / tokens per s / energy count the planned linears on the top; "
                                  "host float work (norms, attention, embeddings, LM head) is not counted",
        "wall_s": round(time.time() - t0, 1),
    }
    require(all(r["outputs_equal_golden"] and r["cycles_equal_model"] for r in rtl),
            f"RTL differs from golden: {[r for r in rtl if not (r['outputs_equal_golden'] and r['cycles_equal_model'])]}")
    return res
