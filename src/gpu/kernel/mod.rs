//! Kernel identity: a [`Kernel`] names its family (one shader file and one bind-group layout),
//! its entry point and its specialization constants; bindings are named [`Slot`]s. The
//! pipeline cache is keyed by `Kernel`, and nothing else identifies a kernel: no op code or
//! flag travels as a bare integer. The constants the shaders test (op codes, flag bits, the
//! exponent forms, the workgroup size) are generated from the Rust values into each module's
//! header (`source.rs`); the uniform structs are checked against the WGSL declarations by the
//! naga-reflection test in `tests.rs`.

mod source;
mod surrogate;
#[cfg(test)]
mod tests;
pub(crate) mod uniforms;

pub(crate) use surrogate::{SpFlags, SurrogateOp, SUM_GROUPS};

use crate::element::DType;
use crate::scale::ExpForm;

/// A kernel family: its WGSL source and its bind-group layout.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    LogSumExp,
    Softmax,
    CrossEntropy,
    /// Cross-entropy with the gradient written over the logits (`x` bound read-write).
    CrossEntropyInPlace,
    /// The benchmarks' bandwidth yardsticks.
    Yardstick,
    /// The row-wise surrogates (always scalar loads).
    SurrogateRows,
    /// The element-wise surrogates.
    Pointwise,
    /// Matrix products and column sums (the fused linear cross-entropy): `x` is the first
    /// operand, `b_in` the second, `y` the f32 result.
    Matmul,
}

impl Family {
    pub(crate) const ALL: [Family; 8] = [
        Family::LogSumExp,
        Family::Softmax,
        Family::CrossEntropy,
        Family::CrossEntropyInPlace,
        Family::Yardstick,
        Family::SurrogateRows,
        Family::Pointwise,
        Family::Matmul,
    ];

    /// The family's bindings: slot, binding number, kind. Slots a pass does not bind get a
    /// dummy buffer of the right kind.
    pub(crate) fn slots(self) -> &'static [(Slot, u32, BindingKind)] {
        use BindingKind::{ReadOnly as R, Storage as S, Uniform as U};
        match self {
            Family::LogSumExp => &[
                (Slot::Params, 0, U),
                (Slot::X, 1, R),
                (Slot::Y, 2, S),
                (Slot::Partials, 3, S),
                (Slot::Lse, 4, S),
            ],
            Family::Softmax | Family::Yardstick => &[
                (Slot::Params, 0, U),
                (Slot::X, 1, R),
                (Slot::Y, 2, S),
                (Slot::Partials, 3, S),
            ],
            Family::CrossEntropy => &CE_SLOTS[0],
            Family::CrossEntropyInPlace => &CE_SLOTS[1],
            Family::SurrogateRows => &[
                (Slot::Params, 0, U),
                (Slot::X, 1, R),
                (Slot::Y, 2, S),
                (Slot::Partials, 3, S),
                (Slot::RowOut, 4, S),
                (Slot::Targets, 5, R),
                (Slot::Weight, 6, R),
                (Slot::Q, 7, R),
                (Slot::SParams, 8, U),
            ],
            Family::Pointwise => &[
                (Slot::Params, 0, U),
                (Slot::X, 1, R),
                (Slot::Y, 2, S),
                (Slot::Partials, 3, S),
                (Slot::BIn, 4, R),
                (Slot::Grad, 5, S),
                (Slot::Weight, 6, R),
                (Slot::Q, 7, R),
                (Slot::SParams, 8, U),
                (Slot::GradB, 9, S),
            ],
            Family::Matmul => &[
                (Slot::Params, 0, U),
                (Slot::X, 1, R),
                (Slot::Y, 2, S),
                (Slot::BIn, 4, R),
                (Slot::Weight, 5, R),
                (Slot::MParams, 6, U),
            ],
        }
    }

    /// The binding number and kind of `slot` in this family.
    pub(crate) fn slot(self, slot: Slot) -> Option<(u32, BindingKind)> {
        self.slots()
            .iter()
            .find(|(s, _, _)| *s == slot)
            .map(|&(_, b, k)| (b, k))
    }
}

/// Cross-entropy's bindings, read-only logits and (in place) read-write ones.
const CE_SLOTS: [[(Slot, u32, BindingKind); 9]; 2] = {
    use BindingKind::{ReadOnly as R, Storage as S, Uniform as U};
    const fn with_x(x: BindingKind) -> [(Slot, u32, BindingKind); 9] {
        [
            (Slot::Params, 0, U),
            (Slot::X, 1, x),
            (Slot::Y, 2, S),
            (Slot::Partials, 3, S),
            (Slot::RowOut, 4, S),
            (Slot::RowIn, 5, R),
            (Slot::Weight, 6, R),
            (Slot::Q, 7, R),
            (Slot::CeParams, 8, U),
        ]
    }
    [with_x(R), with_x(S)]
};

/// A named binding; its number comes from the family ([`Family::slots`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// `params`: the prelude's [`uniforms::Params`].
    Params,
    /// `x`: the input rows.
    X,
    /// `y`: the output rows (softmax, the gradient).
    Y,
    /// `partials`: per-segment statistics of split rows.
    Partials,
    /// `lse`: one value per row.
    Lse,
    /// `row_out`: per-row results (cross-entropy statistics, surrogate values).
    RowOut,
    /// `row_in`: cross-entropy's per-row coefficients.
    RowIn,
    /// `weight`: class weights, per-element weights, or F1's `(h, v)`.
    Weight,
    /// `q`: probability targets, or the logistic loss's `pos_weight`.
    Q,
    /// `ce`: [`uniforms::CeParams`].
    CeParams,
    /// `targets`: a class per row.
    Targets,
    /// `sp`: [`uniforms::SParams`].
    SParams,
    /// `b_in`: labels, or the pairwise max's second argument.
    BIn,
    /// `grad`: the element-wise gradient.
    Grad,
    /// `grad_b`: the pairwise max's gradient with respect to its second argument.
    GradB,
    /// `mm`: [`uniforms::MParams`].
    MParams,
}

impl Slot {
    /// The variable's name in the WGSL source (checked by the tests).
    #[cfg(test)]
    pub(crate) fn wgsl_name(self) -> &'static str {
        match self {
            Slot::Params => "params",
            Slot::X => "x",
            Slot::Y => "y",
            Slot::Partials => "partials",
            Slot::Lse => "lse",
            Slot::RowOut => "row_out",
            Slot::RowIn => "row_in",
            Slot::Weight => "weight",
            Slot::Q => "q",
            Slot::CeParams => "ce",
            Slot::Targets => "targets",
            Slot::SParams => "sp",
            Slot::BIn => "b_in",
            Slot::Grad => "grad",
            Slot::GradB => "grad_b",
            Slot::MParams => "mm",
        }
    }
}

/// How a binding is declared.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum BindingKind {
    /// `var<storage, read_write>`
    Storage,
    /// `var<storage, read>`
    ReadOnly,
    /// `var<uniform>`
    Uniform,
}

/// An entry point.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Entry {
    Stats,
    StatsPartial,
    MergeRows,
    LseMerge,
    Fused,
    Write,
    CeFused,
    CeStats,
    CeRows,
    CeGrad,
    Copy,
    ExpMap,
    RowSum,
    RowSumSerial,
    Weighted,
    Margin,
    Power,
    F1Columns,
    F1Merge,
    F1Classes,
    Pointwise,
    PointwiseSum,
    SumBlocks,
    SumFinal,
    Convert,
    Matmul,
    MatmulLanes,
    MatmulDot,
    MatmulNn,
    MatmulTn,
    ColSums,
}

impl Entry {
    /// The function's name in the WGSL source.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Entry::Stats => "stats",
            Entry::StatsPartial => "stats_partial",
            Entry::MergeRows => "merge_rows",
            Entry::LseMerge => "lse_merge",
            Entry::Fused => "fused",
            Entry::Write => "write",
            Entry::CeFused => "ce_fused",
            Entry::CeStats => "ce_stats",
            Entry::CeRows => "ce_rows",
            Entry::CeGrad => "ce_grad",
            Entry::Copy => "copy",
            Entry::ExpMap => "exp_map",
            Entry::RowSum => "row_sum",
            Entry::RowSumSerial => "row_sum_serial",
            Entry::Weighted => "weighted",
            Entry::Margin => "margin",
            Entry::Power => "power",
            Entry::F1Columns => "f1_columns",
            Entry::F1Merge => "f1_merge",
            Entry::F1Classes => "f1_classes",
            Entry::Pointwise => "pointwise",
            Entry::PointwiseSum => "pointwise_sum",
            Entry::SumBlocks => "sum_blocks",
            Entry::SumFinal => "sum_final",
            Entry::Convert => "convert",
            Entry::Matmul => "matmul",
            Entry::MatmulLanes => "matmul_lanes",
            Entry::MatmulDot => "matmul_dot",
            Entry::MatmulNn => "matmul_nn",
            Entry::MatmulTn => "matmul_tn",
            Entry::ColSums => "col_sums",
        }
    }

    /// Whether this entry point is in `family`'s source (checked by the tests).
    #[cfg(test)]
    pub(crate) fn is_in(self, family: Family) -> bool {
        use Entry as E;
        match family {
            Family::LogSumExp => matches!(
                self,
                E::Stats | E::StatsPartial | E::MergeRows | E::LseMerge
            ),
            Family::Softmax => matches!(self, E::Fused | E::Write | E::Convert),
            Family::CrossEntropy | Family::CrossEntropyInPlace => {
                matches!(self, E::CeFused | E::CeStats | E::CeRows | E::CeGrad)
            }
            Family::Yardstick => {
                matches!(self, E::Copy | E::ExpMap | E::RowSum | E::RowSumSerial)
            }
            Family::SurrogateRows => {
                matches!(
                    self,
                    E::Weighted | E::Margin | E::Power | E::F1Columns | E::F1Merge | E::F1Classes
                )
            }
            Family::Pointwise => matches!(
                self,
                E::Pointwise | E::PointwiseSum | E::SumBlocks | E::SumFinal
            ),
            Family::Matmul => {
                matches!(
                    self,
                    E::Matmul
                        | E::MatmulLanes
                        | E::MatmulDot
                        | E::MatmulNn
                        | E::MatmulTn
                        | E::ColSums
                )
            }
        }
    }
}

/// Cross-entropy's compile-time option bits (`CE_*` in the shader; see [`Spec::ce`]).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, Hash)]
pub(crate) struct CeFlags(u32);

impl CeFlags {
    pub const SOFTCAP: CeFlags = CeFlags(1);
    pub const WEIGHT: CeFlags = CeFlags(2);
    /// Smoothing or probability targets: the linear sums are needed.
    pub const LINEAR: CeFlags = CeFlags(4);
    pub const GRAD: CeFlags = CeFlags(8);
    /// `(name, bit)` of every flag, for the shader header.
    pub const NAMED: [(&'static str, CeFlags); 4] = [
        ("CE_SOFTCAP", CeFlags::SOFTCAP),
        ("CE_WEIGHT", CeFlags::WEIGHT),
        ("CE_LINEAR", CeFlags::LINEAR),
        ("CE_GRAD", CeFlags::GRAD),
    ];

    pub fn contains(self, f: CeFlags) -> bool {
        self.0 & f.0 == f.0
    }

    pub fn with(self, f: CeFlags, on: bool) -> CeFlags {
        if on {
            CeFlags(self.0 | f.0)
        } else {
            self
        }
    }

    pub fn bits(self) -> u32 {
        self.0
    }

    /// Every combination (for validating every variant).
    #[cfg(test)]
    pub fn all_combinations() -> impl Iterator<Item = CeFlags> {
        (0..1u32 << Self::NAMED.len()).map(CeFlags)
    }
}

/// The specialization constants: everything besides the family that changes a module's text.
/// Compile-time, not uniform branches: lavapipe runs both sides of a uniform branch under a
/// mask, so a forward-only call paid for the gradient loop (measured 2×).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Spec {
    /// vec4 loads and stores (needs `C % 4 == 0` and aligned rows), else scalar. For
    /// [`Family::Matmul`]: both operands bound as vec4 (`matmul_dot`, `matmul_nn`,
    /// `matmul_tn`).
    pub vec4: bool,
    /// Invocations per (row, segment) item: a power of two in 1..=256.
    pub row_threads: u32,
    /// Softmax family: write log-softmax.
    pub log_output: bool,
    /// Cross-entropy: probability targets instead of class indices.
    pub prob_targets: bool,
    /// Cross-entropy: which options the kernel handles. Every bit is compiled in, the weight
    /// bit too: lavapipe runs a masked-off `loadw4` at nearly the cost of a real one (its
    /// storage loads are per-lane loops), which cost the unweighted forward pass about 10%.
    pub ce: CeFlags,
    /// Surrogate families: the op.
    pub op: Option<SurrogateOp>,
    /// How the exponent is formed for this call's scale (see `crate::scale`): `(x − m)·c` for
    /// `κ ≥ 1`, `fma(x, ½, −m/2)·c` for `κ < 1`, `((x − m)·2⁶⁴)·c` where `κ` overflows.
    /// Compile-time so that the common form costs what the plain subtraction does.
    pub exp_form: ExpForm,
    /// The element type of `x` in storage (f16 / bf16 as u32 words).
    pub x_dtype: DType,
    /// The element type of the matrix output (`y`); for [`Family::Matmul`], of the second
    /// operand (`b_in`: its result is always f32).
    pub y_dtype: DType,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            vec4: false,
            row_threads: 1,
            log_output: false,
            prob_targets: false,
            ce: CeFlags::default(),
            op: None,
            exp_form: ExpForm::Unit,
            x_dtype: DType::F32,
            y_dtype: DType::F32,
        }
    }
}

/// One compiled kernel: the pipeline-cache key.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Kernel {
    pub family: Family,
    pub entry: Entry,
    pub spec: Spec,
}

impl Kernel {
    /// A yardstick (`copy`, `exp_map`, `row_sum` or `row_sum_serial`, always vec4) over
    /// elements of type `dtype` (read and written in that type).
    pub fn yardstick(entry: Entry, dtype: DType) -> Self {
        Kernel {
            family: Family::Yardstick,
            entry,
            spec: Spec {
                vec4: true,
                x_dtype: dtype,
                y_dtype: dtype,
                ..Spec::default()
            },
        }
    }

    /// A label for wgpu objects and error messages.
    pub fn label(&self) -> String {
        format!(
            "smoothmax/{:?}:{}/{:?}",
            self.family,
            self.entry.name(),
            self.spec
        )
    }
}
