"""Checks every surrogate op of `smoothmax eval` on every device against independent float64
code: NumPy transcriptions of PyTorch where PyTorch has the op (binary_cross_entropy_with_logits
from aten/src/ATen/native/Loss.cpp, MultiMarginLoss from LossMultiMargin.cpp), the formula in
SciPy float64 otherwise, and every gradient by central finite differences of that code, on
freshly generated cases the Rust tests never saw; then N-D bf16 scores ([2, k, C], targets
[2, k], labels [2, k, C]) against the same code on the inputs flattened and rounded to bf16
in PyTorch.

Usage: cargo build --release && pip install numpy scipy torch && python3 tools/surrogate_check.py
"""
import numpy as np, subprocess, os, tempfile
from scipy.special import erf, expit, softmax

BIN = os.environ.get("SMOOTHMAX_BIN", "target/release/smoothmax")
WORK = tempfile.mkdtemp(prefix="smoothmax-sur-")
EPS = np.finfo(np.float32).eps
rng = np.random.default_rng(20261122)

# ---- float64 definitions -------------------------------------------------------------------

def torch_bce(x, y, w=None, pw=None, reduction="mean"):
    # aten: loss = (1 - y) * x - log_weight * log_sigmoid(x), log_weight = (pw - 1) * y + 1
    log_sig = -np.logaddexp(0.0, -x)
    lw = 1.0 if pw is None else (pw - 1.0) * y + 1.0
    loss = (1 - y) * x - lw * log_sig
    if w is not None: loss = loss * w
    return reduce(loss, reduction)

def torch_multi_margin(x, t, p=1, margin=1.0, w=None, reduction="mean"):
    B, C = x.shape
    out = np.zeros(B)
    for i in range(B):
        s = 0.0
        for d in range(C):
            if d == t[i]: continue
            z = margin - x[i, t[i]] + x[i, d]
            if z > 0:
                h = z if p == 1 else z * z
                if w is not None: h *= w[t[i]]
                s += h
        out[i] = s / C
    return reduce(out, reduction)

def reduce(v, reduction):
    if reduction == "none": return v
    return v.sum() if reduction == "sum" else v.mean()

def margin_loss(kind, f, y, w=None, reduction="mean"):
    y = np.where(y > 0, 1.0, -1.0)
    u = 1 - y * f
    l = {"hinge": np.maximum(u, 0), "squared-hinge": np.maximum(u, 0) ** 2,
         "exponential": np.exp(-y * f), "squared": u ** 2}[kind]
    if w is not None: l = l * w
    return reduce(l, reduction)

def boltzmann(x, beta):
    return (softmax(beta * x, axis=1) * x).sum(1)

def soft_argmax(x, t):
    return (softmax(x / t, axis=1) * np.arange(x.shape[1])).sum(1)

def smooth_accuracy(x, y, t):
    return softmax(x / t, axis=1)[np.arange(len(y)), y].mean()

def smooth_f1(x, y):
    p = expit(x)
    return 2 * (p * y).sum() / (p.sum() + y.sum())

def smooth_f1_macro(x, y, t):
    p = softmax(x / t, axis=1)
    onehot = np.eye(x.shape[1])[y]
    tp, pred, cnt = (p * onehot).sum(0), p.sum(0), onehot.sum(0)
    return np.mean(2 * tp / (pred + cnt))

def pairwise(form, a, b, k):
    d = a - b
    if form == "erf": return (a + b + d * erf(k * d)) / 2
    if form == "sqrt": return (a + b + np.sqrt(d * d + k * k)) / 2
    return d * expit(k * d) + b

def fd_grad(f, x, h=1e-6):
    """Central differences of the sum of f's output, element by element."""
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h; xm[idx] -= h
        g[idx] = (np.sum(f(xp)) - np.sum(f(xm))) / (2 * h)
    return g

# ---- running the binary --------------------------------------------------------------------

def bf16_bits(a):
    """float32 values (already bf16-representable) as their bf16 bit patterns."""
    return (np.asarray(a, np.float32).view(np.uint32) >> 16).astype(np.uint16)

def to_bf16(a):
    """Rounds to bf16 (nearest-even) in PyTorch, back as float64."""
    import torch
    return torch.tensor(np.asarray(a, np.float32)).to(torch.bfloat16).to(torch.float64).numpy()

def run(op, dev, x, extra, files, bf16=False):
    d = tempfile.mkdtemp(dir=WORK)
    np.save(f"{d}/x.npy", bf16_bits(x) if bf16 else x.astype(np.float32))
    args = [BIN, "eval", op, "--input", f"{d}/x.npy", "--device", dev, "--out", f"{d}/o"]
    if bf16: args += ["--input-dtype", "bf16"]
    for flag, arr in files.items():
        if bf16 and flag == "other": arr = bf16_bits(arr)
        np.save(f"{d}/{flag}.npy", arr); args += [f"--{flag}", f"{d}/{flag}.npy"]
    args += [str(a) for a in extra]
    r = subprocess.run(args, capture_output=True, text=True)
    assert r.returncode == 0, (op, dev, r.stderr)
    name = "loss" if os.path.exists(f"{d}/o/loss.npy") else "output"
    out = [np.load(f"{d}/o/{name}.npy"), np.load(f"{d}/o/grad.npy")]
    if os.path.exists(f"{d}/o/grad_b.npy"): out.append(np.load(f"{d}/o/grad_b.npy"))
    return out

def close(got, want, terms, what, scale=0.0):
    got = np.asarray(got, np.float64); want = np.asarray(want, np.float64)
    tol = EPS * (32 + 4 * np.sqrt(terms))
    err = (np.abs(got - want) / (1 + np.abs(want) + scale)).max() if want.size else 0.0
    ok = got.shape == want.shape and err <= tol
    if not ok: print(f"BAD {what}: scaled error {err:.2e} > tol {tol:.1e}")
    return ok

# ---- cases ---------------------------------------------------------------------------------

ok, n = True, 0
devices = ["reference", "cpu", "gpu"]
for case in range(12):
    B, C = int(rng.integers(1, 9)), int(rng.choice([2, 5, 17, 64]))
    x = rng.normal(0, 2, (B, C)).astype(np.float32).astype(np.float64)
    t = rng.integers(0, C, B)
    temp, beta, mu = float(rng.uniform(0.3, 3)), float(rng.uniform(-3, 3)), float(rng.uniform(0.2, 3))
    b = rng.normal(0, 2, (B, C)).astype(np.float32).astype(np.float64)
    soft = rng.uniform(0, 1, (B, C)).astype(np.float32).astype(np.float64)
    hard = (rng.uniform(0, 1, (B, C)) < 0.4).astype(np.float64)
    w = rng.uniform(0.2, 2, C).astype(np.float32).astype(np.float64)
    pw = rng.uniform(0, 3, C).astype(np.float32).astype(np.float64)
    red = str(rng.choice(["none", "mean", "sum"]))
    p, margin = int(rng.choice([1, 2])), float(np.float32(rng.uniform(0.2, 1.5)))
    # Keep hinge-type inputs off their kinks so finite differences are meaningful.
    xk = np.where(np.abs(np.abs(x) - 1) < 1e-3, x + 0.01, x)
    cases = [
        ("boltzmann-max", x, ["--beta", beta], {}, lambda x: boltzmann(x, beta), None, C),
        ("soft-argmax", x, ["--temperature", temp], {}, lambda x: soft_argmax(x, temp), None, C),
        ("smooth-accuracy", x, ["--temperature", temp], {"target": t}, lambda x: smooth_accuracy(x, t, temp), None, B * C),
        ("smooth-f1-macro", x, ["--temperature", temp], {"target": t}, lambda x: smooth_f1_macro(x, t, temp), None, B * C),
        ("smooth-f1", x, [], {"target": hard.astype(np.float32)}, lambda x: smooth_f1(x, hard), None, B * C),
        ("binary-cross-entropy", x, ["--reduction", red], {"target": soft.astype(np.float32), "weight": w.astype(np.float32), "pos-weight": pw.astype(np.float32)},
         lambda x: torch_bce(x, soft, w, pw, red), None, B * C),
        ("multi-margin", xk, ["--reduction", red, "--p", p, "--margin", margin], {"target": t, "weight": w.astype(np.float32)},
         lambda x: torch_multi_margin(x, t, p, margin, w, red), None, B * C),
    ]
    for kind in ["hinge", "squared-hinge", "exponential", "squared"]:
        cases.append((kind, xk, ["--reduction", red], {"target": hard.astype(np.float32)},
                      lambda x, kind=kind: margin_loss(kind, x, hard, None, red), None, B * C))
    for form, k in [("erf", mu), ("sqrt", mu), ("acon", beta)]:
        flag = "--beta" if form == "acon" else "--mu"
        cases.append(("pairwise-max", x, ["--form", form, flag, k], {"other": b.astype(np.float32)},
                      lambda x, form=form, k=k: pairwise(form, x, b, k),
                      lambda bb, form=form, k=k: pairwise(form, x, bb, k), 1))
    for op, xin, extra, files, f, fb, terms in cases:
        want_v = np.asarray(f(xin)); want_g = fd_grad(f, xin)
        # For f = Σ g p (soft-argmax, Boltzmann) the f32 error of g_j − f scales with |g| + |f|.
        scale = 0.0
        if op in ("soft-argmax", "boltzmann-max"):
            kap = 1 / temp if op == "soft-argmax" else abs(beta)
            pp = softmax((1 / temp if op == "soft-argmax" else beta) * xin, axis=1)
            g = np.broadcast_to(np.arange(C), xin.shape) if op == "soft-argmax" else np.abs(xin) + np.abs(xin).max()
            scale = pp * kap * (np.abs(g) + np.abs(want_v)[:, None])
        for dev in devices:
            got = run(op, dev, xin, extra, files)
            n += 1
            what = f"case {case} {op} {extra} on {dev} [{B}x{C}]"
            ok &= close(got[0], want_v, terms, what + " value")
            ok &= close(got[1], want_g, C, what + " grad", scale)
            if fb is not None:
                ok &= close(got[2], fd_grad(fb, b), 1, what + " grad_b")

# ---- N-D scores, in bf16: [2, k, C] scores, [2, k] targets, [2, k, C] labels ---------------
# The float64 code runs on the inputs flattened to [2k, C] (rounded to bf16 first); the binary
# must give the same numbers in the N-D shapes.
for case in range(4):
    k, C = int(rng.integers(1, 5)), int(rng.choice([3, 17, 40]))
    B = 2 * k
    x = to_bf16(rng.normal(0, 2, (B, C)))
    b = to_bf16(rng.normal(0, 2, (B, C)))
    t = rng.integers(0, C, B)
    soft = rng.uniform(0, 1, (B, C)).astype(np.float32).astype(np.float64)
    w = rng.uniform(0.2, 2, C).astype(np.float32).astype(np.float64)
    temp = float(rng.uniform(0.5, 2))
    nd = lambda a: a.reshape((2, k) + a.shape[1:])
    cases = [
        ("soft-argmax", ["--temperature", temp], {}, lambda x: soft_argmax(x, temp), None, C, (2, k)),
        ("smooth-accuracy", ["--temperature", temp], {"target": nd(t)}, lambda x: smooth_accuracy(x, t, temp), None, B * C, ()),
        ("binary-cross-entropy", ["--reduction", "none"], {"target": nd(soft).astype(np.float32), "weight": w.astype(np.float32)},
         lambda x: torch_bce(x, soft, w, None, "none"), None, C, (2, k, C)),
        ("multi-margin", ["--reduction", "none"], {"target": nd(t)}, lambda x: torch_multi_margin(x, t, reduction="none"), None, C, (2, k)),
        ("pairwise-max", ["--form", "sqrt", "--mu", 0.7], {"other": nd(b)}, lambda x: pairwise("sqrt", x, b, 0.7),
         lambda bb: pairwise("sqrt", x, bb, 0.7), 1, (2, k, C)),
    ]
    for op, extra, files, f, fb, terms, vshape in cases:
        want_v = np.asarray(f(x)); want_g = fd_grad(f, x)
        scale = 0.0
        if op == "soft-argmax":
            pp = softmax(x / temp, axis=1)
            scale = pp / temp * (np.arange(C) + np.abs(want_v)[:, None])
        for dev in devices:
            got = run(op, dev, nd(x), extra, files, bf16=True)
            n += 1
            what = f"N-D case {case} {op} on {dev} [2, {k}, {C}] bf16"
            shapes_ok = got[0].shape == vshape and got[1].shape == (2, k, C)
            if not shapes_ok: print(f"BAD {what}: shapes {got[0].shape}, {got[1].shape}")
            ok &= shapes_ok
            ok &= close(got[0].reshape(want_v.shape), want_v, terms, what + " value")
            ok &= close(got[1].reshape(B, C), want_g, C, what + " grad", scale)
            if fb is not None:
                ok &= close(got[2].reshape(B, C), fd_grad(fb, b), 1, what + " grad_b")
print(f"{n} device runs, each value and gradient against float64 (+ finite differences): {'all pass' if ok else 'FAILURES'}")
raise SystemExit(0 if ok else 1)
