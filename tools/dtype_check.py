"""Checks `smoothmax eval` on every device for f16, bf16 and N-D inputs against PyTorch in
float64 (the oracle sees the exactly widened inputs), on freshly generated cases: softmax,
log-softmax and logsumexp at several temperatures, and cross-entropy with label smoothing,
class weights, ignore_index, z-loss and softcap, with the gradient by torch.autograd; outputs
in f32 and in the input's type. The tolerance is the crate's contract: f32 values within
tol·(unit + |r|), tol = ε·(32 + 4√C), and a half output within that plus one unit in the last
place of its type.

Usage: cargo build --release && python3 -m venv v && v/bin/pip install torch numpy
       SMOOTHMAX_BIN=target/release/smoothmax v/bin/python tools/dtype_check.py
"""
import numpy as np, os, subprocess, tempfile, torch

BIN = os.environ.get("SMOOTHMAX_BIN", "target/release/smoothmax")
WORK = tempfile.mkdtemp(prefix="smoothmax-dtype-")
EPS = float(np.finfo(np.float32).eps)
gen = torch.Generator().manual_seed(1313)
DEVICES = ["cpu", "reference", "gpu"]
MANT = {"f32": 23, "f16": 10, "bf16": 7}
MIN_EXP = {"f32": -126, "f16": -14, "bf16": -126}
MAX = {"f32": float(np.finfo(np.float32).max), "f16": 65504.0, "bf16": 3.3895313892515355e38}


def ulp(dt, r):
    e = np.floor(np.log2(np.maximum(np.abs(r), 1e-300))).clip(MIN_EXP[dt], None)
    return 2.0 ** (e - MANT[dt])


def save(d, name, x, dt):
    """x: torch tensor of dtype dt; bf16 saved as uint16 bit patterns."""
    if dt == "bf16":
        np.save(f"{d}/{name}", x.view(torch.int16).numpy().view(np.uint16))
    elif dt == "f16":
        np.save(f"{d}/{name}", x.numpy())
    else:
        np.save(f"{d}/{name}", x.numpy().astype(np.float32))


def load(path):
    """An output file as (type, float64 values)."""
    a = np.load(path)
    if a.dtype == np.uint16:
        return "bf16", torch.from_numpy(a.view(np.int16)).view(torch.bfloat16).double().numpy()
    if a.dtype == np.float16:
        return "f16", a.astype(np.float64)
    return "f32", a.astype(np.float64)


def close(got_dt, got, want, cols, unit, what):
    want = np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape} vs {want.shape}"
    tol = EPS * (32 + 4 * np.sqrt(cols))
    g, w = got.ravel(), want.ravel()
    special = ~np.isfinite(w)
    assert np.array_equal(np.isnan(g[special]), np.isnan(w[special])), what
    assert np.all((g[special] == w[special]) | np.isnan(w[special])), what
    fin = ~special
    big = np.abs(w) > MAX[got_dt] * (1 + 2.0 ** -(MANT[got_dt] + 1)) * (1 + 4 * tol)
    assert np.all(g[fin & big] == np.sign(w[fin & big]) * np.inf), f"{what}: overflow"
    m = fin & ~big
    err = (np.abs(g[m] - w[m]) - 2.0 ** -126 - ulp(got_dt, w[m])).clip(0) / (unit + np.abs(w[m]))
    worst = err.max(initial=0)
    assert worst <= tol, f"{what}: scaled error {worst:.3e} > {tol:.3e}"
    return worst / tol


def cli(args):
    r = subprocess.run([BIN, "eval", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise AssertionError(f"{' '.join(args)}: {r.stderr}")


def random_input(shape, dt, scale=3.0):
    x = torch.randn(shape, generator=gen, dtype=torch.float64) * scale
    mask = torch.rand(shape, generator=gen) < 0.04
    x[mask] = -float("inf")
    return x.to({"f16": torch.float16, "bf16": torch.bfloat16}[dt])


def row_ops(devices):
    n = worst = 0
    for dt in ["f16", "bf16"]:
        for shape in [(3, 5, 7), (2, 1, 4, 33), (1000,), (4, 64), (2, 3, 250)]:
            for t in [1.0, 0.7, 3.0]:
                x = random_input(shape, dt)
                x64 = x.double()
                d = tempfile.mkdtemp(dir=WORK)
                save(d, "x.npy", x, dt)
                cols = shape[-1]
                want = {
                    "softmax": torch.softmax(x64 / t, -1).numpy(),
                    "log-softmax": torch.log_softmax(x64 / t, -1).numpy(),
                    "logsumexp": (t * torch.logsumexp(x64 / t, -1)).numpy(),
                }
                for dev in devices:
                    for op, w in want.items():
                        for out in ["f32", dt]:
                            o = f"{d}/{dev}-{op}-{out}"
                            args = [op, "--input", f"{d}/x.npy", "--device", dev, "--temperature", str(t),
                                    "--out", o, "--output-dtype", out]
                            if dt == "bf16":
                                args += ["--input-dtype", "bf16"]
                            cli(args)
                            gdt, g = load(f"{o}/output.npy")
                            unit = t if op == "logsumexp" else 1.0
                            worst = max(worst, close(gdt, g, w, cols, unit, f"{dev} {dt} {shape} {op} T={t} out={out}"))
                            n += 1
    return n, worst


def cross_entropy(devices):
    n = worst = 0
    for dt in ["f16", "bf16"]:
        for lead, cols in [((3, 4), 9), ((2, 2, 2), 33), ((6,), 128)]:
            for ls, z, cap, weighted in [(0.0, 0.0, None, False), (0.1, 1e-3, None, True), (0.05, 0.0, 4.0, False)]:
                x = random_input(lead + (cols,), dt, 2.0)
                y = torch.randint(0, cols, lead, generator=gen)
                y[torch.rand(lead, generator=gen) < 0.2] = -100
                w = (torch.rand(cols, generator=gen, dtype=torch.float64) * 2).float() if weighted else None
                x64 = x.double().requires_grad_(True)
                xc = cap * torch.tanh(x64 / cap) if cap else x64
                flat = xc.reshape(-1, cols)
                ce = torch.nn.functional.cross_entropy(
                    flat, y.reshape(-1), weight=None if w is None else w.double(), label_smoothing=ls,
                    ignore_index=-100, reduction="mean")
                lse = torch.logsumexp(flat, -1)
                keep = y.reshape(-1) != -100
                loss = ce + (z * (lse[keep] ** 2).mean() if z else 0.0)
                loss.backward()
                d = tempfile.mkdtemp(dir=WORK)
                save(d, "x.npy", x, dt)
                np.save(f"{d}/y.npy", y.numpy())
                extra = ["--label-smoothing", str(ls), "--z-loss", str(z)]
                if cap:
                    extra += ["--softcap", str(cap)]
                if w is not None:
                    np.save(f"{d}/w.npy", w.numpy())
                    extra += ["--weight", f"{d}/w.npy"]
                denom = float((w.double()[y.reshape(-1)[keep]] if w is not None else keep.double()[keep]).sum())
                unit = 1.0 / denom
                for dev in devices:
                    for out in ["f32", dt]:
                        o = f"{d}/{dev}-{out}"
                        args = ["cross-entropy", "--input", f"{d}/x.npy", "--target", f"{d}/y.npy", "--device", dev,
                                "--out", o, "--output-dtype", out, *extra]
                        if dt == "bf16":
                            args += ["--input-dtype", "bf16"]
                        cli(args)
                        what = f"{dev} {dt} {lead}+{cols} ls={ls} z={z} cap={cap} w={weighted} out={out}"
                        _, lv = load(f"{o}/loss.npy")
                        worst = max(worst, close("f32", lv, loss.detach().numpy(), cols, 1.0, what + " loss"))
                        _, lsev = load(f"{o}/lse.npy")
                        worst = max(worst, close("f32", lsev, lse.detach().reshape(lead).numpy(), cols, 1.0, what + " lse"))
                        gdt, g = load(f"{o}/grad.npy")
                        worst = max(worst, close(gdt, g, x64.grad.numpy(), cols, unit, what + " grad"))
                        n += 1
    return n, worst


if __name__ == "__main__":
    devs = [d for d in DEVICES if d != "gpu" or subprocess.run([BIN, "info"], capture_output=True).returncode == 0]
    a, wa = row_ops(devs)
    b, wb = cross_entropy(devs)
    print(f"{a} row-op and {b} cross-entropy runs on {', '.join(devs)}: all within the contract "
          f"(worst error {max(wa, wb):.2f} of the tolerance)")
