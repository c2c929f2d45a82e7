//! What each CPU build runs for the row kernels' hot loops: the AVX-512 intrinsic loops
//! (avx512/) in the AVX-512 build (`Fused512`), the AVX2 + FMA ones (avx2/) in the AVX2
//! build (`Fused`), the portable lane loops (lanes.rs) in the baseline build (`Separate`).
//! Generic kernels take `A: Arith` and get both the multiply-add and the loops.
//!
//! The loops read rows of any element type. The AVX-512 loops widen f16 / bf16 in registers
//! as they load and narrow as they store; the others widen `SUM_BLOCK` elements at a time
//! into a buffer on the stack ([`Arith::f32_blocks`]), still inside the row's pass.

use super::exp::{Fma, Fused, Fused512, Separate};
use super::lanes::{self, SUM_BLOCK};
use super::lin_terms::Linear;
use crate::element::{DType, Element};
use crate::scale::RowScale;

/// A build's multiply-add and its row loops.
pub(crate) trait Arith: Fma {
    /// Whether the AVX2 + FMA intrinsic loops may be used.
    const SIMD: bool;
    /// Whether the build stores streamed outputs past the cache (`affine_into`'s `stream`):
    /// the AVX-512 build in every element type, the AVX2 build f32 rows into f32.
    const STREAMS: bool = false;

    /// Pass 1: the max of the values and the max of their `|bits|` (as f32).
    fn max_and_abs_bits<E: Element>(x: &[E]) -> (f32, u32);
    /// Pass 2: `Σ e^{κ(x − m)}`, storing each term into `store` when given.
    fn exp_sum<E: Element>(x: &[E], sc: &RowScale, store: Option<&mut [f32]>, next: &[f32]) -> f32;
    /// Pass 2 with the cross-entropy linear sum of `lin` in the same loop (`lin_terms`):
    /// `(Σ e, σ·Σ k̂·(x − m))`, or `None` where the build has no such loop. The caller checks
    /// [`Linear::fits`] (`x` finite and in range, `h = 1`) and that the exponent fits the
    /// base-2 loops (`exp::base2_fits`); `lin.k` is as long as `x`.
    #[inline(always)]
    fn exp_linear_sums<E: Element>(
        x: &[E],
        sc: &RowScale,
        lin: &Linear,
        store: Option<&mut [f32]>,
        next: &[f32],
    ) -> Option<(f64, f64)> {
        let _ = (x, sc, lin, store, next);
        None
    }
    /// Whether the build sums blocks whose max it has not read
    /// ([`Arith::exp_sums_unchecked`], for `rows::online`'s guessed blocks): the AVX-512
    /// build, whose exp keeps NaN and overflows to +inf, and the AVX2 one, whose exp keeps
    /// NaN and in this form clamps its exponent first (it builds `2^n` in the exponent bits).
    /// The portable exp's NaN is unspecified: the baseline build does not guess.
    const UNCHECKED: bool = false;

    /// Pass 2 over a block whose values were not read before: `(Σ e, σ·Σ k̂·(x − m))` against
    /// `sc`'s reference `m`, which may lie below some of them (the linear sum 0 without
    /// `lin`), in a form from which the caller tells whether they hold (avx512/'s
    /// `exp_sums_unchecked` says how: a NaN, +inf or overflowing value gives a non-finite or
    /// huge exp sum, a −inf a non-finite linear sum). NaN, which every caller rejects, where
    /// the scale is not for the base-2 loops, where `lin` is given with `h ≠ 1`, and in the
    /// builds without [`Arith::UNCHECKED`] (which never call it).
    #[inline(always)]
    fn exp_sums_unchecked<E: Element>(
        x: &[E],
        sc: &RowScale,
        lin: Option<&Linear>,
        next: &[f32],
    ) -> (f64, f64) {
        let _ = (x, sc, lin, next);
        (f64::NAN, f64::NAN)
    }

    /// `dst ← fma(x, a, b)·c + d` (`[a, b, c, d] = k`) in `O` (round-to-nearest-even), each
    /// product-sum fused where the build has FMA. `stream`: the output is large and not read
    /// back soon, so a build that can may store it past the cache (see
    /// [`STREAM_MIN_BYTES`]); the caller then calls [`Arith::fence_streams`] before another
    /// thread may read it (as `scale_into` and `narrow`, which come here).
    #[inline(always)]
    fn affine_into<E: Element, O: Element>(x: &[E], k: [f32; 4], dst: &mut [O], stream: bool) {
        Self::affine_patched_into(x, k, dst, stream, None)
    }
    /// [`Arith::affine_into`] with `v` at `j` in place of its result (`patch = Some((j, v))`,
    /// `j` inside `dst`), placed as the row is written: a plain store into a line just
    /// streamed, after the fact, waits for the line to reach memory and reads it back
    /// (measured: cross-entropy forward+backward at `[65536, 1000]` through the row buffer,
    /// two threads, 29.8-30.5 ms with the target's gradient stored after the row, 25.2-25.5
    /// placed in the store). The builds' own loops are here; `affine_into` calls this one.
    #[inline(always)]
    fn affine_patched_into<E: Element, O: Element>(
        x: &[E],
        k: [f32; 4],
        dst: &mut [O],
        stream: bool,
        patch: Option<(usize, f32)>,
    ) {
        let _ = stream;
        affine_by_blocks::<Self, E, O>(x, k, dst, patch)
    }
    /// Makes the rows this thread streamed (`stream` above) visible to other threads: once
    /// per block of rows, at its end (a fence per row cost more than the streaming saved on
    /// short rows: log-softmax of `[262144, 100]` took 35 ms against a memcpy's 8).
    #[inline(always)]
    fn fence_streams() {
        #[cfg(target_arch = "x86_64")]
        if Self::STREAMS {
            // SAFETY: SSE is part of x86_64.
            unsafe { std::arch::x86_64::_mm_sfence() }
        }
    }
    /// `dst ← src · s` in `O` (round-to-nearest-even).
    #[inline(always)]
    fn scale_into<O: Element>(src: &[f32], s: f32, dst: &mut [O], stream: bool) {
        // Adding −0 keeps every value, −0 included.
        Self::affine_into(src, [s, -0.0, 1.0, -0.0], dst, stream)
    }
    /// `dst ← src` in `O` (round-to-nearest-even).
    #[inline(always)]
    fn narrow<O: Element>(src: &[f32], dst: &mut [O], stream: bool) {
        Self::affine_into(src, [1.0, -0.0, 1.0, -0.0], dst, stream)
    }
    /// `dst ← src` widened exactly (`dst` as long as `src`).
    fn widen<E: Element>(src: &[E], dst: &mut [f32]) {
        E::widen(src, dst)
    }
    /// Calls `f(j, block)` on `x` as f32, `SUM_BLOCK` elements at a time (`j` is the block's
    /// first index): slices of `x` itself when it is f32, else widened into a buffer on the
    /// stack, which stays in L1 between the widening and `f`.
    #[inline(always)]
    fn f32_blocks<E: Element>(x: &[E], mut f: impl FnMut(usize, &[f32])) {
        if E::DTYPE == DType::F32 {
            let x: &[f32] = bytemuck::cast_slice(x);
            for (k, b) in x.chunks(SUM_BLOCK).enumerate() {
                f(k * SUM_BLOCK, b);
            }
            return;
        }
        let mut buf = [0.0f32; SUM_BLOCK];
        for (k, b) in x.chunks(SUM_BLOCK).enumerate() {
            Self::widen(b, &mut buf[..b.len()]);
            f(k * SUM_BLOCK, &buf[..b.len()]);
        }
    }
}

/// [`Arith::affine_patched_into`] in any build that does not stream: a block of `x` at a time
/// as f32 (`f32_blocks`), written straight into an f32 output, through a stack buffer and
/// `O::narrow` into a half one; the patch stored after (the lines are in cache).
#[inline(always)]
fn affine_by_blocks<A: Arith, E: Element, O: Element>(
    x: &[E],
    k: [f32; 4],
    dst: &mut [O],
    patch: Option<(usize, f32)>,
) {
    let [a, b, c, d] = k;
    let f = |v: f32| A::fma(A::fma(v, a, b), c, d);
    if O::DTYPE == DType::F32 {
        // Straight into the output: no buffer, no copy.
        let dst: &mut [f32] = bytemuck::cast_slice_mut(dst);
        A::f32_blocks(x, |j, xb| {
            for (o, &v) in dst[j..j + xb.len()].iter_mut().zip(xb) {
                *o = f(v);
            }
        });
    } else {
        let mut tmp = [0.0f32; SUM_BLOCK];
        A::f32_blocks(x, |j, xb| {
            for (t, &v) in tmp.iter_mut().zip(xb) {
                *t = f(v);
            }
            O::narrow(&tmp[..xb.len()], &mut dst[j..j + xb.len()]);
        });
    }
    if let Some((j, v)) = patch {
        dst[j] = O::from_f32(v);
    }
}

/// The portable pass 2 (every build's path where the base-2 loops do not apply, the baseline
/// build's always), a block at a time.
#[inline(always)]
fn portable_exp_sum<A: Arith, E: Element>(
    x: &[E],
    sc: &RowScale,
    store: Option<&mut [f32]>,
) -> f32 {
    let sums = sums_by_blocks::<A, E>(x, store, &[], |_, b, o, _| {
        (lanes::exp_sum_portable::<A>(b, sc, o), 0.0)
    });
    sums.0 as f32
}

/// Outputs of at least this many bytes are stored past the cache by the builds that can
/// (non-temporal stores: [`Arith::STREAMS`]): a matrix that large leaves the caches before anyone
/// reads it, so fetching its lines first (the read-for-ownership a plain store does) only
/// costs bandwidth; measured on a `[4096, 32000]` bf16 softmax, 34 → 31 ms. Below it, the
/// output stays in cache for the caller.
pub(crate) const STREAM_MIN_BYTES: usize = 16 << 20;

/// The shortest f32 output row streamed through the row buffer ([`stream_f32_rows`]). Shorter
/// rows are formed in the output itself (in cache, its lines read for ownership). Measured
/// (AVX-512, two threads, fenced once per block of rows: `Arith::fence_streams`), in place
/// against through the buffer: `[131072, 256]` softmax 12.9 / 11.6 ms but cross-entropy
/// forward+backward 17.0 / 18.7 (its buffer holds the gradient through two more passes);
/// `[65536, 512]` 13.7 / 10.8 and 15.5 / 14.2; `[65536, 1000]` 24.9 / 19.0 and 27.8 / 23.6 (a
/// memcpy of the same bytes: 10.1, 10.2-10.7 and 20.1 ms): 512 is where both gain. The AVX2
/// build takes the same threshold, not measured on its own.
pub(crate) const STREAM_ROW_MIN: usize = 512;

/// Whether an f32 output row of `cols` elements goes through a row buffer so that it can be
/// streamed (`batch::half_out`, `rows::softmax_row`): only in the builds that stream, only
/// for a streamed output, and only for rows of at least [`STREAM_ROW_MIN`] elements.
#[inline(always)]
pub(crate) fn stream_f32_rows<A: Arith>(stream: bool, cols: usize) -> bool {
    stream && A::STREAMS && cols >= STREAM_ROW_MIN
}

/// [`Arith::max_and_abs_bits`] from an f32 loop, a block at a time.
#[inline(always)]
fn max_by_blocks<A: Arith, E: Element>(x: &[E], f: impl Fn(&[f32]) -> (f32, u32)) -> (f32, u32) {
    if E::DTYPE == DType::F32 {
        return f(bytemuck::cast_slice(x));
    }
    let (mut m, mut bits) = (f32::MIN, 0u32);
    A::f32_blocks(x, |_, b| {
        let (bm, bb) = f(b);
        m = if bm > m { bm } else { m };
        bits = bits.max(bb);
    });
    (m, bits)
}

/// [`Arith::exp_sum`] (and [`Arith::exp_linear_sums`]) from an f32 loop `f` returning one
/// or two sums: in one call on an f32 row, else a block at a time (block sums added in f64,
/// as the loops add theirs), each block with its first index and its parts of `store` and of
/// `next` (the part of the next row, in f32 words, that lies as far in as the block: a half
/// block spans half as many words as it has elements).
#[inline(always)]
fn sums_by_blocks<A: Arith, E: Element>(
    x: &[E],
    mut store: Option<&mut [f32]>,
    next: &[f32],
    mut f: impl FnMut(usize, &[f32], Option<&mut [f32]>, &[f32]) -> (f32, f32),
) -> (f64, f64) {
    if E::DTYPE == DType::F32 {
        let (s, a) = f(0, bytemuck::cast_slice(x), store, next);
        return (s as f64, a as f64);
    }
    let mut total = (0.0f64, 0.0f64);
    A::f32_blocks(x, |j, b| {
        let out = store.as_deref_mut().map(|o| &mut o[j..j + b.len()]);
        let w = (j * E::DTYPE.size() / 4).min(next.len());
        let end = (w + b.len() * E::DTYPE.size() / 4).min(next.len());
        let (s, a) = f(j, b, out, &next[w..end]);
        total = (total.0 + s as f64, total.1 + a as f64);
    });
    total
}

impl Arith for Fused {
    const SIMD: bool = cfg!(target_arch = "x86_64");
    const STREAMS: bool = cfg!(target_arch = "x86_64");
    const UNCHECKED: bool = cfg!(target_arch = "x86_64");

    #[inline(always)]
    fn exp_sums_unchecked<E: Element>(
        x: &[E],
        sc: &RowScale,
        lin: Option<&Linear>,
        next: &[f32],
    ) -> (f64, f64) {
        #[cfg(target_arch = "x86_64")]
        if super::exp::unchecked_fits(sc, lin.is_some()) {
            return sums_by_blocks::<Self, E>(x, None, next, |j, b, _, nb| {
                let bl = lin.map(|l| Linear {
                    sigma: l.sigma,
                    k: l.k.map(|k| &k[j..j + b.len()]),
                });
                // SAFETY: as below; the block's `k` is as long as the block.
                unsafe { super::avx2::exp_sums_unchecked(b, sc, bl.as_ref(), nb) }
            });
        }
        let _ = (x, sc, lin, next);
        (f64::NAN, f64::NAN)
    }

    /// f32 rows into f32 through the build's own loop (streamed when asked), the rest as the
    /// portable builds write them.
    #[inline(always)]
    fn affine_patched_into<E: Element, O: Element>(
        x: &[E],
        k: [f32; 4],
        dst: &mut [O],
        stream: bool,
        patch: Option<(usize, f32)>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if E::DTYPE == DType::F32 && O::DTYPE == DType::F32 {
            let (x, d) = (bytemuck::cast_slice(x), bytemuck::cast_slice_mut(dst));
            // SAFETY: `Fused` runs only where AVX2 + FMA were detected; equal lengths
            // (asserted there).
            return unsafe { super::avx2::affine_f32(x, k, d, stream, patch) };
        }
        let _ = stream;
        affine_by_blocks::<Self, E, O>(x, k, dst, patch)
    }

    #[inline(always)]
    fn max_and_abs_bits<E: Element>(x: &[E]) -> (f32, u32) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Fused` is only used inside functions compiled for (and called after
        // detecting) AVX2 + FMA.
        return max_by_blocks::<Self, E>(x, |b| unsafe { super::avx2::max_and_abs_bits(b) });
        #[cfg(not(target_arch = "x86_64"))]
        max_by_blocks::<Self, E>(x, lanes::max_and_abs_bits)
    }

    #[inline(always)]
    fn exp_sum<E: Element>(x: &[E], sc: &RowScale, store: Option<&mut [f32]>, next: &[f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if super::exp::base2_fits(sc) {
            let sums = sums_by_blocks::<Self, E>(x, store, next, |_, b, o, nb| {
                // SAFETY: as above.
                (unsafe { super::avx2::exp_sum(b, sc, o, nb) }, 0.0)
            });
            return sums.0 as f32;
        }
        let _ = next;
        portable_exp_sum::<Self, E>(x, sc, store)
    }

    #[inline(always)]
    fn exp_linear_sums<E: Element>(
        x: &[E],
        sc: &RowScale,
        lin: &Linear,
        store: Option<&mut [f32]>,
        next: &[f32],
    ) -> Option<(f64, f64)> {
        #[cfg(target_arch = "x86_64")]
        {
            let sums = sums_by_blocks::<Self, E>(x, store, next, |j, b, o, nb| {
                let bl = Linear {
                    sigma: lin.sigma,
                    k: lin.k.map(|k| &k[j..j + b.len()]),
                };
                // SAFETY: as above; the caller checked the domain, and the block's `k` and
                // output are as long as the block.
                unsafe { super::avx2::exp_linear_sums(b, sc, &bl, o, nb) }
            });
            Some(sums)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (x, sc, lin, store, next);
            None
        }
    }
}

impl Arith for Fused512 {
    const SIMD: bool = cfg!(target_arch = "x86_64");
    const STREAMS: bool = cfg!(target_arch = "x86_64");
    const UNCHECKED: bool = cfg!(target_arch = "x86_64");

    #[inline(always)]
    fn exp_sums_unchecked<E: Element>(
        x: &[E],
        sc: &RowScale,
        lin: Option<&Linear>,
        next: &[f32],
    ) -> (f64, f64) {
        #[cfg(target_arch = "x86_64")]
        if super::exp::unchecked_fits(sc, lin.is_some()) {
            // SAFETY: as above; `lin.k`'s length is asserted there.
            let (s, a) = unsafe { super::avx512::exp_sums_unchecked(x, sc, lin, next) };
            return (s as f64, a as f64);
        }
        let _ = (x, sc, lin, next);
        (f64::NAN, f64::NAN)
    }

    #[inline(always)]
    fn max_and_abs_bits<E: Element>(x: &[E]) -> (f32, u32) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Fused512` is only used inside functions compiled for (and called after
        // detecting) AVX-512F, AVX2 and FMA.
        return unsafe { super::avx512::max_and_abs_bits(x) };
        #[cfg(not(target_arch = "x86_64"))]
        max_by_blocks::<Self, E>(x, lanes::max_and_abs_bits)
    }

    #[inline(always)]
    fn exp_sum<E: Element>(x: &[E], sc: &RowScale, store: Option<&mut [f32]>, next: &[f32]) -> f32 {
        #[cfg(target_arch = "x86_64")]
        if super::exp::base2_fits(sc) {
            // SAFETY: as above.
            return unsafe { super::avx512::exp_sum(x, sc, store, next) };
        }
        let _ = next;
        portable_exp_sum::<Self, E>(x, sc, store)
    }

    #[inline(always)]
    fn exp_linear_sums<E: Element>(
        x: &[E],
        sc: &RowScale,
        lin: &Linear,
        store: Option<&mut [f32]>,
        next: &[f32],
    ) -> Option<(f64, f64)> {
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: as above; the caller checked the domain and `lin.k`'s length.
            let (s, a) = unsafe { super::avx512::exp_linear_sums(x, sc, lin, store, next) };
            Some((s as f64, a as f64))
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (x, sc, lin, store, next);
            None
        }
    }

    #[inline(always)]
    fn affine_patched_into<E: Element, O: Element>(
        x: &[E],
        k: [f32; 4],
        dst: &mut [O],
        stream: bool,
        patch: Option<(usize, f32)>,
    ) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; `dst` is as long as `x` (asserted there).
        unsafe {
            super::avx512::affine_into(x, k, dst, stream, patch)
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = stream;
            affine_by_blocks::<Self, E, O>(x, k, dst, patch)
        }
    }

    #[inline(always)]
    fn widen<E: Element>(src: &[E], dst: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above; `dst` is as long as `src` (asserted there).
        unsafe {
            super::avx512::widen(src, dst)
        }
        #[cfg(not(target_arch = "x86_64"))]
        E::widen(src, dst)
    }
}

impl Arith for Separate {
    const SIMD: bool = false;

    #[inline(always)]
    fn max_and_abs_bits<E: Element>(x: &[E]) -> (f32, u32) {
        max_by_blocks::<Self, E>(x, lanes::max_and_abs_bits)
    }

    #[inline(always)]
    fn exp_sum<E: Element>(
        x: &[E],
        sc: &RowScale,
        store: Option<&mut [f32]>,
        _next: &[f32],
    ) -> f32 {
        portable_exp_sum::<Self, E>(x, sc, store)
    }
}
