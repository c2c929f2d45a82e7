"""Checks `smoothmax eval smooth-abs` and `smooth-floor` on every device against their
definitions evaluated in NumPy float64, independently of the crate's own f64 code:

- the smooth absolute value literally, (1/k)·logaddexp(kx, −kx), and its derivative tanh(kx);
- the pairwise smooth max built on it, max + logaddexp(0, −2k|a − b|)/(2k), gradient
  σ(2k(a − b));
- the smoothed floor as the literal sum Σ_n (σ(t(x − n)) − [n ≤ 0]) over every integer within
  60/t + 2 of x (the rest is below e^-60), and its derivative Σ_n t·σ'(t(x − n));

on freshly generated values (normal, spread over many magnitudes, near integers, exact
integers and half-integers) and sharpness parameters over their range, with the crate's
tolerance |a − r| ≤ ε(32 + 4)(1 + |r|) for a single-element op.

Usage: cargo build --release && python3 tools/smoothing_check.py
"""
import numpy as np, subprocess, os, tempfile
from scipy.special import expit

BIN = os.environ.get("SMOOTHMAX_BIN", "target/release/smoothmax")
WORK = tempfile.mkdtemp(prefix="smoothmax-smooth-")
EPS = float(np.finfo(np.float32).eps)
TOL = EPS * 36.0
rng = np.random.default_rng(20261128)


def smooth_abs(x, k):
    return np.logaddexp(k * x, -k * x) / k, np.tanh(k * x)


def smooth_floor(x, t):
    v = np.empty_like(x)
    d = np.empty_like(x)
    w = int(np.ceil(60.0 / t)) + 2
    for i, xi in enumerate(x.ravel()):
        lo, hi = np.floor(xi) - w, np.floor(xi) + w
        n = np.arange(lo, hi + 1)
        s = expit(t * (xi - n))
        # Outside the window σ is 1 (below) or 0 (above) to e^-60, so each term there is
        # [n > 0] (below) or −[n ≤ 0] (above): counted, not summed.
        v.flat[i] = np.sum(s - (n <= 0)) + max(0.0, lo - 1) - max(0.0, -hi)
        d.flat[i] = np.sum(t * s * (1 - s))
    return v, d


def inputs(n):
    parts = [
        rng.normal(0, 3, n),
        rng.normal(0, 1, n) * 10.0 ** rng.integers(-6, 7, n),
        np.round(rng.normal(0, 20, n)) + rng.normal(0, 1e-3, n),
        np.round(rng.normal(0, 20, n)),
        np.round(rng.normal(0, 20, n)) + 0.5,
    ]
    return np.concatenate(parts).astype(np.float32)


def run(op, x, flag, value, device):
    d = tempfile.mkdtemp(dir=WORK)
    np.save(f"{d}/x.npy", x)
    r = subprocess.run([BIN, "eval", op, "--input", f"{d}/x.npy", "--out", d, flag, repr(value),
                        "--device", device], capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{op} {flag} {value} on {device}: {r.stderr}")
    return np.load(f"{d}/output.npy").astype(np.float64), np.load(f"{d}/grad.npy").astype(np.float64)


def compare(what, got, want, unit=1.0):
    bad = np.abs(got - want) > TOL * (unit + np.abs(want))
    if bad.any():
        i = int(np.argmax(bad))
        raise SystemExit(f"{what}: element {i}: got {got.ravel()[i]!r}, want {want.ravel()[i]!r}")


def main():
    runs = 0
    for device in ["gpu", "cpu", "reference"]:
        x = inputs(40).reshape(4, 50)
        xs = x.astype(np.float64)
        for k in [1e-3, 0.3, 1.0, 7.5, 1e3]:
            v, g = run("smooth-abs", x, "--k", k, device)
            wv, wg = smooth_abs(xs, np.float64(np.float32(k)))
            compare(f"smooth-abs k={k} {device} value", v, wv)
            compare(f"smooth-abs k={k} {device} grad", g, wg)
            runs += 1
        # The floor's window grows like 1/t: keep the inputs moderate for the smallest t. At
        # the large t, values within a few 1/t of 0 on both sides (a tiny negative x is where
        # the nearest integer's distance must not be rounded away).
        for t in [0.05, 0.5, 0.999, 1.0, 2.0, 4.5, 30.0, 300.0, 1.5e4, 1e7]:
            xt = np.clip(x, -1e4, 1e4)
            if t > 1e3:
                xt = np.concatenate([xt.ravel(), rng.normal(0, 3, 50) / t]).astype(np.float32)
                xt = xt.reshape(-1, 50)
            v, g = run("smooth-floor", xt, "--t", t, device)
            wv, wg = smooth_floor(xt.astype(np.float64), np.float64(np.float32(t)))
            compare(f"smooth-floor t={t} {device} value", v, wv)
            # The derivative reaches t/4 at the integers: its errors scale with it.
            compare(f"smooth-floor t={t} {device} grad", g, wg, unit=max(1.0, t / 4))
            runs += 1
        # The pairwise smooth max built on the smooth absolute value.
        other = inputs(40).reshape(4, 50)
        for k in [1e-2, 1.0, 40.0]:
            d = tempfile.mkdtemp(dir=WORK)
            np.save(f"{d}/a.npy", x)
            np.save(f"{d}/b.npy", other)
            r = subprocess.run([BIN, "eval", "pairwise-max", "--input", f"{d}/a.npy", "--other",
                                f"{d}/b.npy", "--form", "logcosh", "--k", repr(k), "--out", d,
                                "--device", device], capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"logcosh on {device}: {r.stderr}")
            a64, b64, k64 = xs, other.astype(np.float64), np.float64(np.float32(k))
            dd = a64 - b64
            want = np.maximum(a64, b64) + np.logaddexp(0.0, -2 * k64 * np.abs(dd)) / (2 * k64)
            compare(f"logcosh k={k} {device} value", np.load(f"{d}/output.npy"), want)
            compare(f"logcosh k={k} {device} grad", np.load(f"{d}/grad.npy"), expit(2 * k64 * dd))
            runs += 1
    print(f"smoothing_check: {runs} runs on gpu, cpu and reference agree with float64 definitions")


if __name__ == "__main__":
    main()
