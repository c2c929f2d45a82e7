"""Checks `smoothmax eval` on every device against SciPy float64, on inputs generated here
(never seen by the Rust tests), including the non-finite table and a [4096, 32000] input.

Usage: cargo build --release && pip install numpy scipy && python3 tools/scipy_check.py
"""
import numpy as np, subprocess, os, tempfile
from scipy.special import logsumexp, softmax, log_softmax
rng = np.random.default_rng(20261121)
BIN = os.environ.get("SMOOTHMAX_BIN", "target/release/smoothmax")
WORK = tempfile.mkdtemp(prefix="smoothmax-scipy-")
eps = np.finfo(np.float32).eps
def ref(op, x, T):
    x = x.astype(np.float64) / T
    B, C = x.shape
    if C == 0:
        return np.full(B, -np.inf) if op == "logsumexp" else np.zeros((B, 0))
    with np.errstate(all="ignore"):
        if op == "logsumexp": return T * logsumexp(x, axis=1)
        r = softmax(x, axis=1) if op == "softmax" else log_softmax(x, axis=1)
    # PyTorch (the contract) gives NaN on the whole row when it has NaN, +inf, or no finite value;
    # SciPy differs there (e.g. -inf at the finite positions of a row with +inf).
    bad = np.isnan(x).any(1) | np.isposinf(x).any(1) | np.isneginf(x).all(1)
    r[bad] = np.nan
    return r
def compare(got, want, C, what, unit=1.0):
    # |a - r| <= tol * (unit + |r|); unit = T for logsumexp at temperature T (crate docs, Accuracy)
    tol = eps * (32 + 4 * np.sqrt(max(C, 1)))
    g = got.astype(np.float64)
    nan_ok = np.array_equal(np.isnan(g), np.isnan(want))
    inf_ok = np.array_equal(np.isinf(g) & (g > 0), np.isinf(want) & (want > 0)) and np.array_equal(np.isinf(g) & (g < 0), np.isinf(want) & (want < 0))
    fin = np.isfinite(want) & np.isfinite(g)
    err = (np.abs(g[fin] - want[fin]) / (unit + np.abs(want[fin]))).max() if fin.any() else 0.0
    ok = nan_ok and inf_ok and err <= tol
    print(f"{'ok ' if ok else 'BAD'} {what}: max scaled err {err:.2e} (tol {tol:.1e}) nan_ok={nan_ok} inf_ok={inf_ok}")
    return ok
cases = []
cases.append(("table", np.array([[-np.inf]*5, [0,1,-np.inf,2,-np.inf], [0, np.inf, 1, -np.inf, 2], [np.nan, 0, 1, 2, 3], [1e30, 0, -np.inf, -np.inf, -np.inf], [np.inf]*5, [np.nan, np.inf, -np.inf, 0, 0]], dtype=np.float64)))
cases.append(("gauss 33x517", rng.normal(0, 5, (33, 517))))
cases.append(("shifted 9x4000 +1e7 ints", rng.integers(-40, 40, (9, 4000)).astype(np.float64) + 1e7))
cases.append(("heavy 5x70001", rng.standard_cauchy((5, 70001)).clip(-1e6, 1e6)))
cases.append(("short 50000x2", rng.normal(0, 30, (50000, 2))))
cases.append(("empty 4x0", np.zeros((4, 0))))
ok = True
for name, x in cases:
    for dtype in (np.float32, np.float64):
        path = f"{WORK}/{name.split()[0]}_{np.dtype(dtype).name}.npy"; np.save(path, x.astype(dtype))
        for T in (1.0, 0.37):
            for op in ("logsumexp", "softmax", "log-softmax"):
                for dev in ("gpu", "cpu", "reference"):
                    out = f"{WORK}/out"; subprocess.run(["rm", "-rf", out])
                    r = subprocess.run([BIN, "eval", op, "--input", path, "--temperature", str(T), "--device", dev, "--out", out], capture_output=True, text=True)
                    if r.returncode != 0: print("FAIL", r.stderr); ok = False; continue
                    got = np.load(out + "/output.npy")
                    ok &= compare(got, ref(op, x.astype(dtype).astype(np.float32), T), x.shape[1], f"{dev:9} {op:11} T={T} {name} {np.dtype(dtype).name}", T if op == "logsumexp" else 1.0)
# the big one, GPU and CPU, softmax + logsumexp
x = rng.normal(0, 2, (4096, 32000)).astype(np.float32); np.save(f"{WORK}/big.npy", x)
for dev in ("gpu", "cpu"):
    for op in ("softmax", "logsumexp"):
        subprocess.run(["rm", "-rf", f"{WORK}/out"])
        r = subprocess.run([BIN, "eval", op, "--input", f"{WORK}/big.npy", "--device", dev, "--out", f"{WORK}/out"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        ok &= compare(np.load(f"{WORK}/out/output.npy"), ref(op, x, 1.0), 32000, f"{dev} {op} [4096, 32000]")
print("ALL OK" if ok else "SOME BAD")
raise SystemExit(0 if ok else 1)
