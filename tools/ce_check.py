"""Checks `smoothmax eval cross-entropy` on every device against an independent NumPy float64
transcription of torch.nn.functional.cross_entropy (aten/src/ATen/native/LossNLL.cpp), with the
gradient by central finite differences of that transcription, on freshly generated cases.

Usage: cargo build --release && pip install numpy && python3 tools/ce_check.py
"""
import numpy as np, subprocess, os, tempfile, itertools

BIN = os.environ.get("SMOOTHMAX_BIN", "target/release/smoothmax")
WORK = tempfile.mkdtemp(prefix="smoothmax-ce-")
EPS = np.finfo(np.float32).eps
rng = np.random.default_rng(1121)

def log_softmax(x):
    out = np.full_like(x, np.nan)
    lse = np.empty(x.shape[0])
    for i, r in enumerate(x):
        if np.isnan(r).any(): lse[i] = np.nan; continue
        if np.isposinf(r).any(): lse[i] = np.inf; continue
        m = r.max()
        if m == -np.inf: lse[i] = -np.inf; continue
        with np.errstate(all="ignore"):
            ln_s = np.log(np.exp(r - m).sum())
        lse[i] = m + ln_s
        out[i] = (r - m) - ln_s
    return lse, out

def torch_ce(x, t, w=None, ignore_index=-100, ls=0.0, reduction="mean", z=0.0, softcap=None):
    x = x.astype(np.float64)
    if softcap is not None: x = softcap * np.tanh(x / softcap)
    B, C = x.shape
    lse, logp = log_softmax(x)
    w = np.ones(C) if w is None else w.astype(np.float64)
    with np.errstate(all="ignore"):
        if t.ndim == 1:
            ign = t == ignore_index
            tt = np.where(ign, 0, t)
            nll = -w[tt] * logp[np.arange(B), tt]
            nll[ign] = 0
            ce = nll
            if ls > 0:
                smooth = -(logp * w).sum(1); smooth[ign] = 0
                ce = (1 - ls) * nll + (ls / C) * smooth
            counted = ~ign
            denom = w[tt][counted].sum()
        else:
            q = t.astype(np.float64) * (1 - ls) + ls / C
            ce = -(logp * q * w).sum(1)
            counted = np.ones(B, bool); denom = B
        zl = np.where(counted, z * lse ** 2, 0) if z else np.zeros(B)
        if reduction == "none": return ce + zl, lse
        if reduction == "sum": return np.float64(ce.sum() + zl.sum()), lse
        return np.float64(ce.sum() / denom + (zl.sum() / counted.sum() if z else 0)), lse

def run(dev, x, t, w, opts):
    d = tempfile.mkdtemp(dir=WORK)
    np.save(f"{d}/x.npy", x.astype(np.float32)); np.save(f"{d}/t.npy", t)
    args = [BIN, "eval", "cross-entropy", "--input", f"{d}/x.npy", "--target", f"{d}/t.npy", "--device", dev, "--out", f"{d}/o"]
    if w is not None: np.save(f"{d}/w.npy", w.astype(np.float32)); args += ["--weight", f"{d}/w.npy"]
    for k, v in opts.items():
        if v is not None: args += [f"--{k.replace('_', '-')}", str(v)]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return [np.load(f"{d}/o/{n}.npy") for n in ("loss", "grad", "lse")]

def close(got, want, C, what):
    got = np.asarray(got, np.float64); want = np.asarray(want, np.float64)
    tol = EPS * (32 + 4 * np.sqrt(C))
    same_nan = np.array_equal(np.isnan(got), np.isnan(want))
    same_inf = np.array_equal(got[np.isinf(got)], want[np.isinf(got)]) and np.array_equal(np.isinf(got), np.isinf(want))
    f = np.isfinite(want) & np.isfinite(got)
    err = (np.abs(got[f] - want[f]) / (1 + np.abs(want[f]))).max() if f.any() else 0.0
    ok = same_nan and same_inf and err <= tol
    if not ok: print(f"BAD {what}: err {err:.2e} tol {tol:.1e} nan {same_nan} inf {same_inf}\n got {got}\n want {want}")
    return ok

ok, n = True, 0
for case in range(40):
    B, C = rng.integers(1, 12), int(rng.choice([1, 3, 8, 33, 260]))
    x = rng.normal(0, 3, (B, C))
    if case % 4 == 0: x[rng.random((B, C)) < 0.1] = -np.inf
    if case % 10 == 3: x[0, 0] = np.nan
    if case % 10 == 7: x[-1, -1] = np.inf
    probs = case % 3 == 2
    if probs:
        t = rng.random((B, C)) ** 3; t /= t.sum(1, keepdims=True)
    else:
        t = rng.integers(0, C, B).astype(np.int64); t[rng.random(B) < 0.2] = -100
        if case % 7 == 0: t[:] = -100
    w = rng.random(C) * 2 if case % 2 else None
    opts = dict(label_smoothing=[0.0, 0.1, 1.0][case % 3], reduction=["none", "mean", "sum"][case % 3 if case % 5 else 1],
                z_loss=[0.0, 0.01][case % 2], softcap=[None, 4.0][(case // 3) % 2])
    want_loss, want_lse = torch_ce(x.astype(np.float32), t, w, ls=opts["label_smoothing"], reduction=opts["reduction"], z=opts["z_loss"], softcap=opts["softcap"])
    # gradient by central differences of the transcription, on finite rows only
    want_grad = None
    if np.isfinite(x).all():
        h = 1e-6; x64 = x.astype(np.float32).astype(np.float64); want_grad = np.zeros((B, C))
        for i, j in itertools.product(range(B), range(C)):
            xp, xm = x64.copy(), x64.copy(); xp[i, j] += h; xm[i, j] -= h
            fp, _ = torch_ce(xp, t, w, ls=opts["label_smoothing"], reduction=opts["reduction"], z=opts["z_loss"], softcap=opts["softcap"])
            fm, _ = torch_ce(xm, t, w, ls=opts["label_smoothing"], reduction=opts["reduction"], z=opts["z_loss"], softcap=opts["softcap"])
            want_grad[i, j] = (np.sum(fp) - np.sum(fm)) / (2 * h)
    for dev in ("gpu", "cpu", "reference"):
        loss, grad, lse = run(dev, x, t, w, opts)
        what = f"case {case} {dev} [{B},{C}] probs={probs} {opts}"
        ok &= close(loss, want_loss, C, what + " loss") & close(lse, want_lse, C, what + " lse")
        if want_grad is not None:
            scale = np.abs(want_grad).max() + 1
            ok &= close(grad / scale, want_grad / scale, C * 1e3, what + " grad")  # FD truncation ~1e-9
        n += 1
print(f"{n} device runs:", "ALL OK" if ok else "SOME BAD")
raise SystemExit(0 if ok else 1)
