//! The non-finite table in each element type, and half outputs overflowing to ±inf, on every
//! backend.

mod common;

use common::{fast_backends, sized};
use ndarray::Array2;
use smoothmax::half::{bf16, f16};
use smoothmax::{
    Backend, CrossEntropyOptions, DType, Element, Reference, RowOp, Targets, Upstream,
};

fn backends() -> Vec<&'static &'static dyn Backend> {
    let mut v = fast_backends();
    v.push(sized(&Reference));
    v
}

/// The crate's non-finite table, in each element type: the same special values on every
/// backend, in the input's type.
#[test]
fn nonfinite_table_in_every_type() {
    fn case<E: Element>() {
        let inf = f32::INFINITY;
        let big = if E::DTYPE == DType::F16 { 6e4 } else { 1e30 };
        let rows: [&[f32]; 5] = [
            &[-inf, -inf, -inf],
            &[-inf, 1.0, 2.0],
            &[inf, 0.0, 1.0],
            &[f32::NAN, 0.0, 1.0],
            &[big, 0.0, -inf],
        ];
        for b in backends() {
            for r in rows {
                let x = Array2::from_shape_vec((1, 3), r.iter().map(|&v| E::from_f32(v)).collect())
                    .unwrap();
                let lse = b.logsumexp(x.view(), 1.0).unwrap()[0];
                let sm = b.softmax(x.view(), 1.0).unwrap().mapv(|v| v.to_f32());
                let lsm = b.log_softmax(x.view(), 1.0).unwrap().mapv(|v| v.to_f32());
                let what = format!("{} {:?} {r:?}", b.name(), E::DTYPE);
                if r[0].is_nan() {
                    assert!(
                        lse.is_nan() && sm.iter().chain(&lsm).all(|v| v.is_nan()),
                        "{what}"
                    );
                } else if r[0] == inf {
                    assert!(
                        lse == inf && sm.iter().chain(&lsm).all(|v| v.is_nan()),
                        "{what}"
                    );
                } else if r[1] == -inf {
                    assert!(
                        lse == -inf && sm.iter().chain(&lsm).all(|v| v.is_nan()),
                        "{what}"
                    );
                } else if r[0] == -inf {
                    assert!(
                        lse.is_finite() && sm[[0, 0]] == 0.0 && lsm[[0, 0]] == -inf,
                        "{what}"
                    );
                } else {
                    assert_eq!(lse, E::from_f32(big).to_f32(), "{what}");
                    assert_eq!(sm.row(0).to_vec(), vec![1.0, 0.0, 0.0], "{what}");
                    assert_eq!((lsm[[0, 0]], lsm[[0, 2]]), (0.0, -inf), "{what}");
                    // −big is representable, so the middle entry is −big rounded.
                    assert_eq!(lsm[[0, 1]], E::from_f32(-big).to_f32(), "{what}");
                }
            }
            // An empty row: −inf, and empty matrices.
            let x = Array2::<E>::default((2, 0));
            assert_eq!(b.logsumexp(x.view(), 1.0).unwrap().to_vec(), vec![-inf; 2]);
            assert_eq!(b.softmax(x.view(), 1.0).unwrap().dim(), (2, 0));
        }
    }
    case::<f16>();
    case::<bf16>();
}

/// f16's largest finite value is 65504: finite f32 results beyond it must become ±inf.
#[test]
fn half_outputs_overflow_to_infinity() {
    let x = ndarray::array![[f16::from_f32(0.0), f16::from_f32(-60000.0)]];
    let y = ndarray::array![0i64];
    for b in backends() {
        // (x − m)/T − ln s = −120000 at T = 0.5: −inf in f16, finite in bf16 and f32.
        let l = b.log_softmax(x.view(), 0.5).unwrap();
        assert_eq!(l[[0, 1]], f16::NEG_INFINITY, "{}", b.name());
        let wide = b
            .row_op_tensor(RowOp::LogSoftmax, x.view().into(), 0.5, Some(DType::F32))
            .unwrap();
        assert_eq!(
            wide.into_typed::<f32, ndarray::Ix2>().unwrap()[[0, 1]],
            -120000.0
        );
        // A gradient of ±5e5 (upstream 1e6 times ±1/2): ±inf in f16.
        let z = ndarray::array![[f16::from_f32(0.0), f16::from_f32(0.0)]];
        let o = CrossEntropyOptions {
            gradient: true,
            upstream: Upstream::Scalar(1e6),
            ..Default::default()
        };
        let g = b
            .cross_entropy(z.view(), Targets::classes(y.view()), &o)
            .unwrap()
            .grad
            .unwrap();
        assert_eq!(
            g.row(0).to_vec(),
            vec![f16::NEG_INFINITY, f16::INFINITY],
            "{}",
            b.name()
        );
        let zb = z.mapv(|v| bf16::from_f32(v.to_f32()));
        let gb = b
            .cross_entropy(zb.view(), Targets::classes(y.view()), &o)
            .unwrap()
            .grad
            .unwrap();
        assert_eq!(
            gb.row(0).to_vec(),
            vec![bf16::from_f32(-5e5), bf16::from_f32(5e5)]
        );
    }
}
