"""Whole-model manifest: `DIR/manifest.json` + one `.nmpack` file per linear layer.

Written by `nmaccel compress` (nmaccel.pack.compress) and by the whole-model planner/compiler;
read by both and by benchmarks/quality.py. Layout (version 1)::

    {"format": "nmaccel-manifest", "version": 1, "producer": "compress",
     "model": {"source": "smollm2", "hash": "sha256:..."},
     "settings": {...},                          # free-form (command line, calibration, ...)
     "layers": [{"name": "blk.0.attn_q.weight",  # layer name in the GGUF / safetensors file
                 "file": "layers/0000-blk.0.attn_q.weight.nmpack",   # relative to DIR
                 "shape": [576, 576], "n_keep": 2, "m_group": 4, "bits": 4,
                 "quantizer": "uniform", "granularity": "group", "group_size": 128,
                 "method": "sparsegpt", "sha256": "...", ...extra fields allowed}, ...]}

Rules: every file is written atomically (temporary file + rename), layer files first and the
manifest last, so a directory with a manifest is complete and an interrupted run leaves no
manifest. Layer paths are relative, never absolute, never contain `..` and never resolve (through
symlinks) outside DIR. Dense layers (n_keep == m_group) have a file too.
"""
import hashlib
import json
import os
import re

import numpy as np

from nmaccel.errors import NmaccelError, require
from nmaccel.fileio import atomic_write
from nmaccel.pack.format import PackedWeights

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "nmaccel-manifest"
MANIFEST_VERSION = 1
LAYER_DIR = "layers"
REQUIRED_LAYER_FIELDS = {"name": str, "file": str, "n_keep": int, "m_group": int, "bits": int,
                         "quantizer": str, "method": str}


def sha256_file(path, chunk=1 << 22):
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def weights_hash(weights):
    """'sha256:...' of a {name: array} dict (names, dtypes, shapes and bytes, in sorted name order)."""
    h = hashlib.sha256()
    for name in sorted(weights):
        a = np.ascontiguousarray(weights[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return "sha256:" + h.hexdigest()


def model_hash(path):
    """'sha256:...' of a model file."""
    return "sha256:" + sha256_file(path)


def layer_filename(index, name):
    """Relative path of layer `index` named `name`: layers/NNNN-<name with unsafe characters as _>.nmpack."""
    safe = re.sub(r"[^A-Za-z0-9._-]", "_", str(name)).strip(".") or "layer"
    return f"{LAYER_DIR}/{int(index):04d}-{safe[:150]}.nmpack"


def resolve_layer_path(out_dir, rel):
    """Absolute path of manifest-relative `rel`; NmaccelError if it is absolute or escapes out_dir."""
    require(isinstance(rel, str) and rel != "", f"layer file {rel!r} is not a relative path")
    parts = rel.replace("\\", "/").split("/")
    require(not os.path.isabs(rel) and not rel.startswith(("/", "\\")) and ".." not in parts
            and ":" not in parts[0],
            f"layer file {rel!r} is not a plain relative path inside the output directory: "
            "re-create the manifest with `nmaccel compress`")
    root = os.path.realpath(out_dir)
    full = os.path.realpath(os.path.join(root, *parts))
    require(os.path.commonpath([root, full]) == root,
            f"layer file {rel!r} resolves outside {out_dir} (symlink?): re-create the output directory")
    return full


def layer_entry(name, rel, pw, *, method, **extra):
    """Manifest entry of PackedWeights `pw` stored at relative path `rel`."""
    entry = {"name": str(name), "file": rel, "shape": [pw.out_features, pw.in_features],
             "n_keep": pw.n_keep, "m_group": pw.m_group, "bits": pw.bits, "quantizer": pw.quantizer,
             "granularity": pw.granularity, "group_size": pw.group_size, "method": str(method)}
    entry.update(extra)
    return entry


def save_layer(out_dir, index, name, pw, *, method, **extra):
    """Write `pw` atomically to out_dir/layer_filename(index, name); return its manifest entry
    (with the file's sha256). Extra keyword fields go into the entry."""
    rel = layer_filename(index, name)
    path = resolve_layer_path(out_dir, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    data = pw.to_bytes()
    atomic_write(path, data)
    return layer_entry(name, rel, pw, method=method, sha256=hashlib.sha256(data).hexdigest(), **extra)


def _check_entry(i, e):
    require(isinstance(e, dict), f"manifest layer {i} is not an object")
    for key, typ in REQUIRED_LAYER_FIELDS.items():
        require(key in e, f"manifest layer {i} ({e.get('name', '?')}) lacks {key!r}")
        require(isinstance(e[key], typ) and not isinstance(e[key], bool),
                f"manifest layer {i} field {key!r}={e[key]!r} is not a {typ.__name__}")
    gs = e.get("group_size")
    require(gs is None or (isinstance(gs, int) and gs > 0),
            f"manifest layer {i} group_size={gs!r}: use a positive integer or null")


def write_manifest(out_dir, layers, *, model_hash, model_source=None, producer="compress",
                   settings=None, check_files=True, **extra):
    """Validate `layers` (list of entry dicts, see module docstring) and write DIR/manifest.json
    atomically; call it after every layer file is written. Returns the manifest path.

    With `check_files` every layer file must exist inside out_dir (and match its sha256 if the
    entry has one). Extra keyword fields are stored at the top level."""
    require(isinstance(model_hash, str) and model_hash, "model_hash must be a non-empty string")
    layers = list(layers)
    names = [e.get("name") if isinstance(e, dict) else None for e in layers]
    for i, e in enumerate(layers):
        _check_entry(i, e)
        path = resolve_layer_path(out_dir, e["file"])
        if check_files:
            require(os.path.isfile(path), f"layer file {e['file']} of {e['name']} is missing in {out_dir}")
            if "sha256" in e:
                require(sha256_file(path) == e["sha256"], f"layer file {e['file']} does not match its sha256")
    dup = sorted({n for n in names if names.count(n) > 1})
    require(not dup, f"duplicate layer names in manifest: {dup[:3]}")
    files = [e["file"] for e in layers]
    require(len(set(files)) == len(files), "two manifest layers share one file")
    doc = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION, "producer": producer,
           "model": {"source": None if model_source is None else str(model_source), "hash": model_hash},
           "settings": dict(settings or {}), "layers": layers}
    for k, v in extra.items():
        require(k not in doc, f"extra manifest field {k!r} clashes with a reserved field")
        doc[k] = v
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, MANIFEST_NAME)
    atomic_write(path, json.dumps(doc, indent=1, sort_keys=False, allow_nan=False) + "\n")
    return path


def manifest_path(path):
    """DIR/manifest.json for a directory, or the path itself for a manifest file."""
    path = os.fspath(path)
    return os.path.join(path, MANIFEST_NAME) if os.path.isdir(path) else path


def read_manifest(path, check_files=True):
    """Read and validate a manifest (DIR or DIR/manifest.json). Returns the dict with an added
    "dir" key (absolute directory). NmaccelError naming the fix on any problem."""
    mpath = manifest_path(path)
    fix = "re-create it with `nmaccel compress`"
    require(os.path.isfile(mpath), f"{mpath}: no manifest (an interrupted or never-run compress?); {fix}")
    try:
        with open(mpath, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise NmaccelError(f"{mpath}: unreadable manifest ({exc}); {fix}") from None
    require(isinstance(doc, dict) and doc.get("format") == MANIFEST_FORMAT,
            f"{mpath}: not an nmaccel manifest; {fix}")
    require(doc.get("version") == MANIFEST_VERSION,
            f"{mpath}: manifest version {doc.get('version')!r} is not supported (this nmaccel reads "
            f"{MANIFEST_VERSION}); {fix}")
    require(isinstance(doc.get("layers"), list), f"{mpath}: manifest has no layer list; {fix}")
    require(isinstance(doc.get("model"), dict) and isinstance(doc["model"].get("hash"), str),
            f"{mpath}: manifest has no model hash; {fix}")
    out_dir = os.path.dirname(os.path.abspath(mpath))
    for i, e in enumerate(doc["layers"]):
        _check_entry(i, e)
        p = resolve_layer_path(out_dir, e["file"])
        if check_files:
            require(os.path.isfile(p), f"{mpath}: layer file {e['file']} is missing; {fix}")
    doc["dir"] = out_dir
    return doc


def load_layers(path, verify=True):
    """{layer name: PackedWeights} of a manifest directory, in manifest order; with `verify`
    each file's sha256 (if recorded) and N:M / bits are checked against the entry."""
    doc = read_manifest(path)
    out = {}
    for e in doc["layers"]:
        p = resolve_layer_path(doc["dir"], e["file"])
        pw = PackedWeights.load(p)
        if verify:
            if "sha256" in e:
                require(sha256_file(p) == e["sha256"],
                        f"{e['file']}: contents do not match the manifest's sha256; re-run `nmaccel compress`")
            got = (pw.n_keep, pw.m_group, pw.bits, pw.quantizer)
            want = (e["n_keep"], e["m_group"], e["bits"], e["quantizer"])
            require(got == want, f"{e['file']}: file holds {got}, manifest says {want}")
        out[e["name"]] = pw
    return out
