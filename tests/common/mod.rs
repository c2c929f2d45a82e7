//! Shared test support: the GPU (or a loud skip), the one tolerance, the comparator, data.
#![allow(dead_code)]

pub mod app;
pub mod ce;
#[cfg(feature = "cli")]
pub mod cli;
pub mod linear;
pub mod surrogates;
pub mod sweep;
pub mod typed;

use ndarray::{Array2, ArrayView1, ArrayView2};
use smoothmax::{Backend, Cpu, Gpu, Reference};
use std::sync::OnceLock;

/// The GPU, opened once per test binary. With no adapter: `None` and a loud line on stderr,
/// or a panic when `SMOOTHMAX_REQUIRE_GPU=1` (CI sets it, so GPU tests cannot silently skip).
pub fn gpu() -> Option<&'static Gpu> {
    static GPU: OnceLock<Option<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| match Gpu::new() {
        Ok(g) => {
            // Prove the kernel layout CI asks for (SMOOTHMAX_GPU_POLICY) is the one that runs.
            if let Ok(want) = std::env::var("SMOOTHMAX_GPU_POLICY") {
                assert_eq!(g.kernel_layout(), want, "SMOOTHMAX_GPU_POLICY");
            }
            eprintln!("gpu kernel layout under test: {}", g.kernel_layout());
            Some(g)
        }
        Err(e) => {
            if std::env::var("SMOOTHMAX_REQUIRE_GPU").as_deref() == Ok("1") {
                panic!("SMOOTHMAX_REQUIRE_GPU=1 but no GPU: {e}");
            }
            eprintln!("\n*** SKIPPING GPU TESTS: {e} ***\n");
            None
        }
    })
    .as_ref()
}

/// The CPU backend the suites run: the build `SMOOTHMAX_CPU_ISA` asks for (CI reruns the
/// comparison suites under each build the processor has), else the widest. Asserts that the
/// requested build is the one that runs, so a rerun cannot silently test another build.
pub fn cpu() -> &'static Cpu {
    static CPU: OnceLock<Cpu> = OnceLock::new();
    CPU.get_or_init(|| {
        let c = Cpu::new();
        let isa = c.isa().expect("the CPU build SMOOTHMAX_CPU_ISA asks for");
        match std::env::var("SMOOTHMAX_CPU_ISA") {
            Ok(want) => assert_eq!(isa.name(), want, "SMOOTHMAX_CPU_ISA"),
            Err(_) => assert_eq!(Some(&isa), smoothmax::CpuIsa::supported().first()),
        }
        eprintln!("cpu build under test: {isa}");
        c
    })
}

/// The fast backends under test: always the CPU, plus the GPU when there is one.
/// Each as `&&dyn Backend`: a reference to a backend is a sized backend, so the typed
/// methods (`softmax`, `cross_entropy`, ...) can be called on it.
pub fn fast_backends() -> Vec<&'static &'static dyn Backend> {
    let mut v = vec![sized(cpu())];
    if let Some(g) = gpu() {
        v.push(sized(g));
    }
    v
}

/// `b` as `&&dyn Backend` (see `fast_backends`).
pub fn sized(b: &'static dyn Backend) -> &'static &'static dyn Backend {
    Box::leak(Box::new(b))
}

/// Cases per property test: `default`, or `PROPTEST_CASES` when set, to explore further
/// (`PROPTEST_CASES=2000 cargo test --release --test rows_vs_reference`). CI pins
/// `PROPTEST_RNG_SEED` in .ci/run so that its runs repeat; a failure found by exploring is
/// saved under tests/proptest-regressions and replayed first by every later run.
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The tolerance, stated once (derivation in the crate docs, "Accuracy"): for a row of
/// length `C`, `|a − r| ≤ tol · (1 + |r|)` with `tol = ε·(32 + 4·√C)`.
pub fn tol(cols: usize) -> f64 {
    f32::EPSILON as f64 * (32.0 + 4.0 * (cols as f64).sqrt())
}

/// The smallest normal f32, 2⁻¹²⁶: results are exact to it in absolute terms whatever their
/// relative accuracy, since subnormal values may be flushed to zero (Vulkan allows it for f32
/// and lavapipe does; the CPU's vectorized `exp` flushes results below it too).
pub const FLUSH_FLOOR: f64 = 1.175_494_350_822_287_5e-38;

/// Compares an f32 result with the f64 reference element by element: NaN must meet NaN,
/// ±inf the same infinity, and finite values agree within [`tol`]. Reports the worst element.
pub fn assert_close_1d(got: ArrayView1<f32>, want: ArrayView1<f64>, cols: usize, what: &str) {
    assert_close_1d_unit(got, want, cols, 1.0, what)
}

/// A logsumexp at temperature `t`: `lse_T(x) = T·lse(x/T)` is `T` times a value computed at
/// unit scale, so its errors scale with `T`: `|a − r| ≤ tol·(T + |r|)` (crate docs, "Accuracy").
pub fn assert_lse_close(
    got: ArrayView1<f32>,
    want: ArrayView1<f64>,
    cols: usize,
    t: f32,
    what: &str,
) {
    assert_close_1d_unit(got, want, cols, t as f64, what)
}

/// [`assert_close_1d`] with `|a − r| ≤ tol·(unit + |r|)`.
pub fn assert_close_1d_unit(
    got: ArrayView1<f32>,
    want: ArrayView1<f64>,
    cols: usize,
    unit: f64,
    what: &str,
) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let t = tol(cols);
    let mut worst: Option<(usize, f64, f32, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want.iter()).enumerate() {
        let g64 = g as f64;
        if w.is_nan() || g.is_nan() || w.is_infinite() || g.is_infinite() {
            let same = (w.is_nan() && g.is_nan()) || (w.is_infinite() && g64 == w);
            // An f64 value beyond f32 range legitimately rounds to an f32 infinity.
            let overflow = w.is_finite() && (w as f32).is_infinite() && g64 == (w as f32) as f64;
            assert!(same || overflow, "{what}: element {i}: got {g}, want {w}");
            continue;
        }
        // Less the flush floor: near 0 no backend promises more than that.
        let err = ((g64 - w).abs() - FLUSH_FLOOR).max(0.0) / (unit + w.abs());
        if worst.is_none_or(|(_, e, _, _)| err > e) {
            worst = Some((i, err, g, w));
        }
    }
    if let Some((i, err, g, w)) = worst {
        assert!(
            err <= t,
            "{what}: element {i}: got {g}, want {w}: scaled error {err:e} > tol {t:e}"
        );
    }
}

/// [`assert_close_1d`] over a matrix.
pub fn assert_close_2d(got: ArrayView2<f32>, want: ArrayView2<f64>, what: &str) {
    assert_eq!(got.dim(), want.dim(), "{what}: shape");
    let cols = got.ncols();
    let g = got.as_standard_layout();
    let w = want.as_standard_layout();
    assert_close_1d(
        ArrayView1::from(g.as_slice().unwrap()),
        ArrayView1::from(w.as_slice().unwrap()),
        cols,
        what,
    );
}

/// One backend's logsumexp, softmax and log-softmax of `x` at temperature `t` against the
/// f64 reference.
pub fn check_row_ops(b: &dyn Backend, x: ArrayView2<f32>, t: f32, what: &str) {
    assert_lse_close(
        (&b).logsumexp(x, t).unwrap().view(),
        Reference.logsumexp_f64(x, t).unwrap().view(),
        x.ncols(),
        t,
        &format!("{what} logsumexp"),
    );
    assert_close_2d(
        (&b).softmax(x, t).unwrap().view(),
        Reference.softmax_f64(x, t, false).unwrap().view(),
        &format!("{what} softmax"),
    );
    assert_close_2d(
        (&b).log_softmax(x, t).unwrap().view(),
        Reference.softmax_f64(x, t, true).unwrap().view(),
        &format!("{what} log_softmax"),
    );
}

/// SplitMix64: a tiny deterministic generator for large test inputs.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal (sum of four uniforms, centred and scaled to unit variance).
    pub fn normal(&mut self) -> f64 {
        ((0..4).map(|_| self.unit()).sum::<f64>() - 2.0) * 3f64.sqrt()
    }
}

/// A `[rows, cols]` matrix of logits: normal values times `scale` plus `shift`, and, when
/// `spiky`, one large spike per row and a sprinkle of −inf (never a whole row).
pub fn logits(
    rows: usize,
    cols: usize,
    scale: f64,
    shift: f64,
    spiky: bool,
    seed: u64,
) -> Array2<f32> {
    let mut rng = Rng(seed);
    let mut a = Array2::from_shape_fn((rows, cols), |_| (rng.normal() * scale + shift) as f32);
    if spiky && cols > 1 {
        for mut row in a.rows_mut() {
            let spike = (rng.next_u64() % cols as u64) as usize;
            row[spike] += (20.0 * scale.max(1.0)) as f32;
            for (j, v) in row.iter_mut().enumerate() {
                if j != spike && rng.unit() < 0.05 {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
    }
    a
}

use smoothmax::{CrossEntropyOutput, Loss, ReferenceCrossEntropy};

/// Compares a cross-entropy result with the f64 reference: loss (per row or reduced), lse, and
/// the gradient divided by `grad_unit` (the mean's 1/D, so the comparison is at unit scale).
pub fn assert_ce_close(
    got: &CrossEntropyOutput,
    want: &ReferenceCrossEntropy,
    cols: usize,
    grad_unit: f64,
    what: &str,
) {
    match &got.loss {
        Loss::PerRow(v) => assert_close_1d(
            v.view(),
            want.per_row.view(),
            cols,
            &format!("{what}: loss"),
        ),
        Loss::Scalar(v) => {
            let a = ndarray::arr1(&[*v]);
            let b = ndarray::arr1(&[want.reduced]);
            assert_close_1d(a.view(), b.view(), cols, &format!("{what}: reduced loss"));
        }
    }
    assert_close_1d(
        got.lse.view(),
        want.lse.view(),
        cols,
        &format!("{what}: lse"),
    );
    assert_sums_close(&got.sums, &want.sums, want.per_row.view(), cols, what);
    match (&got.grad, &want.grad) {
        (Some(g), Some(w)) => {
            let g = g.mapv(|v| (v as f64 / grad_unit) as f32);
            let w = w.mapv(|v| v / grad_unit);
            assert_close_2d(g.view(), w.view(), &format!("{what}: grad"));
        }
        (None, None) => {}
        _ => panic!("{what}: gradient presence differs"),
    }
}

/// A result's [`LossSums`] against the reference's: the denominators exactly (both come from
/// the targets on the host), the total `loss + z_loss` within the sum of the rows' own
/// tolerances, `tol·Σ_i (1 + |l_i|)` for reference row losses `l_i` (z-loss included).
pub fn assert_sums_close(
    got: &smoothmax::LossSums,
    want: &smoothmax::LossSums,
    rows: ArrayView1<f64>,
    cols: usize,
    what: &str,
) {
    assert_eq!(got.weight, want.weight, "{what}: sums' weight");
    assert_eq!(got.z_rows, want.z_rows, "{what}: sums' z rows");
    let (g, w) = (got.sum(), want.sum());
    if !w.is_finite() || !g.is_finite() {
        assert!(
            (g.is_nan() && w.is_nan()) || g == w,
            "{what}: sums' total {g}, want {w}"
        );
        return;
    }
    let bound = tol(cols) * rows.iter().map(|l| 1.0 + l.abs()).sum::<f64>();
    assert!(
        (g - w).abs() <= bound,
        "{what}: sums' total {g}, want {w} (bound {bound:e})"
    );
}

/// `x` on the device inside a wider buffer: rows `stride` apart, starting `pad` elements in.
pub fn strided(g: &Gpu, x: &Array2<f32>, stride: usize, pad: usize) -> smoothmax::GpuMatrix {
    let (rows, cols) = x.dim();
    let mut wide = Array2::from_elem((rows + 1, stride), f32::NAN);
    for r in 0..rows {
        let at = pad + r * stride;
        let (wr, wc) = (at / stride, at % stride);
        for c in 0..cols {
            let i = wr * stride + wc + c;
            wide[[i / stride, i % stride]] = x[[r, c]];
        }
    }
    let m = g.upload(wide.view()).unwrap();
    smoothmax::GpuMatrix::from_buffer(m.buffer().clone(), (pad * 4) as u64, rows, cols, stride)
        .unwrap()
}

/// A GPU on the default adapter whose storage bindings hold 64 KiB: every input of more than
/// 16384 floats runs in several chunks.
pub fn small_binding_gpu() -> Option<Gpu> {
    gpu()?;
    let instance = smoothmax::wgpu::Instance::new(
        smoothmax::wgpu::InstanceDescriptor::new_without_display_handle_from_env(),
    );
    let adapter = pollster::block_on(
        instance.request_adapter(&smoothmax::wgpu::RequestAdapterOptions::default()),
    )
    .ok()?;
    let mut limits = adapter.limits();
    limits.max_storage_buffer_binding_size = 1 << 16;
    let (device, queue) =
        pollster::block_on(adapter.request_device(&smoothmax::wgpu::DeviceDescriptor {
            required_limits: limits,
            ..Default::default()
        }))
        .ok()?;
    Gpu::from_device(device, queue, None).ok()
}
