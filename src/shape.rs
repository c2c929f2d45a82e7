//! What validation needs of an input matrix, wherever it lives: its shape. Host views have
//! it, and so do device matrices ([`crate::GpuMatrix`]), so one validation serves both.

use ndarray::ArrayView2;

/// A matrix's shape, `(rows, cols)`.
pub trait Shape {
    /// `(rows, cols)`.
    fn dim(&self) -> (usize, usize);
}

impl<E: crate::element::Element> Shape for ArrayView2<'_, E> {
    fn dim(&self) -> (usize, usize) {
        ArrayView2::dim(self)
    }
}
