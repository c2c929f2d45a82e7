// ---- surrogate rows: the softmax-weighted family and the multi-class hinge ----------------
//
// One work item = one whole row (params.segs == 1), ROW_THREADS invocations, merged through
// shared memory. The op is fixed at compile time (OP, one of the header's OP_*):
//
//   `weighted`, with p = softmax(kappa * sign * x) and f = sum_j g_j p_j:
//     OP_BOLTZMANN          g_j = x_j (kept as (x_j - m) / 4, relative to the running max)
//     OP_SOFT_ARGMAX      g_j = j
//     OP_ACCURACY            g_j = [j == y]
//     OP_F1_GRAD        g_j = v_j + 2 [j == y] h_j, (h, v) per class in `weight`
//   grad_j = u * (a p_j + kappa p_j (g_j - f)): the gradient of u*f (a = 1 for Boltzmann,
//   whose g depends on x); kappa = |beta| or 1/T, applied as `kappa_times` says. The
//   exponent is the prelude's (params.exp_*, from kappa on the host: src/scale.rs).
//   Formulas: src/surrogates/mod.rs.
//   OP_MARGIN, `margin`: torch.nn.MultiMarginLoss per row.
// The family's module goes on with macro_f1.wgsl (column sums, per-class coefficients) and
// power_max.wgsl (the power-mean max), which use this file's bindings.

@group(0) @binding(4) var<storage, read_write> row_out: array<f32>;
@group(0) @binding(5) var<storage, read> targets: array<u32>;

var<workgroup> sh_l: array<f32, WG>;

// Boltzmann's g_j = x_j - m is carried in quarters (x/4, m/4 and a mean of (x - m)/4 add up
// within range in any order, and the compiler may choose the order: see `keep`); within a
// block that holds a value of magnitude 2^120 or more it is summed in units of 2^-9, so that
// a block's sum of (at most 4 * SUM_BLOCK = 128) terms cannot overflow (|x - m| <= 2^129);
// elsewhere in quarters, exact (no subnormal underflow for rows of tiny values).
const BIG_BITS: u32 = 0x7b800000u; // 2^120

// Row values with the sign applied; lanes past the row end are -inf.
fn load_signed(row: u32, j: u32) -> vec4<f32> {
    return select(vec4<f32>(params.neg_inf), sp.sign * load4(row, j), lane_valid4(j));
}

// g_j for the four weighted ops (OP_BOLTZMANN takes v - m and is handled by the caller).
fn g4(j: u32, y: u32) -> vec4<f32> {
    let idx = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
    if OP == OP_SOFT_ARGMAX {
        return vec4<f32>(idx);
    }
    let hit = idx == vec4<u32>(y);
    if OP == OP_ACCURACY {
        return select(vec4<f32>(0.0), vec4<f32>(1.0), hit);
    }
    var g = vec4<f32>(0.0);
    for (var k = 0u; k < 4u; k++) {
        let c = min(idx[k], params.cols - 1u);
        g[k] = weight[2u * c + 1u] + select(0.0, 2.0 * weight[2u * c], hit[k]);
    }
    return g;
}

// (m, s, f): the running max, sum of e = exp(kappa (x - m)), and the weighted mean
// f = sum g e / s (for OP_BOLTZMANN of (x - m) / 4, relative to m: bounded by f32::MAX / 2 however the
// row spans, where a sum of such terms could overflow). Merging two: both rescaled to the
// larger max, f as a convex combination. An empty side (s == 0) contributes nothing (its m may
// be LOWEST).
struct WStats {
    m: f32,
    s: f32,
    f: f32,
    abits: u32,
    ibits: i32,
}

fn wmerge(a: WStats, b: WStats) -> WStats {
    let m = max(a.m, b.m);
    var sa = 0.0;
    var fa = 0.0;
    if a.s > 0.0 {
        sa = a.s * exp_sub(a.m, m);
        fa = a.f;
        if OP == OP_BOLTZMANN {
            fa += keep(fma(a.m, sp.quarter, -sp.quarter2 * m));
        }
    }
    var sb = 0.0;
    var fb = 0.0;
    if b.s > 0.0 {
        sb = b.s * exp_sub(b.m, m);
        fb = b.f;
        if OP == OP_BOLTZMANN {
            fb += keep(fma(b.m, sp.quarter, -sp.quarter2 * m));
        }
    }
    // f = (sa fa + sb fb) / s as two weights in [0, 1]: the sum form overflows when s is
    // large and f near f32::MAX / 2, and fa + (sb / s)(fb - fa) loses a small side's share
    // when sb / s rounds to 1. `keep` stops the compiler from regrouping it into either.
    let s = sa + sb;
    var f = 0.0;
    if s > 0.0 {
        f = keep(sa / s) * fa + keep(sb / s) * fb;
    }
    return WStats(m, s, f, max(a.abits, b.abits), max(a.ibits, b.ibits));
}

fn row_y(row: u32) -> u32 {
    if OP == OP_ACCURACY || OP == OP_F1_GRAD {
        return targets[row];
    }
    return 0u;
}

fn weighted_stats(it: Item, lid: u32) -> WStats {
    var st = WStats(LOWEST, 0.0, 0.0, 0u, i32(-2147483647 - 1));
    if it.valid {
        let y = row_y(it.row);
        // In blocks of SUM_BLOCK steps (see the prelude): a block's (m, s, sum g e) in plain
        // sums, then its mean merged into the running stats.
        for (var j = it.lane; j < params.cols_v;) {
            let stop = min(params.cols_v, j + SUM_BLOCK * ROW_THREADS);
            let j0 = j;
            var bm = LOWEST;
            var ba = 0u;
            var bi = i32(-2147483647 - 1);
            for (; j < stop; j += ROW_THREADS) {
                let masked = select(vec4<f32>(0.0), load_signed(it.row, j), lane_valid4(j));
                bm = max(bm, hmax4(load_signed(it.row, j)));
                ba = max(ba, abits4(masked));
                bi = max(bi, ibits4(masked));
            }
            // Second read of the block (it is in cache): the sums relative to its max.
            let h = select(sp.quarter, sp.small_h, ba >= BIG_BITS);
            var bs = 0.0;
            var bl = 0.0;
            for (j = j0; j < stop; j += ROW_THREADS) {
                let v = load_signed(it.row, j);
                let e = select(vec4<f32>(0.0), exp_sub4(v, bm), lane_valid4(j));
                bs += hsum4(e);
                if OP == OP_BOLTZMANN {
                    let h2 = select(sp.quarter2, sp.small_h2, ba >= BIG_BITS);
                    let g = keep4(fma(v, vec4<f32>(h), vec4<f32>(-bm * h2)));
                    bl += hsum4(select(vec4<f32>(0.0), g, finite4(v) & (e > vec4<f32>(0.0))) * e);
                } else {
                    bl += hsum4(g4(j, y) * e);
                }
            }
            var bf = 0.0;
            if bs > 0.0 {
                bf = bl / bs;
                if OP == OP_BOLTZMANN {
                    bf *= sp.quarter / h;
                }
            }
            st = wmerge(st, WStats(bm, bs, bf, ba, bi));
        }
    }
    if ROW_THREADS == 1u {
        return st;
    }
    sh_m[lid] = st.m;
    sh_s[lid] = st.s;
    sh_l[lid] = st.f;
    sh_a[lid] = st.abits;
    sh_i[lid] = st.ibits;
    for (var off = ROW_THREADS / 2u; off > 0u; off >>= 1u) {
        workgroupBarrier();
        if it.lane < off {
            let o = WStats(sh_m[lid + off], sh_s[lid + off], sh_l[lid + off], sh_a[lid + off], sh_i[lid + off]);
            let mine = wmerge(WStats(sh_m[lid], sh_s[lid], sh_l[lid], sh_a[lid], sh_i[lid]), o);
            sh_m[lid] = mine.m;
            sh_s[lid] = mine.s;
            sh_l[lid] = mine.f;
            sh_a[lid] = mine.abits;
            sh_i[lid] = mine.ibits;
        }
    }
    workgroupBarrier();
    let h = it.slot * ROW_THREADS;
    return WStats(sh_m[h], sh_s[h], sh_l[h], sh_a[h], sh_i[h]);
}

// kappa * p * d as ((p * kappa_s) * d) * kappa_r, with kappa_s = 2^k <= 2^127 and
// kappa_r = kappa / kappa_s >= 1 (in [1, 2) unless T is subnormal, where kappa_s stops at
// 2^127; or kappa itself when kappa < 1, kappa_s = 1), times 4
// for OP_BOLTZMANN (whose d is in quarters): p * d alone underflows where the product does not
// (p ~ 1e-28, d ~ 1e-23 at T = 1e-45), kappa * d alone overflows where it does not, and
// kappa itself overflows f32 for subnormal T. An intermediate overflows only where the result
// does (kappa_r >= 1). The order is forced with `keep`: lavapipe's compiler otherwise
// regroups the products (measured: kappa_s * kappa_r * 4 first, then inf * 0 = NaN).
fn kappa_times(p: vec4<f32>, d: vec4<f32>) -> vec4<f32> {
    return keep4(keep4(p * sp.kappa) * d) * sp.kappa_r;
}

@compute @workgroup_size(256)
fn weighted(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    let st = weighted_stats(it, lid);
    if !it.valid {
        return;
    }
    // NaN, +inf (after the sign), no finite value, or kappa == 0 with any infinity: NaN row.
    // Macro F1's gradient: NaN everywhere when F is (a NaN row reached the column sums; `q`
    // holds the device sum of the classes' F1, its flags at 2: see `f1_classes`).
    var ok = st.abits <= 0x7f800000u && st.ibits < 0x7f800000 && st.s > 0.0
        && (sp.kappa_r > 0.0 || st.abits < 0x7f800000u);
    if OP == OP_F1_GRAD {
        ok = ok && q[2] == 0.0;
    }
    if it.lane == 0u {
        var value = st.f;
        if OP == OP_BOLTZMANN {
            // m + f, with f kept in quarters: (m/4 + f/4) * 4 cannot overflow before the end.
            value = sp.sign * (fma(st.m, sp.quarter, st.f) * 4.0);
        }
        row_out[it.row] = select(params.nan, value, ok);
    }
    let y = row_y(it.row);
    let inv_s = 1.0 / st.s;
    for (var j = it.lane; j < params.cols_v; j += ROW_THREADS) {
        let v = load_signed(it.row, j);
        let p = select(vec4<f32>(0.0), exp_sub4(v, st.m), lane_valid4(j)) * inv_s;
        var d: vec4<f32>;
        if OP == OP_BOLTZMANN {
            // (g_j - f) in quarters, then multiplied by 4 after kappa (p * d * kappa * 4).
            let vq = fma(v, vec4<f32>(sp.quarter), vec4<f32>(-sp.quarter2 * st.m));
            d = keep4(vq) - vec4<f32>(st.f);
        } else {
            d = g4(j, y) - vec4<f32>(st.f);
        }
        let k = kappa_times(p, d);
        // -inf entries (p = 0) contribute 0, never 0 * inf.
        let grad = select(vec4<f32>(0.0), sp.u * (sp.a * p + k), p > vec4<f32>(0.0));
        store4(it.row, j, select(vec4<f32>(params.nan), grad, ok));
    }
}

// ---- multi-class hinge ---------------------------------------------------------------------
// Per row: loss = sum_{j != y} (w_y / C) max(0, z_j)^p with z_j = margin - x_y + x_j; the
// tree merges (sum of loss terms, sum of gradient terms, max |bits|) in sh_s, sh_l, sh_a.
// z_j is formed from x_j - x_y (exact for nearby values) plus the margin, and, where that
// overflows (a row spanning more than f32::MAX, a margin near it), in quarters (three terms up
// to f32::MAX); each term takes the bounded factor w_y / C before the unbounded ones, so a sum
// of non-negative terms overflows only where the exact loss does.
struct Hinge {
    on: vec4<bool>,
    zq: vec4<f32>,  // z / 4
}

fn hinge4(v: vec4<f32>, xy: f32) -> Hinge {
    let dv = keep4(v - vec4<f32>(xy));
    let zf = dv + vec4<f32>(sp.margin);
    let zq_shift = fma(-sp.quarter2, xy, sp.quarter * sp.margin);
    let zq_wide = fma(v, vec4<f32>(sp.quarter), vec4<f32>(zq_shift));
    // z > 0 as one exact comparison (x_j - x_y > -margin); where x_j - x_y overflows, the
    // quarters decide, and where z does, the quarters carry it.
    let on = select(dv > vec4<f32>(-sp.margin), zq_wide > vec4<f32>(0.0), !finite4(dv));
    return Hinge(on, select(sp.quarter * zf, zq_wide, !finite4(zf)));
}

@compute @workgroup_size(256)
fn margin(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    var hsum = 0.0;
    var gsum = 0.0;
    var abits = 0u;
    var y = 0u;
    var xy = 0.0;
    var wc = 1.0 / f32(params.cols);
    if it.valid {
        y = targets[it.row];
        xy = load1(it.row, y);
        if (sp.flags & SP_WEIGHT) != 0u {
            wc = weight[y] / f32(params.cols);
        }
    }
    // The gradient's terms take the reduction's factor u (<= 1) before they are summed for
    // the target's entry, so that sum overflows only where the result does.
    let wcg = wc * sp.u;
    if it.valid {
        // In blocks of SUM_BLOCK steps (see the prelude).
        for (var j = it.lane; j < params.cols_v;) {
            let stop = min(params.cols_v, j + SUM_BLOCK * ROW_THREADS);
            var hb = 0.0;
            var gb = 0.0;
            for (; j < stop; j += ROW_THREADS) {
                let valid = lane_valid4(j);
                let v = select(vec4<f32>(0.0), load4(it.row, j), valid);
                let idx = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
                let h = hinge4(v, xy);
                let on = valid & (idx != vec4<u32>(y)) & h.on;
                if sp.p == 1u {
                    hb += hsum4(select(vec4<f32>(0.0), 4.0 * keep4(wc * h.zq), on));
                    gb += hsum4(select(vec4<f32>(0.0), vec4<f32>(wcg), on));
                } else {
                    hb += hsum4(select(vec4<f32>(0.0), 16.0 * keep4(keep4(wc * h.zq) * h.zq), on));
                    gb += hsum4(select(vec4<f32>(0.0), 8.0 * keep4(wcg * h.zq), on));
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
    if it.lane == 0u {
        row_out[it.row] = select(params.nan, hsum, ok);
    }
    for (var j = it.lane; j < params.cols_v; j += ROW_THREADS) {
        let v = select(vec4<f32>(0.0), load4(it.row, j), lane_valid4(j));
        let idx = vec4<u32>(4u * j) + vec4<u32>(0u, 1u, 2u, 3u);
        let h = hinge4(v, xy);
        var d = select(vec4<f32>(0.0), vec4<f32>(wcg), h.on);
        if sp.p == 2u {
            d = select(vec4<f32>(0.0), 8.0 * keep4(wcg * h.zq), h.on);
        }
        // The target's own entry is minus the sum of the others.
        let g = select(d, vec4<f32>(-gsum), idx == vec4<u32>(y));
        store4(it.row, j, select(vec4<f32>(params.nan), g, ok));
    }
}
