#!/usr/bin/env python3
"""Vendor the ONNX backend conformance tests that fhec supports.

Reads the test data shipped inside the installed `onnx` Python package
(`onnx/backend/test/data/{node,pytorch-converted}`), selects the tests whose
models only use operators (and dtypes / ranks / modes) that fhec supports, and
copies them (model.onnx + test_data_set_0 only) into tests/onnx-node/.

Usage (from the repository root):

    python3 -m venv /work/venv-onnx
    /work/venv-onnx/bin/pip install onnx==1.22.0 numpy
    /work/venv-onnx/bin/python scripts/vendor_onnx_node_tests.py

Options:
    --out DIR      output directory (default: tests/onnx-node next to this script's repo)
    --dry-run      analyse and print the summary, but do not touch the output dir
    --verbose      print every decision

Outputs:
    tests/onnx-node/node/<test>/...               selected node tests
    tests/onnx-node/pytorch-converted/<test>/...  selected pytorch-converted tests
    tests/onnx-node/supported.txt                 selected test names (+ `input:` annotations)
    tests/onnx-node/excluded.txt                  tests for our ops that were not selected, with reason
    tests/onnx-node/LICENSE.onnx                  Apache-2.0 licence of the onnx project (copied from the wheel)

The selection logic is deliberately explicit (see `analyse()`); edit the
tables at the top of this file when fhec gains operators.
"""

import argparse
import collections
import os
import re
import shutil
import sys

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

EXPECTED_ONNX_VERSION = "1.22.0"

# Operators fhec lowers to FHE circuits (float semantics, f32; integer semantics on the
# integer runtime tensors below).
SUPPORTED_OPS = {
    "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Neg",
    "Conv", "AveragePool", "MaxPool", "GlobalAveragePool",
    "BatchNormalization",
    "Relu", "LeakyRelu", "PRelu", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish",
    "Elu", "Selu", "Softplus", "Clip", "Erf", "Gelu", "Softmax",
    "Flatten", "Reshape", "Transpose", "Concat", "Pad", "Squeeze", "Unsqueeze",
    "Identity", "Dropout", "Constant", "Cast",
    "QuantizeLinear", "DequantizeLinear",
}
# Operators that are only supported when they can be constant-folded away
# (Shape/Gather/Slice/Concat/Cast/Unsqueeze chains on static values).
FOLD_ONLY_OPS = {"Shape", "Gather", "Slice"}
ALL_KNOWN_OPS = SUPPORTED_OPS | FOLD_ONLY_OPS

CONV_POOL_OPS = {"Conv", "AveragePool", "MaxPool", "GlobalAveragePool"}
QDQ_OPS = {"QuantizeLinear", "DequantizeLinear"}

# Input positions that are *parameters* (weights, shapes, axes, bounds, ...).
# A graph input that only ever feeds such positions is expected to be baked
# into the model as a constant by the harness (see README: `input:` tags).
PARAM_INPUTS = {
    "Conv": {1, 2},
    "Gemm": {1, 2},
    "MatMul": {1},
    "Div": {1},
    "BatchNormalization": {1, 2, 3, 4},
    "PRelu": {1},
    "Clip": {1, 2},
    "Pad": {1, 2, 3},
    "Reshape": {1},
    "Squeeze": {1},
    "Unsqueeze": {1},
    "Slice": {1, 2, 3, 4},
    "Dropout": {1, 2},
    "QuantizeLinear": {1, 2},
    "DequantizeLinear": {1, 2},
}

FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
QUANT_TYPES = {TensorProto.INT8, TensorProto.UINT8}
# Integer types runtime tensors may have (held exactly in f32 up to 2^24 - 1; see the
# integer rule in ir/src/interp.rs), and the ops fhec evaluates on them (with ONNX's
# wrap-around and truncating division). Other ops take float32 runtime tensors only.
INT_RUNTIME_TYPES = QUANT_TYPES | {TensorProto.INT32, INT64}
INT_OPS = {
    "Add", "Sub", "Mul", "Div", "Neg", "Relu", "Clip", "PRelu", "MaxPool",
    "Pad", "Reshape", "Transpose", "Concat", "Flatten", "Squeeze", "Unsqueeze", "Identity",
    "Cast", "QuantizeLinear", "DequantizeLinear",
}
# Cast targets for runtime tensors.
CAST_TARGETS = {FLOAT} | INT_RUNTIME_TYPES
# dtypes allowed for constant / parameter values
STATIC_TYPES = {FLOAT, INT64, TensorProto.INT32, TensorProto.BOOL} | QUANT_TYPES

MAX_TEST_BYTES = 1 << 20  # 1 MiB per vendored test directory

SUITES = ["node", "pytorch-converted"]


def dtype_name(t):
    try:
        return TensorProto.DataType.Name(t)
    except ValueError:
        return f"dtype{t}"


def attr(node, name, default=None):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def collect_ops(graph, acc):
    for n in graph.node:
        acc.add(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}:{n.op_type}")
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                collect_ops(a.g, acc)
            for g in a.graphs:
                collect_ops(g, acc)
    return acc


def dir_size(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            total += os.path.getsize(os.path.join(root, f))
    return total


def test_payload(src):
    """Files we would vendor: model.onnx + test_data_set_0/*."""
    files = [os.path.join(src, "model.onnx")]
    ds = os.path.join(src, "test_data_set_0")
    if os.path.isdir(ds):
        files += [os.path.join(ds, f) for f in sorted(os.listdir(ds))]
    return files


def load_tensors(src, prefix):
    ds = os.path.join(src, "test_data_set_0")
    out = []
    i = 0
    while True:
        p = os.path.join(ds, f"{prefix}_{i}.pb")
        if not os.path.exists(p):
            break
        t = TensorProto()
        with open(p, "rb") as f:
            t.ParseFromString(f.read())
        out.append(t)
        i += 1
    return out


def value_kind(vi):
    """'tensor', 'sequence', 'optional', 'map', 'sparse_tensor' or 'unknown'."""
    k = vi.type.WhichOneof("value") or "unknown"
    return k[: -len("_type")] if k.endswith("_type") else k


class Result:
    def __init__(self, suite, name):
        self.suite = suite
        self.name = name
        self.ops = set()
        self.reason = None  # None => selected
        self.runtime_inputs = None  # list of graph-input names fed at runtime
        self.all_inputs = []
        self.size = 0

    @property
    def selected(self):
        return self.reason is None


def analyse(suite, name, src):
    r = Result(suite, name)
    model = onnx.load(os.path.join(src, "model.onnx"))
    g = model.graph
    r.ops = collect_ops(g, set())
    r.size = sum(os.path.getsize(f) for f in test_payload(src))

    def fail(msg):
        r.reason = msg
        return r

    # --- operator set -----------------------------------------------------
    unsupported = sorted(o for o in r.ops if o not in ALL_KNOWN_OPS)
    if unsupported:
        return fail("uses unsupported ops: " + ", ".join(unsupported))
    if not os.path.isdir(os.path.join(src, "test_data_set_0")):
        return fail("no test_data_set_0")

    # --- sequence / optional / non-tensor types ---------------------------
    for vi in list(g.input) + list(g.output) + list(g.value_info):
        k = value_kind(vi)
        if k != "tensor":
            return fail(f"{k} type ({vi.name})")

    # --- shape / type inference ------------------------------------------
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception as e:  # pragma: no cover
        inferred = model
        print(f"warning: shape inference failed for {name}: {e}", file=sys.stderr)
    vtype = {}  # name -> (elem_type, shape tuple or None)
    for vi in list(inferred.graph.input) + list(inferred.graph.output) + list(inferred.graph.value_info):
        tt = vi.type.tensor_type
        shape = None
        if tt.HasField("shape"):
            shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim)
        vtype[vi.name] = (tt.elem_type, shape)
    inits = {t.name: t for t in g.initializer}
    for t in g.initializer:
        vtype.setdefault(t.name, (t.data_type, tuple(t.dims)))

    graph_inputs = [i.name for i in g.input if i.name not in inits]
    r.all_inputs = graph_inputs

    # --- which graph inputs are parameters (baked as constants) -----------
    data_use = set()
    param_use = set()
    for n in g.node:
        params = PARAM_INPUTS.get(n.op_type, set())
        for idx, inp in enumerate(n.input):
            if not inp:
                continue
            (param_use if idx in params else data_use).add(inp)
    param_inputs = {i for i in graph_inputs if i in param_use and i not in data_use}
    r.runtime_inputs = [i for i in graph_inputs if i not in param_inputs]

    # --- static (constant-foldable) values --------------------------------
    static = set(inits) | param_inputs
    for n in g.node:
        if n.op_type == "Constant":
            static.update(n.output)
        elif n.op_type == "Shape":
            static.update(n.output)  # shapes are static in fhec (no dynamic dims)
        elif all((not i) or i in static for i in n.input) and n.input:
            static.update(o for o in n.output if o)

    for n in g.node:
        if n.op_type in FOLD_ONLY_OPS and n.op_type != "Shape":
            if any(i and i not in static for i in n.input):
                return fail(f"{n.op_type} on runtime data/indices (only constant-folded {n.op_type} is supported)")
    for o in g.output:
        if o.name in static and not any(n.op_type == "Constant" for n in g.node if o.name in n.output):
            et = vtype.get(o.name, (None,))[0]
            if et != FLOAT:
                return fail(f"graph output {o.name} is a folded {dtype_name(et)} value (e.g. Shape result)")

    # --- per-op constraints -----------------------------------------------
    for n in g.node:
        op = n.op_type
        if op in CONV_POOL_OPS:
            shp = vtype.get(n.input[0], (None, None))[1]
            if shp is None:
                return fail(f"{op} input rank unknown")
            if len(shp) > 4:
                kind = "conv" if op == "Conv" else "pool"
                return fail(f"{len(shp) - 2}-D {kind}")
        if op == "MaxPool" and len([o for o in n.output if o]) > 1:
            return fail("MaxPool Indices output (second output)")
        if op == "BatchNormalization":
            if attr(n, "training_mode", 0):
                return fail("training mode BatchNormalization")
            if attr(n, "is_test", 1) == 0:
                return fail("training mode BatchNormalization (is_test=0)")
            if len([o for o in n.output if o]) > 1:
                return fail("BatchNormalization running-stat outputs")
        if op == "Dropout":
            if len([o for o in n.output if o]) > 1:
                return fail("Dropout mask output (bool)")
        if op == "Pad":
            mode = attr(n, "mode", b"constant")
            mode = mode.decode() if isinstance(mode, bytes) else mode
            if mode not in ("constant", "reflect", "edge"):
                return fail(f"Pad mode {mode}")
        if op in QDQ_OPS:
            if attr(n, "block_size", 0):
                return fail("blocked quantization")
        if op == "Cast" and n.output[0] not in static:
            if attr(n, "to") not in CAST_TARGETS:
                return fail(f"Cast to {dtype_name(attr(n, 'to'))}")

    # --- dtypes -----------------------------------------------------------
    qdq_values = set()
    for n in g.node:
        if n.op_type == "QuantizeLinear":
            qdq_values.update(o for o in n.output if o)
        if n.op_type == "DequantizeLinear":
            qdq_values.add(n.input[0])
    # ops reading or writing each runtime value
    touching = collections.defaultdict(set)
    for n in g.node:
        params = PARAM_INPUTS.get(n.op_type, set())
        for idx, inp in enumerate(n.input):
            if inp and idx not in params:
                touching[inp].add(n.op_type)
        for o in n.output:
            if o:
                touching[o].add(n.op_type)
    # every tensor that appears in the test data or graph interface
    for name_, (et, _) in vtype.items():
        if et == TensorProto.UNDEFINED:
            continue
        if name_ in static:
            ok = et in STATIC_TYPES
        elif name_ in qdq_values:
            ok = et in QUANT_TYPES or et == FLOAT
        elif et in INT_RUNTIME_TYPES:
            float_only = sorted(touching[name_] - INT_OPS)
            if float_only:
                return fail(f"{dtype_name(et).lower()} tensor {name_} through {', '.join(float_only)}"
                            " (float32 only)")
            ok = True
        else:
            ok = et == FLOAT
        if not ok:
            return fail(f"unsupported dtype: {dtype_name(et).lower()} ({name_})")
    for t in load_tensors(src, "input") + load_tensors(src, "output"):
        if t.data_type not in STATIC_TYPES:
            return fail(f"unsupported dtype: {dtype_name(t.data_type).lower()} test data ({t.name})")
        if any(d == 0 for d in t.dims):
            return fail("zero-sized tensor")

    # --- Dropout must be deterministic (identity) -------------------------
    if "Dropout" in r.ops:
        ins = load_tensors(src, "input")
        outs = load_tensors(src, "output")
        if not ins or not outs or not np.array_equal(
            numpy_helper.to_array(ins[0]), numpy_helper.to_array(outs[0])
        ):
            return fail("training-mode Dropout (random output)")

    if r.size > MAX_TEST_BYTES:
        return fail(f"too large ({r.size} bytes > {MAX_TEST_BYTES})")
    return r


def base_name(name):
    return re.sub(r"_expanded(_ver\d+)?$", "", name)


def primary_op(r):
    ops = r.ops - {"Constant"}
    if len(ops) == 1:
        return next(iter(ops))
    if not ops and r.ops:
        return "Constant"
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ap.add_argument("--out", default=os.path.join(repo, "tests", "onnx-node"))
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args()

    if onnx.__version__ != EXPECTED_ONNX_VERSION:
        print(f"warning: onnx {onnx.__version__} installed, data was vendored from {EXPECTED_ONNX_VERSION}",
              file=sys.stderr)
    data_root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data")

    results = {}
    for suite in SUITES:
        sdir = os.path.join(data_root, suite)
        for name in sorted(os.listdir(sdir)):
            src = os.path.join(sdir, name)
            if not os.path.isfile(os.path.join(src, "model.onnx")):
                continue
            r = analyse(suite, name, src)
            r.src = src
            results[(suite, name)] = r
            if args.verbose:
                print(f"{suite}/{name}: {'SELECTED' if r.selected else r.reason}")

    names = collections.Counter(n for (_, n) in results)
    dup = [n for n, c in names.items() if c > 1]
    assert not dup, f"test names not unique across suites: {dup}"

    selected = sorted((r for r in results.values() if r.selected), key=lambda r: r.name)

    # "tests for our ops": the test itself, or its non-expanded base test,
    # only uses ops from our list.
    def relevant(r):
        if not (r.ops - ALL_KNOWN_OPS):
            return True
        base = results.get((r.suite, base_name(r.name)))
        return base is not None and base is not r and not (base.ops - ALL_KNOWN_OPS)

    excluded = sorted((r for r in results.values() if not r.selected and relevant(r)), key=lambda r: r.name)

    # ---- per-op counts ---------------------------------------------------
    per_op = collections.Counter()
    for r in selected:
        for op in r.ops:
            per_op[op] += 1
    per_primary = collections.Counter(primary_op(r) or "(multi-op)" for r in selected)

    total = sum(r.size for r in selected)
    print(f"onnx {onnx.__version__}: {len(results)} tests scanned, {len(selected)} selected "
          f"({sum(1 for r in selected if r.suite == 'node')} node, "
          f"{sum(1 for r in selected if r.suite == 'pytorch-converted')} pytorch-converted), "
          f"{len(excluded)} excluded")
    print("\nSelected tests per primary op (single-op tests; multi-op graphs counted apart):")
    for op, c in sorted(per_primary.items()):
        print(f"  {op:20s} {c}")
    print("\nSelected tests in which each op appears:")
    for op, c in sorted(per_op.items()):
        print(f"  {op:20s} {c}")
    print(f"\nTotal vendored payload: {total} bytes ({total / 1024:.1f} KiB)")

    if args.dry_run:
        for r in excluded:
            print(f"excluded {r.name}: {r.reason}")
        return

    # ---- write output ------------------------------------------------------
    os.makedirs(args.out, exist_ok=True)
    for suite in SUITES:
        d = os.path.join(args.out, suite)
        if os.path.isdir(d):
            shutil.rmtree(d)
    for r in selected:
        dst = os.path.join(args.out, r.suite, r.name)
        os.makedirs(os.path.join(dst, "test_data_set_0"), exist_ok=True)
        shutil.copyfile(os.path.join(r.src, "model.onnx"), os.path.join(dst, "model.onnx"))
        ds = os.path.join(r.src, "test_data_set_0")
        for f in sorted(os.listdir(ds)):
            shutil.copyfile(os.path.join(ds, f), os.path.join(dst, "test_data_set_0", f))

    header = [
        f"# ONNX backend conformance tests supported by fhec (vendored from onnx {onnx.__version__}).",
        "# Generated by scripts/vendor_onnx_node_tests.py -- do not edit by hand, re-run the script.",
        "#",
        "# One test per line: <test_name> [input:<name>[,<name>...]]",
        "# Data lives in node/<test_name>/ or pytorch-converted/<test_name>/ (names are unique).",
        "# Without an `input:` tag every graph input (excluding initializers) is a runtime input.",
        "# With `input:a,b` only those graph inputs are runtime inputs; every other graph input is",
        "# a parameter (weights, shapes, axes, bounds, scales...) whose value from",
        "# test_data_set_0/input_N.pb should be baked into the model as a constant/initializer.",
        "# `input:` with nothing after it means the model has no runtime input.",
    ]
    with open(os.path.join(args.out, "supported.txt"), "w") as f:
        f.write("\n".join(header) + "\n")
        for r in selected:
            line = r.name
            if r.runtime_inputs != r.all_inputs:
                line += " input:" + ",".join(r.runtime_inputs)
            f.write(line + "\n")

    width = max((len(r.name) for r in excluded), default=0)
    with open(os.path.join(args.out, "excluded.txt"), "w") as f:
        f.write(f"# ONNX backend tests (onnx {onnx.__version__}) for operators fhec supports that are NOT vendored.\n")
        f.write("# Generated by scripts/vendor_onnx_node_tests.py. Format: <test_name> <reason>\n")
        f.write("# (a test is listed when its own ops, or those of its non-expanded base test, are all in the\n")
        f.write("#  supported list; tests of wholly unsupported ops are omitted)\n")
        for r in excluded:
            f.write(f"{r.name.ljust(width)}  {r.reason}\n")

    # Apache-2.0 requires redistributions to carry a copy of the licence.
    lic = None
    try:
        from importlib import metadata
        dist = metadata.distribution("onnx")
        for f in dist.files or []:
            if os.path.basename(str(f)) == "LICENSE":
                lic = str(dist.locate_file(f))
                break
    except Exception:  # pragma: no cover
        pass
    if lic and os.path.isfile(lic):
        shutil.copyfile(lic, os.path.join(args.out, "LICENSE.onnx"))
    else:
        print("warning: onnx LICENSE file not found; keep the existing tests/onnx-node/LICENSE.onnx",
              file=sys.stderr)

    on_disk = dir_size(os.path.join(args.out))
    print(f"Wrote {len(selected)} tests to {args.out} ({on_disk / 1024:.1f} KiB on disk incl. lists)")


if __name__ == "__main__":
    main()
