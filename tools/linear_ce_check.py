"""Checks `smoothmax eval linear-cross-entropy` on every device against PyTorch in float64,
independently of the crate: the logits H·Wᵀ + b formed by torch in float64 from the same
(widened) inputs, soft-capping c·tanh(z/c), torch.nn.functional.cross_entropy with the same
weight / ignore_index / label_smoothing / reduction, the z-loss z·lse² per non-ignored row
(reduced like the rows: the mean divides it by the non-ignored count), and the gradients
with respect to H, W and b by torch.autograd.

Cases are drawn fresh from a seed (shapes N, D, V that are multiples of nothing, options,
f32 / f16 / bf16 inputs). Each result must lie within the bound stated in
tests/common/linear.rs, recomputed here: the f32 logits are within
Δ_i = γ_{D+1}·max_j(Σ_k |h_ik w_jk| + |b_j|) of the exact ones; the loss moves by at most
Δ_i·2(w_max + 2|z|(|lse| + Δ)) beyond the crate's tolerance tol(V) = ε(32 + 4√V) on top of
those logits; the gradients of the logits by tol(V)(T + |G|) + 2Δ(2·s·A·p + |G|/c), with T
the magnitudes of each entry's terms and A = w_max + 2|z|(|lse| + 1); the products
add γ_V|G||W| (dH), γ_N|G||H| (dW, db); half outputs one rounding u_out·|r|.

Usage: cargo build --release && python3 tools/linear_ce_check.py [cases]
"""
import numpy as np, subprocess, os, sys, tempfile
import torch

BIN = os.environ.get("SMOOTHMAX_BIN", "target/release/smoothmax")
WORK = tempfile.mkdtemp(prefix="smoothmax-lce-")
EPS = float(np.finfo(np.float32).eps)
U = 2.0 ** -24
rng = np.random.default_rng(int(os.environ.get("SEED", "20261128")))


def gamma(n):
    return n * U / (1 - n * U)


def tol(v):
    return EPS * (32 + 4 * np.sqrt(v))


def bf16_bits(x):
    b = np.asarray(x, np.float32).view(np.uint32).astype(np.uint64)
    r = ((b + 0x7FFF + ((b >> 16) & 1)) >> 16).astype(np.uint16)
    return r


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def oracle(h, w, b, y, o):
    H = torch.tensor(h, dtype=torch.float64, requires_grad=True)
    W = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    B = torch.tensor(b, dtype=torch.float64, requires_grad=True) if b is not None else None
    z = H @ W.T + (B if B is not None else 0)
    zc = o["softcap"] * torch.tanh(z / o["softcap"]) if o["softcap"] else z
    cw = torch.tensor(o["weight"], dtype=torch.float64) if o["weight"] is not None else None
    yt = torch.tensor(y, dtype=torch.int64)
    ce = torch.nn.functional.cross_entropy(zc, yt, weight=cw, ignore_index=o["ignore"],
                                           label_smoothing=o["ls"], reduction=o["reduction"])
    lse = torch.logsumexp(zc, dim=1)
    keep = (yt != o["ignore"]).to(torch.float64)
    zl = o["z"] * lse ** 2 * keep
    if o["reduction"] == "none":
        loss = ce + zl
        total = loss.sum()
    elif o["reduction"] == "sum":
        loss = ce + zl.sum()
        total = loss
    else:
        loss = ce + zl.sum() / keep.sum()
        total = loss
    total.backward()
    with torch.no_grad():
        g = torch.autograd.functional.jacobian(lambda zz: _loss_of(zz, yt, cw, o), zc.detach())
        chi = 1 - torch.tanh(z / o["softcap"]) ** 2 if o["softcap"] else torch.ones_like(z)
        G = g * chi
    return dict(loss=loss.detach().numpy(), lse=lse.detach().numpy(), dh=H.grad.numpy(),
                dw=W.grad.numpy(), db=None if B is None else B.grad.numpy(),
                z=z.detach().numpy(), zc=zc.detach().numpy(), G=G.numpy(), keep=keep.numpy())


def _loss_of(zc, yt, cw, o):
    ce = torch.nn.functional.cross_entropy(zc, yt, weight=cw, ignore_index=o["ignore"],
                                           label_smoothing=o["ls"], reduction=o["reduction"])
    lse = torch.logsumexp(zc, dim=1)
    keep = (yt != o["ignore"]).to(torch.float64)
    zl = o["z"] * lse ** 2 * keep
    if o["reduction"] == "none":
        return (ce + zl).sum()
    if o["reduction"] == "sum":
        return ce + zl.sum()
    return ce + zl.sum() / keep.sum()


def bounds(h, w, b, y, o, r):
    n, d = h.shape
    v = w.shape[0]
    a = np.abs(h.astype(np.float64)) @ np.abs(w.astype(np.float64)).T
    if b is not None:
        a += np.abs(b)
    delta = gamma(d + 1) * a.max(axis=1)
    w_max = float(np.max(o["weight"])) if o["weight"] is not None else 1.0
    zl = abs(o["z"])
    lse = r["lse"]
    keep = r["keep"]
    if o["reduction"] == "mean":
        wsum = (o["weight"][np.where(keep > 0, y, 0)] * keep).sum() if o["weight"] is not None else keep.sum()
        s_ce, s_z = 1.0 / wsum, 1.0 / keep.sum()
        s = max(s_ce, s_z if zl > 0 else 0.0)
    else:
        s_ce = s_z = s = 1.0
    loss_b = tol(v) * (1 + np.abs(r["loss"])) if o["reduction"] == "none" else None
    row_b = tol(v) * (1 + np.abs(lse)) + delta * 2 * (w_max + 2 * zl * (np.abs(lse) + delta))
    if o["reduction"] != "none":
        loss_b = np.array(tol(v) * (1 + abs(float(r["loss"]))) + row_b.sum() * s)
    else:
        loss_b = loss_b + delta * 2 * (w_max + 2 * zl * (np.abs(lse) + delta))
    lse_b = tol(v) * (1 + np.abs(lse)) + delta
    p = np.exp(r["zc"] - lse[:, None])
    G = np.abs(r["G"])
    A = w_max + 2 * zl * (np.abs(lse) + 1)
    chi = G / o["softcap"] if o["softcap"] else 0.0
    # The magnitudes of each gradient entry's terms (0 on ignored rows), T_ij.
    wv = o["weight"].astype(np.float64) if o["weight"] is not None else np.ones(v)
    ls = o["ls"]
    yy = np.where(keep > 0, y, 0)
    onehot = np.zeros((n, v))
    onehot[np.arange(n), yy] = 1.0
    T = s_ce * ((1 - ls) * wv[yy][:, None] * (p + onehot) + ls / v * (wv.sum() * p + wv[None, :])) \
        + s_z * 2 * zl * np.abs(lse)[:, None] * p
    T *= keep[:, None]
    dG = tol(v) * (T + G) + 2 * delta[:, None] * (2 * s * A[:, None] * p + chi)
    ha, wa = np.abs(h.astype(np.float64)), np.abs(w.astype(np.float64))
    return dict(loss=loss_b, lse=lse_b, dh=dG @ wa + gamma(v) * (G @ wa),
                dw=dG.T @ ha + gamma(n) * (G.T @ ha),
                db=dG.sum(axis=0) + gamma(n) * G.sum(axis=0), delta=delta.max())


def close(got, want, bound, out, what):
    """|got - want| <= bound + u·(|want| + bound) + a, with (u, a) = out the rounding to the
    output type (a: half the spacing of f16's subnormals)."""
    u_out, a_out = out if isinstance(out, tuple) else (out, 0.0)
    got, want, bound = np.asarray(got, np.float64), np.asarray(want), np.asarray(bound)
    lim = bound + u_out * (np.abs(want) + bound) + a_out
    err = np.abs(got - want)
    bad = ~(err <= lim)
    if bad.any():
        i = np.argmax(np.where(bad, err / np.maximum(lim, 1e-300), 0))
        raise SystemExit(f"{what}: element {i}: got {got.flat[i]}, want {want.flat[i]}, "
                         f"error {err.flat[i]:.3e} > bound {lim.flat[i]:.3e}")
    r = float(np.max(err / np.maximum(lim, 1e-300))) if err.size else 0.0
    if os.environ.get("VERBOSE") and r > 0.1:
        print(f"  {what}: {r:.3f} of the bound")
    return r


def case(k):
    n = int(rng.choice([1, 2, 7, 33, 129, 200]))
    d = int(rng.choice([1, 3, 16, 64, 65, 200]))
    v = int(rng.choice([1, 2, 7, 100, 1000, 5003]))
    dtype = rng.choice(["f32", "f32", "f16", "bf16"])
    h = rng.normal(0, 1, (n, d)).astype(np.float32)
    w = (rng.normal(0, 1, (v, d)) * 2 / np.sqrt(d)).astype(np.float32)
    b = (rng.normal(0, 0.5, v)).astype(np.float32) if rng.random() < 0.5 else None
    if dtype == "f16":
        h, w = h.astype(np.float16), w.astype(np.float16)
    o = dict(weight=None, ignore=-100, ls=0.0, z=0.0, softcap=None,
             reduction=str(rng.choice(["mean", "sum", "none"])))
    if rng.random() < 0.4:
        o["weight"] = rng.uniform(0.25, 2.0, v).astype(np.float32)
    if rng.random() < 0.4:
        o["ls"] = float(np.float32(rng.choice([0.05, 0.1, 0.3])))
    if rng.random() < 0.3:
        o["z"] = float(np.float32(1e-3))
    if rng.random() < 0.3:
        o["softcap"] = float(np.float32(rng.choice([1.5, 5.0, 30.0])))
    y = rng.integers(0, v, n)
    y[rng.random(n) < 0.15] = -100
    if (y == -100).all():
        y[0] = 0
    return n, d, v, dtype, h, w, b, y, o


def main():
    cases = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    worst = {}
    runs = 0
    for k in range(cases):
        n, d, v, dtype, h, w, b, y, o = case(k)
        dd = tempfile.mkdtemp(dir=WORK)
        if dtype == "bf16":
            hb, wb = bf16_bits(h), bf16_bits(w)
            np.save(f"{dd}/h.npy", hb), np.save(f"{dd}/w.npy", wb)
            h, w = bf16_value(hb), bf16_value(wb)
            extra = ["--input-dtype", "bf16", "--weight-dtype", "bf16"]
            u_out = 2.0 ** -8
        else:
            np.save(f"{dd}/h.npy", h), np.save(f"{dd}/w.npy", w)
            extra = []
            u_out = (2.0 ** -11, 2.0 ** -25) if dtype == "f16" else 0.0
        h32, w32 = h.astype(np.float32), w.astype(np.float32)
        np.save(f"{dd}/y.npy", y)
        args = ["--target", f"{dd}/y.npy", "--weight-matrix", f"{dd}/w.npy",
                "--reduction", o["reduction"], "--label-smoothing", repr(o["ls"]),
                "--z-loss", repr(o["z"])] + extra
        if b is not None:
            np.save(f"{dd}/b.npy", b)
            args += ["--bias", f"{dd}/b.npy"]
        if o["weight"] is not None:
            np.save(f"{dd}/cw.npy", o["weight"])
            args += ["--weight", f"{dd}/cw.npy"]
        if o["softcap"]:
            args += ["--softcap", repr(o["softcap"])]
        r = oracle(h32.astype(np.float64), w32.astype(np.float64), b, y, o)
        bd = bounds(h32, w32, b, y, o, r)
        assert bd["delta"] < 0.1
        for dev in ["gpu", "cpu", "reference"]:
            out = f"{dd}/{dev}"
            p = subprocess.run([BIN, "eval", "linear-cross-entropy", "--input", f"{dd}/h.npy",
                                "--out", out, "--device", dev] + args,
                               capture_output=True, text=True)
            if p.returncode != 0:
                raise SystemExit(f"case {k} on {dev}: {p.stderr}")
            what = f"case {k} [{n},{d}]x[{v},{d}] {dtype} {o['reduction']} on {dev}"
            worst.setdefault(dtype, 0.0)
            worst[dtype] = max(worst[dtype], close(np.load(f"{out}/loss.npy"), r["loss"], bd["loss"], 0, what + ": loss"))
            worst[dtype] = max(worst[dtype], close(np.load(f"{out}/lse.npy"), r["lse"], bd["lse"], 0, what + ": lse"))
            worst[dtype] = max(worst[dtype], close(np.load(f"{out}/grad_hidden.npy"), r["dh"], bd["dh"], u_out, what + ": grad_hidden"))
            worst[dtype] = max(worst[dtype], close(np.load(f"{out}/grad_weight.npy"), r["dw"], bd["dw"], u_out, what + ": grad_weight"))
            if b is not None:
                worst[dtype] = max(worst[dtype], close(np.load(f"{out}/grad_bias.npy"), r["db"], bd["db"], 0, what + ": grad_bias"))
            runs += 1
    ratios = ", ".join(f"{t} inputs {r:.3f}" for t, r in sorted(worst.items()))
    print(f"{runs} runs on gpu, cpu and reference agree with PyTorch float64; the worst "
          f"error as a fraction of its bound: {ratios} (half outputs: their own rounding)")


main()
