//! What the training examples share: the backend they run on, a reproducible stratified
//! split and the standardized design matrix (features scaled by the training part's mean and
//! deviation, plus a bias).

use ndarray::{Array1, Array2, Axis};
use smoothmax::{Backend, Cpu, Gpu};

/// The GPU when an adapter opens, else the CPU path (saying so), with its name.
pub fn backend() -> (Box<dyn Backend>, String) {
    match Gpu::new() {
        Ok(g) => {
            let n = g.adapter().name.clone();
            (Box::new(g), format!("GPU ({n})"))
        }
        Err(e) => {
            eprintln!("no GPU adapter ({e}); using the CPU path");
            (Box::new(Cpu::new()), "CPU".into())
        }
    }
}

/// SplitMix64, for a shuffle that is the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

/// Shuffles the samples with `seed`, then holds out every `every`-th sample of each class
/// (classes `0..`): `(train, test)` indices.
pub fn stratified(labels: &[i64], every: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let n = labels.len();
    let mut order: Vec<usize> = (0..n).collect();
    let mut rng = Rng(seed);
    for i in (1..n).rev() {
        order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
    }
    let classes = labels.iter().copied().max().map_or(0, |m| m as usize + 1);
    let mut seen = vec![0usize; classes];
    let (mut train, mut test) = (vec![], vec![]);
    for &i in &order {
        let c = labels[i] as usize;
        seen[c] += 1;
        if seen[c] % every == 0 {
            test.push(i)
        } else {
            train.push(i)
        }
    }
    (train, test)
}

/// The rows `train` and `test` of `x` as f32 design matrices: each feature standardized with
/// the training rows' mean and deviation, and a last column of ones (the bias).
pub fn design(x: &Array2<f64>, train: &[usize], test: &[usize]) -> (Array2<f32>, Array2<f32>) {
    let d = x.ncols();
    let xt = x.select(Axis(0), train);
    let mean = xt.mean_axis(Axis(0)).unwrap_or_else(|| Array1::zeros(d));
    let std = xt.std_axis(Axis(0), 0.0);
    let rows = |idx: &[usize]| {
        let mut m = Array2::<f32>::ones((idx.len(), d + 1));
        for (r, &i) in idx.iter().enumerate() {
            for j in 0..d {
                m[[r, j]] = ((x[[i, j]] - mean[j]) / std[j]) as f32;
            }
        }
        m
    };
    (rows(train), rows(test))
}
