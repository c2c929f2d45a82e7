//! Inputs in any element type and shape: float32 / float64 as f32, float16 as f16, uint16 bit
//! patterns as bf16 (numpy has no bfloat16; `x.view(np.uint16)` of an ml_dtypes / JAX array
//! gives them); and matrix outputs written in their type (bf16 as uint16 bit patterns).

use super::{read, write_npy, Kind, Npy, WriteNpy};
use half::{bf16, f16};
use ndarray::ArrayD;
use smoothmax::{DType, Tensor};
use std::fs::File;
use std::io::BufWriter;
use std::path::Path;

impl Npy {
    /// The 16-bit elements' bit patterns.
    fn bits16(&self) -> Result<ArrayD<u16>, String> {
        let be = self.dtype.big_endian;
        let v = self.values(|b| u16::from_ne_bytes(super::native(b, be)))?;
        self.shaped(v)
    }
}

/// Reads `path` as an input of at least one dimension, as `dtype` says (or, without it, as
/// the file's dtype implies): see the module docs. A mismatch names both.
pub fn read_input(path: &Path, dtype: Option<DType>) -> Result<Tensor, String> {
    let f = read(path)?;
    let p = path.display();
    if f.shape.is_empty() {
        return Err(format!("{p} is 0-dimensional: expected at least [C]"));
    }
    let (kind, size) = (f.dtype.kind, f.dtype.size);
    let file = f.dtype.name();
    match (dtype, kind, size) {
        (None | Some(DType::F32), Kind::Float, 4 | 8) => {
            Ok(Tensor::F32(f.to_f32()?.ok_or("internal: float data")?))
        }
        (None | Some(DType::F16), Kind::Float, 2) => {
            Ok(Tensor::F16(f.bits16()?.mapv(f16::from_bits)))
        }
        (Some(DType::BF16), Kind::Uint | Kind::Int, 2) => {
            Ok(Tensor::BF16(f.bits16()?.mapv(bf16::from_bits)))
        }
        (None, Kind::Uint | Kind::Int, 2) => Err(format!(
            "{p} has dtype {file}: pass --input-dtype bf16 to read it as bf16 bit patterns"
        )),
        (Some(d), _, _) => Err(format!(
            "{p} has dtype {file}, which --input-dtype {d} does not read (f32: float32 or \
             float64; f16: float16; bf16: uint16 bit patterns)"
        )),
        (None, _, _) => Err(format!(
            "{p} has dtype {file}: expected float32, float64 or float16 (or uint16 with \
             --input-dtype bf16)"
        )),
    }
}

/// Reads targets of any shape: integer class indices (the logits' leading
/// shape) or float probabilities (the logits' shape); the library checks the shapes.
pub fn read_nd_targets(path: &Path) -> Result<TargetArrayNd, String> {
    let f = read(path)?;
    let p = path.display();
    if f.dtype.kind != Kind::Float {
        let ints = f.to_i64().map_err(|e| format!("{p}: {e}"))?;
        let a = f.shaped(ints.unwrap_or_default())?;
        return Ok(TargetArrayNd::Classes(a));
    }
    let a = f.to_f32()?.ok_or("internal: float targets")?;
    Ok(TargetArrayNd::Probabilities(a))
}

/// Targets as read from a .npy, any shape.
pub enum TargetArrayNd {
    Classes(ArrayD<i64>),
    Probabilities(ArrayD<f32>),
}

impl WriteNpy for Tensor {
    /// f32 as float32, f16 as float16, bf16 as uint16 bit patterns (all little-endian).
    fn write_to(&self, w: BufWriter<File>) -> Result<(), String> {
        match self {
            Tensor::F32(a) => a.write_to(w),
            Tensor::F16(a) => write_npy(w, "<f2", a.shape(), a.iter().map(|v| v.to_le_bytes())),
            Tensor::BF16(a) => write_npy(
                w,
                "<u2",
                a.shape(),
                a.iter().map(|v| v.to_bits().to_le_bytes()),
            ),
        }
    }
}
