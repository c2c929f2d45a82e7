// ---- half-precision storage: two elements per u32 word, the lower-addressed in the low bits --
//
// Integer bit conversions, the same on every adapter and equal to the CPU's (the `half` crate
// and `crate::element::bf16_bits`): widening is exact (f16 subnormals become normal f32);
// narrowing rounds to nearest-even, sends values past the type's range to ±inf and keeps NaN
// NaN. WGSL's pack2x16float would not do: its result is indeterminate for values outside
// f16's finite range, and its rounding direction is not pinned down.

fn f16_widen1(h: u32) -> f32 {
    let s = (h & 0x8000u) << 16u;
    let e = (h >> 10u) & 0x1fu;
    let m = h & 0x3ffu;
    let normal = bitcast<f32>(s | ((e + 112u) << 23u) | (m << 13u));
    // inf, or NaN made quiet with its payload kept (as F16C and the `half` crate do)
    let special = bitcast<f32>(s | 0x7f800000u | (m << 13u) | select(0u, 0x400000u, m != 0u));
    // Zero and subnormals: m · 2^-24, exact in f32.
    let sub = f32(m) * 5.9604644775390625e-8;
    return select(select(normal, special, e == 31u), select(sub, -sub, s != 0u), e == 0u);
}

fn f16_widen2(w: u32) -> vec2<f32> {
    return vec2<f32>(f16_widen1(w & 0xffffu), f16_widen1(w >> 16u));
}

fn f16_narrow1(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    let s = (b >> 16u) & 0x8000u;
    let a = b & 0x7fffffffu;
    // Normal range (|v| >= 2^-14): round to nearest-even at bit 13, rebias 127 -> 15 (a carry
    // out of the mantissa is the next binade, or infinity past 65504).
    let normal = (a + 0xfffu + ((a >> 13u) & 1u) - 0x38000000u) >> 13u;
    // Below it: the 24-bit significand shifted to units of 2^-24, rounded to nearest-even
    // (a shift of 25 or more leaves less than half a unit: 0).
    let sh = min(126u - min(a >> 23u, 126u), 25u);
    let m = (a & 0x7fffffu) | 0x800000u;
    let q = m >> sh;
    let rem = m & ((1u << sh) - 1u);
    let mid = 1u << (max(sh, 1u) - 1u);
    let up = rem > mid || (rem == mid && (q & 1u) == 1u);
    var r = select(normal, q + select(0u, 1u, up), a < 0x38800000u);
    r = select(r, 0x7c00u, a >= 0x477ff000u); // |v| >= 65520 (65504 + half an ulp): inf
    r = select(r, 0x7e00u | ((a & 0x7fffffu) >> 13u), a > 0x7f800000u); // NaN, quiet, payload kept
    return s | r;
}

fn bf16_widen2(w: u32) -> vec2<f32> {
    return vec2<f32>(bitcast<f32>(w << 16u), bitcast<f32>(w & 0xffff0000u));
}

fn bf16_narrow1(v: f32) -> u32 {
    let b = bitcast<u32>(v);
    let r = (b + 0x7fffu + ((b >> 16u) & 1u)) >> 16u;
    return select(r, (b >> 16u) | 0x40u, (b & 0x7fffffffu) > 0x7f800000u);
}
