// ---- surrogate rows: the softmax-weighted family and the multi-class hinge ----------------
//
// One work item = one whole row (params.segs == 1), ROW_THREADS invocations, merged through
// shared memory. The op is fixed at compile time (OP = CE_STATIC from the header):
//
//   `weighted`, with p = softmax(kappa * sign * x) and f = sum_j g_j p_j:
//     OP 1  Boltzmann      g_j = x_j (kept as x_j - m, relative to the running max)
//     OP 2  soft-argmax    g_j = j
//     OP 3  accuracy       g_j = [j == y]
//     OP 4  macro-F1 grad  g_j = v_j + 2 [j == y] h_j, (h, v) per class in `weight`
//   grad_j = u * p_j * (a + kappa * (g_j - f)): the gradient of u*f (a = 1 for Boltzmann,
//   whose g depends on x). Formulas and sources: src/surrogates/mod.rs.
//   OP 5  `margin`: torch.nn.MultiMarginLoss per row.
//   OP 6  `f1_columns`: per class c, sum_i p_ic and sum_{i: y_i = c} p_ic over the chunk.

@group(0) @binding(4) var<storage, read_write> row_out: array<f32>;
@group(0) @binding(5) var<storage, read> targets: array<u32>;

var<workgroup> sh_l: array<f32, WG>;

fn ex4(d: vec4<f32>) -> vec4<f32> {
    return exp(max(d * sp.kappa, vec4<f32>(-126.0)));
}

fn ex1(d: f32) -> f32 {
    return exp(max(d * sp.kappa, -126.0));
}

// Row values with the sign applied; lanes past the row end are -inf.
fn load_signed(row: u32, j: u32) -> vec4<f32> {
    return select(vec4<f32>(params.neg_inf), sp.sign * load4(row, j), lane_valid4(j));
}

// g_j for the four weighted ops (OP 1 takes v - m and is handled by the caller).
fn g4(j: u32, y: u32) -> vec4<f32> {
    let idx = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
    if OP == 2u {
        return vec4<f32>(idx);
    }
    let hit = idx == vec4<u32>(y);
    if OP == 3u {
        return select(vec4<f32>(0.0), vec4<f32>(1.0), hit);
    }
    var g = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let c = min(idx[k], params.cols - 1u);
        g[k] = weight[2u * c + 1u] + select(0.0, 2.0 * weight[2u * c], hit[k]);
    }
    return g;
}

// (m, s, l) with l = sum g e relative to m for OP 1. Merging two: rescale both to the larger m;
// for OP 1 the linear sum also shifts: sum (x - m') e' = (l + (m - m') s) e^{kappa (m - m')}.
// An empty side (s == 0) contributes nothing (its m may be LOWEST, and LOWEST - m' can
// overflow).
struct WStats {
    m: f32,
    s: f32,
    l: f32,
    abits: u32,
    ibits: i32,
}

fn shift(st: WStats, m: f32) -> vec2<f32> {
    if st.s == 0.0 {
        return vec2<f32>(0.0);
    }
    let r = ex1(st.m - m);
    var l = st.l;
    if OP == 1u {
        l = l + (st.m - m) * st.s;
    }
    return vec2<f32>(st.s * r, l * r);
}

fn wmerge(a: WStats, b: WStats) -> WStats {
    let m = max(a.m, b.m);
    let sa = shift(a, m);
    let sb = shift(b, m);
    return WStats(m, sa.x + sb.x, sa.y + sb.y, max(a.abits, b.abits), max(a.ibits, b.ibits));
}

fn row_y(row: u32) -> u32 {
    if OP == 3u || OP == 4u {
        return targets[row];
    }
    return 0u;
}

fn weighted_stats(it: Item, lid: u32) -> WStats {
    var st = WStats(LOWEST, 0.0, 0.0, 0u, i32(-2147483647 - 1));
    if it.valid {
        let y = row_y(it.row);
        // In blocks of SUM_BLOCK steps (see the prelude).
        for (var j = it.lane; j < params.cols_v;) {
            let stop = min(params.cols_v, j + SUM_BLOCK * ROW_THREADS);
            var blk = WStats(LOWEST, 0.0, 0.0, 0u, i32(-2147483647 - 1));
            for (; j < stop; j += ROW_THREADS) {
                let v = load_signed(it.row, j);
                let m = max(blk.m, hmax4(v));
                let e = select(vec4<f32>(0.0), ex4(v - vec4<f32>(m)), lane_valid4(j));
                var gl: f32;
                if OP == 1u {
                    gl = hsum4(select(vec4<f32>(0.0), v - vec4<f32>(m), finite4(v)) * e);
                } else {
                    gl = hsum4(g4(j, y) * e);
                }
                let old = shift(blk, m);
                let masked = select(vec4<f32>(0.0), v, lane_valid4(j));
                blk = WStats(m, old.x + hsum4(e), old.y + gl, max(blk.abits, abits4(masked)), max(blk.ibits, ibits4(masked)));
            }
            st = wmerge(st, blk);
        }
    }
    if ROW_THREADS == 1u {
        return st;
    }
    sh_m[lid] = st.m;
    sh_s[lid] = st.s;
    sh_l[lid] = st.l;
    sh_a[lid] = st.abits;
    sh_i[lid] = st.ibits;
    for (var off = ROW_THREADS / 2u; off > 0u; off >>= 1u) {
        workgroupBarrier();
        if it.lane < off {
            let o = WStats(sh_m[lid + off], sh_s[lid + off], sh_l[lid + off], sh_a[lid + off], sh_i[lid + off]);
            let mine = wmerge(WStats(sh_m[lid], sh_s[lid], sh_l[lid], sh_a[lid], sh_i[lid]), o);
            sh_m[lid] = mine.m;
            sh_s[lid] = mine.s;
            sh_l[lid] = mine.l;
            sh_a[lid] = mine.abits;
            sh_i[lid] = mine.ibits;
        }
    }
    workgroupBarrier();
    let h = it.slot * ROW_THREADS;
    return WStats(sh_m[h], sh_s[h], sh_l[h], sh_a[h], sh_i[h]);
}

@compute @workgroup_size(256)
fn weighted(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    let st = weighted_stats(it, lid);
    if !it.valid {
        return;
    }
    // NaN, +inf (after the sign), no finite value, or kappa == 0 with any infinity: NaN row.
    let ok = st.abits <= 0x7f800000u && st.ibits < 0x7f800000 && st.s > 0.0
        && (sp.kappa > 0.0 || st.abits < 0x7f800000u);
    let f = st.l / st.s;
    if it.lane == 0u {
        var value = f;
        if OP == 1u {
            value = sp.sign * (st.m + f);
        }
        row_out[it.row] = select(params.nan, value, ok);
    }
    let y = row_y(it.row);
    let inv_s = 1.0 / st.s;
    let mv = vec4<f32>(st.m);
    for (var j = it.lane; j < params.cols_v; j += ROW_THREADS) {
        let v = load_signed(it.row, j);
        let p = select(vec4<f32>(0.0), ex4(v - mv), lane_valid4(j)) * inv_s;
        var g: vec4<f32>;
        if OP == 1u {
            g = select(vec4<f32>(0.0), v - mv, finite4(v));
        } else {
            g = g4(j, y);
        }
        let grad = sp.u * p * (vec4<f32>(sp.a) + sp.kappa * (g - vec4<f32>(f)));
        store4(it.row, j, select(vec4<f32>(params.nan), grad, ok));
    }
}

// ---- multi-class hinge ---------------------------------------------------------------------
// Per row: loss = w_y / C * sum_{j != y} max(0, z_j)^p with z_j = margin - x_y + x_j; the
// tree merges (sum h, sum dh/dz, max |bits|) in sh_s, sh_l, sh_a.

@compute @workgroup_size(256)
fn margin(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    var hsum = 0.0;
    var gsum = 0.0;
    var abits = 0u;
    var y = 0u;
    var xy = 0.0;
    if it.valid {
        y = targets[it.row];
        xy = load1(it.row, y);
        // In blocks of SUM_BLOCK steps (see the prelude).
        for (var j = it.lane; j < params.cols_v;) {
            let stop = min(params.cols_v, j + SUM_BLOCK * ROW_THREADS);
            var hb = 0.0;
            var gb = 0.0;
            for (; j < stop; j += ROW_THREADS) {
                let valid = lane_valid4(j);
                let v = select(vec4<f32>(0.0), load4(it.row, j), valid);
                let idx = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
                let z = vec4<f32>(sp.margin - xy) + v;
                let on = valid & (idx != vec4<u32>(y)) & (z > vec4<f32>(0.0));
                if sp.p == 1u {
                    hb += hsum4(select(vec4<f32>(0.0), z, on));
                    gb += hsum4(select(vec4<f32>(0.0), vec4<f32>(1.0), on));
                } else {
                    hb += hsum4(select(vec4<f32>(0.0), z * z, on));
                    gb += hsum4(select(vec4<f32>(0.0), 2.0 * z, on));
                }
                abits = max(abits, abits4(v));
            }
            hsum += hb;
            gsum += gb;
        }
    }
    if ROW_THREADS > 1u {
        sh_s[lid] = hsum;
        sh_l[lid] = gsum;
        sh_a[lid] = abits;
        for (var off = ROW_THREADS / 2u; off > 0u; off >>= 1u) {
            workgroupBarrier();
            if it.lane < off {
                sh_s[lid] = sh_s[lid] + sh_s[lid + off];
                sh_l[lid] = sh_l[lid] + sh_l[lid + off];
                sh_a[lid] = max(sh_a[lid], sh_a[lid + off]);
            }
        }
        workgroupBarrier();
        let h = it.slot * ROW_THREADS;
        hsum = sh_s[h];
        gsum = sh_l[h];
        abits = sh_a[h];
    }
    if !it.valid {
        return;
    }
    // Any NaN or infinity in the row: NaN loss and gradient (see the module docs).
    let ok = abits < 0x7f800000u;
    var w = 1.0 / f32(params.cols);
    if (sp.flags & 2u) != 0u {
        w = weight[y] / f32(params.cols);
    }
    if it.lane == 0u {
        row_out[it.row] = select(params.nan, w * hsum, ok);
    }
    let gw = w * sp.u;
    for (var j = it.lane; j < params.cols_v; j += ROW_THREADS) {
        let v = select(vec4<f32>(0.0), load4(it.row, j), lane_valid4(j));
        let idx = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
        let z = vec4<f32>(sp.margin - xy) + v;
        var d = select(vec4<f32>(0.0), vec4<f32>(1.0), z > vec4<f32>(0.0));
        if sp.p == 2u {
            d = select(vec4<f32>(0.0), 2.0 * z, z > vec4<f32>(0.0));
        }
        // The target's own entry is minus the sum of the others.
        let g = select(gw * d, vec4<f32>(-gw * gsum), idx == vec4<u32>(y));
        store4(it.row, j, select(vec4<f32>(params.nan), g, ok));
    }
}

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
        let t = pred + (p - pred_c);
        pred_c = (t - pred) - (p - pred_c);
        pred = t;
        if targets[i] == c {
            tp += p;
        }
    }
    row_out[c] = pred;
    row_out[params.cols + c] = tp;
}
