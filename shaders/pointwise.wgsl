// ---- pointwise: the element-wise surrogates, one element per invocation ------------------
//
// x (binding 1) holds the scores (or `a`), b_in the labels (or `b`), y the per-element value,
// grad the gradient (for the pairwise max d/da, and grad_b d/db); weight (6) is
// per element, q (7) the logistic loss's pos_weight per column. Reductions over the batch are
// done on the device (the sums at the end of this file). Formulas and sources: src/surrogates/mod.rs.
//
//   OP_LOGISTIC, OP_HINGE, OP_SQUARED_HINGE, OP_EXPONENTIAL, OP_SQUARED: the binary losses
//   OP_PAIRWISE_ERF ..= OP_PAIRWISE_LOGCOSH (consecutive): the pairwise smooth max forms
//   OP_F1_SIGMOID: binary F1, first pass (`pointwise_sum`: sigma(x) b and sigma(x) + b summed)
//   OP_F1_BINARY_GRAD: binary F1, second pass: grad = p (1 - p) (2 b - F) / D, with
//     (sum p b, flags, D = sum (p + b), flags) from the device sums in `weight`

@group(0) @binding(4) var<storage, read> b_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;
// grad_b: the pairwise max's d/db (bound to a dummy for the other ops)
@group(0) @binding(9) var<storage, read_write> grad_b: array<f32>;

// log(1 + e) for e in [0, 1]: log(1 + e) loses e's digits when e < 2^-24; the series does not.
fn log1p_small(e: f32) -> f32 {
    if e < 1e-4 {
        return e * (1.0 - 0.5 * e);
    }
    return log(1.0 + e);
}

// Numerical Recipes' erfcc: fractional error < 1.2e-7 (the CPU path uses the same fit).
fn erfc1(v: f32) -> f32 {
    let z = abs(v);
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
        + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587
        + t * (-0.82215223 + t * 0.17087277))))))));
    let r = t * exp(poly);
    return select(2.0 - r, r, v >= 0.0);
}

struct Frexp {
    fract: f32,
    exp: i32,
}

// frexp that does not depend on the device's handling of subnormals (lavapipe's frexp returns
// a wrong exponent for them): a subnormal is scaled by 2^64 first (0 if the device flushed it).
fn frexp_normal(v: f32) -> Frexp {
    if abs(v) < 1.17549435e-38 {
        let f = frexp(v * 18446744073709551616.0);
        return Frexp(f.fract, f.exp - 64);
    }
    let f = frexp(v);
    return Frexp(f.fract, f.exp);
}

// a * b * c * d for finite factors, with no intermediate overflow or underflow that the exact
// product does not have (weights, positive weights and scores up to f32::MAX, subnormal ones
// included, make products of several unbounded factors): the mantissas are multiplied, the
// exponents added, and the power of two applied in two exact steps (`keep` stops the compiler
// from merging them).
fn mul4(a: f32, b: f32, c: f32, d: f32) -> f32 {
    let fa = frexp_normal(a);
    let fb = frexp_normal(b);
    let fc = frexp_normal(c);
    let fd = frexp_normal(d);
    let m = (fa.fract * fb.fract) * (fc.fract * fd.fract); // |m| in [1/16, 1), or 0
    let e = fa.exp + fb.exp + fc.exp + fd.exp;
    if m == 0.0 || e < -170 {
        return 0.0 * m;
    }
    if e > 132 {
        return m * params.pos_inf; // |m| >= 1/16: beyond f32::MAX
    }
    let e1 = e / 2;
    return keep(m * pow2(e1)) * pow2(e - e1);
}

fn mul3(a: f32, b: f32, c: f32) -> f32 {
    return mul4(a, b, c, 1.0);
}

// ln |v| for finite v != 0, subnormal v included (lavapipe's log is wrong for subnormals): from
// frexp_normal, ln |fract| + exp ln 2.
fn log_abs(v: f32) -> f32 {
    let f = frexp_normal(v);
    return log(abs(f.fract)) + f32(f.exp) * 0.6931471806;
}

// w * a * e^z for finite w, a >= 0 and z <= 88: as mul3 where e^z is a normal f32, and as
// sign(w) e^(z + ln|w| + ln a) below (e^z underflows there, w a e^z need not: w = 1e38,
// z = -100 is 3.7e-6). The log form's relative error is eps (|z| + |ln w|), within the
// e^z terms' own conditioning eps |z|.
fn wexp(w: f32, a: f32, z: f32) -> f32 {
    if z > -80.0 || w == 0.0 || a == 0.0 {
        return mul3(w, a, exp(z));
    }
    // Below z = -300 the product is below 2^-126 for any w, a <= f32::MAX (and z = -inf
    // never reaches exp, which the finite-math assumption leaves undefined there).
    return sign(w) * exp(max(z, -300.0) + log_abs(w) + log_abs(a));
}

// An unweighted infinite loss times a weight, as IEEE arithmetic gives it: NaN for w = 0, the
// sign flipped for w < 0.
fn weigh_inf(l: f32, w: f32) -> f32 {
    return select(select(params.nan, -l, w < 0.0), l, w > 0.0);
}

// (w * loss, w * dloss/df * u) of one binary loss (u: the reduction's factor, <= 1).
fn binary(f: f32, y: f32, pw: f32, w: f32, u: f32) -> vec2<f32> {
    if OP == OP_LOGISTIC {
        if is_nan1(f) {
            return vec2<f32>(params.nan);
        }
        // PyTorch's (1 - y) f - l_w log sigma(f), l_w = 1 + (pw - 1) y, rearranged into
        // non-negative terms: (1 - y) f + l_w log(1 + e^-f) for f >= 0, pw y (-f) +
        // l_w log(1 + e^f) for f < 0; nothing cancels. The gradient l_w sigma(f) - pw y as
        // (1 - y) sigma(f) - pw y sigma(-f).
        let lw = (1.0 - y) + pw * y;
        // sigma(f) = e^f / (1 + e^f) is e^f to f32 precision below f = -80 (and underflows
        // there): wexp carries it; likewise sigma(-f) above 80.
        var g1 = mul3(w, u, (1.0 - y) * sigmoid1(f));
        if f < -80.0 {
            g1 = wexp(w, u * (1.0 - y), f);
        }
        var g2 = mul4(w, u, pw, y * sigmoid1(-f));
        if f > 80.0 {
            g2 = sign(pw * y) * wexp(w, u * abs(pw * y), -f);
        }
        let g = g1 - g2;
        if !is_finite1(f) {
            // +inf: (1 - y) inf - 0 is +inf for y < 1, 0 * inf = NaN for y = 1; -inf: NaN.
            let pinf = select(params.nan, params.pos_inf, y < 1.0);
            return vec2<f32>(weigh_inf(select(params.nan, pinf, f > 0.0), w), g);
        }
        // l_w log(1 + e^-|f|), which is l_w e^-|f| to f32 precision beyond |f| = 80.
        var soft = mul3(w, lw, log1p_small(exp(-abs(f))));
        if abs(f) > 80.0 {
            soft = wexp(w, lw, -abs(f));
        }
        let lin = select(mul4(w, pw, y, -f), mul3(w, 1.0 - y, f), f >= 0.0);
        return vec2<f32>(lin + soft, g);
    }
    if !is_finite1(f) {
        return vec2<f32>(params.nan);
    }
    let v = 1.0 - y * f;
    if OP == OP_HINGE {
        return select(vec2<f32>(0.0), vec2<f32>(w * v, -y * (w * u)), v > 0.0);
    }
    if OP == OP_SQUARED_HINGE {
        let h = max(v, 0.0);
        return vec2<f32>(mul3(w, h, h), mul3(w, -2.0 * y * u, h));
    }
    if OP == OP_EXPONENTIAL {
        let z = -y * f;
        if z <= 88.0 {
            // -y w u e^z = -y (w u e^z): y is +-1.
            return vec2<f32>(wexp(w, 1.0, z), -y * wexp(w, u, z));
        }
        // e^z beyond f32: w e^z as sign(w) e^(z + ln|w|). Beyond f64's range (z > 709.78)
        // the reference's e^z is infinite too, and its weighting is IEEE's.
        if z > 709.78 {
            return vec2<f32>(weigh_inf(params.pos_inf, w), weigh_inf(params.pos_inf, -y * w));
        }
        if w == 0.0 {
            return vec2<f32>(0.0);
        }
        let l = sign(w) * exp(z + log_abs(w));
        return vec2<f32>(l, -y * sign(w) * exp(z + log_abs(w) + log_abs(u)));
    }
    return vec2<f32>(mul3(w, v, v), mul3(w, -2.0 * y * u, v));
}

// (f, df/da, df/db) of the pairwise smooth max, written around max(a, b) so the small
// correction and the small partial derivative keep their relative precision. a - b is carried
// in halves (it overflows for arguments of opposite sign near f32::MAX), and the products with
// the unbounded parameter come last.
fn pairwise(a: f32, b: f32) -> vec3<f32> {
    if !(is_finite1(a) && is_finite1(b)) {
        return vec3<f32>(params.nan);
    }
    let dh = keep(fma(a, sp.half, -sp.half2 * b)); // (a - b) / 2
    let hi = max(a, b);
    let adh = abs(dh);
    let k = sp.kappa;
    if OP == OP_PAIRWISE_ACON {
        // f = sigma(t) a + sigma(-t) b (convex: no overflow), t = beta (a - b); df/da =
        // sigma(t) + t sigma(t) sigma(-t), the last term 0 beyond |t| = 80.
        let t = keep(k * dh) * 2.0;
        let s = sigmoid1(t);
        let s2 = sigmoid1(-t);
        let bump = select(0.0, t * s * s2, abs(t) < 80.0);
        return vec3<f32>(s * a + s2 * b, s + bump, s2 - bump);
    }
    var f: f32;
    var small: f32;
    if OP == OP_PAIRWISE_LOGCOSH {
        // max + ln(1 + e)/(2k), e = e^{-2k|a - b|} = e^{-4k|d/2|} (the exponent clamped at
        // 128, where e is 0 in f32, so no infinity reaches exp); the smaller argument's partial
        // (1 - tanh(k|a - b|))/2 = e/(1 + e).
        // (keep: regrouped as (4k)·|d/2|, 4k overflows to inf and inf·0 is NaN at a = b.)
        let e = exp(-min(4.0 * keep(k * adh), 128.0));
        f = hi + (log1p_small(e) / k) * 0.5; // (not / (2k): 2k overflows for k > f32::MAX/2)
        small = e / (1.0 + e);
    } else if OP == OP_PAIRWISE_ERF {
        // z = mu |a - b|, clamped at 10 (erfc(10) = 2e-45: the correction is 0 beyond).
        let z = min(keep(k * adh) * 2.0, 10.0);
        let e = erfc1(z);
        let bump = z * 1.1283791671 * exp(-z * z);
        f = hi - adh * e;
        small = (e - bump) * 0.5;
    } else {
        // In halves: r/2 = hypot(|d|/2, mu/2), scaled against overflow; r - |d| =
        // mu^2 / (r + |d|) = mu * ratio with ratio = (mu/2) / (r/2 + |d|/2), formed as
        // (mu/r) / (1 + |d|/r) (r/2 + |d|/2 can overflow; these are in [0, 1] and [1, 2]);
        // the partial derivative mu^2 / (2 r (r + |d|)) = (mu / r) * ratio / 2.
        let kh = k * 0.5;
        let big = max(adh, kh);
        if big == 0.0 {
            // a == b and mu/2 underflowed (or was flushed): f = max + mu/2, partials 1/2.
            return vec3<f32>(hi + 0.5 * k, 0.5, 0.5);
        }
        let q = min(adh, kh) / big;
        let rh = big * sqrt(1.0 + q * q);
        let ratio = (kh / rh) / (1.0 + adh / rh);
        f = hi + 0.5 * (k * ratio);
        small = 0.5 * ((kh / rh) * ratio);
    }
    return select(vec3<f32>(f, small, 1.0 - small), vec3<f32>(f, 1.0 - small, small), dh >= 0.0);
}

// The element-wise smoothings (src/surrogates/smoothings.rs), (value, derivative) of one
// element at sharpness k or t (>= 2^-126: the host checks). Non-finite values by bit tests.
const PI: f32 = 3.14159265358979;

// |v| + ln(1 + e^{-2k|v|})/k and tanh(kv): +-inf give (+inf, +-1), NaN gives NaN. k|v| is
// clamped at 64 (e^{-128} is 0 in f32) so that no infinity reaches exp, and kept whole ((2k)|v|
// would be inf * 0 = NaN at v = 0 for k near f32::MAX); tanh's argument at 10 (tanh is 1 in
// f32 beyond 9.01).
fn smooth_abs1(v: f32, k: f32) -> vec2<f32> {
    if is_nan1(v) {
        return vec2<f32>(params.nan);
    }
    let a = abs(v);
    let e = exp(-2.0 * min(keep(k * a), 64.0));
    let t = tanh4(vec4<f32>(clamp(k * v, -10.0, 10.0))).x;
    return vec2<f32>(a + log1p_small(e) / k, t);
}

// The smoothed floor a + g, a = floor(v). For t >= 1 the direct sums over the integers above
// (distances du + m) and at or below v (dl + m), whose terms fall like e^{-t m}: below 2^-26
// of the total within 19 of them. Each distance is taken where it is exact when it is the
// smaller one: dl = v - a, except for v in (-1/2, 0) (a = -1), whose distance up is -v; and
// du = 1 - dl where dl >= 1/2 (r = 1 + v rounded would lose a tiny negative v, whose nearest
// integer decides the result at large t). Below t = 1: r - 1/2 and the Fourier series' first
// term 2 pi w e^{-pi w} sin(2 pi r) / pi with pi w = 2 pi^2 / t >= 19.7 (t floored at 0.1,
// below which the term is 0 in f32 anyway, so that pi w stays finite); the next term is below
// 2^-49, and this one below 4e-8, so the sine's precision does not matter (its argument is
// still kept in [-pi, pi): sin(2 pi r) = -sin(2 pi (r - 1/2))). +-inf give (+-inf, 0), NaN
// gives NaN.
fn smooth_floor1(v: f32, t: f32) -> vec2<f32> {
    let bits = bitcast<u32>(v) & 0x7fffffffu;
    if bits > 0x7f800000u {
        return vec2<f32>(params.nan);
    }
    if bits == 0x7f800000u {
        return vec2<f32>(v, 0.0);
    }
    let a = floor(v);
    let dl = v - a;
    if t < 1.0 {
        let pw = 2.0 * PI * PI / max(t, 0.1);
        let phi = 2.0 * pw * exp(-pw);
        let u = 2.0 * PI * (dl - 0.5);
        return vec2<f32>(a + ((dl - 0.5) - phi * sin(u) / PI), 1.0 - 2.0 * phi * cos(u));
    }
    let du = select(1.0 - dl, -v, a == -1.0);
    var up = 0.0;
    var down = 0.0;
    var d = 0.0;
    for (var m = 0u; m < 64u; m++) {
        let mf = f32(m);
        // keep: t * (m + du) distributed could meet inf - inf at t near f32::MAX.
        let hi = sigmoid1(-t * keep(mf + du));
        let lo = sigmoid1(-t * keep(mf + dl));
        up += hi;
        down += lo;
        d += t * (hi * (1.0 - hi) + lo * (1.0 - lo));
        if hi + lo <= 1.5e-8 * (1.0 + up + down) {
            break;
        }
    }
    return vec2<f32>(a + (up - down), d);
}

@compute @workgroup_size(256)
fn pointwise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * params.groups_x + wid.x) * WG + lid;
    if e >= sp.n {
        return;
    }
    let f = x[e];
    let yv = b_in[e];
    if OP >= OP_PAIRWISE_ERF && OP <= OP_PAIRWISE_LOGCOSH {
        let r = pairwise(f, yv);
        y[e] = r.x;
        grad[e] = r.y;
        grad_b[e] = r.z;
        return;
    }
    if OP == OP_SMOOTH_ABS || OP == OP_SMOOTH_FLOOR {
        var r = smooth_floor1(f, sp.kappa);
        if OP == OP_SMOOTH_ABS {
            r = smooth_abs1(f, sp.kappa);
        }
        y[e] = r.x;
        grad[e] = r.y;
        return;
    }
    if OP == OP_F1_BINARY_GRAD {
        // From the device sums in `weight`: (s, c, flags) of sum p y, then of D = sum (p + y).
        let tp = weight[0] + weight[1];
        let d = weight[3] + weight[4];
        let bad = weight[2] != 0.0 || weight[5] != 0.0 || is_nan1(f);
        let p = sigmoid1(f);
        // The sums are in units of 2^-32 (see the device sums below): F is their ratio, 1/D
        // scales back. D = 0: every p and y is 0, F = 0 and so is the gradient.
        let f1 = select(2.0 * tp / d, 0.0, d == 0.0);
        let inv_d = select(SUM_SCALE / d, 0.0, d == 0.0);
        grad[e] = select(p * (1.0 - p) * (2.0 * yv - f1) * inv_d, params.nan, bad);
        return;
    }
    let r = binary_at(e, f, yv);
    y[e] = r.x;
    grad[e] = r.y;
}

// A binary loss's (value, gradient) at element e, with its weights.
fn binary_at(e: u32, f: f32, yv: f32) -> vec2<f32> {
    var pw = 1.0;
    if (sp.flags & SP_POS_WEIGHT) != 0u {
        pw = q[e % params.cols];
    }
    var w = 1.0;
    if (sp.flags & SP_WEIGHT) != 0u {
        w = weight[e];
    }
    return binary(f, yv, pw, w, sp.u);
}

// The element-wise ops whose values are only summed: SUM_GROUPS workgroups per chunk, each
// over a strided share of the chunk's sp.n elements (as `sum_blocks`: one tree per workgroup,
// not one per WG elements, which lavapipe pays for in barriers), summing its elements' values
// and writing (s, c, flags) for two arrays at y[6g] (the device sums below, then
// src/gpu/surrogates/sums.rs `sum_partials`), so no value is stored.
//   OP_F1_SIGMOID: binary F1's first pass, a = sigma(x) b, b = sigma(x) + b (NaN x: NaN)
//   the binary losses: a = the loss, and the gradient written to grad as `pointwise` does
@compute @workgroup_size(256)
fn pointwise_sum(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.x;
    var a = NSum(0.0, 0.0, 0u);
    var b = NSum(0.0, 0.0, 0u);
    for (var e = g * WG + lid; e < sp.n; e += SUM_GROUPS * WG) {
        let f = x[e];
        let yv = b_in[e];
        if OP == OP_F1_SIGMOID {
            let p = sigmoid1(f);
            a = nsum_add(a, select(p * yv, params.nan, is_nan1(f)));
            b = nsum_add(b, select(p + yv, params.nan, is_nan1(f)));
        } else {
            let r = binary_at(e, f, yv);
            grad[e] = r.y;
            a = nsum_add(a, r.x);
        }
    }
    a = nsum_tree(a, lid);
    b = nsum_tree(b, lid);
    if lid == 0u {
        nsum_store(a, b, 6u * g);
    }
}

// ---- device sums: the batch reductions (src/gpu/surrogates/sums.rs) ---------------------------
// Sums of one or two f32 arrays (x, and b_in when sp.p == 2). `sum_blocks`: SUM_GROUPS (header)
// workgroups per chunk, each summing a strided share of the chunk's sp.n elements into
// (s, c, flags) per array at y[6g ..]. `sum_final`: one workgroup per chunk of rows of such
// groups (sp.p groups per row, rows at x_base + r x_stride), merged into one group at y[0 .. 6];
// the host repeats it until one group is left. Sums are Neumaier's compensated ones (c carries
// every addition's rounding error), merged through TwoSum in the trees, of the values times
// 2^-32 (exact; the host scales back in f64), so that no sum of up to 2^32 finite f32 values
// overflows. Non-finite values are kept out of the sums and flagged (SUM_NAN, SUM_POS_INF,
// SUM_NEG_INF), so the host gets the IEEE result: NaN for a NaN or for both infinities, else
// the infinity, else s + c.

const SUM_NAN: u32 = 1u;
const SUM_POS_INF: u32 = 2u;
const SUM_NEG_INF: u32 = 4u;
const SUM_SCALE: f32 = 2.3283064365386963e-10; // 2^-32

struct NSum {
    s: f32,
    c: f32,
    flags: u32,
}

// s + v·2^-32 with its rounding error added into c (Neumaier). `keep` stops the compiler from
// folding (s - t) + v into 0.
fn nsum_add(a: NSum, raw: f32) -> NSum {
    let bits = bitcast<u32>(raw);
    let mag = bits & 0x7fffffffu;
    if mag > 0x7f800000u {
        return NSum(a.s, a.c, a.flags | SUM_NAN);
    }
    if mag == 0x7f800000u {
        return NSum(a.s, a.c, a.flags | select(SUM_POS_INF, SUM_NEG_INF, bits != mag));
    }
    let v = raw * SUM_SCALE;
    let t = keep(a.s + v);
    var e = keep(v - t) + a.s;
    if abs(a.s) >= abs(v) {
        e = keep(a.s - t) + v;
    }
    return NSum(t, a.c + e, a.flags);
}

// a + b: the sums' TwoSum error joins the two compensations.
fn nsum_merge(a: NSum, b: NSum) -> NSum {
    let t = keep(a.s + b.s);
    let bb = keep(t - a.s);
    let e = (a.s - keep(t - bb)) + (b.s - bb);
    return NSum(t, a.c + b.c + e, a.flags | b.flags);
}

var<workgroup> sh_c: array<f32, WG>;

// The workgroup's sum of `mine` (every invocation takes part).
fn nsum_tree(mine: NSum, lid: u32) -> NSum {
    sh_m[lid] = mine.s;
    sh_c[lid] = mine.c;
    sh_a[lid] = mine.flags;
    for (var off = WG / 2u; off > 0u; off >>= 1u) {
        workgroupBarrier();
        if lid < off {
            let m = nsum_merge(NSum(sh_m[lid], sh_c[lid], sh_a[lid]),
                NSum(sh_m[lid + off], sh_c[lid + off], sh_a[lid + off]));
            sh_m[lid] = m.s;
            sh_c[lid] = m.c;
            sh_a[lid] = m.flags;
        }
    }
    workgroupBarrier();
    let r = NSum(sh_m[0], sh_c[0], sh_a[0]);
    workgroupBarrier();
    return r;
}

// Both arrays' sums as one group of six floats at y[at ..].
fn nsum_store(a: NSum, b: NSum, at: u32) {
    y[at] = a.s;
    y[at + 1u] = a.c;
    y[at + 2u] = f32(a.flags);
    y[at + 3u] = b.s;
    y[at + 4u] = b.c;
    y[at + 5u] = f32(b.flags);
}

@compute @workgroup_size(256)
fn sum_blocks(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let g = wid.x;
    var a = NSum(0.0, 0.0, 0u);
    var b = NSum(0.0, 0.0, 0u);
    for (var e = g * WG + lid; e < sp.n; e += SUM_GROUPS * WG) {
        a = nsum_add(a, x[e]);
        if sp.p == 2u {
            b = nsum_add(b, b_in[e]);
        }
    }
    a = nsum_tree(a, lid);
    b = nsum_tree(b, lid);
    if lid == 0u {
        nsum_store(a, b, 6u * g);
    }
}

@compute @workgroup_size(256)
fn sum_final(@builtin(local_invocation_index) lid: u32) {
    var a = NSum(0.0, 0.0, 0u);
    var b = NSum(0.0, 0.0, 0u);
    for (var t = lid; t < params.rows * sp.p; t += WG) {
        let r = t / sp.p;
        let o = 6u * (t % sp.p);
        a = nsum_merge(a, NSum(load1(r, o), load1(r, o + 1u), u32(load1(r, o + 2u))));
        b = nsum_merge(b, NSum(load1(r, o + 3u), load1(r, o + 4u), u32(load1(r, o + 5u))));
    }
    a = nsum_tree(a, lid);
    b = nsum_tree(b, lid);
    if lid == 0u {
        nsum_store(a, b, 0u);
    }
}
