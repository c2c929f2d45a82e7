//! What the surrogate kernels are told besides their family: the op compiled in (`OP`), the
//! flag bits read from their uniform (`SP_*`), and the device sums' workgroups per chunk.

/// Workgroups of `sum_blocks` per chunk, each writing one partial sum (`SUM_GROUPS` in the
/// shader; src/gpu/surrogates/sums.rs).
pub(crate) const SUM_GROUPS: usize = 64;

/// A surrogate kernel's op (`OP` in the shader; the `OP_*` constants are generated from this
/// list, so the numbers live here only).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum SurrogateOp {
    Boltzmann,
    SoftArgmax,
    Accuracy,
    F1Grad,
    Margin,
    F1Columns,
    PowerMax,
    Logistic,
    Hinge,
    SquaredHinge,
    Exponential,
    Squared,
    PairwiseErf,
    PairwiseSqrt,
    PairwiseAcon,
    PairwiseLogCosh,
    F1Sigmoid,
    F1BinaryGrad,
    SmoothAbs,
    SmoothFloor,
    /// The device sums (`sum_blocks`, `sum_final`), which read no op.
    Sum,
}

impl SurrogateOp {
    /// Every op with its shader constant's name and value. The pointwise shader tests ranges
    /// (the binary losses are 10..14, the pairwise forms 20..23), so the values are grouped.
    pub(crate) const ALL: [(SurrogateOp, &'static str, u32); 21] = [
        (SurrogateOp::Boltzmann, "OP_BOLTZMANN", 1),
        (SurrogateOp::SoftArgmax, "OP_SOFT_ARGMAX", 2),
        (SurrogateOp::Accuracy, "OP_ACCURACY", 3),
        (SurrogateOp::F1Grad, "OP_F1_GRAD", 4),
        (SurrogateOp::Margin, "OP_MARGIN", 5),
        (SurrogateOp::F1Columns, "OP_F1_COLUMNS", 6),
        (SurrogateOp::PowerMax, "OP_POWER_MAX", 7),
        (SurrogateOp::Logistic, "OP_LOGISTIC", 10),
        (SurrogateOp::Hinge, "OP_HINGE", 11),
        (SurrogateOp::SquaredHinge, "OP_SQUARED_HINGE", 12),
        (SurrogateOp::Exponential, "OP_EXPONENTIAL", 13),
        (SurrogateOp::Squared, "OP_SQUARED", 14),
        (SurrogateOp::PairwiseErf, "OP_PAIRWISE_ERF", 20),
        (SurrogateOp::PairwiseSqrt, "OP_PAIRWISE_SQRT", 21),
        (SurrogateOp::PairwiseAcon, "OP_PAIRWISE_ACON", 22),
        (SurrogateOp::PairwiseLogCosh, "OP_PAIRWISE_LOGCOSH", 23),
        (SurrogateOp::F1Sigmoid, "OP_F1_SIGMOID", 30),
        (SurrogateOp::F1BinaryGrad, "OP_F1_BINARY_GRAD", 31),
        (SurrogateOp::SmoothAbs, "OP_SMOOTH_ABS", 40),
        (SurrogateOp::SmoothFloor, "OP_SMOOTH_FLOOR", 41),
        (SurrogateOp::Sum, "OP_SUM", 50),
    ];

    /// The op's value in the shader (`ALL`'s entry; the tests check every op has one).
    pub(crate) fn code(self) -> u32 {
        let i = match self {
            SurrogateOp::Boltzmann => 0,
            SurrogateOp::SoftArgmax => 1,
            SurrogateOp::Accuracy => 2,
            SurrogateOp::F1Grad => 3,
            SurrogateOp::Margin => 4,
            SurrogateOp::F1Columns => 5,
            SurrogateOp::PowerMax => 6,
            SurrogateOp::Logistic => 7,
            SurrogateOp::Hinge => 8,
            SurrogateOp::SquaredHinge => 9,
            SurrogateOp::Exponential => 10,
            SurrogateOp::Squared => 11,
            SurrogateOp::PairwiseErf => 12,
            SurrogateOp::PairwiseSqrt => 13,
            SurrogateOp::PairwiseAcon => 14,
            SurrogateOp::PairwiseLogCosh => 15,
            SurrogateOp::F1Sigmoid => 16,
            SurrogateOp::F1BinaryGrad => 17,
            SurrogateOp::SmoothAbs => 18,
            SurrogateOp::SmoothFloor => 19,
            SurrogateOp::Sum => 20,
        };
        SurrogateOp::ALL[i].2
    }
}

/// The surrogate uniform's flag bits (`SP_*` in the shader), read at run time from
/// `SParams::flags`.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct SpFlags(u32);

impl SpFlags {
    /// `pos_weight` is bound (`q`).
    pub const POS_WEIGHT: SpFlags = SpFlags(1);
    /// Weights are bound (`weight`).
    pub const WEIGHT: SpFlags = SpFlags(2);
    /// `(name, bit)` of every flag, for the shader header.
    pub const NAMED: [(&'static str, SpFlags); 2] = [
        ("SP_POS_WEIGHT", SpFlags::POS_WEIGHT),
        ("SP_WEIGHT", SpFlags::WEIGHT),
    ];

    pub fn with(self, f: SpFlags, on: bool) -> SpFlags {
        if on {
            SpFlags(self.0 | f.0)
        } else {
            self
        }
    }

    pub fn bits(self) -> u32 {
        self.0
    }
}
