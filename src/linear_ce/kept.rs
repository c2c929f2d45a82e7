//! The gradient pass over the rows that count: a row whose class target is `ignore_index`
//! has a zero gradient row, adds nothing to `dW` or `db` (when its hidden states are finite:
//! `0·inf` is NaN in `Gᵀ·H`, as in PyTorch, so a row with a non-finite hidden state stays),
//! and so costs nothing in the backward. Its hidden states, targets, statistics and upstream
//! gradient are left out (a copy of the kept rows of `H`, `N_kept·D` elements) and its `dH`
//! row is 0. The mean's denominators are unchanged: they count only rows that are not
//! ignored. Host hidden states only: device ones would need a gather on the device.

use super::pass::{LinearGrads, LinearPassResult};
use crate::cross_entropy::{CrossEntropyOptions, RowPartial, Targets, Upstream};
use crate::element::{with_dtype, Element, MatrixView, Tensor};
use crate::error::{Error, Result};
use ndarray::{Array1, Array2, ArrayViewD, Axis, Ix1};

/// The rows of class targets that are not `ignore_index` (`None` for probability targets,
/// which ignore no row).
pub(crate) fn kept_rows(targets: &Targets, o: &CrossEntropyOptions) -> Option<Vec<usize>> {
    let ignore = o.effective_ignore_index();
    fn keep<T: Copy + Into<i64>>(t: &ArrayViewD<T>, ignore: i64) -> Vec<usize> {
        t.iter()
            .enumerate()
            .filter(|(_, &y)| y.into() != ignore)
            .map(|(i, _)| i)
            .collect()
    }
    match targets {
        Targets::Classes(t) => Some(keep(t, ignore)),
        Targets::ClassesI32(t) => Some(keep(t, ignore)),
        Targets::ClassesU32(t) => Some(keep(t, ignore)),
        Targets::Probabilities(_) => None,
    }
}

/// Whether every row of `h` outside `kept` (sorted) is finite: leaving those rows out then
/// changes no result.
pub(crate) fn ignored_rows_finite(h: &MatrixView, kept: &[usize]) -> bool {
    fn go<E: Element>(a: &ndarray::ArrayView2<E>, kept: &[usize]) -> bool {
        let mut next = kept.iter().peekable();
        a.outer_iter().enumerate().all(|(i, row)| {
            if next.peek() == Some(&&i) {
                next.next();
                return true;
            }
            row.iter().all(|v| v.to_f32().is_finite())
        })
    }
    with_dtype!(MatrixView, h, |a: E| go::<E>(a, kept))
}

/// Class targets of the kept rows.
enum Classes {
    I64(Array1<i64>),
    I32(Array1<i32>),
    U32(Array1<u32>),
}

/// The kept rows' share of a call's inputs and statistics.
pub(crate) struct Kept<'o> {
    rows: Vec<usize>,
    pub hidden: Tensor,
    targets: Classes,
    pub options: CrossEntropyOptions<'o>,
    pub partials: Vec<RowPartial>,
    pub tile_stats: Vec<Vec<RowPartial>>,
}

fn pick<T: Clone>(v: &[T], rows: &[usize]) -> Vec<T> {
    rows.iter().map(|&i| v[i].clone()).collect()
}

impl<'o> Kept<'o> {
    /// The kept `rows` of `hidden`, `targets`, `o`'s per-row upstream gradient and `stats`.
    pub fn new(
        rows: Vec<usize>,
        hidden: &MatrixView,
        targets: &Targets,
        o: &CrossEntropyOptions<'o>,
        stats: &LinearPassResult,
    ) -> Result<Self> {
        let bad = |e: ndarray::ShapeError| Error::InvalidInput(format!("targets: {e}"));
        fn sel<T: Clone>(
            t: &ArrayViewD<T>,
            rows: &[usize],
        ) -> std::result::Result<Array1<T>, ndarray::ShapeError> {
            Ok(t.view().into_dimensionality::<Ix1>()?.select(Axis(0), rows))
        }
        let targets = match targets {
            Targets::Classes(t) => Classes::I64(sel(t, &rows).map_err(bad)?),
            Targets::ClassesI32(t) => Classes::I32(sel(t, &rows).map_err(bad)?),
            Targets::ClassesU32(t) => Classes::U32(sel(t, &rows).map_err(bad)?),
            Targets::Probabilities(_) => {
                return Err(Error::InvalidInput(
                    "internal: probability targets ignore no row".into(),
                ))
            }
        };
        fn rows_of<E: Element>(a: &ndarray::ArrayView2<E>, rows: &[usize]) -> Tensor {
            E::tag(a.select(Axis(0), rows).into_dyn())
        }
        let hidden = with_dtype!(MatrixView, hidden, |a: E| rows_of::<E>(a, &rows));
        let mut options = o.clone();
        if let Upstream::PerRow(u) = &o.upstream {
            options.upstream = Upstream::PerRow(u.select(Axis(0), &rows));
        }
        Ok(Kept {
            partials: pick(&stats.partials, &rows),
            tile_stats: stats.tile_stats.iter().map(|t| pick(t, &rows)).collect(),
            rows,
            hidden,
            targets,
            options,
        })
    }

    /// The kept rows' class targets.
    pub fn targets(&self) -> Targets<'_> {
        match &self.targets {
            Classes::I64(t) => Targets::classes(t.view()),
            Classes::I32(t) => Targets::classes_i32(t.view()),
            Classes::U32(t) => Targets::classes_u32(t.view()),
        }
    }

    /// The kept rows' gradients as the whole call's: `dH` rows of ignored rows are 0.
    pub fn scatter(&self, g: LinearGrads, n: usize) -> LinearGrads {
        let mut hidden = Array2::<f32>::zeros((n, g.hidden.ncols()));
        for (k, &i) in self.rows.iter().enumerate() {
            hidden.row_mut(i).assign(&g.hidden.row(k));
        }
        LinearGrads { hidden, ..g }
    }
}
