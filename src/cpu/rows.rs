//! One row at a time, in passes over a row that stays in cache (a 32000-float row is 128 KB):
//!
//! 1. the max `m` of the raw values, and whether anything non-finite is present (bit tests,
//!    the way the GPU kernels classify); since `max(x/T) = max(x)/T` the exponent is
//!    `(x − m)/T`, and `x − m` is exact for nearby values where `x/T` in f32 would lose
//!    `ε·|x/T|` (formed as `crate::scale` says, so no accepted `T` and no finite row
//!    overflows where the exact value does not);
//! 2. `s = Σ e^{(x − m)/T}` in `L` independent lanes (so it vectorizes), storing each `e` when
//!    softmax is wanted;
//! 3. softmax: `out ← e · (1/s)`; log-softmax: `out = (x − m)/T − ln s` (no exp).
//!
//! Passes 1 and 2 go a 1024-element block at a time ([`online`]): the block's max, then its
//! exp-sum while it is in L1, so the row comes from memory once, with the blocks two ahead
//! prefetched meanwhile. One exp per element: where a block raises the max, the sum so far
//! is rescaled once, and a softmax's stored terms are scaled per run of blocks at the end
//! (the element-wise online softmax of Milakov & Gimelshein needs a second exp for the
//! output). Then `T·lse(x/T) = m + T·ln s`. Cross-entropy (ce_stats.rs) reads its rows the
//! same way, its gradient rows of one block excepted. The read-only ops (logsumexp, the
//! loss-only cross-entropy) skip pass 1 where they can: a block is summed against the
//! running max without its own max, and kept where its sum shows that held ([`online`]'s
//! guess); `m` is then a reference at most the max.
//!
//! # Budget per element (AVX-512 build, f32, measured on this project's machine kind: two
//! Zen 4 cores at 2.6 GHz, no hardware counters in the VM, so counts are from the loops'
//! instructions and rates from `smoothmax bench`)
//!
//! Vector instructions per 16 elements, each a 512-bit op (Zen 4 runs it as two 256-bit
//! halves on its four FP pipes):
//!
//! | pass | loads | arithmetic | stores |
//! |---|---|---|---|
//! | max and `\|bits\|` (skipped where the read-only ops' guess holds: [`online`]) | 1 | max, and, unsigned max: 3 | 0 |
//! | exp-sum | 1 | `x − m` (fma), `·c·log₂e`, exp2 (round, subtract, 6 fma, scale: 9, and a compare where the block's exponents may fall below −126: `exp::bounded_row`), add: 12-13 | 0 (softmax: 1) |
//! | cross-entropy linear sum, fused into the exp-sum | 0 (`k̂`: 1) | add of the exponent's own `x − m`: 1 (`k̂`: multiply, add: 2); a block with −inf takes the separate loop | 0 |
//! | softmax / log-softmax write | 1 (L2) | 1-2 | 1 (streamed) |
//!
//! Against the floors, at `[4096, 32000]` (Zen 4): the row-sum yardstick reads 524 MB in
//! 15.5-16 ms (33 GB/s, 4.1 G floats/s per core), and one core sums `e^x` over an
//! L1-resident row at 6.3 G/s. So the exp pass alone runs at 1.5× memory speed and a
//! logsumexp reaches the memory floor only where its arithmetic overlaps the row's arrival:
//! read once, 16.4-16.6 ms (the two-pass form, max from memory then exp-sum from L2, took
//! 21.7-23 ms). The cross-entropy forward adds the linear sum (19 instructions per 16
//! elements in all) and its per-row work (the row's loss in f64, a logarithm): 1.15-1.25×
//! logsumexp's time on one core with the rows in cache (1000 columns). On an Intel host of
//! the same kind (two Sapphire-Rapids-class vCPUs, 26 GB/s memcpy) the overlap needed the
//! prefetch ([`PREFETCH_BLOCKS`]), and softmax / log-softmax gained the most from the one
//! read: at `[512, 128256]` softmax 26.6-28.9 ms to 21.5-22.1, log-softmax 25.6-26.5 to
//! 19.6-20.8, against a memcpy's 19.5-20.2. When the machine's
//! memory runs faster (it does, at times, at 50 GB/s) every op here is bound by arithmetic;
//! the figures and the other builds: docs/bench-history.md.

use super::arith::{stream_f32_rows, Arith};
use super::exp::bounded_row;
use super::lanes::SUM_BLOCK;
use crate::element::{DType, Element};
use crate::scale::{ExpScale, RowScale};

/// `|bits|` at or above this: a non-finite value.
pub(crate) const INF_BITS: u32 = 0x7f80_0000;

/// What decides a row's normalizer.
#[derive(Copy, Clone, Debug, PartialEq)]
pub(crate) struct RowStats {
    /// Max of the finite values (`f32::MIN` when there is none), or, where [`online`]
    /// guessed, a reference at most that max (`s` is against it).
    pub m: f32,
    /// `Σ e^{(x − m)/T}` (0 when no finite value).
    pub s: f32,
    pub nan: bool,
    pub pos_inf: bool,
}

impl RowStats {
    /// `m + T · ln s`, or the table's answer for a non-finite row. For `T > 1` it is
    /// `T·(m/T + ln s)`: `T·ln s` alone can overflow where the sum does not (three values of
    /// −3e38 at `T = 3e38` give 0.74e38), and `m/T` cannot.
    #[inline(always)]
    pub fn logsumexp(&self, t: f32) -> f32 {
        if self.nan {
            f32::NAN
        } else if self.pos_inf {
            f32::INFINITY
        } else if self.s == 0.0 {
            f32::NEG_INFINITY
        } else if t > 1.0 {
            t * (self.m / t + self.s.ln())
        } else {
            self.m + t * self.s.ln()
        }
    }
}

/// Pass 1: the max of the values (NaN and −inf never win a `>`), plus NaN / +inf flags and
/// the largest `|x|`'s bits (at or above [`INF_BITS`] where the row holds a non-finite value
/// at all: with neither flag set, a −inf).
#[inline(always)]
pub(crate) fn row_max_flags<A: Arith, E: Element>(x: &[E]) -> (f32, bool, bool, u32) {
    let (mut m, abits) = A::max_and_abs_bits(x);
    let (mut nan, mut pos_inf) = (false, false);
    if abits >= INF_BITS {
        // Rare: classify. −inf is harmless (e^{−inf} = 0); NaN and +inf decide the row.
        nan = x.iter().any(|v| v.to_f32().is_nan());
        pos_inf = x.iter().any(|v| v.to_f32() == f32::INFINITY);
    }
    if m == f32::INFINITY {
        m = f32::MIN; // only reachable with pos_inf set; keep m finite
    }
    (m, nan, pos_inf, abits)
}

/// [`row_max_flags`] without the largest `|x|`'s bits.
#[inline(always)]
pub(crate) fn row_max<A: Arith, E: Element>(x: &[E]) -> (f32, bool, bool) {
    let (m, nan, pos_inf, _) = row_max_flags::<A, E>(x);
    (m, nan, pos_inf)
}

/// Pass 2: `Σ e^{κ(x − m)}`, also storing each term into `store` when given; `next` is
/// the following row (prefetched, where the build can), or empty. Blocked (see `lanes::SUM_BLOCK`).
#[inline(always)]
pub(crate) fn exp_sum<A: Arith, E: Element>(
    x: &[E],
    sc: &RowScale,
    store: Option<&mut [f32]>,
    next: &[f32],
) -> f32 {
    A::exp_sum(x, sc, store, next)
}

/// Elements per block of [`row_stats`]'s single read: 4 KB of f32, well inside L1, so the
/// block's second look (its exp-sum after its max) hits L1.
pub(crate) const ONLINE_BLOCK: usize = 1024;

/// One block of a one-read pass ([`online`]): its elements, its first column, the running
/// max before it and with it, and its max pass's largest `|bits|` (a non-finite pattern is a
/// −inf, NaN and +inf having been ruled out), `None` for a guessed block: its max was not
/// read, `m` (then `m_prev` too) is a reference that may lie below its values or above all of
/// them, and any value may be non-finite. A guessed block is summed by
/// `Arith::exp_sums_unchecked`, and its sums count, and the closure commits anything else,
/// only where [`kept`] accepts the exp sum (and, with a linear sum, that sum is finite: a
/// −inf makes it non-finite); the closure returns the exp sum either way (NaN where it
/// rejects the block for its linear sum), and `online` sums a rejected block again, checked.
pub(crate) struct OnlineBlock<'a, E> {
    pub x: &'a [E],
    pub j0: usize,
    pub m_prev: f32,
    pub m: f32,
    pub abits: Option<u32>,
    /// The f32 words [`PREFETCH_BLOCKS`] blocks further on, to prefetch while this block is
    /// summed (`&[]` past the rows the caller passed).
    pub ahead: &'a [f32],
}

/// How far ahead of the block being summed a one-read pass prefetches, in blocks. The max
/// pass reads its block from memory and the exp-sum then computes on it from L1; without a
/// prefetch the memory sits idle during that arithmetic, where with one the next blocks
/// arrive meanwhile. Measured (AVX-512, two threads, three runs each): logsumexp at
/// `[4096, 32000]` 32.8 → 28.8 ms one block ahead, 26.7 two ahead, 26.9 four ahead.
pub(crate) const PREFETCH_BLOCKS: usize = 2;

/// The largest exp sum of a guessed block that [`online`] keeps: `2^12`. Each of its terms
/// is then at most `2^12`, so the row's max lies at most `12/(κ·log₂e)` (8.3 at `T = 1`)
/// above the reference. What that costs in accuracy, against the checked form, whose largest
/// terms have exponents near 0: a term's exponent `(x − m)·κ` carries relative errors from
/// its forming (`x − m`, then `·c·log₂e`, rounded `ε/2` each, and `c·log₂e` itself rounded
/// from `κ`, up to `ε` where `1/T` is not exact), so the largest terms' relative error grows by
/// up to `2·ε` for each nat the reference lies below them, about `17·ε` (`9·ε` at `T = 1`);
/// and `ln s` grows by up to 8.3, so its f32 rounding and the product `T·ln s` add about
/// `8·ε·T`. About `25·ε` in all, inside the contract's `32·ε` for the exponential, the
/// logarithm and the final rounding (lib.rs, "Accuracy"); the sum's own rounding, relative,
/// does not change. `2^16`, measured as fast on the bench's rows, would allow about `35·ε`;
/// below `2^10` a block of values all equal to the reference (its sum 1024) would not pass.
pub(crate) const GUESSED_SUM_MAX: f64 = 4096.0;

/// Whether [`online`] keeps a guessed block with the exp sum `s`: at most
/// [`GUESSED_SUM_MAX`] (so not NaN, not +inf).
#[inline(always)]
pub(crate) fn kept(s: f64) -> bool {
    s <= GUESSED_SUM_MAX
}

/// The shortest row [`online`] guesses on: below it the max pass is a small part of a row's
/// work.
const GUESS_MIN: usize = 64;

/// After this many guessed blocks of a row are sent back, [`online`] stops guessing in that
/// row: a row whose max rises past the bound in every block (ascending values, a small `T`)
/// would otherwise sum every block twice.
const GUESS_MISSES: usize = 2;

/// The whole f32 words that `r`'s bytes span, or `&[]` where `r` does not start on a word
/// (which only skips a prefetch): prefetches take addresses only, so half rows are passed
/// this way.
#[inline(always)]
pub(crate) fn words<E: Element>(r: &[E]) -> &[f32] {
    let bytes: &[u8] = bytemuck::cast_slice(r);
    bytemuck::try_cast_slice(&bytes[..bytes.len() / 4 * 4]).unwrap_or(&[])
}

/// The f32 words of the `len` elements `at` elements from the start of row `x`, which
/// `after` (the words of the rows after it, in `E`'s units) continues. A window that crosses
/// the row's end is taken from the start of the rows after instead: the rest of this row lies
/// in pages the hardware's streamer is already reading in order, the next row's start in one
/// it has not reached.
#[inline(always)]
fn ahead_words<'a, E: Element>(x: &'a [E], after: &'a [f32], at: usize, len: usize) -> &'a [f32] {
    if let Some(r) = x.get(at..at + len) {
        return words(r);
    }
    let per_word = 4 / E::DTYPE.size();
    let from = at.saturating_sub(x.len()) / per_word;
    after
        .get(from..)
        .map_or(&[], |a| &a[..a.len().min(len / per_word)])
}

/// Starts a new run of blocks where a block is summed against a new running max `m` (its
/// first column `j0`): the runs a stored row's terms are scaled by ([`run_factor`]).
#[inline(always)]
pub(crate) fn mark_run(runs: &mut Vec<(usize, f32)>, j0: usize, m: f32) {
    if runs.last().is_none_or(|r| r.1 != m) {
        runs.push((j0, m));
    }
}

/// The factor that takes a run's stored terms `e^{κ(x − m_k)}` to `e^{κ(x − m)}/s`:
/// `e^{κ(m_k − m)}/s`, formed in f64 and rounded once (`1/s` for the last run, `m_k = m`).
#[inline(always)]
pub(crate) fn run_factor(mk: f32, m: f32, kappa: f64, s: f64) -> f32 {
    (((mk as f64 - m as f64) * kappa).exp() / s) as f32
}

/// The one-read skeleton of the statistics passes: a block of [`ONLINE_BLOCK`] elements at a
/// time, the block's max, then `block` (its exp-sum against the running max `m`, and whatever
/// else the caller sums) while the block is in L1. Where a block raises the max, the sum so
/// far is rescaled by `e^{κ(m_old − m_new)}` in f64 (Milakov & Gimelshein's online softmax, a
/// block at a time rather than an element at a time, so one exp per element as in the
/// two-pass form). The terms are the two-pass form's terms rounded against an earlier max
/// and then scaled exactly in f64: the same error per term. `None` when a block holds NaN or
/// +inf: the caller classifies the row over its whole length (rare), an answer that does not
/// depend on the sum.
///
/// The read-only ops (logsumexp, cross-entropy forward) need nothing else from the row;
/// softmax and log-softmax read it once more, from cache, for their output. The two-pass
/// form read it twice before that (the max from memory, the exp-sum from L2) and could not
/// overlap the memory-bound pass with the exp-bound one. `after` is the rows after this one
/// (f32 words, for the prefetch, or `&[]`).
///
/// With `guess` (callers that need only `m + ln s/κ` and sums taken against the same `m`,
/// not `m` as the row's max: logsumexp and the cross-entropy forward) and a build that has
/// `Arith::exp_sums_unchecked`, a block is first summed without its max pass, against the
/// running max, the first block against the max of the row's first 32 values: the max pass
/// is a load and three instructions of the block's 16-17 per sixteen values, and its reads
/// are the ones the exp pass waits for. The block is kept where [`kept`] accepts its sum,
/// and summed again, checked, where not: where the sum passes `2^12` (a value more than
/// `12/(κ·log₂e)` above the reference, 8.3 at `T = 1`, or many values a little less far)
/// or is NaN or +inf (a NaN or +inf among the values: the checked pass then classifies the
/// row). After [`GUESS_MISSES`] such blocks the row's other blocks are checked. `m` is then
/// the last reference, at most the row's max. The worst case, a row sent back twice, sums
/// two blocks twice; a row whose first 32 values lie far below the values after them (a
/// vocabulary's rare tokens first) sends its first block back once. Measured (AVX-512, two threads,
/// interleaved rounds, time over the row-sum yardstick's, before → after), logsumexp: 1.20 →
/// 0.98 at `[512, 128256]`, 1.16 → 1.00 at `[4096, 32000]`, 1.15 → 1.06 at `[65536, 1000]`;
/// the cross-entropy forward without a linear sum 1.21 → 1.00, 1.17 → 1.00, 1.24 → 1.15; with
/// label smoothing (a linear sum) no change beyond the rounds' spread (1.18 → 1.24, 1.16 →
/// 1.11, 1.28 → 1.26).
#[inline(always)]
pub(crate) fn online<A: Arith, E: Element>(
    x: &[E],
    after: &[f32],
    kappa: f64,
    guess: bool,
    mut block: impl FnMut(OnlineBlock<'_, E>) -> f64,
) -> Option<(f32, f64)> {
    let mut guess = guess && A::UNCHECKED;
    let (mut m, mut s, mut misses) = (f32::MIN, 0.0f64, 0);
    if guess && x.len() >= GUESS_MIN {
        let (g, bits) = A::max_and_abs_bits(&x[..32]);
        if bits < INF_BITS {
            m = g;
        }
    }
    for (k, b) in x.chunks(ONLINE_BLOCK).enumerate() {
        let at = (k + PREFETCH_BLOCKS) * ONLINE_BLOCK;
        let ahead = ahead_words(x, after, at, b.len());
        let j0 = k * ONLINE_BLOCK;
        if guess && m > f32::MIN {
            let sb = block(OnlineBlock {
                x: b,
                j0,
                m_prev: m,
                m,
                abits: None,
                ahead,
            });
            #[cfg(test)]
            counts::add(kept(sb));
            if kept(sb) {
                s += sb;
                continue;
            }
            misses += 1;
            guess = misses < GUESS_MISSES;
        }
        let (bm, abits) = A::max_and_abs_bits(b);
        if abits >= INF_BITS
            && b.iter()
                .any(|v| v.to_f32().is_nan() || v.to_f32() > f32::MAX)
        {
            return None;
        }
        let m_prev = m;
        if bm > m {
            if s != 0.0 {
                s *= ((m as f64 - bm as f64) * kappa).exp();
            }
            m = bm;
        }
        s += block(OnlineBlock {
            ahead,
            x: b,
            j0,
            m_prev,
            m,
            abits: Some(abits),
        });
    }
    Some((m, s))
}

/// The row's statistics in one read of the row from memory ([`online`], guessing with
/// `guess`: `m` is then not necessarily the max); a row with NaN or +inf is classified by
/// [`row_max`].
#[inline(always)]
pub(crate) fn row_stats<A: Arith, E: Element>(
    x: &[E],
    after: &[f32],
    es: &ExpScale,
    guess: bool,
) -> RowStats {
    // κ as the terms are formed: `c·h` (the CPU callers fold no log₂e into `c`).
    let kappa = es.c as f64 * es.h as f64;
    let sum = |b: OnlineBlock<'_, E>| match b.abits {
        Some(abits) => exp_sum::<A, E>(b.x, &bounded_row(es, b.m, abits), None, b.ahead) as f64,
        None => A::exp_sums_unchecked(b.x, &es.row(b.m), None, b.ahead).0,
    };
    match online::<A, E>(x, after, kappa, guess, sum) {
        Some((m, s)) => RowStats {
            m,
            s: s as f32,
            nan: false,
            pos_inf: false,
        },
        None => {
            let (m, nan, pos_inf) = row_max::<A, E>(x);
            RowStats {
                m,
                s: 0.0,
                nan,
                pos_inf,
            }
        }
    }
}

/// `out` as f32 when `O` is f32.
#[inline(always)]
fn as_f32<O: Element>(out: &mut [O]) -> Option<&mut [f32]> {
    (O::DTYPE == DType::F32).then(|| bytemuck::cast_slice_mut(out))
}

/// Softmax (or log-softmax) of one row at the temperature `es` was made for, into `out`;
/// `buf` holds the row's f32 terms when `out` is not f32 or is streamed through it
/// (`stream_f32_rows`), `runs` the softmax's runs of blocks; `next`: the rows after this one
/// (prefetched); `stream`: see `Arith::affine_into`.
#[inline(always)]
pub(crate) fn softmax_row<A: Arith, E: Element, O: Element>(
    x: &[E],
    next: &[f32],
    out: &mut [O],
    (buf, runs): (&mut Vec<f32>, &mut Vec<(usize, f32)>),
    es: &ExpScale,
    log: bool,
    stream: bool,
) {
    if log {
        // Not guessed: the largest values' `(x − m)/T − ln s`, near 0 for a peaked row, keeps
        // its relative precision only against the max (both terms then small).
        let st = row_stats::<A, E>(x, next, es, false);
        if st.nan || st.pos_inf {
            out.fill(O::from_f32(f32::NAN));
            return;
        }
        let (m, s) = (st.m, st.s);
        let sc = es.row(m);
        if s == 0.0 {
            out.fill(O::from_f32(f32::NAN)); // no finite value
            return;
        }
        let ln_s = s.ln();
        // (x − m)/T − ln s: exact under a large common shift, −inf stays −inf.
        if !sc.tiny {
            A::affine_into(x, [sc.h, sc.mh, sc.c_log, -ln_s], out, stream);
            return;
        }
        let mut tmp = [0.0f32; SUM_BLOCK];
        A::f32_blocks(x, |j, b| {
            for (d, &v) in tmp.iter_mut().zip(b) {
                *d = ((v - m) * sc.h) * sc.c_log - ln_s;
            }
            A::narrow(&tmp[..b.len()], &mut out[j..j + b.len()], false);
        });
        return;
    }
    // Softmax: the terms stored (into the output row itself, in cache, or into `buf` for a
    // streamed or half output) in the same one read, each block's against the running max
    // it was summed at; then each run of blocks sharing a max is scaled by
    // `e^{κ(m_k − m)}/s` into the output. A term `e^{κ(x − m_k)}` is at most 1 (`m_k ≥ x`)
    // and is rounded once, as the two-pass form's; the factor is formed in f64 and rounded
    // once, as `1/s` was. `runs` holds each run's first column and max.
    let in_place = as_f32(out).filter(|_| !stream_f32_rows::<A>(stream, x.len()));
    let via_buf = in_place.is_none();
    let kappa = es.c as f64 * es.h as f64;
    runs.clear();
    let stats = {
        let terms: &mut [f32] = match in_place {
            Some(o) => o,
            None => {
                buf.resize(x.len(), 0.0);
                buf
            }
        };
        // Not guessed (every block checked): the stored terms are at most 1.
        online::<A, E>(x, next, kappa, false, |b| {
            mark_run(runs, b.j0, b.m);
            let t = &mut terms[b.j0..b.j0 + b.x.len()];
            let abits = b.abits.unwrap_or(INF_BITS);
            exp_sum::<A, E>(b.x, &bounded_row(es, b.m, abits), Some(t), b.ahead) as f64
        })
    };
    let (m, s) = match stats {
        Some((m, s)) if s != 0.0 => (m, s),
        // NaN or +inf in the row, or no finite value.
        _ => return out.fill(O::from_f32(f32::NAN)),
    };
    for (k, &(j0, mk)) in runs.iter().enumerate() {
        let j1 = runs.get(k + 1).map_or(x.len(), |r| r.0);
        let f = run_factor(mk, m, kappa, s);
        if via_buf {
            A::scale_into(&buf[j0..j1], f, &mut out[j0..j1], stream);
        } else if let Some(o) = as_f32(out) {
            for v in &mut o[j0..j1] {
                *v *= f;
            }
        }
    }
}

/// How many blocks [`online`] guessed on this thread, and how many of them it kept (for the
/// tests that show which rows take the guess).
#[cfg(test)]
pub(crate) mod counts {
    use std::cell::Cell;

    thread_local! {
        static GUESSED_KEPT: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
    }

    pub(super) fn add(kept: bool) {
        GUESSED_KEPT.with(|c| {
            let (g, k) = c.get();
            c.set((g + 1, k + kept as usize));
        });
    }

    /// `(guessed, kept)` since the last call, which resets them.
    pub(crate) fn take() -> (usize, usize) {
        GUESSED_KEPT.with(|c| c.replace((0, 0)))
    }
}
