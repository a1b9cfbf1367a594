"""The host-stream encoder / decoder of the accelerator top (nmaccel.hdl.top's protocol).

`encode_gemm(packed, x_q, top_cfg, epilogue)` lays a PackedWeights matrix onto the array tile by
tile (golden `load_plan` on the whole matrix, cut into rows x cols tiles; K and N_out zero-padded
to whole tiles) and writes, vectorized through the record tables of nmaccel.arch.layout, one job
per token tile (T > t_max steps: the next job re-streams the weights):

  header | activation records (K tile major, step minor) | per N tile: per K tile rows weight
  records (array row rows-1 first), a group-scale record after each K tile that ends a scale
  group (group-scale tops), then the epilogue record

It returns a `Program`: per job the header (the job's runtime configuration) and activation
words, the weight / group-scale / epilogue words every job streams (`body`), the whole host word
stream (`words`: uint64 for host_bits <= 64, Python ints for wider hosts) and `decode`, which
turns the top's output words back into the (T, N) result (`decode_outputs`).
"""
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from nmaccel.arch import layout
from nmaccel.arch.config import MODE_CODE, RuntimeConfig, TopConfig
from nmaccel.errors import require
from nmaccel.golden import array as ga
from nmaccel.golden import cyclemodel as cm
from nmaccel.golden.gemm import check_activations
from nmaccel.golden.groupscale import groupscale_params


@dataclass(frozen=True)
class EpilogueSpec:
    """Per-output-channel epilogue: mult (mantissa) / shift from quantize_multiplier, bias, relu.

    mult=None: raw output (acc + bias, saturated to raw_bits), else INT8 (out_bits)."""
    mult: object = None
    shift: object = None
    bias: object = None
    relu: bool = False


@dataclass(frozen=True, eq=False)
class Program:
    """One GEMM encoded for the accelerator top (nmaccel.hdl.top's host protocol).

    `jobs[i]` (nmaccel.golden.cyclemodel job shape) is token tile i; its stream is `headers[i]`
    (the header record), `acts[i]` (its activation records), then `body` (weights, group scales,
    epilogue: the same for every job). `words`: the whole host stream. `kt_per_group`: K tiles per
    scale group on a group-scale top, else None."""
    top_cfg: TopConfig
    mode: str
    jobs: tuple
    headers: tuple
    acts: tuple
    body: np.ndarray
    tokens: int
    out_features: int
    kt_per_group: object = None

    @cached_property
    def words(self):
        """The host word stream of every job: header, activations, body."""
        return np.concatenate([w for h, a in zip(self.headers, self.acts) for w in (h, a, self.body)]) \
            .astype(self.body.dtype)

    @property
    def n_out_words(self):
        """Output words the top sends for this program."""
        return sum(j.n_nt * j.n_steps for j in self.jobs) * self.top_cfg.words("out")

    def decode(self, out_words):
        """The top's output words -> int64 (tokens, out_features)."""
        return decode_outputs(out_words, self.jobs, self.top_cfg, self.mode, self.tokens, self.out_features)


class _WholeArray:
    """ArrayConfig view with more rows / cols: lays a whole matrix out as one big plan."""

    def __init__(self, a, rows, cols):
        self._a, self.rows, self.cols = a, rows, cols

    def __getattr__(self, k):
        return getattr(self._a, k)


def epilogue_params(spec, n_out, top_cfg):
    """(mult, shift, bias, relu, raw) int64 arrays of length n_out, validated."""
    if spec is None:
        spec = EpilogueSpec()
    if isinstance(spec, dict):
        spec = EpilogueSpec(**spec)
    raw = spec.mult is None

    def vec(v, what):
        if v is None:
            return np.zeros(n_out, dtype=np.int64)
        arr = np.asarray(v)
        require(arr.dtype.kind in "iu", f"epilogue {what} must be integers (use quantize_multiplier)")
        require(arr.ndim <= 1 and arr.size in (1, n_out),
                f"epilogue {what} has {arr.size} values for {n_out} output channels")
        return np.broadcast_to(arr.astype(np.int64).ravel(), (n_out,)).copy()

    mult, shift, bias = vec(spec.mult, "mult"), vec(spec.shift, "shift"), vec(spec.bias, "bias")
    require(raw or spec.shift is not None, "epilogue mult given without shift")
    top_cfg.epilogue.check_params(mult if not raw else None, shift if not raw else None, bias)
    return mult, shift, bias, bool(spec.relu), raw


def group_layout(packed, top_cfg, mode, group_scales=None):
    """(kt_per_group, mult (out, n_groups) unsigned) for a group-scale top, (None, None) otherwise.

    group_scales None: on when the top has them and the weights have granularity "group";
    off on a group-scale top: one group per N tile with multiplier 1 (plain sums)."""
    if group_scales is None:
        group_scales = top_cfg.group_scales and packed.granularity == "group"
    require(not group_scales or top_cfg.group_scales,
            "group scales need a top elaborated with TopConfig(group_scales=True)")
    require(not group_scales or packed.granularity == "group",
            f"group scales need weights packed with granularity 'group', got {packed.granularity!r}")
    if not top_cfg.group_scales:
        return None, None
    a = top_cfg.array
    tile_k = a.rows * a.window(packed.n_keep, packed.m_group)
    n_kt = -(-packed.k_padded // tile_k)
    if not group_scales:
        return n_kt, np.ones((packed.out_features, 1), dtype=np.int64)
    params = groupscale_params(packed)
    require(params.group_cols % tile_k == 0,
            f"scale groups of {params.group_cols} columns split a K tile of {tile_k}: use group_size "
            f"a multiple of {tile_k} (rows x window)")
    require(params.mult_bits <= top_cfg.gs_mult_bits,
            f"group multipliers need {params.mult_bits} bits, the top has gs_mult_bits={top_cfg.gs_mult_bits}")
    return params.group_cols // tile_k, params.mult


def _pad_cols(v, n_cols):
    """(N, ...) -> (n_cols, ...) zero-padded output channels."""
    out = np.zeros((n_cols,) + v.shape[1:], dtype=np.int64)
    out[:v.shape[0]] = v
    return out


def encode_gemm(packed, x_q, top_cfg, epilogue=None, mode=None, group_scales=None):
    """The whole GEMM as a Program (its host words: uint64 for host_bits <= 64, else Python ints)."""
    require(isinstance(top_cfg, TopConfig), f"top_cfg must be a TopConfig, got {type(top_cfg).__name__}")
    a, H = top_cfg.array, top_cfg.host_bits
    x = check_activations(x_q, packed.in_features, a.act_bits)
    require(x.shape[0] >= 1, "no tokens: x_q needs at least one row")
    mode = mode or ga.tile_mode(packed)
    RuntimeConfig(mode, packed.n_keep, packed.m_group).check(a)
    T, N = x.shape[0], packed.out_features
    jobs = cm.job_shapes((T, packed.in_features, N), top_cfg, mode, packed.n_keep, packed.m_group)
    n_kt, n_nt = jobs[0].n_kt, jobs[0].n_nt
    R, C = a.rows, a.cols
    whole = _WholeArray(a, n_kt * R, n_nt * C)
    plan = ga.load_plan(packed, whole, mode)
    mult, shift, bias, relu, raw = epilogue_params(epilogue, N, top_cfg)
    gk, gmult = group_layout(packed, top_cfg, mode, group_scales)
    cbk = mode == "codebook"
    dtype = np.uint64 if H <= 64 else object

    # weight records: record (nt, kt, i) holds array row r = kt*R + R-1-i, columns nt*C .. +C-1
    order = (np.arange(n_kt)[:, None] * R + R - 1 - np.arange(R)[None, :]).ravel()

    def per_record(v):          # (n_kt*R, n_nt*C, k) -> (n_nt * n_kt*R, C*k)
        return v[order].reshape(n_kt * R, n_nt, -1).transpose(1, 0, 2).reshape(n_nt * n_kt * R, -1)

    lanes = {"code": per_record(plan.codes), "index": per_record(plan.index),
             "keep": per_record(plan.keep.astype(np.int64))}
    wvals = {"lane": lanes}
    if cbk:
        wvals["table"] = per_record(plan.tables)
    w_lay = layout.weight_layout(top_cfg, codebook=cbk)
    wwords = w_lay.to_words(H, **wvals).reshape(n_nt, n_kt, -1)
    ep = layout.epilogue_layout(top_cfg).to_words(
        H, col={k: _pad_cols(v, n_nt * C).reshape(n_nt, C) for k, v in
                (("mult", mult), ("shift", shift), ("bias", bias))})               # (n_nt, words)
    body = []
    if gk is None:
        body = np.concatenate([wwords.reshape(n_nt, -1), ep], axis=1)
    else:
        gs = layout.groupscale_layout(top_cfg).to_words(
            H, mult=_pad_cols(gmult, n_nt * C).reshape(n_nt, C, -1).transpose(0, 2, 1)
            .reshape(-1, C)).reshape(n_nt, gmult.shape[1], -1)                     # (n_nt, groups, words)
        for nt in range(n_nt):
            for kt in range(n_kt):
                body.append(wwords[nt, kt])
                if (kt + 1) % gk == 0 or kt == n_kt - 1:
                    body.append(gs[nt, min(kt // gk, gmult.shape[1] - 1)])
            body.append(ep[nt])
        body = np.concatenate(body)
    body = np.asarray(body, dtype=dtype).ravel()

    hdr_lay = layout.header_layout(top_cfg)
    tps = 2 if mode == "int4" else 1
    act_lay = layout.activation_layout(top_cfg, int4=mode == "int4")
    headers, acts_words, t0 = [], [], 0
    for job in jobs:
        tok = min(job.n_steps * tps, T - t0)
        hdr = {"mode": MODE_CODE[mode], "n_keep": packed.n_keep, "m_group": packed.m_group,
               "relu": int(relu), "raw": int(raw), "n_steps": job.n_steps, "n_kt": n_kt, "n_nt": n_nt,
               "kt_per_group": gk or 0}
        headers.append(hdr_lay.to_words(H, n=1, **{k: hdr[k] for k, _ in top_cfg.hdr_fields}).ravel()
                       .astype(dtype))
        xs = ga.activation_steps(plan, x[t0:t0 + tok], whole)        # (steps, n_kt*R, tps, m)
        S = job.n_steps
        acts = xs[:S, :, :tps].reshape(S, n_kt, R, tps, -1).transpose(1, 0, 3, 2, 4).reshape(n_kt * S, -1)
        acts_words.append(act_lay.to_words(H, x=acts).ravel().astype(dtype))
        t0 += tok
    return Program(top_cfg=top_cfg, mode=mode, jobs=tuple(jobs), headers=tuple(headers),
                   acts=tuple(acts_words), body=body, tokens=T, out_features=N, kt_per_group=gk)


def decode_outputs(out_words, jobs, top_cfg, mode, T, N):
    """Output words -> int64 (T, N)."""
    a = top_cfg.array
    out_lay = layout.output_layout(top_cfg)
    wo = out_lay.words(top_cfg.host_bits)
    tps = 2 if mode == "int4" else 1
    n_rec = sum(j.n_nt * j.n_steps for j in jobs)
    require(len(out_words) == n_rec * wo, f"{len(out_words) - n_rec * wo} unexpected output words")
    words = np.asarray(out_words, dtype=np.uint64 if top_cfg.host_bits <= 64 else object)
    recs = out_lay.from_words(words.reshape(n_rec, wo), top_cfg.host_bits)["y"] \
        .reshape(n_rec, a.tokens_per_step, a.cols)
    y = np.zeros((sum(j.n_steps for j in jobs) * tps, jobs[0].n_nt * a.cols), dtype=np.int64)
    pos, t0 = 0, 0
    for job in jobs:
        r = recs[pos:pos + job.n_nt * job.n_steps, :tps].reshape(job.n_nt, job.n_steps, tps, a.cols)
        y[t0:t0 + job.n_steps * tps] = r.transpose(1, 2, 0, 3).reshape(job.n_steps * tps, -1)
        pos += job.n_nt * job.n_steps
        t0 += job.n_steps * tps
    return y[:T, :N]
