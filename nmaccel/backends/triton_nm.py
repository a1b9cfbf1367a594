"""Triton kernel: decode-time (T <= 16) matmul reading packed 2:4 INT4 weights directly.

y[t, n] = sum_b scale[n, b // blocks_per_scale] * sum_{k in block b} x[t, k] * code[n, k]

Weights arrive as the packed format's LSB-first streams (see `nmaccel.backends.gpu.nm24_int4_streams`),
row-major, one row padded to a whole number of K blocks:
- `v_words` int32 (N, Kb/16): 8 signed 4-bit codes per word (4 groups of 4 K columns),
- `i_half` int16 (N, Kb/16): 8 two-bit in-group indices per half-word, paired with `v_words`,
- `scales` fp16 (N, n_scale_groups).
That is 32 + 16 bits per 16 weights plus one FP16 per scale group: 3.125 bits/weight at group 128.
Each code is dequantized in registers: flip its sign bit (offset binary), OR it into the
mantissa of 2^23 and subtract 2^23 + 8 (exact), then FMA with the gathered activation
x[t, 16*word + 4*(slot // 2) + index]. Weight streams are read once and bypass L1 (.cg) so
that the gathered activations stay there. Block partial sums are exact integers when x holds
integers (|sum| < 2^24), so with unit scales the result equals the integer golden model.
"""
import triton
import triton.language as tl

# Literals in the kernels: 0x4B000000 = float32 bits of 2^23, 8388616.0 = 2^23 + 8 (offset-binary
# bias), -0x77777778 = 0x88888888 as int32 (flips every nibble's sign bit).


@triton.jit
def _nm24_int4_kernel(x_ptr, v_ptr, i_ptr, s_ptr, out_ptr,
                      T, N, K, n_blocks, blocks_per_split, blocks_per_scale,
                      stride_xt, stride_vn, stride_in, stride_sn, stride_ot,
                      BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr, WORDS: tl.constexpr,
                      ATOMIC: tl.constexpr, MASK_K: tl.constexpr):
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = rn < N
    rq = tl.arange(0, WORDS)
    rt = tl.arange(0, BLOCK_T)
    t_ok = rt < T
    acc = tl.zeros((BLOCK_T, BLOCK_N), dtype=tl.float32)
    b_lo = pid_k * blocks_per_split
    b_hi = tl.minimum(b_lo + blocks_per_split, n_blocks)
    for b in range(b_lo, b_hi):
        w = b * WORDS + rq
        v = tl.load(v_ptr + rn[:, None] * stride_vn + w[None, :], mask=n_ok[:, None], other=0, cache_modifier=".cg")
        v = v ^ -0x77777778
        ih = tl.load(i_ptr + rn[:, None] * stride_in + w[None, :], mask=n_ok[:, None], other=0,
                     cache_modifier=".cg").to(tl.int32)
        part = tl.zeros((BLOCK_T, BLOCK_N, WORDS), dtype=tl.float32)
        col0 = (w * 16)[None, :]
        for s in tl.static_range(8):
            u = ((v >> (4 * s)) & 0xF) | 0x4B000000
            code = u.to(tl.float32, bitcast=True) - 8388616.0
            col = col0 + ((s // 2) * 4) + ((ih >> (2 * s)) & 3)
            if MASK_K:
                xm = t_ok[:, None, None] & (col < K)[None, :, :]
            else:
                xm = t_ok[:, None, None]
            xg = tl.load(x_ptr + rt[:, None, None] * stride_xt + col[None, :, :], mask=xm, other=0.0)
            part += code[None, :, :] * xg.to(tl.float32)
        sc = tl.load(s_ptr + rn * stride_sn + b // blocks_per_scale, mask=n_ok, other=0.0).to(tl.float32)
        acc += tl.sum(part, axis=2) * sc[None, :]
    optr = out_ptr + rt[:, None] * stride_ot + rn[None, :]
    omask = t_ok[:, None] & n_ok[None, :]
    if ATOMIC:
        tl.atomic_add(optr, acc, mask=omask, sem="relaxed")
    else:
        tl.store(optr, acc, mask=omask)


@triton.jit
def _nm24_int4_gather_t_kernel(xt_ptr, v_ptr, i_ptr, s_ptr, out_ptr,
                               T, N, K, n_blocks, blocks_per_split, blocks_per_scale,
                               stride_xk, stride_vn, stride_in, stride_sn, stride_ot,
                               BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr, WORDS: tl.constexpr,
                               ATOMIC: tl.constexpr, MASK_K: tl.constexpr):
    """Gather kernel for T > 1: x comes transposed (K, T), so one gather per kept weight fetches
    the activations of all T tokens as one contiguous vector."""
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = rn < N
    rq = tl.arange(0, WORDS)
    rt = tl.arange(0, BLOCK_T)
    t_ok = rt < T
    acc = tl.zeros((BLOCK_N, BLOCK_T), dtype=tl.float32)
    b_lo = pid_k * blocks_per_split
    b_hi = tl.minimum(b_lo + blocks_per_split, n_blocks)
    for b in range(b_lo, b_hi):
        w = b * WORDS + rq
        v = tl.load(v_ptr + rn[:, None] * stride_vn + w[None, :], mask=n_ok[:, None], other=0, cache_modifier=".cg")
        v = v ^ -0x77777778
        ih = tl.load(i_ptr + rn[:, None] * stride_in + w[None, :], mask=n_ok[:, None], other=0,
                     cache_modifier=".cg").to(tl.int32)
        part = tl.zeros((BLOCK_N, WORDS, BLOCK_T), dtype=tl.float32)
        col0 = (w * 16)[None, :]
        for s in tl.static_range(8):
            u = ((v >> (4 * s)) & 0xF) | 0x4B000000
            code = u.to(tl.float32, bitcast=True) - 8388616.0
            col = col0 + ((s // 2) * 4) + ((ih >> (2 * s)) & 3)
            if MASK_K:
                xm = (col < K)[:, :, None] & t_ok[None, None, :]
            else:
                xm = t_ok[None, None, :]
            xg = tl.load(xt_ptr + col[:, :, None] * stride_xk + rt[None, None, :], mask=xm, other=0.0)
            part += code[:, :, None] * xg.to(tl.float32)
        sc = tl.load(s_ptr + rn * stride_sn + b // blocks_per_scale, mask=n_ok, other=0.0).to(tl.float32)
        acc += tl.sum(part, axis=1) * sc[:, None]
    optr = out_ptr + rt[None, :] * stride_ot + rn[:, None]
    omask = n_ok[:, None] & t_ok[None, :]
    if ATOMIC:
        tl.atomic_add(optr, acc, mask=omask, sem="relaxed")
    else:
        tl.store(optr, acc, mask=omask)


@triton.jit
def _nm24_int4_dot_kernel(x_ptr, v_ptr, i_ptr, s_ptr, out_ptr,
                          T, N, K, n_blocks, blocks_per_split, blocks_per_scale,
                          stride_xt, stride_vn, stride_in, stride_sn, stride_ot,
                          BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr, WORDS: tl.constexpr,
                          ATOMIC: tl.constexpr, MASK_K: tl.constexpr):
    """Same result on tensor cores. Per block, group g's byte holds its two codes and its index
    nibble their positions; the dense weight at column 4g+p is w_p[:, g] (FP16, built with
    selects), and the block is sum_p tl.dot(w_p, x[:, 4g+p].T). The stream pointers are byte views."""
    GROUPS: tl.constexpr = WORDS * 4
    BLOCK_K: tl.constexpr = WORDS * 16
    pid_n = tl.program_id(0)
    pid_k = tl.program_id(1)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    n_ok = rn < N
    rg = tl.arange(0, GROUPS)
    rt = tl.arange(0, BLOCK_T)
    t_ok = rt < T
    acc = tl.zeros((BLOCK_N, BLOCK_T), dtype=tl.float32)
    b_lo = pid_k * blocks_per_split
    b_hi = tl.minimum(b_lo + blocks_per_split, n_blocks)
    zero = tl.zeros((BLOCK_N, GROUPS), dtype=tl.float16)
    for b in range(b_lo, b_hi):
        g = b * GROUPS + rg
        vb = tl.load(v_ptr + rn[:, None] * stride_vn + g[None, :], mask=n_ok[:, None], other=0,
                     cache_modifier=".cg").to(tl.int32)
        ib = tl.load(i_ptr + rn[:, None] * stride_in + (g // 2)[None, :], mask=n_ok[:, None], other=0,
                     cache_modifier=".cg").to(tl.int32)
        nib = ib >> ((g & 1) * 4)[None, :]
        i0 = nib & 3
        i1 = (nib >> 2) & 3
        # FP16 magic: bits 0x6400 | u are 1024 + u; u = code ^ 8 (offset binary), so subtract 1032
        c0 = ((((vb & 0xF) ^ 8) | 0x6400).to(tl.int16).to(tl.float16, bitcast=True) - 1032.0).to(tl.float16)
        c1 = (((((vb >> 4) & 0xF) ^ 8) | 0x6400).to(tl.int16).to(tl.float16, bitcast=True) - 1032.0).to(tl.float16)
        w0 = tl.where(i0 == 0, c0, zero)
        w1 = tl.where(i0 == 1, c0, tl.where(i1 == 1, c1, zero))
        w2 = tl.where(i0 == 2, c0, tl.where(i1 == 2, c1, zero))
        w3 = tl.where(i1 == 3, c1, zero)
        kcol = b * BLOCK_K + 4 * rg
        xm = t_ok[None, :]
        if MASK_K:
            xm = xm & (kcol < K)[:, None]
        xp = x_ptr + kcol[:, None] + rt[None, :] * stride_xt
        part = tl.dot(w0, tl.load(xp, mask=xm, other=0.0))
        if MASK_K:
            xm = t_ok[None, :] & (kcol + 1 < K)[:, None]
        part = tl.dot(w1, tl.load(xp + 1, mask=xm, other=0.0), part)
        if MASK_K:
            xm = t_ok[None, :] & (kcol + 2 < K)[:, None]
        part = tl.dot(w2, tl.load(xp + 2, mask=xm, other=0.0), part)
        if MASK_K:
            xm = t_ok[None, :] & (kcol + 3 < K)[:, None]
        part = tl.dot(w3, tl.load(xp + 3, mask=xm, other=0.0), part)
        sc = tl.load(s_ptr + rn * stride_sn + b // blocks_per_scale, mask=n_ok, other=0.0).to(tl.float32)
        acc += part * sc[:, None]
    optr = out_ptr + rt[None, :] * stride_ot + rn[:, None]
    omask = n_ok[:, None] & t_ok[None, :]
    if ATOMIC:
        tl.atomic_add(optr, acc, mask=omask, sem="relaxed")
    else:
        tl.store(optr, acc, mask=omask)


def launch(x, v_words, i_half, scales, out, *, k, n_blocks, words, blocks_per_scale,
           block_n, split_k, num_warps, num_stages, kernel="gather"):
    """Run a kernel; `out` float32 (T, N) must be zero when split_k > 1 (atomic accumulation).

    kernel: "gather" (CUDA cores, one activation load per weight and token), "gather_t"
    (CUDA cores, x transposed here so one load per weight covers every token) or "dot"
    (tensor cores, T padded to 16)."""
    dot = kernel == "dot"
    t, n = out.shape
    block_t = max(16 if dot else 1, triton.next_power_of_2(t))
    per_split = triton.cdiv(n_blocks, split_k)
    grid = (triton.cdiv(n, block_n), split_k)
    import torch                             # lazy: heavy optional dependency (nmaccel[gpu])
    if dot:
        v_bytes, i_bytes = v_words.view(torch.uint8), i_half.view(torch.uint8)
        _nm24_int4_dot_kernel[grid](
            x, v_bytes, i_bytes, scales, out,
            t, n, k, n_blocks, per_split, blocks_per_scale,
            x.stride(0), v_bytes.stride(0), i_bytes.stride(0), scales.stride(0), out.stride(0),
            BLOCK_N=block_n, BLOCK_T=block_t, WORDS=words, ATOMIC=split_k > 1,
            MASK_K=(n_blocks * words * 16 != k), num_warps=num_warps, num_stages=num_stages)
        return out
    if kernel == "gather_t":
        xt = x.t().contiguous()
        _nm24_int4_gather_t_kernel[grid](
            xt, v_words, i_half.view(torch.uint16), scales, out,
            t, n, k, n_blocks, per_split, blocks_per_scale,
            xt.stride(0), v_words.stride(0), i_half.stride(0), scales.stride(0), out.stride(0),
            BLOCK_N=block_n, BLOCK_T=block_t, WORDS=words, ATOMIC=split_k > 1,
            MASK_K=(n_blocks * words * 16 != k), num_warps=num_warps, num_stages=num_stages)
        return out
    _nm24_int4_kernel[grid](
        x, v_words, i_half.view(torch.uint16), scales, out,
        t, n, k, n_blocks, per_split, blocks_per_scale,
        x.stride(0), v_words.stride(0), i_half.stride(0), scales.stride(0), out.stride(0),
        BLOCK_N=block_n, BLOCK_T=block_t, WORDS=words, ATOMIC=split_k > 1,
        MASK_K=(n_blocks * words * 16 != k), num_warps=num_warps, num_stages=num_stages)
    return out
