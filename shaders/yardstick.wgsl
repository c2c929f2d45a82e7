// ---- yardstick family: the bandwidth floor every benchmark is reported against ------------
//
// Over n = params.rows groups of 4 elements (always the vec4 variant: a vec4<f32>, or two
// words of f16 / bf16), from x_base and y_base (in elements, multiples of 4): `copy` reads and
// writes each once, `exp_map` reads, takes one exp (in f32), writes in the same type
// (`exp4_of`, generated per element type with the header). A row op that reads B*C and writes B*C floats cannot beat `copy` on the same
// adapter. Indexed as base + i directly, not through load4/store4: their row * stride is not
// known to be contiguous across lanes, and lavapipe then gathers lane by lane (measured: copy
// at [4096, 32000] 1.3-1.8x slower).

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * params.groups_x + wid.x) * WG + lid;
    if i < params.rows {
        y[params.y_base / 4u + i] = x[params.x_base / 4u + i];
    }
}

@compute @workgroup_size(256)
fn exp_map(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * params.groups_x + wid.x) * WG + lid;
    if i < params.rows {
        y[params.y_base / 4u + i] = exp4_of(x[params.x_base / 4u + i]);
    }
}
