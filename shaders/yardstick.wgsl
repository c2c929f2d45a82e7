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

// `row_sum` and `row_sum_serial`: the read-only yardstick (read B*C, write B), against which
// the ops that only read their rows (logsumexp, cross-entropy forward) are measured, laid out
// per adapter class as the row kernels are (src/gpu/yardstick.rs). Rows of params.cols_v
// groups at x_base + row * x_stride (in elements), each cut into params.segs segments of
// params.seg_len groups; item = row * segs + seg stores its segment's sum as one group at
// y_base + 4 * item.
//
// Item `item`'s row start in groups, and its segment's first and end group.
fn row_sum_span(item: u32) -> vec3<u32> {
    let k0 = (item % params.segs) * params.seg_len;
    return vec3<u32>(
        (params.x_base + (item / params.segs) * params.x_stride) / 4u,
        k0,
        min(k0 + params.seg_len, params.cols_v),
    );
}

// `row_sum` (a real GPU): one workgroup per item, lane l adds groups l, l + WG, ... of the
// segment, so neighbouring lanes read neighbouring groups, then the lanes' sums are added in a
// tree through workgroup memory.
@compute @workgroup_size(256)
fn row_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let item = wid.y * params.groups_x + wid.x;
    if item >= params.rows * params.segs {
        return;
    }
    let span = row_sum_span(item);
    var acc = vec4<f32>(0.0);
    for (var k = span.y + lid; k < span.z; k += WG) {
        acc += sum4_of(x[span.x + k]);
    }
    sh_m[lid] = (acc.x + acc.y) + (acc.z + acc.w);
    for (var w = WG / 2u; w > 0u; w >>= 1u) {
        workgroupBarrier();
        if lid < w {
            sh_m[lid] += sh_m[lid + w];
        }
    }
    if lid == 0u {
        y[params.y_base / 4u + item] = sum_out(sh_m[0]);
    }
}

// `row_sum_serial` (a CPU adapter, where a barrier costs as much as a row): one invocation per
// item, a serial loop four groups a step. lavapipe ends a loop after 65535 iterations (nested
// loops too: blocks of 32 in an outer loop lost a fifth of a 300000-element row), so a
// segment has at most 4 * 65535 groups (`SERIAL_MAX_GROUPS` in src/gpu/yardstick.rs).
@compute @workgroup_size(256)
fn row_sum_serial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let item = (wid.y * params.groups_x + wid.x) * WG + lid;
    if item >= params.rows * params.segs {
        return;
    }
    let span = row_sum_span(item);
    let base = span.x;
    let k0 = span.y;
    let k1 = span.z;
    var acc = vec4<f32>(0.0);
    let whole = k0 + (k1 - k0) / 4u * 4u;
    for (var k = k0; k < whole; k += 4u) {
        acc += (sum4_of(x[base + k]) + sum4_of(x[base + k + 1u]))
            + (sum4_of(x[base + k + 2u]) + sum4_of(x[base + k + 3u]));
    }
    if whole < k1 {
        acc += sum4_of(x[base + whole]);
    }
    if whole + 1u < k1 {
        acc += sum4_of(x[base + whole + 1u]);
    }
    if whole + 2u < k1 {
        acc += sum4_of(x[base + whole + 2u]);
    }
    y[params.y_base / 4u + item] = sum_out((acc.x + acc.y) + (acc.z + acc.w));
}
