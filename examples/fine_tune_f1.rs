//! Metric fine-tuning on imbalanced data: train with cross-entropy first, then fine-tune on
//! the smooth F1 score (the F1 itself is a step function of the weights, with no gradient;
//! its smooth version has one, and on a batch it is a biased estimate of the F1).
//!
//! Data: the red wine quality set (Cortez et al. 2009: 1599 wines, 11 physico-chemical
//! features, quality scored 3 to 8), the copy `linfa-datasets` ships inside the crate, nothing
//! downloaded. Two tasks on a stratified 75/25 split, features standardized on the training
//! part, plus a bias:
//!
//! - binary, "good" wine (quality ≥ 7, 13.6% of the wines): logistic regression by full-batch
//!   gradient descent on the logistic loss (PyTorch's BCE-with-logits), then gradient ascent on
//!   the binary smooth F1; beside it linear SVMs trained on the hinge and the squared hinge;
//! - six classes (quality 3..8, from 10 to 681 wines each): softmax regression on the
//!   cross-entropy, then ascent on the macro smooth F1; beside it the multi-class hinge.
//!
//! smoothmax gives every loss, score and gradient with respect to the logits (on the GPU when
//! an adapter opens, else the CPU); the weight gradient is `Xᵀ·G`. The held-out F1 is the hard
//! one (scikit-learn's `f1_score`, macro: the mean over the classes in the held-out targets
//! or predictions). The numbers are printed as they come; the example checks only what must
//! hold: every number finite, the cross-entropies falling, and the fine-tune not lowering the
//! training smooth F1 it ascends.
//!
//! ```text
//! cargo run --release --example fine_tune_f1
//! ```

mod common;

use ndarray::{Array1, Array2, Axis};
use smoothmax::{
    Backend, BinaryLoss, BinaryOptions, CrossEntropyOptions, MultiMarginOptions, Reduction,
    Surrogate, Targets,
};

/// Standardized features with a bias column, and the quality class (0..6 for 3..8).
struct Split {
    x_train: Array2<f32>,
    q_train: Array1<i64>,
    x_test: Array2<f32>,
    q_test: Array1<i64>,
}

const CLASSES: usize = 6;

fn load() -> Split {
    let wine = linfa_datasets::winequality();
    let (n, d) = (wine.records.nrows(), wine.records.ncols());
    let x = Array2::from_shape_fn((n, d), |(i, j)| wine.records[[i, j]]);
    let q: Vec<i64> = wine.targets.iter().map(|&t| t as i64 - 3).collect();
    // Every fourth wine of each quality is held out.
    let (train, test) = common::stratified(&q, 4, 2009);
    let (x_train, x_test) = common::design(&x, &train, &test);
    let labels = |idx: &[usize]| idx.iter().map(|&i| q[i]).collect::<Array1<i64>>();
    Split {
        x_train,
        q_train: labels(&train),
        x_test,
        q_test: labels(&test),
    }
}

/// Hard F1 of class `c`: `2TP / (2TP + FP + FN)`, 0 when the class is in neither.
fn f1_of(pred: &[i64], truth: &[i64], c: i64) -> f64 {
    let (mut tp, mut fp, mut fneg) = (0.0, 0.0, 0.0);
    for (&p, &t) in pred.iter().zip(truth) {
        match (p == c, t == c) {
            (true, true) => tp += 1.0,
            (true, false) => fp += 1.0,
            (false, true) => fneg += 1.0,
            _ => {}
        }
    }
    if tp + fp + fneg == 0.0 {
        0.0
    } else {
        2.0 * tp / (2.0 * tp + fp + fneg)
    }
}

/// Macro F1 over the classes present in the targets or the predictions (scikit-learn's).
fn macro_f1(pred: &[i64], truth: &[i64]) -> f64 {
    let present: Vec<i64> = (0..CLASSES as i64)
        .filter(|c| pred.contains(c) || truth.contains(c))
        .collect();
    present.iter().map(|&c| f1_of(pred, truth, c)).sum::<f64>() / present.len() as f64
}

fn argmax_rows(logits: &Array2<f32>) -> Vec<i64> {
    logits
        .outer_iter()
        .map(|r| {
            (0..r.len())
                .max_by(|&a, &b| r[a].total_cmp(&r[b]))
                .unwrap_or(0) as i64
        })
        .collect()
}

/// The scalar of a reduced surrogate (NaN if the op gave none).
fn scalar(v: &smoothmax::Value) -> f32 {
    v.scalar().unwrap_or(f32::NAN)
}

/// What the example checks; a failure is printed and makes the exit status 1.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn require(&mut self, ok: bool, what: String) {
        if !ok {
            self.0.push(what);
        }
    }
}

// ---- binary: good wine (quality >= 7) --------------------------------------------------------

/// Good-wine labels as a `[N, 1]` column of 0/1.
fn good(q: &Array1<i64>) -> Array2<f32> {
    q.mapv(|c| (c + 3 >= 7) as u8 as f32).insert_axis(Axis(1))
}

/// Held-out F1 of the positive class for scores `x·w` (positive where the score is > 0), as
/// text with the number of wines predicted good.
fn binary_f1(x: &Array2<f32>, w: &Array2<f32>, y: &Array2<f32>) -> (f64, String) {
    let pred: Vec<i64> = x.dot(w).iter().map(|&f| (f > 0.0) as i64).collect();
    let truth: Vec<i64> = y.iter().map(|&v| v as i64).collect();
    let f1 = f1_of(&pred, &truth, 1);
    let k = pred.iter().sum::<i64>();
    (f1, format!("{f1:.4} ({k} predicted good)"))
}

fn smooth_f1(
    b: &dyn Backend,
    x: &Array2<f32>,
    w: &Array2<f32>,
    y: &Array2<f32>,
) -> (f32, Array2<f32>) {
    let f = x.dot(w);
    let call = Surrogate::SmoothF1Binary {
        logits: f.view(),
        labels: y.view(),
    };
    let out = b.surrogate(&call).expect("smooth F1");
    (scalar(&out.value), out.grad)
}

/// Full-batch gradient descent on a mean binary loss plus `λ/2·‖w‖²` (bias excluded); returns
/// the weights and the first and last loss.
fn train_binary(
    b: &dyn Backend,
    x: &Array2<f32>,
    y: &Array2<f32>,
    loss: BinaryLoss,
    (epochs, lr, lambda): (usize, f32, f32),
) -> (Array2<f32>, f32, f32) {
    let d = x.ncols();
    let mut w = Array2::<f32>::zeros((d, 1));
    let (mut first, mut last) = (f32::NAN, f32::NAN);
    for epoch in 0..epochs {
        let f = x.dot(&w);
        let o = BinaryOptions {
            reduction: Reduction::Mean,
            ..Default::default()
        };
        let out = b
            .binary_loss(f.view(), y.view(), loss, o)
            .expect("binary loss");
        last = scalar(&out.value);
        if epoch == 0 {
            first = last;
        }
        let mut reg = w.clone();
        reg[[d - 1, 0]] = 0.0;
        w = w - lr * (x.t().dot(&out.grad) + lambda * reg);
    }
    (w, first, last)
}

fn binary_task(b: &dyn Backend, s: &Split, checks: &mut Checks) {
    let (y, y_test) = (good(&s.q_train), good(&s.q_test));
    let positives = y.sum() as usize;
    println!(
        "binary (quality >= 7): {} training wines ({positives} good, {:.1}%), {} held out",
        y.nrows(),
        100.0 * positives as f64 / y.nrows() as f64,
        y_test.nrows()
    );
    let (mut w, l0, l1) = train_binary(b, &s.x_train, &y, BinaryLoss::Logistic, (500, 1.0, 0.0));
    checks.require(l1 < l0, format!("logistic loss did not fall: {l0} -> {l1}"));
    let (_, before) = binary_f1(&s.x_test, &w, &y_test);
    let (sf0, _) = smooth_f1(b, &s.x_train, &w, &y);
    println!(
        "  logistic regression, 500 epochs of gradient descent: loss {l0:.4} -> {l1:.4}, \
         train smooth F1 {sf0:.4}, held-out F1 {before}"
    );
    // Gradient ascent on the training smooth F1, from the cross-entropy weights.
    let (epochs, lr) = (600, 50.0);
    let mut sf = sf0;
    for _ in 0..epochs {
        let (v, g) = smooth_f1(b, &s.x_train, &w, &y);
        sf = v;
        w = w + lr * s.x_train.t().dot(&g);
    }
    let (sf1, _) = smooth_f1(b, &s.x_train, &w, &y);
    let (_, after) = binary_f1(&s.x_test, &w, &y_test);
    println!(
        "  + {epochs} epochs of ascent on the smooth F1 (step {lr}): train smooth F1 {sf0:.4} -> \
         {sf1:.4}, held-out F1 {before} -> {after}"
    );
    checks.require(
        sf1 >= sf0 && sf.is_finite(),
        format!("the fine-tune lowered the training smooth F1: {sf0} -> {sf1}"),
    );
    for (loss, name) in [
        (BinaryLoss::Hinge, "hinge"),
        (BinaryLoss::SquaredHinge, "squared hinge"),
    ] {
        let (w, _, last) = train_binary(b, &s.x_train, &y, loss, (2000, 0.1, 1e-3));
        let (f1, text) = binary_f1(&s.x_test, &w, &y_test);
        checks.require(
            f1.is_finite() && last.is_finite(),
            format!("{name}: not finite"),
        );
        println!(
            "  linear SVM, {name} loss + ridge 1e-3, 2000 epochs: loss {last:.4}, held-out F1 {text}"
        );
    }
}

// ---- six classes: quality 3..8 --------------------------------------------------------------

fn macro_of(x: &Array2<f32>, w: &Array2<f32>, q: &Array1<i64>) -> f64 {
    macro_f1(&argmax_rows(&x.dot(w)), q.as_slice().unwrap_or(&[]))
}

fn smooth_macro(
    b: &dyn Backend,
    x: &Array2<f32>,
    w: &Array2<f32>,
    q: &Array1<i64>,
) -> (f32, Array2<f32>) {
    let f = x.dot(w);
    let out = b
        .smooth_f1_macro(f.view(), q.view(), 1.0)
        .expect("smooth macro F1");
    (scalar(&out.value), out.grad)
}

fn multiclass_task(b: &dyn Backend, s: &Split, checks: &mut Checks) {
    let counts: Vec<usize> = (0..CLASSES as i64)
        .map(|c| s.q_train.iter().filter(|&&q| q == c).count())
        .collect();
    println!("six classes (quality 3..8), training wines per class {counts:?}:");
    let d = s.x_train.ncols();
    let mut w = Array2::<f32>::zeros((d, CLASSES));
    let o = CrossEntropyOptions {
        gradient: true,
        ..Default::default()
    };
    let (mut l0, mut l1) = (f32::NAN, f32::NAN);
    for epoch in 0..500 {
        let logits = s.x_train.dot(&w);
        let out = (&b)
            .cross_entropy(logits.view(), Targets::classes(s.q_train.view()), &o)
            .expect("cross-entropy");
        l1 = out.loss.scalar().unwrap_or(f32::NAN);
        if epoch == 0 {
            l0 = l1;
        }
        let g = out.grad.expect("gradient requested");
        w = w - 1.0 * s.x_train.t().dot(&g);
    }
    checks.require(l1 < l0, format!("cross-entropy did not fall: {l0} -> {l1}"));
    let before = macro_of(&s.x_test, &w, &s.q_test);
    let (sf0, _) = smooth_macro(b, &s.x_train, &w, &s.q_train);
    println!(
        "  softmax regression, 500 epochs: cross-entropy {l0:.4} -> {l1:.4}, train smooth \
         macro F1 {sf0:.4}, held-out macro F1 {before:.4}"
    );
    let (epochs, lr) = (1000, 20.0);
    for _ in 0..epochs {
        let (_, g) = smooth_macro(b, &s.x_train, &w, &s.q_train);
        w = w + lr * s.x_train.t().dot(&g);
    }
    let (sf1, _) = smooth_macro(b, &s.x_train, &w, &s.q_train);
    let after = macro_of(&s.x_test, &w, &s.q_test);
    println!(
        "  + {epochs} epochs of ascent on the smooth macro F1 (T = 1, step {lr}): train smooth \
         macro F1 {sf0:.4} -> {sf1:.4}, held-out macro F1 {before:.4} -> {after:.4}"
    );
    checks.require(
        sf1 >= sf0,
        format!("the fine-tune lowered the training smooth macro F1: {sf0} -> {sf1}"),
    );
    // The multi-class hinge (PyTorch's MultiMarginLoss), plus ridge.
    let mut w = Array2::<f32>::zeros((d, CLASSES));
    let mut last = f32::NAN;
    for _ in 0..2000 {
        let logits = s.x_train.dot(&w);
        let call = Surrogate::MultiMargin {
            logits: logits.view(),
            targets: s.q_train.view(),
            options: MultiMarginOptions::default(),
        };
        let out = b.surrogate(&call).expect("multi-margin");
        last = scalar(&out.value);
        let mut reg = w.clone();
        reg.row_mut(d - 1).fill(0.0);
        w = w - 0.1 * (s.x_train.t().dot(&out.grad) + 1e-3 * reg);
    }
    let f1 = macro_of(&s.x_test, &w, &s.q_test);
    checks.require(
        f1.is_finite() && last.is_finite(),
        "multi-margin: not finite".into(),
    );
    println!(
        "  multi-class hinge + ridge 1e-3, 2000 epochs: loss {last:.4}, held-out macro F1 {f1:.4}"
    );
}

fn main() {
    let (backend, name) = common::backend();
    let b = backend.as_ref();
    let s = load();
    println!(
        "red wine quality: {} training and {} held-out wines, 11 features + bias; losses, \
         scores and gradients on the {name}",
        s.q_train.len(),
        s.q_test.len()
    );
    let mut checks = Checks::default();
    binary_task(b, &s, &mut checks);
    multiclass_task(b, &s, &mut checks);
    if !checks.0.is_empty() {
        for c in &checks.0 {
            eprintln!("check failed: {c}");
        }
        std::process::exit(1);
    }
}
