//! The shader registry: every WGSL source, and how a specialization is put together.
//!
//! A module is `header + prelude + load/store variant + family`. The header fixes the
//! specialization constants, so each variant is plain WGSL that naga can validate on its own
//! (see the test at the bottom, which needs no GPU).

use crate::scale::ExpForm;

const PRELUDE: &str = include_str!("../../shaders/prelude.wgsl");
const VEC4: &str = include_str!("../../shaders/vec4.wgsl");
const SCALAR: &str = include_str!("../../shaders/scalar.wgsl");
const LOGSUMEXP: &str = include_str!("../../shaders/logsumexp.wgsl");
const SOFTMAX: &str = include_str!("../../shaders/softmax.wgsl");
const CROSS_ENTROPY: &str = concat!(
    include_str!("../../shaders/cross_entropy.wgsl"),
    include_str!("../../shaders/softcap.wgsl")
);
const YARDSTICK: &str = include_str!("../../shaders/yardstick.wgsl");
const SURROGATE_COMMON: &str = include_str!("../../shaders/surrogate_common.wgsl");
const SURROGATE_ROWS: &str = include_str!("../../shaders/surrogate_rows.wgsl");
const POINTWISE: &str = include_str!("../../shaders/pointwise.wgsl");

/// A kernel family: one `.wgsl` file under `shaders/` (cross-entropy: two, concatenated).
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Family {
    /// `stats` and `lse_merge`.
    LogSumExp,
    /// `fused` and `write`.
    Softmax,
    /// `ce_fused`, `ce_stats`, `ce_rows`, `ce_grad`.
    CrossEntropy,
    /// The same kernels with the gradient written over the logits (x bound read-write).
    CrossEntropyInPlace,
    /// `copy` and `exp_map`: the benchmarks' bandwidth yardsticks.
    Yardstick,
    /// `weighted`, `margin`, `f1_columns`: the row-wise surrogates (always scalar loads; the
    /// op is `ce_bits`).
    SurrogateRows,
    /// `pointwise`: the element-wise surrogates (the op is `ce_bits`).
    Pointwise,
}

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

    /// Entry points of the family, for validation.
    #[cfg(test)]
    pub(crate) fn entry_points(self) -> &'static [&'static str] {
        match self {
            Family::LogSumExp => &["stats", "stats_partial", "merge_rows", "lse_merge"],
            Family::Softmax => &["fused", "write"],
            Family::CrossEntropy | Family::CrossEntropyInPlace => {
                &["ce_fused", "ce_stats", "ce_rows", "ce_grad"]
            }
            Family::Yardstick => &["copy", "exp_map"],
            Family::SurrogateRows => &["weighted", "margin", "f1_columns"],
            Family::Pointwise => &["pointwise"],
        }
    }

    /// Bindings past the prelude's (0 params, 1 x, 2 y, 3 partials): `(binding, kind)`.
    pub(crate) fn extra_bindings(self) -> &'static [(u32, BindingKind)] {
        match self {
            Family::LogSumExp => &[(4, BindingKind::Storage)], // lse
            Family::Softmax | Family::Yardstick => &[],
            Family::CrossEntropy | Family::CrossEntropyInPlace => &[
                (4, BindingKind::Storage),  // row_out
                (5, BindingKind::ReadOnly), // row_in
                (6, BindingKind::ReadOnly), // weight
                (7, BindingKind::ReadOnly), // q
                (8, BindingKind::Uniform),  // ce params
            ],
            Family::SurrogateRows => &[
                (4, BindingKind::Storage),  // row_out
                (5, BindingKind::ReadOnly), // targets
                (6, BindingKind::ReadOnly), // weight: class weights or F1's (h, v)
                (7, BindingKind::ReadOnly), // q (unused)
                (8, BindingKind::Uniform),  // surrogate params
            ],
            Family::Pointwise => &[
                (4, BindingKind::ReadOnly), // b_in: labels or b
                (5, BindingKind::Storage),  // grad
                (6, BindingKind::ReadOnly), // weight per element
                (7, BindingKind::ReadOnly), // q: pos_weight per column
                (8, BindingKind::Uniform),  // surrogate params
            ],
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

/// Everything that changes the text of a shader module. Part of the pipeline-cache key.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct ShaderKey {
    pub family: Family,
    /// vec4 loads and stores (needs `C % 4 == 0`), else scalar.
    pub vec4: bool,
    /// Invocations per (row, segment) item: a power of two in 1..=256.
    pub row_threads: u32,
    /// Softmax family: write log-softmax.
    pub log_output: bool,
    /// Cross-entropy family: probability targets instead of class indices.
    pub prob_targets: bool,
    /// Cross-entropy family: the `CE_*` bits (softcap, weight, linear sums, gradient), all fixed
    /// at compile time. Not uniform branches: lavapipe runs both sides of a uniform
    /// branch under a mask, so a forward-only call paid for the gradient loop (measured 2×).
    pub ce_bits: u32,
    /// How the exponent is formed for this call's temperature (see `crate::scale`): `(x − m)·c`
    /// for `T ≤ 1`, `fma(x, ½, −m/2)·c` for `T > 1`, `((x − m)·2⁶⁴)·c` for `T < 1/f32::MAX`.
    /// Compile-time for the same reason as `ce_bits`, and so that the common form costs what
    /// the plain subtraction does.
    pub exp_form: ExpForm,
}

/// Every exponent form (for validating every variant).
#[cfg(test)]
const EXP_FORMS: [ExpForm; 3] = [ExpForm::Unit, ExpForm::Half, ExpForm::Tiny];

/// The values `row_threads` can take.
#[cfg(test)]
pub(crate) const ROW_THREADS: [u32; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];

impl ShaderKey {
    /// The complete WGSL text of this variant.
    pub fn source(&self) -> String {
        let in_place = self.family == Family::CrossEntropyInPlace;
        let header = format!(
            "// specialization: {self:?}\nconst ROW_THREADS: u32 = {}u;\nconst LOG_OUTPUT: bool = {};\n\
             const PROB_TARGETS: bool = {};\nconst CE_STATIC: u32 = {}u;\nconst IN_PLACE: bool = {in_place};\n\
             const EXP_FORM: u32 = {}u;\n\n",
            self.row_threads,
            self.log_output,
            self.prob_targets,
            self.ce_bits,
            self.exp_form as u32
        );
        let mut variant = (if self.vec4 { VEC4 } else { SCALAR }).to_string();
        // Where a gradient goes: y, or (in place) back over the logits in x, with x's layout.
        let store_grad = if !in_place {
            "fn store_grad4(row: u32, j: u32, v: vec4<f32>) {\n    store4(row, j, v);\n}\n\
             fn store_grad1(row: u32, c: u32, v: f32) {\n    store1(row, c, v);\n}\n"
        } else {
            variant = variant.replace("var<storage, read> x:", "var<storage, read_write> x:");
            if self.vec4 {
                "fn store_grad4(row: u32, j: u32, v: vec4<f32>) {\n    x[(params.x_base + row * params.x_stride) / 4u + j] = v;\n}\n\
                 fn store_grad1(row: u32, c: u32, v: f32) {\n    let i = params.x_base + row * params.x_stride + c;\n    x[i / 4u][i % 4u] = v;\n}\n"
            } else {
                "fn store_grad4(row: u32, j: u32, v: vec4<f32>) {\n    let base = params.x_base + row * params.x_stride;\n    \
                 for (var k = 0u; k < 4u; k++) {\n        if 4u * j + k < params.cols {\n            x[base + 4u * j + k] = v[k];\n        }\n    }\n}\n\
                 fn store_grad1(row: u32, c: u32, v: f32) {\n    x[params.x_base + row * params.x_stride + c] = v;\n}\n"
            }
        };
        let common = if self.family.is_surrogate() {
            SURROGATE_COMMON
        } else {
            ""
        };
        [
            header.as_str(),
            PRELUDE,
            &variant,
            store_grad,
            common,
            self.family.source(),
        ]
        .join("\n")
    }

    /// A label for wgpu objects and error messages.
    pub fn label(&self) -> String {
        format!(
            "smoothmax/{:?}/{}/rt{}{}{}/ce{}",
            self.family,
            if self.vec4 { "vec4" } else { "scalar" },
            self.row_threads,
            if self.log_output { "/log" } else { "" },
            if self.prob_targets { "/prob" } else { "" },
            self.ce_bits
        )
    }

    /// Every variant the engine can ask for.
    #[cfg(test)]
    pub fn all() -> Vec<ShaderKey> {
        let mut keys = Vec::new();
        for family in [
            Family::LogSumExp,
            Family::Softmax,
            Family::CrossEntropy,
            Family::Yardstick,
            Family::CrossEntropyInPlace,
        ] {
            for vec4 in [false, true] {
                for row_threads in ROW_THREADS {
                    for flag in [false, true] {
                        let (log_output, prob_targets) = match family {
                            Family::CrossEntropy | Family::CrossEntropyInPlace => (false, flag),
                            _ => (flag, false),
                        };
                        // CE: the compile-time bits (softcap 1, weight 2, linear 4, gradient 8)
                        // in every combination; in place always writes the gradient.
                        let ce_sets = match family {
                            Family::CrossEntropy => 0..16,
                            Family::CrossEntropyInPlace => 8..16,
                            _ => 0..1,
                        };
                        for ce_bits in ce_sets {
                            for exp_form in EXP_FORMS {
                                keys.push(ShaderKey {
                                    family,
                                    vec4,
                                    row_threads,
                                    log_output,
                                    prob_targets,
                                    ce_bits,
                                    exp_form,
                                });
                            }
                        }
                    }
                }
            }
        }
        for (family, ops) in [
            (Family::SurrogateRows, &[1u32, 2, 3, 4, 5, 6][..]),
            (
                Family::Pointwise,
                &[10, 11, 12, 13, 14, 20, 21, 22, 30, 31][..],
            ),
        ] {
            let threads: &[u32] = if family == Family::Pointwise {
                &[1]
            } else {
                &ROW_THREADS
            };
            for &op in ops {
                for &row_threads in threads {
                    for exp_form in EXP_FORMS {
                        keys.push(ShaderKey {
                            family,
                            vec4: false,
                            row_threads,
                            log_output: false,
                            prob_targets: false,
                            ce_bits: op,
                            exp_form,
                        });
                    }
                }
            }
        }
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses and validates every variant with naga: no GPU needed, so shader bugs fail in
    /// plain `cargo test` on any machine.
    #[test]
    fn every_variant_validates_with_naga() {
        for key in ShaderKey::all() {
            let src = key.source();
            let module = naga::front::wgsl::parse_str(&src)
                .unwrap_or_else(|e| panic!("{}: {}", key.label(), e.emit_to_string(&src)));
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", key.label(), e.emit_to_string(&src)));
            for ep in key.family.entry_points() {
                assert!(
                    module.entry_points.iter().any(|e| e.name == *ep),
                    "{} lacks entry point {ep}",
                    key.label()
                );
            }
        }
    }
}
