//! The reader on valid files of every supported layout, on files that lie about their size,
//! and on random and mutated bytes (a property test: a clean `Err` or `Ok`, never a panic,
//! an abort or an allocation the file does not back).

use super::*;
use proptest::prelude::*;

/// A .npy file as numpy writes it (version 1.0, header padded to a multiple of 64).
fn npy_bytes(descr: &str, fortran: bool, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let tuple = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let f = if fortran { "True" } else { "False" };
    let mut h = format!("{{'descr': '{descr}', 'fortran_order': {f}, 'shape': {tuple}, }}");
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(' ');
    }
    h.push('\n');
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(h.len() as u16).to_le_bytes());
    v.extend_from_slice(h.as_bytes());
    v.extend_from_slice(data);
    v
}

fn parse_bytes(b: &[u8]) -> Result<Npy, String> {
    parse(&mut &b[..], b.len() as u64)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[test]
fn reads_every_supported_layout() {
    let v = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    let c = parse_bytes(&npy_bytes("<f4", false, &[2, 3], &f32_bytes(&v))).unwrap();
    let a = c.to_f32().unwrap().unwrap();
    assert_eq!(a.shape(), &[2, 3]);
    assert_eq!(a[[1, 0]], 4.0);
    // Fortran order: the same bytes are columns.
    let f = parse_bytes(&npy_bytes("<f4", true, &[2, 3], &f32_bytes(&v))).unwrap();
    assert_eq!(f.to_f32().unwrap().unwrap()[[1, 0]], 2.0);
    // Big-endian float64.
    let be: Vec<u8> = [1.5f64, -2.0]
        .iter()
        .flat_map(|x| x.to_be_bytes())
        .collect();
    let b = parse_bytes(&npy_bytes(">f8", false, &[2], &be)).unwrap();
    assert_eq!(
        b.to_f32().unwrap().unwrap().as_slice().unwrap(),
        &[1.5, -2.0]
    );
    // Every integer width, signed and unsigned.
    let u8s = parse_bytes(&npy_bytes("|u1", false, &[3], &[0, 7, 255])).unwrap();
    assert_eq!(u8s.to_i64().unwrap().unwrap(), [0, 7, 255]);
    let i8s = parse_bytes(&npy_bytes("|i1", false, &[2], &[0xff, 3])).unwrap();
    assert_eq!(i8s.to_i64().unwrap().unwrap(), [-1, 3]);
    let u64s: Vec<u8> = [u64::MAX, 2].iter().flat_map(|x| x.to_le_bytes()).collect();
    let w = parse_bytes(&npy_bytes("<u8", false, &[2], &u64s)).unwrap();
    assert!(w
        .to_i64()
        .unwrap_err()
        .contains("target[0] = 18446744073709551615"));
    let fits: Vec<u8> = [i64::MAX as u64, 2]
        .iter()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    let f = parse_bytes(&npy_bytes("<u8", false, &[2], &fits)).unwrap();
    assert_eq!(f.to_i64().unwrap().unwrap(), [i64::MAX, 2]);
    let i16s: Vec<u8> = [-300i16, 5].iter().flat_map(|x| x.to_be_bytes()).collect();
    let h = parse_bytes(&npy_bytes(">i2", false, &[2], &i16s)).unwrap();
    assert_eq!(h.to_i64().unwrap().unwrap(), [-300, 5]);
    // Zero-size and 0-d arrays.
    assert_eq!(
        parse_bytes(&npy_bytes("<f4", false, &[0, 5], &[]))
            .unwrap()
            .shape,
        [0, 5]
    );
    let s = parse_bytes(&npy_bytes("<f4", false, &[], &f32_bytes(&[2.5]))).unwrap();
    assert_eq!(s.shape, Vec::<usize>::new());
}

#[test]
fn versions_two_and_three_have_a_four_byte_header_length() {
    let one = npy_bytes("<f4", false, &[1], &f32_bytes(&[9.0]));
    for major in [2u8, 3] {
        let header = &one[10..one.len() - 4];
        let mut v = b"\x93NUMPY".to_vec();
        v.extend_from_slice(&[major, 0]);
        v.extend_from_slice(&(header.len() as u32).to_le_bytes());
        v.extend_from_slice(header);
        v.extend_from_slice(&f32_bytes(&[9.0]));
        let f = parse_bytes(&v).unwrap();
        assert_eq!(f.to_f32().unwrap().unwrap()[[0]], 9.0);
    }
}

#[test]
fn lying_headers_are_errors_before_any_allocation() {
    // The example: 200 bytes claiming 10^16 float32 values.
    let huge = npy_bytes("<f4", false, &[100_000_000, 100_000_000], &[0u8; 72]);
    let e = parse_bytes(&huge).err().unwrap();
    assert!(
        e.contains("40000000000000000 bytes") && e.contains("holds 72"),
        "{e}"
    );
    // A product that overflows usize.
    let over = npy_bytes("<f4", false, &[usize::MAX / 2, 3], &[]);
    assert!(parse_bytes(&over)
        .err()
        .unwrap()
        .contains("more elements than memory"));
    // Truncated and padded data.
    let short = npy_bytes("<f4", false, &[4], &f32_bytes(&[1.0, 2.0, 3.0]));
    assert!(parse_bytes(&short).err().unwrap().contains("holds 12"));
    let long = npy_bytes("<f4", false, &[2], &f32_bytes(&[1.0, 2.0, 3.0]));
    assert!(parse_bytes(&long).err().unwrap().contains("holds 12"));
    // A header length beyond the file, or beyond the limit.
    let mut v = b"\x93NUMPY\x02\x00".to_vec();
    v.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(parse_bytes(&v).err().unwrap().contains("at most"));
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&1000u16.to_le_bytes());
    assert!(parse_bytes(&v).err().unwrap().contains("file has only"));
}

#[test]
fn malformed_headers_name_the_problem() {
    for (header, want) in [
        ("{'descr': '<f4', 'fortran_order': False}", "no 'shape'"),
        (
            "{'descr': '<c8', 'fortran_order': False, 'shape': (1,)}",
            "not supported",
        ),
        (
            "{'descr': '<f4', 'fortran_order': 0, 'shape': (1,)}",
            "True or False",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (-1,)}",
            "not a dimension",
        ),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,), 'x': 1}",
            "unexpected key",
        ),
        (
            "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': ()}",
            "twice",
        ),
        (
            "{'descr': 'O', 'fortran_order': False, 'shape': (1,)}",
            "not supported",
        ),
        (
            "{'descr': '<f+4', 'fortran_order': False, 'shape': (1,)}",
            "not supported",
        ),
        (
            "{'descr': '<f04', 'fortran_order': False, 'shape': (1,)}",
            "not supported",
        ),
        ("[1, 2]", "expected '{'"),
        (
            "{'descr': '<f4', 'fortran_order': False, 'shape': (1,)} junk",
            "after the dictionary",
        ),
    ] {
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&(header.len() as u16).to_le_bytes());
        v.extend_from_slice(header.as_bytes());
        v.extend_from_slice(&[0u8; 4]);
        let e = parse_bytes(&v).err().unwrap();
        assert!(e.contains(want), "{header}: {e}");
    }
    assert!(parse_bytes(b"\x93NUMP")
        .err()
        .unwrap()
        .contains("too short"));
    assert!(parse_bytes(b"PK\x03\x04zipfile")
        .err()
        .unwrap()
        .contains("magic"));
}

/// Valid files of several dtypes and shapes, to mutate.
fn valid_file() -> impl Strategy<Value = Vec<u8>> {
    let descr = prop::sample::select(vec!["<f4", "<f8", ">f4", "|u1", "<i8", ">u2", "<i4"]);
    (descr, any::<bool>(), prop::collection::vec(0usize..5, 0..4)).prop_map(|(d, f, shape)| {
        let size: usize = d[2..].parse().unwrap();
        let n: usize = shape.iter().product();
        npy_bytes(d, f, &shape, &vec![0x3f; n * size])
    })
}

/// A mutation of a file: overwrite bytes, truncate, extend, or splice a hostile shape or dtype
/// into the header.
#[derive(Debug, Clone)]
enum Mutation {
    Byte(usize, u8),
    Truncate(usize),
    Extend(Vec<u8>),
    Shape(Vec<u64>),
    Descr(String),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
        any::<usize>().prop_map(Mutation::Truncate),
        prop::collection::vec(any::<u8>(), 0..16).prop_map(Mutation::Extend),
        prop::collection::vec(
            prop_oneof![0u64..4, any::<u64>(), Just(u64::MAX), Just(1u64 << 62)],
            0..5
        )
        .prop_map(Mutation::Shape),
        "[<>=|!]?[a-zA-Z]{0,2}[0-9]{0,3}".prop_map(Mutation::Descr),
    ]
}

fn apply(mut v: Vec<u8>, m: &Mutation) -> Vec<u8> {
    let text_end = v.len().min(10 + u16::from_le_bytes([v[8], v[9]]) as usize);
    match m {
        Mutation::Byte(i, b) => {
            let i = i % v.len();
            v[i] = *b;
        }
        Mutation::Truncate(n) => v.truncate(n % (v.len() + 1)),
        Mutation::Extend(tail) => v.extend_from_slice(tail),
        Mutation::Shape(_) | Mutation::Descr(_) => {
            let header = String::from_utf8_lossy(&v[10..text_end]).into_owned();
            let new = match m {
                Mutation::Shape(dims) => {
                    let s: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
                    let start = header.find("'shape'").unwrap_or(0);
                    format!("{}'shape': ({},), }}", &header[..start], s.join(", "))
                }
                Mutation::Descr(d) => match header.get(11..14) {
                    Some(old) => header.replacen(old, d, 1),
                    None => header.clone(),
                },
                _ => unreachable!(),
            };
            let data = v[text_end..].to_vec();
            v.truncate(8);
            v.extend_from_slice(&(new.len() as u16).to_le_bytes());
            v.extend_from_slice(new.as_bytes());
            v.extend_from_slice(&data);
        }
    }
    v
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2000),
        failure_persistence: Some(Box::new(proptest::test_runner::FileFailurePersistence::Direct(
            "tests/proptest-regressions/npy.txt",
        ))),
        ..ProptestConfig::default()
    })]

    /// Random bytes, with and without the magic: never a panic.
    #[test]
    fn random_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..200), magic in any::<bool>()) {
        if magic {
            let mut v = b"\x93NUMPY\x01\x00".to_vec();
            v.append(&mut bytes);
            bytes = v;
        }
        let r = parse_bytes(&bytes);
        if let Ok(f) = r {
            let _ = (f.to_f32(), f.to_i64());
        }
    }

    /// Valid files under one to three mutations: a clean result, and an `Ok` only when the
    /// data the header describes is exactly what the file holds.
    #[test]
    fn mutated_files_never_panic(file in valid_file(), ms in prop::collection::vec(mutation(), 1..4)) {
        let v = ms.iter().fold(file, |v, m| if v.len() > 10 { apply(v, m) } else { v });
        if let Ok(f) = parse_bytes(&v) {
            let n: usize = f.shape.iter().product();
            prop_assert_eq!(n * f.dtype.size, f.data.len());
            let _ = (f.to_f32(), f.to_i64());
        }
    }
}

#[test]
fn written_files_read_back_exactly() {
    let dir = std::env::temp_dir().join(format!("smoothmax-npy-{}", std::process::id()));
    let a = ndarray::array![[1.5f32, -0.0, f32::NAN], [f32::INFINITY, 3e-45, -2.0]];
    let v = ndarray::array![7.0f32];
    let s = ndarray::arr0(0.25f32);
    write_outputs(&dir, &[("a.npy", &a), ("v.npy", &v), ("s.npy", &s)]).unwrap();
    let b = std::fs::read(dir.join("a.npy")).unwrap();
    assert_eq!((b.len() - 24) % 64, 0, "header padded to 64 bytes");
    let f = parse_bytes(&b).unwrap();
    let back = f.to_f32().unwrap().unwrap();
    assert_eq!(back.shape(), &[2, 3]);
    for (x, y) in back.iter().zip(a.iter()) {
        assert_eq!(x.to_bits(), y.to_bits());
    }
    let v2 = parse_bytes(&std::fs::read(dir.join("v.npy")).unwrap()).unwrap();
    assert_eq!(v2.shape, [1]);
    let s2 = parse_bytes(&std::fs::read(dir.join("s.npy")).unwrap()).unwrap();
    assert_eq!(s2.shape, Vec::<usize>::new());
    assert_eq!(s2.to_f32().unwrap().unwrap()[[]], 0.25);
    let _ = std::fs::remove_dir_all(&dir);
}
