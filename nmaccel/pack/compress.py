"""Whole-model compression: every linear layer pruned (N:M along K) + quantized, written as
`.nmpack` files and a manifest (nmaccel.pack.manifest). `nmaccel compress` is its CLI.

Models: "smollm2" / a Llama .gguf (numpy Llama forward, sequential calibration), "minilm" / a
BERT .safetensors with vocab.txt beside it (numpy BERT forward), or any other .gguf /
.safetensors / .npz file (its 2-D linears compressed one by one; calibration-free methods only).

Calibration (`calibration=`): "self" (data-free: text sampled from the dense model itself with a
KV cache, Llama only), "pydoc" (Python's bundled pydoc topics), a path to a UTF-8 text file, or
None (calibration-free methods). Sequential by default: each layer's inputs come from the model
compressed so far (SparseGPT / GPTQ). Per-layer methods: nmaccel.pack.obs.METHODS.

Output directory: created if absent; an existing one must be empty or a previous compress output
(it has manifest.json or the run-state file), else NmaccelError. Layer files are written
atomically, the manifest last; an interrupted run leaves the run-state file and finished layers,
and a rerun with the same settings resumes (finished layers are loaded, not recomputed).
"""
import json
import os
import sys
import time

import numpy as np

from nmaccel.errors import NmaccelError, require
from nmaccel.fileio import atomic_write
from nmaccel.models import loaders as models
from nmaccel.models.bert import MiniLM, WordPiece
from nmaccel.models.generate import self_generated
from nmaccel.models.llama import Llama, LlamaConfig
from nmaccel.pack.format import PackedWeights
from nmaccel.pack.manifest import (LAYER_DIR, MANIFEST_NAME, layer_entry, layer_filename, model_hash,
                                   read_manifest, resolve_layer_path, save_layer, sha256_file, weights_hash,
                                   write_manifest)
from nmaccel.pack.obs import CALIBRATED, METHODS, compress_layer, inverse_factor, padded_hessian
from nmaccel.pack.prune import check_nm
from nmaccel.pack.quant import QUANTIZERS, check_bits

STATE_NAME = ".nmaccel-compress.json"
DEFAULTS = dict(method="sparsegpt", calibration="self", calib_tokens=2048, damp=0.1, ctx=256)


def _load_model(model):
    """(kind, model object or weights dict, source label, hash, tokenizer-ish) for `model`."""
    if isinstance(model, dict):
        return "generic", dict(model), "<weights dict>", weights_hash(model), None
    if isinstance(model, Llama):
        return "llama", model, "<Llama object>", weights_hash(model.weights), None
    if isinstance(model, MiniLM):
        return "bert", model, "<MiniLM object>", weights_hash(model.weights), getattr(model, "tokenizer", None)
    name = os.fspath(model)
    if name in models.BUILTIN_MODELS:
        path = models.builtin_path(name)
    else:
        path = name
        require(os.path.isfile(path), f"model {name!r} is not a file nor a built-in name: use "
                f"{' / '.join(sorted(models.BUILTIN_MODELS))} or a .gguf / .safetensors file")
    suffix = os.path.splitext(str(path))[1].lower()
    require(suffix in (".gguf", ".safetensors", ".npz"),
            f"model file {name!r} has type {suffix or '?'}: use a .gguf, .safetensors or .npz file")
    h = model_hash(path)
    if suffix == ".gguf":
        g = models.read_gguf(path)
        if g.metadata.get("general.architecture") == "llama":
            return "llama", Llama(g.weights, LlamaConfig.from_gguf_metadata(g.metadata)), name, h, path
        return "generic", dict(g.weights), name, h, None
    weights = models.load_weights(path)
    if any(k.endswith("attention.self.query.weight") for k in weights):
        vocab = os.path.join(os.path.dirname(os.path.abspath(path)), "vocab.txt")
        tok = WordPiece(vocab) if os.path.isfile(vocab) else None
        return "bert", MiniLM(weights), name, h, tok
    return "generic", weights, name, h, None


def _linear_names(kind, obj):
    if kind == "llama":
        return obj.linear_names()
    if kind == "bert":
        return [n for n in obj.linear_names() if n in obj.weights]
    return models.linear_layers(obj)


def calibration_tokens(kind, obj, tok, calibration, n_tokens, ctx=256, seed=0):
    """Calibration input for the model: Llama -> (B, ctx) int array; BERT -> list of id arrays."""
    require(isinstance(n_tokens, int) and n_tokens >= 1, f"calib_tokens={n_tokens!r}: use a positive integer")
    if kind == "llama":
        if calibration == "self":
            return self_generated(obj, n_tokens, ctx=ctx, seed=seed)
        text = _calibration_text(calibration)
        require(tok is not None, "text calibration of an in-memory Llama needs its tokenizer: use "
                "calibration='self' or pass the .gguf file")
        ids = np.array(models.gguf_tokenizer(tok).encode(text))
        return _windows(ids, n_tokens, ctx)
    require(tok is not None, "calibration of a BERT model needs vocab.txt beside the .safetensors file: "
            "add it, or use --method magnitude")
    require(calibration != "self", "calibration='self' (self-generated text) needs a Llama model: use "
            "--calibration pydoc or a text file for BERT")
    ids = np.array(tok.encode(_calibration_text(calibration), max_len=10 ** 9)[1:-1])
    return list(_windows(ids, n_tokens, min(ctx, 128)))


def _calibration_text(calibration):
    if calibration == "pydoc":
        return models.calibration_text()
    require(isinstance(calibration, str) and os.path.isfile(calibration),
            f"calibration {calibration!r}: use 'self', 'pydoc' or an existing UTF-8 text file")
    try:
        with open(calibration, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError:
        raise NmaccelError(f"calibration file {calibration} is not UTF-8 text: pass a text file") from None


def _windows(ids, n_tokens, ctx):
    """(n, ctx) windows spread evenly over ids, n = n_tokens // ctx (at least 1)."""
    require(len(ids) >= ctx, f"calibration text has {len(ids)} tokens, fewer than one window of {ctx}: "
            "use a longer text")
    n = max(1, n_tokens // ctx)
    starts = np.linspace(0, len(ids) - ctx, n).astype(int)
    return np.stack([ids[s:s + ctx] for s in starts])


def check_output_dir(out_dir):
    """Refuse an output path that is a file / symlink, or an existing directory that is neither
    empty nor a previous compress output."""
    out_dir = os.fspath(out_dir)
    require(not os.path.islink(out_dir), f"output {out_dir} is a symlink: choose a plain directory with -o")
    if not os.path.exists(out_dir):
        return
    require(os.path.isdir(out_dir), f"output {out_dir} exists and is not a directory: choose a new -o DIR")
    entries = set(os.listdir(out_dir))
    ours = MANIFEST_NAME in entries or STATE_NAME in entries
    require(not entries or ours, f"output directory {out_dir} exists and is not a previous "
            "`nmaccel compress` output: choose a new or empty -o DIR")
    if ours and MANIFEST_NAME in entries:
        try:
            with open(os.path.join(out_dir, MANIFEST_NAME), encoding="utf-8") as f:
                fmt = json.load(f).get("format")
        except (OSError, ValueError, AttributeError):
            fmt = None
        require(fmt == "nmaccel-manifest", f"{out_dir}/{MANIFEST_NAME} is not an nmaccel manifest: "
                "choose a new -o DIR")


def _read_state(out_dir):
    p = os.path.join(out_dir, STATE_NAME)
    if not os.path.isfile(p):
        return None
    try:
        with open(p, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def compress_model(model, out_dir, *, n_keep=2, m_group=4, bits=4, group_size=128, quantizer="uniform",
                   method=None, calibration=None, calib_tokens=None, damp=None, sequential=True,
                   ctx=None, seed=0, blocksize=128, layers=None, resume=True, command=None,
                   progress=None):
    """Compress every linear layer of `model` into out_dir (.nmpack files + manifest.json).

    model: "smollm2", "minilm", a .gguf / .safetensors / .npz path, a Llama / MiniLM object
    (nmaccel.models), or a {name: (out, in)} dict.
    n_keep:m_group N:M along K (n_keep == m_group: dense, still one file per layer); bits 2/4/8;
    group_size scale group along K (None: per output channel); quantizer "uniform" / "lloyd-max";
    method one of nmaccel.pack.obs.METHODS (default "sparsegpt" where calibration is possible,
    else "magnitude"); calibration "self" / "pydoc" / text file path (default "self" for Llama,
    "pydoc" for BERT); calib_tokens (default 2048); damp relative Hessian damping (default 0.1);
    sequential: calibrate each layer on the outputs of the already compressed prefix; layers:
    optional subset of layer names. Returns the manifest dict (as written).
    """
    t_start, cpu_start = time.time(), time.process_time()
    check_nm(n_keep, m_group)
    check_bits(bits)
    require(quantizer in QUANTIZERS, f"unknown quantizer {quantizer!r}: use one of {', '.join(QUANTIZERS)}")
    require(group_size is None or (isinstance(group_size, int) and group_size > 0 and group_size % m_group == 0),
            f"group_size={group_size!r}: use a positive multiple of m_group={m_group} (e.g. 128) or None")
    check_output_dir(out_dir)
    kind, obj, source, mhash, tok = _load_model(model)
    weights = obj if kind == "generic" else obj.weights
    names = _linear_names(kind, obj)
    if layers is not None:
        missing = [n for n in layers if n not in names]
        require(not missing, f"layers {missing[:3]} are not linear layers of {source}")
        names = [n for n in names if n in set(layers)]
    require(names, f"{source} has no linear (2-D weight) layers to compress: pass a model with Linear weights")
    for n in names:   # check every layer before writing anything
        w = weights[n]
        require(np.all(np.isfinite(w)), f"layer {n} of {source} contains NaN or Inf: clean the checkpoint first")
    calibrated = kind in ("llama", "bert") and (kind == "llama" or tok is not None)
    if method is None:
        method = DEFAULTS["method"] if calibrated else "magnitude"
    require(method in METHODS, f"unknown method {method!r}: use one of {', '.join(METHODS)}")
    if method in CALIBRATED:
        require(calibrated, f"method {method!r} needs calibration activations, which need a known "
                f"architecture (Llama .gguf, BERT .safetensors with vocab.txt): use --method magnitude")
        if calibration is None:
            calibration = "self" if kind == "llama" else "pydoc"
    else:
        calibration = None
    calib_tokens = calib_tokens or DEFAULTS["calib_tokens"]
    damp = DEFAULTS["damp"] if damp is None else damp
    ctx = ctx or DEFAULTS["ctx"]
    settings = dict(n_keep=n_keep, m_group=m_group, bits=bits, group_size=group_size, quantizer=quantizer,
                    method=method, calibration=calibration if calibration in (None, "self", "pydoc")
                    else os.path.abspath(calibration), calib_tokens=calib_tokens if calibration else None,
                    damp=damp if method in CALIBRATED else None, sequential=bool(sequential) if calibration else None,
                    ctx=ctx if calibration else None, seed=seed, blocksize=blocksize, layers=len(names))
    say = progress or (lambda msg: None)

    # run state: resume when a previous run had the same model and settings
    state = {"model_hash": mhash, "settings": settings}
    old = _read_state(out_dir) if os.path.isdir(out_dir) else None
    reuse = bool(resume and old == state)
    if resume and old is None and os.path.isfile(os.path.join(out_dir, MANIFEST_NAME)):
        try:
            done = read_manifest(out_dir)
        except NmaccelError:
            done = None
        if done and done["model"]["hash"] == mhash and done.get("settings") == settings:
            say(f"{out_dir} already holds this compression: nothing to do")
            return done
    os.makedirs(os.path.join(out_dir, LAYER_DIR), exist_ok=True)
    mpath = os.path.join(out_dir, MANIFEST_NAME)
    if os.path.exists(mpath):
        os.unlink(mpath)          # the directory is incomplete until the new manifest is written
    atomic_write(os.path.join(out_dir, STATE_NAME), json.dumps(state, indent=1))

    index = {n: i for i, n in enumerate(names)}
    entries, times = {}, {}

    def one(name, w, hessian=None, tokens=None, factor=None):
        rel = layer_filename(index[name], name)
        path = resolve_layer_path(out_dir, rel)
        if reuse and os.path.isfile(path):
            try:
                pw = PackedWeights.load(path)
                if pw.meta.get("layer") == name and pw.shape == tuple(np.shape(w)):
                    entries[name] = layer_entry(name, rel, pw, method=pw.meta.get("method", method),
                                                sha256=sha256_file(path), resumed=True)
                    return pw.dequantize()
            except NmaccelError:
                pass
        t0 = time.time()
        pw = compress_layer(w, n_keep=n_keep, m_group=m_group, bits=bits, group_size=group_size,
                            quantizer=quantizer, method=method, hessian=hessian, damp=damp, blocksize=blocksize,
                            factor=factor)
        pw.meta["layer"] = name
        if tokens is not None:
            pw.meta["calibration_tokens"] = int(tokens)
        times[name] = time.time() - t0
        e = save_layer(out_dir, index[name], name, pw, method=method, seconds=round(times[name], 3))
        if "calib_rel_err" in pw.meta:
            e["calib_rel_err"] = pw.meta["calib_rel_err"]
        entries[name] = e
        say(f"{name}: {times[name]:.2f} s" + (f", calib rel err {e['calib_rel_err']:.4f}"
                                               if "calib_rel_err" in e else ""))
        return pw.dequantize()

    t_cal = 0.0
    if calibration is not None:
        t0 = time.time()
        cal = calibration_tokens(kind, obj, tok, calibration, calib_tokens, ctx=ctx, seed=seed)
        t_cal = time.time() - t0
        say(f"calibration ({calibration}): {np.size(cal) if kind == 'llama' else sum(map(len, cal))} tokens "
            f"in {t_cal:.1f} s")

        shared = {}   # layers fed the same input array (q/k/v, gate/up) share H and its factor

        def transform(name, w, x):
            base = x.base if x.base is not None else x
            key = (x.shape, x.strides, x.__array_interface__["data"][0])
            if shared.get("base") is not base or shared.get("key") != key:
                x32 = np.asarray(x, np.float32)
                h = (x32.T @ x32).astype(np.float64) * (2.0 / len(x))
                shared.clear()
                shared.update(base=base, key=key, h=h, factors={})
            h = shared["h"]
            kp = -(-h.shape[0] // m_group) * m_group
            factor = None
            if method in ("gptq", "wanda-obs", "sparsegpt"):
                if kp not in shared["factors"]:
                    shared["factors"][kp] = inverse_factor(padded_hessian(h, kp), damp)
                factor = shared["factors"][kp]
            return one(name, w, hessian=h, tokens=len(x), factor=factor)
        obj.compress(cal, transform, sequential=sequential, names=names)
        n_cal = int(np.size(cal)) if kind == "llama" else int(sum(map(len, cal)))
    else:
        for n in names:
            one(n, weights[n])
        n_cal = 0
    ordered = [entries[n] for n in names]
    info = dict(calibration_source=calibration, calibration_tokens_used=n_cal,
                calibration_seconds=round(t_cal, 2), seconds=round(time.time() - t_start, 2),
                cpu_seconds=round(time.process_time() - cpu_start, 2),
                resumed_layers=sum(1 for e in ordered if e.get("resumed")))
    write_manifest(out_dir, ordered, model_hash=mhash, model_source=source, producer="compress",
                   settings=settings, run=info, command=command, architecture=kind)
    os.unlink(os.path.join(out_dir, STATE_NAME))
    # layer files of an earlier run with more layers are not ours any more
    keep_files = {os.path.basename(e["file"]) for e in ordered}
    for f in os.listdir(os.path.join(out_dir, LAYER_DIR)):
        if f.endswith(".nmpack") and f not in keep_files:
            os.unlink(os.path.join(out_dir, LAYER_DIR, f))
    return read_manifest(out_dir)


def stderr_progress(msg):
    print(msg, file=sys.stderr, flush=True)
