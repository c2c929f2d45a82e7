//! Which blocks `rows::online` guesses on (sums without their max pass) and which of those it
//! keeps, through the real callers (`rows::row_stats`, `ce_stats::stats_online`, and the
//! public calls) in the builds that guess (AVX-512, AVX2), counted by `rows::counts`: rows
//! like these in tests/online_rows.rs are held to the f64 reference, and these counts show
//! that they take the guess, that it is kept where it holds and sent back to the checked pass
//! where it does not.

use super::arith::Arith;
use super::ce_stats::{stats_online, Cfg};
use super::exp::{Fused, Fused512};
use super::rows::{counts, row_stats};
use super::CpuIsa;
use crate::cross_entropy::fast::flag;
use crate::scale::ExpScale;
use crate::{Backend, CrossEntropyOptions, Targets};
use half::bf16;
use ndarray::{Array1, Array2};

/// Runs `$f::<A>()` (or `$f(isa)`) for each build that guesses and this processor has.
macro_rules! each_build {
    ($f:ident) => {{
        each_build!(@ $f::<Fused512>(), $f::<Fused>())
    }};
    (isa $f:ident) => {{
        each_build!(@ $f(CpuIsa::Avx512), $f(CpuIsa::Avx2))
    }};
    (@ $wide:expr, $avx2:expr) => {{
        if CpuIsa::Avx512.is_supported() {
            $wide;
        }
        if CpuIsa::Avx2.is_supported() {
            $avx2;
        } else {
            eprintln!("no AVX2 here: no build that guesses runs");
        }
    }};
}

const COLS: usize = 3000;

/// Values in `[−4, 4)`, the first 32 reaching 3.912 and the row 3.992 (so the first
/// block's guess is close).
fn smooth(cols: usize) -> Vec<f32> {
    (0..cols)
        .map(|j| ((j * 7919 + 500) % 1000) as f32 / 125.0 - 4.0)
        .collect()
}

/// `smooth` with `v` added to every value of block `k`.
fn risen(k: usize, v: f32) -> Vec<f32> {
    let mut x = smooth(COLS);
    for e in &mut x[k * 1024..((k + 1) * 1024).min(COLS)] {
        *e += v;
    }
    x
}

/// `smooth` with `v` at `j`.
fn with(j: usize, v: f32) -> Vec<f32> {
    let mut x = smooth(COLS);
    x[j] = v;
    x
}

/// tests/online_rows.rs's row at the accuracy edge, its values times `t`: the first 32 at
/// −8, one 0 at column 40, the rest −60.
fn edge(cols: usize, t: f32) -> Vec<f32> {
    (0..cols)
        .map(|j| match j {
            0..32 => -8.0 * t,
            40 => 0.0,
            _ => -60.0 * t,
        })
        .collect()
}

/// Logsumexp's statistics of `x` at temperature `t`: `(guessed, kept)` blocks, whether the
/// row came out NaN / +inf, and its logsumexp.
fn lse<A: Arith>(x: &[f32], t: f32) -> ((usize, usize), bool, bool, f32) {
    counts::take();
    let es = ExpScale::temperature(t, 1.0);
    let st = row_stats::<A, f32>(x, &[], &es, true);
    (counts::take(), st.nan, st.pos_inf, st.logsumexp(t))
}

#[test]
fn logsumexp_guesses_where_its_sums_show_the_guess_held() {
    each_build!(logsumexp_guesses);
}

fn logsumexp_guesses<A: Arith + 'static>() {
    let first32 = smooth(32).into_iter().fold(f32::MIN, f32::max);
    let cases: Vec<(&str, Vec<f32>, (usize, usize))> = vec![
        ("smooth", smooth(COLS), (3, 3)),
        // Terms up to 2^4.4 (6.992 − 3.912 nats above the reference), the block's sum 2^11.4:
        // below the bound.
        ("block 1 risen by 3", risen(1, 3.0), (3, 3)),
        // Terms up to 2^43.4: block 1 is summed again against its max; block 2 is guessed
        // against that max and kept.
        ("block 1 risen by 30", risen(1, 30.0), (3, 2)),
        // One term of e^8 in the first block (its sum 2^11.6); e^8.4 takes it past 2^12.
        ("8 above the first 32", with(500, first32 + 8.0), (3, 3)),
        ("8.4 above the first 32", with(500, first32 + 8.4), (3, 2)),
        // An exponent of 144, past the AVX2 exp's exponent field: clamped to 2^64 there,
        // +inf in the AVX-512 one; either way sent back.
        ("100 above the first 32", with(500, first32 + 100.0), (3, 2)),
        // A −inf's term is 0: nothing to reject.
        ("-inf in block 1", with(1500, f32::NEG_INFINITY), (3, 3)),
        // NaN and +inf make the guessed sum NaN or +inf: the checked pass classifies the row.
        ("NaN in block 0", with(100, f32::NAN), (1, 0)),
        ("+inf in block 2", with(2500, f32::INFINITY), (3, 2)),
        // Among the first 32: no guess for the first block, which classifies the row.
        ("NaN among the first 32", with(5, f32::NAN), (0, 0)),
        ("63 columns", smooth(63), (0, 0)),
        ("64 columns", smooth(64), (1, 1)),
        // Rising by 30 per block: blocks 1 and 2 are sent back, and blocks 3 and 4 are no
        // longer guessed (`GUESS_MISSES`).
        (
            "rising by 30 per block",
            (0..5000)
                .map(|j| (j / 1024) as f32 * 30.0 + smooth(1)[0])
                .collect(),
            (3, 1),
        ),
        // The accuracy edge (tests/online_rows.rs holds it to the reference): the first 32
        // at −8, one 0, the rest −60; the reference −8 is 8 below the max.
        ("edge, 64 columns", edge(64, 1.0), (1, 1)),
        ("edge, 3000 columns", edge(COLS, 1.0), (3, 3)),
    ];
    for (name, x, want) in cases {
        let (got, nan, pos_inf, v) = lse::<A>(&x, 1.0);
        assert_eq!(got, want, "{name}: (guessed, kept) blocks");
        let special = x.iter().any(|v| v.is_nan() || *v == f32::INFINITY);
        assert_eq!(nan || pos_inf, special, "{name}: classified");
        assert_eq!(v.is_finite(), !special, "{name}: {v}");
    }
    // The reference the comments above count from.
    assert!((first32 - 3.912).abs() < 1e-6, "{first32}");
    // At T = 1/4 each exponent is four times as large: block 1 risen by 7 gives terms up to
    // 2^40 and goes back; at a temperature whose exponent is not for the base-2 loops (the
    // tiny form) every guess goes back.
    assert_eq!(lse::<A>(&risen(1, 7.0), 0.25).0, (3, 2));
    assert_eq!(lse::<A>(&smooth(COLS), 0.25).0, (3, 3));
    // NaN in the last column (the vector tail's lanes): sent back.
    assert_eq!(lse::<A>(&with(COLS - 1, f32::NAN), 1.0).0, (3, 2));
    // A last block of 5 values: the AVX2 loop takes fewer than 16 only checked (its scalar
    // exp's NaN is unspecified), the AVX-512 loop pads them.
    let short = if std::any::TypeId::of::<A>() == std::any::TypeId::of::<Fused>() {
        (2, 1)
    } else {
        (2, 2)
    };
    assert_eq!(lse::<A>(&smooth(1029), 1.0).0, short);
    // Two blocks sent back, and the third not guessed.
    assert_eq!(lse::<A>(&smooth(COLS), 1e-40).0, (2, 0));
    assert_eq!(lse::<A>(&edge(COLS, 3.0), 3.0).0, (3, 3));
}

#[test]
fn half_rows_guess_as_f32_rows_do() {
    each_build!(half_rows_guess);
}

fn half_rows_guess<A: Arith>() {
    let es = ExpScale::new(1.0, 1.0);
    for (x, want) in [(smooth(COLS), (3, 3)), (risen(1, 30.0), (3, 2))] {
        let h: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
        counts::take();
        row_stats::<A, bf16>(&h, &[], &es, true);
        assert_eq!(counts::take(), want);
    }
}

/// The cross-entropy's loss-only pass: with a linear sum, a −inf in a guessed block makes
/// that sum non-finite, so the block goes back and the checked pass records the −inf's kind;
/// with the gradient, or where the caller needs `m` as the max, no block is guessed.
#[test]
fn cross_entropy_guesses_only_where_the_loss_is_all_that_is_wanted() {
    each_build!(cross_entropy_guesses);
}

fn cross_entropy_guesses<A: Arith>() {
    let cfg = |lin: bool, guess: bool| Cfg {
        cols: COLS,
        weight: None,
        lin,
        sigma: 1.0,
        softcap: None,
        grad: false,
        guess,
        stream: false,
    };
    let run = |cfg: &Cfg, x: &[f32]| {
        counts::take();
        let st = stats_online::<A, f32>(cfg, x, None, &[], None);
        (counts::take(), st.flags)
    };
    let neg = with(1500, f32::NEG_INFINITY);
    assert_eq!(run(&cfg(true, true), &smooth(COLS)), ((3, 3), 0));
    assert_eq!(run(&cfg(true, true), &neg), ((3, 2), flag::NEG_POS));
    // In the last block's vector tail (the lanes the padding shares): the same.
    let last = with(COLS - 1, f32::NEG_INFINITY);
    assert_eq!(run(&cfg(true, true), &last), ((3, 2), flag::NEG_POS));
    assert_eq!(run(&cfg(false, true), &last), ((3, 3), 0));
    assert_eq!(run(&cfg(false, true), &neg), ((3, 3), 0));
    assert_eq!(run(&cfg(true, true), &risen(1, 30.0)).0, (3, 2));
    assert_eq!(run(&cfg(true, false), &smooth(COLS)).0, (0, 0));
    // With a store for the gradient's terms.
    let (mut g, mut runs) = (vec![0.0f32; COLS], Vec::new());
    counts::take();
    stats_online::<A, f32>(
        &cfg(true, true),
        &smooth(COLS),
        None,
        &[],
        Some((&mut g, &mut runs)),
    );
    assert_eq!(counts::take(), (0, 0));
}

/// The public calls, counted on a one-thread pool (whose worker runs the call and keeps the
/// counts): logsumexp and the loss-only cross-entropy guess, with and without a linear sum;
/// softmax, log-softmax, the gradient and a vocabulary shard's statistics do not.
#[test]
fn public_calls_guess_only_where_they_may() {
    each_build!(isa public_calls_guess);
}

fn public_calls_guess(isa: CpuIsa) {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("a one-thread pool");
    let guessed = |f: &(dyn Fn() + Sync)| {
        pool.install(|| {
            counts::take();
            f();
            counts::take().0
        })
    };
    let cpu = super::Cpu::with_isa(isa).expect("the build detected");
    let x = Array2::from_shape_vec((2, COLS), [smooth(COLS), risen(1, 3.0)].concat())
        .expect("two rows");
    let y = Array1::from_vec(vec![3i64, 1500]);
    let w = Array1::from_elem(COLS, 0.5f32);
    let ce = |o: &CrossEntropyOptions| {
        cpu.cross_entropy(x.view(), Targets::classes(y.view()), o)
            .expect("cross-entropy");
    };
    let plain = CrossEntropyOptions::default();
    let smoothing = CrossEntropyOptions {
        label_smoothing: 0.1,
        ..Default::default()
    };
    let weighted = CrossEntropyOptions {
        weight: Some(w.view()),
        ..Default::default()
    };
    let gradient = CrossEntropyOptions {
        gradient: true,
        ..smoothing.clone()
    };
    assert_eq!(guessed(&|| drop(cpu.logsumexp(x.view(), 1.0))), 6);
    assert_eq!(guessed(&|| ce(&plain)), 6);
    assert_eq!(guessed(&|| ce(&smoothing)), 6);
    assert_eq!(guessed(&|| ce(&weighted)), 6);
    assert_eq!(guessed(&|| ce(&gradient)), 0);
    assert_eq!(guessed(&|| drop(cpu.softmax(x.view(), 1.0))), 0);
    assert_eq!(guessed(&|| drop(cpu.log_softmax(x.view(), 1.0))), 0);
    let shard = crate::shard::ShardedCrossEntropy::new(
        crate::shard::VocabShard {
            offset: 0,
            total: COLS,
        },
        Targets::classes(y.view()),
        &smoothing,
    );
    let stats = || drop(shard.statistics(&cpu, x.view().into()));
    assert_eq!(guessed(&stats), 0);
}
