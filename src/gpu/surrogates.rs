//! The dispatcher for the surrogates: checks inputs on the host (shared with the other
//! backends), chunks rows to the binding limit, records `weighted` / `margin` / `f1_columns`
//! (shaders/surrogate_rows.wgsl) or `pointwise` (shaders/pointwise.wgsl), reads back, and
//! does the batch reductions in f64 on the host.

use super::context::Context;
use super::encode::{binding, record_pass, Params, Scopes, Slice};
use super::plan::{chunk_rows, RowSplit, WG};
use super::pool::PooledBuffer;
use super::readback::{read_f32_parts, Wait};
use super::rows::record_rows;
use super::shaders::{Family, ShaderKey};
use crate::error::Result;
use crate::ops::RowOp;
use crate::scale::{ExpForm, ExpScale};
use crate::surrogates::{
    flat, grad_scale, macro_f1_from_columns, matrix, output, prepare, reduce, BinaryLoss,
    PairwiseForm, Prepared, Surrogate, SurrogateOutput, Value,
};
use ndarray::{Array1, Array2};
use wgpu::BufferUsages as U;

/// Mirrors `struct SParams` in shaders/surrogate_common.wgsl (80 bytes).
#[repr(C)]
#[derive(Copy, Clone, Debug, bytemuck::Pod, bytemuck::Zeroable)]
struct SParams {
    n: u32,
    flags: u32,
    kappa: f32,
    sign: f32,
    a: f32,
    u: f32,
    margin: f32,
    f1: f32,
    inv_d: f32,
    p: u32,
    /// 1/2, 1/4 and 2⁻⁹, each twice (see `SParams` in the shader for why).
    half: f32,
    half2: f32,
    quarter: f32,
    quarter2: f32,
    small_h: f32,
    small_h2: f32,
    _pad0: u32,
    /// Rows: `κ = kappa·kappa_r` (see [`Kappa::split`]).
    kappa_r: f32,
    _pad: [u32; 2],
}

impl Default for SParams {
    fn default() -> Self {
        SParams {
            n: 0,
            flags: 0,
            kappa: 0.0,
            sign: 0.0,
            a: 0.0,
            u: 0.0,
            margin: 0.0,
            f1: 0.0,
            inv_d: 0.0,
            p: 0,
            half: 0.5,
            half2: 0.5,
            quarter: 0.25,
            quarter2: 0.25,
            small_h: 1.0 / 512.0,
            small_h2: 1.0 / 512.0,
            _pad0: 0,
            kappa_r: 0.0,
            _pad: [0; 2],
        }
    }
}

const FLAG_POS_WEIGHT: u32 = 1;
const FLAG_WEIGHT: u32 = 2;

/// Op codes (`OP` in the shaders, passed as `ShaderKey::ce_bits`).
mod op {
    pub const BOLTZMANN: u32 = 1;
    pub const SOFT_ARGMAX: u32 = 2;
    pub const ACCURACY: u32 = 3;
    pub const F1_GRAD: u32 = 4;
    pub const MARGIN: u32 = 5;
    pub const F1_COLUMNS: u32 = 6;
    pub const F1_SIGMOID: u32 = 30;
    pub const F1_BINARY_GRAD: u32 = 31;
}

fn binary_op(loss: BinaryLoss) -> u32 {
    match loss {
        BinaryLoss::Logistic => 10,
        BinaryLoss::Hinge => 11,
        BinaryLoss::SquaredHinge => 12,
        BinaryLoss::Exponential => 13,
        BinaryLoss::Squared => 14,
    }
}

fn pairwise_op(form: PairwiseForm) -> u32 {
    match form {
        PairwiseForm::Erf { .. } => 20,
        PairwiseForm::Sqrt { .. } => 21,
        PairwiseForm::Acon { .. } => 22,
    }
}

/// Runs one surrogate call on the GPU.
pub(crate) async fn surrogate(
    ctx: &Context,
    call: &Surrogate<'_>,
    wait: Wait,
) -> Result<SurrogateOutput> {
    let pr = prepare(call)?;
    ctx.check_alive()?;
    let (rows, cols) = (pr.rows, pr.cols);
    let res = match call {
        Surrogate::BoltzmannMax { x, beta } => {
            let c = x.as_standard_layout();
            let sp = SParams {
                kappa: beta.abs(),
                sign: if *beta < 0.0 { -1.0 } else { 1.0 },
                a: 1.0,
                u: 1.0,
                ..Default::default()
            };
            let job = RowJob::weighted(op::BOLTZMANN, sp, Kappa::Beta(beta.abs()));
            let (v, g) = run_rows(ctx, flat(&c)?, &pr, &job, wait).await?;
            output(Value::PerRow(Array1::from(v)), matrix(g, rows, cols)?)
        }
        Surrogate::SoftArgmax { x, temperature } => {
            let c = x.as_standard_layout();
            let sp = SParams {
                kappa: 1.0,
                sign: 1.0,
                u: 1.0,
                ..Default::default()
            };
            let job = RowJob::weighted(op::SOFT_ARGMAX, sp, Kappa::Temperature(*temperature));
            let (v, g) = run_rows(ctx, flat(&c)?, &pr, &job, wait).await?;
            output(Value::PerRow(Array1::from(v)), matrix(g, rows, cols)?)
        }
        Surrogate::SmoothAccuracy {
            logits,
            temperature,
            ..
        } => {
            let c = logits.as_standard_layout();
            let sp = SParams {
                kappa: 1.0,
                sign: 1.0,
                u: 1.0 / rows as f32,
                ..Default::default()
            };
            let mut job = RowJob::weighted(op::ACCURACY, sp, Kappa::Temperature(*temperature));
            job.class = true;
            let (v, g) = run_rows(ctx, flat(&c)?, &pr, &job, wait).await?;
            let a = reduce(&v, crate::Reduction::Mean).unwrap_or(f32::NAN);
            output(Value::Scalar(a), matrix(g, rows, cols)?)
        }
        Surrogate::SmoothF1Macro {
            logits,
            temperature,
            ..
        } => {
            let c = logits.as_standard_layout();
            macro_f1(ctx, flat(&c)?, &pr, *temperature, wait).await?
        }
        Surrogate::SmoothF1Binary { logits, .. } => {
            let c = logits.as_standard_layout();
            binary_f1(ctx, flat(&c)?, &pr, wait).await?
        }
        Surrogate::MultiMargin {
            logits, options, ..
        } => {
            let c = logits.as_standard_layout();
            let sp = SParams {
                margin: options.margin,
                p: options.p,
                u: grad_scale(options.reduction, rows),
                flags: if pr.weight.is_some() { FLAG_WEIGHT } else { 0 },
                ..Default::default()
            };
            let job = RowJob {
                entry: "margin",
                op: op::MARGIN,
                sp,
                kappa: Kappa::Temperature(1.0),
                class: true,
                weight: pr.weight.clone(),
            };
            let (v, g) = run_rows(ctx, flat(&c)?, &pr, &job, wait).await?;
            let value = match reduce(&v, options.reduction) {
                Some(s) => Value::Scalar(s),
                None => Value::PerRow(Array1::from(v)),
            };
            output(value, matrix(g, rows, cols)?)
        }
        Surrogate::PairwiseMax { a, b, form } => {
            let (ca, cb) = (a.as_standard_layout(), b.as_standard_layout());
            let sp = SParams {
                kappa: form.parameter(),
                ..Default::default()
            };
            let job = PointJob {
                op: pairwise_op(*form),
                sp,
                pairwise: true,
                values: true,
                grad: true,
            };
            let (v, g) = run_pointwise(ctx, flat(&ca)?, flat(&cb)?, &pr, &job, wait).await?;
            let n = rows * cols;
            let (ga, gb) = g.split_at(n);
            SurrogateOutput {
                value: Value::Matrix(matrix(v, rows, cols)?),
                grad: matrix(ga.to_vec(), rows, cols)?,
                grad_b: Some(matrix(gb.to_vec(), rows, cols)?),
            }
        }
        Surrogate::Binary {
            logits,
            loss,
            options,
            ..
        } => {
            let c = logits.as_standard_layout();
            let mut flags = 0;
            if pr.weight.is_some() {
                flags |= FLAG_WEIGHT;
            }
            if pr.pos_weight.is_some() {
                flags |= FLAG_POS_WEIGHT;
            }
            let sp = SParams {
                flags,
                u: grad_scale(options.reduction, rows * cols),
                ..Default::default()
            };
            let job = PointJob {
                op: binary_op(*loss),
                sp,
                pairwise: false,
                values: true,
                grad: true,
            };
            let labels = pr.labels.as_deref().unwrap_or(&[]);
            let (l, g) = run_pointwise(ctx, flat(&c)?, labels, &pr, &job, wait).await?;
            let value = match reduce(&l, options.reduction) {
                Some(s) => Value::Scalar(s),
                None => Value::Matrix(matrix(l, rows, cols)?),
            };
            output(value, matrix(g, rows, cols)?)
        }
    };
    ctx.check_uncaptured()?;
    Ok(res)
}

/// The exponent's scale of a row job: `κ = |β|`, or `1/T` (the kernel divides by `T`).
#[derive(Copy, Clone)]
enum Kappa {
    Beta(f32),
    Temperature(f32),
}

impl Kappa {
    /// The prelude's `Params` for a chunk: `T` (1 for β) and the exponent's scaling.
    fn params(self, rows: usize, cols: usize, seg_len: u32) -> Params {
        let log2e = std::f64::consts::LOG2_E;
        match self {
            Kappa::Beta(b) => {
                Params::with_scale(rows, cols, 1, seg_len, 1.0, &ExpScale::new(b as f64, log2e))
            }
            Kappa::Temperature(t) => Params::new(rows, cols, 1, seg_len, t),
        }
    }

    /// `κ = s·r` with `s` a power of two in `[1, 2¹²⁷]` and `r ≥ 1` (in `[1, 2)` unless
    /// `κ > 2¹²⁸`, i.e. `T` subnormal, where `s` stops at `2¹²⁷`; or `r = κ < 1`,
    /// `s = 1`): the kernel forms `κ·p·d` as `((p·s)·d)·r` (see `kappa_times` in
    /// shaders/surrogate_rows.wgsl). In f64: `κ = 1/T` is beyond f32 for subnormal `T`.
    fn split(self) -> (f32, f32) {
        let k = match self {
            Kappa::Beta(b) => b as f64,
            Kappa::Temperature(t) => 1.0 / t as f64,
        };
        if k < 1.0 {
            return (1.0, k as f32);
        }
        let s = 2f64.powi((k.log2().floor() as i32).min(127));
        (s as f32, (k / s) as f32)
    }

    fn form(self) -> ExpForm {
        let log2e = std::f64::consts::LOG2_E;
        match self {
            Kappa::Beta(b) => ExpScale::new(b as f64, log2e).form,
            Kappa::Temperature(t) => ExpScale::temperature(t, log2e).form,
        }
    }
}

/// A job of the row family.
struct RowJob {
    entry: &'static str,
    op: u32,
    sp: SParams,
    kappa: Kappa,
    /// Bind the class per row.
    class: bool,
    /// Bound as `weight`: class weights (margin) or F1's interleaved `(h, v)`.
    weight: Option<Vec<f32>>,
}

impl RowJob {
    fn weighted(op: u32, sp: SParams, kappa: Kappa) -> Self {
        let (s, r) = kappa.split();
        // Boltzmann's (g − f) is in quarters: the 4 goes into kappa_r (see `kappa_times`).
        let r = if op == op::BOLTZMANN { 4.0 * r } else { r };
        RowJob {
            entry: "weighted",
            op,
            sp: SParams {
                kappa: s,
                kappa_r: r,
                ..sp
            },
            kappa,
            class: false,
            weight: None,
        }
    }
}

fn upload(ctx: &Context, data: &[f32]) -> PooledBuffer {
    let b = ctx.pool.acquire(
        &ctx.device,
        U::STORAGE | U::COPY_DST,
        (data.len().max(1) * 4) as u64,
        ctx.max_binding(),
    );
    ctx.queue
        .write_buffer(b.buffer(), 0, bytemuck::cast_slice(data));
    b
}

fn uniform(ctx: &Context, sp: &SParams) -> PooledBuffer {
    let b = ctx.pool.acquire(
        &ctx.device,
        U::UNIFORM | U::COPY_DST,
        std::mem::size_of::<SParams>() as u64,
        ctx.max_binding(),
    );
    ctx.queue
        .write_buffer(b.buffer(), 0, bytemuck::bytes_of(sp));
    b
}

/// Runs a row job over every chunk of rows: returns (one value per row, gradient `[B, C]`).
async fn run_rows(
    ctx: &Context,
    x: &[f32],
    pr: &Prepared,
    job: &RowJob,
    wait: Wait,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (rows, cols) = (pr.rows, pr.cols);
    let mut values = vec![f32::NAN; rows];
    let mut grad = vec![0.0f32; rows * cols];
    if rows == 0 || cols == 0 {
        // No finite value in an empty row: NaN (targets cannot exist when C = 0).
        return Ok((values, grad));
    }
    let cap = ctx.max_binding();
    let chunk = chunk_rows(
        rows,
        cols,
        cap,
        ctx.limits.max_compute_workgroups_per_dimension,
    )?;
    let dev = &ctx.device;
    let scopes = Scopes::push(dev);
    let block = (chunk * cols * 4) as u64;
    let mut loans = vec![
        ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, block, cap), // x
        ctx.pool.acquire(dev, U::STORAGE | U::COPY_SRC, block, cap), // grad
        ctx.pool
            .acquire(dev, U::STORAGE | U::COPY_SRC, (chunk * 4) as u64, cap), // row_out
        ctx.pool
            .acquire(dev, U::STORAGE | U::COPY_DST, (chunk * 4) as u64, cap), // targets
        ctx.pool.acquire(
            dev,
            U::MAP_READ | U::COPY_DST,
            block + (chunk * 4) as u64,
            cap,
        ),
        uniform(ctx, &job.sp),
    ];
    if let Some(w) = &job.weight {
        loans.push(upload(ctx, w));
    }
    scopes.pop()?;
    let mut r0 = 0;
    while r0 < rows {
        let n = chunk.min(rows - r0);
        let res = rows_chunk(ctx, x, pr, job, r0, n, &loans, &mut values, &mut grad, wait).await;
        if let Err(e) = res {
            loans.iter_mut().for_each(PooledBuffer::discard);
            return Err(e);
        }
        r0 += n;
    }
    Ok((values, grad))
}

/// Queues the upload of rows `[r0, r0 + n)` of `x` and, when `classes` is given, of their
/// classes, to the chunk's buffers.
fn write_chunk(
    ctx: &Context,
    x: &[f32],
    pr: &Prepared,
    r0: usize,
    n: usize,
    xb: &wgpu::Buffer,
    classes: Option<&wgpu::Buffer>,
) {
    let cols = pr.cols;
    ctx.queue
        .write_buffer(xb, 0, bytemuck::cast_slice(&x[r0 * cols..(r0 + n) * cols]));
    if let Some(tb) = classes {
        ctx.queue
            .write_buffer(tb, 0, bytemuck::cast_slice(&pr.class[r0..r0 + n]));
    }
}

#[allow(clippy::too_many_arguments)]
async fn rows_chunk(
    ctx: &Context,
    x: &[f32],
    pr: &Prepared,
    job: &RowJob,
    r0: usize,
    n: usize,
    loans: &[PooledBuffer],
    values: &mut [f32],
    grad: &mut [f32],
    wait: Wait,
) -> Result<()> {
    let cols = pr.cols;
    let (xb, gb, rb, tb, staging, ub) = (
        loans[0].buffer(),
        loans[1].buffer(),
        loans[2].buffer(),
        loans[3].buffer(),
        loans[4].buffer(),
        loans[5].buffer(),
    );
    let dev = &ctx.device;
    let scopes = Scopes::push(dev);
    let bytes = (n * cols * 4) as u64;
    write_chunk(ctx, x, pr, r0, n, xb, job.class.then_some(tb));
    let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("smoothmax/surrogate-rows"),
    });
    let split = RowSplit::whole_rows(n, cols.div_ceil(4), ctx.policy());
    let key = ShaderKey {
        family: Family::SurrogateRows,
        vec4: false,
        row_threads: split.row_threads,
        log_output: false,
        prob_targets: false,
        ce_bits: job.op,
        exp_form: job.kappa.form(),
    };
    let weight = match loans.get(6) {
        Some(w) => binding(w.buffer(), w.buffer().size()),
        None => ctx.dummy_ro.as_entire_binding(),
    };
    let params = job.kappa.params(n, cols, split.seg_len);
    let _p = record_pass(
        ctx,
        &mut encoder,
        key,
        job.entry,
        split.workgroups(n),
        params,
        vec![
            (1, binding(xb, bytes)),
            (2, binding(gb, bytes)),
            (3, ctx.dummy.as_entire_binding()),
            (4, binding(rb, (n * 4) as u64)),
            (5, binding(tb, (n * 4) as u64)),
            (6, weight),
            (7, ctx.dummy_ro.as_entire_binding()),
            (8, binding(ub, std::mem::size_of::<SParams>() as u64)),
        ],
    )?;
    encoder.copy_buffer_to_buffer(gb, 0, staging, 0, bytes);
    encoder.copy_buffer_to_buffer(rb, 0, staging, bytes, (n * 4) as u64);
    ctx.queue.submit([encoder.finish()]);
    scopes.pop()?;
    read_f32_parts(
        ctx,
        staging,
        &mut [
            &mut grad[r0 * cols..(r0 + n) * cols],
            &mut values[r0..r0 + n],
        ],
        wait,
    )
    .await
}

/// Macro F1: per chunk, softmax on the device then its column sums (`f1_columns`); the
/// per-class coefficients on the host in f64; then the gradient through `weighted` (OP 4).
async fn macro_f1(
    ctx: &Context,
    x: &[f32],
    pr: &Prepared,
    t: f32,
    wait: Wait,
) -> Result<SurrogateOutput> {
    let (rows, cols) = (pr.rows, pr.cols);
    let (mut tp, mut pred, mut count) = (vec![0.0; cols], vec![0.0; cols], vec![0.0; cols]);
    for &y in &pr.class {
        count[y as usize] += 1.0;
    }
    if rows > 0 && cols > 0 {
        let cap = ctx.max_binding();
        let chunk = chunk_rows(
            rows,
            cols,
            cap,
            ctx.limits.max_compute_workgroups_per_dimension,
        )?;
        let dev = &ctx.device;
        let block = (chunk * cols * 4) as u64;
        let col_bytes = (2 * cols * 4) as u64;
        let scopes = Scopes::push(dev);
        let mut loans = vec![
            ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, block, cap), // x
            ctx.pool.acquire(dev, U::STORAGE, block, cap),               // p
            ctx.pool
                .acquire(dev, U::STORAGE | U::COPY_SRC, col_bytes, cap), // column sums
            ctx.pool
                .acquire(dev, U::STORAGE | U::COPY_DST, (chunk * 4) as u64, cap), // targets
            ctx.pool
                .acquire(dev, U::MAP_READ | U::COPY_DST, col_bytes, cap), // staging
            uniform(ctx, &SParams::default()),
        ];
        scopes.pop()?;
        let mut sums = vec![0.0f32; 2 * cols];
        let mut r0 = 0;
        while r0 < rows {
            let n = chunk.min(rows - r0);
            let res = f1_columns_chunk(ctx, x, pr, t, r0, n, &loans, &mut sums, wait).await;
            if let Err(e) = res {
                loans.iter_mut().for_each(PooledBuffer::discard);
                return Err(e);
            }
            for k in 0..cols {
                pred[k] += sums[k] as f64;
                tp[k] += sums[cols + k] as f64;
            }
            r0 += n;
        }
    }
    let (f, coef) = macro_f1_from_columns(&tp, &pred, &count);
    if f.is_nan() {
        return Ok(output(
            Value::Scalar(f32::NAN),
            Array2::from_elem((rows, cols), f32::NAN),
        ));
    }
    let weight: Vec<f32> = coef
        .iter()
        .flat_map(|&(h, v)| [h as f32, v as f32])
        .collect();
    let sp = SParams {
        kappa: 1.0,
        sign: 1.0,
        u: 1.0,
        ..Default::default()
    };
    let mut job = RowJob::weighted(op::F1_GRAD, sp, Kappa::Temperature(t));
    job.class = true;
    job.weight = Some(weight);
    let (_, g) = run_rows(ctx, x, pr, &job, wait).await?;
    Ok(output(Value::Scalar(f as f32), matrix(g, rows, cols)?))
}

#[allow(clippy::too_many_arguments)]
async fn f1_columns_chunk(
    ctx: &Context,
    x: &[f32],
    pr: &Prepared,
    t: f32,
    r0: usize,
    n: usize,
    loans: &[PooledBuffer],
    sums: &mut [f32],
    wait: Wait,
) -> Result<()> {
    let cols = pr.cols;
    let (xb, pb, cb, tb, staging, ub) = (
        loans[0].buffer(),
        loans[1].buffer(),
        loans[2].buffer(),
        loans[3].buffer(),
        loans[4].buffer(),
        loans[5].buffer(),
    );
    let dev = &ctx.device;
    let scopes = Scopes::push(dev);
    let bytes = (n * cols * 4) as u64;
    write_chunk(ctx, x, pr, r0, n, xb, Some(tb));
    let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("smoothmax/f1-columns"),
    });
    let _soft = record_rows(
        ctx,
        &mut encoder,
        RowOp::Softmax,
        t,
        Slice::at0(xb, bytes),
        cols,
        Slice::at0(pb, bytes),
        n,
        cols,
    )?;
    let key = ShaderKey {
        family: Family::SurrogateRows,
        vec4: false,
        row_threads: 1,
        log_output: false,
        prob_targets: false,
        ce_bits: op::F1_COLUMNS,
        exp_form: ExpForm::Unit,
    };
    let col_bytes = (2 * cols * 4) as u64;
    let _p = record_pass(
        ctx,
        &mut encoder,
        key,
        "f1_columns",
        cols.div_ceil(WG),
        Params::new(n, cols, 1, cols.div_ceil(4) as u32, 1.0),
        vec![
            (1, binding(pb, bytes)),
            (2, ctx.dummy.as_entire_binding()),
            (3, ctx.dummy.as_entire_binding()),
            (4, binding(cb, col_bytes)),
            (5, binding(tb, (n * 4) as u64)),
            (6, ctx.dummy_ro.as_entire_binding()),
            (7, ctx.dummy_ro.as_entire_binding()),
            (8, binding(ub, std::mem::size_of::<SParams>() as u64)),
        ],
    )?;
    encoder.copy_buffer_to_buffer(cb, 0, staging, 0, col_bytes);
    ctx.queue.submit([encoder.finish()]);
    scopes.pop()?;
    read_f32_parts(ctx, staging, &mut [sums], wait).await
}

/// Binary F1: `σ(x)` on the device (OP 30), the sums on the host in f64, then the gradient
/// on the device (OP 31).
async fn binary_f1(ctx: &Context, x: &[f32], pr: &Prepared, wait: Wait) -> Result<SurrogateOutput> {
    let (rows, cols) = (pr.rows, pr.cols);
    let labels = pr.labels.as_deref().unwrap_or(&[]);
    let first = PointJob {
        op: op::F1_SIGMOID,
        sp: SParams::default(),
        pairwise: false,
        values: true,
        grad: false,
    };
    let (p, _) = run_pointwise(ctx, x, labels, pr, &first, wait).await?;
    let tp: f64 = p
        .iter()
        .zip(labels)
        .map(|(&p, &y)| p as f64 * y as f64)
        .sum();
    let d: f64 =
        p.iter().map(|&p| p as f64).sum::<f64>() + labels.iter().map(|&y| y as f64).sum::<f64>();
    if d.is_nan() {
        return Ok(output(
            Value::Scalar(f32::NAN),
            Array2::from_elem((rows, cols), f32::NAN),
        ));
    }
    if d == 0.0 {
        return Ok(output(Value::Scalar(0.0), Array2::zeros((rows, cols))));
    }
    let f = 2.0 * tp / d;
    let second = PointJob {
        op: op::F1_BINARY_GRAD,
        sp: SParams {
            f1: f as f32,
            inv_d: (1.0 / d) as f32,
            ..Default::default()
        },
        pairwise: false,
        values: false,
        grad: true,
    };
    let (_, g) = run_pointwise(ctx, x, labels, pr, &second, wait).await?;
    Ok(output(Value::Scalar(f as f32), matrix(g, rows, cols)?))
}

/// A job of the pointwise family.
struct PointJob {
    op: u32,
    sp: SParams,
    /// Gradients for both inputs (`grad` holds `2n` floats).
    pairwise: bool,
    /// Read back the per-element values.
    values: bool,
    /// Read back the gradient.
    grad: bool,
}

/// Runs a pointwise job over every chunk of rows: returns (values, gradient), each empty when
/// not asked for; for the pairwise max the gradient is `d/da` then `d/db`.
async fn run_pointwise(
    ctx: &Context,
    x: &[f32],
    b: &[f32],
    pr: &Prepared,
    job: &PointJob,
    wait: Wait,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let (rows, cols) = (pr.rows, pr.cols);
    let total = rows * cols;
    let gmul = if job.pairwise { 2 } else { 1 };
    let mut values = if job.values {
        vec![0.0f32; total]
    } else {
        vec![]
    };
    let mut grad = if job.grad {
        vec![0.0f32; total * gmul]
    } else {
        vec![]
    };
    if total == 0 {
        return Ok((values, grad));
    }
    let cap = ctx.max_binding();
    // The gradient buffer of a pairwise chunk holds two blocks: chunk against twice the row.
    let chunk = chunk_rows(
        rows,
        cols * gmul,
        cap,
        ctx.limits.max_compute_workgroups_per_dimension,
    )?;
    let dev = &ctx.device;
    let block = (chunk * cols * 4) as u64;
    let scopes = Scopes::push(dev);
    let mut loans = vec![
        ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, block, cap), // x
        ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, block, cap), // b
        ctx.pool.acquire(dev, U::STORAGE | U::COPY_SRC, block, cap), // values
        ctx.pool
            .acquire(dev, U::STORAGE | U::COPY_SRC, block * gmul as u64, cap), // grad
        ctx.pool.acquire(
            dev,
            U::MAP_READ | U::COPY_DST,
            block * (1 + gmul as u64),
            cap,
        ),
    ];
    let weight = pr
        .weight
        .as_ref()
        .filter(|_| job.sp.flags & FLAG_WEIGHT != 0)
        .map(|_| ctx.pool.acquire(dev, U::STORAGE | U::COPY_DST, block, cap));
    let pos_weight = pr
        .pos_weight
        .as_ref()
        .filter(|_| job.sp.flags & FLAG_POS_WEIGHT != 0)
        .map(|pw| upload(ctx, pw));
    scopes.pop()?;
    let mut r0 = 0;
    while r0 < rows {
        let n = chunk.min(rows - r0);
        let res = point_chunk(
            ctx,
            x,
            b,
            pr,
            job,
            r0,
            n,
            &loans,
            weight.as_ref(),
            pos_weight.as_ref(),
            &mut values,
            &mut grad,
            wait,
        )
        .await;
        if let Err(e) = res {
            loans.iter_mut().for_each(PooledBuffer::discard);
            return Err(e);
        }
        r0 += n;
    }
    Ok((values, grad))
}

#[allow(clippy::too_many_arguments)]
async fn point_chunk(
    ctx: &Context,
    x: &[f32],
    b: &[f32],
    pr: &Prepared,
    job: &PointJob,
    r0: usize,
    rows: usize,
    loans: &[PooledBuffer],
    weight: Option<&PooledBuffer>,
    pos_weight: Option<&PooledBuffer>,
    values: &mut [f32],
    grad: &mut [f32],
    wait: Wait,
) -> Result<()> {
    let cols = pr.cols;
    let (e0, n) = (r0 * cols, rows * cols);
    let total = pr.rows * cols;
    let bytes = (n * 4) as u64;
    let (xb, bb, vb, gb, staging) = (
        loans[0].buffer(),
        loans[1].buffer(),
        loans[2].buffer(),
        loans[3].buffer(),
        loans[4].buffer(),
    );
    let dev = &ctx.device;
    let scopes = Scopes::push(dev);
    ctx.queue
        .write_buffer(xb, 0, bytemuck::cast_slice(&x[e0..e0 + n]));
    ctx.queue
        .write_buffer(bb, 0, bytemuck::cast_slice(&b[e0..e0 + n]));
    if let (Some(wb), Some(w)) = (weight, pr.weight.as_ref()) {
        ctx.queue
            .write_buffer(wb.buffer(), 0, bytemuck::cast_slice(&w[e0..e0 + n]));
    }
    let sp = SParams {
        n: n as u32,
        ..job.sp
    };
    let ub = uniform(ctx, &sp);
    let mut encoder = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
        label: Some("smoothmax/pointwise"),
    });
    let key = ShaderKey {
        family: Family::Pointwise,
        vec4: false,
        row_threads: 1,
        log_output: false,
        prob_targets: false,
        ce_bits: job.op,
        exp_form: ExpForm::Unit,
    };
    let gmul = if job.pairwise { 2 } else { 1 };
    let _p = record_pass(
        ctx,
        &mut encoder,
        key,
        "pointwise",
        n.div_ceil(WG),
        Params::new(rows, cols, 1, 1, 1.0),
        vec![
            (1, binding(xb, bytes)),
            (2, binding(vb, bytes)),
            (3, ctx.dummy.as_entire_binding()),
            (4, binding(bb, bytes)),
            (5, binding(gb, bytes * gmul)),
            (
                6,
                weight.map_or(ctx.dummy_ro.as_entire_binding(), |w| {
                    binding(w.buffer(), bytes)
                }),
            ),
            (
                7,
                pos_weight.map_or(ctx.dummy_ro.as_entire_binding(), |p| {
                    binding(p.buffer(), (cols * 4) as u64)
                }),
            ),
            (
                8,
                binding(ub.buffer(), std::mem::size_of::<SParams>() as u64),
            ),
        ],
    )?;
    let mut at = 0;
    if job.values {
        encoder.copy_buffer_to_buffer(vb, 0, staging, 0, bytes);
        at += bytes;
    }
    if job.grad {
        encoder.copy_buffer_to_buffer(gb, 0, staging, at, bytes * gmul);
    }
    ctx.queue.submit([encoder.finish()]);
    scopes.pop()?;
    let mut parts: Vec<&mut [f32]> = Vec::new();
    if job.values {
        parts.push(&mut values[e0..e0 + n]);
    }
    if job.grad {
        // Pairwise: d/da of this chunk, then d/db, to their places in [d/da | d/db].
        let (ga, gb) = grad.split_at_mut(total.min(grad.len()));
        parts.push(&mut ga[e0..e0 + n]);
        if job.pairwise {
            parts.push(&mut gb[e0..e0 + n]);
        }
    }
    read_f32_parts(ctx, staging, &mut parts, wait).await
}
