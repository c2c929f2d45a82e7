"""Checks `smoothmax eval` on every device at extreme parameter values (temperature, beta, mu,
softcap, z-loss, label smoothing, margin, weights, pos_weight: subnormal to f32::MAX, both signs
where accepted) against PyTorch float64 oracles (values by torch's own functions where they
exist, gradients by torch.autograd), on inputs generated here and never seen by the Rust tests.
Parameters reach the CLI as hexadecimal floats (Python's float.hex()), so they are exact.

Tolerances are the crate's (docs: Accuracy): |a - r| <= tol * (|r| + scale) + 2^-126 with
tol = eps * (32 + 4 sqrt(C)), `scale` the sum of the absolute values of the terms a result is
made of (the same derivations as tests/parameter_sweep*.rs), and 2^-126 the flush floor.

Usage: cargo build --release && pip install torch numpy && python3 tools/extreme_check.py
"""
import os, subprocess, tempfile
import numpy as np
import torch
import torch.nn.functional as F

torch.set_default_dtype(torch.float64)
BIN = os.environ.get("SMOOTHMAX_BIN", "target/release/smoothmax")
WORK = tempfile.mkdtemp(prefix="smoothmax-extreme-")
EPS = float(np.finfo(np.float32).eps)
FLOOR = 2.0 ** -126
F32MAX = float(np.finfo(np.float32).max)
rng = np.random.default_rng(20261128)
POS = [2.0 ** -149, 3e-41, 2.0 ** -126, 4e-31, 2e-6, 0.02, 0.6, 1.0, 7.0, 3e4, 2e9, 5e28, 2e37, F32MAX]
POS = [float(np.float32(v)) for v in POS]
SIGNED = [0.0] + [s * v for v in POS for s in (1, -1)]
DEVICES = ("gpu", "cpu", "reference")
counts = {"runs": 0, "bad": 0}


def tol(terms):
    return EPS * (32 + 4 * np.sqrt(max(terms, 1)))


def inputs(rows, cols, kind):
    x = rng.normal(0, 3, (rows, cols))
    if kind == "neginf":
        x[rng.random((rows, cols)) < 0.2] = -np.inf
        x[:, 0] = rng.normal(0, 3, rows)  # at least one finite value per row
    if kind == "huge":
        x = rng.normal(0, 3e36, (rows, cols))
        x[0, 0], x[-1, -1] = F32MAX, -F32MAX
    if kind == "tiny":
        x = rng.integers(-30, 30, (rows, cols)) * 2.0 ** -149
    return x.astype(np.float32)


def compare(got, want, scale, terms, what, floor=0.0):
    want = np.asarray(want, np.float64)
    scale = np.broadcast_to(np.asarray(scale, np.float64), want.shape).ravel()
    floor = np.broadcast_to(np.asarray(floor, np.float64), want.shape).ravel()
    got, want = np.asarray(got, np.float64).ravel(), want.ravel()
    bad = []
    for i, (a, r, s, fl) in enumerate(zip(got, want, scale, floor)):
        if np.isnan(r) or np.isnan(a):
            if not (np.isnan(r) and np.isnan(a)):
                bad.append((i, a, r))
            continue
        if np.isinf(r):
            if a != r:
                bad.append((i, a, r))
            continue
        bound = tol(terms) * (abs(r) + s) + fl + FLOOR
        if np.isinf(a):
            if not ((abs(r) + bound) * (1 + EPS) >= F32MAX and np.sign(a) == np.sign(r)):
                bad.append((i, a, r))
        elif abs(a - r) > bound:
            bad.append((i, a, r))
    counts["runs"] += 1
    if bad:
        counts["bad"] += 1
        print(f"BAD {what}: {len(bad)} elements, first {bad[0]}")


def run(args, outs):
    d = tempfile.mkdtemp(dir=WORK)
    files = []
    for i, a in enumerate(args):
        if isinstance(a, np.ndarray):
            p = f"{d}/in{i}.npy"
            np.save(p, a)
            files.append(p)
        else:
            files.append(a)
    r = subprocess.run([BIN, "eval"] + files + ["--out", f"{d}/o"], capture_output=True, text=True)
    assert r.returncode == 0, (files, r.stderr)
    return [np.load(f"{d}/o/{n}.npy") for n in outs]


def hexf(v):
    return float(np.float32(v)).hex()


# ---- row ops at every temperature -------------------------------------------------------------
def row_ops():
    for kind in ("normal", "neginf", "huge", "tiny"):
        x = inputs(5, 29, kind)
        x64 = torch.tensor(x.astype(np.float64))
        m = x64.max(1, keepdim=True).values
        for t in POS:
            z = (x64 - m) / t  # differences first: the oracle keeps its accuracy at any T
            lse = m.squeeze(1) + t * torch.logsumexp(z, 1)
            sm, lsm = torch.softmax(z, 1), torch.log_softmax(z, 1)
            for dev in DEVICES:
                for op, want, unit in (("logsumexp", lse, t), ("softmax", sm, 1.0), ("log-softmax", lsm, 1.0)):
                    (got,) = run([op, "--input", x, "--temperature", hexf(t), "--device", dev], ["output"])
                    compare(got, want.numpy(), unit, 29, f"{dev} {op} T={t:e} {kind}")


# ---- cross-entropy at every option value ------------------------------------------------------
def ce_oracle(x, y, w, ls, z, cap, red):
    x64 = torch.tensor(x.astype(np.float64), requires_grad=True)
    xc = cap * torch.tanh(x64 / cap) if cap else x64
    wt = None if w is None else torch.tensor(w.astype(np.float64))
    per = F.cross_entropy(xc, torch.tensor(y), weight=wt, label_smoothing=ls, reduction="none")
    lse = torch.logsumexp(xc, 1)
    per = per + z * lse ** 2
    if red == "none":
        total = per.sum()
        loss = per
    elif red == "sum":
        total = loss = per.sum()
    else:
        loss = total = F.cross_entropy(xc, torch.tensor(y), weight=wt, label_smoothing=ls) + z * (lse ** 2).mean()
    total.backward()
    return loss.detach().numpy(), x64.grad.numpy(), lse.detach().numpy()


def ce_scales(x, y, w, ls, z, cap, red, lse):
    B, C = x.shape
    wv = np.ones(C) if w is None else w.astype(np.float64)
    k = (1 - ls) * wv[y] + ls / C * wv.sum()
    kmax = wv.max()
    d = wv[y].sum() if red == "mean" else 1.0
    nz = B if red == "mean" else 1.0
    cond = 2 * np.abs(cap * np.tanh(x.astype(np.float64) / cap)).max(1) if cap else np.zeros(B)
    loss = k + abs(z) + (k + np.abs(2 * z * lse)) * cond
    grad = ((k + kmax) / d + np.abs(2 * z * lse) / nz) * (1 + cond)
    return loss, np.repeat(grad[:, None], C, 1), 1 + cond


def ce():
    B, C = 4, 23
    x = inputs(B, C, "normal")
    y = rng.integers(0, C, B)
    cases = [dict(ls=ls) for ls in [0.0, 2.0 ** -149, 3e-31, 0.25, 1.0 - 2 ** -24, 1.0]]
    cases += [dict(z=z) for z in SIGNED]
    cases += [dict(cap=c) for c in POS]
    cases += [dict(w=v, ls=0.2) for v in [0.0] + POS]
    for c in cases:
        ls, z, cap = c.get("ls", 0.0), c.get("z", 0.0), c.get("cap")
        w = None
        if "w" in c:
            w = np.where(np.arange(C) % 3 == 0, c["w"], 1.0).astype(np.float32)
            w[y[0]] = 1.0  # keep the mean's denominator positive
        for red in ("none", "mean", "sum"):
            want_loss, want_grad, want_lse = ce_oracle(x, y, w, ls, z, cap, red)
            ls_s, g_s, lse_s = ce_scales(x, y, w, ls, z, cap, red, want_lse)
            if red != "none":
                ls_s = ls_s.sum() / (w[y].sum() if (red == "mean" and w is not None) else (B if red == "mean" else 1))
            for dev in DEVICES:
                args = ["cross-entropy", "--input", x, "--target", y.astype(np.int64), "--device", dev,
                        "--reduction", red, "--label-smoothing", hexf(ls), "--z-loss", hexf(z)]
                if cap:
                    args += ["--softcap", hexf(cap)]
                if w is not None:
                    args += ["--weight", w]
                loss, grad, lse = run(args, ["loss", "grad", "lse"])
                what = f"{dev} ce {c} {red}"
                compare(loss, want_loss, ls_s, C, what + " loss")
                compare(lse, want_lse, lse_s, C, what + " lse")
                compare(grad, want_grad, g_s, C, what + " grad")


# ---- surrogates -------------------------------------------------------------------------------
def boltzmann():
    for kind in ("normal", "huge", "tiny"):
        x = inputs(4, 17, kind)
        for beta in SIGNED:
            s = -1.0 if beta < 0 else 1.0
            xs = torch.tensor(s * x.astype(np.float64), requires_grad=True)
            m = xs.detach().max(1, keepdim=True).values
            k = abs(beta)
            p = torch.softmax((xs - m) * k, 1) if k > 0 else torch.full(xs.shape, 1 / 17)
            f = m.squeeze(1) + (p * (xs - m)).sum(1)
            f.sum().backward()
            want_v, want_g = s * f.detach().numpy(), xs.grad.numpy()
            # p is exact to p (1 + |z|) relative (times tol) and to 2^-126 absolute (flushed).
            pn = p.detach().numpy()
            dist = np.abs(xs.detach().numpy() - m.numpy())
            err = pn * (1 + dist * k)
            shift = (pn * dist).sum(1)
            shift_err, shift_floor = (err * dist).sum(1), (FLOOR * dist).sum(1)
            factor = 1 + k * (dist + (shift + shift_err + shift_floor)[:, None])
            g_scale = err * factor + pn * k * shift_err[:, None]
            g_floor = FLOOR * factor + pn * k * shift_floor[:, None]
            for dev in DEVICES:
                v, g = run(["boltzmann-max", "--input", x, "--beta", hexf(beta), "--device", dev], ["output", "grad"])
                compare(v, want_v, shift + shift_err, 17, f"{dev} boltzmann beta={beta:e} {kind} value", shift_floor)
                compare(g, want_g, g_scale, 17, f"{dev} boltzmann beta={beta:e} {kind} grad", g_floor)


def soft_argmax():
    for kind in ("normal", "tiny"):
        x = inputs(4, 17, kind)
        for t in POS:
            xs = torch.tensor(x.astype(np.float64), requires_grad=True)
            m = xs.detach().max(1, keepdim=True).values
            p = torch.softmax((xs - m) / t, 1)
            j = torch.arange(17.0)
            f = (p * j).sum(1)
            f.sum().backward()
            pn = p.detach().numpy()
            j = np.arange(17.0)
            err = pn * (1 + np.abs((x - m.numpy()) / t))
            fe, ff = (j * err).sum(1), (j * FLOOR).sum()
            gf = j + np.abs(f.detach().numpy())[:, None] + fe[:, None] + ff
            g_scale = (err * gf + pn * fe[:, None]) / t
            g_floor = (FLOOR * gf + pn * ff) / t
            for dev in DEVICES:
                v, g = run(["soft-argmax", "--input", x, "--temperature", hexf(t), "--device", dev], ["output", "grad"])
                compare(v, f.detach().numpy(), fe, 17, f"{dev} soft-argmax T={t:e} {kind} value", ff)
                compare(g, xs.grad.numpy(), g_scale, 17, f"{dev} soft-argmax T={t:e} {kind} grad", g_floor)


def pairwise():
    a, b = inputs(3, 11, "normal"), inputs(3, 11, "huge")
    b[0] = a[0] + rng.normal(0, 1, 11).astype(np.float32)  # a close pair row
    value_scale = np.abs(a.astype(np.float64)) + np.abs(b.astype(np.float64))
    for form, params in (("erf", POS), ("sqrt", POS), ("acon", SIGNED)):
        for k in params:
            at = torch.tensor(a.astype(np.float64), requires_grad=True)
            bt = torch.tensor(b.astype(np.float64), requires_grad=True)
            d = at - bt
            hi = torch.maximum(at, bt)
            if form == "erf":
                f = hi - d.abs() * torch.special.erfc(k * d.abs()) / 2
            elif form == "sqrt":
                r = torch.hypot(d, torch.tensor(k))
                f = hi + k * (k / (r + d.abs())) / 2
            else:
                s = torch.sigmoid(k * d)
                f = s * at + torch.sigmoid(-k * d) * bt
            f.sum().backward()
            flag = "--mu" if form != "acon" else "--beta"
            for dev in DEVICES:
                v, ga, gb = run(["pairwise-max", "--input", a, "--other", b, "--form", form, flag, hexf(k), "--device", dev],
                                ["output", "grad", "grad_b"])
                what = f"{dev} pairwise {form} {k:e}"
                compare(v, f.detach().numpy(), value_scale, 1, what + " value")
                compare(ga, at.grad.numpy(), 1.2, 1, what + " grad")
                compare(gb, bt.grad.numpy(), 1.2, 1, what + " grad_b")


def binary():
    x = inputs(3, 13, "normal")
    y = (rng.random((3, 13)) < 0.5).astype(np.float32)
    soft = rng.random((3, 13)).astype(np.float32)
    for w in SIGNED:
        wv = np.where(np.arange(13) % 2 == 0, w, 1.0).astype(np.float32)
        for pw in [1.0] + POS:
            pv = np.where(np.arange(13) % 3 == 0, pw, 1.0).astype(np.float32)
            xt = torch.tensor(x.astype(np.float64), requires_grad=True)
            l = F.binary_cross_entropy_with_logits(xt, torch.tensor(soft.astype(np.float64)), weight=torch.tensor(wv.astype(np.float64)),
                                                   pos_weight=torch.tensor(pv.astype(np.float64)), reduction="none")
            l.sum().backward()
            s64, p64, w64 = soft.astype(np.float64), pv.astype(np.float64), wv.astype(np.float64)
            lw = (1 - s64) + p64 * s64
            f = np.abs(x.astype(np.float64))
            v_scale = np.abs(w64) * ((1 - s64) * f + lw * (f + 1))
            g_scale = np.abs(w64) * (lw + p64 * s64)
            for dev in DEVICES:
                v, g = run(["binary-cross-entropy", "--input", x, "--target", soft, "--weight", wv, "--pos-weight", pv,
                            "--reduction", "none", "--device", dev], ["loss", "grad"])
                compare(v, l.detach().numpy(), v_scale, 1, f"{dev} bce w={w:e} pw={pw:e} value")
                compare(g, xt.grad.numpy(), g_scale, 1, f"{dev} bce w={w:e} pw={pw:e} grad")
        for loss in ("hinge", "squared-hinge", "exponential", "squared"):
            xt = torch.tensor(x.astype(np.float64), requires_grad=True)
            sy = torch.tensor(np.where(y > 0, 1.0, -1.0))
            u = 1 - sy * xt
            e = {"hinge": torch.clamp(u, min=0), "squared-hinge": torch.clamp(u, min=0) ** 2,
                 "exponential": torch.exp(-sy * xt), "squared": u ** 2}[loss]
            l = torch.tensor(wv.astype(np.float64)) * e
            l.sum().backward()
            fa = np.abs(x.astype(np.float64))
            e64 = np.exp(-(sy.numpy() * x.astype(np.float64)))
            base = e64 * (1 + fa) if loss == "exponential" else (1 + fa) ** 2
            dbase = e64 * (1 + fa) if loss == "exponential" else 2 * (1 + fa)
            for dev in DEVICES:
                v, g = run([loss, "--input", x, "--target", y, "--weight", wv, "--reduction", "none", "--device", dev], ["loss", "grad"])
                w64 = np.abs(wv.astype(np.float64))
                compare(v, l.detach().numpy(), w64 * base, 1, f"{dev} {loss} w={w:e} value")
                compare(g, xt.grad.numpy(), w64 * dbase, 1, f"{dev} {loss} w={w:e} grad")


def multi_margin():
    x = inputs(4, 9, "normal")
    y = rng.integers(0, 9, 4)
    for v in SIGNED:
        wv = np.where(np.arange(9) % 2 == 0, v, 1.0).astype(np.float32)
        for p in (1, 2):
            for margin, w in ((1.0, wv), (v, None)):
                xt = torch.tensor(x.astype(np.float64), requires_grad=True)
                l = F.multi_margin_loss(xt, torch.tensor(y), p=p, margin=margin,
                                        weight=None if w is None else torch.tensor(w.astype(np.float64)), reduction="none")
                l.sum().backward()
                wy = np.ones(4) if w is None else np.abs(w[y].astype(np.float64))
                zabs = np.abs(x - x[np.arange(4), y][:, None]).astype(np.float64) + abs(margin)
                v_scale = wy / 9 * (p * zabs ** p).sum(1)
                g = wy[:, None] / 9 * p * zabs ** (p - 1)
                g[np.arange(4), y] = g.sum(1)
                args = ["multi-margin", "--input", x, "--target", y.astype(np.int64), "--p", str(p), "--margin", hexf(margin),
                        "--reduction", "none"]
                if w is not None:
                    args += ["--weight", w]
                for dev in DEVICES:
                    lv, gv = run(args + ["--device", dev], ["loss", "grad"])
                    compare(lv, l.detach().numpy(), v_scale, 9, f"{dev} multi-margin p={p} margin={margin:e} w={v:e} value")
                    compare(gv, xt.grad.numpy(), g, 9, f"{dev} multi-margin p={p} margin={margin:e} w={v:e} grad")


import sys
for check in (row_ops, ce, boltzmann, soft_argmax, pairwise, binary, multi_margin):
    if len(sys.argv) < 2 or check.__name__ in sys.argv[1:]:
        check()
print(f"{counts['runs']} comparisons, {counts['bad']} bad:", "ALL OK" if counts["bad"] == 0 else "SOME BAD")
raise SystemExit(0 if counts["bad"] == 0 else 1)
