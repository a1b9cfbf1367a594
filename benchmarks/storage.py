"""Storage benchmark: bits/weight incl. index metadata + FP16 scales, measured by packing real layers.

    python benchmarks/storage.py [--json PATH]

Packs a real MiniLM attention layer and FFN layer in every STORAGE_CONFIGS format and prints
PackedWeights.storage_bits() per weight. Target: <= 3.13 bits/weight at 2:4 INT4 g128.
"""
import argparse

from tabulate import tabulate

from nmaccel.models import loaders as models
from nmaccel.cli.pack import storage_table
from nmaccel.provenance import write_result

LAYERS = ["encoder.layer.0.attention.self.query.weight", "encoder.layer.0.output.dense.weight"]
TARGET_24_INT4 = 3.13


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write results to this JSON file")
    args = ap.parse_args()
    weights = models.load_weights("minilm")
    results = {}
    for name in LAYERS:
        w = weights[name]
        rows = storage_table(w)
        results[name] = rows
        print(f"\n{name} {w.shape}")
        print(tabulate([[r["config"], r["bits_per_weight"], r["ratio_vs_fp16"]] for r in rows],
                       headers=["config", "bits/weight", "x smaller than FP16"], floatfmt=".4f"))
        b24 = next(r["bits_per_weight"] for r in rows if r["config"] == "2:4 INT4 g128")
        print(f"2:4 INT4 g128: {b24:.4f} bits/weight (target <= {TARGET_24_INT4}): "
              f"{'met' if b24 <= TARGET_24_INT4 else 'MISSED'}")
    if args.json:
        write_result(args.json, results)


if __name__ == "__main__":
    main()
