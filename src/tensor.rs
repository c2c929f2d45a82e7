//! Inputs of any shape `[d0, ..., C]` as the `[B, C]` rows the backends run on, and results
//! back in the caller's shape. Every op reduces over the last axis, so the leading axes are
//! merged into one: a view when their strides allow it (any standard-layout array, and any
//! view that slices only the last axis or the first), a row-major copy otherwise.

use crate::element::{DType, Element, MatrixView, Tensor, TensorView};
use crate::error::{Error, Result};
use ndarray::{ArrayD, CowArray, Ix2, IxDyn};

/// An input as rows: the `[B, C]` matrix and the leading shape (`B` is its product).
pub(crate) struct Rows<'a> {
    matrix: Flat<'a>,
    /// `[d0, ..., d_{n−2}]`.
    pub leading: Vec<usize>,
}

enum Flat<'a> {
    F32(CowArray<'a, f32, Ix2>),
    F16(CowArray<'a, half::f16, Ix2>),
    BF16(CowArray<'a, half::bf16, Ix2>),
}

fn flat<'a, E: Element>(a: &'a ndarray::ArrayViewD<'_, E>) -> Result<CowArray<'a, E, Ix2>> {
    let shape = a.shape();
    let (lead, cols) = match shape.split_last() {
        Some((&c, lead)) => (lead, c),
        None => {
            return Err(Error::InvalidInput(
                "a 0-dimensional input has no axis to reduce over: give at least [C]".into(),
            ))
        }
    };
    let rows = lead.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    let rows = rows.ok_or_else(|| Error::InvalidInput(format!("shape {shape:?} overflows")))?;
    a.to_shape((rows, cols))
        .map_err(|e| Error::InvalidInput(format!("shape {shape:?} as [{rows}, {cols}]: {e}")))
}

impl<'a> Rows<'a> {
    /// `x` as rows (a view where possible, else a copy).
    pub fn of(x: &'a TensorView<'_>) -> Result<Rows<'a>> {
        let leading = x.shape().split_last().map(|(_, l)| l.to_vec());
        let matrix = match x {
            TensorView::F32(a) => Flat::F32(flat(a)?),
            TensorView::F16(a) => Flat::F16(flat(a)?),
            TensorView::BF16(a) => Flat::BF16(flat(a)?),
        };
        Ok(Rows {
            matrix,
            leading: leading.unwrap_or_default(),
        })
    }

    /// The `[B, C]` view.
    pub fn view(&self) -> MatrixView<'_> {
        match &self.matrix {
            Flat::F32(a) => MatrixView::F32(a.view()),
            Flat::F16(a) => MatrixView::F16(a.view()),
            Flat::BF16(a) => MatrixView::BF16(a.view()),
        }
    }

    /// The leading shape followed by `tail` (`[C]` for a matrix output, `[]` per row).
    pub fn shape_with(&self, tail: &[usize]) -> Vec<usize> {
        self.leading.iter().chain(tail).copied().collect()
    }

    /// A per-row f32 result `[B]` in the leading shape.
    pub fn per_row(&self, v: ndarray::Array1<f32>) -> Result<ArrayD<f32>> {
        v.into_shape_with_order(IxDyn(&self.leading))
            .map_err(|e| Error::InvalidInput(format!("per-row result: {e}")))
    }
}

/// The output type a call asked for: `out`, else the input's.
pub(crate) fn out_dtype(out: Option<DType>, input: DType) -> DType {
    out.unwrap_or(input)
}

/// An f32 matrix result in `dtype` (narrowed where it is a half type).
pub(crate) fn narrow2(a: ndarray::Array2<f32>, dtype: DType) -> Tensor {
    Tensor::narrow(a.into_dyn(), dtype)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{s, Array3};

    /// Leading axes are merged without a copy wherever their strides allow it, and copied
    /// (row-major) only where they do not.
    #[test]
    fn rows_are_views_unless_the_layout_forbids() {
        let a = Array3::<f32>::from_shape_fn((2, 3, 4), |(i, j, k)| (i * 12 + j * 4 + k) as f32);
        let is_view = |v: TensorView| match Rows::of(&v).map(|r| r.matrix) {
            Ok(Flat::F32(c)) => c.is_view(),
            _ => panic!("f32 rows"),
        };
        assert!(is_view(a.view().into())); // contiguous
        assert!(is_view(a.slice(s![.., .., ..2]).into())); // columns sliced: rows strided
        assert!(is_view(a.slice(s![1.., .., ..]).into())); // first axis sliced
        assert!(!is_view(a.view().permuted_axes([1, 0, 2]).into())); // leading axes swapped
        let swapped: TensorView = a.view().permuted_axes([1, 0, 2]).into();
        let r = Rows::of(&swapped).unwrap();
        assert_eq!(r.leading, vec![3, 2]);
        let MatrixView::F32(m) = r.view() else {
            panic!()
        };
        assert_eq!(m.row(1).to_vec(), vec![12.0, 13.0, 14.0, 15.0]); // [0, 1] of the swapped view
    }
}
