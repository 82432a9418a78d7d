#!/usr/bin/env python3
"""Side-by-side comparison of fhec and Concrete ML 1.9 at equal configuration.

NOT run in CI. It needs Concrete ML 1.9.0 in a Python 3.8-3.11 virtual environment
(about 10 minutes and 5 GB, torch included; only PyPI is needed):

    python3.11 -m venv /opt/cml/venv
    /opt/cml/venv/bin/pip install concrete-ml==1.9.0

and an fhec binary (`cargo build --release`, or the `cargo build` dev profile: Cargo.toml
optimises every dependency and fhec-runtime at opt-level 3 in dev too, so target/debug/fhec
is a fair build for FHE timing; the JSON records which binary was used).

Run it with the venv's python, from the repository root, on an IDLE machine (it warns when
the load average says otherwise):

    # MLP: table (a) at 6 bits, rounding 6 approximate and exact; table (b) equal accuracy
    /opt/cml/venv/bin/python scripts/compare_concrete_ml.py tests/fixtures/mlp_torch.onnx \
        --data tests/fixtures/data/breast_cancer.npz --configs 6:approximate:6,6:exact:6 \
        --samples 10 --threads 2 --json-out compare_mlp.json
    # CNN (each encrypted sample costs minutes on 2 cores: few samples)
    /opt/cml/venv/bin/python scripts/compare_concrete_ml.py tests/fixtures/cnn_torch_28.onnx \
        --data tests/fixtures/data/digits_28.npz --configs 5:approximate:6 \
        --samples 2 --threads 2 --json-out compare_cnn.json
    # functional smoke test (1 sample, small search): add --quick
    # plan first: compile, search and print the time estimate without encrypting anything
    #   add --compile-only

The full MLP command above takes roughly 20 minutes on an idle 2-core machine (search 2-3 min;
then 11 samples x 2 tools per row, the exact-rounding row dominating at ~25 s (fhec) and
~50 s (Concrete ML) per sample); the CNN one roughly 30 minutes (search ~6 min over 35
configurations; each encrypted CNN sample takes 1-3 minutes per tool). The script prints its
own estimate once everything is compiled (`ESTIMATE: ...`) and the remaining time of each row
as it goes; `--compile-only` prints the estimate without running anything encrypted.

What it does, for every configuration BITS:METHOD:ROUNDING_BITS (METHOD approximate|exact,
or BITS alone / BITS:none for no rounding):

* both tools quantise the same ONNX model with BITS-bit weights, activations and inputs
  (fhec `--bits B`; Concrete ML `n_bits={"model_inputs": B, "op_inputs": B, "op_weights": B,
  "model_outputs": B}` -- an int n_bits would give Concrete ML at least 5-bit inputs), round
  accumulators to ROUNDING_BITS with METHOD (fhec `--rounding-bits R --rounding-mode M`;
  Concrete ML `rounding_threshold_bits={"n_bits": R, "method": M}`), calibrate on the same
  first `--calib-limit` train samples (fhec `--calib DATA --calib-limit K`; Concrete ML the
  same array as inputset), and target the same failure probability per bootstrap
  (`--p-error`, default 0.008; Concrete ML `p_error=P, global_p_error=None`);
* clear (quantised) accuracy over the whole test split (fhec `eval --mode clear`; Concrete ML
  `forward(x, fhe="disable")`) and float accuracy (fhec `eval`, onnxruntime);
* keygen of each tool, one untimed warm-up sample each (`--no-warmup` to skip; Concrete ML's
  first run includes lazy key setup), then the first `--samples` test samples encrypted,
  ALTERNATELY: sample i on fhec, then sample i on Concrete ML, then sample i+1 on fhec...
  fhec runs as separate processes (`fhec encrypt`, `fhec run --json`, `fhec decrypt` on
  one-sample .npy files); Concrete ML in this process (`quantize_input` + `encrypt`, `run`,
  `decrypt` + `dequantize_output`, each timed);
* thread count pinned for both: RAYON_NUM_THREADS (fhec, tfhe-rs), OMP_NUM_THREADS (the
  Concrete runtime's loop parallelism is OpenMP, libomp), MKL/OPENBLAS/NUMEXPR_NUM_THREADS,
  torch.set_num_threads, and the CPU affinity of this process and its children set to
  `--threads` cores (`--no-affinity` to skip).

Table (b), equal accuracy: each tool's fastest configuration over bits `--search-bits`
(default 2..8) x rounding bits `--search-rounding` (default none,4,5,6,7) with rounding method
`--search-methods` (default approximate only) whose clear accuracy over the test split is
within `--search-tolerance` (default 0.01 = 1 point) of its float accuracy; "fastest" by each
tool's OWN cost prediction: fhec `compile --json` `predicted_latency_s`; Concrete ML
`fhe_circuit.statistics["complexity"]` (the Concrete optimizer's cost estimate of the whole
circuit). Ties go to fewer bits. The two winners are then measured alternately like (a).

Methodological differences that remain (each tool's own quantiser): Concrete ML sizes
accumulators and table domains from the ranges observed on the calibration set; fhec from
worst-case interval arithmetic by default (pass `--fhec-args '--ranges observed'` to builds
that have that option). Newer fhec builds round by default: "no rounding" is passed as
`--rounding-bits none` whenever `fhec compile --help` offers it. Concrete ML compiles with its
defaults (multi-parameter optimisation, compressed evaluation keys and input ciphertexts).

Idle check: the load average at start and end (the end one includes our own threads) and the
share of the machine's CPU time used by OTHER processes during the run (/proc/stat busy time
minus this process's and its children's CPU time); above 5 % the output says loudly that the
timings are not a measurement.

Output: Markdown tables on stdout (progress on stderr) and, with `--json-out`, a JSON file
with every measurement (per-sample times, parameters, statistics), the date, the machine (CPU
model, cores, load average at start and end) and the tool versions.

fhec timing columns: encrypt = the encryption time `fhec encrypt` prints (quantisation
included), run = `run_s` of `fhec run --json` (server compute; the server key's load and
expansion, `load_key_s`, is reported apart), decrypt = wall time of the `fhec decrypt` process
(it prints no timing of its own, so this includes process start and loading the client key).
Process wall times of all three are in the JSON. Concrete ML: encrypt = quantize_input +
encrypt, run = run, decrypt = decrypt + dequantize_output (each also separately in the JSON).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIGS = "6:approximate:6,6:exact:6"


# ------------------------------------------------------------------------------------------
# arguments, threads, machine


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="fhec vs Concrete ML 1.9 at equal configuration (see the header comment).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, help="ONNX model (opset 14 for Concrete ML)")
    p.add_argument("--data", type=Path, required=True,
                   help=".npz with x_train/y_train/x_test/y_test or the MedMNIST layout")
    p.add_argument("--configs", default=None,
                   help=f"BITS:METHOD:ROUNDING_BITS,... (default {DEFAULT_CONFIGS}; "
                        "METHOD approximate|exact; BITS or BITS:none = no rounding)")
    p.add_argument("--samples", type=int, default=None,
                   help="encrypted test samples per configuration and tool (default 10; 1 with --quick)")
    p.add_argument("--calib-limit", type=int, default=None,
                   help="calibrate both tools on the first K train samples (default 500; 100 with --quick)")
    p.add_argument("--p-error", type=float, default=0.008, help="failure probability per bootstrap")
    p.add_argument("--threads", type=int, default=None,
                   help="threads for both tools (default: the cores this process may use)")
    p.add_argument("--no-affinity", action="store_true",
                   help="do not restrict the CPU affinity to --threads cores")
    p.add_argument("--no-warmup", action="store_true",
                   help="skip the untimed warm-up sample of each tool after keygen")
    p.add_argument("--fhec", type=Path, default=None,
                   help="fhec binary (default target/release/fhec, else target/debug/fhec)")
    p.add_argument("--fhec-args", default=None,
                   help="extra options for fhec compile and eval, e.g. '--ranges observed' "
                        "(quote them; default: fhec's defaults)")
    p.add_argument("--json-out", type=Path, default=None, help="write every result here")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep circuits, keys and ciphertexts here (default: a temporary directory)")
    p.add_argument("--no-equal-accuracy", action="store_true", help="skip table (b)")
    p.add_argument("--no-equal-config", action="store_true", help="skip table (a)")
    p.add_argument("--search-bits", default=None, help="table (b) bits (default 2,3,4,5,6,7,8)")
    p.add_argument("--search-rounding", default=None,
                   help="table (b) rounding bits (default none,4,5,6,7)")
    p.add_argument("--search-methods", default="approximate",
                   help="table (b) rounding methods (default approximate)")
    p.add_argument("--search-tolerance", type=float, default=0.01,
                   help="table (b): clear accuracy within this of the float accuracy (default 0.01)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 1 sample, calib 100, first config only, search bits 4,6 x rounding 6")
    p.add_argument("--compile-only", action="store_true",
                   help="compile, search and estimate, but run nothing encrypted")
    p.add_argument("--yes", action="store_true", help="do not pause on a high load average")
    a = p.parse_args(argv)
    if a.quick:
        a.samples = a.samples or 1
        a.calib_limit = a.calib_limit or 100
        a.configs = a.configs or DEFAULT_CONFIGS.split(",")[0]
        a.search_bits = a.search_bits or "4,6"
        a.search_rounding = a.search_rounding or "6"
    a.samples = a.samples or 10
    a.calib_limit = a.calib_limit or 500
    a.configs = parse_configs(a.configs or DEFAULT_CONFIGS)
    a.search_bits = [int(b) for b in (a.search_bits or "2,3,4,5,6,7,8").split(",")]
    a.search_rounding = [None if r.strip() == "none" else int(r)
                         for r in (a.search_rounding or "none,4,5,6,7").split(",")]
    a.search_methods = [m.strip() for m in a.search_methods.split(",")]
    for m in a.search_methods:
        if m not in ("approximate", "exact"):
            p.error(f"--search-methods: '{m}' is not approximate or exact")
    if a.samples < 1:
        p.error("--samples must be at least 1")
    return a


def parse_configs(text):
    """'6:approximate:6,6:exact:6,4' -> [{'bits': 6, 'method': 'approximate', 'rbits': 6}, ...]"""
    out = []
    for item in text.split(","):
        parts = [s.strip() for s in item.strip().split(":")]
        if not parts[0]:
            continue
        bits = int(parts[0])
        if len(parts) == 1 or parts[1] == "none":
            out.append(cfg(bits, None, None))
            continue
        if len(parts) != 3 or parts[1] not in ("approximate", "exact"):
            raise SystemExit(f"--configs: '{item}' is not BITS:approximate|exact:ROUNDING_BITS")
        out.append(cfg(bits, parts[1], int(parts[2])))
    return out


def cfg(bits, method, rbits):
    return {"bits": bits, "method": method if rbits is not None else None, "rbits": rbits}


def cfg_name(c):
    if c["rbits"] is None:
        return f"{c['bits']} bits, no rounding"
    return f"{c['bits']} bits, round {c['rbits']} {c['method']}"


THREAD_VARS = ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS")


def pin_threads(threads, affinity):
    """Environment (inherited by fhec subprocesses; read by libomp when concrete loads) and
    CPU affinity. Must run before concrete / torch / onnxruntime are imported."""
    for v in THREAD_VARS:
        os.environ[v] = str(threads)
    cpus = None
    if affinity and hasattr(os, "sched_setaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        if threads > len(allowed):
            warn(f"--threads {threads} but only {len(allowed)} CPUs available: not pinning")
        else:
            cpus = allowed[:threads]
            os.sched_setaffinity(0, cpus)
    return cpus


def available_cpus():
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average():
    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        out = ""
    try:
        la = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        la = list(os.getloadavg()) if hasattr(os, "getloadavg") else [float("nan")] * 3
    return {"uptime": out, "load1": la[0], "load5": la[1], "load15": la[2]}


def machine_info():
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return {"cpu_model": model, "cores": os.cpu_count(), "cores_available": available_cpus(),
            "memory_bytes": mem, "hostname": platform.node(), "platform": platform.platform(),
            "python": sys.version.split()[0]}


def high_load(load, cores, own=0.0):
    """Loud when the 1-minute load says other work shares the cores we measure on; `own` is
    our own contribution (at the end of a run our threads have just been busy)."""
    return load["load1"] - own > max(0.5, 0.25 * cores)


def cpu_snapshot():
    """Busy CPU seconds of the whole machine (/proc/stat) and of this process and its
    waited-for children (fhec), to tell how much OTHER work ran during the measurement."""
    import resource

    busy = None
    try:
        f = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        # user nice system idle iowait irq softirq steal ... (steal, time a hypervisor gave
        # to other guests, is not work inside this machine: left out)
        busy = (f[0] + f[1] + f[2] + f[5] + f[6]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    own = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        r = resource.getrusage(who)
        own += r.ru_utime + r.ru_stime
    return {"busy_s": busy, "own_s": own, "wall": time.perf_counter()}


def other_cpu_share(a, b, cores):
    """Fraction of the machine's CPU time used by other processes between two snapshots."""
    if a["busy_s"] is None or b["busy_s"] is None:
        return None
    other = (b["busy_s"] - a["busy_s"]) - (b["own_s"] - a["own_s"])
    return max(0.0, other) / max(1e-9, (b["wall"] - a["wall"]) * cores)


def warn(msg):
    print(f"WARNING: {msg}", file=sys.stderr, flush=True)


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def banner(msg):
    line = "!" * 78
    print(f"\n{line}\n!! {msg}\n{line}\n", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------
# data: the layouts fhec reads (src/data.rs), in the model's input layout


def load_split(path, split):
    """x (float32, NCHW for MedMNIST images) and y (int64) of a .npz split, as fhec reads it;
    None when the file has no such split."""
    import numpy as np

    with np.load(path) as z:
        files = set(z.files)
        if f"x_{split}" in files:
            x = z[f"x_{split}"].astype(np.float32)
            y = z[f"y_{split}"] if f"y_{split}" in files else None
        elif f"{split}_images" in files:
            raw = z[f"{split}_images"]
            if raw.dtype != np.uint8:
                raise SystemExit(f"{path}: MedMNIST '{split}_images' must be uint8")
            x = raw.astype(np.float32) / np.float32(255.0)
            if x.ndim == 3:
                x = x[:, None, :, :]
            elif x.ndim == 4:
                x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            y = z[f"{split}_labels"] if f"{split}_labels" in files else None
        else:
            return None
    if y is not None:
        y = np.asarray(y).reshape(-1).astype(np.int64)
    return x, y


def model_input_shape(onnx_model):
    inp = [i for i in onnx_model.graph.input
           if i.name not in {t.name for t in onnx_model.graph.initializer}]
    if len(inp) != 1:
        raise SystemExit(f"the model has {len(inp)} inputs; this script handles one")
    dims = inp[0].type.tensor_type.shape.dim
    return inp[0].name, [d.dim_value if d.HasField("dim_value") else None for d in dims]


def fit_to_model(x, shape):
    """Samples [N, ...] to the model's input layout, like fhec's `fit`: as is, or NCHW data
    for an NHWC [batch,H,W,C] model transposed."""
    sample = list(x.shape[1:])
    want = list(shape[1:]) if len(shape) == len(sample) + 1 else list(shape)
    ok = lambda a, b: len(a) == len(b) and all(w is None or w == s for s, w in zip(a, b))
    if ok(sample, want):
        return x, None
    if len(want) == 3 and len(sample) == 3 and ok([sample[1], sample[2], sample[0]], want):
        return x.transpose(0, 2, 3, 1).copy(), "NCHW data transposed to the model's NHWC input"
    raise SystemExit(f"data samples {sample} do not fit model input {shape}")


# ------------------------------------------------------------------------------------------
# fhec, driven through its CLI


class ToolError(Exception):
    pass


def first_error_line(text):
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    for l in lines:
        if l.lower().startswith("error"):
            rest = " ".join(lines[lines.index(l):])
            return rest[:1000]
    return (" ".join(lines[-3:]))[:1000] if lines else "(no output)"


class Fhec:
    def __init__(self, binary, args, workdir):
        self.bin = str(binary)
        self.args = args
        self.work = workdir
        self.extra = shlex.split(args.fhec_args or "")
        try:
            help_text = subprocess.run([self.bin, "compile", "--help"], capture_output=True,
                                       text=True).stdout
        except OSError:
            help_text = ""
        # Newer fhec builds round by default and take `--rounding-bits none`; older ones
        # do not round unless asked. Either way "no rounding" must mean no rounding.
        self.rounding_none = "<R|none>" in help_text or "or `none`" in help_text

    def _run(self, cmd, what):
        t = time.perf_counter()
        p = subprocess.run([self.bin] + cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if p.returncode != 0:
            raise ToolError(f"fhec {what} failed (exit {p.returncode}): "
                            f"{first_error_line(p.stderr or p.stdout)}")
        return p.stdout, wall

    def quant_flags(self, c):
        f = ["--bits", str(c["bits"]), "--calib", str(self.args.data),
             "--calib-limit", str(self.args.calib_limit)]
        if c["rbits"] is not None:
            f += ["--rounding-bits", str(c["rbits"]), "--rounding-mode", c["method"]]
        elif self.rounding_none:
            f += ["--rounding-bits", "none"]
        return f + self.extra

    def version(self):
        try:
            out, _ = self._run(["--version"], "--version")
            return out.strip()
        except (ToolError, OSError) as e:
            return f"unknown ({e})"

    def clear_eval(self, c):
        out, wall = self._run(["eval", str(self.args.model), "--data", str(self.args.data),
                               "--mode", "clear", "--json"] + self.quant_flags(c), "eval")
        j = json.loads(out)
        return {"clear_accuracy": j["quantized_accuracy"], "float_accuracy": j["float_accuracy"],
                "test_samples": j["samples"], "eval_wall_s": wall,
                "max_accumulator_bits": j.get("max_accumulator_bits"),
                "tlu_count": j.get("tlu_count"), "clear_predictions": j.get("predictions")}

    def compile(self, c, tag):
        circ = self.work / f"fhec_{tag}.fhec"
        out, wall = self._run(["compile", str(self.args.model), "-o", str(circ), "--json",
                               "--p-error", repr(self.args.p_error),
                               "--threads", str(self.args.threads)] + self.quant_flags(c),
                              "compile")
        j = json.loads(out)
        j["compile_wall_s"] = wall
        j["circuit"] = str(circ)
        return j

    def keygen(self, circ, tag):
        ck, sk = self.work / f"fhec_{tag}.ckey", self.work / f"fhec_{tag}.skey"
        out, wall = self._run(["keygen", circ, "--client-key", str(ck), "--server-key", str(sk),
                               "--json"], "keygen")
        j = json.loads(out)
        j["keygen_wall_s"] = wall
        self.keys = (str(ck), str(sk))
        return j

    def sample(self, circ, x_path, tag):
        import numpy as np

        ck, sk = self.keys
        ct, yct, ynpy = (self.work / f"fhec_{tag}.{e}" for e in ("xct", "yct", "y.npy"))
        out, enc_wall = self._run(["encrypt", circ, "--client-key", ck, "--input", str(x_path),
                                   "-o", str(ct)], "encrypt")
        m = re.findall(r" in ([0-9.eE+-]+) s\b", out)
        enc = float(m[-1]) if m else None
        out, run_wall = self._run(["run", circ, "--server-key", sk, "--input", str(ct),
                                   "-o", str(yct), "--json"], "run")
        r = json.loads(out)
        if ynpy.exists():
            ynpy.unlink()  # decrypt writes owner-only files; start clean
        _, dec_wall = self._run(["decrypt", circ, "--client-key", ck, "--input", str(yct),
                                 "-o", str(ynpy)], "decrypt")
        y = np.load(ynpy).reshape(-1)
        return {"encrypt_s": enc if enc is not None else enc_wall, "run_s": r["run_s"],
                "decrypt_s": dec_wall, "load_key_s": r["load_key_s"], "threads": r["threads"],
                "encrypt_wall_s": enc_wall, "run_wall_s": run_wall, "decrypt_wall_s": dec_wall,
                "prediction": int(y.argmax()), "output": [float(v) for v in y]}


def fhec_params_text(j):
    def one(p):
        return (f"n={p['lwe_dimension']} k={p['glwe_dimension']} N={p['polynomial_size']} "
                f"pbs 2^{p['pbs_base_log']}x{p['pbs_level']} ks 2^{p['ks_base_log']}x{p['ks_level']}")
    sets = j.get("param_sets") or []
    if len(sets) <= 1:
        return one(j["params"])
    # Several parameter sets (one per class of lookups): each with its bootstrap count.
    return "; ".join(f"{one(p)} ({p['pbs_count']} PBS)" for p in sets)


def fhec_pbs_text(j):
    per = ", ".join(f"{n}x{b}b" for b, n in sorted(j["pbs_by_precision"].items(),
                                                    key=lambda kv: int(kv[0])))
    return f"{j['pbs_count']} ({per})" if per else str(j["pbs_count"])


# ------------------------------------------------------------------------------------------
# Concrete ML, in process


class Cml:
    def __init__(self, args, onnx_model):
        import concrete.fhe
        import concrete.ml
        import torch

        torch.set_num_threads(args.threads)
        self.args = args
        self.model = onnx_model
        self.versions = {"concrete-ml": concrete.ml.__version__,
                         "concrete-python": concrete.fhe.__version__,
                         "torch": torch.__version__}

    def n_bits(self, c):
        b = c["bits"]
        return {"model_inputs": b, "op_inputs": b, "op_weights": b, "model_outputs": b}

    def rounding(self, c):
        if c["rbits"] is None:
            return None
        return {"n_bits": c["rbits"], "method": c["method"]}

    def build(self, c, calib):
        """Quantised module without FHE compilation (for the accuracy screen of table (b))."""
        from concrete.ml.torch.compile import build_quantized_module

        return build_quantized_module(self.model, calib, n_bits=self.n_bits(c),
                                      rounding_threshold_bits=self.rounding(c))

    def compile(self, c, calib):
        from concrete.ml.torch.compile import compile_onnx_model

        t = time.perf_counter()
        qm = compile_onnx_model(self.model, calib, n_bits=self.n_bits(c),
                                rounding_threshold_bits=self.rounding(c),
                                p_error=self.args.p_error, global_p_error=None)
        return qm, time.perf_counter() - t

    @staticmethod
    def clear_accuracy(qm, x, y, side=None):
        """Accuracy of the quantised module in the clear; its predictions go to side."""
        import numpy as np

        preds = []
        for i in range(0, len(x), 64):
            preds.append(np.asarray(qm.forward(x[i:i + 64], fhe="disable")).reshape(
                min(64, len(x) - i), -1).argmax(1))
        preds = np.concatenate(preds)
        if side is not None:
            side["clear_predictions"] = [int(v) for v in preds]
        return float((preds == y).mean())

    @staticmethod
    def circuit_info(qm):
        """PBS count, parameters and cost from `fhe_circuit.statistics` (concrete-python 2.10:
        BootstrapKeyParam(polynomial_size, glwe_dimension, input_lwe_dimension, level,
        base_log) keys of programmable_bootstrap_count_per_parameter, KeyswitchKeyParam(level,
        base_log) keys of key_switch_count_per_parameter, `complexity` the optimizer's cost)."""
        s = qm.fhe_circuit.statistics
        # The parameter fields are methods in concrete-python 2.10 (attributes elsewhere).
        g = lambda obj, name: (lambda v: v() if callable(v) else v)(getattr(obj, name))
        pbs = []
        for k, n in s["programmable_bootstrap_count_per_parameter"].items():
            pbs.append({"count": int(n), "polynomial_size": g(k, "polynomial_size"),
                        "glwe_dimension": g(k, "glwe_dimension"),
                        "input_lwe_dimension": g(k, "input_lwe_dimension"),
                        "level": g(k, "level"), "base_log": g(k, "base_log"), "repr": repr(k)})
        ks = []
        for k, n in s["key_switch_count_per_parameter"].items():
            ks.append({"count": int(n), "level": g(k, "level"), "base_log": g(k, "base_log"),
                       "repr": repr(k)})
        pbs.sort(key=lambda d: -d["count"])
        ks.sort(key=lambda d: -d["count"])
        keep = ("size_of_secret_keys", "size_of_bootstrap_keys", "size_of_keyswitch_keys",
                "size_of_inputs", "size_of_outputs", "p_error", "global_p_error", "complexity",
                "programmable_bootstrap_count", "key_switch_count", "packing_key_switch_count",
                "clear_addition_count", "encrypted_addition_count",
                "clear_multiplication_count", "encrypted_negation_count")
        stats = {k: (float(s[k]) if isinstance(s[k], float) else s[k]) for k in keep if k in s}
        stats["programmable_bootstrap_count_per_tag"] = {
            str(k): int(v) for k, v in s.get("programmable_bootstrap_count_per_tag", {}).items()}
        try:
            widths = qm.fhe_circuit.graph.maximum_integer_bit_width()
        except Exception:  # noqa: BLE001 - informative only
            widths = None
        return {"pbs_count": int(s["programmable_bootstrap_count"]), "pbs_params": pbs,
                "ks_params": ks, "complexity": float(s["complexity"]),
                "max_integer_bit_width": widths, "statistics": stats}

    @staticmethod
    def keygen(qm):
        t = time.perf_counter()
        qm.fhe_circuit.keygen(force=True)
        return {"keygen_s": time.perf_counter() - t}

    @staticmethod
    def sample(qm, x):
        import numpy as np

        c = qm.fhe_circuit
        t0 = time.perf_counter()
        q = qm.quantize_input(x)
        t1 = time.perf_counter()
        e = c.encrypt(q)
        t2 = time.perf_counter()
        r = c.run(e)
        t3 = time.perf_counter()
        o = c.decrypt(r)
        t4 = time.perf_counter()
        y = np.asarray(qm.dequantize_output(o)).reshape(-1)
        t5 = time.perf_counter()
        return {"encrypt_s": t2 - t0, "run_s": t3 - t2, "decrypt_s": t5 - t3,
                "quantize_s": t1 - t0, "encrypt_only_s": t2 - t1, "decrypt_only_s": t4 - t3,
                "dequantize_s": t5 - t4, "prediction": int(y.argmax()),
                "output": [float(v) for v in y]}


def cml_error_text(e):
    """First line of a Concrete error plus the notes its graph printout marks with ^^^ (e.g.
    'this 18-bit value is used as an input to a table lookup; but only up to 16-bit table
    lookups are supported')."""
    lines = str(e).strip().splitlines()
    head = lines[0].strip() if lines else ""
    notes = [l.strip().lstrip("^").strip() for l in lines if l.strip().startswith("^")]
    text = f"{type(e).__name__}: {head}" + (f" ({'; '.join(notes[:3])})" if notes else "")
    return text[:500]


def cml_params_text(info):
    parts = []
    for p in info["pbs_params"]:
        parts.append(f"n={p['input_lwe_dimension']} k={p['glwe_dimension']} "
                     f"N={p['polynomial_size']} pbs 2^{p['base_log']}x{p['level']}"
                     + (f" ({p['count']} PBS)" if len(info["pbs_params"]) > 1 else ""))
    ks = "; ".join(f"ks 2^{k['base_log']}x{k['level']}" for k in info["ks_params"])
    return "; ".join(parts) + (f" {ks}" if ks else "")


def cml_pbs_text(info):
    if len(info["pbs_params"]) <= 1:
        return str(info["pbs_count"])
    return f"{info['pbs_count']} ({', '.join(str(p['count']) for p in info['pbs_params'])})"


# ------------------------------------------------------------------------------------------
# cost model for the time estimate only (never for ranking)


def ks_pbs_unit_cost(n, k, N, level, ks_level):
    """Keyswitch (k*N -> n, ks_level levels) + bootstrap (n blind rotations of ~level
    (k+1)^2 FFT products). Relative units, for the time estimate only."""
    return 8 * k * N * ks_level * n + n * level * (k + 1) ** 2 * N * math.log2(max(N, 2))


def estimate_cml_sample_s(f, info, threads):
    """Concrete ML seconds per sample, guessed from fhec's predicted latency scaled by the
    two circuits' keyswitch + bootstrap costs (ks_pbs_unit_cost), times 1.5 for the unknown
    efficiency of the other runtime. Rough: for the time estimate only, never for ranking."""
    ks = info["ks_params"]
    ks_level = (sum(q["count"] * q["level"] for q in ks) / max(1, sum(q["count"] for q in ks))
                if ks else 5)
    cc = sum(q["count"] * ks_pbs_unit_cost(q["input_lwe_dimension"], q["glwe_dimension"],
                                           q["polynomial_size"], q["level"], ks_level)
             for q in info["pbs_params"])
    if f is None:  # ~30 ms per (n=828, k=1, N=2048, level 2, ks 5) bootstrap on one core
        return 1.5 * 0.030 * cc / ks_pbs_unit_cost(828, 1, 2048, 2, 5) / max(1, threads)
    p = f["params"]
    fc = f["pbs_count"] * ks_pbs_unit_cost(p["lwe_dimension"], p["glwe_dimension"],
                                           p["polynomial_size"], p["pbs_level"], p["ks_level"])
    return 1.5 * f["predicted_latency_s"] * cc / max(fc, 1)


# ------------------------------------------------------------------------------------------
# the comparison


class Compare:
    def __init__(self, args, fhec, cml, data):
        self.a = args
        self.fhec = fhec
        self.cml = cml
        self.x_train, self.x_test, self.y_test = data
        self.calib = self.x_train[: args.calib_limit]
        self.float_acc = None
        self.tag = 0

    def next_tag(self):
        self.tag += 1
        return f"c{self.tag}"

    # -- compilation of one configuration, both tools ---------------------------------------

    def prepare(self, c, tools=("fhec", "cml")):
        """Clear accuracy, circuit and parameters of configuration c for the given tools;
        errors are recorded, not raised."""
        row = {"config": dict(c), "name": cfg_name(c), "fhec": {}, "cml": {}}
        tag = self.next_tag()
        row["tag"] = tag
        f = row["fhec"]
        m = row["cml"]
        if "fhec" in tools:
            self.prepare_fhec(c, tag, f)
        if "cml" in tools:
            self.prepare_cml(c, row, m)
        log(f"  {row['name']}: "
            + (("fhec " + (f"clear {f.get('clear_accuracy', float('nan')):.4f}, "
                          f"{f['compile']['pbs_count']} PBS, {fhec_params_text(f['compile'])}, "
                          f"predicted {f['compile']['predicted_latency_s']:.2f} s"
                          if "compile" in f else f"ERROR {f.get('error')}"))
               if "fhec" in tools else "")
            + (" | " if len(tools) == 2 else "")
            + (("CML " + (f"clear {m['clear_accuracy']:.4f}, {m['compile']['pbs_count']} PBS, "
                         f"{cml_params_text(m['compile'])}, complexity {m['compile']['complexity']:.3g}"
                         if "compile" in m else f"ERROR {m.get('error')}"))
               if "cml" in tools else ""))
        return row

    def prepare_fhec(self, c, tag, f):
        try:
            f.update(self.fhec.clear_eval(c))
        except ToolError as e:
            f["eval_error"] = str(e)
        try:
            f["compile"] = self.fhec.compile(c, tag)
        except ToolError as e:
            f["error"] = str(e)

    def prepare_cml(self, c, row, m):
        try:
            qm, secs = self.cml.compile(c, self.calib)
            m["compile_s"] = secs
            m["clear_accuracy"] = Cml.clear_accuracy(qm, self.x_test, self.y_test, m)
            m["test_samples"] = len(self.y_test)
            m["compile"] = Cml.circuit_info(qm)
            row["_qm"] = qm
        except Exception as e:  # noqa: BLE001 - any compile failure becomes the row's error
            m["error"] = cml_error_text(e)
            m["traceback"] = traceback.format_exc(limit=6)
            try:
                if "clear_accuracy" not in m:
                    qb = self.cml.build(c, self.calib)
                    m["clear_accuracy"] = Cml.clear_accuracy(qb, self.x_test, self.y_test, m)
                    m["test_samples"] = len(self.y_test)
            except Exception:  # noqa: BLE001
                pass

    def estimate_row_s(self, row):
        k = self.a.samples + (0 if self.a.no_warmup else 1)
        f = row["fhec"].get("compile")
        m = row["cml"].get("compile")
        fs = (f["predicted_latency_s"] * 1.3 + 0.5) if f else 0.0  # + process starts, key loads
        ms = estimate_cml_sample_s(f, m, self.a.threads) if m else 0.0
        keygen = (5.0 if f else 0.0) + (10.0 if m else 0.0)
        return keygen + k * (fs + ms), fs, ms

    # -- alternating measurement -------------------------------------------------------------

    def measure(self, row, label):
        import numpy as np

        a = self.a
        f, m = row["fhec"], row["cml"]
        have_f, have_m = "compile" in f, "_qm" in row
        if not (have_f or have_m):
            return
        tag = row["tag"]
        qm = row.get("_qm")
        x_paths = []
        for i in range(a.samples):
            p = self.fhec.work / f"x_{i}.npy"
            np.save(p, self.x_test[i:i + 1].astype(np.float32))
            x_paths.append(p)
        load0 = load_average()
        if have_f:
            try:
                f["keygen"] = self.fhec.keygen(f["compile"]["circuit"], tag)
            except ToolError as e:
                f["error"] = str(e)
                have_f = False
        if have_m:
            try:
                m["keygen"] = Cml.keygen(qm)
            except Exception as e:  # noqa: BLE001
                m["error"] = f"keygen: {type(e).__name__}: {e}"
                have_m = False
        f["samples"], m["samples"] = [], []
        if not a.no_warmup:
            if have_f:
                try:
                    f["warmup"] = self.fhec.sample(f["compile"]["circuit"], x_paths[0], tag)
                except ToolError as e:
                    f["error"] = str(e)
                    have_f = False
            if have_m:
                try:
                    m["warmup"] = Cml.sample(qm, self.x_test[0:1])
                except Exception as e:  # noqa: BLE001
                    m["error"] = f"run: {type(e).__name__}: {e}"
                    have_m = False
        t_start = time.perf_counter()
        for i in range(a.samples):
            y = int(self.y_test[i])
            if have_f:
                try:
                    s = self.fhec.sample(f["compile"]["circuit"], x_paths[i], tag)
                    s["label"] = y
                    f["samples"].append(s)
                except ToolError as e:
                    f["error"] = str(e)
                    have_f = False
            if have_m:
                try:
                    s = Cml.sample(qm, self.x_test[i:i + 1])
                    s["label"] = y
                    m["samples"].append(s)
                except Exception as e:  # noqa: BLE001
                    m["error"] = f"run: {type(e).__name__}: {e}"
                    have_m = False
            done = i + 1
            el = time.perf_counter() - t_start
            fl = f["samples"][-1] if f["samples"] and len(f["samples"]) == done else None
            ml = m["samples"][-1] if m["samples"] and len(m["samples"]) == done else None
            log(f"  [{label}] sample {done}/{a.samples}: "
                + (f"fhec run {fl['run_s']:.2f} s (pred {'ok' if fl['prediction'] == y else 'WRONG'})"
                   if fl else "fhec -")
                + " | "
                + (f"CML run {ml['run_s']:.2f} s (pred {'ok' if ml['prediction'] == y else 'WRONG'})"
                   if ml else "CML -")
                + f"; about {el / done * (a.samples - done) / 60:.1f} min left for this row")
        f["load_during"] = m["load_during"] = {"start": load0, "end": load_average()}
        bad = {s["threads"] for s in f["samples"] if s.get("threads") != a.threads}
        if bad:
            warn(f"fhec run reported {sorted(bad)} thread(s), not --threads {a.threads}")
        for side in (f, m):
            summarise(side)
        row.pop("_qm", None)  # frees Concrete ML's keys (hundreds of MB per circuit)

    # -- table (b): search ----------------------------------------------------------------------

    def search(self):
        a = self.a
        grid = []
        for method in a.search_methods:
            for b in a.search_bits:
                for r in a.search_rounding:
                    c = cfg(b, method, r)
                    if c not in grid:
                        grid.append(c)
        log(f"table (b): searching {len(grid)} configurations per tool "
            f"(bits {a.search_bits}, rounding {['none' if r is None else r for r in a.search_rounding]}, "
            f"methods {a.search_methods}, tolerance {a.search_tolerance})")
        fhec_rows, cml_rows = [], []
        for c in grid:
            # fhec: clear accuracy over the test split, then the circuit's predicted latency.
            fr = {"config": dict(c), "name": cfg_name(c)}
            try:
                fr.update(self.fhec.clear_eval(c))
                fr.pop("clear_predictions", None)
                ok = fr["clear_accuracy"] >= fr["float_accuracy"] - a.search_tolerance - 1e-12
                fr["within_tolerance"] = ok
                if ok:
                    try:
                        j = self.fhec.compile(c, "search")
                        fr["pbs_count"] = j["pbs_count"]
                        fr["predicted_latency_s"] = j["predicted_latency_s"]
                        fr["params"] = fhec_params_text(j)
                    except ToolError as e:
                        fr["error"] = str(e)
            except ToolError as e:
                fr["error"] = str(e)
            fhec_rows.append(fr)
            # Concrete ML: clear accuracy of the quantised module, then the compiled circuit's
            # complexity.
            mr = {"config": dict(c), "name": cfg_name(c)}
            try:
                qb = self.cml.build(c, self.calib)
                mr["clear_accuracy"] = Cml.clear_accuracy(qb, self.x_test, self.y_test)
                mr["float_accuracy"] = self.float_acc
                ok = mr["clear_accuracy"] >= self.float_acc - a.search_tolerance - 1e-12
                mr["within_tolerance"] = ok
                if ok:
                    qm, secs = self.cml.compile(c, self.calib)
                    info = Cml.circuit_info(qm)
                    mr["pbs_count"] = info["pbs_count"]
                    mr["complexity"] = info["complexity"]
                    mr["params"] = cml_params_text(info)
                    del qm
            except Exception as e:  # noqa: BLE001
                mr["error"] = cml_error_text(e)
            cml_rows.append(mr)
            log(f"  {cfg_name(c)}: fhec {fmt_acc(fr.get('clear_accuracy'))}"
                + (f" pred {fr['predicted_latency_s']:.2f} s" if "predicted_latency_s" in fr else "")
                + (" [error]" if "error" in fr else "")
                + f" | CML {fmt_acc(mr.get('clear_accuracy'))}"
                + (f" complexity {mr['complexity']:.3g}" if "complexity" in mr else "")
                + (" [error]" if "error" in mr else ""))
        # Fastest by each tool's own prediction; ties to fewer bits, then fewer rounding bits.
        key = lambda cost: (lambda r: (r[cost], r["config"]["bits"], r["config"]["rbits"] or 99))
        fw = min((r for r in fhec_rows if "predicted_latency_s" in r), key=key("predicted_latency_s"),
                 default=None)
        mw = min((r for r in cml_rows if "complexity" in r), key=key("complexity"), default=None)
        return {"grid": grid, "fhec": fhec_rows, "cml": cml_rows, "fhec_winner": fw,
                "cml_winner": mw}


def summarise(side):
    ss = side.get("samples") or []
    if not ss:
        return
    med = lambda k: statistics.median(s[k] for s in ss)
    side["median"] = {k: med(k) for k in ("encrypt_s", "run_s", "decrypt_s")}
    side["median"]["total_s"] = statistics.median(
        s["encrypt_s"] + s["run_s"] + s["decrypt_s"] for s in ss)
    side["fhe_correct"] = sum(s["prediction"] == s["label"] for s in ss)
    side["fhe_accuracy"] = side["fhe_correct"] / len(ss)
    side["fhe_samples"] = len(ss)
    clear = side.get("clear_predictions")
    if clear:
        side["fhe_equals_clear"] = sum(s["prediction"] == clear[i] for i, s in enumerate(ss))


# ------------------------------------------------------------------------------------------
# output


def short_error(text, limit=240):
    """The root cause of an error for a table cell (the full text is in the JSON)."""
    low = text.lower()
    i = low.rfind("caused by:")
    if i >= 0:
        text = text[:text.find(":") + 1] + " ..." + text[i + len("caused by:"):]
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def fmt_acc(v):
    return "–" if v is None else f"{v:.4f}"


def fmt_s(v):
    if v is None:
        return "–"
    return f"{v:.3f}" if v < 1 else (f"{v:.2f}" if v < 100 else f"{v:.0f}")


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}"


MD_HEADER = ("| configuration | tool | PBS | parameters | cost prediction | clear acc. (test) | "
             "FHE acc. (K) | keygen s | encrypt s | run s | decrypt s | total s |\n"
             "|---|---|---|---|---|---|---|---|---|---|---|---|")


def md_rows(row, cname=None):
    cname = cname or row["name"]
    f, m = row["fhec"], row["cml"]
    out = []

    def cells(side, tool):
        comp = side.get("compile")
        med = side.get("median", {})
        kg = side.get("keygen", {}).get("keygen_s")
        clear = fmt_acc(side.get("clear_accuracy"))
        if side.get("test_samples"):
            clear += f" ({side['test_samples']})"
        fhe = (f"{side['fhe_accuracy']:.2f} ({side['fhe_samples']}"
               + (f"; {side['fhe_equals_clear']} = clear" if "fhe_equals_clear" in side else "")
               + ")" if "fhe_accuracy" in side else "–")
        if comp is None:
            err = short_error(side.get("error", "not compiled")).replace("|", "/")
            return f"| {cname} | {tool} | – | error: {err} | – | {clear} | – | – | – | – | – | – |"
        if tool == "fhec":
            pbs, params = fhec_pbs_text(comp), fhec_params_text(comp)
            cost = f"{comp['predicted_latency_s']:.2f} s predicted"
        else:
            pbs, params = cml_pbs_text(comp), cml_params_text(comp)
            cost = f"complexity {comp['complexity']:.3g}"
        err = (f" (error: {short_error(side['error'])})".replace("|", "/")
               if side.get("error") else "")
        return (f"| {cname} | {tool} | {pbs} | {params}{err} | {cost} | {clear} | {fhe} | "
                f"{fmt_s(kg)} | {fmt_s(med.get('encrypt_s'))} | {fmt_s(med.get('run_s'))} | "
                f"{fmt_s(med.get('decrypt_s'))} | {fmt_s(med.get('total_s'))} |")

    out.append(cells(f, "fhec"))
    out.append(cells(m, "Concrete ML"))
    fm, mm = f.get("median", {}), m.get("median", {})
    fk, mk = f.get("keygen", {}).get("keygen_s"), m.get("keygen", {}).get("keygen_s")
    fp = f.get("compile", {}).get("pbs_count")
    mp = m.get("compile", {}).get("pbs_count")
    out.append(f"| {cname} | **fhec / CML** | {ratio(fp, mp)} | | | | | {ratio(fk, mk)} | "
               f"{ratio(fm.get('encrypt_s'), mm.get('encrypt_s'))} | "
               f"**{ratio(fm.get('run_s'), mm.get('run_s'))}** | "
               f"n/a² | "
               f"**{ratio(fm.get('total_s'), mm.get('total_s'))}** |")
    return out


def markdown(result):
    a = result["args"]
    lines = []
    mi, v = result["machine"], result["versions"]
    lines.append(f"## fhec vs Concrete ML: {Path(a['model']).name} on {Path(a['data']).name}")
    lines.append("")
    lines.append(f"{result['date']}; {mi['cpu_model']}, {mi['cores']} cores "
                 f"({a['threads']} threads for both tools, affinity {result['affinity'] or 'not pinned'}); "
                 f"load average at start {result['load_start']['load1']:.2f}, "
                 f"at end {result['load_end']['load1']:.2f} (our own {a['threads']} threads included); "
                 + (f"other processes used {result['other_cpu_share'] * 100:.0f}% of the machine's "
                    f"CPU time during the run."
                    if result.get("other_cpu_share") is not None else "other CPU use unknown."))
    lines.append(f"fhec: `{v['fhec']}` ({v['fhec_binary']}, {v['fhec_profile']} profile, "
                 f"commit {v['fhec_commit']}); concrete-ml {v.get('concrete-ml')}, "
                 f"concrete-python {v.get('concrete-python')}.")
    lines.append(f"p_error {a['p_error']} per bootstrap for both; calibration: the first "
                 f"{a['calib_limit']} train samples for both; float accuracy (onnxruntime) "
                 f"{fmt_acc(result.get('float_accuracy'))} over {result['test_samples']} test samples; "
                 f"FHE on the first {a['samples']} test samples, run alternately "
                 f"(fhec sample i, then Concrete ML sample i)"
                 + ("" if a["no_warmup"] else ", after one untimed warm-up sample each") + ".")
    if result.get("high_load"):
        lines.append("")
        share = result.get("other_cpu_share")
        lines.append(f"**WARNING: the machine was not idle (load average {result['load_start']['load1']:.2f} "
                     f"at start, {result['load_end']['load1']:.2f} at end"
                     + (f", other processes {share * 100:.0f}% of the CPU time" if share is not None else "")
                     + "): these timings are not a measurement.**")
    lines.append("")
    lines.append("Times are medians per sample. fhec: encrypt = `fhec encrypt`'s own encryption "
                 "time, run = `run_s` of `fhec run --json` (server key load/expansion excluded, "
                 "in the JSON as `load_key_s`), decrypt = wall time of the `fhec decrypt` process. "
                 "FHE acc. (K; n = clear): accuracy on the K encrypted samples, and how many "
                 "of them have the clear model's argmax. "
                 "Concrete ML: encrypt = quantize_input + encrypt, run = fhe_circuit.run, "
                 "decrypt = decrypt + dequantize_output. Cost prediction: fhec's predicted latency; "
                 "Concrete ML's optimizer complexity (`fhe_circuit.statistics['complexity']`). "
                 "² no decrypt ratio: fhec's decrypt time is a whole process (start, loading the "
                 "circuit and client key), Concrete ML's an in-process call.")
    if result.get("equal_config"):
        lines.append("")
        lines.append("### (a) Equal configuration")
        lines.append("")
        lines.append(MD_HEADER)
        for row in result["equal_config"]:
            lines.extend(md_rows(row))
    eq = result.get("equal_accuracy")
    if eq:
        lines.append("")
        lines.append("### (b) Equal accuracy: each tool's fastest configuration within "
                     f"{a['search_tolerance'] * 100:g} point(s) of its float accuracy")
        lines.append("")
        lines.append(f"Searched bits {a['search_bits']} x rounding bits "
                     f"{['none' if r is None else r for r in a['search_rounding']]}, methods "
                     f"{a['search_methods']}; fastest = lowest fhec predicted latency / lowest "
                     f"Concrete ML complexity (ties: fewer bits).")
        lines.append("")
        lines.append(MD_HEADER)
        row = eq.get("measured")
        if row:
            fname = eq["fhec_winner"]["name"] if eq.get("fhec_winner") else "none"
            mname = eq["cml_winner"]["name"] if eq.get("cml_winner") else "none"
            rows = md_rows(row, cname="winners")
            rows[0] = rows[0].replace("| winners | fhec |", f"| fhec: {fname} | fhec |")
            rows[1] = rows[1].replace("| winners | Concrete ML |", f"| CML: {mname} | Concrete ML |")
            lines.extend(rows)
            if eq.get("reused_from_equal_config"):
                lines.append("")
                lines.append("(Both winners are the same configuration as a row of table (a): "
                             "these are that row's measurements.)")
        elif a.get("compile_only"):
            pass
        lines.append("")
        lines.append("Search (clear accuracy over the test split; cost for those within tolerance):")
        lines.append("")
        lines.append("| configuration | fhec clear | fhec PBS | fhec predicted s | CML clear | CML PBS | CML complexity |")
        lines.append("|---|---|---|---|---|---|---|")
        for fr, mr in zip(eq["search"]["fhec"], eq["search"]["cml"]):
            def cost(r, k, fmt):
                if "error" in r and k not in r:
                    return "error"
                return fmt(r[k]) if k in r else "–"
            lines.append(
                f"| {fr['name']} | {fmt_acc(fr.get('clear_accuracy'))} | {cost(fr, 'pbs_count', str)} | "
                f"{cost(fr, 'predicted_latency_s', lambda v: f'{v:.2f}')} | "
                f"{fmt_acc(mr.get('clear_accuracy'))} | {cost(mr, 'pbs_count', str)} | "
                f"{cost(mr, 'complexity', lambda v: f'{v:.3g}')} |")
    return "\n".join(lines) + "\n"


def clean_for_json(obj):
    if isinstance(obj, dict):
        return {str(k): clean_for_json(v) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, (list, tuple)):
        return [clean_for_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ------------------------------------------------------------------------------------------


def find_fhec(arg):
    if arg:
        return arg.resolve()
    for prof in ("release", "debug"):
        p = REPO / "target" / prof / "fhec"
        if p.exists():
            return p
    raise SystemExit("no fhec binary: build it (cargo build --release) or pass --fhec PATH")


def git_commit(path):
    try:
        d = Path(path).resolve().parent
        out = subprocess.run(["git", "-C", str(d), "describe", "--always", "--dirty"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
        return out or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv=None):
    a = parse_args(argv)
    cores = available_cpus()
    a.threads = a.threads or cores
    affinity = pin_threads(a.threads, not a.no_affinity)
    fhec_bin = find_fhec(a.fhec)
    profile = fhec_bin.parent.name if fhec_bin.parent.name in ("release", "debug") else "unknown"
    date = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    machine = machine_info()
    load_start = load_average()
    log(f"fhec vs Concrete ML, {date}; {machine['cpu_model']}, {machine['cores']} cores, "
        f"{a.threads} thread(s), affinity {affinity}; load: {load_start['uptime']}")
    ncores = machine["cores"] or cores
    if high_load(load_start, ncores):
        banner(f"HIGH LOAD: 1-minute load average {load_start['load1']:.2f} on "
               f"{machine['cores']} cores. Other work shares the CPUs: timings will not be a "
               f"measurement. Run on an idle machine for numbers to publish.")
        if not a.yes and sys.stdin.isatty():
            log("continuing in 10 s (Ctrl-C to stop; --yes skips this pause)")
            time.sleep(10)

    import numpy as np
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(a.model))
    in_name, in_shape = model_input_shape(model)
    test = load_split(a.data, "test")
    if test is None or test[1] is None:
        raise SystemExit(f"{a.data}: no labelled test split (x_test/y_test or test_images/test_labels)")
    train = load_split(a.data, "train")
    if train is None:
        log(f"note: {a.data} has no train split; calibrating on its test split (as fhec does)")
        train = test
    x_test, note = fit_to_model(test[0], in_shape)
    x_train, _ = fit_to_model(train[0], in_shape)
    y_test = test[1]
    if note:
        log(f"note: {note}")
    if a.samples > len(x_test):
        raise SystemExit(f"--samples {a.samples} but the test split has {len(x_test)} samples")

    so = ort.SessionOptions()
    so.intra_op_num_threads = a.threads
    sess = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    float_pred = np.concatenate([np.asarray(sess.run(None, {in_name: x_test[i:i + 1]})[0]).reshape(1, -1)
                                 for i in range(len(x_test))]).argmax(1)
    float_acc = float((float_pred == y_test).mean())
    log(f"float accuracy (onnxruntime) {float_acc:.4f} over {len(y_test)} test samples")

    tmp = None
    if a.workdir:
        a.workdir.mkdir(parents=True, exist_ok=True)
        work = a.workdir.resolve()
    else:
        tmp = tempfile.mkdtemp(prefix="fhec_vs_cml_")
        work = Path(tmp)
    a.model, a.data = a.model.resolve(), a.data.resolve()
    if a.json_out:
        a.json_out = a.json_out.resolve()
    # Concrete dumps debug artifacts into ./.artifacts when a compilation fails: keep them out
    # of the caller's directory (the repository).
    os.chdir(work)

    fhec = Fhec(fhec_bin, a, work)
    log("importing Concrete ML...")
    cml = Cml(a, model)
    versions = {"fhec": fhec.version(), "fhec_binary": str(fhec_bin), "fhec_profile": profile,
                "fhec_commit": git_commit(fhec_bin), **cml.versions,
                "numpy": np.__version__, "onnx": onnx.__version__, "onnxruntime": ort.__version__}
    log(f"versions: {versions}")
    if profile == "debug":
        log("note: target/debug/fhec: the dev profile builds dependencies and fhec-runtime at "
            "opt-level 3 (Cargo.toml), so FHE timings are representative; release is the reference")

    cmp = Compare(a, fhec, cml, (x_train, x_test, y_test))
    cmp.float_acc = float_acc
    result = {"date": date, "machine": machine, "load_start": load_start, "versions": versions,
              "affinity": affinity, "float_accuracy": float_acc, "test_samples": int(len(y_test)),
              "args": clean_for_json({k: v for k, v in vars(a).items()}),
              "thread_env": {v: os.environ.get(v) for v in THREAD_VARS}}
    t_all = time.perf_counter()
    snap0 = cpu_snapshot()
    try:
        # Compile everything first, so the time estimate covers the whole measurement.
        rows = []
        if not a.no_equal_config:
            log(f"table (a): compiling {len(a.configs)} configuration(s) with both tools")
            for c in a.configs:
                rows.append(cmp.prepare(c))
        eq = None
        if not a.no_equal_accuracy:
            search = cmp.search()
            eq = {"search": search, "fhec_winner": search["fhec_winner"],
                  "cml_winner": search["cml_winner"]}
            fw, mw = search["fhec_winner"], search["cml_winner"]
            log(f"table (b) winners: fhec {fw['name'] if fw else 'none'}, "
                f"Concrete ML {mw['name'] if mw else 'none'}")
            same = [r for r in rows if fw and mw and r["config"] == fw["config"] == mw["config"]]
            if same:
                # Both winners are one configuration that table (a) measures: reuse it.
                log(f"table (b): both winners are table (a)'s '{same[0]['name']}': reusing its measurement")
                eq["measured"] = same[0]
                eq["reused_from_equal_config"] = True
            else:
                # A row holding fhec's winner on the fhec side and Concrete ML's on the other.
                none = {"error": "no configuration within tolerance compiled"}
                measured = {"name": "winners", "config": None, "tag": cmp.next_tag(),
                            "fhec": dict(none), "cml": dict(none)}
                if fw:
                    measured["fhec"] = {}
                    cmp.prepare_fhec(fw["config"], measured["tag"], measured["fhec"])
                if mw:
                    measured["cml"] = {}
                    cmp.prepare_cml(mw["config"], measured, measured["cml"])
                eq["measured"] = measured
        todo = rows + ([eq["measured"]] if eq and not eq.get("reused_from_equal_config") else [])
        est = 0.0
        for r in todo:
            e, fs, ms = cmp.estimate_row_s(r)
            est += e
            if not (fs or ms):
                log(f"  estimate {r['name']}: nothing compiled, nothing to run")
                continue
            log(f"  estimate {r['name']}: fhec ~{fs:.1f} s/sample, Concrete ML ~{ms:.1f} s/sample (rough)")
        log(f"ESTIMATE: {est / 60:.1f} min for the encrypted runs "
            f"({a.samples} sample(s) x {len(todo)} row(s) x 2 tools"
            + ("" if a.no_warmup else " + 1 warm-up each") + "); "
            f"{(time.perf_counter() - t_all) / 60:.1f} min spent compiling and searching")
        if a.compile_only:
            log("--compile-only: no encrypted runs")
        else:
            for r in rows:
                log(f"table (a): measuring {r['name']}")
                cmp.measure(r, r["name"])
            if eq and not eq.get("reused_from_equal_config"):
                log("table (b): measuring the two winners")
                cmp.measure(eq["measured"], "winners")
        result["equal_config"] = rows
        result["equal_accuracy"] = eq
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    result["load_end"] = load_average()
    result["total_s"] = time.perf_counter() - t_all
    share = other_cpu_share(snap0, cpu_snapshot(), ncores)
    result["other_cpu_share"] = share
    # The verdict is the CPU time other processes used DURING the run (/proc/stat minus our
    # own); load averages decay over minutes, so at the start they still count whatever ran
    # just before (an earlier comparison run included) and are only the fallback.
    if share is not None:
        result["high_load"] = share > 0.05
    else:
        result["high_load"] = bool(high_load(load_start, ncores)
                                   or high_load(result["load_end"], ncores, own=a.threads))
    md = markdown(result)
    print(md)
    if result["high_load"]:
        banner(f"HIGH LOAD (load average start {load_start['load1']:.2f}, end "
               f"{result['load_end']['load1']:.2f}; other processes "
               f"{'?' if share is None else f'{share * 100:.0f}%'} of the CPU time): "
               f"these timings are NOT a measurement")
    if a.json_out:
        a.json_out.write_text(json.dumps(clean_for_json(result), indent=1, default=str) + "\n")
        log(f"wrote {a.json_out}")
    log(f"total {result['total_s'] / 60:.1f} min")


if __name__ == "__main__":
    main()
