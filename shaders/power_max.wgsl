// The power-mean max, in the surrogate rows family (surrogate_rows.wgsl: bindings, helpers).
// Host side: src/gpu/surrogates/dispatch.rs.
// ---- power-mean max: f = (sum_j x_j^p)^(1/p) per row of x >= 0, p >= 1 ----------------------
// sp.kappa = p, sp.a = p - 1, sp.inv_p = 1/p, sp.q_p = (p - 1)/p, and the clamps sp.lo_p =
// -200/p, sp.lo_pm1 = -200/(p - 1), passed from the host: for p > 2^126 1/p is subnormal, and a
// device that flushes it would lose the clamps.
// Worked on the bits. Non-negative floats order as their bit patterns, so the row max is a
// max of u32, and after -0 is cleared to +0 any negative, NaN or infinite entry has bits
// >= 0x7f800000: the same max says the row is outside the domain (device data cannot be
// checked on the host; such a row is NaN). log2(x_j / m) is formed as (e_j - e_m) +
// log2(f_j / f_m) from each value's exponent and significand in [1, 2) (subnormals normalized
// from their bits), so a device that flushes subnormals still sees them, the integer part is
// exact and the fraction's log is of a number in (1/2, 2). Each term (x_j/m)^p =
// exp2(p log2(x_j/m)) is in [0, 1]; rows merge as (m, s) pairs rescaled to the larger max.
// Gradient: (x_j / f)^(p-1) = exp2((p-1)(log2(x_j/m) - log2(s)/p)) <= 1 (the f64 definition
// and its edge rows: src/surrogates/smoothings.rs `power_max`).

struct Split {
    e: i32,   // x = f * 2^e
    f: f32,   // in [1, 2)
}

// For bits b > 0 of a finite non-negative value.
fn split_bits(b: u32) -> Split {
    let ex = (b >> 23u) & 0xffu;
    if ex != 0u {
        return Split(i32(ex) - 127, bitcast<f32>((b & 0x7fffffu) | 0x3f800000u));
    }
    // Subnormal: mant * 2^-149, its top set bit at k.
    let mant = b & 0x7fffffu;
    let k = 31u - countLeadingZeros(mant);
    return Split(i32(k) - 149, bitcast<f32>(((mant << (23u - k)) & 0x7fffffu) | 0x3f800000u));
}

// log2(x / m) <= 0 for bits 0 < b <= mb (0 exactly at b = mb).
fn log2_ratio(b: u32, mb: u32, m: Split) -> f32 {
    let s = split_bits(b);
    let l = f32(s.e - m.e) + log2(s.f / m.f);
    return select(min(l, 0.0), 0.0, b == mb);
}

// (x / m)^p for bits b <= mb: 0 for x = 0. The log is first clamped at -200/p, so the product
// (>= -200, where exp2 is 0 in f32) cannot overflow for any p.
fn power_term(b: u32, mb: u32, m: Split) -> f32 {
    let l = max(log2_ratio(b, mb, m), sp.lo_p);
    return select(exp2(sp.kappa * l), 0.0, b == 0u);
}

// -0 as +0; every other bit pattern unchanged.
fn clear_neg_zero4(v: vec4<f32>) -> vec4<u32> {
    let b = bitcast<vec4<u32>>(v);
    return select(b, vec4<u32>(0u), b == vec4<u32>(0x80000000u));
}

// A row's (or part's) max as bits and its sum relative to that max. (The max stays a u32:
// through an f32 a subnormal's bits could be flushed.)
struct PowerPair {
    m: u32,
    s: f32,
}

// Merges (ma, sa) and (mb, sb): both sums rescaled to the larger max (a side with s = 0
// moves nothing).
fn power_merge(ma: u32, sa: f32, mb: u32, sb: f32) -> PowerPair {
    let m = max(ma, mb);
    let sm = split_bits(max(m, 1u));
    var s = 0.0;
    if sa > 0.0 {
        s += sa * power_term(ma, m, sm);
    }
    if sb > 0.0 {
        s += sb * power_term(mb, m, sm);
    }
    return PowerPair(m, s);
}

@compute @workgroup_size(256)
fn power(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let it = work_item(wid, lid);
    var mb = 0u;
    var s = 0.0;
    if it.valid {
        // In blocks of SUM_BLOCK steps (see the prelude): the block's max, then its sum
        // relative to that max from a second read (in cache), merged into the running pair.
        for (var j = it.lane; j < params.cols_v;) {
            let stop = min(params.cols_v, j + SUM_BLOCK * ROW_THREADS);
            let j0 = j;
            var bm = 0u;
            for (; j < stop; j += ROW_THREADS) {
                let b = select(vec4<u32>(0u), clear_neg_zero4(load4(it.row, j)), lane_valid4(j));
                bm = max(bm, max(max(b.x, b.y), max(b.z, b.w)));
            }
            var bs = 0.0;
            if bm > 0u && bm < 0x7f800000u {
                let sm = split_bits(bm);
                for (j = j0; j < stop; j += ROW_THREADS) {
                    let b = select(vec4<u32>(0u), clear_neg_zero4(load4(it.row, j)), lane_valid4(j));
                    bs += power_term(b.x, bm, sm) + power_term(b.y, bm, sm)
                        + power_term(b.z, bm, sm) + power_term(b.w, bm, sm);
                }
            }
            let merged = power_merge(mb, s, bm, bs);
            mb = merged.m;
            s = merged.s;
        }
    }
    if ROW_THREADS > 1u {
        sh_a[lid] = mb;
        sh_s[lid] = s;
        for (var off = ROW_THREADS / 2u; off > 0u; off >>= 1u) {
            workgroupBarrier();
            if it.lane < off {
                let merged = power_merge(sh_a[lid], sh_s[lid], sh_a[lid + off], sh_s[lid + off]);
                sh_a[lid] = merged.m;
                sh_s[lid] = merged.s;
            }
        }
        workgroupBarrier();
        let h = it.slot * ROW_THREADS;
        mb = sh_a[h];
        s = sh_s[h];
    }
    if !it.valid {
        return;
    }
    let ok = mb < 0x7f800000u;
    let sm = split_bits(max(mb, 1u));
    // log2(s), s in [1, C] for a row with a positive max.
    let ls = log2(max(s, 1.0));
    if it.lane == 0u {
        // m s^(1/p) = f_m s^(1/p) 2^e_m: the significand's product is < 2C, the scaling last.
        // (For p > 2^126 1/p may flush to 0: s^(1/p) is then 1 to within 2^-120 anyway.)
        var value = ldexp(sm.f * exp2(ls * sp.inv_p), sm.e);
        value = select(value, 0.0, mb == 0u);
        row_out[it.row] = select(params.nan, value, ok);
    }
    for (var j = it.lane; j < params.cols_v; j += ROW_THREADS) {
        let b = select(vec4<u32>(0u), clear_neg_zero4(load4(it.row, j)), lane_valid4(j));
        var g = vec4<f32>(1.0); // p = 1: the sum's gradient, zeros included
        if sp.a > 0.0 {
            for (var k = 0u; k < 4u; k++) {
                // (p - 1) log2(x/m) - ((p - 1)/p) log2(s) <= 0, the log ratio clamped at
                // -200/(p - 1) as in power_term (and log2(s) <= 32).
                let l = max(log2_ratio(b[k], mb, sm), sp.lo_pm1);
                g[k] = select(exp2(min(sp.a * l - sp.q_p * ls, 0.0)), 0.0, b[k] == 0u);
            }
        }
        store4(it.row, j, select(vec4<f32>(params.nan), g, ok));
    }
}
