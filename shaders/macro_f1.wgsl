// Macro smooth F1 on the device, in the surrogate rows family (surrogate_rows.wgsl: bindings,
// helpers). Host side: src/gpu/surrogates/f1.rs.
// ---- macro F1: column sums of p over this chunk's rows -------------------------------------
// One invocation per class; Kahan-compensated so a long column keeps f32 precision.
@compute @workgroup_size(256)
fn f1_columns(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = (wid.y * params.groups_x + wid.x) * WG + lid;
    if c >= params.cols {
        return;
    }
    var pred = 0.0;
    var pred_c = 0.0;
    var tp = 0.0;
    for (var i = 0u; i < params.rows; i++) {
        let p = x[params.x_base + i * params.x_stride + c];
        // Kahan's compensation, kept from being simplified away: algebraically it is 0.
        let py = p - pred_c;
        let t = keep(pred + py);
        pred_c = keep(t - pred) - py;
        pred = t;
        if targets[i] == c {
            tp += p;
        }
    }
    row_out[c] = pred;
    row_out[params.cols + c] = tp;
}

// ---- macro F1: the chunks' column sums merged: params.rows rows (at x_base + r x_stride) of
// params.cols floats into one row at row_out, Kahan-compensated; repeated by the host until
// one row is left (once unless the rows outgrow a storage binding).
@compute @workgroup_size(256)
fn f1_merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let j = (wid.y * params.groups_x + wid.x) * WG + lid;
    if j >= params.cols {
        return;
    }
    var sum = 0.0;
    var comp = 0.0;
    for (var k = 0u; k < params.rows; k++) {
        let p = load1(k, j) - comp;
        let t = keep(sum + p);
        comp = keep(t - sum) - p;
        sum = t;
    }
    row_out[j] = sum;
}

// ---- macro F1: per class, from the merged column sums ----------------------------------------
// One invocation per class c. x holds the column sums, merged into one row by f1_merge (pred_c
// at c, tp_c at cols + c), `targets` the count N_c of each class.
// Writes (h_c, v_c) = (1 / (C D_c), -F1_c h_c) at row_out[2c], [2c + 1] (the gradient's
// `weight`, OP_F1_GRAD) and F1_c = 2 tp_c / D_c at row_out[2 C + c], with D_c = pred_c + N_c;
// all three 0 for D_c = 0, NaN for a NaN column (src/surrogates/prepare.rs
// `macro_f1_from_columns`, the host's f64 form).
@compute @workgroup_size(256)
fn f1_classes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = (wid.y * params.groups_x + wid.x) * WG + lid;
    if c >= params.cols {
        return;
    }
    let pred = load1(0u, c);
    let tp = load1(0u, params.cols + c);
    let d = pred + f32(targets[c]);
    var h = 0.0;
    var f1 = 0.0;
    if d > 0.0 {
        f1 = 2.0 * tp / d;
        h = 1.0 / (f32(params.cols) * d);
    }
    let nan = is_nan1(d) || is_nan1(tp);
    row_out[2u * c] = select(h, params.nan, nan);
    row_out[2u * c + 1u] = select(-f1 * h, params.nan, nan);
    row_out[2u * params.cols + c] = select(f1, params.nan, nan);
}
