//! `smoothmax eval <op>`: read and check every input on the host, open the backend, run one
//! call, write the outputs.

use super::args::{
    BoltzmannArgs, ClassMetricArgs, CrossEntropyArgs, DeviceName, DtypeName, EvalOp, FormName, Io,
    LabelArgs, LinearCrossEntropyArgs, LogisticArgs, MarginArgs, MultiMarginArgs, PairwiseArgs,
    PowerMaxArgs, ReductionName, RowArgs, SmoothAbsArgs, SmoothFloorArgs,
};
use super::failure::Failure;
use super::npy::typed::{read_input, read_nd_targets, TargetArrayNd};
use super::npy::{self, WriteNpy};
use ndarray::{ArrayD, IxDyn};
use smoothmax::{
    Backend, BinaryLoss, BinaryOptions, Cpu, CrossEntropyOptions, ElementSmoothing, Gpu, Loss,
    MultiMarginOptions, PairwiseForm, Reduction, Reference, RowOp, Surrogate, Targets, Tensor,
    TensorView, Value,
};
use std::path::Path;

/// The backend for `--device`, or the default: GPU if one opens, else CPU with a note.
fn backend(device: Option<DeviceName>) -> Result<Box<dyn Backend>, Failure> {
    let cpu = || -> Result<Box<dyn Backend>, Failure> {
        let c = Cpu::new();
        c.isa()?; // an invalid SMOOTHMAX_CPU_ISA is reported before any work
        Ok(Box::new(c))
    };
    match device {
        Some(DeviceName::Cpu) => cpu(),
        Some(DeviceName::Reference) => Ok(Box::new(Reference)),
        Some(DeviceName::Gpu) => Ok(Box::new(Gpu::new()?)),
        None => match Gpu::new() {
            Ok(g) => Ok(Box::new(g)),
            // No GPU: the CPU, with a note. Any other failure (a bad setting, a device that
            // would not open) is reported, not papered over.
            Err(e @ smoothmax::Error::NoAdapter { .. }) => {
                eprintln!("smoothmax: {e}; running on the CPU");
                cpu()
            }
            Err(e) => Err(e.into()),
        },
    }
}

fn reduction_of(r: ReductionName) -> Reduction {
    match r {
        ReductionName::None => Reduction::None,
        ReductionName::Mean => Reduction::Mean,
        ReductionName::Sum => Reduction::Sum,
    }
}

/// Class targets from a file (the scores' leading shape); float probabilities are an error
/// here.
fn classes(path: &Path) -> Result<ArrayD<i64>, Failure> {
    match read_nd_targets(path)? {
        TargetArrayNd::Classes(c) => Ok(c),
        TargetArrayNd::Probabilities(_) => Err(Failure::Input(format!(
            "{}: expected integer class targets (any of int8-int64, uint8-uint64)",
            path.display()
        ))),
    }
}

/// One call: read, validate on the host, then open the device and run.
pub fn eval(op: EvalOp) -> Result<(), Failure> {
    match op {
        EvalOp::Logsumexp(a) => row_op(RowOp::LogSumExp, a),
        EvalOp::Softmax(a) => row_op(RowOp::Softmax, a),
        EvalOp::LogSoftmax(a) => row_op(RowOp::LogSoftmax, a),
        EvalOp::CrossEntropy(a) => cross_entropy(a),
        EvalOp::LinearCrossEntropy(a) => linear_cross_entropy(a),
        EvalOp::BoltzmannMax(BoltzmannArgs { io, beta }) => {
            let x = input(&io)?;
            surrogate(&io, &Surrogate::BoltzmannMax { x: x.view(), beta })
        }
        EvalOp::SoftArgmax(RowArgs { io, t }) => {
            let x = input(&io)?;
            let temperature = t.temperature;
            surrogate(
                &io,
                &Surrogate::SoftArgmax {
                    x: x.view(),
                    temperature,
                },
            )
        }
        EvalOp::SmoothAccuracy(a) => class_metric(a, true),
        EvalOp::SmoothF1Macro(a) => class_metric(a, false),
        EvalOp::SmoothF1(LabelArgs { io, target }) => {
            let x = input(&io)?;
            let y = npy::read_floats_nd(&target)?;
            let call = Surrogate::SmoothF1Binary {
                logits: x.view(),
                labels: y.view(),
            };
            surrogate(&io, &call)
        }
        EvalOp::PairwiseMax(a) => pairwise(a),
        EvalOp::SmoothAbs(SmoothAbsArgs { io, k }) => {
            let x = input(&io)?;
            let op = ElementSmoothing::Abs { k };
            surrogate(&io, &Surrogate::Smoothing { x: x.view(), op })
        }
        EvalOp::SmoothFloor(SmoothFloorArgs { io, t }) => {
            let x = input(&io)?;
            let op = ElementSmoothing::Floor { t };
            surrogate(&io, &Surrogate::Smoothing { x: x.view(), op })
        }
        EvalOp::PowerMax(PowerMaxArgs { io, p }) => {
            let x = input(&io)?;
            surrogate(&io, &Surrogate::PowerMax { x: x.view(), p })
        }
        EvalOp::BinaryCrossEntropy(a) => logistic(a),
        EvalOp::Hinge(a) => margin(a, BinaryLoss::Hinge),
        EvalOp::SquaredHinge(a) => margin(a, BinaryLoss::SquaredHinge),
        EvalOp::Exponential(a) => margin(a, BinaryLoss::Exponential),
        EvalOp::Squared(a) => margin(a, BinaryLoss::Squared),
        EvalOp::MultiMargin(a) => multi_margin(a),
    }
}

/// The input in the element type and shape `--input` and `--input-dtype` give.
fn input(io: &Io) -> Result<Tensor, Failure> {
    Ok(read_input(&io.input, io.input_dtype.map(DtypeName::dtype))?)
}

fn row_op(op: RowOp, RowArgs { io, t }: RowArgs) -> Result<(), Failure> {
    smoothmax::check_temperature(t.temperature)?;
    let x = input(&io)?;
    let out = backend(io.device)?.row_op_tensor(
        op,
        x.view(),
        t.temperature,
        Some(io.output_dtype.dtype()),
    )?;
    write(&io.out, &[("output.npy", &out)])
}

/// The cross-entropy options of `a` (with the gradient), the class weights read into
/// `weight`.
fn ce_options<'w>(
    a: &CrossEntropyArgs,
    weight: &'w Option<ndarray::Array1<f32>>,
) -> CrossEntropyOptions<'w> {
    CrossEntropyOptions {
        weight: weight.as_ref().map(|w| w.view()),
        ignore_index: a.ignore_index,
        label_smoothing: a.label_smoothing,
        reduction: reduction_of(a.reduction.reduction),
        z_loss: a.z_loss,
        softcap: a.softcap,
        gradient: true,
        ..Default::default()
    }
}

fn targets_of(targets: &TargetArrayNd) -> Targets<'_> {
    match targets {
        TargetArrayNd::Classes(c) => Targets::classes(c.view()),
        TargetArrayNd::Probabilities(q) => Targets::probabilities(q.view()),
    }
}

fn cross_entropy(a: CrossEntropyArgs) -> Result<(), Failure> {
    let x = input(&a.io)?;
    let targets = read_nd_targets(&a.target)?;
    let weight = a.weight.as_deref().map(npy::read_vector).transpose()?;
    let o = ce_options(&a, &weight);
    let t = targets_of(&targets);
    check_targets(&x, &targets, &t, &a.target, &o)?;
    let out = backend(a.io.device)?.cross_entropy_tensor(
        x.view(),
        t,
        &o,
        Some(a.io.output_dtype.dtype()),
    )?;
    let grad = out
        .grad
        .ok_or_else(|| Failure::Runtime("internal: no gradient returned".into()))?;
    write(
        &a.io.out,
        &[
            ("loss.npy", loss_npy(out.loss).as_ref()),
            ("grad.npy", &grad),
            ("lse.npy", &out.lse),
        ],
    )
}

fn loss_npy<D: ndarray::Dimension + 'static>(l: Loss<D>) -> Box<dyn WriteNpy>
where
    ndarray::Array<f32, D>: WriteNpy,
{
    match l {
        Loss::PerRow(v) => Box::new(v),
        Loss::Scalar(v) => Box::new(ndarray::arr0(v)),
    }
}

fn linear_cross_entropy(a: LinearCrossEntropyArgs) -> Result<(), Failure> {
    let ce = &a.ce;
    let h = input(&ce.io)?;
    let w = read_input(&a.weight_matrix, a.weight_dtype.map(DtypeName::dtype))?;
    let wm = w.matrix().map_err(|e| {
        Failure::Input(format!(
            "{}: the weight matrix is [V, D]: {e}",
            a.weight_matrix.display()
        ))
    })?;
    let bias = a.bias.as_deref().map(npy::read_vector).transpose()?;
    let targets = read_nd_targets(&ce.target)?;
    let weight = ce.weight.as_deref().map(npy::read_vector).transpose()?;
    let o = ce_options(ce, &weight);
    let t = targets_of(&targets);
    let (v, d) = wm.dim();
    if h.shape().last() != Some(&d) {
        return Err(Failure::Input(format!(
            "{}: hidden states {:?} need D = {d} features per row, as the weight matrix [{v}, {d}] has",
            ce.io.input.display(),
            h.shape()
        )));
    }
    // The targets and options checked as for logits [..., V], before the device opens.
    let mut shape = h.shape().to_vec();
    if let Some(last) = shape.last_mut() {
        *last = v;
    }
    check_target_shape(&shape, &targets, &t, &ce.target)?;
    smoothmax::cross_entropy::validate(
        (shape[..shape.len() - 1].iter().product(), v),
        flat(&t)?,
        &o,
    )?;
    let out = backend(ce.io.device)?.linear_cross_entropy(
        h.view(),
        wm,
        bias.as_ref().map(|b| b.view()),
        t,
        &o,
    )?;
    let missing = || Failure::Runtime("internal: no gradient returned".into());
    let as_out = |g: Option<Tensor>| -> Result<Tensor, Failure> {
        let g = g.ok_or_else(missing)?;
        Ok(Tensor::narrow(g.to_f32(), ce.io.output_dtype.dtype()))
    };
    let (gh, gw) = (as_out(out.grad_hidden)?, as_out(out.grad_weight)?);
    let mut files: Vec<(&str, &dyn WriteNpy)> = Vec::new();
    let loss = loss_npy(out.loss);
    files.push(("loss.npy", loss.as_ref()));
    files.push(("lse.npy", &out.lse));
    files.push(("grad_hidden.npy", &gh));
    files.push(("grad_weight.npy", &gw));
    if let Some(gb) = &out.grad_bias {
        files.push(("grad_bias.npy", gb));
    }
    write(&ce.io.out, &files)
}

/// Checks targets against logits of `shape` (the host checks before any device work): class
/// targets of the leading shape or probabilities of the whole shape, then their values.
fn check_targets(
    x: &Tensor,
    targets: &TargetArrayNd,
    t: &Targets,
    path: &Path,
    o: &CrossEntropyOptions,
) -> Result<(), Failure> {
    let shape = x.shape().to_vec();
    check_target_shape(&shape, targets, t, path)?;
    let (&cols, lead) = shape.split_last().unwrap_or((&0, &[]));
    smoothmax::cross_entropy::validate((lead.iter().product(), cols), flat(t)?, o)?;
    Ok(())
}

fn check_target_shape(
    shape: &[usize],
    targets: &TargetArrayNd,
    t: &Targets,
    path: &Path,
) -> Result<(), Failure> {
    let Some((_, lead)) = shape.split_last() else {
        return Err(Failure::Input("the logits need at least one axis".into()));
    };
    let want: &[usize] = match targets {
        TargetArrayNd::Classes(_) => lead,
        TargetArrayNd::Probabilities(_) => shape,
    };
    if t.shape() != want {
        return Err(Failure::Input(format!(
            "{}: targets have shape {:?}, expected {want:?} for logits {shape:?}",
            path.display(),
            t.shape()
        )));
    }
    Ok(())
}

fn class_metric(a: ClassMetricArgs, accuracy: bool) -> Result<(), Failure> {
    let x = input(&a.io)?;
    let y = classes(&a.target)?;
    let (logits, targets, temperature) = (x.view(), y.view(), a.t.temperature);
    let call = if accuracy {
        Surrogate::SmoothAccuracy {
            logits,
            targets,
            temperature,
        }
    } else {
        Surrogate::SmoothF1Macro {
            logits,
            targets,
            temperature,
        }
    };
    surrogate(&a.io, &call)
}

fn pairwise(a: PairwiseArgs) -> Result<(), Failure> {
    // Each form takes its own parameter option; another form's is a usage error.
    let (name, takes) = match a.form {
        FormName::Erf => ("erf", "--mu"),
        FormName::Sqrt => ("sqrt", "--mu"),
        FormName::Acon => ("acon", "--beta"),
        FormName::Logcosh => ("logcosh", "--k"),
    };
    let given = [("--mu", a.mu), ("--beta", a.beta), ("--k", a.k)];
    if let Some((opt, _)) = given.iter().find(|(o, v)| v.is_some() && *o != takes) {
        return Err(Failure::Usage(format!(
            "{opt} does not apply to pairwise-max --form {name} (it takes {takes})"
        )));
    }
    let p = given
        .iter()
        .find_map(|(o, v)| (*o == takes).then_some(*v).flatten())
        .unwrap_or(1.0);
    let form = match a.form {
        FormName::Erf => PairwiseForm::Erf { mu: p },
        FormName::Sqrt => PairwiseForm::Sqrt { mu: p },
        FormName::Acon => PairwiseForm::Acon { beta: p },
        FormName::Logcosh => PairwiseForm::LogCosh { k: p },
    };
    let x = input(&a.io)?;
    let b = read_input(&a.other, a.io.input_dtype.map(DtypeName::dtype))?;
    let call = Surrogate::PairwiseMax {
        a: x.view(),
        b: b.view(),
        form,
    };
    surrogate(&a.io, &call)
}

/// Per-column weights of a binary loss, `[C]` (broadcast over the leading axes).
fn column_weights(path: Option<&Path>) -> Result<Option<ArrayD<f32>>, Failure> {
    Ok(path
        .map(npy::read_vector)
        .transpose()?
        .map(|w| w.into_dyn()))
}

fn logistic(a: LogisticArgs) -> Result<(), Failure> {
    let x = input(&a.io)?;
    let y = npy::read_floats_nd(&a.target)?;
    let w = column_weights(a.weight.as_deref())?;
    let pw = a.pos_weight.as_deref().map(npy::read_vector).transpose()?;
    let call = Surrogate::Binary {
        logits: x.view(),
        labels: y.view(),
        loss: BinaryLoss::Logistic,
        options: BinaryOptions {
            weight: w.as_ref().map(|w| w.view()),
            pos_weight: pw.as_ref().map(|p| p.view()),
            reduction: reduction_of(a.reduction.reduction),
        },
    };
    surrogate(&a.io, &call)
}

fn margin(a: MarginArgs, loss: BinaryLoss) -> Result<(), Failure> {
    let x = input(&a.io)?;
    let y = npy::read_floats_nd(&a.target)?;
    let w = column_weights(a.weight.as_deref())?;
    let call = Surrogate::Binary {
        logits: x.view(),
        labels: y.view(),
        loss,
        options: BinaryOptions {
            weight: w.as_ref().map(|w| w.view()),
            pos_weight: None,
            reduction: reduction_of(a.reduction.reduction),
        },
    };
    surrogate(&a.io, &call)
}

fn multi_margin(a: MultiMarginArgs) -> Result<(), Failure> {
    let x = input(&a.io)?;
    let y = classes(&a.target)?;
    let w = a.weight.as_deref().map(npy::read_vector).transpose()?;
    let call = Surrogate::MultiMargin {
        logits: x.view(),
        targets: y.view(),
        options: MultiMarginOptions {
            p: a.p,
            margin: a.margin,
            weight: w.as_ref().map(|w| w.view()),
            reduction: reduction_of(a.reduction.reduction),
        },
    };
    surrogate(&a.io, &call)
}

/// The targets with their leading axes merged (what `validate` checks row by row).
fn flat<'a>(t: &'a Targets<'_>) -> Result<Targets<'a>, Failure> {
    let bad = |e: ndarray::ShapeError| Failure::Input(format!("targets: {e}"));
    Ok(match t {
        Targets::Probabilities(q) => {
            let c = q.shape().last().copied().unwrap_or(0);
            Targets::probabilities(
                q.view()
                    .into_shape_with_order((q.len() / c.max(1), c))
                    .map_err(bad)?,
            )
        }
        Targets::Classes(y) => {
            Targets::classes(y.view().into_shape_with_order(y.len()).map_err(bad)?)
        }
        Targets::ClassesI32(y) => {
            Targets::classes_i32(y.view().into_shape_with_order(y.len()).map_err(bad)?)
        }
        Targets::ClassesU32(y) => {
            Targets::classes_u32(y.view().into_shape_with_order(y.len()).map_err(bad)?)
        }
    })
}

/// Validates a surrogate call on the host, opens the backend, runs it, writes `output.npy` (or
/// `loss.npy` for the losses), `grad.npy` (in `--output-dtype`) and, for the pairwise max,
/// `grad_b.npy`.
fn surrogate(io: &Io, call: &Surrogate<'_, TensorView<'_>, IxDyn>) -> Result<(), Failure> {
    smoothmax::surrogates::validate_tensor(call)?;
    let out = backend(io.device)?.surrogate_tensor(call, Some(io.output_dtype.dtype()))?;
    let is_loss = matches!(
        call,
        Surrogate::Binary { .. } | Surrogate::MultiMargin { .. }
    );
    let name = if is_loss { "loss.npy" } else { "output.npy" };
    let value: Box<dyn WriteNpy> = match out.value {
        Value::Scalar(v) => Box::new(ndarray::arr0(v)),
        Value::PerRow(v) => Box::new(v),
        Value::Matrix(m) => Box::new(m),
    };
    let mut files: Vec<(&str, &dyn WriteNpy)> =
        vec![(name, value.as_ref()), ("grad.npy", &out.grad)];
    if let Some(gb) = &out.grad_b {
        files.push(("grad_b.npy", gb));
    }
    write(&io.out, &files)
}

/// Writing the outputs fails at run time (a full disk, a read-only directory): exit 1.
fn write(dir: &Path, files: &[(&str, &dyn WriteNpy)]) -> Result<(), Failure> {
    npy::write_outputs(dir, files).map_err(Failure::Runtime)
}
