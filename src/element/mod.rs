//! Element types: f32, and the half-precision storage types f16 and bf16 (`half::f16`,
//! `half::bf16`). Half inputs are widened exactly to f32 (every f16 and bf16 value is an f32
//! value) and every statistic is accumulated in f32 (f64 in the reference); outputs are
//! narrowed from the f32 result by round-to-nearest-even, with a result beyond the type's
//! range becoming the infinity of its sign (f16's largest finite value is 65504) and NaN
//! staying NaN. The narrowing is the same on every backend: the CPU rounds with the code
//! below (F16C `vcvtps2ph` through the `half` crate where the processor has it, for f16; the
//! bit arithmetic of [`bf16_bits`] for bf16), the GPU with the same integer arithmetic in WGSL
//! (shaders/half.wgsl; not `pack2x16float`, whose result WGSL leaves indeterminate past f16's
//! range).

use crate::error::{Error, Result};
use half::{bf16, f16};
use ndarray::{ArrayD, ArrayView2, ArrayViewD};

/// The element type of an input or an output.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Default)]
pub enum DType {
    /// IEEE binary32.
    #[default]
    F32,
    /// IEEE binary16: 10-bit mantissa, largest finite 65504.
    F16,
    /// bfloat16: f32's exponent range, 7-bit mantissa (the top half of an f32).
    BF16,
}

impl DType {
    /// Bytes per element.
    pub const fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F16 | DType::BF16 => 2,
        }
    }

    /// The name the CLI and the bench use (`f32`, `f16`, `bf16`).
    pub const fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
        }
    }

    /// The unit in the last place of the type at 1 (`2^−23`, `2^−10`, `2^−7`): a correctly
    /// rounded output is within half of it, relative to its value, of the f32 result.
    pub const fn epsilon(self) -> f64 {
        match self {
            DType::F32 => 1.0 / (1u64 << 23) as f64,
            DType::F16 => 1.0 / (1u64 << 10) as f64,
            DType::BF16 => 1.0 / (1u64 << 7) as f64,
        }
    }

    /// Every type, in order of width.
    pub const ALL: [DType; 3] = [DType::F32, DType::F16, DType::BF16];
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for DType {
    type Err = Error;
    fn from_str(s: &str) -> Result<DType> {
        DType::ALL
            .into_iter()
            .find(|d| d.name() == s)
            .ok_or_else(|| Error::InvalidInput(format!("unknown dtype {s:?}: f32, f16 or bf16")))
    }
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for half::f16 {}
    impl Sealed for half::bf16 {}
}

/// An element type smoothmax reads and writes: `f32`, `half::f16` or `half::bf16` (sealed).
pub trait Element:
    sealed::Sealed
    + Copy
    + Default
    + Send
    + Sync
    + PartialEq
    + std::fmt::Debug
    + bytemuck::Pod
    + 'static
{
    /// Which type this is.
    const DTYPE: DType;
    /// The exact f32 value.
    fn to_f32(self) -> f32;
    /// `v` rounded to nearest-even (overflow to ±inf, NaN kept NaN).
    fn from_f32(v: f32) -> Self;
    /// `dst[i] = src[i].to_f32()`, vectorized where the build can (`dst` at least as long).
    fn widen(src: &[Self], dst: &mut [f32]);
    /// `dst[i] = from_f32(src[i])`, vectorized where the build can (`dst` at least as long).
    fn narrow(src: &[f32], dst: &mut [Self]);
    /// The view, tagged with its type.
    #[doc(hidden)]
    fn tag_view(v: ArrayViewD<'_, Self>) -> TensorView<'_>;
    /// The matrix view, tagged with its type.
    #[doc(hidden)]
    fn tag_matrix(v: ArrayView2<'_, Self>) -> MatrixView<'_>;
    /// The array, tagged with its type.
    #[doc(hidden)]
    fn tag(a: ArrayD<Self>) -> Tensor;
    /// The array if `t` holds this type, else `t` back.
    #[doc(hidden)]
    fn untag(t: Tensor) -> std::result::Result<ArrayD<Self>, Tensor>;
}

/// The tagging functions of one type (one variant name of each enum).
macro_rules! tagged {
    ($variant:ident) => {
        #[inline]
        fn tag_view(v: ArrayViewD<'_, Self>) -> TensorView<'_> {
            TensorView::$variant(v)
        }
        #[inline]
        fn tag_matrix(v: ArrayView2<'_, Self>) -> MatrixView<'_> {
            MatrixView::$variant(v)
        }
        #[inline]
        fn tag(a: ArrayD<Self>) -> Tensor {
            Tensor::$variant(a)
        }
        #[inline]
        fn untag(t: Tensor) -> std::result::Result<ArrayD<Self>, Tensor> {
            match t {
                Tensor::$variant(a) => Ok(a),
                other => Err(other),
            }
        }
    };
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
    tagged!(F32);
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
    #[inline(always)]
    fn from_f32(v: f32) -> f32 {
        v
    }
    #[inline(always)]
    fn widen(src: &[f32], dst: &mut [f32]) {
        dst[..src.len()].copy_from_slice(src);
    }
    #[inline(always)]
    fn narrow(src: &[f32], dst: &mut [f32]) {
        dst[..src.len()].copy_from_slice(src);
    }
}

impl Element for f16 {
    const DTYPE: DType = DType::F16;
    tagged!(F16);
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> f16 {
        f16::from_f32(v)
    }
    /// F16C `vcvtph2ps` (8 at a time) where the processor has it, else `half`'s bit code.
    #[inline(always)]
    fn widen(src: &[f16], dst: &mut [f32]) {
        use half::slice::HalfFloatSliceExt;
        src.convert_to_f32_slice(&mut dst[..src.len()]);
    }
    /// F16C `vcvtps2ph` with round-to-nearest-even where the processor has it.
    #[inline(always)]
    fn narrow(src: &[f32], dst: &mut [f16]) {
        use half::slice::HalfFloatSliceExt;
        dst[..src.len()].convert_from_f32_slice(src);
    }
}

/// The bf16 bit pattern of `v`, rounded to nearest-even: add `0x7fff` plus the lowest kept
/// bit, then drop the low 16 bits. A carry out of the mantissa bumps the exponent, which is
/// what rounding up to the next binade (or to ±inf past `bf16::MAX`) means. NaN is kept NaN
/// (quiet bit set: truncating a NaN whose payload sits in the low bits would give ±inf).
#[inline(always)]
pub fn bf16_bits(v: f32) -> u16 {
    let b = v.to_bits();
    let rounded = (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16;
    if (b & 0x7fff_ffff) > 0x7f80_0000 {
        ((b >> 16) as u16) | 0x0040
    } else {
        rounded
    }
}

impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
    tagged!(BF16);
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f32::from_bits((self.to_bits() as u32) << 16)
    }
    #[inline(always)]
    fn from_f32(v: f32) -> bf16 {
        bf16::from_bits(bf16_bits(v))
    }
    /// A shift per element: compiles to vector shifts inside the calling kernel's build.
    #[inline(always)]
    fn widen(src: &[bf16], dst: &mut [f32]) {
        for (d, s) in dst.iter_mut().zip(src) {
            *d = f32::from_bits((s.to_bits() as u32) << 16);
        }
    }
    /// [`bf16_bits`] per element: branch-free, so it vectorizes like `widen`.
    #[inline(always)]
    fn narrow(src: &[f32], dst: &mut [bf16]) {
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = bf16::from_bits(bf16_bits(s));
        }
    }
}

/// Applies `$body` to the array inside any variant of a tagged enum, bound as `$a`, with
/// `$E` the element type (so generic code runs once per type).
macro_rules! with_dtype {
    ($enum:ident, $value:expr, |$a:ident: $E:ident| $body:expr) => {
        match $value {
            $crate::element::$enum::F32($a) => {
                #[allow(dead_code)]
                type $E = f32;
                $body
            }
            $crate::element::$enum::F16($a) => {
                #[allow(dead_code)]
                type $E = ::half::f16;
                $body
            }
            $crate::element::$enum::BF16($a) => {
                #[allow(dead_code)]
                type $E = ::half::bf16;
                $body
            }
        }
    };
}

pub(crate) use with_dtype;

/// A view of any shape `[d0, ..., C]` in any of the three element types: what the
/// type-erased entry points ([`crate::Backend::row_op_tensor`],
/// [`crate::Backend::cross_entropy_tensor`]) take. Build one with `.into()` from any
/// `ArrayView<E, D>`.
#[derive(Clone, Debug)]
pub enum TensorView<'a> {
    /// f32 elements.
    F32(ArrayViewD<'a, f32>),
    /// f16 elements.
    F16(ArrayViewD<'a, f16>),
    /// bf16 elements.
    BF16(ArrayViewD<'a, bf16>),
}

impl<'a, E: Element, D: ndarray::Dimension> From<ndarray::ArrayView<'a, E, D>> for TensorView<'a> {
    fn from(v: ndarray::ArrayView<'a, E, D>) -> Self {
        E::tag_view(v.into_dyn())
    }
}

impl TensorView<'_> {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorView::F32(_) => DType::F32,
            TensorView::F16(_) => DType::F16,
            TensorView::BF16(_) => DType::BF16,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        with_dtype!(TensorView, self, |a: E| a.shape())
    }
}

/// A `[B, C]` matrix view in any of the three element types: the rows a backend runs on
/// (N-D inputs arrive here with their leading dimensions merged).
#[derive(Clone, Debug)]
pub enum MatrixView<'a> {
    /// f32 elements.
    F32(ArrayView2<'a, f32>),
    /// f16 elements.
    F16(ArrayView2<'a, f16>),
    /// bf16 elements.
    BF16(ArrayView2<'a, bf16>),
}

impl<'a, E: Element> From<ArrayView2<'a, E>> for MatrixView<'a> {
    fn from(v: ArrayView2<'a, E>) -> Self {
        E::tag_matrix(v)
    }
}

impl MatrixView<'_> {
    /// The same view, reborrowed.
    pub fn view(&self) -> MatrixView<'_> {
        match self {
            MatrixView::F32(a) => MatrixView::F32(a.view()),
            MatrixView::F16(a) => MatrixView::F16(a.view()),
            MatrixView::BF16(a) => MatrixView::BF16(a.view()),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            MatrixView::F32(_) => DType::F32,
            MatrixView::F16(_) => DType::F16,
            MatrixView::BF16(_) => DType::BF16,
        }
    }

    /// `(rows, cols)`.
    pub fn dim(&self) -> (usize, usize) {
        with_dtype!(MatrixView, self, |a: E| a.dim())
    }

    /// Rows `r` (a view).
    pub(crate) fn slice_rows(&self, r: std::ops::Range<usize>) -> MatrixView<'_> {
        with_dtype!(MatrixView, self, |a: E| E::tag_matrix(
            a.slice(ndarray::s![r, ..])
        ))
    }

    /// The exact f32 values: the view itself for f32, a widened copy (vectorized) otherwise.
    pub fn to_f32(&self) -> ndarray::CowArray<'_, f32, ndarray::Ix2> {
        match self {
            MatrixView::F32(a) => a.view().into(),
            MatrixView::F16(a) => widen(a.view()).into(),
            MatrixView::BF16(a) => widen(a.view()).into(),
        }
    }
}

/// `a` widened to f32, row by row in parallel.
fn widen<E: Element>(a: ArrayView2<'_, E>) -> ndarray::Array2<f32> {
    use ndarray::parallel::prelude::*;
    let a = a.as_standard_layout();
    let mut out = ndarray::Array2::<f32>::zeros(a.dim());
    out.axis_iter_mut(ndarray::Axis(0))
        .into_par_iter()
        .zip(a.axis_iter(ndarray::Axis(0)))
        .for_each(|(mut o, r)| {
            if let (Some(o), Some(r)) = (o.as_slice_mut(), r.as_slice()) {
                E::widen(r, o);
            }
        });
    out
}

/// An owned array of any shape in any of the three element types: what the type-erased entry
/// points return. [`Tensor::into_typed`] gives the typed array back.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// f32 elements.
    F32(ArrayD<f32>),
    /// f16 elements.
    F16(ArrayD<f16>),
    /// bf16 elements.
    BF16(ArrayD<bf16>),
}

impl Tensor {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F16(_) => DType::F16,
            Tensor::BF16(_) => DType::BF16,
        }
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        with_dtype!(Tensor, self, |a: E| a.shape())
    }

    /// The array as `Array<E, D>`: an error naming both when the element type or the number
    /// of dimensions differs.
    pub fn into_typed<E: Element, D: ndarray::Dimension>(self) -> Result<ndarray::Array<E, D>> {
        let have = (self.dtype(), self.shape().len());
        let a = E::untag(self).map_err(|_| {
            Error::InvalidInput(format!("the result holds {}, not {}", have.0, E::DTYPE))
        })?;
        a.into_dimensionality::<D>()
            .map_err(|_| Error::InvalidInput(format!("the result has {} dimensions", have.1)))
    }

    /// A view of the whole array.
    pub fn view(&self) -> TensorView<'_> {
        with_dtype!(Tensor, self, |a: E| E::tag_view(a.view()))
    }

    /// The array as a `[B, C]` matrix view; an error unless it has two dimensions.
    pub fn matrix(&self) -> Result<MatrixView<'_>> {
        fn go<E: Element>(a: &ArrayD<E>) -> Result<MatrixView<'_>> {
            a.view()
                .into_dimensionality::<ndarray::Ix2>()
                .map(E::tag_matrix)
                .map_err(|_| {
                    Error::InvalidInput(format!("shape {:?} is not 2-D [B, C]", a.shape()))
                })
        }
        with_dtype!(Tensor, self, |a: E| go::<E>(a))
    }

    /// The exact f32 values (widened for f16 / bf16).
    pub fn to_f32(&self) -> ArrayD<f32> {
        with_dtype!(Tensor, self, |a: E| a.mapv(|v| v.to_f32()))
    }

    /// The same elements in shape `shape` (row-major; an error if the sizes differ).
    pub fn into_shape(self, shape: &[usize]) -> Result<Tensor> {
        fn go<E: Element>(a: ArrayD<E>, shape: &[usize]) -> Result<Tensor> {
            let a = if a.is_standard_layout() {
                a
            } else {
                a.as_standard_layout().into_owned()
            };
            a.into_shape_with_order(ndarray::IxDyn(shape))
                .map(E::tag)
                .map_err(|e| Error::InvalidInput(format!("reshape to {shape:?}: {e}")))
        }
        with_dtype!(Tensor, self, |a: E| go::<E>(a, shape))
    }

    /// `a` narrowed to `dtype` (round-to-nearest-even, see the module docs), in parallel.
    pub fn narrow(a: ArrayD<f32>, dtype: DType) -> Tensor {
        fn go<E: Element>(a: ArrayD<f32>) -> Tensor {
            use rayon::prelude::*;
            // (`as_standard_layout().into_owned()` would copy a standard array too.)
            let a = if a.is_standard_layout() {
                a
            } else {
                a.as_standard_layout().into_owned()
            };
            let mut out = ArrayD::<E>::from_elem(a.raw_dim(), E::default());
            if let (Some(o), Some(s)) = (out.as_slice_mut(), a.as_slice()) {
                o.par_chunks_mut(1 << 14)
                    .zip(s.par_chunks(1 << 14))
                    .for_each(|(o, s)| E::narrow(s, o));
            }
            E::tag(out)
        }
        match dtype {
            DType::F32 => Tensor::F32(a),
            DType::F16 => go::<f16>(a),
            DType::BF16 => go::<bf16>(a),
        }
    }
}

#[cfg(test)]
mod tests;
