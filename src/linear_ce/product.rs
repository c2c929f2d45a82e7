//! Matrix products on the host through the `gemm` crate (f32 for the CPU engine, f64 for the
//! reference), behind one safe function: ndarray views carry the shapes and strides (a
//! transposed operand is `.t()`), so no pointer arithmetic leaves this file.

use ndarray::{ArrayView2, ArrayViewMut2};

/// A float `gemm` multiplies (f32 or f64), with its 0 and 1.
pub(crate) trait GemmFloat: Copy + 'static {
    const ZERO: Self;
    const ONE: Self;
}
impl GemmFloat for f32 {
    const ZERO: f32 = 0.0;
    const ONE: f32 = 1.0;
}
impl GemmFloat for f64 {
    const ZERO: f64 = 0.0;
    const ONE: f64 = 1.0;
}

/// `dst = a·b`, or `dst += a·b` when `accumulate`. `a` is `[m, k]`, `b` `[k, n]`, `dst`
/// `[m, n]`, each with any strides. Shapes that do not chain are a bug in the caller: they
/// are checked and reported, never multiplied.
pub(crate) fn gemm<T: GemmFloat>(
    mut dst: ArrayViewMut2<T>,
    accumulate: bool,
    a: ArrayView2<T>,
    b: ArrayView2<T>,
) -> crate::Result<()> {
    let ((m, k), (k2, n)) = (a.dim(), b.dim());
    if k != k2 || dst.dim() != (m, n) {
        return Err(crate::Error::InvalidInput(format!(
            "internal: product of [{m}, {k}]·[{k2}, {n}] into {:?}",
            dst.dim()
        )));
    }
    if m == 0 || n == 0 {
        return Ok(());
    }
    if k == 0 {
        if !accumulate {
            dst.fill(T::ZERO);
        }
        return Ok(());
    }
    // On rayon's threads: the pool the CPU engine runs everything on.
    let par = gemm::Parallelism::Rayon(rayon::current_num_threads().max(1));
    let (ds, as_, bs) = (dst.strides().to_vec(), a.strides(), b.strides());
    // SAFETY: the three views are valid for their shapes and strides (ndarray guarantees it),
    // the shapes chain (checked above), and `dst` is borrowed mutably, so it aliases neither
    // operand. `gemm` reads and writes exactly the elements those shapes and strides address.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            ds[1],
            ds[0],
            accumulate,
            a.as_ptr(),
            as_[1],
            as_[0],
            b.as_ptr(),
            bs[1],
            bs[0],
            T::ONE,
            T::ONE,
            false,
            false,
            false,
            par,
        );
    }
    Ok(())
}
