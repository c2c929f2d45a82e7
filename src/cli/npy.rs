//! Reading `.npy` inputs with messages that name the file and the problem, and writing outputs
//! so that a failed run leaves nothing behind.

use ndarray::{Array1, Array2, ArrayD, Ix1, Ix2};
use ndarray_npy::npy::header::Header;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::fs::File;
use std::io::{BufReader, BufWriter, Seek};
use std::path::{Path, PathBuf};

/// Element types smoothmax reads.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Dtype {
    F32,
    F64,
    I32,
    I64,
}

/// What a .npy header says.
struct NpyInfo {
    dtype: Dtype,
    shape: Vec<usize>,
}

/// Opens `path` and parses its header, with a one-line error naming the file.
fn open(path: &Path) -> Result<(BufReader<File>, NpyInfo), String> {
    let p = path.display();
    let file = File::open(path).map_err(|e| format!("cannot open {p}: {e}"))?;
    let mut r = BufReader::new(file);
    let header =
        Header::from_reader(&mut r).map_err(|e| format!("{p} is not a valid .npy file: {e}"))?;
    let descr = header.type_descriptor.to_string();
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let dtype = match descr {
        "<f4" | ">f4" | "=f4" => Dtype::F32,
        "<f8" | ">f8" | "=f8" => Dtype::F64,
        "<i4" | ">i4" | "=i4" => Dtype::I32,
        "<i8" | ">i8" | "=i8" => Dtype::I64,
        other => {
            return Err(format!(
                "{p} has unsupported dtype {other}: expected float32 or float64"
            ))
        }
    };
    r.rewind().map_err(|e| format!("cannot read {p}: {e}"))?;
    Ok((
        r,
        NpyInfo {
            dtype,
            shape: header.shape,
        },
    ))
}

/// Reads a 2-D float32 or float64 array as f32 (float64 values are rounded to f32).
pub fn read_matrix(path: &Path) -> Result<Array2<f32>, String> {
    let (r, info) = open(path)?;
    let p = path.display();
    if info.shape.len() != 2 {
        return Err(format!(
            "{p} has shape {:?}: expected a 2-D [B, C] array",
            info.shape
        ));
    }
    let bad = |e: ndarray_npy::ReadNpyError| format!("cannot read {p}: {e}");
    match info.dtype {
        Dtype::F32 => Array2::<f32>::read_npy(r).map_err(bad),
        Dtype::F64 => Ok(Array2::<f64>::read_npy(r).map_err(bad)?.mapv(|v| v as f32)),
        Dtype::I32 | Dtype::I64 => Err(format!(
            "{p} has an integer dtype: expected float32 or float64"
        )),
    }
}

/// Targets as read from a .npy: integer class indices, or float probabilities.
pub enum TargetArray {
    Classes(Array1<i64>),
    Probabilities(Array2<f32>),
}

fn read_dyn_f32(r: BufReader<File>, info: &NpyInfo, path: &Path) -> Result<ArrayD<f32>, String> {
    let bad = |e: ndarray_npy::ReadNpyError| format!("cannot read {}: {e}", path.display());
    match info.dtype {
        Dtype::F32 => ArrayD::<f32>::read_npy(r).map_err(bad),
        Dtype::F64 => Ok(ArrayD::<f64>::read_npy(r).map_err(bad)?.mapv(|v| v as f32)),
        Dtype::I32 | Dtype::I64 => Err(format!(
            "{} has an integer dtype: expected float32 or float64",
            path.display()
        )),
    }
}

/// Reads targets: an integer 1-D array of class indices (length B), or a float 2-D array of
/// probabilities ([B, C]).
pub fn read_targets(path: &Path) -> Result<TargetArray, String> {
    let (r, info) = open(path)?;
    let p = path.display();
    let bad = |e: ndarray_npy::ReadNpyError| format!("cannot read {p}: {e}");
    match info.dtype {
        Dtype::I32 | Dtype::I64 => {
            if info.shape.len() != 1 {
                return Err(format!(
                    "{p} has shape {:?}: integer targets must be 1-D [B] class indices",
                    info.shape
                ));
            }
            Ok(TargetArray::Classes(match info.dtype {
                Dtype::I32 => Array1::<i32>::read_npy(r).map_err(bad)?.mapv(|v| v as i64),
                _ => Array1::<i64>::read_npy(r).map_err(bad)?,
            }))
        }
        Dtype::F32 | Dtype::F64 => {
            if info.shape.len() != 2 {
                return Err(format!(
                    "{p} has shape {:?}: float targets must be 2-D [B, C] probabilities",
                    info.shape
                ));
            }
            let a = read_dyn_f32(r, &info, path)?;
            Ok(TargetArray::Probabilities(
                a.into_dimensionality::<Ix2>()
                    .map_err(|e| format!("{p}: {e}"))?,
            ))
        }
    }
}

/// Reads a 1-D float32/float64 vector (e.g. class weights).
pub fn read_vector(path: &Path) -> Result<Array1<f32>, String> {
    let (r, info) = open(path)?;
    let p = path.display();
    if info.shape.len() != 1 {
        return Err(format!(
            "{p} has shape {:?}: expected a 1-D array",
            info.shape
        ));
    }
    let a = read_dyn_f32(r, &info, path)?;
    a.into_dimensionality::<Ix1>()
        .map_err(|e| format!("{p}: {e}"))
}

/// Writes every `(name, array)` into `dir`, creating it. Each file is written under a
/// temporary name first and renamed when complete, so a failure leaves no partial output.
pub fn write_outputs(dir: &Path, outputs: &[(&str, &dyn WriteNpy)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut done: Vec<(PathBuf, PathBuf)> = Vec::new();
    for (name, arr) in outputs {
        let tmp = dir.join(format!(".{name}.tmp"));
        let res = File::create(&tmp)
            .map_err(|e| e.to_string())
            .and_then(|f| arr.write_to(BufWriter::new(f)));
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            for (t, _) in &done {
                let _ = std::fs::remove_file(t);
            }
            return Err(format!("cannot write {}: {e}", dir.join(name).display()));
        }
        done.push((tmp, dir.join(name)));
    }
    for (tmp, dst) in done {
        std::fs::rename(&tmp, &dst).map_err(|e| format!("cannot write {}: {e}", dst.display()))?;
    }
    Ok(())
}

/// An array that can be written as .npy (object-safe wrapper over `WriteNpyExt`).
pub trait WriteNpy {
    fn write_to(&self, w: BufWriter<File>) -> Result<(), String>;
}

impl<T: WriteNpyExt> WriteNpy for T {
    fn write_to(&self, w: BufWriter<File>) -> Result<(), String> {
        self.write_npy(w).map_err(|e| e.to_string())
    }
}
