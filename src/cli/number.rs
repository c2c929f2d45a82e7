//! Numbers on the command line: every float syntax Rust, Python and C print.
//!
//! Decimal and special values (`1e-3`, `-1e+30`, `.5`, `5.`, `inf`, `-nan`) go through Rust's
//! correctly rounded parser. Hexadecimal floats (`0x1p-149`, `-0x1.8p+1`: C's `%a`, Python's
//! `float.hex()`) are the one exact way to write a subnormal or a boundary value; Rust's
//! parser has no syntax for them, so [`parse_hex`] rounds them to f32 itself (nearest, ties to
//! even, as the decimal parser does). A value that is not zero but rounds to 0, or that is
//! finite but rounds to infinity, is an error: the user asked for a number f32 cannot hold.

/// Parses an f32 option value; the error says what was wrong and what is accepted.
pub fn parse_f32(s: &str) -> Result<f32, String> {
    let t = s.trim();
    let v = match t.parse::<f32>() {
        Ok(v) => v,
        Err(_) => parse_hex(t).ok_or_else(|| {
            format!(
                "{s:?} is not a number (expected a decimal like 0.5, -1e+30, inf, or a \
                 hexadecimal float like 0x1p-149)"
            )
        })?,
    };
    let digits = t.trim_start_matches(['+', '-']);
    let special = digits.eq_ignore_ascii_case("inf")
        || digits.eq_ignore_ascii_case("infinity")
        || digits.eq_ignore_ascii_case("nan");
    if v.is_infinite() && !special {
        return Err(format!(
            "{s:?} is beyond the largest f32 ({:e}) and would round to infinity",
            f32::MAX
        ));
    }
    if v == 0.0 && mantissa_has_nonzero_digit(digits) {
        return Err(format!(
            "{s:?} is below the smallest positive f32 (1.4e-45, 0x1p-149) and would round to 0"
        ));
    }
    Ok(v)
}

/// Whether the significand (before any exponent) has a non-zero digit.
fn mantissa_has_nonzero_digit(digits: &str) -> bool {
    let (hex, body) = match digits.get(..2) {
        Some(p) if p.eq_ignore_ascii_case("0x") => (true, &digits[2..]),
        _ => (false, digits),
    };
    let exp_mark: &[char] = if hex { &['p', 'P'] } else { &['e', 'E'] };
    let sig = body.split(exp_mark).next().unwrap_or("");
    sig.chars().any(|c| c.is_ascii_hexdigit() && c != '0')
}

/// `[+-]0x<hex>[.<hex>][p[+-]<dec>]`, rounded to the nearest f32 (ties to even), with
/// overflow to ±inf and gradual underflow; `None` when it is not that syntax.
pub fn parse_hex(s: &str) -> Option<f32> {
    let (neg, rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let rest = rest
        .strip_prefix("0x")
        .or_else(|| rest.strip_prefix("0X"))?;
    let (sig, exp) = match rest.find(['p', 'P']) {
        Some(i) => (&rest[..i], rest[i + 1..].parse::<i64>().ok()?),
        None => (rest, 0),
    };
    let (int, frac) = sig.split_once('.').unwrap_or((sig, ""));
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    // Accumulate up to 60 significant bits; later non-zero digits only set the sticky bit.
    let (mut mant, mut shift, mut sticky) = (0u64, 0i64, false);
    for (i, c) in int.chars().chain(frac.chars()).enumerate() {
        let d = c.to_digit(16)? as u64;
        let in_frac = i >= int.len();
        if mant >> 56 == 0 {
            mant = mant << 4 | d;
            if in_frac {
                shift -= 4;
            }
        } else {
            sticky |= d != 0;
            if !in_frac {
                shift += 4;
            }
        }
    }
    let sign = if neg { -1.0f32 } else { 1.0 };
    if mant == 0 {
        return Some(sign * 0.0);
    }
    // value = mant · 2^e2 (plus a sticky fraction below mant's last bit).
    let e2 = exp.checked_add(shift)?;
    let top = 63 - mant.leading_zeros() as i64; // value's leading bit is 2^(top + e2)
    let lead = top + e2;
    if lead > 127 {
        return Some(sign * f32::INFINITY);
    }
    // Keep 24 bits for a normal result, fewer for a subnormal (lowest bit 2^-149).
    let keep_lsb = (lead - 23).max(-149); // exponent of the last kept bit
    let drop = keep_lsb - e2; // low bits of mant to drop
    let (kept, round_up) = if drop <= 0 {
        (mant << (-drop) as u32, false)
    } else if drop > 64 {
        (0, false) // far below half of the smallest subnormal
    } else {
        let kept = if drop == 64 { 0 } else { mant >> drop };
        let rem = if drop == 64 {
            mant
        } else {
            mant & ((1u64 << drop) - 1)
        };
        let half = 1u64 << (drop - 1);
        let up = rem > half || (rem == half && (sticky || kept & 1 == 1));
        (kept, up)
    };
    let kept = kept + round_up as u64;
    // kept · 2^keep_lsb, exactly representable in f32 (≤ 2^24 · 2^keep_lsb) unless it overflows.
    let v = kept as f64 * 2f64.powi(keep_lsb as i32);
    Some(sign * v as f32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_printed_syntax_parses() {
        for (s, v) in [
            ("1e-3", 1e-3f32),
            ("-1e+30", -1e30),
            ("1E5", 1e5),
            (".5", 0.5),
            ("5.", 5.0),
            ("+2", 2.0),
            (" 3 ", 3.0),
            ("0x1p-149", f32::from_bits(1)),
            ("0x1.fffffep+127", f32::MAX),
            ("-0x1.8p+1", -3.0),
            ("0x1p-126", f32::MIN_POSITIVE),
            ("0X.8P1", 1.0),
            ("0x10", 16.0),
            ("0x1.000002p+0", 1.0 + f32::EPSILON),
        ] {
            assert_eq!(parse_f32(s), Ok(v), "{s}");
        }
        assert_eq!(parse_f32("-inf"), Ok(f32::NEG_INFINITY));
        assert!(parse_f32("-nan").unwrap().is_nan());
        assert!(parse_f32("nan").unwrap().is_nan());
    }

    #[test]
    fn hex_rounds_to_nearest_even_like_the_decimal_parser() {
        // Python's float.hex() of doubles near f32 boundaries, against Rust's decimal parse
        // of the same double.
        for d in [
            1.0f64 + 2f64.powi(-24),                  // tie: to even (1.0)
            1.0 + 3.0 * 2f64.powi(-24),               // tie: to even (1 + 2^-22)
            1.0 + 2f64.powi(-24) + 2f64.powi(-40),    // above the tie: up
            2f64.powi(-150),                          // tie at the subnormal bottom: to 0
            2f64.powi(-150) * 1.5,                    // above: the smallest subnormal
            3.0 * 2f64.powi(-150),                    // tie between 1 and 2 ulps: to 2
            f32::MAX as f64 * (1.0 + 2f64.powi(-25)), // rounds down to MAX
            0.1,
            1e-40,
            6.02214076e23,
        ] {
            let hex = hex_of(d);
            assert_eq!(parse_hex(&hex), Some(d as f32), "{hex} ({d:e})");
        }
        assert_eq!(parse_hex("0x1p+128"), Some(f32::INFINITY));
        assert_eq!(parse_hex("0x1.ffffffp+127"), Some(f32::INFINITY)); // rounds up past MAX
        assert_eq!(parse_hex("0x"), None);
        assert_eq!(parse_hex("0x1g"), None);
        assert_eq!(parse_hex("1.5"), None);
    }

    /// A double as C's `%a` writes it (normal doubles only).
    fn hex_of(d: f64) -> String {
        let bits = d.to_bits();
        let e = ((bits >> 52) & 0x7ff) as i64 - 1023;
        let m = bits & ((1u64 << 52) - 1);
        format!("0x1.{m:013x}p{e:+}")
    }

    #[test]
    fn values_f32_cannot_hold_are_errors() {
        assert!(parse_f32("1e-46").unwrap_err().contains("round to 0"));
        assert!(parse_f32("0x1p-151").unwrap_err().contains("round to 0"));
        assert!(parse_f32("1e39").unwrap_err().contains("round to infinity"));
        assert_eq!(parse_f32("0"), Ok(0.0));
        assert_eq!(parse_f32("-0.000"), Ok(0.0));
        assert_eq!(parse_f32("0e10"), Ok(0.0));
        assert!(parse_f32("1,5").unwrap_err().contains("not a number"));
        assert!(parse_f32("").is_err());
    }
}
