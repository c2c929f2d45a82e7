//! Fused linear cross-entropy over vocabulary shards (each shard its weight rows, possibly
//! on its own backend) against the unsharded call, and on device-resident inputs against host
//! inputs.

mod common;

use common::linear::{assert_loss, assert_within, inputs, oracle, F32_OUT};
use common::Rng;
use ndarray::{s, Array1, Array2};
use smoothmax::gpu::Matrix;
use smoothmax::linear_ce::{linear_cross_entropy_rows, LinearGrads};
use smoothmax::shard::{merge_rows, ShardedLinearCrossEntropy, VocabShard};
use smoothmax::{Backend, CrossEntropyOptions, Loss, Reduction, Targets};

/// Every backend under test, the reference included.
fn backends() -> Vec<&'static dyn Backend> {
    let mut v: Vec<&'static dyn Backend> = vec![common::cpu(), &smoothmax::Reference];
    if let Some(g) = common::gpu() {
        v.push(g);
    }
    v
}

/// Runs the sharded call with shard `k` on `on[k % on.len()]` and checks it against the
/// oracle: loss, lse, each shard's weight and bias gradients, the summed hidden gradient.
/// `rot` rotates the backends, so that each shard meets each backend over the rotations.
fn sharded<'a>(
    rot: usize,
    cuts: &[usize],
    targets: Targets<'a>,
    o: &CrossEntropyOptions,
    probs: Option<&'a Array2<f32>>,
    what: &str,
) {
    let (n, d, v) = (23, 17, *cuts.last().unwrap());
    let (h, w, b) = inputs(n, d, v, 99);
    let or = oracle(h.view(), w.view(), Some(b.view()), &targets, o);
    let mut on = backends();
    on.rotate_left(rot);
    let spans: Vec<(usize, usize)> = cuts.windows(2).map(|c| (c[0], c[1])).collect();
    let shards: Vec<ShardedLinearCrossEntropy> = spans
        .iter()
        .map(|&(a, e)| {
            let t = match probs {
                Some(q) => Targets::probabilities(q.slice(s![.., a..e])),
                None => targets.clone(),
            };
            ShardedLinearCrossEntropy::new(
                VocabShard {
                    offset: a,
                    total: v,
                },
                t,
                o,
            )
        })
        .collect();
    let part = |k: usize| {
        let (a, e) = spans[k];
        (w.slice(s![a..e, ..]), b.slice(s![a..e]))
    };
    let local: Vec<_> = (0..spans.len())
        .map(|k| {
            let (wk, bk) = part(k);
            shards[k]
                .statistics(on[k % on.len()], h.view().into(), wk.into(), Some(bk))
                .unwrap()
        })
        .collect();
    let mut merged = local[0].clone();
    for l in &local[1..] {
        merge_rows(&mut merged, l).unwrap();
    }
    let done = shards[0].finish(&merged).unwrap();
    assert_loss(
        &match done.loss {
            Loss::Scalar(s) => Loss::Scalar(s),
            Loss::PerRow(l) => Loss::PerRow(l.into_dyn()),
        },
        &or,
        o,
        &format!("{what}: loss"),
    );
    let lse = done.lse.clone();
    assert_within(
        lse.view(),
        or.ce.lse.view(),
        or.lse_bound.view(),
        F32_OUT,
        &format!("{what}: lse"),
    );
    let grads: Vec<LinearGrads> = (0..spans.len())
        .map(|k| {
            let (wk, bk) = part(k);
            let be = on[k % on.len()];
            shards[k]
                .gradient(be, h.view().into(), wk.into(), Some(bk), &local[k], &merged)
                .unwrap()
        })
        .collect();
    let mut dh = Array2::<f32>::zeros((n, d));
    for g in &grads {
        dh += &g.hidden;
    }
    let flat = |a: &Array2<f64>| a.iter().copied().collect::<Array1<f64>>();
    let flat32 = |a: &Array2<f32>| a.iter().copied().collect::<Array1<f32>>();
    // The shards' summands add one rounding per shard: covered by γ_V in the bound.
    assert_within(
        flat32(&dh).view(),
        flat(&or.dh).view(),
        flat(&or.dh_bound).view(),
        F32_OUT,
        &format!("{what}: grad_hidden"),
    );
    for (k, g) in grads.iter().enumerate() {
        let (a, e) = spans[k];
        let want = or.dw.slice(s![a..e, ..]).to_owned();
        let bound = or.dw_bound.slice(s![a..e, ..]).to_owned();
        assert_within(
            flat32(&g.weight).view(),
            flat(&want).view(),
            flat(&bound).view(),
            F32_OUT,
            &format!("{what}: shard {k} grad_weight"),
        );
        let gb = g.bias.as_ref().expect("bias gradient");
        assert_within(
            gb.view(),
            or.db.slice(s![a..e]),
            or.db_bound.slice(s![a..e]),
            F32_OUT,
            &format!("{what}: shard {k} grad_bias"),
        );
    }
}

#[test]
fn shards_merge_to_the_whole_call() {
    let y = Array1::from_shape_fn(23, |i| {
        if i % 6 == 5 {
            -100
        } else {
            (i * 37 % 301) as i64
        }
    });
    let cw = Array1::from_shape_fn(301, |j| 0.5 + (j % 7) as f32 * 0.25);
    let o = CrossEntropyOptions {
        gradient: true,
        weight: Some(cw.view()),
        label_smoothing: 0.1,
        z_loss: 1e-3,
        softcap: Some(4.0),
        ..Default::default()
    };
    // Uneven shards, one of them empty, each shard on each backend over the rotations.
    for rot in 0..backends().len() {
        sharded(
            rot,
            &[0, 100, 100, 177, 301],
            Targets::classes(y.view()),
            &o,
            None,
            &format!("class targets, rotation {rot}"),
        );
    }
    let o = CrossEntropyOptions {
        gradient: true,
        reduction: Reduction::Sum,
        ..Default::default()
    };
    sharded(
        0,
        &[0, 64, 301],
        Targets::classes(y.view()),
        &o,
        None,
        "two shards, sum",
    );
    let mut r = Rng(5);
    let q = Array2::from_shape_fn((23, 301), |_| r.unit() as f32);
    let q = &q / &q.sum_axis(ndarray::Axis(1)).insert_axis(ndarray::Axis(1));
    let o = CrossEntropyOptions {
        gradient: true,
        label_smoothing: 0.2,
        ..Default::default()
    };
    sharded(
        0,
        &[0, 150, 301],
        Targets::probabilities(q.view()),
        &o,
        Some(&q),
        "probability targets",
    );
}

#[test]
fn a_missing_shard_is_an_error() {
    let (h, w, _) = inputs(4, 3, 10, 1);
    let y = Array1::from_vec(vec![1i64, 2, 8, 9]);
    let o = CrossEntropyOptions::default();
    let cpu = common::cpu();
    let sh = ShardedLinearCrossEntropy::new(
        VocabShard {
            offset: 0,
            total: 10,
        },
        Targets::classes(y.view()),
        &o,
    );
    let local = sh
        .statistics(cpu, h.view().into(), w.slice(s![0..5, ..]).into(), None)
        .unwrap();
    let e = sh.finish(&local).unwrap_err();
    assert!(e.to_string().contains("cover 5 of 10"), "{e}");
    let too_wide = ShardedLinearCrossEntropy::new(
        VocabShard {
            offset: 8,
            total: 10,
        },
        Targets::classes(y.view()),
        &o,
    );
    let e = too_wide
        .statistics(cpu, h.view().into(), w.slice(s![0..5, ..]).into(), None)
        .unwrap_err();
    assert!(e.to_string().contains("does not fit"), "{e}");
}

/// Device-resident hidden states and weights (inside larger buffers, at offsets, with row
/// strides, in f32 and bf16) give exactly what the same data from the host gives.
#[test]
fn device_resident_inputs_equal_host_inputs() {
    let Some(gpu) = common::gpu() else { return };
    let (n, d, v) = (33, 70, 333);
    let (h, w, b) = inputs(n, d, v, 4);
    let y = Array1::from_shape_fn(n, |i| (i * 11 % v) as i64);
    let o = CrossEntropyOptions {
        gradient: true,
        label_smoothing: 0.1,
        ..Default::default()
    };
    let host = linear_cross_entropy_rows(
        gpu,
        h.view().into(),
        w.view().into(),
        Some(b.view()),
        Targets::classes(y.view()),
        &o,
    )
    .unwrap();
    let hd = common::strided(gpu, &h, d + 5, 3);
    let wd = common::strided(gpu, &w, d + 1, 7);
    let dev = linear_cross_entropy_rows(
        gpu,
        Matrix::Device(&hd),
        Matrix::Device(&wd),
        Some(b.view()),
        Targets::classes(y.view()),
        &o,
    )
    .unwrap();
    assert_eq!(dev, host, "strided device f32 inputs");
    use smoothmax::half::bf16;
    let (hb, wb) = (h.mapv(bf16::from_f32), w.mapv(bf16::from_f32));
    let host = linear_cross_entropy_rows(
        gpu,
        hb.view().into(),
        wb.view().into(),
        None,
        Targets::classes(y.view()),
        &o,
    )
    .unwrap();
    let (hbd, wbd) = (
        gpu.upload(hb.view()).unwrap(),
        gpu.upload(wb.slice(s![.., ..]).view()).unwrap(),
    );
    let dev = linear_cross_entropy_rows(
        gpu,
        Matrix::Device(&hbd),
        Matrix::Device(&wbd),
        None,
        Targets::classes(y.view()),
        &o,
    )
    .unwrap();
    assert_eq!(dev, host, "bf16 device inputs");
    // The host engines name the device matrix instead of reading it.
    let e = linear_cross_entropy_rows(
        common::cpu(),
        Matrix::Device(&hd),
        w.view().into(),
        None,
        Targets::classes(y.view()),
        &o,
    )
    .unwrap_err();
    assert!(e.to_string().contains("device matrices"), "{e}");
}
