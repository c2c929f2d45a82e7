// ---- surrogates: what the two surrogate families share --------------------------------------
// The op is compiled in (OP, one of the OP_* constants, from the header: src/gpu/kernel/mod.rs
// `SurrogateOp`), so lavapipe never runs the other ops' code under a mask; the numbers come
// in this uniform (declared for Rust in src/gpu/kernel/uniforms.rs, checked against this one).

struct SParams {
    n: u32,        // pointwise: elements in the chunk
    flags: u32,    // SP_WEIGHT: weight bound, SP_POS_WEIGHT: pos_weight bound
    kappa: f32,    // pairwise: mu or beta; rows: kappa_s (see kappa_times)
    sign: f32,     // +1 or -1: Boltzmann with beta < 0 runs on -x
    a: f32,
    u: f32,        // upstream factor of the gradient
    margin: f32,
    f1: f32,       // binary F1, second pass: F
    inv_d: f32,    // binary F1, second pass: 1 / sum(p + y)
    p: u32,        // multi-margin power
    // 1/2, 1/4 and 2^-9, each twice, as uniforms: lavapipe's compiler rewrites
    // fma(v, c, -m * c) as (v - m) * c (a reassociation its inexact float math allows;
    // measured), and v - m is exactly what overflows for rows spanning more than f32::MAX.
    // With two different values (equal, but the compiler cannot know) there is no common
    // factor to take out.
    half: f32,
    half2: f32,
    quarter: f32,
    quarter2: f32,
    small_h: f32,
    small_h2: f32,
    inv_p: f32,    // power-mean max: 1 / p (kappa = p, a = p - 1)
    kappa_r: f32,  // rows: kappa = kappa_s * kappa_r, kappa_s a power of two (see kappa_times)
    lo_p: f32,     // power-mean max: -200 / p (normal for any finite p; 1 / p may not be)
    lo_pm1: f32,   // power-mean max: -200 / (p - 1), 0 for p = 1
    q_p: f32,      // power-mean max: (p - 1) / p
    _pad3: u32,
    _pad4: u32,
    _pad5: u32,
}

@group(0) @binding(8) var<uniform> sp: SParams;

fn is_finite1(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) < 0x7f800000u;
}

fn is_nan1(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// sigma(x) without overflow; sigma(+-inf) = 1 / 0 (exp of the clamped -126 is 0).
fn sigmoid1(v: f32) -> f32 {
    let e = exp(max(-abs(v), -126.0));
    return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= 0.0);
}

