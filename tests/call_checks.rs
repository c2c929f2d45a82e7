//! Device matrices in the call design: what cannot work is refused before any work (an output
//! sharing its input's buffer, a buffer without the usage a copy of its rows needs), and
//! empty shapes give the same answers in every mode.

mod common;

use common::{gpu, logits, strided};
use ndarray::Array2;
use smoothmax::gpu::{DeviceValue, Rows};
use smoothmax::{Error, GpuMatrix, PairwiseForm, RowOp, Surrogate};

const ROWS: usize = 6;
const COLS: usize = 37;

/// What a device matrix cannot do is refused before any work: an output sharing the input's
/// buffer, and a buffer without the usage a copy of its rows needs. Empty shapes follow the
/// same rules in every mode.
#[test]
fn device_matrices_are_checked_and_empty_shapes_agree() {
    let Some(g) = gpu() else { return };
    let x = logits(ROWS, COLS, 1.0, 0.0, false, 3);
    let dx = g.upload(x.view()).unwrap();
    // The output inside the input's buffer.
    let alias = GpuMatrix::from_buffer(dx.buffer().clone(), 0, ROWS, 1, 1).unwrap();
    let op = Rows {
        op: RowOp::LogSumExp,
        x: &dx,
        temperature: 1.0,
    };
    let err = g.call(op).on_device_into(&alias).run().unwrap_err();
    assert!(matches!(&err, Error::InvalidInput(m) if m.contains("shares the input's buffer")));
    // A storage-only buffer: bound in place by the row kernels, but the pointwise kernels read
    // packed rows through a copy, which needs COPY_SRC.
    let bare = g
        .device()
        .create_buffer(&smoothmax::wgpu::BufferDescriptor {
            label: None,
            size: (ROWS * COLS * 4) as u64,
            usage: smoothmax::wgpu::BufferUsages::STORAGE,
            mapped_at_creation: false,
        });
    let bare = GpuMatrix::from_buffer(bare, 0, ROWS, COLS, COLS).unwrap();
    assert!(g
        .call(Rows {
            op: RowOp::Softmax,
            x: &bare,
            temperature: 1.0
        })
        .on_device()
        .run()
        .is_ok());
    let pairwise = Surrogate::PairwiseMax {
        a: &bare,
        b: &dx,
        form: PairwiseForm::Sqrt { mu: 1.0 },
    };
    let err = g.call(pairwise).run().unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("COPY_SRC")),
        "{err}"
    );
    // A strided output is written through packed scratch and a copy, which needs COPY_DST;
    // with contiguous rows the kernel writes it where it lies.
    let bare_out = |stride: usize| {
        let b = g
            .device()
            .create_buffer(&smoothmax::wgpu::BufferDescriptor {
                label: None,
                size: (ROWS * stride * 4) as u64,
                usage: smoothmax::wgpu::BufferUsages::STORAGE,
                mapped_at_creation: false,
            });
        GpuMatrix::from_buffer(b, 0, ROWS, COLS, stride).unwrap()
    };
    let softmax = Rows {
        op: RowOp::Softmax,
        x: &dx,
        temperature: 1.0,
    };
    assert!(g
        .call(softmax)
        .on_device_into(&bare_out(COLS))
        .run()
        .is_ok());
    let err = g
        .call(softmax)
        .on_device_into(&bare_out(COLS + 3))
        .run()
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidInput(m) if m.contains("COPY_DST")),
        "{err}"
    );
    // No columns: logsumexp −inf into a strided column, soft-argmax NaN when recorded.
    let empty = g.upload(Array2::<f32>::zeros((ROWS, 0)).view()).unwrap();
    let column = strided(g, &Array2::from_elem((ROWS, 1), 7.0), 3, 1);
    let lse = g
        .call(Rows {
            op: RowOp::LogSumExp,
            x: &empty,
            temperature: 1.0,
        })
        .on_device_into(&column)
        .run()
        .unwrap();
    assert!(g
        .download(&lse)
        .unwrap()
        .iter()
        .all(|&v| v == f32::NEG_INFINITY));
    let mut enc = g.device().create_command_encoder(&Default::default());
    let rec = g
        .call(Surrogate::SoftArgmax {
            x: &empty,
            temperature: 1.0,
        })
        .on_device()
        .record(&mut enc)
        .unwrap();
    g.queue().submit([enc.finish()]);
    match rec.finish().unwrap().value {
        DeviceValue::PerRow(v) => assert!(v.len() == ROWS && v.iter().all(|v| v.is_nan())),
        other => panic!("{other:?}"),
    }
}
