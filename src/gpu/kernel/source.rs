//! The WGSL text of a kernel. A module is `header + half codecs (when an element type is f16
//! or bf16) + params + prelude + x loads + y stores + cross-entropy extras + gradient store + family`,
//! each a whole file chosen by the kernel's `Spec` (vec4 or scalar; f32 or half words); the header is generated here: the specialization
//! constants, every constant the shaders share with Rust (op codes, flag bits, exponent forms,
//! the workgroup size, each from its one Rust definition), and the declaration of `x`, whose
//! access mode is the one thing the in-place variant changes. Each variant is plain WGSL that
//! naga validates on its own (see `tests.rs`, which needs no GPU).

use super::uniforms::{MM_ACC, MM_BIAS};
use super::{BindingKind, CeFlags, Family, Kernel, Slot, SpFlags, SurrogateOp, SUM_GROUPS};
use crate::cross_entropy::fast::flag;
use crate::element::DType;
use crate::gpu::split::WG;
use crate::scale::ExpForm;
use std::fmt::Write;

const PARAMS: &str = include_str!("../../../shaders/params.wgsl");
const PRELUDE: &str = include_str!("../../../shaders/prelude.wgsl");
const HALF: &str = include_str!("../../../shaders/half.wgsl");
const X_VEC4: &str = include_str!("../../../shaders/x_vec4.wgsl");
const X_SCALAR: &str = include_str!("../../../shaders/x_scalar.wgsl");
const X_HALF_VEC4: &str = include_str!("../../../shaders/x_half_vec4.wgsl");
const X_HALF_SCALAR: &str = include_str!("../../../shaders/x_half_scalar.wgsl");
const Y_VEC4: &str = include_str!("../../../shaders/y_vec4.wgsl");
const Y_SCALAR: &str = include_str!("../../../shaders/y_scalar.wgsl");
const Y_HALF_VEC4: &str = include_str!("../../../shaders/y_half_vec4.wgsl");
const Y_HALF_SCALAR: &str = include_str!("../../../shaders/y_half_scalar.wgsl");
const CE_VEC4: &str = include_str!("../../../shaders/ce_vec4.wgsl");
const CE_SCALAR: &str = include_str!("../../../shaders/ce_scalar.wgsl");
const GRAD_TO_Y: &str = include_str!("../../../shaders/grad_to_y.wgsl");
const GRAD_OVER_X_VEC4: &str = include_str!("../../../shaders/grad_over_x_vec4.wgsl");
const GRAD_OVER_X_SCALAR: &str = include_str!("../../../shaders/grad_over_x_scalar.wgsl");
const GRAD_OVER_X_HALF_VEC4: &str = include_str!("../../../shaders/grad_over_x_half_vec4.wgsl");
const GRAD_OVER_X_HALF_SCALAR: &str = include_str!("../../../shaders/grad_over_x_half_scalar.wgsl");
const LOGSUMEXP: &str = include_str!("../../../shaders/logsumexp.wgsl");
const SOFTMAX: &str = include_str!("../../../shaders/softmax.wgsl");
const CROSS_ENTROPY: &str = concat!(
    include_str!("../../../shaders/cross_entropy.wgsl"),
    include_str!("../../../shaders/softcap.wgsl")
);
const YARDSTICK: &str = include_str!("../../../shaders/yardstick.wgsl");
const SURROGATE_COMMON: &str = include_str!("../../../shaders/surrogate_common.wgsl");
const SURROGATE_ROWS: &str = concat!(
    include_str!("../../../shaders/surrogate_rows.wgsl"),
    include_str!("../../../shaders/macro_f1.wgsl"),
    include_str!("../../../shaders/power_max.wgsl")
);
const POINTWISE: &str = include_str!("../../../shaders/pointwise.wgsl");
const MATMUL: &str = include_str!("../../../shaders/matmul.wgsl");

impl Family {
    fn source(self) -> &'static str {
        match self {
            Family::LogSumExp => LOGSUMEXP,
            Family::Softmax => SOFTMAX,
            Family::CrossEntropy | Family::CrossEntropyInPlace => CROSS_ENTROPY,
            Family::Yardstick => YARDSTICK,
            Family::SurrogateRows => SURROGATE_ROWS,
            Family::Pointwise => POINTWISE,
            Family::Matmul => MATMUL,
        }
    }

    fn is_surrogate(self) -> bool {
        matches!(self, Family::SurrogateRows | Family::Pointwise)
    }
}

/// The constants every module gets, from their Rust definitions.
fn shared_constants() -> String {
    let mut s = format!(
        "const WG: u32 = {WG}u;\nconst SUM_GROUPS: u32 = {SUM_GROUPS}u;\n\
         const MM_ACC: u32 = {MM_ACC}u;\nconst MM_BIAS: u32 = {MM_BIAS}u;\n"
    );
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

/// The WGSL codec functions' prefix for a half type.
fn codec(d: DType) -> &'static str {
    match d {
        DType::F16 => "f16",
        _ => "bf16",
    }
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
        let write_x = kind == BindingKind::Storage;
        let access = if write_x { "read_write" } else { "read" };
        let (x_half, y_half) = (sp.x_dtype != DType::F32, sp.y_dtype != DType::F32);
        // Half elements live in u32 words: read as pairs of words (vec4), or as words (scalar),
        // atomically where the gradient is written over them (see grad_over_x_half_scalar).
        let atomic_x = x_half && !sp.vec4 && write_x;
        let elem = match (x_half, sp.vec4, atomic_x) {
            (false, true, _) => "vec4<f32>",
            (false, false, _) => "f32",
            (true, true, _) => "vec2<u32>",
            (true, false, true) => "atomic<u32>",
            (true, false, false) => "u32",
        };
        let _ = writeln!(
            header,
            "// x: the input rows (row r at x_base + r * x_stride)\n\
             @group(0) @binding({binding}) var<storage, {access}> x: array<{elem}>;"
        );
        if x_half {
            let codec = codec(sp.x_dtype);
            let word = if atomic_x {
                "atomicLoad(&x[k])"
            } else {
                "x[k]"
            };
            let _ = writeln!(
                header,
                "fn widen2_x(w: u32) -> vec2<f32> {{ return {codec}_widen2(w); }}\n\
                 fn narrow1_x(v: f32) -> u32 {{ return {codec}_narrow1(v); }}\n\
                 fn widen1_of(w: u32, i: u32) -> f32 {{ return widen2_x(w)[i & 1u]; }}"
            );
            if sp.vec4 {
                let _ = writeln!(header, "fn x_pair(k: u32) -> vec2<u32> {{ return x[k]; }}");
            } else {
                let _ = writeln!(header, "fn x_word(k: u32) -> u32 {{ return {word}; }}");
            }
        }
        if y_half {
            let _ = writeln!(
                header,
                "fn narrow1_y(v: f32) -> u32 {{ return {}_narrow1(v); }}",
                codec(sp.y_dtype)
            );
        }
        if self.family == Family::Yardstick {
            // The exp-map yardstick in the element type: f32 (vec4 or scalar), or two words of
            // halves (the yardstick always runs vec4).
            // The row-sum yardstick: a group widened to four f32 (`sum4_of`), and a row's sum
            // stored as one group of the type (`sum_out`).
            header.push_str(match (x_half, sp.vec4) {
                (false, true) => {
                    "fn exp4_of(v: vec4<f32>) -> vec4<f32> { return exp(v); }\n\
                     fn sum4_of(v: vec4<f32>) -> vec4<f32> { return v; }\n\
                     fn sum_out(s: f32) -> vec4<f32> { return vec4<f32>(s, 0.0, 0.0, 0.0); }\n"
                }
                (false, false) => {
                    "fn exp4_of(v: f32) -> f32 { return exp(v); }\n\
                     fn sum4_of(v: f32) -> vec4<f32> { return vec4<f32>(v, 0.0, 0.0, 0.0); }\n\
                     fn sum_out(s: f32) -> f32 { return s; }\n"
                }
                (true, _) => {
                    "fn exp4_of(w: vec2<u32>) -> vec2<u32> {\n\
                     \x20   let a = exp(vec4<f32>(widen2_x(w.x), widen2_x(w.y)));\n\
                     \x20   return vec2<u32>(narrow1_y(a.x) | (narrow1_y(a.y) << 16u), \
                     narrow1_y(a.z) | (narrow1_y(a.w) << 16u));\n}\n\
                     fn sum4_of(w: vec2<u32>) -> vec4<f32> { \
                     return vec4<f32>(widen2_x(w.x), widen2_x(w.y)); }\n\
                     fn sum_out(s: f32) -> vec2<u32> { return vec2<u32>(narrow1_y(s), 0u); }\n"
                }
            });
        }
        if self.family == Family::Matmul {
            return [
                header.as_str(),
                half_codecs(sp),
                PARAMS,
                &operands(sp),
                MATMUL,
            ]
            .join("\n");
        }
        let x_part = match (x_half, sp.vec4) {
            (false, true) => X_VEC4,
            (false, false) => X_SCALAR,
            (true, true) => X_HALF_VEC4,
            (true, false) => X_HALF_SCALAR,
        };
        let y_part = match (y_half, sp.vec4) {
            (false, true) => Y_VEC4,
            (false, false) => Y_SCALAR,
            (true, true) => Y_HALF_VEC4,
            (true, false) => Y_HALF_SCALAR,
        };
        let ce_part = if sp.vec4 { CE_VEC4 } else { CE_SCALAR };
        let grad = match (in_place, x_half, sp.vec4) {
            (false, _, _) => GRAD_TO_Y,
            (true, false, true) => GRAD_OVER_X_VEC4,
            (true, false, false) => GRAD_OVER_X_SCALAR,
            (true, true, true) => GRAD_OVER_X_HALF_VEC4,
            (true, true, false) => GRAD_OVER_X_HALF_SCALAR,
        };
        let half = if x_half || y_half { HALF } else { "" };
        let common = if self.family.is_surrogate() {
            SURROGATE_COMMON
        } else {
            ""
        };
        [
            header.as_str(),
            half,
            PARAMS,
            PRELUDE,
            x_part,
            y_part,
            ce_part,
            grad,
            common,
            self.family.source(),
        ]
        .join("\n")
    }
}

/// The half codecs, when any element type of `sp` is f16 or bf16.
fn half_codecs(sp: &super::Spec) -> &'static str {
    if sp.x_dtype != DType::F32 || sp.y_dtype != DType::F32 {
        HALF
    } else {
        ""
    }
}

/// The matrix products' operand loads in `x_dtype` (`x`, declared in the header) and
/// `y_dtype` (`b_in`, declared here): `a_at(i)` / `b_at(i)` read element `i`; with `vec4`
/// (the bindings hold vec4 of f32, or pairs of words of halves) also `a4_at(q)` / `b4_at(q)`,
/// elements `4q .. 4q + 4`.
fn operands(sp: &super::Spec) -> String {
    let (binding, _) = Family::Matmul
        .slot(Slot::BIn)
        .unwrap_or((4, BindingKind::ReadOnly));
    let x_codec = codec(sp.x_dtype);
    let a = match (sp.x_dtype, sp.vec4) {
        (DType::F32, false) => "fn a_at(i: u32) -> f32 { return x[i]; }".to_string(),
        (_, false) => "fn a_at(i: u32) -> f32 { return widen1_of(x_word(i >> 1u), i); }".into(),
        (DType::F32, true) => "fn a4_at(q: u32) -> vec4<f32> { return x[q]; }\n\
                               fn a_at(i: u32) -> f32 { return x[i >> 2u][i & 3u]; }"
            .into(),
        (_, true) => format!(
            "fn a4_at(q: u32) -> vec4<f32> {{ let w = x[q]; \
             return vec4<f32>({x_codec}_widen2(w.x), {x_codec}_widen2(w.y)); }}\n\
             fn a_at(i: u32) -> f32 {{ return a4_at(i >> 2u)[i & 3u]; }}"
        ),
    };
    let b_codec = codec(sp.y_dtype);
    let b = match (sp.y_dtype, sp.vec4) {
        (DType::F32, false) => format!(
            "@group(0) @binding({binding}) var<storage, read> b_in: array<f32>;\n\
             fn b_at(i: u32) -> f32 {{ return b_in[i]; }}"
        ),
        (_, false) => format!(
            "@group(0) @binding({binding}) var<storage, read> b_in: array<u32>;\n\
             fn b_at(i: u32) -> f32 {{ return {b_codec}_widen2(b_in[i >> 1u])[i & 1u]; }}"
        ),
        (DType::F32, true) => format!(
            "@group(0) @binding({binding}) var<storage, read> b_in: array<vec4<f32>>;\n\
             fn b4_at(q: u32) -> vec4<f32> {{ return b_in[q]; }}\n\
             fn b_at(i: u32) -> f32 {{ return b_in[i >> 2u][i & 3u]; }}"
        ),
        (_, true) => format!(
            "@group(0) @binding({binding}) var<storage, read> b_in: array<vec2<u32>>;\n\
             fn b4_at(q: u32) -> vec4<f32> {{ let w = b_in[q]; \
             return vec4<f32>({b_codec}_widen2(w.x), {b_codec}_widen2(w.y)); }}\n\
             fn b_at(i: u32) -> f32 {{ return b4_at(i >> 2u)[i & 3u]; }}"
        ),
    };
    // The other form of each, so every entry point of the module resolves (the vec4 loads
    // from scalar bindings are never run: `matmul_dot` binds vec4).
    let extra = if sp.vec4 {
        ""
    } else {
        "fn a4_at(q: u32) -> vec4<f32> { let i = 4u * q; \
         return vec4<f32>(a_at(i), a_at(i + 1u), a_at(i + 2u), a_at(i + 3u)); }\n\
         fn b4_at(q: u32) -> vec4<f32> { let i = 4u * q; \
         return vec4<f32>(b_at(i), b_at(i + 1u), b_at(i + 2u), b_at(i + 3u)); }\n"
    };
    format!("{a}\n{b}\n{extra}")
}
