//! The fused linear cross-entropy never materializes the logits: at N = 4096, V = 128256,
//! D = 256 (the logits alone would be N·V·4 = 2.10 GB) the CPU path's peak heap beyond its
//! inputs and outputs, and the GPU path's largest buffer, stay far below that.
//!
//! The CPU is measured by the bench's counting global allocator (every Rust allocation of
//! this test binary, so the two tests take turns); the GPU by the engine's own largest-buffer
//! counter.

mod common;

use ndarray::{Array1, Array2};
use smoothmax::bench::{peak_heap, CountingAlloc};
use smoothmax::{Backend, CrossEntropyOptions, Targets};
use std::sync::Mutex;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

static TURN: Mutex<()> = Mutex::new(());

const N: usize = 4096;
const V: usize = 128_256;
const D: usize = 256;
/// The logits' bytes in f32: what the materialized path holds before its gradient.
const LOGITS: usize = N * V * 4;

fn inputs() -> (Array2<f32>, Array2<f32>, Array1<i64>) {
    let mut r = common::Rng(1);
    let h = Array2::from_shape_fn((N, D), |_| r.normal() as f32);
    let w = Array2::from_shape_fn((V, D), |_| (r.normal() / 8.0) as f32);
    let y = Array1::from_shape_fn(N, |i| (i * 7919 % V) as i64);
    (h, w, y)
}

#[test]
fn cpu_peak_heap_is_a_tile_not_the_logits() {
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let (h, w, y) = inputs();
    let o = CrossEntropyOptions {
        gradient: true,
        ..Default::default()
    };
    let (out, peak) = peak_heap(|| {
        common::cpu().linear_cross_entropy(
            h.view().into(),
            w.view().into(),
            None,
            Targets::classes(y.view()),
            &o,
        )
    });
    let out = out.unwrap();
    let peak = peak.expect("the counting allocator is this binary's global allocator");
    // The outputs: grad_hidden [N, D], grad_weight [V, D], lse [N] (f32).
    let outputs = (N * D + V * D + N) * 4;
    let extra = peak.saturating_sub(outputs);
    eprintln!(
        "cpu: peak heap {:.1} MB during the call, {:.1} MB of it outputs, {:.1} MB extra; \
         the logits would be {:.1} MB",
        peak as f64 / 1e6,
        outputs as f64 / 1e6,
        extra as f64 / 1e6,
        LOGITS as f64 / 1e6
    );
    assert!(out.loss.scalar().unwrap().is_finite());
    assert!(
        extra < LOGITS / 50,
        "extra heap {extra} bytes is not far below {LOGITS}"
    );
}

#[test]
fn gpu_largest_buffer_is_a_tile_not_the_logits() {
    let Some(gpu) = common::gpu() else { return };
    let _turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
    let (h, w, y) = inputs();
    let o = CrossEntropyOptions::default();
    let out = gpu
        .linear_cross_entropy(
            h.view().into(),
            w.view().into(),
            None,
            Targets::classes(y.view()),
            &o,
        )
        .unwrap();
    let largest = gpu.counters().largest_buffer_bytes as usize;
    eprintln!(
        "gpu: largest buffer {:.1} MB; the logits would be {:.1} MB",
        largest as f64 / 1e6,
        LOGITS as f64 / 1e6
    );
    assert!(out.loss.scalar().unwrap().is_finite());
    assert!(
        largest < LOGITS / 50,
        "largest buffer {largest} bytes is not far below {LOGITS}"
    );
}
