// ---- cross-entropy family: fused softmax cross-entropy, statistics and gradient -----------
//
// Semantics: torch.nn.functional.cross_entropy (aten/src/ATen/native/LossNLL.cpp) plus z-loss
// and softcap; src/cross_entropy/fast.rs has the normalized quantities this file computes and
// why. T = 1 here (params.temperature = 1).
//
// Per row, one read of the logits for the statistics, then, when asked, the gradient written
// while the row is hot (`ce_fused`); no softmax matrix is materialized. The loss is finished
// by the host in f64 from each row's statistics (row_out). Split form, for long rows with few
// of them and for the gradient on CPU adapters (see RowSplit::fused in src/gpu/split.rs):
// `ce_stats` per segment -> partials, `ce_rows` merges per row, `ce_grad` per segment writes
// its share of the gradient.
//
// Statistics beyond the normalizer (when smoothing or probability targets need them), with
// |k_j| <= 1 (class weights over their max, or w_j q'_j over the row's max: formed on the
// host) and sigma = 2^-(p+2), 2^p >= C:
//   a = sum_finite k_j sigma (x'_j - m)   kept relative to the running max:
//                                        a += b sigma (m_old - m_new)
//   b = sum_finite k_j
// each term formed as fma(x', sigma, -sigma m) (no overflow however the row spans).
//
// Softcap's tanh and chain factor are in softcap.wgsl, appended to this file.
//
// Gradient, per row from the host's normalized coefficients (row_in: class, alpha, beta,
// gamma, zeta, n):
//   g_j = p_j (alpha + zeta lse) - beta k_j - [j = y] gamma     (the target's entry formed as
//   gamma (p_y - 1) + p_y (alpha + zeta lse - gamma) - beta k_y, Liger-Kernel's precaution),
// times (1 - tanh^2(x / c)) under softcap, times 2^n last.

// FLAG_* (from the header, src/cross_entropy/fast.rs `flag`): FLAG_NAN, FLAG_POS_INF, and the
// kinds of -inf logits: FLAG_NEG_POS with k > 0 (PyTorch's -k * logp is +inf there),
// FLAG_NEG_ZERO with k == 0 (0 * inf = NaN), FLAG_NEG_NEG with k < 0 (-inf).

// CE_SOFTCAP, CE_WEIGHT, CE_LINEAR (smoothing or probability targets: the linear sums are
// needed), CE_GRAD: from the header (src/gpu/kernel/mod.rs `CeFlags`). Every bit is
// compile-time (CE_STATIC), not read from `ce.flags`: see `Spec::ce` for why.

struct CeParams {
    softcap: f32,
    sigma: f32,
    sigma2: f32,    // sigma again (see `shifted` in the prelude for why two)
    _pad3: u32,
    flags: u32,     // CE_* bits (the shader uses its compile-time copy, CE_STATIC)
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

// row_out: (rows, 6) = (m, s, a, target logit x'_y, FLAG_* bits, 0): the row's statistics
@group(0) @binding(4) var<storage, read_write> row_out: array<u32>;
// row_in: (rows, 6) = (class as i32, -1 ignored; alpha, beta, gamma, zeta as f32 bits; n)
@group(0) @binding(5) var<storage, read> row_in: array<u32>;
@group(0) @binding(8) var<uniform> ce: CeParams;

fn ce_has(bit: u32) -> bool {
    return (CE_STATIC & bit) != 0u;
}

fn ce_linear() -> bool {
    return ce_has(CE_LINEAR);
}

// k = 1 for every class (class targets, no weights, vec4 loads so no padding lanes): then every
// -inf logit is of the FLAG_NEG_POS kind, and whether one was met is read off the statistics'
// bit maxima at the end (see neg_flags) instead of being tested on every vec4.
const K_ONE: bool = !PROB_TARGETS && (CE_STATIC & CE_WEIGHT) == 0u && !PADDED;


// k of four classes: the row's normalized w_j q'_j (probability targets), else the normalized
// class weights, else 1; 0 past the row end.
fn k4(row: u32, j: u32) -> vec4<f32> {
    var k = vec4<f32>(1.0);
    if PROB_TARGETS {
        k = loadq4(row, j);
    } else if ce_has(CE_WEIGHT) {
        k = loadw4(j);
    }
    return select(vec4<f32>(0.0), k, lane_valid4(j));
}

// The -inf kind of four classes, by the sign of k (the host keeps a non-zero one at least
// 2^-126 in size, so a device that flushes subnormals keeps its sign).
fn neg_kind4(row: u32, j: u32, neg: vec4<bool>) -> u32 {
    let k = k4(row, j);
    return select(0u, FLAG_NEG_POS, any(neg & (k > vec4<f32>(0.0))))
         | select(0u, FLAG_NEG_ZERO, any(neg & (k == vec4<f32>(0.0))))
         | select(0u, FLAG_NEG_NEG, any(neg & (k < vec4<f32>(0.0))));
}

struct CeStats {
    st: Stats,   // m, s, abits, ibits (see the prelude)
    a: f32,
    b: f32,
    neg: u32,    // FLAG_NEG_* kinds of -inf logits met (smoothing / probability targets)
}

fn ce_empty() -> CeStats {
    return CeStats(stats_empty(), 0.0, 0.0, 0u);
}

// sigma (v - m), formed so that it cannot overflow and is not regrouped.
fn sig4(v: vec4<f32>, m: f32) -> vec4<f32> {
    return keep4(fma(v, vec4<f32>(ce.sigma), vec4<f32>(-ce.sigma2 * m)));
}

// b sigma (m_old - m_new). Before the first finite value b = 0 and m_old = LOWEST, and
// sigma (LOWEST - m_new) is finite (sigma <= 1/4), so the product is 0: no guard on m_old,
// which would also drop a real max of exactly -f32::MAX.
fn shift(b: f32, m_old: f32, m_new: f32) -> f32 {
    if !ce_linear() {
        return 0.0;
    }
    return b * keep(fma(m_old, ce.sigma, -ce.sigma2 * m_new));
}

// Adds four classes to the linear sums, which the caller has already shifted to the max m.
fn ce_linear4(r: CeStats, m: f32, xv: vec4<f32>, row: u32, j: u32) -> CeStats {
    var o = r;
    if K_ONE {
        // No masking: a -inf makes `a` meaningless (-inf or NaN) but also makes the smoothed
        // loss +inf whatever `a` is (neg_flags), and NaN / +inf rows never read `a`.
        o.a = r.a + hsum4(sig4(xv, m));
        o.b = r.b + 4.0;
        return o;
    }
    let kv = k4(row, j);
    let fin = finite4(xv);
    let kd = select(vec4<f32>(0.0), kv * sig4(xv, m), fin);
    let kf = select(vec4<f32>(0.0), kv, fin);
    o.a = r.a + hsum4(kd);
    o.b = r.b + hsum4(kf);
    let neg = (bitcast<vec4<u32>>(xv) == vec4<u32>(0xff800000u)) & lane_valid4(j);
    if any(neg) {
        o.neg |= neg_kind4(row, j, neg);
    }
    return o;
}

fn ce_absorb(r: CeStats, xv: vec4<f32>, row: u32, j: u32) -> CeStats {
    var o = r;
    o.st = absorb(r.st, xv);
    if ce_linear() {
        o.a += shift(o.b, r.st.m, o.st.m);
        o = ce_linear4(o, o.st.m, xv, row, j);
    }
    return o;
}

fn ce_merge(p: CeStats, q: CeStats) -> CeStats {
    let st = merge(p.st, q.st);
    let m = st.m;
    return CeStats(
        st,
        p.a + shift(p.b, p.st.m, m) + q.a + shift(q.b, q.st.m, m),
        p.b + q.b,
        p.neg | q.neg,
    );
}

var<workgroup> sh_la: array<f32, WG>;
var<workgroup> sh_lb: array<f32, WG>;
var<workgroup> sh_ln: array<u32, WG>;

fn sh_put(i: u32, c: CeStats) {
    sh_put_stats(i, c.st);
    sh_la[i] = c.a;
    sh_lb[i] = c.b;
    sh_ln[i] = c.neg;
}

fn sh_get(i: u32) -> CeStats {
    return CeStats(sh_get_stats(i), sh_la[i], sh_lb[i], sh_ln[i]);
}

// One (soft-capped) vec4 of logits; lanes past the row end stay -inf (capping would make
// them -c, a real value).
fn ce_load(row: u32, j: u32) -> vec4<f32> {
    let v = load4(row, j);
    if ce_has(CE_SOFTCAP) {
        return select(vec4<f32>(params.neg_inf), cap4(v), lane_valid4(j));
    }
    return v;
}

// Statistics of a (row, segment) item: strided reads, then a shared-memory tree merge.
// Every invocation of the workgroup must call this (it holds barriers).
fn ce_item_stats(it: Item, lid: u32) -> CeStats {
    var c = ce_empty();
    if it.valid {
        let end = seg_end(it);
        var j = seg_begin(it) + it.lane;
        // Four vec4 per step, one rescale per sixteen values, in blocks of SUM_BLOCK steps
        // (see the prelude).
        let lin = ce_linear();
        for (; j + 3u * ROW_THREADS < end;) {
            let stop = min(end, j + SUM_BLOCK * 4u * ROW_THREADS);
            var blk = ce_empty();
            for (; j + 3u * ROW_THREADS < stop; j += 4u * ROW_THREADS) {
                let j1 = j + ROW_THREADS;
                let j2 = j + 2u * ROW_THREADS;
                let j3 = j + 3u * ROW_THREADS;
                let v0 = ce_load(it.row, j);
                let v1 = ce_load(it.row, j1);
                let v2 = ce_load(it.row, j2);
                let v3 = ce_load(it.row, j3);
                let m_old = blk.st.m;
                blk.st = absorb16(blk.st, v0, v1, v2, v3);
                if lin {
                    let m = blk.st.m;
                    blk.a += shift(blk.b, m_old, m);
                    blk = ce_linear4(blk, m, v0, it.row, j);
                    blk = ce_linear4(blk, m, v1, it.row, j1);
                    blk = ce_linear4(blk, m, v2, it.row, j2);
                    blk = ce_linear4(blk, m, v3, it.row, j3);
                }
            }
            c = ce_merge(c, blk);
        }
        for (; j < end; j += ROW_THREADS) {
            c = ce_absorb(c, ce_load(it.row, j), it.row, j);
        }
    }
    if ROW_THREADS == 1u {
        return c;
    }
    sh_put(lid, c);
    for (var off = ROW_THREADS / 2u; off > 0u; off >>= 1u) {
        workgroupBarrier();
        if it.lane < off {
            sh_put(lid, ce_merge(sh_get(lid), sh_get(lid + off)));
        }
    }
    workgroupBarrier();
    return sh_get(it.slot * ROW_THREADS);
}

fn store_ce_partial(row: u32, seg: u32, c: CeStats) {
    let i = 8u * (row * params.segs + seg);
    partials[i] = bitcast<u32>(c.st.m);
    partials[i + 1u] = bitcast<u32>(c.st.s);
    partials[i + 2u] = c.st.abits;
    partials[i + 3u] = bitcast<u32>(c.st.ibits);
    partials[i + 4u] = bitcast<u32>(c.a);
    partials[i + 5u] = bitcast<u32>(c.b);
    partials[i + 6u] = c.neg;
}

fn load_ce_partial(row: u32, seg: u32) -> CeStats {
    let i = 8u * (row * params.segs + seg);
    let st = Stats(bitcast<f32>(partials[i]), bitcast<f32>(partials[i + 1u]), partials[i + 2u], bitcast<i32>(partials[i + 3u]));
    return CeStats(st, bitcast<f32>(partials[i + 4u]), bitcast<f32>(partials[i + 5u]),
                   partials[i + 6u]);
}

fn ce_row_from_partials(row: u32) -> CeStats {
    var c = ce_empty();
    for (var seg = 0u; seg < params.segs; seg++) {
        c = ce_merge(c, load_ce_partial(row, seg));
    }
    return c;
}

// The FLAG_NEG_* kinds met in a row whose statistics saw no NaN and no +inf. Under K_ONE a
// -inf is then present exactly when the largest |bits| is that of an infinity.
fn neg_flags(c: CeStats) -> u32 {
    if K_ONE {
        return select(0u, FLAG_NEG_POS, c.st.abits == 0x7f800000u);
    }
    return c.neg;
}

// Everything a row's gradient needs, from its statistics and the host's coefficients.
struct Fin {
    state: u32,  // 0 ignored, 1 non-finite row (NaN gradient), 2 ok
    m: f32,
    inv_s: f32,
    alpha: f32,  // alpha + zeta lse
    beta: f32,
    gamma: f32,
    n: i32,      // the gradient is multiplied by 2^n last
    y: i32,      // target class, -1 for probability targets
}

// The row's raw target logit, or 0 when there is none (probability targets, an ignored row,
// or a class outside [0, C)).
fn target_logit(row: u32) -> f32 {
    let y = bitcast<i32>(row_in[6u * row]);
    if PROB_TARGETS || y < 0 || u32(y) >= params.cols {
        return 0.0;
    }
    return load1(row, u32(y));
}

// The row's statistics for the host (row_out), with the (soft-capped) target logit.
fn write_row_out(row: u32, c: CeStats, xy_raw: f32) {
    var flags = neg_flags(c);
    if has_nan(c.st) {
        flags = FLAG_NAN;
    } else if has_pos_inf(c.st) {
        flags = FLAG_POS_INF;
    }
    let i = 6u * row;
    row_out[i] = bitcast<u32>(c.st.m);
    row_out[i + 1u] = bitcast<u32>(c.st.s);
    row_out[i + 2u] = bitcast<u32>(c.a);
    row_out[i + 3u] = bitcast<u32>(cap1(xy_raw));
    row_out[i + 4u] = flags;
    row_out[i + 5u] = 0u;
}

// `xy_raw` is target_logit(row), read by the caller: in place, it must be read before any
// gradient overwrites the logits.
fn ce_finalize(row: u32, c: CeStats) -> Fin {
    let base = c.st;
    var f = Fin(0u, base.m, 0.0, 0.0, 0.0, 0.0, 0, -1);
    let i = 6u * row;
    let y = bitcast<i32>(row_in[i]);
    // Any class outside [0, C) counts as ignored: the host validated targets, and this keeps
    // the kernel in bounds even if it had not.
    if !PROB_TARGETS && (y < 0 || u32(y) >= params.cols) {
        return f;
    }
    if !stats_finite(base) {
        f.state = 1u;
        return f;
    }
    f.state = 2u;
    f.inv_s = 1.0 / base.s;
    let lse = base.m + log(base.s);
    f.alpha = bitcast<f32>(row_in[i + 1u]) + bitcast<f32>(row_in[i + 4u]) * lse;
    f.beta = bitcast<f32>(row_in[i + 2u]);
    f.gamma = bitcast<f32>(row_in[i + 3u]);
    f.n = bitcast<i32>(row_in[i + 5u]);
    if !PROB_TARGETS {
        f.y = y;
    }
    return f;
}

// g 2^n for n >= 0, in exact steps of at most 2^100 (`keep` stops the compiler from merging
// them into one product that overflows); overflows only where the result does. n is 0 unless
// an option or the upstream gradient is beyond 1 in size (then the caller's loop takes it).
fn times_pow2(g: vec4<f32>, n: i32) -> vec4<f32> {
    var v = g;
    var left = n;
    for (var step = 0; step < 5 && left > 0; step++) {
        let k = min(left, 100);
        v = keep4(v * pow2(k));
        left -= k;
    }
    return v;
}

// One vec4 of the gradient before its 2^n.
fn grad4(it: Item, j: u32, f: Fin) -> vec4<f32> {
    let raw = load4(it.row, j);
    var xv = raw;
    if ce_has(CE_SOFTCAP) {
        xv = select(vec4<f32>(params.neg_inf), cap4(raw), lane_valid4(j));
    }
    // -inf logits: exp2 of the clamped -182 underflows to exactly 0.
    var g = exp_sub4(xv, f.m) * (f.inv_s * f.alpha);
    if ce_linear() {
        g -= f.beta * k4(it.row, j);
    }
    if ce_has(CE_SOFTCAP) {
        g *= chain4(raw);
    }
    return g;
}


// The gradient of an item's share of the row. No branch inside the loops: lavapipe would run
// every side of one under a mask on every step. Rows with usable statistics take the first
// loop; ignored rows (0) and non-finite rows (NaN) the second, which a SIMD step whose rows
// are all usable leaves after one empty check. The target class is written last, by the
// invocation whose loop wrote its vec4, from `xy_raw` (read before any in-place overwrite).
fn ce_write_grad(it: Item, f: Fin, xy_raw: f32) {
    let begin = seg_begin(it);
    let end = seg_end(it);
    let ok = f.state == 2u;
    // Rows whose coefficients needed no 2^n (every row unless an option or the upstream
    // gradient is beyond 1 in size) take the first loop, the others the second.
    let plain = ok && f.n == 0;
    for (var j = begin + it.lane; j < select(begin, end, plain); j += ROW_THREADS) {
        store_grad4(it.row, j, grad4(it, j, f));
    }
    for (var j = begin + it.lane; j < select(begin, end, ok && !plain); j += ROW_THREADS) {
        store_grad4(it.row, j, times_pow2(grad4(it, j, f), f.n));
    }
    let fill = vec4<f32>(select(0.0, params.nan, f.state == 1u));
    for (var j = begin + it.lane; j < select(end, begin, ok); j += ROW_THREADS) {
        store_grad4(it.row, j, fill);
    }
    let jy = u32(f.y) / 4u;
    if ok && f.y >= 0 && jy >= begin && jy < end && (jy - begin) % ROW_THREADS == it.lane {
        // g_y = gamma (p_y - 1) + p_y (alpha - gamma) - beta k_y: the (p_y - 1) formed directly.
        let p = exp_sub(cap1(xy_raw), f.m) * f.inv_s;
        var k = 1.0;
        if ce_has(CE_WEIGHT) {
            k = weight1(u32(f.y));
        }
        var g = f.gamma * (p - 1.0) + p * (f.alpha - f.gamma);
        if ce_linear() {
            g -= f.beta * k;
        }
        g *= chain1(xy_raw);
        store_grad1(it.row, u32(f.y), times_pow2(vec4<f32>(g), f.n).x);
    }
}

@compute @workgroup_size(256)
fn ce_fused(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    let st = ce_item_stats(it, lid);
    var xy = 0.0;
    if it.valid {
        xy = target_logit(it.row);
    }
    if IN_PLACE {
        // Every target logit is read before any invocation overwrites logits with gradient.
        workgroupBarrier();
    }
    if it.valid {
        if it.lane == 0u {
            write_row_out(it.row, st, xy);
        }
        if ce_has(CE_GRAD) {
            ce_write_grad(it, ce_finalize(it.row, st), xy);
        }
    }
}

@compute @workgroup_size(256)
fn ce_stats(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    let st = ce_item_stats(it, lid);
    if it.valid && it.lane == 0u {
        store_ce_partial(it.row, it.seg, st);
    }
}

// One invocation per row: merges the row's S partials once, writes its statistics, and
// leaves the merged stats in the segment-0 slot for `ce_grad`, with the raw target logit in
// place of `b` (no longer needed once merged): in place, `ce_grad`'s other workgroups may
// already have overwritten the logit itself.
@compute @workgroup_size(256)
fn ce_rows(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let row = (wid.y * params.groups_x + wid.x) * WG + lid;
    if row < params.rows {
        var c = ce_row_from_partials(row);
        let xy = target_logit(row);
        write_row_out(row, c, xy);
        c.b = xy;
        store_ce_partial(row, 0u, c);
    }
}

@compute @workgroup_size(256)
fn ce_grad(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    if it.valid {
        let c = load_ce_partial(it.row, 0u);
        ce_write_grad(it, ce_finalize(it.row, c), c.b);
    }
}
