//! Every CPU kernel build this processor can run (AVX-512, AVX2, baseline) against the f64
//! reference in one process, whatever `SMOOTHMAX_CPU_ISA` says; and a build the processor
//! lacks is an error, not a silent fallback. (CI also reruns the comparison suites under each
//! build through `SMOOTHMAX_CPU_ISA`; `common::cpu` proves the requested one ran.)

mod common;

use common::{assert_ce_close, check_row_ops, logits};
use smoothmax::{Backend, Cpu, CpuIsa, CrossEntropyOptions, Reference, Targets};

#[test]
fn every_supported_build_matches_the_reference() {
    let supported = CpuIsa::supported();
    assert_eq!(supported.last(), Some(&CpuIsa::Baseline));
    for isa in supported {
        let cpu = Cpu::with_isa(isa).unwrap();
        assert_eq!(cpu.isa().unwrap(), isa);
        // Lengths that are and are not multiples of 8 and 16 lanes, a +1e7 shift, spikes and
        // −inf, and rows long enough for several 512-float sum blocks.
        for (rows, cols, shift, seed) in [
            (7, 1, 0.0, 1),
            (9, 37, 0.0, 2),
            (5, 1000, 1e7, 3),
            (3, 4099, 0.0, 4),
        ] {
            let x = logits(rows, cols, 3.0, shift, true, seed);
            for t in [0.3, 1.0, 7.0] {
                check_row_ops(&cpu, x.view(), t, &format!("{isa} [{rows}, {cols}] T={t}"));
            }
            let y: ndarray::Array1<i64> = (0..rows as i64).map(|i| i * 3 % cols as i64).collect();
            let w: ndarray::Array1<f32> = (0..cols).map(|j| 0.5 + (j % 4) as f32).collect();
            let o = CrossEntropyOptions {
                weight: Some(w.view()),
                label_smoothing: 0.1,
                z_loss: 1e-3,
                gradient: true,
                ..Default::default()
            };
            let t = Targets::classes(y.view());
            let got = cpu.cross_entropy(x.view(), t.clone(), &o).unwrap();
            let want = Reference.cross_entropy_f64(x.view(), t, &o).unwrap();
            let unit: f64 = y.iter().map(|&c| w[c as usize] as f64).sum();
            assert_ce_close(
                &got,
                &want,
                cols,
                1.0 / unit,
                &format!("{isa} ce [{rows}, {cols}]"),
            );
        }
    }
}

#[test]
fn a_build_the_processor_lacks_is_an_error() {
    for isa in CpuIsa::ALL {
        match Cpu::with_isa(isa) {
            Ok(c) => assert!(isa.is_supported() && c.isa().unwrap() == isa),
            Err(e) => {
                assert!(!isa.is_supported());
                assert!(e.to_string().contains(isa.name()), "{e}");
            }
        }
    }
}
