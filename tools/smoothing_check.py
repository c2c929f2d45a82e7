"""Checks `smoothmax eval smooth-abs`, `smooth-floor` and `power-max` on every device against their
definitions evaluated in NumPy float64, independently of the crate's own f64 code:

- the smooth absolute value literally, (1/k)·logaddexp(kx, −kx), and its derivative tanh(kx);
- the pairwise smooth max built on it, max + logaddexp(0, −2k|a − b|)/(2k), gradient
  σ(2k(a − b));
- the power-mean max literally, (Σ x_j^p)^{1/p} and (x_j/f)^{p−1}, in 60-digit arithmetic
  (mpmath: no overflow however large p), and for moderate p also PyTorch's float64
  torch.linalg.vector_norm and its autograd gradient;
- the smoothed floor as the literal sum Σ_n (σ(t(x − n)) − [n ≤ 0]) over every integer within
  60/t + 2 of x (the rest is below e^-60), and its derivative Σ_n t·σ'(t(x − n));

on freshly generated values (normal, spread over many magnitudes, near integers, exact
integers and half-integers) and sharpness parameters over their range, with the crate's
tolerance |a − r| ≤ ε(32 + 4)(1 + |r|) for a single-element op.

Usage: cargo build --release && python3 tools/smoothing_check.py
"""
import numpy as np, subprocess, os, tempfile
import mpmath, torch
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


def power_max(x, p):
    """Per row (Σ x^p)^{1/p} and (x_j/f)^{p−1}, literally, at 60 digits."""
    mpmath.mp.dps = 60
    p = mpmath.mpf(float(p))
    v = np.empty(x.shape[0])
    g = np.empty_like(x)
    for i, row in enumerate(x):
        xs = [mpmath.mpf(float(e)) for e in row]
        f = mpmath.fsum(e ** p for e in xs) ** (1 / p)
        v[i] = float(f)
        for j, e in enumerate(xs):
            g[i, j] = float((e / f) ** (p - 1)) if f > 0 else (1.0 if p == 1 else 0.0)
    return v, g


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
        # The power-mean max: rows spread over magnitudes, with zeros and ties.
        xp = np.abs(x).astype(np.float32)
        xp[:, ::7] = 0.0
        xp[1, 3] = xp[1].max()
        for p in [1.0, 1.25, 2.0, 3.5, 17.0, 300.0, 1e5]:
            v, g = run("power-max", xp, "--p", p, device)
            p32 = np.float64(np.float32(p))
            wv, wg = power_max(xp.astype(np.float64), p32)
            compare(f"power-max p={p} {device} value", v, wv, unit=0.0)
            # The gradient's conditioning is (p − 1) in the ratio x_j/f (tests/power_max.rs).
            bad = np.abs(g - wg) > TOL * (1 + p32 * np.abs(wg))
            if bad.any():
                i = int(np.argmax(bad))
                raise SystemExit(f"power-max p={p} {device} grad {i}: {g.ravel()[i]} vs {wg.ravel()[i]}")
            if p <= 17.0:
                t = torch.tensor(xp.astype(np.float64), requires_grad=True)
                n = torch.linalg.vector_norm(t, ord=p32, dim=1)
                n.sum().backward()
                compare(f"power-max p={p} torch value", v, n.detach().numpy(), unit=0.0)
                # Off zero only: torch differentiates |x| there (0), the domain x ≥ 0 gives the
                # one-sided derivative (1 at p = 1).
                pos = xp > 0
                compare(f"power-max p={p} torch grad", g[pos], t.grad.numpy()[pos])
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
