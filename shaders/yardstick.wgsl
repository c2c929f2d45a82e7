// ---- yardstick family: the bandwidth floor every benchmark is reported against ------------
//
// Over n = params.rows vec4 elements, as rows of one vec4 (always the vec4 variant, C = 4):
// `copy` reads and writes each once, `exp_map` reads, takes one exp, writes. A row op that reads B*C and writes B*C floats
// cannot beat `copy` on the same adapter.

@compute @workgroup_size(256)
fn copy(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * params.groups_x + wid.x) * WG + lid;
    if i < params.rows {
        store4(i, 0u, load4(i, 0u));
    }
}

@compute @workgroup_size(256)
fn exp_map(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let i = (wid.y * params.groups_x + wid.x) * WG + lid;
    if i < params.rows {
        store4(i, 0u, exp(load4(i, 0u)));
    }
}
