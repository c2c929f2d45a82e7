//! The public entry points over any backend besides `Backend::linear_cross_entropy`: rows of
//! host or device data, and a chosen tile width.

use super::call::{linear_cross_entropy, rows_call};
use super::pass::{LinearCrossEntropyOutput, LinearPass};
use crate::backend::Backend;
use crate::cross_entropy::{CrossEntropyOptions, Loss, Targets};
use crate::element::{MatrixView, Tensor, TensorView};
use crate::error::Result;
use crate::gpu::Matrix;
use ndarray::ArrayView1;

/// [`Backend::linear_cross_entropy`] with the vocabulary cut into tiles of `tile_cols`
/// classes (the last one shorter) instead of the engine's choice: for tests that need many
/// tiles at small sizes, and for tuning. Every width gives the same result within the
/// tolerance; the reference honours it too.
#[allow(clippy::too_many_arguments)]
pub fn linear_cross_entropy_tiled<B: Backend + ?Sized>(
    backend: &B,
    hidden: TensorView<'_>,
    weight: MatrixView<'_>,
    bias: Option<ArrayView1<'_, f32>>,
    targets: Targets<'_>,
    options: &CrossEntropyOptions<'_>,
    tile_cols: usize,
) -> Result<LinearCrossEntropyOutput> {
    let run = |p: &LinearPass<'_, '_>| backend.linear_ce_pass(p);
    linear_cross_entropy(
        &run,
        hidden,
        weight,
        bias,
        targets,
        options,
        Some(tile_cols),
    )
}

/// [`Backend::linear_cross_entropy`] on `[N, D]` hidden states and `[V, D]` weights that may
/// be device matrices ([`Matrix::Device`]: an application's hidden-state and weight buffers,
/// read where they lie; the GPU backend only) or host data, with class targets `[N]` or
/// probabilities `[N, V]`. The results are on the host; the gradients in the inputs' element
/// types, `[N, D]` and `[V, D]`.
///
/// ```
/// use smoothmax::gpu::Matrix;
/// use smoothmax::linear_ce::linear_cross_entropy_rows;
/// use smoothmax::{CrossEntropyOptions, Gpu, Targets};
/// let h = ndarray::array![[1.0f32, 0.5], [-1.0, 2.0]];
/// let w = ndarray::array![[0.5f32, 1.0], [2.0, -1.0], [0.0, 0.25]];
/// let y = ndarray::array![2i64, 0];
/// let o = CrossEntropyOptions { gradient: true, ..Default::default() };
/// if let Ok(gpu) = Gpu::new() {
///     let (hd, wd) = (gpu.upload(h.view())?, gpu.upload(w.view())?);
///     let on_device = linear_cross_entropy_rows(&gpu, Matrix::Device(&hd), Matrix::Device(&wd),
///                                               None, Targets::classes(y.view()), &o)?;
///     let on_host = linear_cross_entropy_rows(&gpu, h.view().into(), w.view().into(),
///                                             None, Targets::classes(y.view()), &o)?;
///     assert_eq!(on_device, on_host);
/// }
/// # Ok::<(), smoothmax::Error>(())
/// ```
pub fn linear_cross_entropy_rows<B: Backend + ?Sized>(
    backend: &B,
    hidden: Matrix<'_>,
    weight: Matrix<'_>,
    bias: Option<ArrayView1<'_, f32>>,
    targets: Targets<'_>,
    options: &CrossEntropyOptions<'_>,
) -> Result<LinearCrossEntropyOutput> {
    let (n, v) = (hidden.dim().0, weight.dim().0);
    targets.check_shape(&[n], v)?;
    let flat = targets.flat(n, v)?;
    let (hd, wd) = (hidden.dtype(), weight.dtype());
    let run = |p: &LinearPass<'_, '_>| backend.linear_ce_pass(p);
    let (done, grads) = rows_call(&run, hidden, weight, bias, flat.view(), options, None)?;
    let (grad_hidden, grad_weight, grad_bias) = match grads {
        Some(g) => (
            Some(Tensor::narrow(g.hidden.into_dyn(), hd)),
            Some(Tensor::narrow(g.weight.into_dyn(), wd)),
            g.bias,
        ),
        None => (None, None, None),
    };
    Ok(LinearCrossEntropyOutput {
        loss: match done.loss {
            Loss::Scalar(s) => Loss::Scalar(s),
            Loss::PerRow(l) => Loss::PerRow(l.into_dyn()),
        },
        lse: done.lse.into_dyn(),
        sums: done.sums,
        grad_hidden,
        grad_weight,
        grad_bias,
    })
}
