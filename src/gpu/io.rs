//! An op's matrices on the GPU path: inputs from the host or the device ([`Matrix`]), outputs
//! to the host or the device ([`Out`]), as the launch path's sources and sinks.

use super::context::Context;
pub(crate) use super::launch::Place;
use super::launch::{host, to_host, Sink, Source};
use super::matrix::GpuMatrix;
use crate::error::{Error, Result};
use crate::shape::Shape;
use ndarray::{Array2, ArrayView2, CowArray, Ix2};

/// A matrix an op reads: host data or a device-resident matrix. Ops take either
/// (`ArrayView2<f32>` and `&GpuMatrix` convert into it); on the CPU backends only host data.
#[derive(Clone, Copy, Debug)]
pub enum Matrix<'a> {
    /// Host data, any layout (copied to a contiguous layout only when it is not one).
    Host(ArrayView2<'a, f32>),
    /// A device matrix, read where it lies.
    Device(&'a GpuMatrix),
}

impl Matrix<'_> {
    /// `(rows, cols)`.
    pub fn dim(&self) -> (usize, usize) {
        match self {
            Matrix::Host(v) => v.dim(),
            Matrix::Device(m) => m.dim(),
        }
    }

    /// The host data, or an error naming `what` for a device matrix (the CPU backends).
    pub fn host(&self, what: &str) -> Result<ArrayView2<'_, f32>> {
        match self {
            Matrix::Host(v) => Ok(v.view()),
            Matrix::Device(_) => Err(Error::InvalidInput(format!(
                "{what} is a device matrix: only the GPU backend reads those"
            ))),
        }
    }
}

impl<'a> From<ArrayView2<'a, f32>> for Matrix<'a> {
    fn from(v: ArrayView2<'a, f32>) -> Self {
        Matrix::Host(v)
    }
}

impl<'a> From<&'a Array2<f32>> for Matrix<'a> {
    fn from(v: &'a Array2<f32>) -> Self {
        Matrix::Host(v.view())
    }
}

impl<'a> From<&'a GpuMatrix> for Matrix<'a> {
    fn from(m: &'a GpuMatrix) -> Self {
        Matrix::Device(m)
    }
}

/// A matrix a GPU op reads: host data (`ArrayView2<f32>`) or a device matrix (`&GpuMatrix`).
pub trait GpuInput: Shape + Copy {
    /// The matrix, wherever it lives.
    fn matrix(&self) -> Matrix<'_>;
}

impl GpuInput for ArrayView2<'_, f32> {
    fn matrix(&self) -> Matrix<'_> {
        Matrix::Host(self.view())
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

/// A [`Matrix`] ready to be a launch source: host data made contiguous (copied only when
/// it is not), or the device matrix.
pub(crate) enum In<'a> {
    Host(CowArray<'a, f32, Ix2>),
    Device(&'a GpuMatrix),
}

impl<'a> In<'a> {
    pub fn dim(&self) -> (usize, usize) {
        match self {
            In::Host(c) => c.dim(),
            In::Device(m) => m.dim(),
        }
    }

    pub fn new(m: Matrix<'a>) -> Self {
        match m {
            Matrix::Host(v) if v.is_standard_layout() => In::Host(CowArray::from(v)),
            Matrix::Host(v) => In::Host(CowArray::from(v.as_standard_layout().into_owned())),
            Matrix::Device(d) => In::Device(d),
        }
    }

    pub fn source(&self) -> Result<Source<'_>> {
        match self {
            In::Host(c) => {
                let cols = c.ncols();
                let data = c.as_slice().ok_or_else(|| {
                    Error::InvalidInput("input could not be made contiguous".into())
                })?;
                Ok(host(data, cols))
            }
            In::Device(m) => Ok(Source::Device(m)),
        }
    }
}

/// One matrix output: host rows being filled, or a new contiguous device matrix.
pub(crate) enum Out {
    Host { data: Vec<f32>, cols: usize },
    Device(GpuMatrix),
}

impl Out {
    /// A `[rows, cols]` output at `place`, filled with `fill` on the host.
    pub fn new(ctx: &Context, place: Place, rows: usize, cols: usize, fill: f32) -> Result<Out> {
        Ok(match place {
            Place::Host => Out::Host {
                data: vec![fill; rows * cols],
                cols,
            },
            Place::Device => Out::Device(GpuMatrix::new(ctx, rows, cols)?),
        })
    }

    pub fn sink(&mut self) -> Sink<'_> {
        match self {
            Out::Host { data, cols } => to_host(data, *cols),
            Out::Device(m) => Sink::Device(m),
        }
    }

    /// The host rows (empty for a device output).
    pub fn host_data(&self) -> &[f32] {
        match self {
            Out::Host { data, .. } => data,
            Out::Device(_) => &[],
        }
    }

    pub fn into_host(self, rows: usize) -> Result<Array2<f32>> {
        match self {
            Out::Host { data, cols } => Array2::from_shape_vec((rows, cols), data)
                .map_err(|e| Error::InvalidInput(e.to_string())),
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
