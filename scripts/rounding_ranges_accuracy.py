#!/usr/bin/env python3
"""Clear accuracy of every fixture at 2..8 bits for several rounding widths and table ranges.

What the README's "Defaults" and "Table ranges" tables come from. Runs `fhec eval --mode
clear --json` once per (model, bits, rounding, ranges) and appends one JSON line per run.

    python3 scripts/rounding_ranges_accuracy.py none,N,N+1,6,7 worst-case,observed:0,observed:0.1 out.jsonl
    python3 scripts/rounding_ranges_accuracy.py --summary out.jsonl

ROUNDINGS: `none`, a width, or an expression in N (the bit width), e.g. N+1.
The summary prints, per rounding rule, the (model, bits) pairs whose clear accuracy is more
than 1 point below no rounding, and, at rounding 7, observed:0.1 against worst-case.
"""
import json
import subprocess
import sys

FIXTURES = "tests/fixtures/"
MODELS = [
    ("mlp_torch", "breast_cancer"), ("mlp_torch_pruned", "breast_cancer"),
    ("mlp_brevitas", "breast_cancer"), ("mlp_keras", "breast_cancer"),
    ("mlp_tf2onnx_17", "breast_cancer"), ("cnn_torch_28", "digits_28"),
    ("cnn_brevitas_28", "digits_28"), ("cnn_keras_28", "digits_28"),
    ("cnn_torch_rgb_28", "digits_rgb_28"), ("cnn_torch_64", "digits_64"),
]


def width(rule, bits):
    return rule if rule == "none" else str(eval(rule.replace("N", str(bits))))  # noqa: S307


def measure(roundings, ranges, out_path, fhec="target/debug/fhec"):
    with open(out_path, "a") as out:
        for model, data in MODELS:
            for bits in range(2, 9):
                for rule in roundings:
                    for rg in ranges:
                        cmd = [fhec, "eval", f"{FIXTURES}{model}.onnx", "--data",
                               f"{FIXTURES}data/{data}.npz", "--bits", str(bits), "--mode",
                               "clear", "--json", "--ranges", rg,
                               "--rounding-bits", width(rule, bits)]
                        p = subprocess.run(cmd, capture_output=True, text=True)
                        rec = dict(model=model, bits=bits, r=rule, rb=width(rule, bits), ranges=rg)
                        if p.returncode != 0:
                            rec["error"] = (p.stderr.strip().splitlines() or ["?"])[-1][:200]
                        else:
                            j = json.loads(p.stdout)
                            rec.update(float=j["float_accuracy"], acc=j["accuracy"],
                                       left=j.get("samples_outside_table_domain"))
                        out.write(json.dumps(rec) + "\n")
                        out.flush()


def summary(path):
    acc = {}
    for line in open(path):
        r = json.loads(line)
        if "acc" in r:
            acc[(r["model"], r["bits"], r["rb"], r["ranges"])] = r["acc"]
    rules = {"6": lambda n: 6, "7": lambda n: 7, "N+1 (at most 7)": lambda n: min(n + 1, 7)}
    for rg in sorted({k[3] for k in acc}):
        for name, f in rules.items():
            misses = []
            for (m, b, rb, g), base in acc.items():
                if rb != "none" or g != "worst-case":
                    continue
                a = acc.get((m, b, str(f(b)), rg))
                if a is not None and base - a > 0.0101:
                    misses.append(f"{m}@{b}: -{(base - a) * 100:.1f}")
            print(f"{rg:13s} rounding {name:16s} {len(misses):2d} pairs > 1 point below none: {', '.join(misses)}")
    better = same = worse = 0
    for (m, b, rb, g), a in acc.items():
        o = acc.get((m, b, rb, "observed:0.1"))
        if rb == "7" and g == "worst-case" and o is not None:
            better += o > a + 1e-9
            worse += o < a - 1e-9
            same += abs(o - a) <= 1e-9
    print(f"rounding 7, observed:0.1 vs worst-case: better {better}, same {same}, worse {worse}")


if __name__ == "__main__":
    if sys.argv[1] == "--summary":
        summary(sys.argv[2])
    else:
        measure(sys.argv[1].split(","), sys.argv[2].split(","), sys.argv[3])
