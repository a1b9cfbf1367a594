"""GPU backend: numpy layout/decoder tests (run everywhere) and CUDA tests (skip without a GPU)."""
import numpy as np
import pytest

from nmaccel.backends import gpu
from nmaccel.errors import NmaccelError
from nmaccel.golden.gemm import gemm
from nmaccel.pack.format import PackedWeights


def random_packed(rng, out, k, *, n_keep=2, m_group=4, bits=4, granularity="group", group_size=128,
                  unit_scales=False):
    """Random symmetric uniform packing with an exact n_keep:m_group mask."""
    kp = -(-k // m_group) * m_group
    keys = rng.random((out, kp // m_group, m_group))
    order = np.argsort(keys, axis=2)
    mask = np.zeros_like(keys, dtype=bool)
    np.put_along_axis(mask, order[:, :, :n_keep], True, axis=2)
    mask = mask.reshape(out, kp)
    codes = rng.integers(-(1 << (bits - 1)), 1 << (bits - 1), size=(out, kp))
    codes[:, k:] = 0    # padded columns hold weight 0 (DESIGN.md)
    rows = 1 if granularity == "tensor" else out
    cols = -(-kp // group_size) if granularity == "group" else 1
    scales = np.ones((rows, cols)) if unit_scales else rng.uniform(0.01, 0.1, size=(rows, cols))
    return PackedWeights.from_dense_codes(codes * mask, mask, in_features=k, n_keep=n_keep, m_group=m_group,
                                          bits=bits, quantizer="uniform", granularity=granularity,
                                          group_size=group_size if granularity == "group" else None,
                                          scales=scales)


# ---- numpy side (CI) --------------------------------------------------------------------------
@pytest.mark.parametrize("out,k", [(8, 256), (5, 512)])
def test_streams_are_the_format_memory_images(rng, out, k):
    p = random_packed(rng, out, k)
    st = gpu.nm24_int4_streams(p)
    assert st["k_blocks"] == p.k_padded
    np.testing.assert_array_equal(st["v_words"].view(np.uint32).ravel(), p.memory_image("values", 32))
    np.testing.assert_array_equal(st["i_half"].view(np.uint16).ravel(), p.memory_image("indices", 16))
    np.testing.assert_array_equal(st["scales"].astype(np.float32), p.scales)


@pytest.mark.parametrize("k,granularity,group_size", [(256, "group", 128), (200, "group", 64), (100, "group", 32),
                                                      (130, "channel", None), (77, "tensor", None),
                                                      (384, "group", 384), (48, "group", 16)])
@pytest.mark.parametrize("t", [1, 5, 16])
def test_kernel_reference_exact_with_unit_scales(rng, k, granularity, group_size, t):
    p = random_packed(rng, 7, k, granularity=granularity, group_size=group_size or 128, unit_scales=True)
    x_q = rng.integers(-128, 128, size=(t, k))
    got = gpu.nm24_int4_reference(gpu.nm24_int4_streams(p), x_q.astype(np.float16))
    assert np.all(got == np.round(got))
    np.testing.assert_array_equal(got.astype(np.int64), gemm(p, x_q.astype(np.int8)))


@pytest.mark.parametrize("k,granularity", [(512, "group"), (260, "group"), (300, "channel")])
def test_kernel_reference_matches_dequantize(rng, k, granularity):
    p = random_packed(rng, 9, k, granularity=granularity)
    x = rng.standard_normal((3, k)).astype(np.float16)
    got = gpu.nm24_int4_reference(gpu.nm24_int4_streams(p), x)
    ref = x.astype(np.float64) @ p.dequantize().astype(np.float64).T
    # float32 block sums of at most k products |x * code * scale| < 4 * 8 * 0.1: rel error ~ k * 2^-24
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-4)


def test_stream_bits_per_weight_is_3_125_at_group_128(rng):
    p = random_packed(rng, 16, 1024)
    st = gpu.nm24_int4_streams(p)
    assert gpu.nm24_int4_stream_bits(st, 1024) == 3.125
    assert p.bits_per_weight() == 3.125


@pytest.mark.parametrize("n_keep,m_group,granularity,group_size", [(2, 4, "group", 128), (4, 4, "group", 64),
                                                                    (1, 4, "channel", None), (2, 8, "group", 256)])
def test_int4pack_inputs_decode_to_dequantized(rng, n_keep, m_group, granularity, group_size):
    p = random_packed(rng, 8, 300, n_keep=n_keep, m_group=m_group, granularity=granularity,
                      group_size=group_size or 128)
    u8, sz, g, kq = gpu.int4pack_inputs(p)
    assert kq % gpu.INT4PACK_K_ALIGN == 0 and u8.shape == (8, kq // 2) and sz.shape == (kq // g, 8, 2)
    w = gpu.int4pack_reference(u8, sz, g)
    np.testing.assert_array_equal(w[:, :300], p.dequantize())
    np.testing.assert_array_equal(w[:, 300:], 0)


def test_bad_packings_raise(rng):
    with pytest.raises(NmaccelError, match="n_keep=2, m_group=4"):
        gpu.nm24_int4_streams(random_packed(rng, 4, 64, n_keep=1, m_group=4))
    with pytest.raises(NmaccelError, match="4-bit"):
        gpu.nm24_int4_streams(random_packed(rng, 4, 64, bits=8))
    with pytest.raises(NmaccelError, match="multiple of 16"):
        gpu.nm24_int4_streams(random_packed(rng, 4, 64, group_size=8))
    with pytest.raises(NmaccelError, match="group_size in"):
        gpu.int4pack_inputs(random_packed(rng, 4, 64, group_size=48))
    with pytest.raises(NmaccelError, match="4-bit"):
        gpu.int4pack_inputs(random_packed(rng, 4, 64, bits=2))
    with pytest.raises(NmaccelError, match="2-D"):
        gpu.nm24_int4_reference(gpu.nm24_int4_streams(random_packed(rng, 4, 64)), np.zeros(64))



@pytest.mark.parametrize("out,k,granularity", [(16, 128, "group"), (40, 384, "channel"), (33, 1408, "group")])
@pytest.mark.parametrize("t", [1, 9])
def test_spmma_tiles_exact_vs_golden(rng, out, k, granularity, t):
    """The sparse-MMA kernel's fragment-order layout (a permutation of the streams) decodes to W."""
    p = random_packed(rng, out, k, granularity=granularity, unit_scales=True)
    st = gpu.nm24_int4_streams(p)
    g = st["n_blocks"]
    st["scales"] = np.ascontiguousarray(st["scales"][:, np.arange(g) // st["blocks_per_scale"]])
    vals, meta, scl = gpu.spmma_tiles(st)
    tiles = -(-out // 16)
    assert vals.shape == (tiles, g, 32, 4) and meta.shape == (tiles, g, 32, 4) and scl.shape == (tiles, g, 8, 2)
    assert vals.nbytes * out == st["v_words"].nbytes * tiles * 16     # same bytes, rows padded to 16
    x_q = rng.integers(-128, 128, size=(t, k))
    xp = np.zeros((t, st["k_blocks"]), dtype=np.float32)
    xp[:, :k] = x_q
    got = gpu.spmma_tiles_reference((vals, meta, scl), xp, out)
    np.testing.assert_array_equal(got.astype(np.int64), gemm(p, x_q.astype(np.int8)))


def test_spmma_tiles_with_scales_matches_streams_reference(rng):
    p = random_packed(rng, 24, 640)
    st = gpu.nm24_int4_streams(p)
    x = rng.standard_normal((3, 640)).astype(np.float16)
    got = gpu.spmma_tiles_reference(gpu.spmma_tiles(st), x.astype(np.float32), 24)
    np.testing.assert_allclose(got, gpu.nm24_int4_reference(st, x), rtol=1e-5, atol=1e-5)

# ---- CUDA side (skips cleanly without a GPU) -------------------------------------------------------
@pytest.fixture(scope="module")
def torch():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    pytest.importorskip("triton")
    return torch


# each kernel with a plain store (split_k 1) and with atomic split-K accumulation
EXACT_CONFIGS = [("gather", 64, 1, 2, 3), ("gather", 32, 4, 1, 3), ("gather_t", 32, 8, 2, 2), ("dot", 64, 1, 4, 3),
                 ("dot", 128, 4, 4, 3)]


@pytest.mark.parametrize("out,k", [(256, 512), (200, 1000), (40, 98)])
@pytest.mark.parametrize("t", [1, 5, 16])
def test_triton_kernel_exact_vs_golden(torch, rng, out, k, t):
    p = random_packed(rng, out, k, unit_scales=True)
    x_q = rng.integers(-128, 128, size=(t, k)).astype(np.int8)
    mod = gpu.PackedNM24Int4(p)
    for cfg in EXACT_CONFIGS:
        y = mod.run(torch.from_numpy(x_q).cuda().half(), cfg).cpu().numpy()
        np.testing.assert_array_equal(y.astype(np.int64), gemm(p, x_q), err_msg=str(cfg))


@pytest.mark.parametrize("granularity", ["group", "channel"])
def test_triton_kernel_with_scales_matches_reference(torch, rng, granularity):
    p = random_packed(rng, 96, 640, granularity=granularity)
    x = rng.standard_normal((4, 640)).astype(np.float16)
    mod = gpu.PackedNM24Int4(p)
    for cfg in EXACT_CONFIGS[1:4]:
        y = mod.run(torch.from_numpy(x).cuda(), cfg).cpu().numpy()
        np.testing.assert_allclose(y, gpu.nm24_int4_reference(gpu.nm24_int4_streams(p), x), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("out,k,granularity", [(256, 512, "group"), (200, 1000, "group"), (40, 130, "channel"),
                                               (4500, 64, "group")])   # > 16 warps x SMs: several rows per warp
def test_cuda_gemv_exact_vs_golden_and_scaled(torch, rng, out, k, granularity):
    pytest.importorskip("cupy")
    p = random_packed(rng, out, k, granularity=granularity, unit_scales=True)
    x_q = rng.integers(-128, 128, size=(1, k)).astype(np.int8)
    for bps in (1, 2):
        y = gpu.CudaNM24Int4Gemv(p, blocks_per_sm=bps)(torch.from_numpy(x_q).cuda().half()).cpu().numpy()
        np.testing.assert_array_equal(y.astype(np.int64), gemm(p, x_q))
    p2 = random_packed(rng, out, k, granularity=granularity)
    x = rng.standard_normal((1, k)).astype(np.float16)
    y2 = gpu.CudaNM24Int4Gemv(p2)(torch.from_numpy(x).cuda()).cpu().numpy()
    np.testing.assert_allclose(y2, gpu.nm24_int4_reference(gpu.nm24_int4_streams(p2), x), rtol=1e-5, atol=1e-4)
    with pytest.raises(NmaccelError, match=r"shape \(1, "):
        gpu.CudaNM24Int4Gemv(p2)(torch.zeros(2, k, device="cuda", dtype=torch.float16))
    with pytest.raises(NmaccelError, match="group_size = 64"):
        gpu.CudaNM24Int4Gemv(random_packed(rng, 8, 128, group_size=32))


def test_triton_kernel_rejects_bad_x(torch, rng):
    mod = gpu.PackedNM24Int4(random_packed(rng, 32, 256))
    with pytest.raises(NmaccelError, match="T in 1..16"):
        mod(torch.zeros(17, 256, device="cuda", dtype=torch.float16))
    with pytest.raises(NmaccelError, match=r"\(T, 256\)"):
        mod(torch.zeros(1, 128, device="cuda", dtype=torch.float16))


@pytest.mark.parametrize("t", [1, 16, 64])
def test_int8_dense_exact_vs_golden(torch, rng, t):
    p = random_packed(rng, 128, 320, bits=8, n_keep=4, m_group=4)
    x_q = rng.integers(-128, 128, size=(t, 320)).astype(np.int8)
    y = gpu.int8_linear(torch.from_numpy(x_q).cuda(), gpu.int8_weight(p)).cpu().numpy()
    np.testing.assert_array_equal(y.astype(np.int64), gemm(p, x_q))


@pytest.mark.parametrize("t", [1, 16, 96])
def test_cusparselt_int8_exact_vs_golden(torch, rng, t):
    p = random_packed(rng, 256, 512, unit_scales=True)
    x_q = rng.integers(-128, 128, size=(t, 512)).astype(np.int8)
    w = gpu.CusparseLtWeight(p, "int8")
    y = w(w.prepare_x(torch.from_numpy(x_q).cuda())).cpu().numpy()
    assert y.dtype == np.int32
    np.testing.assert_array_equal(y.astype(np.int64), gemm(p, x_q))


def test_cusparselt_e4m3_exact_small_x(torch, rng):
    # integers |x| <= 16 are exact in e4m3; float32 output is exact below 2^24
    p = random_packed(rng, 128, 256, unit_scales=True)
    x_q = rng.integers(-16, 17, size=(32, 256)).astype(np.int8)
    w = gpu.CusparseLtWeight(p, "e4m3")
    y = w(w.prepare_x(torch.from_numpy(x_q).cuda().float())).cpu().numpy()
    np.testing.assert_array_equal(y.astype(np.int64), gemm(p, x_q))


@pytest.mark.parametrize("dtype", ["fp16", "bf16"])
def test_cusparselt_float_close_to_dequantized(torch, rng, dtype):
    p = random_packed(rng, 256, 1024)
    x = rng.standard_normal((64, 1024)).astype(np.float32)
    w = gpu.CusparseLtWeight(p, dtype)
    y = w(w.prepare_x(torch.from_numpy(x).cuda())).float().cpu().numpy()
    ref = x.astype(np.float64) @ p.dequantize().astype(np.float64).T
    # output rounding to fp16 (2^-11) / bf16 (2^-8) relative to |y| ~ 1, plus input rounding of x
    tol = {"fp16": 1e-2, "bf16": 6e-2}[dtype]
    np.testing.assert_allclose(y, ref, rtol=tol, atol=tol)
    wt = gpu.CusparseLtWeight(p, dtype, transposed_out=True)
    yt = wt(wt.prepare_x(torch.from_numpy(x[:5]).cuda())).float().cpu().numpy()
    assert yt.shape == (256, 5)
    np.testing.assert_allclose(yt.T, ref[:5], rtol=tol, atol=tol)


def test_int4pack_exact_small_ints_and_close_with_scales(torch, rng):
    p = random_packed(rng, 128, 512, unit_scales=True)
    x_q = rng.integers(-1, 2, size=(4, 512)).astype(np.int8)  # |y| <= 8 * 256 / 8: exact in bf16 below 256
    ref = gemm(p, x_q)
    assert np.abs(ref).max() <= 256
    w = gpu.Int4PackWeight(p)
    y = w(torch.from_numpy(x_q).cuda().bfloat16()).float().cpu().numpy()
    np.testing.assert_array_equal(y.astype(np.int64), ref)
    p2 = random_packed(rng, 128, 512)
    x = rng.standard_normal((4, 512)).astype(np.float32)
    y2 = gpu.Int4PackWeight(p2)(torch.from_numpy(x).cuda().bfloat16()).float().cpu().numpy()
    ref2 = x.astype(np.float64) @ p2.dequantize().astype(np.float64).T
    np.testing.assert_allclose(y2, ref2, rtol=3e-2, atol=3e-2)   # BF16 x, scales and output: 2^-8


def test_graphed_replay_matches_eager(torch, rng):
    p = random_packed(rng, 128, 256, unit_scales=True)
    x_q = rng.integers(-128, 128, size=(32, 256)).astype(np.int8)
    w = gpu.CusparseLtWeight(p, "int8")
    xs = w.prepare_x(torch.from_numpy(x_q).cuda())
    replay, out = gpu.graphed(lambda: w(xs))
    replay()
    torch.cuda.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy().astype(np.int64), gemm(p, x_q))


# ---- sparse tensor cores (mma.sp) and dense FP8 ---------------------------------------------------
SPMMA_SHAPES = [(256, 512, "group"), (200, 1000, "group"), (40, 384, "channel"), (4500, 128, "group"),
                (33, 1408, "group")]   # ragged row tiles, K padded to 128, one group, 11 groups


@pytest.mark.parametrize("out,k,granularity", SPMMA_SHAPES)
@pytest.mark.parametrize("t", [1, 3, 8, 9, 16])
def test_spmma_exact_vs_golden(torch, rng, out, k, granularity, t):
    pytest.importorskip("cupy")
    p = random_packed(rng, out, k, granularity=granularity, unit_scales=True)
    x_q = rng.integers(-128, 128, size=(t, k)).astype(np.int8)
    mod = gpu.SparseMmaNM24Int4(p)
    x = torch.from_numpy(x_q).cuda().half()
    for cfg in gpu.SPMMA_CONFIGS:
        y = mod.run(x, cfg).cpu().numpy()
        np.testing.assert_array_equal(y.astype(np.int64), gemm(p, x_q), err_msg=str(cfg))


@pytest.mark.parametrize("granularity,group_size", [("group", 128), ("group", 256), ("channel", None)])
def test_spmma_with_scales_matches_reference(torch, rng, granularity, group_size):
    pytest.importorskip("cupy")
    p = random_packed(rng, 96, 640 if group_size != 256 else 768, granularity=granularity,
                      group_size=group_size or 128)
    x = rng.standard_normal((5, p.in_features)).astype(np.float16)
    mod = gpu.SparseMmaNM24Int4(p)
    ref = gpu.nm24_int4_reference(gpu.nm24_int4_streams(p), x)
    for cfg in gpu.SPMMA_CONFIGS[:3]:
        y = mod.run(torch.from_numpy(x).cuda(), cfg).cpu().numpy()
        # FP32 sums in another order than the reference: rel error ~ k * 2^-24
        np.testing.assert_allclose(y, ref, rtol=1e-5, atol=1e-4, err_msg=str(cfg))


def test_spmma_rejects_bad_input(torch, rng):
    pytest.importorskip("cupy")
    with pytest.raises(NmaccelError, match="multiple of 128"):
        gpu.SparseMmaNM24Int4(random_packed(rng, 16, 256, group_size=64))
    mod = gpu.SparseMmaNM24Int4(random_packed(rng, 32, 256))
    with pytest.raises(NmaccelError, match="T in 1..16"):
        mod(torch.zeros(17, 256, device="cuda", dtype=torch.float16))
    with pytest.raises(NmaccelError, match=r"\(T, 256\)"):
        mod(torch.zeros(1, 128, device="cuda", dtype=torch.float16))


def test_spmma_graphed_and_tuned(torch, rng):
    pytest.importorskip("cupy")
    p = random_packed(rng, 128, 256, unit_scales=True)
    x_q = rng.integers(-128, 128, size=(4, 256)).astype(np.int8)
    mod = gpu.SparseMmaNM24Int4(p)
    x = torch.from_numpy(x_q).cuda().half()
    times = mod.tune(x, gpu.SPMMA_CONFIGS[:2])
    assert set(times) == set(gpu.SPMMA_CONFIGS[:2]) and mod.config[4] in times
    replay, out = gpu.graphed(lambda: mod(x))
    replay()
    torch.cuda.synchronize()
    np.testing.assert_array_equal(out.cpu().numpy().astype(np.int64), gemm(p, x_q))


@pytest.mark.parametrize("t", [1, 16, 40])
def test_dense_fp8_exact_small_x(torch, rng, t):
    p = random_packed(rng, 64, 300, unit_scales=True)
    x_q = rng.integers(-16, 17, size=(t, 300)).astype(np.int8)
    w = gpu.Fp8Weight(p, out_dtype="fp32")
    y = w(w.prepare_x(torch.from_numpy(x_q).cuda().float())).cpu().numpy()
    assert y.shape == (t, 64)
    np.testing.assert_array_equal(y.astype(np.int64), gemm(p, x_q))
