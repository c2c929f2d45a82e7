//! An op's matrices on the GPU path: inputs from the host or the device ([`Matrix`]), outputs
//! to the host or the device ([`Out`]), as the launch path's sources and sinks.

use super::context::Context;
pub(crate) use super::launch::Place;
use super::launch::{to_host, Sink, Source};
use super::matrix::GpuMatrix;
use crate::element::{with_dtype, DType, Element, MatrixView, Tensor};
use crate::error::{Error, Result};
use crate::shape::Shape;
use ndarray::{Array2, ArrayD, ArrayView2, IxDyn};
use std::borrow::Cow;

/// A matrix an op reads: host data or a device-resident matrix, of any element type. Ops take
/// either (`ArrayView2<E>`, [`MatrixView`] and `&GpuMatrix` convert into it); on the CPU
/// backends only host data.
#[derive(Clone, Debug)]
pub enum Matrix<'a> {
    /// Host data, any layout (copied to a contiguous layout only when it is not one).
    Host(MatrixView<'a>),
    /// A device matrix, read where it lies.
    Device(&'a GpuMatrix),
}

impl Matrix<'_> {
    /// The same matrix, borrowed again.
    pub(crate) fn reborrow(&self) -> Matrix<'_> {
        match self {
            Matrix::Host(v) => Matrix::Host(v.view()),
            Matrix::Device(m) => Matrix::Device(m),
        }
    }

    /// `(rows, cols)`.
    pub fn dim(&self) -> (usize, usize) {
        match self {
            Matrix::Host(v) => v.dim(),
            Matrix::Device(m) => m.dim(),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Matrix::Host(v) => v.dtype(),
            Matrix::Device(m) => m.dtype(),
        }
    }

    /// The host data as f32, or an error naming `what` for a device matrix (the CPU
    /// backends) or for half-precision data (the surrogates, which read f32).
    pub fn host(&self, what: &str) -> Result<ArrayView2<'_, f32>> {
        match self {
            Matrix::Host(MatrixView::F32(v)) => Ok(v.view()),
            Matrix::Host(v) => Err(Error::InvalidInput(format!(
                "{what} holds {}: this op reads f32 here (Backend::surrogate_matrix widens)",
                v.dtype()
            ))),
            Matrix::Device(_) => Err(Error::InvalidInput(format!(
                "{what} is a device matrix: only the GPU backend reads those"
            ))),
        }
    }
}

impl<'a, E: Element> From<ArrayView2<'a, E>> for Matrix<'a> {
    fn from(v: ArrayView2<'a, E>) -> Self {
        Matrix::Host(v.into())
    }
}

impl<'a, E: Element> From<&'a Array2<E>> for Matrix<'a> {
    fn from(v: &'a Array2<E>) -> Self {
        Matrix::Host(v.view().into())
    }
}

impl<'a> From<MatrixView<'a>> for Matrix<'a> {
    fn from(v: MatrixView<'a>) -> Self {
        Matrix::Host(v)
    }
}

impl<'a> From<&'a GpuMatrix> for Matrix<'a> {
    fn from(m: &'a GpuMatrix) -> Self {
        Matrix::Device(m)
    }
}

/// A matrix a GPU op reads: host data (`ArrayView2<E>` for f32, f16 or bf16) or a device
/// matrix (`&GpuMatrix`).
pub trait GpuInput: Shape + Clone {
    /// The matrix, wherever it lives.
    fn matrix(&self) -> Matrix<'_>;
}

impl<E: Element> GpuInput for ArrayView2<'_, E> {
    fn matrix(&self) -> Matrix<'_> {
        Matrix::Host(self.view().into())
    }
}

impl GpuInput for MatrixView<'_> {
    fn matrix(&self) -> Matrix<'_> {
        Matrix::Host(self.view())
    }
}

impl GpuInput for Matrix<'_> {
    fn matrix(&self) -> Matrix<'_> {
        match self {
            Matrix::Host(v) => Matrix::Host(v.view()),
            Matrix::Device(m) => Matrix::Device(m),
        }
    }
}

impl Shape for Matrix<'_> {
    fn dim(&self) -> (usize, usize) {
        Matrix::dim(self)
    }
}

impl Shape for MatrixView<'_> {
    fn dim(&self) -> (usize, usize) {
        MatrixView::dim(self)
    }
}

impl GpuInput for &GpuMatrix {
    fn matrix(&self) -> Matrix<'_> {
        Matrix::Device(self)
    }
}

impl Shape for &GpuMatrix {
    fn dim(&self) -> (usize, usize) {
        GpuMatrix::dim(self)
    }
}

/// A [`Matrix`] ready to be a launch source: host rows as contiguous bytes (copied only when
/// the view is not contiguous), or the device matrix.
pub(crate) enum In<'a> {
    Host {
        data: Cow<'a, [u8]>,
        dim: (usize, usize),
        dtype: DType,
    },
    Device(&'a GpuMatrix),
}

impl<'a> In<'a> {
    pub fn dim(&self) -> (usize, usize) {
        match self {
            In::Host { dim, .. } => *dim,
            In::Device(m) => m.dim(),
        }
    }

    pub fn new(m: Matrix<'a>) -> Self {
        fn bytes<'a, E: Element>(v: ArrayView2<'a, E>) -> Cow<'a, [u8]> {
            match v.to_slice() {
                Some(s) => Cow::Borrowed(bytemuck::cast_slice(s)),
                None => {
                    let owned = v.as_standard_layout().into_owned();
                    Cow::Owned(bytemuck::cast_slice(owned.as_slice().unwrap_or(&[])).to_vec())
                }
            }
        }
        match m {
            Matrix::Host(v) => In::Host {
                dim: v.dim(),
                dtype: v.dtype(),
                data: with_dtype!(MatrixView, v, |a: E| bytes(a)),
            },
            Matrix::Device(d) => In::Device(d),
        }
    }

    pub fn source(&self) -> Result<Source<'_>> {
        match self {
            In::Host { data, dim, dtype } => Ok(Source::Host {
                data,
                row_bytes: dim.1 * dtype.size(),
                elem: dtype.size(),
            }),
            In::Device(m) => Ok(Source::Device(m)),
        }
    }
}

/// Host rows of an output, in its element type.
pub(crate) enum HostRows {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    BF16(Vec<half::bf16>),
}

/// One matrix output: host rows being filled, or a new contiguous device matrix.
pub(crate) enum Out {
    Host { data: HostRows, cols: usize },
    Device(GpuMatrix),
}

impl Out {
    /// A `[rows, cols]` f32 output at `place`, filled with `fill` on the host.
    pub fn new(ctx: &Context, place: Place, rows: usize, cols: usize, fill: f32) -> Result<Out> {
        Out::typed(ctx, place, rows, cols, fill, DType::F32)
    }

    /// [`Out::new`] with elements of type `dtype` (`fill` rounded to it).
    pub fn typed(
        ctx: &Context,
        place: Place,
        rows: usize,
        cols: usize,
        fill: f32,
        dtype: DType,
    ) -> Result<Out> {
        let n = rows * cols;
        Ok(match place {
            Place::Host => Out::Host {
                data: match dtype {
                    DType::F32 => HostRows::F32(vec![fill; n]),
                    DType::F16 => HostRows::F16(vec![half::f16::from_f32(fill); n]),
                    DType::BF16 => HostRows::BF16(vec![Element::from_f32(fill); n]),
                },
                cols,
            },
            Place::Device => Out::Device(GpuMatrix::new_typed(ctx, rows, cols, dtype)?),
        })
    }

    pub fn sink(&mut self) -> Sink<'_> {
        match self {
            Out::Host { data, cols } => match data {
                HostRows::F32(d) => to_host(d, *cols),
                HostRows::F16(d) => to_host(d, *cols),
                HostRows::BF16(d) => to_host(d, *cols),
            },
            Out::Device(m) => Sink::Device(m),
        }
    }

    /// The host rows of an f32 output (empty for a device or half output).
    pub fn host_data(&self) -> &[f32] {
        match self {
            Out::Host {
                data: HostRows::F32(d),
                ..
            } => d,
            _ => &[],
        }
    }

    /// An f32 host output as a matrix (half outputs widened exactly).
    pub fn into_host(self, rows: usize) -> Result<Array2<f32>> {
        let a = match self.into_tensor(rows)? {
            Tensor::F32(a) => a, // as it is: no copy
            half => half.to_f32(),
        };
        a.into_dimensionality()
            .map_err(|e| Error::InvalidInput(e.to_string()))
    }

    /// A host output as a `[rows, cols]` tensor of its type.
    pub fn into_tensor(self, rows: usize) -> Result<Tensor> {
        fn go<E: Element>(d: Vec<E>, rows: usize, cols: usize) -> Result<Tensor> {
            ArrayD::from_shape_vec(IxDyn(&[rows, cols]), d)
                .map(E::tag)
                .map_err(|e| Error::InvalidInput(e.to_string()))
        }
        match self {
            Out::Host { data, cols } => match data {
                HostRows::F32(d) => go(d, rows, cols),
                HostRows::F16(d) => go(d, rows, cols),
                HostRows::BF16(d) => go(d, rows, cols),
            },
            Out::Device(_) => Err(Error::InvalidInput("the output is on the device".into())),
        }
    }

    pub fn into_device(self) -> Option<GpuMatrix> {
        match self {
            Out::Device(m) => Some(m),
            Out::Host { .. } => None,
        }
    }
}
