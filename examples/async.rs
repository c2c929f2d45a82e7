//! The async API from a tokio task, on a single-threaded runtime: while the GPU softmax is in
//! flight, a ticker task on the same thread keeps running, which it could not if the call
//! blocked the executor.
//!
//! ```sh
//! cargo run --release --example async
//! ```

use smoothmax::gpu::Rows;
use smoothmax::{Backend, Gpu, Reference, RowOp};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let gpu = match Gpu::new_async().await {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{e}");
            return Ok(());
        }
    };
    println!("device: {}", gpu.adapter().name);
    let x = ndarray::Array2::from_shape_fn((512, 32_000), |(i, j)| {
        ((i * 31 + j * 17) % 1000) as f32 / 100.0
    });

    // A task on the same (only) executor thread.
    let ticks = Arc::new(AtomicUsize::new(0));
    let t = ticks.clone();
    let ticker = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(1)).await;
            t.fetch_add(1, Ordering::Relaxed);
        }
    });

    let started = std::time::Instant::now();
    let p = gpu
        .call(Rows {
            op: RowOp::Softmax,
            x: x.view(),
            temperature: 1.0,
        })
        .run_async()
        .await?
        .into_matrix()?;
    let elapsed = started.elapsed();
    ticker.abort();
    let ticked = ticks.load(Ordering::Relaxed);
    println!(
        "softmax [512, 32000] awaited in {:.1} ms; the ticker ran {ticked} times meanwhile",
        elapsed.as_secs_f64() * 1e3
    );

    let lse = gpu
        .call(Rows {
            op: RowOp::LogSumExp,
            x: x.view(),
            temperature: 0.5,
        })
        .run_async()
        .await?
        .into_per_row()?;
    let want = Reference.logsumexp(x.view(), 0.5)?;
    let worst = lse
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!("logsumexp (async) vs reference: worst difference {worst:.2e}");
    let sums_ok = p.rows().into_iter().all(|r| (r.sum() - 1.0).abs() < 1e-3);
    println!("softmax rows sum to 1: {sums_ok}");
    if ticked == 0 || !sums_ok || worst > 1e-3 {
        return Err("the async call blocked the executor or gave a wrong result".into());
    }
    // The blocking API is the same code: it must agree exactly.
    assert_eq!(p, gpu.softmax(x.view(), 1.0)?);
    Ok(())
}
