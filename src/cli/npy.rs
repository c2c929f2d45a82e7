//! Reading `.npy` inputs strictly, with messages that name the file and the problem, and
//! writing outputs so that a failed run leaves nothing behind.
//!
//! The reader trusts nothing in a file: the header (at most [`MAX_HEADER`] bytes) is parsed by
//! a small strict parser of the one dictionary the format allows
//! (`{'descr': ..., 'fortran_order': ..., 'shape': (...)}`, numpy's `lib.format`), the element
//! count and byte size are computed with overflow checks, and the size the header claims must
//! equal the bytes the file holds after it before anything is allocated. So a 200-byte file
//! that claims `(100000000, 100000000)` is a one-line error, not a 40 PB allocation; buffers for
//! honest files are reserved fallibly (`try_reserve_exact`).

use ndarray::{Array, Array1, ArrayBase, ArrayD, Data, Dimension, IxDyn, ShapeBuilder};
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// The largest header accepted (numpy itself refuses headers over 10,000 bytes by default).
pub const MAX_HEADER: usize = 65_536;

/// Element kinds smoothmax reads.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    Float,
    Int,
    Uint,
}

/// A numpy dtype the reader supports: kind, size in bytes, big-endian or not.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Dtype {
    pub kind: Kind,
    pub size: usize,
    pub big_endian: bool,
}

impl Dtype {
    /// numpy's name: float32, int64, uint8, ...
    pub fn name(&self) -> String {
        let k = match self.kind {
            Kind::Float => "float",
            Kind::Int => "int",
            Kind::Uint => "uint",
        };
        format!("{k}{}", self.size * 8)
    }
}

/// A parsed file: its dtype and shape, and the raw little- or big-endian element bytes.
pub struct Npy {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub fortran_order: bool,
    data: Vec<u8>,
}

/// Opens and parses `path` (header and data); every error is one line naming the file.
pub fn read(path: &Path) -> Result<Npy, String> {
    let p = path.display();
    let mut file = File::open(path).map_err(|e| format!("cannot open {p}: {e}"))?;
    let len = file
        .metadata()
        .map_err(|e| format!("cannot read {p}: {e}"))?
        .len();
    parse(&mut file, len).map_err(|e| format!("{p} is not a valid .npy file: {e}"))
}

/// Parses a .npy stream of `len` bytes.
pub fn parse(r: &mut impl Read, len: u64) -> Result<Npy, String> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| format!("{len} bytes is too short for the .npy preamble"))?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err("it does not start with the .npy magic \\x93NUMPY".into());
    }
    let (major, minor) = (pre[6], pre[7]);
    let (len_bytes, utf8) = match major {
        1 => (2, false),
        2 => (4, false),
        3 => (4, true),
        _ => return Err(format!("unsupported format version {major}.{minor}")),
    };
    let mut lb = [0u8; 4];
    r.read_exact(&mut lb[..len_bytes])
        .map_err(|_| "the file ends inside the header length".to_string())?;
    let header_len = u32::from_le_bytes(lb) as usize;
    if header_len > MAX_HEADER {
        return Err(format!(
            "its header claims {header_len} bytes (at most {MAX_HEADER} accepted)"
        ));
    }
    let data_offset = (8 + len_bytes + header_len) as u64;
    if data_offset > len {
        return Err(format!(
            "its header claims {header_len} bytes but the file has only {len}"
        ));
    }
    let mut hb = vec![0u8; header_len];
    r.read_exact(&mut hb)
        .map_err(|_| "the file ends inside the header".to_string())?;
    let text = if utf8 {
        String::from_utf8(hb).map_err(|_| "the header is not UTF-8".to_string())?
    } else {
        if !hb.is_ascii() {
            return Err("the header is not ASCII".into());
        }
        String::from_utf8(hb).map_err(|_| "the header is not ASCII".to_string())?
    };
    let h = header::parse(&text)?;
    let dtype = dtype_of(&h.descr)?;
    let count = h
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| format!("shape {:?} has more elements than memory can hold", h.shape))?;
    let bytes = count
        .checked_mul(dtype.size)
        .ok_or_else(|| format!("shape {:?} is larger than memory can hold", h.shape))?;
    let have = len - data_offset;
    if have != bytes as u64 {
        return Err(format!(
            "its header says shape {:?} of {} ({bytes} bytes of data) but the file holds {have}",
            h.shape,
            dtype.name()
        ));
    }
    let mut data = Vec::new();
    data.try_reserve_exact(bytes)
        .map_err(|_| format!("cannot allocate {bytes} bytes for its data"))?;
    data.resize(bytes, 0);
    r.read_exact(&mut data)
        .map_err(|e| format!("cannot read its data: {e}"))?;
    Ok(Npy {
        dtype,
        shape: h.shape,
        fortran_order: h.fortran_order,
        data,
    })
}

/// `descr` as numpy writes it: a byte-order mark (`<`, `>`, `=`, or `|` for one-byte types),
/// a kind (`f`, `i`, `u`) and a size.
fn dtype_of(descr: &str) -> Result<Dtype, String> {
    let unsupported = || {
        format!(
            "dtype {descr:?} is not supported (float16, float32 or float64 data, uint16 bf16 \
             bit patterns, or integer int8-int64 / uint8-uint64 class targets)"
        )
    };
    let mut c = descr.chars();
    let order = c.next().ok_or_else(unsupported)?;
    let kind = match c.next() {
        Some('f') => Kind::Float,
        Some('i') => Kind::Int,
        Some('u') => Kind::Uint,
        _ => return Err(unsupported()),
    };
    // The size exactly as numpy writes it ("4", not "+4" or "04").
    let size: usize = match c.as_str() {
        "1" => 1,
        "2" => 2,
        "4" => 4,
        "8" => 8,
        _ => return Err(unsupported()),
    };
    let ok = match kind {
        Kind::Float => matches!(size, 2 | 4 | 8),
        Kind::Int | Kind::Uint => true,
    };
    let big_endian = match order {
        '<' => false,
        '>' => true,
        '=' => cfg!(target_endian = "big"),
        '|' if size == 1 => false,
        _ => return Err(unsupported()),
    };
    if !ok {
        return Err(unsupported());
    }
    Ok(Dtype {
        kind,
        size,
        big_endian,
    })
}

/// An element's bytes in native order.
fn native<const N: usize>(chunk: &[u8], big_endian: bool) -> [u8; N] {
    let mut b = [0u8; N];
    b.copy_from_slice(chunk);
    if big_endian != cfg!(target_endian = "big") {
        b.reverse();
    }
    b
}

impl Npy {
    fn values<T>(&self, f: impl Fn(&[u8]) -> T) -> Result<Vec<T>, String> {
        let n = self.data.len() / self.dtype.size;
        let mut v = Vec::new();
        v.try_reserve_exact(n)
            .map_err(|_| format!("cannot allocate memory for {n} values"))?;
        v.extend(self.data.chunks_exact(self.dtype.size).map(f));
        Ok(v)
    }

    fn shaped<T>(&self, v: Vec<T>) -> Result<ArrayD<T>, String> {
        let shape = IxDyn(&self.shape);
        let a = if self.fortran_order {
            ArrayD::from_shape_vec(shape.f(), v)
        } else {
            ArrayD::from_shape_vec(shape, v)
        };
        a.map_err(|e| e.to_string())
    }

    /// Float data as f32 (float16 widened exactly, float64 rounded to nearest); `None` for
    /// integer data.
    pub fn to_f32(&self) -> Result<Option<ArrayD<f32>>, String> {
        let be = self.dtype.big_endian;
        let v = match (self.dtype.kind, self.dtype.size) {
            (Kind::Float, 2) => {
                self.values(|b| half::f16::from_bits(u16::from_ne_bytes(native(b, be))).to_f32())?
            }
            (Kind::Float, 4) => self.values(|b| f32::from_ne_bytes(native(b, be)))?,
            (Kind::Float, 8) => self.values(|b| f64::from_ne_bytes(native(b, be)) as f32)?,
            _ => return Ok(None),
        };
        self.shaped(v).map(Some)
    }

    /// Integer data as i64 class indices; `None` for floats. A uint64 value beyond i64 is an
    /// error naming its index (it cannot be a class). One i64 per element, nothing wider.
    pub fn to_i64(&self) -> Result<Option<Vec<i64>>, String> {
        let be = self.dtype.big_endian;
        let v: Vec<i64> = match (self.dtype.kind, self.dtype.size) {
            (Kind::Int, 1) => self.values(|b| b[0] as i8 as i64)?,
            (Kind::Uint, 1) => self.values(|b| b[0] as i64)?,
            (Kind::Int, 2) => self.values(|b| i16::from_ne_bytes(native(b, be)) as i64)?,
            (Kind::Uint, 2) => self.values(|b| u16::from_ne_bytes(native(b, be)) as i64)?,
            (Kind::Int, 4) => self.values(|b| i32::from_ne_bytes(native(b, be)) as i64)?,
            (Kind::Uint, 4) => self.values(|b| u32::from_ne_bytes(native(b, be)) as i64)?,
            (Kind::Int, 8) => self.values(|b| i64::from_ne_bytes(native(b, be)))?,
            (Kind::Uint, 8) => {
                let mut out = Vec::new();
                let n = self.data.len() / 8;
                out.try_reserve_exact(n)
                    .map_err(|_| format!("cannot allocate memory for {n} values"))?;
                for (i, b) in self.data.chunks_exact(8).enumerate() {
                    let u = u64::from_ne_bytes(native(b, be));
                    out.push(i64::try_from(u).map_err(|_| {
                        format!("target[{i}] = {u} is not a class index (outside [0, C))")
                    })?);
                }
                out
            }
            _ => return Ok(None),
        };
        Ok(Some(v))
    }
}

mod header;
pub mod typed;

/// Reads a float32 or float64 array of any shape as f32 (float64 values are rounded to f32).
pub fn read_floats_nd(path: &Path) -> Result<ndarray::ArrayD<f32>, String> {
    read_floats(path, "an array")
}

/// Reads a float32 or float64 array of `D`'s dimension as f32; `shape` names it in errors.
fn read_floats<D: Dimension>(path: &Path, shape: &str) -> Result<Array<f32, D>, String> {
    let f = read(path)?;
    let p = path.display();
    if D::NDIM.is_some_and(|n| n != f.shape.len()) {
        return Err(format!("{p} has shape {:?}: expected {shape}", f.shape));
    }
    let a = f.to_f32()?.ok_or_else(|| {
        format!(
            "{p} has dtype {}: expected float32 or float64",
            f.dtype.name()
        )
    })?;
    a.into_dimensionality().map_err(|e| format!("{p}: {e}"))
}

/// Reads a 1-D float32/float64 vector (e.g. class weights).
pub fn read_vector(path: &Path) -> Result<Array1<f32>, String> {
    read_floats(path, "a 1-D array")
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
    for (k, (tmp, dst)) in done.iter().enumerate() {
        if let Err(e) = std::fs::rename(tmp, dst) {
            // Leave nothing behind: the files already in place, and the temporaries left.
            for (t, d) in &done[..k] {
                let _ = (std::fs::remove_file(d), t);
            }
            for (t, _) in &done[k..] {
                let _ = std::fs::remove_file(t);
            }
            return Err(format!("cannot write {}: {e}", dst.display()));
        }
    }
    Ok(())
}

/// An array that can be written as a .npy file.
pub trait WriteNpy {
    fn write_to(&self, w: BufWriter<File>) -> Result<(), String>;
}

/// Version 1.0, C order, the header padded with spaces to a multiple of 64 bytes (numpy's
/// `lib.format`), then the little-endian elements.
pub(crate) fn write_npy(
    mut w: BufWriter<File>,
    descr: &str,
    shape: &[usize],
    elems: impl Iterator<Item = impl AsRef<[u8]>>,
) -> Result<(), String> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {tuple}, }}");
    let unpadded = 10 + h.len() + 1;
    h.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    h.push('\n');
    let len = u16::try_from(h.len()).map_err(|_| "shape too long for a .npy header")?;
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(h.as_bytes());
    let io = |e: std::io::Error| e.to_string();
    w.write_all(&bytes).map_err(io)?;
    for v in elems {
        w.write_all(v.as_ref()).map_err(io)?;
    }
    w.flush().map_err(io)
}

impl<S: Data<Elem = f32>, D: Dimension> WriteNpy for ArrayBase<S, D> {
    /// Little-endian float32.
    fn write_to(&self, w: BufWriter<File>) -> Result<(), String> {
        write_npy(w, "<f4", self.shape(), self.iter().map(|v| v.to_le_bytes()))
    }
}

#[cfg(test)]
mod tests;
