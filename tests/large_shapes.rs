//! The large shapes, once each: many rows (grid folding), very long rows (several workgroups
//! per row), and an input larger than lavapipe's 128 MiB storage binding (row chunking).

mod common;

use common::{assert_close_1d, assert_close_2d, fast_backends, logits};
use smoothmax::Backend;
use smoothmax::Reference;

/// Softmax and logsumexp (T = 1) of a `[rows, cols]` spiky matrix on every fast backend,
/// against the reference.
fn softmax_and_lse_match_reference(rows: usize, cols: usize, seed: u64) {
    let x = logits(rows, cols, 2.0, 0.0, true, seed);
    let want = Reference.softmax_f64(x.view(), 1.0, false).unwrap();
    let want_lse = Reference.logsumexp_f64(x.view(), 1.0).unwrap();
    for b in fast_backends() {
        assert_close_2d(
            b.softmax(x.view(), 1.0).unwrap().view(),
            want.view(),
            &format!("{} softmax", b.name()),
        );
        assert_close_1d(
            b.logsumexp(x.view(), 1.0).unwrap().view(),
            want_lse.view(),
            cols,
            &format!("{} lse", b.name()),
        );
    }
}

#[test]
fn many_short_rows_70000_by_3() {
    softmax_and_lse_match_reference(70_000, 3, 1);
}

#[test]
fn two_rows_of_a_million() {
    let x = logits(2, 1_048_576, 3.0, -5.0, true, 2);
    let want = Reference.softmax_f64(x.view(), 1.0, true).unwrap();
    let want_lse = Reference.logsumexp_f64(x.view(), 2.0).unwrap();
    for b in fast_backends() {
        let got = b.log_softmax(x.view(), 1.0).unwrap();
        assert_close_2d(
            got.view(),
            want.view(),
            &format!("{} log_softmax", b.name()),
        );
        let lse = b.logsumexp(x.view(), 2.0).unwrap();
        common::assert_lse_close(
            lse.view(),
            want_lse.view(),
            1_048_576,
            2.0,
            &format!("{} lse T=2", b.name()),
        );
    }
}

#[test]
fn input_larger_than_the_binding_limit_4096_by_32000() {
    softmax_and_lse_match_reference(4096, 32_000, 3);
}
