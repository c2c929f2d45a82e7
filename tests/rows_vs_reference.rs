//! Every fast backend (CPU, and GPU when there is one) against the f64 reference, on pinned
//! shapes that straddle the workgroup and vector widths and on property-generated ones.

mod common;

use common::{check_row_ops, fast_backends, logits};
use proptest::prelude::*;

const PINNED_COLS: [usize; 11] = [0, 1, 7, 63, 64, 65, 255, 257, 1000, 2049, 30576];

#[test]
fn pinned_shapes_small_batches() {
    for b in fast_backends() {
        for &cols in &PINNED_COLS {
            for rows in [0usize, 1, 3] {
                for (i, spiky) in [false, true].into_iter().enumerate() {
                    let x = logits(
                        rows,
                        cols,
                        3.0,
                        0.0,
                        spiky,
                        (rows * 1000 + cols * 7 + i) as u64,
                    );
                    check_row_ops(
                        b,
                        x.view(),
                        1.0,
                        &format!("{} [{rows}, {cols}] spiky={spiky}", b.name()),
                    );
                }
            }
        }
    }
}

#[test]
fn pinned_shapes_70000_rows() {
    for b in fast_backends() {
        for &cols in &[0usize, 1, 7, 63, 64, 65, 257] {
            let x = logits(70_000, cols, 2.0, 1.0, true, cols as u64);
            check_row_ops(b, x.view(), 0.7, &format!("{} [70000, {cols}]", b.name()));
        }
    }
}

#[test]
fn non_contiguous_input_views() {
    let x = logits(40, 90, 1.0, 0.0, true, 5);
    let t = x.t(); // [90, 40], column-major view
    let s = x.slice(ndarray::s![..;3, 1..;2]);
    for b in fast_backends() {
        check_row_ops(b, t, 1.0, &format!("{} transposed", b.name()));
        check_row_ops(b, s, 1.0, &format!("{} strided", b.name()));
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::proptest_cases(48),
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "tests/proptest-regressions/rows_vs_reference.txt",
        ))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_shapes_agree_with_reference(
        rows in 0usize..40,
        cols in prop_oneof![0usize..80, 80usize..3000, 3000usize..40000],
        scale in prop_oneof![Just(0.01f64), Just(1.0), Just(30.0), Just(1e4)],
        shift in prop_oneof![Just(0.0f64), Just(-50.0), Just(1e5)],
        t in prop_oneof![Just(1.0f32), 0.05f32..20.0],
        spiky: bool,
        seed: u64,
    ) {
        let x = logits(rows, cols, scale, shift, spiky, seed);
        for b in fast_backends() {
            check_row_ops(b, x.view(), t, &format!("{} [{rows}, {cols}] scale={scale} shift={shift} T={t}", b.name()));
        }
    }
}
