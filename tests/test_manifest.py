"""Manifest writer / reader: round trip, relative paths that never escape, atomicity rules."""
import json
import os

import numpy as np
import pytest

from nmaccel.errors import NmaccelError
from nmaccel.pack import PackedWeights, pack_weights
from nmaccel.pack.manifest import (MANIFEST_NAME, load_layers, read_manifest, resolve_layer_path,
                                   save_layer, weights_hash, write_manifest)


def _layers(rng, tmp_path, n=3):
    out = []
    for i in range(n):
        w = rng.standard_normal((8, 16 + 4 * i)).astype(np.float32)
        nm = (2, 4) if i % 2 == 0 else (4, 4)   # a dense layer gets a file too
        pw = pack_weights(w, n_keep=nm[0], m_group=nm[1], bits=4, group_size=8)
        out.append(save_layer(tmp_path, i, f"blk.{i}/odd name.weight", pw, method="magnitude", note=i))
    return out


def test_round_trip(rng, tmp_path):
    entries = _layers(rng, tmp_path)
    path = write_manifest(tmp_path, entries, model_hash="sha256:00", model_source="x.gguf",
                          settings={"bits": 4}, extra_field=[1, 2])
    assert os.path.basename(path) == MANIFEST_NAME
    doc = read_manifest(tmp_path)
    assert doc["model"] == {"source": "x.gguf", "hash": "sha256:00"} and doc["extra_field"] == [1, 2]
    assert [e["name"] for e in doc["layers"]] == [e["name"] for e in entries]
    assert all(not os.path.isabs(e["file"]) and ".." not in e["file"] for e in doc["layers"])
    assert doc["layers"][1]["n_keep"] == doc["layers"][1]["m_group"] == 4 and doc["layers"][0]["note"] == 0
    packed = load_layers(tmp_path)
    for e in entries:
        pw = packed[e["name"]]
        assert isinstance(pw, PackedWeights) and (pw.n_keep, pw.m_group, pw.bits) == (e["n_keep"], e["m_group"], 4)
        assert PackedWeights.load(resolve_layer_path(tmp_path, e["file"])).shape == tuple(e["shape"])


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x.nmpack", "layers/../../x.nmpack", "", "C:/x"])
def test_paths_never_escape(rng, tmp_path, bad):
    entries = _layers(rng, tmp_path, 1)
    entries[0]["file"] = bad
    with pytest.raises(NmaccelError):
        write_manifest(tmp_path, entries, model_hash="sha256:00")
    assert not (tmp_path / MANIFEST_NAME).exists()


def test_symlink_escape_and_missing_and_tamper(rng, tmp_path):
    entries = _layers(rng, tmp_path, 2)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    os.symlink(outside, tmp_path / "link")
    bad = [dict(entries[0], file="link/a.nmpack")]
    with pytest.raises(NmaccelError, match="outside"):
        write_manifest(tmp_path, bad, model_hash="sha256:00")
    write_manifest(tmp_path, entries, model_hash="sha256:00")
    with open(resolve_layer_path(tmp_path, entries[1]["file"]), "r+b") as f:
        f.write(b"X")
    with pytest.raises(NmaccelError):
        load_layers(tmp_path)
    os.unlink(resolve_layer_path(tmp_path, entries[0]["file"]))
    with pytest.raises(NmaccelError, match="missing"):
        read_manifest(tmp_path)


def test_bad_manifests(rng, tmp_path):
    with pytest.raises(NmaccelError, match="no manifest"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(NmaccelError, match="unreadable"):
        read_manifest(tmp_path)
    (tmp_path / MANIFEST_NAME).write_text(json.dumps({"format": "other"}))
    with pytest.raises(NmaccelError, match="not an nmaccel manifest"):
        read_manifest(tmp_path)
    entries = _layers(rng, tmp_path, 2)
    with pytest.raises(NmaccelError, match="duplicate"):
        write_manifest(tmp_path, [entries[0], dict(entries[1], name=entries[0]["name"])], model_hash="sha256:00")
    with pytest.raises(NmaccelError, match="lacks 'bits'"):
        write_manifest(tmp_path, [{k: v for k, v in entries[0].items() if k != "bits"}], model_hash="sha256:00")


def test_weights_hash_is_content_hash(rng):
    a = {"w": rng.standard_normal((3, 4)).astype(np.float32)}
    b = {"w": a["w"].copy()}
    assert weights_hash(a) == weights_hash(b)
    b["w"][0, 0] += 1
    assert weights_hash(a) != weights_hash(b)
