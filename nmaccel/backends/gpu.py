"""GPU paths from one `PackedWeights`: torch dense, cuSPARSELt 2:4, INT4 weight-only, Triton 2:4 INT4.

Everything torch/triton is imported lazily: the numpy layout builders (`nm24_int4_streams`,
`int4pack_inputs`) and their numpy reference decoders run anywhere, the rest needs torch + CUDA
(optional extra `nmaccel[gpu]`; missing -> `ToolMissingError`).

Computation everywhere: y (T, out) = x (T, in) @ W.T with W the packing's weights.
Exactness (checked in tests/test_gpu.py against `nmaccel.golden`):
- `int8_linear` (torch._int_mm) and `CusparseLtWeight("int8")` (INT32 out): exact integers.
- `PackedNM24Int4` (Triton): exact when x holds integers and scales are 1 (block sums < 2^24).
- FP16/BF16/FP8 paths round their output (and BF16 rounds scales): float tolerance only.
"""
import numpy as np

from nmaccel.errors import NmaccelError, ToolMissingError, require
from nmaccel.pack.format import PackedWeights

SIGN_FLIP = 0x88888888          # flips the sign bit of each nibble: two's complement -> offset binary
MAGIC_I32 = 0x4B000000          # float32 bits of 2^23: OR a nibble into the mantissa
MAGIC_BIAS = np.float32(2.0 ** 23 + 8)
CODES_PER_WORD = 8              # 4-bit codes per 32-bit value word = 2 codes x 4 groups
COLS_PER_WORD = 16              # K columns covered by one value word (2:4)
INDEX_BITS = 2
INT4PACK_GROUPS = (32, 64, 128, 256)   # group sizes torch._weight_int4pack_mm accepts
INT4PACK_K_ALIGN = 256                 # K multiple for every inner_k_tiles and group size
TRITON_MAX_T = 16

# (kernel, block_n, split_k, num_warps, num_stages) tried by PackedNM24Int4.tune; kernels:
# "gather" (CUDA cores), "gather_t" (CUDA cores, x transposed, T > 1), "dot" (tensor cores, T > 1)
TRITON_CONFIGS = [("gather", 32, 4, 1, 3), ("gather", 32, 8, 1, 2), ("gather", 32, 16, 1, 2),
                  ("gather", 64, 8, 2, 2), ("gather", 64, 1, 2, 3),
                  ("gather_t", 16, 8, 1, 2), ("gather_t", 16, 8, 2, 2), ("gather_t", 32, 8, 2, 2),
                  ("gather_t", 32, 4, 4, 3), ("gather_t", 16, 16, 1, 3),
                  ("dot", 64, 1, 4, 3), ("dot", 128, 8, 4, 3), ("dot", 128, 4, 4, 3), ("dot", 64, 16, 4, 2)]

DEFAULT_CONFIG = TRITON_CONFIGS[0]


def _check_nm24_int4(packed: PackedWeights):
    require(packed.n_keep == 2 and packed.m_group == 4,
            f"the Triton 2:4 kernel needs n_keep=2, m_group=4 (this packing is {packed.n_keep}:{packed.m_group}); "
            "re-pack with --n-keep 2 --m-group 4")
    require(packed.bits == 4 and packed.quantizer == "uniform" and packed.symmetric,
            f"the Triton 2:4 kernel needs symmetric uniform 4-bit codes (got {packed.bits}-bit "
            f"{packed.quantizer}, {'symmetric' if packed.symmetric else 'asymmetric'}); re-pack with --bits 4")


def _kernel_block_k(packed):
    """K columns per kernel block: 128, or the largest of 64/32/16 dividing the scale group."""
    if packed.granularity != "group":
        return 128
    for bk in (128, 64, 32, 16):
        if packed.group_size % bk == 0:
            return bk
    raise NmaccelError(f"group_size={packed.group_size} is not a multiple of 16, which the Triton 2:4 kernel "
                       "needs: re-pack with --group-size 128")


def nm24_int4_streams(packed: PackedWeights):
    """The kernel's weight arrays, built from the packing's values/indices/scales.

    Returns a dict: `v_words` int32 (N, Kb/16): LSB-first 4-bit code stream of each row;
    `i_half` int16 (N, Kb/16): LSB-first 2-bit index stream of each row (half-word q holds the
    indices of the 8 codes in word q); `scales` float16 (N, n_scale_groups); `block_k`,
    `blocks_per_scale`, `n_blocks`, `k_blocks` (= Kb, K rounded up to a whole block).
    When k_padded is a multiple of the block these are exactly the format's memory images
    (`memory_image("values", 32)`, `memory_image("indices", 16)`) seen as (N, words) arrays:
    no re-layout, only rows padded with zero codes otherwise.
    """
    _check_nm24_int4(packed)
    n, kp = packed.out_features, packed.k_padded
    bk = _kernel_block_k(packed)
    kb = -(-kp // bk) * bk
    vals = np.zeros((n, kb // 2), dtype=np.int64)
    vals[:, :kp // 2] = packed.values
    idx = np.tile(np.arange(2, dtype=np.int64), (n, kb // 4, 1))
    idx[:, :kp // 4] = packed.indices
    words = kb // COLS_PER_WORD
    sh4 = np.arange(CODES_PER_WORD, dtype=np.uint64) * 4
    sh2 = np.arange(CODES_PER_WORD, dtype=np.uint64) * INDEX_BITS
    v = ((vals.reshape(n, words, CODES_PER_WORD) & 0xF).astype(np.uint64) << sh4).sum(axis=2, dtype=np.uint64)
    i = (idx.reshape(n, words, CODES_PER_WORD).astype(np.uint64) << sh2).sum(axis=2, dtype=np.uint64)
    scales = np.broadcast_to(packed.scales, (n, packed.scales.shape[1])).astype(np.float16)
    n_blocks = kb // bk
    bps = packed.group_size // bk if packed.granularity == "group" else n_blocks
    return {"v_words": v.astype(np.uint32).view(np.int32), "i_half": i.astype(np.uint16).view(np.int16),
            "scales": np.ascontiguousarray(scales), "block_k": bk, "blocks_per_scale": bps,
            "n_blocks": n_blocks, "k_blocks": kb}


def nm24_int4_stream_bits(streams, in_features):
    """Bits the kernel reads per dense weight (values + indices + FP16 scales), padding included."""
    total = (streams["v_words"].nbytes + streams["i_half"].nbytes + streams["scales"].nbytes) * 8
    return total / (streams["v_words"].shape[0] * in_features)


def nm24_int4_reference(streams, x):
    """numpy mirror of the Triton kernel's arithmetic: float32 (T, N) from float x (T, in).

    Decodes each code as float32(bits(2^23) | (nibble ^ 8)) - (2^23 + 8), gathers
    x[t, 16*word + 4*(slot//2) + index] (0 past in_features), sums each block in float32,
    multiplies by its FP16 scale and sums the blocks.
    """
    x = np.asarray(x, dtype=np.float32)
    require(x.ndim == 2, f"x must be 2-D (T, in_features), got shape {x.shape}")
    v = streams["v_words"].view(np.uint32).astype(np.uint64) ^ SIGN_FLIP
    ih = streams["i_half"].view(np.uint16).astype(np.uint64)
    n, words = v.shape
    kb, bk = streams["k_blocks"], streams["block_k"]
    xp = np.zeros((x.shape[0], kb), dtype=np.float32)
    xp[:, :min(x.shape[1], kb)] = x[:, :kb]
    wcol = (np.arange(words, dtype=np.int64) * COLS_PER_WORD)[None, :]
    prod = np.zeros((x.shape[0], n, words), dtype=np.float32)
    for s in range(CODES_PER_WORD):
        u = ((v >> np.uint64(4 * s)) & np.uint64(0xF)) | np.uint64(MAGIC_I32)
        code = u.astype(np.uint32).view(np.float32) - MAGIC_BIAS
        col = wcol + 4 * (s // 2) + ((ih >> np.uint64(INDEX_BITS * s)) & np.uint64(3)).astype(np.int64)
        prod += code[None] * xp[:, col]
    wpb = bk // COLS_PER_WORD
    block = prod.reshape(x.shape[0], n, streams["n_blocks"], wpb).sum(axis=3, dtype=np.float32)
    sc = streams["scales"].astype(np.float32)[:, np.arange(streams["n_blocks"]) // streams["blocks_per_scale"]]
    return (block * sc[None]).sum(axis=2, dtype=np.float32)


def int4pack_inputs(packed: PackedWeights):
    """Inputs of torch's INT4 weight-only matmul (`_convert_weight_to_int4pack`, `_weight_int4pack_mm`).

    Returns (u8 (N, Kq/2) uint8, scale_zeros float32 (Kq/g, N, 2), group_size g, Kq): byte j of
    a row holds q[2j] << 4 | q[2j+1] with q = code + 8; torch dequantizes (q - 8) * scale + zero,
    so zero = 0 gives code * scale. Kq = K rounded up to INT4PACK_K_ALIGN (x zero-padded to it).
    Any N:M works: pruned positions are code 0. Channel/tensor scales are repeated per group of 128.
    """
    require(packed.bits == 4 and packed.quantizer == "uniform" and packed.symmetric,
            f"INT4 weight-only needs symmetric uniform 4-bit codes (got {packed.bits}-bit {packed.quantizer}); "
            "re-pack with --bits 4")
    if packed.granularity == "group":
        g = packed.group_size
        require(g in INT4PACK_GROUPS, f"INT4 weight-only needs group_size in {INT4PACK_GROUPS}, got {g}; "
                "re-pack with --group-size 128")
    else:
        g = 128
    n = packed.out_features
    kq = -(-packed.k_padded // INT4PACK_K_ALIGN) * INT4PACK_K_ALIGN
    q = np.full((n, kq), 8, dtype=np.uint8)
    q[:, :packed.k_padded] = (packed.int_weights(padded=True) + 8).astype(np.uint8)
    u8 = (q[:, 0::2] << 4) | q[:, 1::2]
    cols = packed.column_scales(padded=True)[:, ::g]            # (N, groups within k_padded)
    sz = np.zeros((kq // g, n, 2), dtype=np.float32)
    sz[:cols.shape[1], :, 0] = cols.T
    return u8, sz, g, kq


def int4pack_reference(u8, scale_zeros, group_size):
    """numpy decode of `int4pack_inputs`: float32 (N, Kq) weights torch's kernel sees."""
    q = np.empty((u8.shape[0], u8.shape[1] * 2), dtype=np.int64)
    q[:, 0::2] = u8 >> 4
    q[:, 1::2] = u8 & 0xF
    s = np.repeat(scale_zeros[:, :, 0].T, group_size, axis=1)
    z = np.repeat(scale_zeros[:, :, 1].T, group_size, axis=1)
    return ((q - 8) * s + z).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# torch / CUDA side
def _torch():
    """torch with a CUDA device, or ToolMissingError naming the fix."""
    try:
        import torch                         # lazy: heavy optional dependency (nmaccel[gpu])
    except ImportError:
        raise ToolMissingError("the GPU backend needs PyTorch with CUDA: install nmaccel[gpu] "
                               "(torch) and run on a machine with an NVIDIA GPU") from None
    if not torch.cuda.is_available():
        raise ToolMissingError("no CUDA GPU visible to PyTorch: run the GPU backend on a machine with an "
                               "NVIDIA GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES)")
    return torch


FLOAT_DTYPES = ("fp16", "bf16")


def _float_dtype(torch, name):
    table = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
    require(name in table, f"unknown dtype {name!r}: use one of {sorted(table)}")
    return table[name]


def dense_weight(packed: PackedWeights, dtype="fp16"):
    """Dequantized weights as a CUDA tensor (out, in) for F.linear."""
    torch = _torch()
    return torch.from_numpy(packed.dequantize()).to("cuda", _float_dtype(torch, dtype))


def int8_weight(packed: PackedWeights):
    """Integer weights (`int_weights`) as CUDA int8 (out, in); needs them within INT8."""
    torch = _torch()
    w = packed.int_weights()
    require(w.min() >= -128 and w.max() <= 127, f"integer weights [{w.min()}, {w.max()}] do not fit INT8: "
            "use --bits 4 or 8 symmetric")
    return torch.from_numpy(w.astype(np.int8)).cuda()


INT_MM_MIN_T = 17   # torch._int_mm needs more than 16 rows


def int8_linear(x_q, w_i8):
    """Exact INT32 (T, out) = x_q (T, in) int8 @ w_i8.T via torch._int_mm (rows padded to 17+)."""
    torch = _torch()
    t = x_q.shape[0]
    if t < INT_MM_MIN_T:
        x_q = torch.nn.functional.pad(x_q, (0, 0, 0, INT_MM_MIN_T - t))
    return torch._int_mm(x_q, w_i8.t())[:t]


SCALED_MM_ALIGN = 16   # torch._scaled_mm wants both dims of each operand divisible by 16


class Fp8Weight:
    """Dense FP8 e4m3 weights for torch._scaled_mm (cuBLASLt): y = x @ W.T, unit scales.

    The integer weights (`int_weights`, exact in e4m3 when |w| <= 16) as (out, K16) e4m3, K
    padded to 16; x (T, in) must hold e4m3-exact values; T is padded to 16 inside. Output
    `out_dtype` (default FP16, as `CusparseLtWeight("e4m3", "fp16")`), so FP8 2:4 and dense FP8
    compare like for like.
    """

    def __init__(self, packed: PackedWeights, out_dtype="fp16"):
        torch = _torch()
        iw = packed.int_weights(padded=True)
        require(np.abs(iw).max() <= 16, f"integer weights [{iw.min()}, {iw.max()}] are not exact in e4m3: "
                "use --bits 4 symmetric")
        self.k = -(-packed.k_padded // SCALED_MM_ALIGN) * SCALED_MM_ALIGN
        w = np.zeros((packed.out_features, self.k), dtype=np.float32)
        w[:, :packed.k_padded] = iw
        self.weight = torch.from_numpy(w).cuda().to(torch.float8_e4m3fn)
        self.one = torch.ones((), device="cuda", dtype=torch.float32)
        self.out_dtype = _float_dtype(torch, out_dtype)

    def prepare_x(self, x):
        """Cast/pad activations (T, in) to e4m3 (T, K16)."""
        torch = _torch()
        if x.shape[1] != self.k:
            x = torch.nn.functional.pad(x, (0, self.k - x.shape[1]))
        return x.to(torch.float8_e4m3fn)

    def __call__(self, x):
        torch = _torch()
        t = x.shape[0]
        if t % SCALED_MM_ALIGN:
            x = torch.nn.functional.pad(x, (0, 0, 0, SCALED_MM_ALIGN - t % SCALED_MM_ALIGN))
        return torch._scaled_mm(x, self.weight.t(), scale_a=self.one, scale_b=self.one,
                                out_dtype=self.out_dtype)[:t]


class Int4PackWeight:
    """torch INT4 weight-only layout (tinygemm): y = x @ W.T with x BF16 (T, in)."""

    def __init__(self, packed: PackedWeights, inner_k_tiles=8):
        torch = _torch()
        u8, sz, self.group_size, self.k = int4pack_inputs(packed)
        self.in_features = packed.in_features
        self.weight = torch._convert_weight_to_int4pack(torch.from_numpy(u8).cuda(), inner_k_tiles)
        # tinygemm takes BF16 scales: FP16 scales lose their last 3 mantissa bits here
        self.scale_zeros = torch.from_numpy(sz).to("cuda", torch.bfloat16)

    def __call__(self, x):
        torch = _torch()
        if x.shape[1] != self.k:
            x = torch.nn.functional.pad(x, (0, self.k - x.shape[1]))
        return torch._weight_int4pack_mm(x, self.weight, self.group_size, self.scale_zeros)


CSLT_DTYPES = ("fp16", "bf16", "int8", "e4m3")
CSLT_K_ALIGN = 64
CSLT_T_ALIGN = 16   # cuSPARSELt refuses a dense operand narrower than 16 columns (T = 1 fails)


class CusparseLtWeight:
    """2:4 weights compressed once for cuSPARSELt (`torch._cslt_compress`), y = x @ W.T.

    dtype "fp16"/"bf16": dequantized weights, output in that dtype. "int8": integer weights,
    INT32 output, exact. "e4m3": integer weights (exact in FP8 e4m3 when |w| <= 16), output
    `out_dtype` (default float32). With `search`, the algorithm is searched once per T and cached
    (cuSPARSELt 0.8's search crashed on a 256x1024 FP16 weight on the H100: off by default). An eager call
    re-plans in cuSPARSELt on the host (slow, see benchmarks/results/gpu_h100.md): replay it in a
    CUDA graph (`graphed`) for real use.
    """

    def __init__(self, packed: PackedWeights, dtype="fp16", out_dtype=None, search=False, transposed_out=False):
        torch = _torch()
        require(packed.n_keep == 2 and packed.m_group == 4,
                f"cuSPARSELt needs 2:4 sparsity (this packing is {packed.n_keep}:{packed.m_group}); "
                "re-pack with --n-keep 2 --m-group 4")
        require(dtype in CSLT_DTYPES, f"unknown cuSPARSELt dtype {dtype!r}: use one of {CSLT_DTYPES}")
        self.dtype, self.in_features = dtype, packed.in_features
        self.k = -(-packed.k_padded // CSLT_K_ALIGN) * CSLT_K_ALIGN
        if dtype in FLOAT_DTYPES:
            w = np.zeros((packed.out_features, self.k), dtype=np.float32)
            w[:, :packed.in_features] = packed.dequantize()
            self.torch_dtype = _float_dtype(torch, dtype)
            self.out_dtype = None
        else:
            iw = packed.int_weights(padded=True)
            lim = 127 if dtype == "int8" else 16
            require(np.abs(iw).max() <= lim and iw.min() >= -128,
                    f"integer weights [{iw.min()}, {iw.max()}] are not exact in {dtype}: use --bits 4 "
                    f"{'or 8 ' if dtype == 'int8' else ''}symmetric")
            w = np.zeros((packed.out_features, self.k), dtype=np.float32)
            w[:, :packed.k_padded] = iw
            self.torch_dtype = torch.int8 if dtype == "int8" else torch.float8_e4m3fn
            self.out_dtype = torch.int32 if dtype == "int8" else _float_dtype(torch, out_dtype or "fp32")
        self.compressed = torch._cslt_compress(torch.from_numpy(w).cuda().to(self.torch_dtype))
        self.search, self._alg, self.transposed_out = search, {}, transposed_out

    def prepare_x(self, x):
        """Cast/pad activations (T, in) to this weight's input dtype and padded K."""
        torch = _torch()
        if x.shape[1] != self.k:
            x = torch.nn.functional.pad(x, (0, self.k - x.shape[1]))
        return x.to(self.torch_dtype)

    def alg_id(self, x):
        """cuSPARSELt algorithm for x's T: searched once when `search`, else 0 (the default plan)."""
        torch = _torch()
        t = x.shape[0]
        if not self.search:
            return 0
        if t not in self._alg:
            self._alg[t] = int(torch._cslt_sparse_mm_search(self.compressed, x.t(), out_dtype=self.out_dtype,
                                                            transpose_result=True))
        return self._alg[t]

    def __call__(self, x):
        """x prepared by `prepare_x` (T, K): returns (T, out), or (out, T) when `transposed_out`
        (cuSPARSELt's FP16 kernel is ~1.5x faster without the result transpose on the H100).
        T is padded to a multiple of 16 inside."""
        torch = _torch()
        t = x.shape[0]
        if t % CSLT_T_ALIGN:
            x = torch.nn.functional.pad(x, (0, 0, 0, CSLT_T_ALIGN - t % CSLT_T_ALIGN))
        y = torch._cslt_sparse_mm(self.compressed, x.t(), out_dtype=self.out_dtype,
                                  transpose_result=not self.transposed_out, alg_id=self.alg_id(x))
        return y[:, :t] if self.transposed_out else y[:t]


def graphed(fn, reps=1):
    """Capture `reps` back-to-back calls of fn() in a CUDA graph; returns (replay, last output)."""
    torch = _torch()
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(2):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        for _ in range(reps):
            out = fn()
    return g.replay, out


def _tune(mod, x, configs):
    """Time `mod.run(x, cfg)` for every cfg, keep the fastest in `mod.config[T]`; returns {cfg: ms}.

    Each config is timed as a one-launch CUDA graph replayed by triton's do_bench (median,
    L2 flushed before each replay), so host launch cost does not decide the choice."""
    from triton.testing import do_bench     # lazy: heavy optional dependency (nmaccel[gpu])
    times = {}
    for cfg in configs:
        replay, _ = graphed(lambda cfg=cfg: mod.run(x, cfg))
        times[cfg] = do_bench(replay, warmup=5, rep=25, return_mode="median")
    mod.config[x.shape[0]] = min(times, key=times.get)
    mod.timings[x.shape[0]] = times
    return times


class PackedNM24Int4:
    """Triton decode kernel over the packed 2:4 INT4 streams (see `nmaccel.backends.triton_nm`).

    Call with x float16 (T, in), T <= 16: returns float32 (T, out). Weights stay in the packed
    streams on the GPU (`bits_per_weight` counts what the kernel reads).
    """

    def __init__(self, packed: PackedWeights):
        torch = _torch()
        st = nm24_int4_streams(packed)
        self.out_features, self.in_features = packed.out_features, packed.in_features
        self.v_words = torch.from_numpy(st["v_words"]).cuda()
        self.i_half = torch.from_numpy(st["i_half"]).cuda()
        self.scales = torch.from_numpy(st["scales"]).cuda()
        self.block_k, self.blocks_per_scale, self.n_blocks = st["block_k"], st["blocks_per_scale"], st["n_blocks"]
        self.bits_per_weight = nm24_int4_stream_bits(st, packed.in_features)
        self.config, self.timings = {}, {}

    def _check_x(self, x):
        torch = _torch()
        require(x.ndim == 2 and x.shape[1] == self.in_features,
                f"x must be (T, {self.in_features}), got {tuple(x.shape)}")
        require(1 <= x.shape[0] <= TRITON_MAX_T, f"the Triton decode kernel takes T in 1..{TRITON_MAX_T} "
                f"(got T={x.shape[0]}): use CusparseLtWeight or dense for prefill")
        require(x.dtype == torch.float16 and x.is_cuda, "x must be a CUDA float16 tensor")
        return x.contiguous()

    def run(self, x, config):
        torch = _torch()
        from nmaccel.backends import triton_nm   # lazy: imports triton (optional, nmaccel[gpu])
        kernel, block_n, split_k, warps, stages = config
        t = x.shape[0]
        out = (torch.zeros if split_k > 1 else torch.empty)((t, self.out_features), device=x.device,
                                                           dtype=torch.float32)
        return triton_nm.launch(x, self.v_words, self.i_half, self.scales, out, k=self.in_features,
                                n_blocks=self.n_blocks, words=self.block_k // COLS_PER_WORD,
                                blocks_per_scale=self.blocks_per_scale, block_n=block_n,
                                split_k=split_k, num_warps=warps, num_stages=stages, kernel=kernel)

    def tune(self, x, configs=TRITON_CONFIGS):
        """Time every config on x, keep the fastest for this T; returns {config: ms}."""
        x = self._check_x(x)
        return _tune(self, x, configs if x.shape[0] > 1 else [c for c in configs if c[0] == "gather"])

    def __call__(self, x):
        x = self._check_x(x)
        return self.run(x, self.config.get(x.shape[0], DEFAULT_CONFIG))


# ---------------------------------------------------------------------------------------------
# CUDA C++ decode kernel (T = 1), compiled with NVRTC through CuPy
CUDA_GEMV_SRC = r"""
#include <cuda_fp16.h>
extern "C" __global__ void __launch_bounds__(THREADS, MIN_BLOCKS) nm24_int4_gemv(
    const __half* __restrict__ x, const unsigned int* __restrict__ v, const short* __restrict__ ih,
    const __half* __restrict__ scales, float* __restrict__ out,
    int n_rows, int k, int words, int scale_stride, int scale_shift)
{
    // Persistent: warp g takes rows g, g + warps, ...; a row is ceil(nq / 32) steps, lane j of
    // step i takes the 16-byte value chunk q = 32 i + j (4 words = 32 kept weights) and its 8-byte
    // index chunk, loaded one step ahead (across rows too). x (k,) is staged as float in shared
    // memory with one pad float per 64, so the lanes (64 columns apart) hit 32 different banks.
    extern __shared__ float xs[];
    const int kw = words * 16, nq = words >> 2, steps = (nq + 31) >> 5;
    const int lane = threadIdx.x & 31;
    const int warps = (gridDim.x * blockDim.x) >> 5;
    int row = (blockIdx.x * blockDim.x + threadIdx.x) >> 5, step = 0;
    uint4 vn = make_uint4(0u, 0u, 0u, 0u);
    uint2 in_ = make_uint2(0u, 0u);
    if (row < n_rows && lane < nq) {
        vn = __ldcs(reinterpret_cast<const uint4*>(v + (size_t)row * words) + lane);
        in_ = __ldcs(reinterpret_cast<const uint2*>(ih + (size_t)row * words) + lane);
    }
    for (int i = threadIdx.x; i < kw; i += blockDim.x) xs[i + (i >> 6)] = i < k ? __half2float(x[i]) : 0.f;
    __syncthreads();
    float acc = 0.f;
    while (row < n_rows) {
        const uint4 vq = vn;
        const uint2 iq = in_;
        const int q = 32 * step + lane, crow = row;
        if (++step == steps) { step = 0; row += warps; }
        const int qn = 32 * step + lane;
        if (row < n_rows && qn < nq) {
            vn = __ldcs(reinterpret_cast<const uint4*>(v + (size_t)row * words) + qn);
            in_ = __ldcs(reinterpret_cast<const uint2*>(ih + (size_t)row * words) + qn);
        }
        if (q < nq) {
            // Code at nibble p of a 16-bit half: mask it in place and OR in 2^23, giving
            // 2^23 + u * 16^p (u = code + 8, offset binary); subtract 2^23 + 8 * 16^p. Each of the 8
            // slots keeps its own sum (exact: |sum| <= 4 * 8 * 16^3 * 128 = 2^24) and is scaled by
            // 16^-p once per chunk, so a kept weight costs 1 integer op for its code.
            const unsigned int vw[4] = {vq.x, vq.y, vq.z, vq.w};
            const unsigned int iw[4] = {iq.x & 0xFFFFu, iq.x >> 16, iq.y & 0xFFFFu, iq.y >> 16};
            float ps[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
#pragma unroll
            for (int j = 0; j < 4; ++j) {
                const int w = 4 * q + j;
                const unsigned int lo = vw[j] ^ 0x88888888u;
                const unsigned int hi = lo >> 16;
                const unsigned int ii = iw[j];
                const float* xw = xs + w * 16 + (w >> 2);
#pragma unroll
                for (int s = 0; s < 8; ++s) {
                    const int p = s & 3;
                    const unsigned int bits = ((s < 4 ? lo : hi) & (0xFu << (4 * p))) | 0x4B000000u;
                    const float code = __uint_as_float(bits) - (8388608.f + 8.f * (float)(1 << (4 * p)));
                    ps[s] = fmaf(code, xw[4 * (s >> 1) + ((ii >> (2 * s)) & 3u)], ps[s]);
                }
            }
            float chunk = 0.f;
#pragma unroll
            for (int s = 0; s < 8; ++s) chunk = fmaf(ps[s], 1.f / (float)(1 << (4 * (s & 3))), chunk);
            acc = fmaf(chunk, __half2float(scales[(size_t)crow * scale_stride + ((4 * q) >> scale_shift)]), acc);
        }
        if (step == 0) {
#pragma unroll
            for (int o = 16; o > 0; o >>= 1) acc += __shfl_xor_sync(0xffffffffu, acc, o);
            if (lane == 0) out[crow] = acc;
            acc = 0.f;
        }
    }
}
"""
CUDA_THREADS = 512


class CudaNM24Int4Gemv:
    """CUDA C++ (CuPy NVRTC) T = 1 kernel over the same packed 2:4 INT4 streams as PackedNM24Int4.

    y (1, out) float32 = x (1, in) float16 @ W.T. Persistent warps, one row at a time, loads one
    step ahead; x staged in shared memory as float32, so a kept weight costs a mask/OR/FADD
    decode, a 2-bit index, one shared-memory load and one FMA. Needs group_size = 64 * 2^j (a
    lane's 4 words share one scale) and K padded to a multiple of 64.
    """

    def __init__(self, packed: PackedWeights, blocks_per_sm=2):
        torch = _torch()
        self._cp = cupy = _cupy()
        st = nm24_int4_streams(packed)
        cols = packed.scale_group_cols if packed.granularity == "group" else 1 << 30
        wps = cols // COLS_PER_WORD
        require(wps & (wps - 1) == 0 and wps >= 4, f"the CUDA decode kernel needs group_size = 64 * 2^j "
                f"(got {cols}): use PackedNM24Int4 or re-pack with --group-size 128")
        self.scale_shift = wps.bit_length() - 1
        self.out_features, self.in_features = packed.out_features, packed.in_features
        self.v_words = torch.from_numpy(st["v_words"]).cuda()
        self.i_half = torch.from_numpy(st["i_half"]).cuda()
        self.scales = torch.from_numpy(st["scales"]).cuda()
        self.words = self.v_words.shape[1]
        require(self.words % 4 == 0, f"the CUDA decode kernel needs K padded to a multiple of 64 (row of "
                f"{self.words} words): use PackedNM24Int4")
        self.smem = (self.words * COLS_PER_WORD + self.words // 4) * 4
        self.kernel = cupy.RawKernel(CUDA_GEMV_SRC, "nm24_int4_gemv", options=(
            "-std=c++17", f"-DTHREADS={CUDA_THREADS}", f"-DMIN_BLOCKS={blocks_per_sm}"))
        if self.smem > 48 * 1024:
            self.kernel.max_dynamic_shared_size_bytes = self.smem
        sms = torch.cuda.get_device_properties(0).multi_processor_count
        self.grid = max(1, min(sms * blocks_per_sm, -(-self.out_features // (CUDA_THREADS // 32))))

    def __call__(self, x):
        torch = _torch()
        cp = self._cp
        require(x.ndim == 2 and x.shape == (1, self.in_features) and x.dtype == torch.float16 and x.is_cuda,
                f"x must be a CUDA float16 tensor of shape (1, {self.in_features}), got {tuple(x.shape)}")
        x = x.contiguous()
        out = torch.empty((1, self.out_features), device=x.device, dtype=torch.float32)
        ptr = [np.uint64(t.data_ptr()) for t in (x, self.v_words, self.i_half, self.scales, out)]
        with cp.cuda.Stream.from_external(torch.cuda.current_stream()):   # graph-capturable
            self.kernel((self.grid,), (CUDA_THREADS,),
                        (*ptr, np.int32(self.out_features),
                         np.int32(self.in_features), np.int32(self.words), np.int32(self.scales.stride(0)),
                         np.int32(self.scale_shift)),
                        shared_mem=self.smem)
        return out


# ---------------------------------------------------------------------------------------------
# Sparse tensor cores (mma.sp, T = 1..16), CUDA C++ compiled with NVRTC through CuPy
SPMMA_SRC = r"""
#include <cuda_fp16.h>
// Compile-time: NT token tiles of 8 (T <= 8 NT), R 16-row tiles per block, WARPS warps per block
// (they split the K groups of 128 columns and are summed in shared memory), DEPTH groups in flight
// per warp (a register ring: group g + DEPTH is loaded right after group g is used), XRING = 1:
// the activations of those groups ride in the ring too (else they are loaded when used).
//
// One mma.sp.m16n8k32 (FP16 in, FP32 accumulate) = 16 rows x 32 K columns (2 value words of the
// packed stream) x 8 tokens. The weight streams are re-laid once (`spmma_tiles`) in the order
// the fragments want them, per (16-row tile, group of 128 columns): lane (gid, t) reads
// - 16 value bytes (one 128-bit load): byte t of the 8 value words of rows gid and gid + 8, as
//   4 words [a(gid), a(gid+8), b(gid), b(gid+8)], one per k-step; a byte = the 2 kept codes of
//   chunk t of a word; it becomes a half2 with byte_perm + one LOP3 (FP16 magic 1024 + u, OR'ed
//   in and the sign bit flipped) + one HFMA2 (high nibble scaled by 1/16), exact;
// - 8 metadata bytes (one 64-bit load): the packing's index half-words 2t and 2t + 1 of rows gid
//   (bits 0-15) and gid + 8 (bits 16-31), mma.sp's metadata registers as is;
// - 4 scale bytes: the FP16 scales of rows gid, gid + 8 (shared by the 4 lanes of a row pair).
// So a warp streams 512 + 256 + 32 contiguous bytes per tile and group with 3 loads.
// B (activations): x[n, k] read as half2 straight from global memory (L1/L2 resident).
// Group scales multiply each group's FP32 partial sum.
__device__ __forceinline__ unsigned dec2(unsigned w, unsigned sel, __half2 s, __half2 b) {
    unsigned y = __byte_perm(w, 0u, sel);                 // [byte p, 0, byte p, 0]
    unsigned h = (y & 0x00F0000Fu) ^ 0x64806408u;          // 1024 + u_lo | 1024 + 16 u_hi
    __half2 r = __hfma2(*reinterpret_cast<__half2*>(&h), s, b);
    return *reinterpret_cast<unsigned*>(&r);
}

#define MMA_SP(SEL, c, a0, a1, a2, a3, b0, b1, b2, b3, e)                                           \
    asm("mma.sp.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "     \
        "{%8,%9,%10,%11}, {%0,%1,%2,%3}, %12, " #SEL ";"                                            \
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])                                            \
        : "r"(a0), "r"(a1), "r"(a2), "r"(a3), "r"(b0), "r"(b1), "r"(b2), "r"(b3), "r"(e))

// x[n, 128 gg + 16 j + 2 t (+ 8)] as half2, the B fragments of group gg (0 for tokens n >= T)
#define LOAD_X(dst, gg)                                                                             \
    _Pragma("unroll") for (int nt = 0; nt < NT; ++nt)                                               \
    _Pragma("unroll") for (int j = 0; j < 8; ++j) {                                                 \
        dst[nt][j][0] = xok[nt] ? __ldg(xr[nt] + 64 * (gg) + 8 * j) : 0u;                           \
        dst[nt][j][1] = xok[nt] ? __ldg(xr[nt] + 64 * (gg) + 8 * j + 4) : 0u;                       \
    }

extern "C" __global__ void __launch_bounds__(WARPS * 32) nm24_spmma(
    const unsigned* __restrict__ x, int xs, int T,
    const uint4* __restrict__ v, const uint2* __restrict__ m, const unsigned* __restrict__ sc,
    float* __restrict__ y, int N, int G, int tiles)
{
    __shared__ float red[WARPS > 1 ? WARPS : 1][16 * R][8 * NT + 1];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gid = lane >> 2, t = lane & 3;
    const int tile0 = blockIdx.x * R;
    const int g_lo = (G * warp) / WARPS, g_hi = (G * (warp + 1)) / WARPS;
    const __half2 dsc = __halves2half2(__float2half(1.f), __float2half(0.0625f));
    const __half2 dbi = __halves2half2(__float2half(-1032.f), __float2half(-72.f));
    const uint4* pv[R];
    const uint2* pm[R];
    const unsigned* ps[R];
#pragma unroll
    for (int r = 0; r < R; ++r) {
        const size_t tb = (size_t)min(tile0 + r, tiles - 1) * G;
        pv[r] = v + tb * 32 + lane;
        pm[r] = m + tb * 32 + lane;
        ps[r] = sc + tb * 8 + gid;
    }
    const unsigned* xr[NT];
    bool xok[NT];
#pragma unroll
    for (int nt = 0; nt < NT; ++nt) {
        const int n = gid + 8 * nt;
        xok[nt] = n < T;
        xr[nt] = x + (size_t)(xok[nt] ? n : 0) * xs + t;
    }
    float acc[R][NT][4];
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int i = 0; i < 4; ++i) acc[r][nt][i] = 0.f;

    uint4 bv[DEPTH][R];
    uint2 bm[DEPTH][R];
    unsigned bs[DEPTH][R];
#if XRING
    unsigned bx[DEPTH][NT][8][2];
#endif
#pragma unroll
    for (int d = 0; d < DEPTH; ++d)
        if (g_lo + d < g_hi) {
#if XRING
            LOAD_X(bx[d], g_lo + d);
#endif
#pragma unroll
            for (int r = 0; r < R; ++r) {
                bv[d][r] = __ldg(pv[r] + 32 * (g_lo + d));
                bm[d][r] = __ldg(pm[r] + 32 * (g_lo + d));
                bs[d][r] = __ldg(ps[r] + 8 * (g_lo + d));
            }
        }
    for (int g0 = g_lo; g0 < g_hi; g0 += DEPTH) {
#pragma unroll
        for (int c = 0; c < DEPTH; ++c) {
            const int g = g0 + c;
            if (g >= g_hi) break;
            uint4 cv[R];
            uint2 cm[R];
            unsigned cs[R];
#pragma unroll
            for (int r = 0; r < R; ++r) { cv[r] = bv[c][r]; cm[r] = bm[c][r]; cs[r] = bs[c][r]; }
#if XRING
            unsigned (&xb)[NT][8][2] = bx[c];
#else
            unsigned xb[NT][8][2];
            LOAD_X(xb, g);
#endif
#pragma unroll
            for (int r = 0; r < R; ++r) {
                const unsigned w[4] = {cv[r].x, cv[r].y, cv[r].z, cv[r].w};
                const unsigned e[2] = {cm[r].x, cm[r].y};
                const unsigned s2 = cs[r];
                float cc[NT][4];
#pragma unroll
                for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                    for (int i = 0; i < 4; ++i) cc[nt][i] = 0.f;
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    // k-step j pairs value words (a, a + 2): (0,2), (1,3) (selector 0: lanes t = 0, 1)
                    // and (4,6), (5,7) (selector 1: lanes t = 2, 3)
                    const int a = (j >> 1) * 4 + (j & 1), b = a + 2;
                    const unsigned A0 = dec2(w[j], 0x4040u, dsc, dbi), A1 = dec2(w[j], 0x4141u, dsc, dbi);
                    const unsigned A2 = dec2(w[j], 0x4242u, dsc, dbi), A3 = dec2(w[j], 0x4343u, dsc, dbi);
#pragma unroll
                    for (int nt = 0; nt < NT; ++nt) {
                        if (j < 2) {
                            MMA_SP(0, cc[nt], A0, A1, A2, A3, xb[nt][a][0], xb[nt][a][1], xb[nt][b][0],
                                   xb[nt][b][1], e[j & 1]);
                        } else {
                            MMA_SP(1, cc[nt], A0, A1, A2, A3, xb[nt][a][0], xb[nt][a][1], xb[nt][b][0],
                                   xb[nt][b][1], e[j & 1]);
                        }
                    }
                }
                const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&s2));
#pragma unroll
                for (int nt = 0; nt < NT; ++nt) {
                    acc[r][nt][0] = fmaf(cc[nt][0], f.x, acc[r][nt][0]);
                    acc[r][nt][1] = fmaf(cc[nt][1], f.x, acc[r][nt][1]);
                    acc[r][nt][2] = fmaf(cc[nt][2], f.y, acc[r][nt][2]);
                    acc[r][nt][3] = fmaf(cc[nt][3], f.y, acc[r][nt][3]);
                }
            }
            const int gn = g + DEPTH;
            if (gn < g_hi) {
#if XRING
                LOAD_X(bx[c], gn);
#endif
#pragma unroll
                for (int r = 0; r < R; ++r) {
                    bv[c][r] = __ldg(pv[r] + 32 * gn);
                    bm[c][r] = __ldg(pm[r] + 32 * gn);
                    bs[c][r] = __ldg(ps[r] + 8 * gn);
                }
            }
        }
    }
    if (WARPS == 1) {
#pragma unroll
        for (int r = 0; r < R; ++r)
#pragma unroll
            for (int nt = 0; nt < NT; ++nt)
#pragma unroll
                for (int i = 0; i < 4; ++i) {
                    const int row = 16 * (tile0 + r) + gid + 8 * (i >> 1), n = 8 * nt + 2 * t + (i & 1);
                    if (row < N && n < T) y[(size_t)n * N + row] = acc[r][nt][i];
                }
        return;
    }
#pragma unroll
    for (int r = 0; r < R; ++r)
#pragma unroll
        for (int nt = 0; nt < NT; ++nt)
#pragma unroll
            for (int i = 0; i < 4; ++i)
                red[warp][16 * r + gid + 8 * (i >> 1)][8 * nt + 2 * t + (i & 1)] = acc[r][nt][i];
    __syncthreads();
    for (int i = threadIdx.x; i < 16 * R * T; i += WARPS * 32) {
        const int rl = i % (16 * R), n = i / (16 * R), row = 16 * tile0 + rl;
        float s = 0.f;
#pragma unroll
        for (int w = 0; w < WARPS; ++w) s += red[w][rl][n];
        if (row < N) y[(size_t)n * N + row] = s;
    }
}
"""
SPMMA_BLOCK_K = 128     # K columns per group (one scale per group at group_size 128)
SPMMA_MAX_T = 16
SPMMA_PAD_INDEX = 0x4444   # index half-word of a padded row: kept positions (0, 1) in all 4 chunks
# (16-row tiles per block, warps per block, groups in flight per warp, activations in the ring)
# tried by SparseMmaNM24Int4.tune; the first is the untuned default
SPMMA_CONFIGS = [(2, 4, 2, 1), (2, 8, 1, 1), (1, 8, 2, 1), (2, 8, 2, 1), (1, 16, 2, 0), (2, 4, 2, 0),
                 (2, 8, 2, 0), (1, 16, 1, 0), (1, 8, 2, 0), (1, 8, 4, 0)]


def spmma_tiles(streams):
    """Re-lay `nm24_int4_streams` (block_k 128) in the sparse-MMA kernel's fragment order.

    Rows are padded to a multiple of 16 (zero codes, index half-words SPMMA_PAD_INDEX, zero
    scales); scales must be one per 128-column group (repeat coarser ones first). Returns
    (values uint32 (tiles, G, 32 lanes, 4), metadata uint16 (tiles, G, 32, 4), scales float16
    (tiles, G, 8, 2)): lane l = 4 gid + t of tile i, group g holds bytes t of value words
    [a, a + 2] of rows 16 i + gid, 16 i + gid + 8 in word order [a(gid), a(gid+8), a+2(gid),
    a+2(gid+8)] for k-steps j = 0..3 (a = 4 (j // 2) + j % 2), the index half-words
    [2t(gid), 2t(gid+8), 2t+1(gid), 2t+1(gid+8)] of group g, and row pair (gid, gid + 8)'s scales.
    Same bytes as the streams (a permutation), rows padding aside.
    """
    v = streams["v_words"].view(np.uint32)
    ih = streams["i_half"].view(np.uint16)
    sc = streams["scales"]
    n, words = v.shape
    g = words // 8
    require(sc.shape[1] == g, f"spmma_tiles wants one scale per 128 columns ({g}), got {sc.shape[1]}")
    tiles = -(-n // 16)
    npad = tiles * 16
    vp = np.zeros((npad, words), dtype=np.uint32)
    vp[:n] = v
    ip = np.full((npad, words), SPMMA_PAD_INDEX, dtype=np.uint16)
    ip[:n] = ih
    sp = np.zeros((npad, g), dtype=np.float16)
    sp[:n] = sc
    # bytes: [tile, h (gid / gid + 8), gid, group, word, byte t] -> [tile, group, gid, t, h, word]
    vb = vp.view(np.uint8).reshape(tiles, 2, 8, g, 8, 4).transpose(0, 3, 2, 5, 1, 4)
    jj, pp = np.meshgrid(np.arange(4), np.arange(4), indexing="ij")
    word = (jj // 2) * 4 + jj % 2 + 2 * (pp // 2)
    vals = vb[:, :, :, :, pp % 2, word]                  # (tiles, G, 8, 4, j, p)
    vals = np.ascontiguousarray(vals).reshape(tiles, g, 32, 16).view(np.uint32)
    meta = ip.reshape(tiles, 2, 8, g, 4, 2).transpose(0, 3, 2, 4, 5, 1)   # [tile, group, gid, t, s, h]
    meta = np.ascontiguousarray(meta).reshape(tiles, g, 32, 4)
    scl = np.ascontiguousarray(sp.reshape(tiles, 2, 8, g).transpose(0, 3, 2, 1))   # [tile, group, gid, h]
    return vals, meta, scl


def spmma_tiles_reference(tiles, x, n_out):
    """numpy mirror of the kernel's reads over `spmma_tiles`: float32 (T, n_out) from x (T, Kb).

    Rebuilds every row's codes and K columns from the tile arrays alone (the fragment order
    of `spmma_tiles` and SPMMA_SRC's header) and sums group by group in float32, each group times its scale."""
    vals, meta, scl = tiles
    nt, g = vals.shape[:2]
    x = np.asarray(x, dtype=np.float32)
    vb = vals.view(np.uint8).reshape(nt, g, 8, 4, 4, 4)           # [tile, group, gid, t, j, p]
    mh = meta.reshape(nt, g, 8, 4, 2, 2).astype(np.int64)          # [tile, group, gid, t, s, h]
    w = np.zeros((nt, 2, 8, g, 128), dtype=np.float32)             # dense weights [tile, h, gid, group, col]
    for j in range(4):
        for p in range(4):
            h, word = p % 2, (j // 2) * 4 + j % 2 + 2 * (p // 2)
            for t in range(4):
                byte = vb[:, :, :, t, j, p].astype(np.int64).transpose(0, 2, 1)   # [tile, gid, group]
                # index half-word of `word` for row (gid + 8 h): stored at lane t' = word // 2, s = word % 2
                hw = mh[:, :, :, word // 2, word % 2, h].transpose(0, 2, 1)
                for s in range(2):   # slot s of chunk t in this word
                    code = ((byte >> (4 * s)) & 0xF) ^ 8
                    code = code.astype(np.float32) - 8
                    idx = (hw >> (2 * (2 * t + s))) & 3
                    col = 16 * word + 4 * t + idx                                   # [tile, gid, group]
                    ti, gi, gr = np.indices(col.shape)
                    w[ti, h, gi, gr, col] += code
    sc = scl.astype(np.float32).transpose(0, 3, 2, 1)                # [tile, h, gid, group]
    xg = x[:, :g * 128].reshape(x.shape[0], g, 128)
    part = np.einsum("ngk,ahigk->nahig", xg, w, optimize=True).astype(np.float32)   # per-group sums
    y = (part * sc[None]).sum(axis=4, dtype=np.float32)             # [T, tile, h, gid]
    return y.reshape(x.shape[0], nt * 16)[:, :n_out]


def _cupy():
    try:
        import cupy                          # lazy: heavy optional dependency (CUDA kernels only)
    except ImportError:
        raise ToolMissingError("the CUDA kernels need CuPy (cupy-cuda12x/13x): install it or use "
                               "PackedNM24Int4 (Triton)") from None
    return cupy


class SparseMmaNM24Int4:
    """Decode kernel (T = 1..16) on the sparse tensor cores, over the packed 2:4 INT4 streams.

    y float32 (T, out) = x float16 (T, in) @ W.T. Reads the bytes of `PackedNM24Int4`'s arrays
    (`nm24_int4_streams`: value words, 2-bit index stream, FP16 scales; 3.125 bits/weight at
    group 128), permuted once at construction into the mma fragment order (`spmma_tiles`; the
    arrays keep the names v_words / i_half / scales): INT4 codes are widened to FP16 in
    registers, the index half-words are mma.sp's metadata as is, and each 128-column group's
    FP32 partial sum is multiplied by its scale.
    Scales coarser than 128 columns (group 256, ..., channel, tensor) are repeated once here to
    one per 128 columns, so the kernel indexes them by group. Exact for integer x with unit
    scales (partial sums < 2^24). Needs group_size a multiple of 128 (or channel/tensor
    scales); x is zero-padded to K rounded up to 128.
    """

    def __init__(self, packed: PackedWeights):
        torch = _torch()
        self._cp = _cupy()
        st = nm24_int4_streams(packed)
        require(st["block_k"] == SPMMA_BLOCK_K, f"the sparse-MMA kernel needs group_size a multiple of "
                f"{SPMMA_BLOCK_K} (got {packed.group_size}): re-pack with --group-size 128 or use PackedNM24Int4")
        self.out_features, self.in_features, self.k_blocks = packed.out_features, packed.in_features, st["k_blocks"]
        self.groups = st["n_blocks"]
        self.bits_per_weight = nm24_int4_stream_bits(st, packed.in_features)
        st["scales"] = np.ascontiguousarray(st["scales"][:, np.arange(self.groups) // st["blocks_per_scale"]])
        vals, meta, scl = spmma_tiles(st)
        self.tiles = vals.shape[0]
        # the streams in fragment order (names as PackedNM24Int4's: the same bytes, permuted)
        self.v_words = torch.from_numpy(vals.view(np.int32)).cuda()
        self.i_half = torch.from_numpy(meta.view(np.int16)).cuda()
        self.scales = torch.from_numpy(scl).cuda()
        self._kernels, self.config, self.timings = {}, {}, {}

    def _kernel(self, nt, rows, warps, depth, xring):
        key = (nt, rows, warps, depth, xring)
        if key not in self._kernels:
            self._kernels[key] = self._cp.RawKernel(SPMMA_SRC, "nm24_spmma", options=(
                "-std=c++17", f"-DNT={nt}", f"-DR={rows}", f"-DWARPS={warps}", f"-DDEPTH={depth}",
                f"-DXRING={xring}"))
        return self._kernels[key]

    def _check_x(self, x):
        torch = _torch()
        require(x.ndim == 2 and x.shape[1] == self.in_features,
                f"x must be (T, {self.in_features}), got {tuple(x.shape)}")
        require(1 <= x.shape[0] <= SPMMA_MAX_T, f"the sparse-MMA decode kernel takes T in 1..{SPMMA_MAX_T} "
                f"(got T={x.shape[0]}): use CusparseLtWeight or dense for prefill")
        require(x.dtype == torch.float16 and x.is_cuda, "x must be a CUDA float16 tensor")
        return x.contiguous()

    def run(self, x, config):
        """One launch with config (rows, warps, depth, xring) on x (T, in) float16, T <= 16."""
        torch = _torch()
        rows, warps = config[:2]
        t = x.shape[0]
        if x.shape[1] != self.k_blocks:
            x = torch.nn.functional.pad(x, (0, self.k_blocks - x.shape[1]))
        out = torch.empty((t, self.out_features), device=x.device, dtype=torch.float32)
        kern = self._kernel(1 if t <= 8 else 2, *config)
        ptr = [np.uint64(a.data_ptr()) for a in (x, self.v_words, self.i_half, self.scales, out)]
        grid = -(-self.tiles // rows)
        with self._cp.cuda.Stream.from_external(torch.cuda.current_stream()):   # graph-capturable
            kern((grid,), (warps * 32,),
                 (ptr[0], np.int32(self.k_blocks // 2), np.int32(t), ptr[1], ptr[2], ptr[3], ptr[4],
                  np.int32(self.out_features), np.int32(self.groups), np.int32(self.tiles)))
        return out

    def tune(self, x, configs=SPMMA_CONFIGS):
        """Time every (rows, warps, depth, xring) config on x, keep the fastest for this T; returns {config: ms}."""
        return _tune(self, self._check_x(x), configs)

    def __call__(self, x):
        x = self._check_x(x)
        return self.run(x, self.config.get(x.shape[0], SPMMA_CONFIGS[0]))
