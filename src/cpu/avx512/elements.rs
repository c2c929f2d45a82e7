//! Rows of any element type in and out of AVX-512 registers: f16 / bf16 widened exactly as
//! they are loaded, f32 results narrowed (round-to-nearest-even) as they are stored, and the
//! one-pass affine write every row op's last pass uses.

#![cfg(target_arch = "x86_64")]

use crate::element::{DType, Element};
use std::arch::x86_64::*;

/// Sixteen elements from `p`, widened exactly to f32: f16 with `vcvtph2ps`, bf16 by a shift
/// into the high half of each word.
///
/// # Safety
/// AVX-512F; `p` is valid for sixteen reads.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn load16<E: Element>(p: *const E) -> __m512 {
    // SAFETY (all arms): sixteen elements readable at `p` (caller), unaligned loads.
    unsafe {
        match E::DTYPE {
            DType::F32 => _mm512_loadu_ps(p as *const f32),
            DType::F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p as *const __m256i)),
            DType::BF16 => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(
                _mm256_loadu_si256(p as *const __m256i),
            ))),
        }
    }
}

/// Thirty-two elements from `p`, widened exactly, in an order of its choosing: for a pass
/// that only reduces them (a max, a sum). bf16 comes as one 64-byte load split into the
/// even elements (shifted up) and the odd ones (high halves kept): two instructions for
/// thirty-two elements where [`load16`] takes four.
///
/// # Safety
/// AVX-512F; `p` is valid for thirty-two reads.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn load32_any_order<E: Element>(p: *const E) -> (__m512, __m512) {
    // SAFETY (both arms): thirty-two elements readable at `p` (caller).
    unsafe {
        if E::DTYPE == DType::BF16 {
            let v = _mm512_loadu_si512(p as *const __m512i);
            (
                _mm512_castsi512_ps(_mm512_slli_epi32::<16>(v)),
                _mm512_castsi512_ps(_mm512_and_si512(v, _mm512_set1_epi32(-65536))),
            )
        } else {
            (load16(p), load16(p.add(16)))
        }
    }
}

/// Sixteen f32 values narrowed to a half type `O` (the sixteen 16-bit patterns), rounded to
/// nearest-even: f16 with `vcvtps2ph` (overflow to ±inf, NaN kept NaN), bf16 as
/// [`crate::element::bf16_bits`] does it (add `0x7fff` plus the lowest kept bit; NaN keeps its
/// high bits with the quiet bit set).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn narrow16<O: Element>(v: __m512) -> __m256i {
    match O::DTYPE {
        DType::F16 => _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v),
        _ => {
            let b = _mm512_castps_si512(v);
            let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
            let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(
                b,
                _mm512_add_epi32(lsb, _mm512_set1_epi32(0x7fff)),
            ));
            let abs = _mm512_and_si512(b, _mm512_set1_epi32(0x7fff_ffff));
            let nan = _mm512_cmpgt_epu32_mask(abs, _mm512_set1_epi32(0x7f80_0000));
            let quiet = _mm512_or_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(0x40));
            _mm512_cvtepi32_epi16(_mm512_mask_mov_epi32(rounded, nan, quiet))
        }
    }
}

/// `dst ← fma(x, a, b)·c + d`, read in `E`, narrowed to `O` (round-to-nearest-even): the
/// softmax's last pass (`x·(1/s)`), the log-softmax's (`fma(x, h, −m·h)·κ − ln s`) and a plain
/// conversion (`x`, with `b = d = −0`, which keeps every value and the sign of zeros), each
/// with its conversion in one. With `stream`, the stores bypass the cache (non-temporal,
/// whole 64-byte lines from the first aligned one): an output written once and not read back
/// soon then costs no read-for-ownership of its lines, as in a large memcpy. The caller
/// fences them (`Arith::fence_streams`) before another thread may read them. `patch =
/// Some((j, v))` writes `v` at `j` instead, in the same store (see `Arith::affine_patched_into`).
///
/// # Safety
/// The processor must have AVX-512F; `dst` is as long as `x`.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn affine_into<E: Element, O: Element>(
    x: &[E],
    [a, b, c, d]: [f32; 4],
    dst: &mut [O],
    stream: bool,
    patch: Option<(usize, f32)>,
) {
    assert_eq!(x.len(), dst.len());
    let (va, vb, vc, vd) = (
        _mm512_set1_ps(a),
        _mm512_set1_ps(b),
        _mm512_set1_ps(c),
        _mm512_set1_ps(d),
    );
    let (pj, pv) = patch.unwrap_or((usize::MAX, 0.0));
    // The sixteen results from column `i` (`p` = x + i), the patched one replaced.
    // SAFETY (callers of f): sixteen elements readable at `p`.
    let f = |i: usize, p: *const E| {
        // SAFETY: as the callers'.
        let v = unsafe { _mm512_fmadd_ps(_mm512_fmadd_ps(load16(p), va, vb), vc, vd) };
        match pj.wrapping_sub(i) {
            k @ 0..16 => _mm512_mask_mov_ps(v, 1 << k, _mm512_set1_ps(pv)),
            _ => v,
        }
    };
    let scalar = |v: &E| O::from_f32(v.to_f32().mul_add(a, b).mul_add(c, d));
    // Elements per 64-byte line.
    let line = 64 / O::DTYPE.size();
    let head = if stream {
        dst.as_ptr().align_offset(64).min(dst.len())
    } else {
        0
    };
    for (o, v) in dst[..head].iter_mut().zip(&x[..head]) {
        *o = scalar(v);
    }
    let n = head + (dst.len() - head) / line * line;
    for i in (head..n).step_by(line) {
        // SAFETY: i + line ≤ n ≤ both lengths; with `stream`, dst + i is 64-byte aligned.
        unsafe {
            let p = dst.as_mut_ptr().add(i);
            let v0 = f(i, x.as_ptr().add(i));
            if O::DTYPE == DType::F32 {
                if stream {
                    _mm512_stream_ps(p as *mut f32, v0);
                } else {
                    _mm512_storeu_ps(p as *mut f32, v0);
                }
                continue;
            }
            let v1 = f(i + 16, x.as_ptr().add(i + 16));
            let h = _mm512_inserti64x4::<1>(
                _mm512_castsi256_si512(narrow16::<O>(v0)),
                narrow16::<O>(v1),
            );
            if stream {
                _mm512_stream_si512(p as *mut __m512i, h);
            } else {
                _mm512_storeu_si512(p as *mut __m512i, h);
            }
        }
    }
    for (o, v) in dst[n..].iter_mut().zip(&x[n..]) {
        *o = scalar(v);
    }
    // A patch in the head or the tail (plain stores, not streamed) goes in after them.
    if let Some(o) = dst.get_mut(pj).filter(|_| pj < head || pj >= n) {
        *o = O::from_f32(pv);
    }
}

/// `dst ← src` widened exactly to f32.
///
/// # Safety
/// The processor must have AVX-512F; `dst` is as long as `src`.
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn widen<E: Element>(src: &[E], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len());
    let n = src.len() / 16 * 16;
    for i in (0..n).step_by(16) {
        // SAFETY: i + 16 ≤ n ≤ both lengths.
        unsafe { _mm512_storeu_ps(dst.as_mut_ptr().add(i), load16(src.as_ptr().add(i))) };
    }
    for (d, s) in dst[n..].iter_mut().zip(&src[n..]) {
        *d = s.to_f32();
    }
}
