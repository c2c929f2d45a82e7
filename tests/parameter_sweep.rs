//! The row ops' temperature swept over its whole accepted range (from the smallest subnormal to
//! the largest finite f32, and the values around 1) on every fast backend, on inputs that
//! stress it from every side (`common::sweep::inputs`), against the f64 reference. Where the
//! exact answer overflows f32 the answer is the infinity of its sign. The other parameters:
//! tests/parameter_sweep_ce.rs and tests/parameter_sweep_surrogates.rs.

mod common;

use common::sweep::{inputs, positives};
use common::{check_row_ops, fast_backends};

#[test]
fn row_ops_at_every_temperature() {
    let x = inputs();
    let mut ts = positives();
    ts.extend([
        f32::MIN_POSITIVE * 2.0,
        2.9e-39,
        1.0 - f32::EPSILON / 2.0,
        1.0 + f32::EPSILON,
    ]);
    for b in fast_backends() {
        for &t in &ts {
            for r in 0..x.nrows() {
                let row = x.slice(ndarray::s![r..r + 1, ..]);
                check_row_ops(b, row, t, &format!("{} T={t:e} row {r}", b.name()));
            }
            check_row_ops(b, x.view(), t, &format!("{} T={t:e} all rows", b.name()));
        }
    }
}
