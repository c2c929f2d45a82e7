//! The async forms: same results as the blocking ones, and they do not block a
//! single-threaded executor while the device works.

mod common;

use common::{gpu, logits};
use smoothmax::gpu::{CrossEntropy, Rows};
use smoothmax::{Backend, CrossEntropyOptions, RowOp, Targets};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::test(flavor = "current_thread")]
async fn async_calls_agree_with_blocking_ones_and_leave_the_executor_free() {
    let Some(g) = gpu() else { return };
    let x = logits(256, 32_000, 2.0, 0.0, true, 3);
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            t.fetch_add(1, Ordering::Relaxed);
        }
    });
    let p = g
        .call(Rows {
            op: RowOp::Softmax,
            x: x.view(),
            temperature: 1.0,
        })
        .run_async()
        .await
        .unwrap();
    let ticked = ticks.load(Ordering::Relaxed);
    ticker.abort();
    assert!(
        ticked > 0,
        "the executor thread was blocked during the GPU call"
    );
    assert_eq!(p, g.row_op(RowOp::Softmax, x.view(), 1.0).unwrap());
    assert_eq!(
        g.call(Rows {
            op: RowOp::LogSoftmax,
            x: x.view(),
            temperature: 2.0
        })
        .run_async()
        .await
        .unwrap(),
        g.row_op(RowOp::LogSoftmax, x.view(), 2.0).unwrap()
    );
    assert_eq!(
        g.call(Rows {
            op: RowOp::LogSumExp,
            x: x.view(),
            temperature: 0.5
        })
        .run_async()
        .await
        .unwrap(),
        g.row_op(RowOp::LogSumExp, x.view(), 0.5).unwrap()
    );
    let y = ndarray::Array1::from_shape_fn(256, |i| (i * 31 % 32_000) as i64);
    let o = CrossEntropyOptions {
        gradient: true,
        ..Default::default()
    };
    let a = g
        .call(CrossEntropy {
            logits: x.view(),
            targets: Targets::classes(y.view()),
            options: o.clone(),
        })
        .run_async()
        .await
        .unwrap();
    assert_eq!(
        a,
        g.cross_entropy(x.view(), Targets::classes(y.view()), &o)
            .unwrap()
    );
    // Surrogates: a row op, the two-pass macro F1 and an element-wise loss.
    for call in [
        smoothmax::Surrogate::BoltzmannMax {
            x: x.view(),
            beta: 2.0,
        },
        smoothmax::Surrogate::SmoothF1Macro {
            logits: x.view(),
            targets: y.view(),
            temperature: 1.0,
        },
        smoothmax::Surrogate::PairwiseMax {
            a: x.view(),
            b: x.view(),
            form: smoothmax::PairwiseForm::Erf { mu: 1.0 },
        },
    ] {
        // Bit-equal, NaN included (the spiky logits hold −inf, which the pairwise max maps to NaN).
        let bits = |o: smoothmax::SurrogateOutput| -> Vec<u32> {
            let mut v: Vec<u32> = o.value.to_vec().iter().map(|f| f.to_bits()).collect();
            v.extend(
                o.grad
                    .iter()
                    .chain(o.grad_b.iter().flatten())
                    .map(|f| f.to_bits()),
            );
            v
        };
        let a = bits(g.call(call.clone()).run_async().await.unwrap());
        assert_eq!(a, bits(g.surrogate(&call).unwrap()), "{}", call.name());
    }
    let m = g.upload(x.view()).unwrap();
    assert_eq!(g.download_async(&m).await.unwrap(), x);
    // Device-resident cross-entropy, async and blocking, out of place and in place.
    let d_async = g
        .call(CrossEntropy {
            logits: &m,
            targets: Targets::classes(y.view()),
            options: o.clone(),
        })
        .on_device()
        .run_async()
        .await
        .unwrap();
    let d_block = g
        .call(CrossEntropy {
            logits: &m,
            targets: Targets::classes(y.view()),
            options: o.clone(),
        })
        .on_device()
        .run()
        .unwrap();
    assert_eq!(
        (d_async.loss, d_async.lse),
        (d_block.loss.clone(), d_block.lse.clone())
    );
    let m2 = g.upload(x.view()).unwrap();
    let ip = g
        .call(CrossEntropy {
            logits: &m2,
            targets: Targets::classes(y.view()),
            options: o.clone(),
        })
        .in_place()
        .run_async()
        .await
        .unwrap();
    assert_eq!(ip.loss, d_block.loss);
    assert_eq!(
        g.download_async(&m2).await.unwrap(),
        g.download(d_block.grad.as_ref().unwrap()).unwrap()
    );
}

/// Two multi-chunk calls awaited together on one thread: each chunk's error scopes are pushed
/// and popped with no await between (scopes belong to a thread, and the other call runs at
/// every await), and the futures are `Send` (they may be spawned on a multi-thread runtime).
#[tokio::test(flavor = "current_thread")]
async fn concurrent_calls_on_one_thread_and_send_futures() {
    let Some(g) = gpu() else { return };
    // 640 x 32000 floats = 81.9 MB: two 64 MiB streamed chunks per call.
    let x = logits(640, 32_000, 2.0, 0.0, false, 4);
    let y = logits(640, 32_000, 1.0, 0.5, false, 5);
    fn assert_send<T: Send>(t: T) -> T {
        t
    }
    let a = assert_send(
        g.call(Rows {
            op: RowOp::Softmax,
            x: x.view(),
            temperature: 1.0,
        })
        .run_async(),
    );
    let b = assert_send(
        g.call(Rows {
            op: RowOp::LogSoftmax,
            x: y.view(),
            temperature: 0.5,
        })
        .run_async(),
    );
    let (a, b) = tokio::join!(a, b);
    assert_eq!(a.unwrap(), g.row_op(RowOp::Softmax, x.view(), 1.0).unwrap());
    assert_eq!(
        b.unwrap(),
        g.row_op(RowOp::LogSoftmax, y.view(), 0.5).unwrap()
    );
}

/// A call dropped while it awaits a mapping leaves no buffer mapped in the pool: the calls
/// after it work.
#[tokio::test(flavor = "current_thread")]
async fn a_dropped_call_leaves_the_engine_usable() {
    let Some(g) = gpu() else { return };
    let x = logits(640, 32_000, 2.0, 0.0, false, 6);
    for polls in [1usize, 2, 5] {
        let mut call = Box::pin(
            g.call(Rows {
                op: RowOp::Softmax,
                x: x.view(),
                temperature: 1.0,
            })
            .run_async(),
        );
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        for _ in 0..polls {
            let _ = call.as_mut().poll(&mut cx);
        }
        drop(call);
        let again = g.call(Rows {
            op: RowOp::Softmax,
            x: x.view(),
            temperature: 1.0,
        });
        assert_eq!(
            again.run_async().await.unwrap(),
            g.row_op(RowOp::Softmax, x.view(), 1.0).unwrap()
        );
    }
}
