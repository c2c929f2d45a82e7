//! Losses across MPI processes, checked against one process's unsharded result:
//!
//! 1. **Vocabulary-sharded cross-entropy** (tensor-parallel LM head): every rank holds the same
//!    rows and its own columns of the logits; one all-reduce of 48 bytes per row merges the
//!    statistics; each rank gets the loss and its slice of the gradient.
//! 2. **Data-parallel loss** over a dataset split by rows: each rank evaluates its own batches
//!    and accumulates their `LossSums`; one all-reduce of 32 bytes gives the global mean.
//! 3. **Vocabulary-sharded fused linear cross-entropy**: every rank holds the hidden states
//!    and its rows of the classifier weights (no logits anywhere); the same all-reduce of the
//!    statistics, then one all-reduce sum of the hidden states' gradient.
//!
//! ```text
//! cargo build --release --features mpi --example mpi_sharded
//! mpirun -n 3 target/release/examples/mpi_sharded [ROWS COLS] [--bench]
//! ```
//!
//! (as root add `--allow-run-as-root`, with more ranks than cores `--oversubscribe`). Every
//! rank checks the loss, the lse and its gradient slice against the unsharded call on the
//! CPU; with `--bench` only rank 0 runs that call (a large shape need not fit every rank
//! twice), and the times printed are medians of five calls after a first one (the sharded
//! call's the slowest rank's). Exits non-zero when a check fails.

use mpi::collective::SystemOperation;
use mpi::traits::*;
use ndarray::{s, Array1, Array2, ArrayView2};
use smoothmax::shard::{
    mpi as shard_mpi, ShardedCrossEntropy, ShardedLinearCrossEntropy, VocabShard,
};
use smoothmax::{Backend, Cpu, CrossEntropyOptions, LossSums, Targets};
use std::process::ExitCode;
use std::time::Instant;

/// A reproducible logit for row `i`, column `j` (SplitMix64 of the pair, roughly uniform in
/// [−4, 4)): every rank makes its own columns without the whole matrix.
fn logit(i: usize, j: usize) -> f32 {
    let mut z = (i as u64) << 32 ^ j as u64 ^ 0x9e37_79b9_7f4a_7c15;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    ((z >> 40) as f32 / (1u64 << 24) as f32) * 8.0 - 4.0
}

fn logits(rows: std::ops::Range<usize>, cols: std::ops::Range<usize>) -> Array2<f32> {
    let (r0, c0) = (rows.start, cols.start);
    Array2::from_shape_fn((rows.len(), cols.len()), |(i, j)| logit(r0 + i, c0 + j))
}

/// The crate's tolerance for rows of `c` classes (`src/lib.rs`, "Accuracy"), doubled: both
/// sides are f32 results within it of the exact value.
fn tol(c: usize) -> f64 {
    2.0 * f32::EPSILON as f64 * (32.0 + 4.0 * (c as f64).sqrt())
}

/// The largest of `|a − b| / (unit + |b|)` over two slices; a NaN on either side counts as
/// infinitely wrong (the inputs here are finite, so every result must be).
fn worst(a: impl Iterator<Item = f32>, b: impl Iterator<Item = f32>, unit: f64) -> f64 {
    a.zip(b)
        .map(|(x, y)| (x as f64 - y as f64).abs() / (unit + (y as f64).abs()))
        .map(|d| if d.is_nan() { f64::INFINITY } else { d })
        .fold(0.0, f64::max)
}

/// The median of some timings.
fn median(t: &mut [f64]) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() -> ExitCode {
    let universe = mpi::initialize().expect("MPI initialized once");
    let world = universe.world();
    let (rank, size) = (world.rank() as usize, world.size() as usize);
    let args: Vec<String> = std::env::args().skip(1).collect();
    let bench = args.iter().any(|a| a == "--bench");
    let nums: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    let (rows, total) = match nums[..] {
        [r, c] => (r, c),
        _ => (256, 5000),
    };
    let cpu = Cpu::new();
    let mut ok = true;

    // ---- 1. vocabulary-sharded cross-entropy -------------------------------------------
    // Uneven shards: rank k holds columns [k·C/n, (k+1)·C/n).
    let (c0, c1) = (rank * total / size, (rank + 1) * total / size);
    let x = logits(0..rows, c0..c1);
    let y = Array1::from_shape_fn(rows, |i| {
        if i % 17 == 5 {
            -100 // ignored
        } else {
            ((i * 7919) % total) as i64
        }
    });
    let w = Array1::from_shape_fn(total, |j| 0.5 + (j % 3) as f32 * 0.25);
    let o = CrossEntropyOptions {
        weight: Some(w.view()),
        label_smoothing: 0.1,
        z_loss: 1e-4,
        gradient: true,
        ..Default::default()
    };
    let call = ShardedCrossEntropy::new(
        VocabShard { offset: c0, total },
        Targets::classes(y.view()),
        &o,
    );
    // Timed as the median of `reps` calls after one unmeasured call (the first touches fresh
    // pages); each call's time is the slowest rank's.
    let reps = if bench { 5 } else { 1 };
    let mut times = Vec::new();
    let mut out = None;
    for k in 0..=reps {
        world.barrier();
        let t = Instant::now();
        match shard_mpi::cross_entropy(&world, &call, &cpu, x.view().into()) {
            Ok(r) => out = Some(r),
            Err(e) => {
                eprintln!("rank {rank}: {e}");
                return ExitCode::FAILURE;
            }
        }
        let mine = t.elapsed().as_secs_f64();
        let mut slowest = 0.0f64;
        world.all_reduce_into(&mine, &mut slowest, SystemOperation::max());
        if k > 0 || !bench {
            times.push(slowest);
        }
    }
    let slowest = median(&mut times);
    let Some(out) = out else {
        return ExitCode::FAILURE;
    };
    let loss = out.loss.scalar().unwrap_or(f32::NAN);
    if rank == 0 {
        println!(
            "sharded cross-entropy [{rows}, {total}] over {size} ranks (rank 0 holds \
             [{rows}, {}]): loss {loss:.6}, {slowest:.3} s (slowest rank, forward + backward); \
             exchanged {} bytes per rank ({} per row)",
            c1 - c0,
            rows * std::mem::size_of::<smoothmax::shard::RowPartial>(),
            std::mem::size_of::<smoothmax::shard::RowPartial>(),
        );
    }
    if !bench || rank == 0 {
        let whole = logits(0..rows, 0..total);
        let mut times = Vec::new();
        let mut one = None;
        for k in 0..=reps {
            let t = Instant::now();
            one = Some(cpu.cross_entropy(whole.view(), Targets::classes(y.view()), &o));
            if k > 0 || !bench {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        let single = median(&mut times);
        let one = one.expect("a call").expect("the unsharded call");
        let one_loss = one.loss.scalar().unwrap_or(f32::NAN);
        let dl = worst([loss].into_iter(), [one_loss].into_iter(), 1.0);
        let dlse = worst(out.lse.iter().copied(), one.lse.iter().copied(), 1.0);
        let grad: Array2<f32> = out
            .grad
            .expect("a gradient")
            .into_typed::<f32, ndarray::Ix2>()
            .expect("an f32 [B, C_k] gradient");
        let want: ArrayView2<f32> = one.grad.as_ref().expect("a gradient").slice(s![.., c0..c1]);
        let unit = 1.0 / out.sums.weight;
        let dg = worst(grad.iter().copied(), want.iter().copied(), unit);
        let good = dl <= tol(total) && dlse <= tol(total) && dg <= tol(total);
        println!(
            "rank {rank}: against one process's call ({single:.3} s): loss {one_loss:.6}, \
             scaled differences loss {dl:.1e}, lse {dlse:.1e}, gradient slice {dg:.1e} \
             (bound {:.1e}) {}",
            tol(total),
            if good { "ok" } else { "FAILED" }
        );
        ok &= good;
    }

    // ---- 2. data-parallel: the dataset's rows split over the ranks ---------------------
    let (batches, batch, classes) = (3 * size + 1, 40, 1000);
    let yd = |i: usize| ((i * 31) % classes) as i64;
    let od = CrossEntropyOptions {
        z_loss: 1e-3,
        ..Default::default()
    };
    let mut sums = LossSums::default();
    for b in (rank..batches).step_by(size) {
        let xb = logits(b * batch..(b + 1) * batch, 0..classes);
        let yb = Array1::from_shape_fn(batch, |i| yd(b * batch + i));
        match cpu.cross_entropy(xb.view(), Targets::classes(yb.view()), &od) {
            Ok(r) => sums += r.sums,
            Err(e) => {
                eprintln!("rank {rank}: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let global = shard_mpi::all_reduce_sums(&world, &sums);
    if rank == 0 {
        let n = batches * batch;
        let all = logits(0..n, 0..classes);
        let ya = Array1::from_shape_fn(n, yd);
        let one = cpu
            .cross_entropy(all.view(), Targets::classes(ya.view()), &od)
            .expect("the one-process call");
        let d = worst(
            [global.mean() as f32].into_iter(),
            one.loss.scalar().into_iter(),
            1.0,
        );
        let good = d <= tol(classes);
        println!(
            "data-parallel mean over {n} rows in {batches} batches on {size} ranks: {:.6} \
             (one process: {:.6}, scaled difference {d:.1e}) {}",
            global.mean(),
            one.loss.scalar().unwrap_or(f32::NAN),
            if good { "ok" } else { "FAILED" }
        );
        ok &= good;
    }
    // ---- 3. vocabulary-sharded fused linear cross-entropy ------------------------------
    // Every rank holds the hidden states and its own rows of the classifier weights; no rank
    // ever holds logits. Checked against one process's unsharded fused call.
    let (n, d, v) = (rows.min(128), 64, total);
    let (v0, v1) = (rank * v / size, (rank + 1) * v / size);
    let h = Array2::from_shape_fn((n, d), |(i, k)| logit(i, k + 7) / 4.0);
    let wscale = 1.0 / (4.0 * (d as f32).sqrt());
    let wk = Array2::from_shape_fn((v1 - v0, d), |(j, k)| logit(v0 + j + 1000, k) * wscale);
    let ol = CrossEntropyOptions {
        gradient: true,
        ..Default::default()
    };
    let yl = y
        .slice(s![..n])
        .mapv(|c| if c < 0 { c } else { c % v as i64 });
    let call = ShardedLinearCrossEntropy::new(
        VocabShard {
            offset: v0,
            total: v,
        },
        Targets::classes(yl.view()),
        &ol,
    );
    let sharded = shard_mpi::linear_cross_entropy(
        &world,
        &call,
        &cpu,
        h.view().into(),
        wk.view().into(),
        None,
    );
    let (head, grads) = match sharded {
        Ok((head, Some(g))) => (head, g),
        Ok((_, None)) => return ExitCode::FAILURE,
        Err(e) => {
            eprintln!("rank {rank}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let w_all = Array2::from_shape_fn((v, d), |(j, k)| logit(j + 1000, k) * wscale);
    let one = cpu
        .linear_cross_entropy(
            h.view().into(),
            w_all.view().into(),
            None,
            Targets::classes(yl.view()),
            &ol,
        )
        .expect("the one-process call");
    // Both sides are f32 evaluations of the same function, each within its bound of the exact
    // one (tests/common/linear.rs states them), so their difference is within twice that:
    // - a logit within Δ = γ_{D+1}·Σ_k |h_k w_k| ≤ γ_{D+1}·√D (|h| ≤ 1, |w| ≤ 1/√D as made);
    // - the loss (a mean of lse − z_y) and each lse within tol(V)(1 + |r|) + 2Δ;
    // - at the scale s = 1/count of the mean, each entry of the logits' gradient within
    //   s·tol(V)(1 + |G|/s) + 4Δ·s·p (a row's |G| sums to at most 2s), so dH = G·W within
    //   s·max|w|·((V + 2)·tol(V) + 4Δ + 2γ_V) and dW = Gᵀ·H within
    //   s·max|h|·((N + 2)·tol(V) + 4ΔN + 2γ_N·N).
    let gamma = |k: usize| k as f64 * 2f64.powi(-24) / (1.0 - k as f64 * 2f64.powi(-24));
    let delta = gamma(d + 1) * (d as f64).sqrt();
    let b_loss = 2.0 * (tol(v) + 2.0 * delta);
    let b_dh = 2.0 / (d as f64).sqrt() * ((v + 2) as f64 * tol(v) + 4.0 * delta + 2.0 * gamma(v));
    let b_dw = 2.0 * ((n + 2) as f64 * tol(v) + 4.0 * delta * n as f64 + 2.0 * gamma(n) * n as f64);
    let dl = worst(
        [head.loss.scalar().unwrap_or(f32::NAN)].into_iter(),
        one.loss.scalar().into_iter(),
        1.0,
    );
    let dlse = worst(head.lse.iter().copied(), one.lse.iter().copied(), 1.0);
    let unit = 1.0 / head.sums.weight;
    let want_h = one
        .grad_hidden
        .expect("grad_hidden")
        .into_typed::<f32, ndarray::Ix2>()
        .expect("[N, D]");
    let want_w = one
        .grad_weight
        .expect("grad_weight")
        .into_typed::<f32, ndarray::Ix2>()
        .expect("[V, D]");
    let dh = worst(grads.hidden.iter().copied(), want_h.iter().copied(), unit);
    let dw = worst(
        grads.weight.iter().copied(),
        want_w.slice(s![v0..v1, ..]).iter().copied(),
        unit,
    );
    let good = dl <= b_loss && dlse <= b_loss && dh <= b_dh && dw <= b_dw;
    println!(
        "rank {rank}: sharded fused linear cross-entropy [{n}, {d}]·[{v}, {d}]ᵀ (this rank \
         [{}, {d}]): scaled differences from one process's call: loss {dl:.1e}, lse {dlse:.1e} \
         (bound {b_loss:.1e}), grad_hidden {dh:.1e} (bound {b_dh:.1e}), grad_weight rows \
         {dw:.1e} (bound {b_dw:.1e}) {}",
        v1 - v0,
        if good { "ok" } else { "FAILED" }
    );
    ok &= good;

    // Every rank's verdict, so that mpirun's exit status is the job's.
    let mut all_ok = 0i32;
    world.all_reduce_into(&(ok as i32), &mut all_ok, SystemOperation::min());
    if all_ok == 1 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
