use smoothmax::{Backend, Cpu, CrossEntropyOptions, Gpu, Targets};
fn main() {
    let (n, v, d) = (1024usize, 8192usize, 512usize);
    let h =
        ndarray::Array2::from_shape_fn((n, d), |(i, j)| ((i * 7 + j * 3) % 13) as f32 / 13.0 - 0.5);
    let w = ndarray::Array2::from_shape_fn((v, d), |(i, j)| {
        ((i * 5 + j * 11) % 17) as f32 / 40.0 - 0.2
    });
    let y = ndarray::Array1::from_shape_fn(n, |i| (i * 31 % v) as i64);
    let gpu = Gpu::new().unwrap();
    for grad in [false, true] {
        let o = CrossEntropyOptions {
            gradient: grad,
            ..Default::default()
        };
        for _ in 0..2 {
            let t = std::time::Instant::now();
            let out = gpu
                .linear_cross_entropy(
                    h.view().into(),
                    w.view().into(),
                    None,
                    Targets::classes(y.view()),
                    &o,
                )
                .unwrap();
            let s = t.elapsed().as_secs_f64();
            let fl = 2.0 * (n * v * d) as f64 * if grad { 4.0 } else { 1.0 };
            println!(
                "gpu grad={grad}: {:.3} s, {:.1} GFLOP/s, loss {:?}",
                s,
                fl / s / 1e9,
                out.loss.scalar()
            );
        }
        let t = std::time::Instant::now();
        let out = Cpu::new()
            .linear_cross_entropy(
                h.view().into(),
                w.view().into(),
                None,
                Targets::classes(y.view()),
                &o,
            )
            .unwrap();
        let s = t.elapsed().as_secs_f64();
        let fl = 2.0 * (n * v * d) as f64 * if grad { 4.0 } else { 1.0 };
        println!(
            "cpu grad={grad}: {:.3} s, {:.1} GFLOP/s, loss {:?}",
            s,
            fl / s / 1e9,
            out.loss.scalar()
        );
    }
}
