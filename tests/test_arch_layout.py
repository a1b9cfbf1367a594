"""nmaccel.arch.layout: one field table per packed word. Per layout and config: vectorized
to_words / from_words round trip for host widths 8..128 (FINN test_data_packing style), encode /
decode of one record, split() slices a PyRTL wire at the same bits, and known-answer words."""
import numpy as np
import pyrtl
import pytest

from nmaccel.arch import layout
from nmaccel.arch.config import MODES, ArrayConfig, TopConfig
from nmaccel.errors import NmaccelError
from nmaccel.hdl.signed import join

ARRAYS = [ArrayConfig(), ArrayConfig(rows=2, cols=3, n_max=2, m_max=4, modes=MODES),
          ArrayConfig(rows=1, cols=2, n_max=3, m_max=8, modes=("int8",), act_bits=9, weight_bits=9)]
TOPS = [TopConfig(array=ArrayConfig(rows=2, cols=2, modes=MODES), host_bits=32, group_scales=True,
                  raw_bits=48),
        TopConfig(array=ArrayConfig(rows=3, cols=2, n_max=2, m_max=8), host_bits=80, t_max=5,
                  k_tiles_max=3, n_tiles_max=9)]


def _layouts():
    out = []
    for a in ARRAYS:
        out += [(f"lane-{a.rows}x{a.cols}", layout.lane_layout(a)),
                (f"pe-{a.rows}x{a.cols}", layout.pe_word_layout(a)),
                (f"pe-store-{a.rows}x{a.cols}", layout.pe_store_layout(a)),
                (f"window-{a.rows}x{a.cols}", layout.window_layout(a))]
        if a.has_codebook:
            out.append((f"codebook-{a.rows}x{a.cols}", layout.codebook_layout(a)))
    for i, p in enumerate(TOPS):
        out += [(f"header-{i}", layout.header_layout(p)), (f"act-{i}", layout.activation_layout(p)),
                (f"weight-{i}", layout.weight_layout(p)), (f"gs-{i}", layout.groupscale_layout(p)),
                (f"epilogue-{i}", layout.epilogue_layout(p)), (f"out-{i}", layout.output_layout(p))]
        if p.array.has_int4:
            out.append((f"act-int4-{i}", layout.activation_layout(p, int4=True)))
        if p.array.has_codebook:
            out.append((f"weight-cb-{i}", layout.weight_layout(p, codebook=True)))
    return out


LAYOUTS = _layouts()


def _random_values(rng, lay, n):
    vals = {}
    for f in lay.fields:
        if isinstance(f.shape, layout.Layout):
            sub = _random_values(rng, f.shape, n * f.n)
            shape = (n, f.n) if f.count is not None else (n,)
            vals[f.name] = {k: v.reshape(shape + v.shape[1:]) for k, v in sub.items()}
            continue
        lo, hi = (-(1 << (f.shape - 1)), 1 << (f.shape - 1)) if f.signed else (0, 1 << f.shape)
        v = rng.integers(lo, hi, size=(n, f.n))
        vals[f.name] = v if f.count is not None else v[:, 0]
    return vals


def _assert_same(got, want):
    assert got.keys() == want.keys()
    for k in want:
        if isinstance(want[k], dict):
            _assert_same(got[k], want[k])
        else:
            np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("name,lay", LAYOUTS, ids=[n for n, _ in LAYOUTS])
@pytest.mark.parametrize("h", [8, 16, 33, 64, 80, 128])
def test_round_trip(name, lay, h):
    rng = np.random.default_rng(len(name) * 131 + h)
    vals = _random_values(rng, lay, 5)
    words = lay.to_words(h, **vals)
    assert words.shape == (5, lay.words(h))
    assert words.dtype == (np.uint64 if h <= 64 else object)
    assert all(0 <= int(w) < (1 << h) for w in words.ravel())
    _assert_same(lay.from_words(words, h), vals)
    # the words are the LSB-first split of one integer per record, equal for every host width
    ints = [sum(int(w) << (h * i) for i, w in enumerate(row)) for row in words]
    assert all(v < (1 << lay.bits) for v in ints)
    one = layout.record_at(vals, 2)
    assert lay.encode(**one) == ints[2]
    _assert_same(lay.decode(ints[2]), one)


@pytest.mark.parametrize("name,lay", LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_split_reads_the_encoded_bits(name, lay):
    """PyRTL slices from split() carry exactly each field's encoded bits."""
    pyrtl.reset_working_block()
    rng = np.random.default_rng(len(name))
    vals = layout.record_at(_random_values(rng, lay, 1), 0)
    word = pyrtl.Input(lay.bits, "word")
    outs = {}

    def probe(prefix, parts, want):
        for k, v in parts.items():
            if isinstance(v, dict):
                probe(f"{prefix}{k}_", v, want[k])
                continue
            for i, wire in enumerate(v if isinstance(v, list) else [v]):
                o = pyrtl.Output(len(wire), f"{prefix}{k}_{i}")
                o <<= wire
                w = np.asarray(want[k]).ravel()
                outs[o.name] = int(w[i]) & ((1 << len(wire)) - 1)

    parts = lay.split(word)
    for f in lay.fields:
        if isinstance(f.shape, layout.Layout):
            subs = parts[f.name] if f.count is not None else [parts[f.name]]
            for j, sub in enumerate(subs):
                probe(f"{f.name}{j}_", sub, {k: np.asarray(v).reshape(f.n, -1)[j]
                                             for k, v in vals[f.name].items()})
        else:
            probe("", {f.name: parts[f.name]}, {f.name: vals[f.name]})
    sim = pyrtl.Simulation()
    sim.step({"word": lay.encode(**vals)})
    for name_, want in outs.items():
        assert sim.inspect(name_) == want, name_


def test_known_answer_words():
    a = ArrayConfig()                                   # 8-bit codes, 3-bit indices
    lane = layout.lane_layout(a)
    assert (lane.bits, lane.offsets) == (12, {"code": 0, "index": 8, "keep": 11})
    assert lane.encode(code=-1, index=5, keep=1) == 0xDFF
    assert lane.decode(0x17F) == {"code": 127, "index": 1, "keep": 0}
    pe = layout.pe_word_layout(a)
    assert pe.encode(lane={"code": [1, 2, 3, -4], "index": [0, 1, 2, 7], "keep": [1, 1, 0, 1]}) \
        == 0xFFC203902801
    top = TopConfig(array=ArrayConfig(rows=1, cols=2, n_max=2, m_max=2, modes=("int8",)),
                    t_max=2, k_tiles_max=4, n_tiles_max=4, host_bits=16, mult_bits=4, bias_bits=4,
                    max_shift=3)
    ep = layout.epilogue_layout(top)                    # per column mult(4) | shift(2) | bias(4)
    words = ep.to_words(16, col={"mult": [[3, 5]], "shift": [[2, 1]], "bias": [[-1, 6]]})
    col0, col1 = 3 | 2 << 4 | 0xF << 6, 5 | 1 << 4 | 6 << 6
    assert words.tolist() == [[(col0 | col1 << 10) & 0xFFFF, (col0 | col1 << 10) >> 16]]
    hdr = layout.header_layout(top)
    assert [f.name for f in hdr.fields] == ["mode", "n_keep", "m_group", "relu", "raw", "n_steps",
                                            "n_kt", "n_nt"]
    assert hdr.bits == top.hdr_bits


@pytest.mark.parametrize("name,lay", LAYOUTS, ids=[n for n, _ in LAYOUTS])
def test_join_inverts_split(name, lay):
    """hdl join() of split()'s fields rebuilds the word; slice() of a whole field is its span."""
    pyrtl.reset_working_block()
    rng = np.random.default_rng(len(name) + 7)
    value = lay.encode(**layout.record_at(_random_values(rng, lay, 1), 0))
    word = pyrtl.Input(lay.bits, "word")
    again = pyrtl.Output(lay.bits, "again")
    again <<= join(lay, **lay.split(word))
    flat = pyrtl.Output(lay.bits, "flat")
    flat <<= join(lay, **lay.split(word, nested=False))
    sim = pyrtl.Simulation()
    sim.step({"word": value})
    assert sim.inspect("again") == value and sim.inspect("flat") == value
    for f in lay.fields:
        lo, hi = lay.span(f.name)
        assert (lo, hi - lo) == (lay.offsets[f.name], f.bits)
        assert len(lay.slice(word, f.name)) == f.bits


def test_slice_and_join_errors():
    pyrtl.reset_working_block()
    lay = layout.Layout([("v", 4, 3), ("s", 2)])
    assert lay.span("v", 1, 3) == (4, 12) and lay.span("s") == (12, 14)
    with pytest.raises(NmaccelError, match="outside"):
        lay.span("v", 2, 4)
    with pytest.raises(NmaccelError, match="2 elements, 3 expected"):
        join(lay, v=[pyrtl.Const(0, bitwidth=4)] * 2, s=pyrtl.Const(0, bitwidth=2))
    with pytest.raises(NmaccelError, match="5 bits, 4 expected"):
        join(lay, v=[pyrtl.Const(0, bitwidth=5)] * 3, s=pyrtl.Const(0, bitwidth=2))
    with pytest.raises(NmaccelError, match="no value"):
        join(lay, v=[pyrtl.Const(0, bitwidth=4)] * 3)


def test_record_bit_order_and_wrap():
    """Fields LSB-first, records split into host words LSB-first, negatives wrapped."""
    lay = layout.Layout([("v", 4, 3)])
    vals = np.array([[1, -1, 5], [7, 0, -8]])
    got = lay.to_words(8, v=vals)
    for r, row in enumerate(vals):
        v = sum((int(f) & 15) << (4 * i) for i, f in enumerate(row))
        assert got[r].tolist() == [v & 255, v >> 8]
    wide = lay.to_words(72, v=vals)
    assert wide.dtype == object and [int(w) for w in wide[:, 0]] == \
        [sum((int(f) & 15) << (4 * i) for i, f in enumerate(row)) for row in vals]


def test_vector_of_one_stays_a_vector():
    """count=1 is a 1-element vector ((n, 1), a list from split), count=None a scalar."""
    lay = layout.Layout([("v", 5, 1, True), ("s", 3)])
    vals = lay.from_words(lay.to_words(8, v=np.array([[-3], [4]]), s=np.array([1, 7])), 8)
    assert vals["v"].shape == (2, 1) and vals["s"].shape == (2,)
    assert lay.decode(lay.encode(v=[-3], s=5))["v"].tolist() == [-3]
    parts = lay.split(pyrtl.Const(0, bitwidth=8))
    assert isinstance(parts["v"], list) and len(parts["v"]) == 1 and not isinstance(parts["s"], list)


def test_bad_layouts():
    with pytest.raises(NmaccelError, match="repeats"):
        layout.Layout([("a", 3), ("a", 2)])
    with pytest.raises(NmaccelError, match="1..63"):
        layout.Layout([("a", 64)])
    with pytest.raises(NmaccelError, match="narrower"):
        layout.lane_layout(ArrayConfig()).split(pyrtl.Const(0, bitwidth=4))


def test_to_signed():
    np.testing.assert_array_equal(layout.to_signed(np.array([0, 127, 128, 255]), 8), [0, 127, -128, -1])
    np.testing.assert_array_equal(layout.to_signed(np.array([0, 127, 128, 255], dtype=object), 8),
                                  [0, 127, -128, -1])
    assert list(layout.to_signed(np.array([(1 << 70) - 1, 5], dtype=object), 70)) == [-1, 5]


@pytest.mark.parametrize("p", TOPS, ids=["gs-h32", "h80"])
def test_layout_widths_equal_config_record_widths(p):
    """TopConfig's word counts (TopConfig.words) and the tables describe the same records."""
    a = p.array
    assert layout.lane_layout(a).bits == a.lane_load_bits
    assert layout.pe_word_layout(a).bits == a.w_bits
    assert layout.stored_lane_layout(a).bits == a.idx_bits + a.weight_bits
    assert layout.window_layout(a).bits == a.x_bits
    assert layout.header_layout(p).bits == p.hdr_bits
    assert layout.activation_layout(p).bits == p.act_tok_bits
    assert layout.weight_layout(p).bits == p.w_rec_bits
    assert layout.epilogue_layout(p).bits == p.ep_rec_bits
    assert layout.output_layout(p).bits == p.out_rec_bits
    assert layout.groupscale_layout(p).bits == a.cols * p.gs_mult_bits
    for rec, lay in (("header", layout.header_layout(p)), ("weight", layout.weight_layout(p)),
                     ("epilogue", layout.epilogue_layout(p)), ("out", layout.output_layout(p)),
                     ("gs", layout.groupscale_layout(p))):
        assert p.words(rec) == lay.words(p.host_bits), rec
    if a.has_int4:
        assert layout.activation_layout(p, int4=True).bits == 2 * p.act_tok_bits
        assert p.words("act", int4=True) == layout.activation_layout(p, int4=True).words(p.host_bits)
    if a.has_codebook:
        assert layout.codebook_layout(a).bits == a.cb_bits_total
        assert layout.weight_layout(p, codebook=True).bits == p.w_rec_bits + p.cb_rec_bits
        assert p.words("weight", True) == layout.weight_layout(p, codebook=True).words(p.host_bits)
