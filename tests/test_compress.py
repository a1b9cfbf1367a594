"""Whole-model compression (nmaccel.pack.compress / obs / models.generate) on tiny seeded models,
one real MiniLM layer, bad input and interrupted runs. Float tolerances only where a float
reference is compared with a float re-implementation (KV-cache decoding)."""
import os

import numpy as np
import pytest

from nmaccel.cli import main as cli_main
from nmaccel.errors import NmaccelError
from nmaccel.models.generate import KVCache, sample_sequences, step_logits
from nmaccel.pack import PackedWeights, compress_model, nm_mask
from nmaccel.pack import compress as compress_mod
from nmaccel.pack.compress import STATE_NAME
from nmaccel.pack.manifest import MANIFEST_NAME, load_layers, read_manifest
from nmaccel.pack.obs import METHODS, compress_layer
from nmtest import tiny_llama


@pytest.fixture(autouse=True)
def _no_cache(monkeypatch):
    monkeypatch.setenv("NMACCEL_CACHE", "off")


def test_kv_cache_decoding_matches_full_forward(rng):
    model = tiny_llama(rng)
    toks = rng.integers(0, 40, size=(3, 9))
    full = model.logits(toks)
    cache = KVCache(model, 3, 9)
    steps = np.stack([step_logits(model, toks[:, t], cache) for t in range(9)], axis=1)
    np.testing.assert_allclose(steps, full, rtol=1e-4, atol=1e-4)   # float32 re-implementation
    a = sample_sequences(model, 4, 12, seed=3)
    assert a.shape == (4, 12) and a.min() >= 0 and a.max() < 40
    np.testing.assert_array_equal(a, sample_sequences(model, 4, 12, seed=3))


def test_compress_tiny_llama(rng, tmp_path):
    model = tiny_llama(rng)
    out = tmp_path / "out"
    doc = compress_model(model, out, n_keep=2, m_group=4, bits=4, group_size=8, method="sparsegpt",
                         calibration="self", calib_tokens=64, ctx=16)
    names = model.linear_names()
    assert [e["name"] for e in doc["layers"]] == names and not (out / STATE_NAME).exists()
    assert doc["settings"]["calibration"] == "self" and doc["run"]["calibration_tokens_used"] == 64
    packed = load_layers(out)
    for n in names:
        pw = packed[n]
        assert (pw.n_keep, pw.m_group, pw.bits, pw.group_size) == (2, 4, 4, 8)
        np.testing.assert_array_equal(pw.mask(padded=True).reshape(pw.out_features, -1, 4).sum(-1), 2)
        assert pw.meta["layer"] == n and pw.meta["calibration_tokens"] == 64
    small = model.with_linears({n: pw.dequantize() for n, pw in packed.items()})
    assert np.isfinite(small.perplexity(rng.integers(0, 40, 40), ctx=16))
    # rerun with the same settings: nothing recomputed
    again = compress_model(model, out, n_keep=2, m_group=4, bits=4, group_size=8, method="sparsegpt",
                           calibration="self", calib_tokens=64, ctx=16)
    assert again["layers"] == doc["layers"]


def test_obs_methods_beat_round_to_nearest_on_first_layer(rng, tmp_path):
    """The first layer sees the same calibration inputs under every method: compare its error."""
    model = tiny_llama(rng, d=32, ff=64)
    errs = {}
    for nm in ((2, 4), (4, 4)):
        for method in METHODS:
            doc = compress_model(model, tmp_path / f"{method}{nm[0]}", n_keep=nm[0], m_group=nm[1], bits=4,
                                 group_size=16, method=method, calibration="self", calib_tokens=128, ctx=32)
            errs[method, nm] = doc["layers"][0].get("calib_rel_err")
    assert errs["magnitude", (2, 4)] is None   # calibration-free: no Hessian, no error estimate
    for method in ("gptq", "wanda-obs", "sparsegpt"):
        assert errs[method, (4, 4)] < errs["wanda", (4, 4)]     # GPTQ < RTN (dense)
    assert errs["sparsegpt", (2, 4)] < errs["wanda", (2, 4)]
    assert errs["wanda-obs", (2, 4)] < errs["wanda", (2, 4)]


def test_gptq_with_identity_hessian_is_round_to_nearest(rng):
    """With H = I the OBS updates vanish: GPTQ codes equal RTN codes exactly."""
    w = rng.standard_normal((12, 32))
    a = compress_layer(w, n_keep=2, m_group=4, bits=4, group_size=8, method="gptq", hessian=np.eye(32), damp=0.0)
    b = compress_layer(w, n_keep=2, m_group=4, bits=4, group_size=8, method="magnitude")
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.indices, b.indices)
    np.testing.assert_array_equal(a.scales, b.scales)


@pytest.mark.parametrize("quantizer", ["uniform", "lloyd-max"])
@pytest.mark.parametrize("gs", [8, None])
def test_compress_layer_packs_every_variant(rng, quantizer, gs):
    w = rng.standard_normal((10, 22))          # K=22: padded to 24 for 4:8 / 2:4
    x = rng.standard_normal((200, 22))
    h = 2 * x.T @ x / 200
    for nm in ((2, 4), (4, 8), (3, 3)):
        g = None if gs is None else gs * nm[1] // 4 * 4 // nm[1] * nm[1]
        for method in METHODS:
            pw = compress_layer(w, n_keep=nm[0], m_group=nm[1], bits=4, group_size=g, quantizer=quantizer,
                                method=method, hessian=h)
            pw2 = PackedWeights.from_bytes(pw.to_bytes())
            assert pw2.in_features == 22 and (pw2.n_keep, pw2.m_group) == nm
            assert pw2.granularity == ("channel" if g is None else "group")
            keep = pw2.mask(padded=True)
            np.testing.assert_array_equal(keep.reshape(10, -1, nm[1]).sum(-1), nm[0])
            if method == "magnitude":
                np.testing.assert_array_equal(keep, nm_mask(np.abs(w), *nm))


def test_real_minilm_layer_heldout(rng):
    """A real layer (MiniLM layer 0 FFN-in) with real activations: GPTQ / SparseGPT beat RTN /
    magnitude on held-out tokens, not only on the calibration tokens."""
    from nmaccel.models import loaders
    from nmaccel.models.bert import MiniLM
    mini, wp = MiniLM.builtin()
    name = "encoder.layer.0.intermediate.dense.weight"
    paras = [p for p in loaders.heldout_text().split("\n\n") if p.strip()]
    cal = mini.collect_inputs([np.array(wp.encode(p)) for p in paras[0::2]], [name])[name].astype(np.float64)
    held = mini.collect_inputs([np.array(wp.encode(p)) for p in paras[1::2]], [name])[name].astype(np.float64)
    w = mini.weights[name].astype(np.float64)
    h = 2 * cal.T @ cal / len(cal)

    def err(pw):
        return np.sum((held @ (w - pw.dequantize()).T) ** 2) / np.sum((held @ w.T) ** 2)
    kw = dict(bits=4, group_size=128, hessian=h)
    assert err(compress_layer(w, n_keep=1, m_group=1, method="gptq", **kw)) < \
        err(compress_layer(w, n_keep=1, m_group=1, method="magnitude", **kw))
    assert err(compress_layer(w, n_keep=2, m_group=4, method="sparsegpt", **kw)) < \
        err(compress_layer(w, n_keep=2, m_group=4, method="magnitude", **kw))


# ------------------------------------------------------------------ bad input, interrupted runs

def test_generic_weights_and_padding(rng, tmp_path):
    weights = {"a.weight": rng.standard_normal((6, 10)).astype(np.float32),   # K=10: padded to 12
               "b.weight": rng.standard_normal((4, 8)).astype(np.float32), "b.bias": np.zeros(4, np.float32)}
    doc = compress_model(weights, tmp_path / "o", n_keep=2, m_group=4, bits=4, group_size=4)
    assert [e["name"] for e in doc["layers"]] == ["a.weight", "b.weight"]
    assert doc["settings"]["method"] == "magnitude"
    pw = load_layers(tmp_path / "o")["a.weight"]
    assert pw.in_features == 10 and pw.k_padded == 12
    with pytest.raises(NmaccelError, match="needs calibration"):
        compress_model(weights, tmp_path / "p", method="sparsegpt")
    assert not (tmp_path / "p").exists()


def test_bad_input(rng, tmp_path):
    with pytest.raises(NmaccelError, match="no linear"):
        compress_model({"bias": np.zeros(3, np.float32)}, tmp_path / "a")
    w = rng.standard_normal((4, 8)).astype(np.float32)
    w[1, 2] = np.nan
    with pytest.raises(NmaccelError, match="NaN"):
        compress_model({"x.weight": w}, tmp_path / "b")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    good = {"x.weight": rng.standard_normal((4, 8)).astype(np.float32)}
    with pytest.raises(NmaccelError, match="not a previous"):
        compress_model(good, other)
    assert os.listdir(other) == ["notes.txt"]
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(NmaccelError, match="not a directory"):
        compress_model(good, f)
    os.symlink(other, tmp_path / "link")
    with pytest.raises(NmaccelError, match="symlink"):
        compress_model(good, tmp_path / "link")
    with pytest.raises(NmaccelError, match="group_size"):
        compress_model(good, tmp_path / "c", n_keep=4, m_group=8, group_size=4)


def test_interrupted_run_resumes(rng, tmp_path, monkeypatch):
    model = tiny_llama(rng)
    out = tmp_path / "out"
    kw = dict(n_keep=2, m_group=4, bits=4, group_size=8, method="sparsegpt", calibration="self",
              calib_tokens=32, ctx=16)
    real = compress_mod.compress_layer
    calls = []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(*a, **k)
    monkeypatch.setattr(compress_mod, "compress_layer", flaky)
    with pytest.raises(KeyboardInterrupt):
        compress_model(model, out, **kw)
    assert not (out / MANIFEST_NAME).exists() and (out / STATE_NAME).exists()
    assert len(os.listdir(out / "layers")) == 4 and not [f for f in os.listdir(out / "layers") if f.startswith(".")]
    with pytest.raises(NmaccelError, match="no manifest"):
        read_manifest(out)
    monkeypatch.setattr(compress_mod, "compress_layer", real)
    doc = compress_model(model, out, **kw)
    assert doc["run"]["resumed_layers"] == 4 and len(doc["layers"]) == 14
    fresh = compress_model(model, tmp_path / "fresh", **kw)
    for a, b in zip(doc["layers"], fresh["layers"]):
        assert a["sha256"] == b["sha256"], a["name"]   # resuming gives the same bytes


def test_cli(rng, tmp_path, capsys):
    np.savez(tmp_path / "m.npz", **{"l.weight": rng.standard_normal((8, 16)).astype(np.float32)})
    assert cli_main(["compress", str(tmp_path / "m.npz"), "--nm", "4:8", "--bits", "8", "-o", str(tmp_path / "o")]) == 0
    doc = read_manifest(tmp_path / "o")
    assert doc["command"].startswith("nmaccel compress") and doc["layers"][0]["bits"] == 8
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x").write_text("x")
    assert cli_main(["compress", str(tmp_path / "m.npz"), "-o", str(tmp_path / "junk")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not a previous" in err and "Traceback" not in err
    assert cli_main(["compress", str(tmp_path / "m.npz"), "--nm", "2:3:4", "-o", str(tmp_path / "z")]) == 2
