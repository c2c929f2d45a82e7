// ---- softmax family: softmax(x / T) or log_softmax(x / T) per row --------------------------
//
// `fused` (S = 1): stats in one read, then the output written by the same workgroup while the
// row is still in cache. `write`: the logsumexp family's `stats` and `merge_rows` (S > 1) or
// `stats_partial` (S = 1, unfused on CPU adapters: see RowSplit::fused in src/gpu/split.rs)
// left each row's merged stats in its first partial slot; each item reads them and writes its
// segment.
//
// softmax_j     = exp((x_j - m) / T) / s
// log_softmax_j = (x_j - m) / T - ln s     (not x_j/T - lse: exact under a +1e7 shift)
// -inf inputs give exactly 0 (exp2 of the clamped -182 underflows) / -inf (by IEEE arithmetic);
// a row with NaN, +inf or no finite value gives NaN.

// One loop whatever the row's case (lavapipe would run a second, NaN-filling loop under a
// mask on every row): non-finite rows get NaN through the final select.
fn write_item(it: Item, st: Stats) {
    let begin = seg_begin(it);
    let end = seg_end(it);
    let ok = stats_finite(st);
    let m = st.m;
    let fill = vec4<f32>(params.nan);
    if LOG_OUTPUT {
        let ln_s = vec4<f32>(log(st.s));
        for (var j = begin + it.lane; j < end; j += ROW_THREADS) {
            let v = shifted4(load4(it.row, j), m) * params.exp_c_log - ln_s;
            store4(it.row, j, select(fill, v, ok));
        }
    } else {
        let inv_s = 1.0 / st.s;
        for (var j = begin + it.lane; j < end; j += ROW_THREADS) {
            store4(it.row, j, select(fill, exp_sub4(load4(it.row, j), m) * inv_s, ok));
        }
    }
}

@compute @workgroup_size(256)
fn fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    let st = item_stats(it, lid);
    if it.valid {
        write_item(it, st);
    }
}

@compute @workgroup_size(256)
fn write(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    if it.valid {
        write_item(it, row_merged(it.row));
    }
}

// Element-type conversion (src/gpu/convert.rs): each item's segment read in x's type and
// written in y's, through the same loads and stores as the ops.
@compute @workgroup_size(256)
fn convert(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    if it.valid {
        for (var j = seg_begin(it) + it.lane; j < seg_end(it); j += ROW_THREADS) {
            store4(it.row, j, load4(it.row, j));
        }
    }
}
