//! Shader checks that need no GPU: every kernel variant the engine can ask for parses and
//! validates with naga and has its entry point; each family's bindings in WGSL are its slot
//! table in Rust (name, number, access); and the uniform structs declared in Rust
//! (`uniforms.rs`) match their WGSL declarations field by field. Any drift between the two
//! sides fails here, in plain `cargo test`.

use super::uniforms::{CeParams, MParams, Params, SParams};
use super::{BindingKind, CeFlags, Entry, Family, Kernel, Spec, SurrogateOp};
use crate::element::DType;
use crate::scale::ExpForm;
use naga::{AddressSpace, ScalarKind, StorageAccess, TypeInner};

const EXP_FORMS: [ExpForm; 3] = [ExpForm::Unit, ExpForm::Half, ExpForm::Tiny];
const ROW_THREADS: [u32; 9] = [1, 2, 4, 8, 16, 32, 64, 128, 256];
const ENTRIES: [Entry; 31] = [
    Entry::Stats,
    Entry::StatsPartial,
    Entry::MergeRows,
    Entry::LseMerge,
    Entry::Fused,
    Entry::Write,
    Entry::CeFused,
    Entry::CeStats,
    Entry::CeRows,
    Entry::CeGrad,
    Entry::Copy,
    Entry::ExpMap,
    Entry::RowSum,
    Entry::RowSumSerial,
    Entry::Weighted,
    Entry::Margin,
    Entry::Power,
    Entry::F1Columns,
    Entry::F1Merge,
    Entry::F1Classes,
    Entry::Pointwise,
    Entry::PointwiseSum,
    Entry::SumBlocks,
    Entry::SumFinal,
    Entry::Convert,
    Entry::Matmul,
    Entry::MatmulLanes,
    Entry::MatmulDot,
    Entry::MatmulNn,
    Entry::MatmulTn,
    Entry::ColSums,
];

/// Every specialization the engine can ask for, per family (one entry point per module: the
/// module text does not depend on it).
fn specs(family: Family) -> Vec<Spec> {
    let mut out = Vec::new();
    match family {
        Family::LogSumExp | Family::Softmax | Family::Yardstick => {
            for vec4 in [false, true] {
                for row_threads in ROW_THREADS {
                    for log_output in [false, true] {
                        for exp_form in EXP_FORMS {
                            out.push(Spec {
                                vec4,
                                row_threads,
                                log_output,
                                exp_form,
                                ..Spec::default()
                            });
                        }
                    }
                }
            }
        }
        Family::CrossEntropy | Family::CrossEntropyInPlace => {
            for vec4 in [false, true] {
                for row_threads in ROW_THREADS {
                    for prob_targets in [false, true] {
                        // In place always writes the gradient.
                        for ce in CeFlags::all_combinations()
                            .filter(|f| family == Family::CrossEntropy || f.contains(CeFlags::GRAD))
                        {
                            out.push(Spec {
                                vec4,
                                row_threads,
                                prob_targets,
                                ce,
                                ..Spec::default()
                            });
                        }
                    }
                }
            }
        }
        Family::Matmul => {
            // Each operand type against each.
            for vec4 in [false, true] {
                for x_dtype in DType::ALL {
                    for y_dtype in DType::ALL {
                        out.push(Spec {
                            vec4,
                            x_dtype,
                            y_dtype,
                            ..Spec::default()
                        });
                    }
                }
            }
        }
        Family::SurrogateRows | Family::Pointwise => {
            let threads: &[u32] = if family == Family::Pointwise {
                &[1]
            } else {
                &ROW_THREADS
            };
            for (op, _, _) in SurrogateOp::ALL {
                for &row_threads in threads {
                    for exp_form in EXP_FORMS {
                        out.push(Spec {
                            row_threads,
                            op: Some(op),
                            exp_form,
                            ..Spec::default()
                        });
                    }
                }
            }
        }
    }
    // Every pair of element types, for the families that read and write matrices in them
    // (f32 → f32 above).
    if matches!(
        family,
        Family::LogSumExp | Family::Softmax | Family::CrossEntropy | Family::CrossEntropyInPlace
    ) {
        // (The yardstick family is checked below, each type read and written as itself.)
        for vec4 in [false, true] {
            for x_dtype in DType::ALL {
                for y_dtype in DType::ALL {
                    for log_output in [false, true] {
                        out.push(Spec {
                            vec4,
                            row_threads: 4,
                            log_output,
                            ce: CeFlags::all_combinations().last().unwrap_or(CeFlags(0)),
                            x_dtype,
                            y_dtype,
                            ..Spec::default()
                        });
                    }
                }
            }
        }
    }
    if family == Family::Yardstick {
        for dtype in DType::ALL {
            out.push(Kernel::yardstick(Entry::ExpMap, dtype).spec);
        }
    }
    out
}

fn parse(kernel: &Kernel) -> (naga::Module, String) {
    let src = kernel.source();
    let module = naga::front::wgsl::parse_str(&src)
        .unwrap_or_else(|e| panic!("{}: {}", kernel.label(), e.emit_to_string(&src)));
    (module, src)
}

#[test]
fn every_variant_validates_with_naga() {
    for family in Family::ALL {
        let entries: Vec<Entry> = ENTRIES.into_iter().filter(|e| e.is_in(family)).collect();
        assert!(!entries.is_empty(), "{family:?} has no entry point");
        for spec in specs(family) {
            let kernel = Kernel {
                family,
                entry: entries[0],
                spec,
            };
            let (module, src) = parse(&kernel);
            naga::valid::Validator::new(
                naga::valid::ValidationFlags::all(),
                naga::valid::Capabilities::empty(),
            )
            .validate(&module)
            .unwrap_or_else(|e| panic!("{}: {}", kernel.label(), e.emit_to_string(&src)));
            for e in &entries {
                assert!(
                    module.entry_points.iter().any(|ep| ep.name == e.name()),
                    "{} lacks entry point {}",
                    kernel.label(),
                    e.name()
                );
            }
        }
    }
}

/// The bindings a module declares, as `(name, binding, kind, used by an entry point)`.
fn declared_bindings(module: &naga::Module) -> Vec<(String, u32, BindingKind, bool)> {
    let info = naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(module)
    .expect("valid module");
    module
        .global_variables
        .iter()
        .filter_map(|(h, g)| {
            let b = g.binding.as_ref()?;
            let kind = match g.space {
                AddressSpace::Uniform => BindingKind::Uniform,
                AddressSpace::Storage { access } if access.contains(StorageAccess::STORE) => {
                    BindingKind::Storage
                }
                AddressSpace::Storage { .. } => BindingKind::ReadOnly,
                other => panic!("unexpected address space {other:?}"),
            };
            assert_eq!(b.group, 0);
            let used =
                (0..module.entry_points.len()).any(|i| !info.get_entry_point(i)[h].is_empty());
            Some((g.name.clone().unwrap_or_default(), b.binding, kind, used))
        })
        .collect()
}

/// Every slot of a family's table is declared under its name, number and kind, and every
/// binding an entry point uses is in the table (the load/store variants declare `weight` and
/// `q` for every family; families without those slots never touch them).
#[test]
fn each_family_declares_its_slot_table() {
    for family in Family::ALL {
        let entry = ENTRIES.into_iter().find(|e| e.is_in(family)).unwrap();
        let all = specs(family);
        for spec in [all[0], all[all.len() - 1]] {
            let (module, _) = parse(&Kernel {
                family,
                entry,
                spec,
            });
            let declared = declared_bindings(&module);
            for &(slot, number, kind) in family.slots() {
                let name = slot.wgsl_name();
                assert!(
                    declared
                        .iter()
                        .any(|(n, b, k, _)| n == name && *b == number && *k == kind),
                    "{family:?}: slot {slot:?} is not declared as `{name}` at binding {number} \
                     ({kind:?}); WGSL has {declared:?}"
                );
            }
            for (name, number, kind, used) in &declared {
                let in_table = family
                    .slots()
                    .iter()
                    .any(|&(s, b, k)| s.wgsl_name() == name && b == *number && k == *kind);
                assert!(
                    in_table || !used,
                    "{family:?}: `{name}` at binding {number} ({kind:?}) is used but not in \
                     the table"
                );
            }
        }
    }
}

/// A uniform struct's WGSL declaration: `(member name, offset, scalar type)` and its size.
fn wgsl_struct(module: &naga::Module, name: &str) -> (Vec<(String, usize, &'static str)>, usize) {
    let (members, span) = module
        .types
        .iter()
        .find_map(|(_, t)| match (&t.name, &t.inner) {
            (Some(n), TypeInner::Struct { members, span }) if n == name => Some((members, span)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no struct {name} in the WGSL"));
    let fields = members
        .iter()
        .map(|m| {
            let ty = match &module.types[m.ty].inner {
                TypeInner::Scalar(s) if s.width == 4 && s.kind == ScalarKind::Uint => "u32",
                TypeInner::Scalar(s) if s.width == 4 && s.kind == ScalarKind::Float => "f32",
                TypeInner::Scalar(s) if s.width == 4 && s.kind == ScalarKind::Sint => "i32",
                other => panic!("{name}.{:?}: not a 4-byte scalar: {other:?}", m.name),
            };
            (m.name.clone().unwrap_or_default(), m.offset as usize, ty)
        })
        .collect();
    (fields, *span as usize)
}

/// The Rust side of a uniform struct in the same form.
fn rust_struct<T>(
    fields: &[(&str, usize, &'static str)],
) -> (Vec<(String, usize, &'static str)>, usize) {
    (
        fields
            .iter()
            .map(|&(n, o, t)| (n.to_string(), o, t))
            .collect(),
        std::mem::size_of::<T>(),
    )
}

#[test]
fn uniform_structs_match_their_wgsl_declarations() {
    let module = |family, entry, spec| {
        parse(&Kernel {
            family,
            entry,
            spec,
        })
        .0
    };
    let rows = module(Family::LogSumExp, Entry::Stats, Spec::default());
    let ce = module(Family::CrossEntropy, Entry::CeFused, Spec::default());
    let sur = module(
        Family::Pointwise,
        Entry::Pointwise,
        Spec {
            op: Some(SurrogateOp::Logistic),
            ..Spec::default()
        },
    );
    assert_eq!(
        wgsl_struct(&rows, "Params"),
        rust_struct::<Params>(Params::FIELDS)
    );
    assert_eq!(
        wgsl_struct(&ce, "CeParams"),
        rust_struct::<CeParams>(CeParams::FIELDS)
    );
    assert_eq!(
        wgsl_struct(&sur, "SParams"),
        rust_struct::<SParams>(SParams::FIELDS)
    );
    let mm = module(Family::Matmul, Entry::Matmul, Spec::default());
    assert_eq!(
        wgsl_struct(&mm, "MParams"),
        rust_struct::<MParams>(MParams::FIELDS)
    );
}

#[test]
fn every_op_and_family_is_listed_once() {
    for (i, &(op, _, v)) in SurrogateOp::ALL.iter().enumerate() {
        assert_eq!(op.code(), v, "{op:?}");
        assert!(
            SurrogateOp::ALL[..i].iter().all(|&(o, _, _)| o != op),
            "{op:?} twice"
        );
    }
    // A family missing from ALL would have no bind-group layout: every slot table is listed.
    let mut seen = Vec::new();
    for f in Family::ALL {
        assert!(!seen.contains(&f), "{f:?} twice");
        seen.push(f);
        match f {
            Family::LogSumExp
            | Family::Softmax
            | Family::CrossEntropy
            | Family::CrossEntropyInPlace
            | Family::Yardstick
            | Family::SurrogateRows
            | Family::Pointwise
            | Family::Matmul => {}
        }
    }
    assert_eq!(
        seen.len(),
        8,
        "a new family needs a place in Family::ALL and here"
    );
}

#[test]
fn op_codes_are_distinct_and_ranges_hold() {
    let mut codes: Vec<u32> = SurrogateOp::ALL.iter().map(|&(_, _, v)| v).collect();
    codes.sort_unstable();
    codes.dedup();
    assert_eq!(codes.len(), SurrogateOp::ALL.len());
    // pointwise.wgsl tests OP_PAIRWISE_ERF <= OP <= OP_PAIRWISE_ACON for the pairwise forms.
    let pairwise = [
        SurrogateOp::PairwiseErf,
        SurrogateOp::PairwiseSqrt,
        SurrogateOp::PairwiseAcon,
    ];
    let (lo, hi) = (
        SurrogateOp::PairwiseErf.code(),
        SurrogateOp::PairwiseAcon.code(),
    );
    for (op, _, v) in SurrogateOp::ALL {
        assert_eq!(pairwise.contains(&op), (lo..=hi).contains(&v), "{op:?}");
    }
}
