//! The WGSL text of a kernel. A module is `header + prelude + load/store variant + gradient
//! store + family`, each a whole file; the header is generated here: the specialization
//! constants, every constant the shaders share with Rust (op codes, flag bits, exponent forms,
//! the workgroup size, each from its one Rust definition), and the declaration of `x`, whose
//! access mode is the one thing the in-place variant changes. Each variant is plain WGSL that
//! naga validates on its own (see `tests.rs`, which needs no GPU).

use super::{BindingKind, CeFlags, Family, Kernel, Slot, SpFlags, SurrogateOp};
use crate::cross_entropy::fast::flag;
use crate::gpu::split::WG;
use crate::scale::ExpForm;
use std::fmt::Write;

const PRELUDE: &str = include_str!("../../../shaders/prelude.wgsl");
const VEC4: &str = include_str!("../../../shaders/vec4.wgsl");
const SCALAR: &str = include_str!("../../../shaders/scalar.wgsl");
const GRAD_TO_Y: &str = include_str!("../../../shaders/grad_to_y.wgsl");
const GRAD_OVER_X_VEC4: &str = include_str!("../../../shaders/grad_over_x_vec4.wgsl");
const GRAD_OVER_X_SCALAR: &str = include_str!("../../../shaders/grad_over_x_scalar.wgsl");
const LOGSUMEXP: &str = include_str!("../../../shaders/logsumexp.wgsl");
const SOFTMAX: &str = include_str!("../../../shaders/softmax.wgsl");
const CROSS_ENTROPY: &str = concat!(
    include_str!("../../../shaders/cross_entropy.wgsl"),
    include_str!("../../../shaders/softcap.wgsl")
);
const YARDSTICK: &str = include_str!("../../../shaders/yardstick.wgsl");
const SURROGATE_COMMON: &str = include_str!("../../../shaders/surrogate_common.wgsl");
const SURROGATE_ROWS: &str = include_str!("../../../shaders/surrogate_rows.wgsl");
const POINTWISE: &str = include_str!("../../../shaders/pointwise.wgsl");

impl Family {
    fn source(self) -> &'static str {
        match self {
            Family::LogSumExp => LOGSUMEXP,
            Family::Softmax => SOFTMAX,
            Family::CrossEntropy | Family::CrossEntropyInPlace => CROSS_ENTROPY,
            Family::Yardstick => YARDSTICK,
            Family::SurrogateRows => SURROGATE_ROWS,
            Family::Pointwise => POINTWISE,
        }
    }

    fn is_surrogate(self) -> bool {
        matches!(self, Family::SurrogateRows | Family::Pointwise)
    }
}

/// The constants every module gets, from their Rust definitions.
fn shared_constants() -> String {
    let mut s = format!("const WG: u32 = {WG}u;\n");
    for (name, f) in CeFlags::NAMED {
        let _ = writeln!(s, "const {name}: u32 = {}u;", f.bits());
    }
    for (name, v) in [
        ("FLAG_NAN", flag::NAN),
        ("FLAG_POS_INF", flag::POS_INF),
        ("FLAG_NEG_POS", flag::NEG_POS),
        ("FLAG_NEG_ZERO", flag::NEG_ZERO),
        ("FLAG_NEG_NEG", flag::NEG_NEG),
        ("EXP_UNIT", ExpForm::Unit as u32),
        ("EXP_HALF", ExpForm::Half as u32),
        ("EXP_TINY", ExpForm::Tiny as u32),
    ] {
        let _ = writeln!(s, "const {name}: u32 = {v}u;");
    }
    for (name, f) in SpFlags::NAMED {
        let _ = writeln!(s, "const {name}: u32 = {}u;", f.bits());
    }
    for (_, name, v) in SurrogateOp::ALL {
        let _ = writeln!(s, "const {name}: u32 = {v}u;");
    }
    s
}

impl Kernel {
    /// The complete WGSL text of this kernel's module.
    pub fn source(&self) -> String {
        let sp = &self.spec;
        let in_place = self.family == Family::CrossEntropyInPlace;
        let mut header = format!("// {}\n", self.label());
        let _ = write!(
            header,
            "const ROW_THREADS: u32 = {}u;\nconst LOG_OUTPUT: bool = {};\n\
             const PROB_TARGETS: bool = {};\nconst CE_STATIC: u32 = {}u;\n\
             const IN_PLACE: bool = {in_place};\nconst EXP_FORM: u32 = {}u;\nconst OP: u32 = {}u;\n",
            sp.row_threads,
            sp.log_output,
            sp.prob_targets,
            sp.ce.bits(),
            sp.exp_form as u32,
            sp.op.map_or(0, SurrogateOp::code),
        );
        header.push_str(&shared_constants());
        // x: read-write only where the gradient is written over it.
        let (binding, kind) = self
            .family
            .slot(Slot::X)
            .unwrap_or((1, BindingKind::ReadOnly));
        let access = if kind == BindingKind::Storage {
            "read_write"
        } else {
            "read"
        };
        let elem = if sp.vec4 { "vec4<f32>" } else { "f32" };
        let _ = writeln!(
            header,
            "// x: the input rows (row r at x_base + r * x_stride)\n\
             @group(0) @binding({binding}) var<storage, {access}> x: array<{elem}>;"
        );
        let variant = if sp.vec4 { VEC4 } else { SCALAR };
        let grad = match (in_place, sp.vec4) {
            (false, _) => GRAD_TO_Y,
            (true, true) => GRAD_OVER_X_VEC4,
            (true, false) => GRAD_OVER_X_SCALAR,
        };
        let common = if self.family.is_surrogate() {
            SURROGATE_COMMON
        } else {
            ""
        };
        [
            header.as_str(),
            PRELUDE,
            variant,
            grad,
            common,
            self.family.source(),
        ]
        .join("\n")
    }
}
