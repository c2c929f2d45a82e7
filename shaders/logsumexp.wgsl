// ---- logsumexp family: T * ln sum_j exp(x_j / T) per row -----------------------------------
//
// One segment per row (S = 1): `stats` writes the result directly.
// Several (S > 1, long rows and few of them): `stats` writes per-segment partials and
// `lse_merge` folds each row's S partials. The split softmax runs `stats`, then `merge_rows`.

// lse: (rows,) output
@group(0) @binding(4) var<storage, read_write> lse: array<f32>;


@compute @workgroup_size(256)
fn stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    let st = item_stats(it, lid);
    if it.valid && it.lane == 0u {
        if params.segs == 1u {
            lse[params.y_base + it.row] = lse_of(st);
        } else {
            store_partial(it.row, it.seg, st);
        }
    }
}

// Partials even when S = 1: the first pass of an unfused softmax (see RowSplit::fused).
@compute @workgroup_size(256)
fn stats_partial(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    let st = item_stats(it, lid);
    if it.valid && it.lane == 0u {
        store_partial(it.row, it.seg, st);
    }
}

// One invocation per row: merges the row's S partials once and stores the result in its
// segment-0 slot, for the softmax family's `write` (which would otherwise merge S partials in
// every invocation).
@compute @workgroup_size(256)
fn merge_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = (wid.y * params.groups_x + wid.x) * WG + lid;
    if row < params.rows {
        store_partial(row, 0u, row_from_partials(row));
    }
}

// One invocation per row.
@compute @workgroup_size(256)
fn lse_merge(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = (wid.y * params.groups_x + wid.x) * WG + lid;
    if row < params.rows {
        lse[params.y_base + row] = lse_of(row_from_partials(row));
    }
}
