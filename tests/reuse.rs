//! Repeated calls of the same shape reuse pipelines and pooled buffers: after the first call,
//! no new wgpu buffer or pipeline is created.

mod common;

use common::{gpu, logits};
use smoothmax::{Backend, CrossEntropyOptions, Reduction, Targets};

#[test]
fn repeated_calls_create_no_new_buffers_or_pipelines() {
    let Some(g) = gpu() else { return };
    // Shapes that exercise the fused path, the split-row path and row chunking.
    for (rows, cols) in [(32usize, 1000usize), (4, 40_000), (2000, 20_000)] {
        let x = logits(rows, cols, 2.0, 0.0, false, 1);
        let y = ndarray::Array1::from_shape_fn(rows, |i| (i % cols) as i64);
        let o = CrossEntropyOptions {
            gradient: true,
            label_smoothing: 0.1,
            reduction: Reduction::Mean,
            ..Default::default()
        };
        let run = || {
            g.logsumexp(x.view(), 1.0).unwrap();
            g.softmax(x.view(), 1.0).unwrap();
            g.log_softmax(x.view(), 0.5).unwrap();
            g.cross_entropy(x.view(), Targets::classes(y.view()), &o)
                .unwrap();
        };
        run();
        let first = g.counters();
        for _ in 0..3 {
            run();
        }
        assert_eq!(
            g.counters(),
            first,
            "[{rows}, {cols}]: repeated calls created wgpu objects"
        );
    }
}
