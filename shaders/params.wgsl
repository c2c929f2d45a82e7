// ---- params: every kernel's uniform (src/gpu/kernel/uniforms.rs `Params`, checked against
// this declaration by the reflection test) ----------------------------------------------------

struct Params {
    rows: u32,        // rows in this chunk
    cols: u32,        // C, in scalars
    cols_v: u32,      // C in vec4 units: ceil(C / 4)
    segs: u32,        // segments per row, S >= 1 (S > 1: several workgroups per row)
    seg_len: u32,     // vec4 units per segment
    groups_x: u32,    // workgroups along x of the folded 2-D grid
    temperature: f32, // T > 0: every op sees x / T
    exp_h: f32,       // h of the exponent (see `shifted`; src/scale.rs): 1, 1/2 or 2^64
    neg_inf: f32,     // -inf, +inf, NaN: WGSL has no literal for them
    pos_inf: f32,
    nan: f32,
    // Where the data sit in their bindings (bindings start at 256-byte aligned offsets, so a
    // matrix inside a larger buffer begins a few elements in): x row r starts at element
    // x_base + r * x_stride; y (and lse) row r at y_base + r * cols (y_base + r for lse).
    x_base: u32,
    x_stride: u32,
    y_base: u32,
    exp_c: f32,       // c = kappa * log2(e) / h, kappa = 1/T (or |beta|)
    exp_c_log: f32,   // kappa / h: the same for log-domain outputs
    exp_h2: f32,      // h again: see `shifted`
    zero: u32,        // 0, for `keep`
    y_stride: u32,    // elements between output row starts (half-precision stores)
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
