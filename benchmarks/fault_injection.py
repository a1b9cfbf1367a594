"""Fault injection: SIGTERM / SIGKILL at random moments of `nmaccel pack`, `nmaccel export` and a
Verilator build (tests/faults.py); after each kill the output must be the old one or the complete
new one, SIGTERM must leave no temporary, and the next run must succeed with the reference output.

    python benchmarks/fault_injection.py [--kills 50] [--scenarios pack,export,verilator-build]
        [--json benchmarks/results/fault_injection.json]

Kill moments are uniform over one uninterrupted run's duration (seeded); signals alternate.
"""
import argparse
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=50, help="kills per scenario")
    ap.add_argument("--scenarios", default="pack,export,verilator-build")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--json", default=os.path.join(HERE, "results", "fault_injection.json"))
    args = ap.parse_args()
    import faults
    from provenance import provenance
    results = []
    prov = provenance(tools=("verilator", "g++"))

    def save(partial=None):      # after every kill: an interrupted campaign keeps its results
        doc = {"benchmark": "fault_injection", "kills_per_scenario": args.kills, "seed": args.seed,
               "scenarios": results + ([partial] if partial else []), "provenance": prov}
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=1)

    for name in args.scenarios.split(","):
        with tempfile.TemporaryDirectory(prefix=f"nmaccel_fault_{name}_") as work:
            res = faults.campaign(faults.SCENARIOS[name], work, args.kills, seed=args.seed,
                                  log=lambda s: print(s, flush=True), on_progress=save)
        results.append(res)
        save()
        print(f"{name}: {res['survived']}/{res['kills']} kills survived "
              f"(old output {res['old_output']}, new {res['new_output']}, "
              f"finished before the signal {res['finished_before_signal']})", flush=True)
    return 0 if all(r["survived"] == r["kills"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
