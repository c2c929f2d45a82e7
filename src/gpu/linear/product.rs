//! Recording the matrix products of the fused linear cross-entropy (shaders/matmul.wgsl):
//! `C = A·B (+ bias) (+ C)` with each operand at any strides in any buffer, cut into pieces
//! along `M` (rows of `A` and `C`) and `K` (accumulated) until every piece's operands fit one
//! storage binding, and the column sums of the bias gradient.

use crate::element::DType;
use crate::error::{Error, Result};
use crate::gpu::context::Context;
use crate::gpu::encode::{binding, record_pass, Params, Slice};
use crate::gpu::kernel::uniforms::{MParams, MM_ACC, MM_BIAS};
use crate::gpu::kernel::{Entry, Family, Kernel, Slot, Spec};
use crate::gpu::pool::PooledBuffer;
use crate::gpu::split::Policy;
use wgpu::BufferUsages as U;

/// A workgroup's output tile, `(rows, columns)`, and its entry point, per adapter class (see
/// shaders/matmul.wgsl): 64 × 64 staged through shared memory on a GPU; `CR` × 256 with no
/// barrier on a CPU adapter, and there with vec4 loads where the operands' layouts allow them
/// ([`vec4_entry`]).
fn layout(ctx: &Context, p: &Product) -> (usize, usize, Entry) {
    match (ctx.policy(), vec4_entry(p)) {
        (Policy::Gpu, _) => (64, 64, Entry::Matmul),
        (Policy::Cpu, None) => (8, 256, Entry::MatmulLanes),
        (Policy::Cpu, Some(e)) => (8, 256, e),
    }
}

/// The CPU-adapter kernel with vec4 loads that fits `p`'s layout, if one does: both operands
/// along `K` (`matmul_dot`: the logits), `A` along `K` and `B` along `N` (`matmul_nn`: dH),
/// `A` along `M` and `B` along `N` (`matmul_tn`: dW). Every start and every stride across
/// the vec4 direction must be a multiple of 4 (and `K`, where vec4 run along it).
fn vec4_entry(p: &Product) -> Option<Entry> {
    let (a, b, k) = (&p.a, &p.b, p.mnk.2 as u64);
    let (m, n, kk) = p.mnk;
    if !a.fits_vec4(m, kk) || !b.fits_vec4(kk, n) {
        return None;
    }
    let aligned = |v: &[u64]| v.iter().all(|x| x % 4 == 0);
    if a.cs == 1 && b.rs == 1 && aligned(&[a.start, a.rs, b.start, b.cs, k]) {
        Some(Entry::MatmulDot)
    } else if a.cs == 1 && b.cs == 1 && aligned(&[a.start, a.rs, b.start, b.rs, k]) {
        Some(Entry::MatmulNn)
    } else if a.rs == 1 && b.cs == 1 && aligned(&[a.start, a.cs, b.start, b.rs]) {
        Some(Entry::MatmulTn)
    } else {
        None
    }
}
/// `K` per staged step (`TK`): pieces along `K` are multiples of it.
const STEP: usize = 16;

/// The most `k` one dispatch runs (a multiple of [`STEP`]); longer products accumulate over
/// several. lavapipe ends any shader loop after 65535 iterations (gallivm's loop limiter:
/// measured, a `[2, 128256]·[128256, 3]` product lost every term past the 65535th), and the
/// CPU-adapter kernels loop once per `k` (`matmul_lanes`, `matmul_tn`) or per 4.
const MAX_K: usize = 16384;

/// A matrix in a buffer: element `(r, c)` is element `start + r·rs + c·cs` of `buffer`, in
/// `dtype`.
#[derive(Copy, Clone, Debug)]
pub(crate) struct Operand<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub start: u64,
    pub rs: u64,
    pub cs: u64,
    pub dtype: DType,
}

impl<'a> Operand<'a> {
    /// The same matrix transposed.
    pub fn t(self) -> Self {
        Operand {
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Elements from `(r, c)` on through `rows × cols` more: its first element and the span
    /// in elements (the strides are non-negative, so `(r, c)` is the lowest).
    fn span(&self, r: usize, c: usize, rows: usize, cols: usize) -> (u64, u64) {
        let first = self.start + r as u64 * self.rs + c as u64 * self.cs;
        let last = (rows.max(1) - 1) as u64 * self.rs + (cols.max(1) - 1) as u64 * self.cs;
        (first, last + 1)
    }

    fn bytes(&self, rows: usize, cols: usize) -> u64 {
        self.span(0, 0, rows, cols).1 * self.dtype.size() as u64
    }

    /// Whether the whole `rows × cols` operand, its span rounded up to whole groups of 4
    /// elements, lies in its buffer (what a vec4 binding of it reads).
    fn fits_vec4(&self, rows: usize, cols: usize) -> bool {
        let (first, n) = self.span(0, 0, rows, cols);
        (first + n.next_multiple_of(4)) * self.dtype.size() as u64 <= self.buffer.size()
    }

    /// The binding of the block `rows × cols` from `(r, c)` (its span rounded up to whole
    /// groups of 4 elements for a vec4 binding, whose last partial group would otherwise be
    /// out of bounds), and its first element's index in the binding.
    fn slice(
        &self,
        ctx: &Context,
        (r, c): (usize, usize),
        (rows, cols): (usize, usize),
        vec4: bool,
    ) -> Slice<'a> {
        let (first, n) = self.span(r, c, rows, cols);
        let n = if vec4 { n.next_multiple_of(4) } else { n };
        let elem = self.dtype.size() as u64;
        let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
        Slice::new(self.buffer, first * elem, n * elem, align, elem as usize)
    }
}

/// `C[M, N] = A[M, K]·B[K, N]`, plus `C` when `accumulate`, plus `bias[col]` (f32) when given.
pub(crate) struct Product<'a> {
    pub a: Operand<'a>,
    pub b: Operand<'a>,
    /// f32.
    pub c: Operand<'a>,
    pub mnk: (usize, usize, usize),
    pub accumulate: bool,
    pub bias: Option<Operand<'a>>,
}

/// Halves `v` (rounded up to a multiple of `unit`); `None` when it cannot shrink.
fn halve(v: usize, unit: usize) -> Option<usize> {
    (v > unit).then(|| v.div_ceil(2).next_multiple_of(unit))
}

/// Records `p`. Returns the buffers the passes use (alive until the submission completes).
pub(crate) fn record_product(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    p: &Product,
) -> Result<Vec<PooledBuffer>> {
    let (m, n, k) = p.mnk;
    if m == 0 || n == 0 {
        return Ok(Vec::new());
    }
    // A binding also covers its start's misalignment (under one offset alignment) and a
    // vec4 binding up to 3 elements of rounding: each piece is sized against what is left.
    let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
    let cap = ctx.max_binding().saturating_sub(align + 16);
    let (tile_m, tile_n, entry) = layout(ctx, p);
    let vec4 = matches!(entry, Entry::MatmulDot | Entry::MatmulNn | Entry::MatmulTn);
    let (mut mc, mut kc) = (m, k.clamp(1, MAX_K));
    loop {
        let (a, c) = (p.a.bytes(mc, kc), p.c.bytes(mc, n));
        if (a > cap || c > cap) && halve(mc, tile_m).is_some() {
            mc = halve(mc, tile_m).unwrap_or(mc);
        } else if (a > cap || p.b.bytes(kc, n) > cap) && halve(kc, STEP).is_some() {
            // (Multiples of STEP keep every piece's K a multiple of 4 for `dot`.)
            kc = halve(kc, STEP).unwrap_or(kc);
        } else if a > cap || c > cap || p.b.bytes(kc, n) > cap {
            return Err(Error::ShapeTooLarge {
                rows: m,
                cols: n,
                what: "matrix product operand binding",
                limit: cap,
            });
        } else {
            break;
        }
    }
    let mut keep = Vec::new();
    for m0 in (0..m).step_by(mc) {
        let rows = mc.min(m - m0);
        // K = 0 still writes C once: the bias alone, or 0.
        let k_steps: Vec<usize> = if k == 0 {
            vec![0]
        } else {
            (0..k).step_by(kc).collect()
        };
        for (step, &k0) in k_steps.iter().enumerate() {
            let depth = kc.min(k - k0);
            let sa = p.a.slice(ctx, (m0, k0), (rows, depth), vec4);
            let sb = p.b.slice(ctx, (k0, 0), (depth, n), vec4);
            let sc = p.c.slice(ctx, (m0, 0), (rows, n), false);
            let first = step == 0;
            let tiles_n = n.div_ceil(tile_n);
            let mut flags = 0;
            if p.accumulate || !first {
                flags |= MM_ACC;
            }
            let bias = p.bias.filter(|_| first);
            let sbias = bias.map(|b| b.slice(ctx, (0, 0), (1, n), false));
            if sbias.is_some() {
                flags |= MM_BIAS;
            }
            let mp = MParams {
                m: rows as u32,
                n: n as u32,
                k: depth as u32,
                a_base: sa.base,
                a_rs: p.a.rs as u32,
                a_cs: p.a.cs as u32,
                b_base: sb.base,
                b_rs: p.b.rs as u32,
                b_cs: p.b.cs as u32,
                c_base: sc.base,
                c_rs: p.c.rs as u32,
                flags,
                tiles_n: tiles_n as u32,
                bias_base: sbias.map_or(0, |s| s.base),
                _pad0: 0,
                _pad1: 0,
            };
            let ubuf = ctx.upload_small(U::UNIFORM, bytemuck::bytes_of(&mp))?;
            let mut bindings = vec![
                (Slot::X, sa.binding()),
                (Slot::BIn, sb.binding()),
                (Slot::Y, sc.binding()),
                (Slot::MParams, binding(ubuf.buffer(), MPARAMS_BYTES)),
            ];
            bindings.extend(sbias.map(|s| (Slot::Weight, s.binding())));
            let kernel = Kernel {
                family: Family::Matmul,
                entry,
                spec: Spec {
                    vec4,
                    x_dtype: p.a.dtype,
                    y_dtype: p.b.dtype,
                    ..Spec::default()
                },
            };
            let wgs = rows.div_ceil(tile_m) * tiles_n;
            let params = Params::new(rows, n, 1, 1, 1.0);
            keep.push(record_pass(ctx, encoder, kernel, wgs, params, bindings)?);
            keep.push(ubuf);
        }
    }
    Ok(keep)
}

const MPARAMS_BYTES: u64 = std::mem::size_of::<MParams>() as u64;

/// Records `out[c] = Σ_r a[r, c]` (plus `out[c]` when `accumulate`) over `rows × cols` of the
/// f32 matrix `a`; `out` is f32 with `cs` = 1.
pub(crate) fn record_col_sums(
    ctx: &Context,
    encoder: &mut wgpu::CommandEncoder,
    a: Operand,
    (rows, cols): (usize, usize),
    out: Operand,
    accumulate: bool,
) -> Result<Vec<PooledBuffer>> {
    if cols == 0 {
        return Ok(Vec::new());
    }
    let align = ctx.limits.min_storage_buffer_offset_alignment as u64;
    let cap = ctx.max_binding().saturating_sub(align + 16);
    // (Each invocation loops over the rows: at most MAX_K per dispatch, see there.)
    let mut mc = rows.clamp(1, MAX_K);
    while a.bytes(mc, cols) > cap {
        mc = halve(mc, 1).ok_or(Error::ShapeTooLarge {
            rows,
            cols,
            what: "column-sum binding",
            limit: cap,
        })?;
    }
    let mut keep = Vec::new();
    let starts: Vec<usize> = if rows == 0 {
        vec![0]
    } else {
        (0..rows).step_by(mc).collect()
    };
    for (i, &r0) in starts.iter().enumerate() {
        let n_rows = mc.min(rows - r0);
        let sa = a.slice(ctx, (r0, 0), (n_rows, cols), false);
        let so = out.slice(ctx, (0, 0), (1, cols), false);
        let mp = MParams {
            m: n_rows as u32,
            n: cols as u32,
            k: 0,
            a_base: sa.base,
            a_rs: a.rs as u32,
            a_cs: a.cs as u32,
            b_base: 0,
            b_rs: 0,
            b_cs: 0,
            c_base: so.base,
            c_rs: 0,
            flags: if accumulate || i > 0 { MM_ACC } else { 0 },
            tiles_n: 1,
            bias_base: 0,
            _pad0: 0,
            _pad1: 0,
        };
        let ubuf = ctx.upload_small(U::UNIFORM, bytemuck::bytes_of(&mp))?;
        let bindings = vec![
            (Slot::X, sa.binding()),
            (Slot::Y, so.binding()),
            (Slot::MParams, binding(ubuf.buffer(), MPARAMS_BYTES)),
        ];
        let kernel = Kernel {
            family: Family::Matmul,
            entry: Entry::ColSums,
            spec: Spec::default(),
        };
        let params = Params::new(n_rows, cols, 1, 1, 1.0);
        keep.push(record_pass(
            ctx,
            encoder,
            kernel,
            cols.div_ceil(256),
            params,
            bindings,
        )?);
        keep.push(ubuf);
    }
    Ok(keep)
}
