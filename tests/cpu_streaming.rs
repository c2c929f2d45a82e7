//! Outputs large enough for the CPU's non-temporal stores (`Cpu::STREAM_MIN_BYTES`: log-softmax
//! in every type, softmax and the cross-entropy gradient in f16 / bf16, and in f32 for rows
//! long enough to go through a row buffer; shorter f32 rows are formed in place, checked here
//! too), on every build this processor runs, with rows that start off a 64-byte line (odd
//! column counts: each row has an unaligned head before the streamed lines, and a tail; the
//! target's gradient falls in heads, tails and streamed lines), against the f64 reference.
//! The small shapes of the other tests never reach that path.

mod common;

use common::ce::grad_unit;
use common::typed::{assert_typed_close, random, values};
use ndarray::{Array1, Array2};
use smoothmax::half::{bf16, f16};
use smoothmax::{
    Backend, Cpu, CpuIsa, CrossEntropyOptions, Element, Reduction, Reference, Targets,
};

/// Row lengths: long rows, rows just over the shortest the f32 outputs stream through the
/// row buffer (512), and rows formed in place.
const COLS: [usize; 3] = [8191, 515, 301];

fn case<E: Element>(cpu: &Cpu, seed: u64, cols: usize) {
    let rows = Cpu::STREAM_MIN_BYTES.div_ceil(cols * E::DTYPE.size());
    assert!(rows * cols * E::DTYPE.size() >= Cpu::STREAM_MIN_BYTES);
    let x =
        Array2::from_shape_vec((rows, cols), random::<E>(rows * cols, 3.0, true, seed)).unwrap();
    let w = x.mapv(|v| v.to_f32());
    let what = format!("{:?} {:?} [{rows}, {cols}]", cpu.isa().unwrap(), E::DTYPE);
    for log in [false, true] {
        let got = if log {
            cpu.log_softmax(x.view(), 1.0)
        } else {
            cpu.softmax(x.view(), 1.0)
        }
        .unwrap();
        let want = Reference.softmax_f64(w.view(), 1.0, log).unwrap();
        let v: Vec<f64> = got.iter().map(|e| e.to_f32() as f64).collect();
        assert_typed_close(
            E::DTYPE,
            &v,
            want.as_slice().unwrap(),
            cols,
            1.0,
            &format!("{what} log={log}"),
        );
    }
    let y: Array1<i64> = (0..rows as i64).map(|i| (i * 7919) % cols as i64).collect();
    let cw: Array1<f32> = (0..cols).map(|j| 0.5 + (j % 3) as f32).collect();
    // Without class weights a half gradient is written in one pass from the stored terms;
    // with them, updated in f32 first and narrowed after.
    for weight in [None, Some(cw.view())] {
        let o = CrossEntropyOptions {
            label_smoothing: 0.1,
            reduction: Reduction::Mean,
            weight,
            gradient: true,
            ..Default::default()
        };
        let t = Targets::classes(y.view());
        let r = cpu
            .cross_entropy_tensor(x.view().into_dyn().into(), t.clone(), &o, None)
            .unwrap();
        let want = Reference
            .cross_entropy_f64(w.view(), t.clone(), &o)
            .unwrap();
        let (d, v) = values(&r.grad.unwrap());
        let wg: Vec<f64> = want.grad.unwrap().iter().copied().collect();
        let unit = grad_unit(&t, weight.map(|_| &cw), &o, rows);
        assert_typed_close(
            d,
            &v,
            &wg,
            cols,
            unit,
            &format!("{what} ce grad weight={}", weight.is_some()),
        );
    }
}

#[test]
fn streamed_outputs_match_the_reference_on_every_build() {
    for isa in CpuIsa::supported() {
        let cpu = Cpu::with_isa(isa).unwrap();
        for (k, cols) in COLS.into_iter().enumerate() {
            let seed = 3 * k as u64;
            case::<f32>(&cpu, seed + 1, cols);
            case::<bf16>(&cpu, seed + 2, cols);
            case::<f16>(&cpu, seed + 3, cols);
        }
    }
}
