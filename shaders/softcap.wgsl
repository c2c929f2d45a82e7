// ---- cross-entropy family: softcap x' = c tanh(x / c) and its chain factor -----------------
//
// Appended to cross_entropy.wgsl (src/gpu/kernel/source.rs); reads its `ce` uniform and
// CE_SOFTCAP.

// tanh(x / c), its argument clamped at +-10 (tanh is +-1 in f32 beyond 9.01; the clamp keeps
// +-inf from exp under the finite-math assumption); NaN lanes stay NaN.
fn cap_t4(v: vec4<f32>) -> vec4<f32> {
    let t = tanh4(clamp(v / ce.softcap, vec4<f32>(-10.0), vec4<f32>(10.0)));
    let not_nan = (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) <= vec4<u32>(0x7f800000u);
    return select(v, t, not_nan);
}

// x' = c * tanh(x / c). Callers keep lanes past the row end at -inf (capping would make them
// -c, a real value).
fn cap4(v: vec4<f32>) -> vec4<f32> {
    if !ce_has(CE_SOFTCAP) {
        return v;
    }
    return ce.softcap * cap_t4(v);
}

fn cap1(v: f32) -> f32 {
    return cap4(vec4<f32>(v)).x;
}

// The chain factor d x' / d x = 1 - tanh^2(x / c), from tanh itself (x' / c would lose it for
// subnormal c); 1 without softcap.
fn chain4(v: vec4<f32>) -> vec4<f32> {
    if !ce_has(CE_SOFTCAP) {
        return vec4<f32>(1.0);
    }
    let t = cap_t4(v);
    return vec4<f32>(1.0) - t * t;
}

fn chain1(v: f32) -> f32 {
    return chain4(vec4<f32>(v)).x;
}
