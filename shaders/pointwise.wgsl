// ---- pointwise: the element-wise surrogates, one element per invocation ------------------
//
// x (binding 1) holds the scores (or `a`), b_in the labels (or `b`), y the per-element value,
// grad the gradient (for the pairwise max: d/da in [0, n), d/db in [n, 2n)); weight (6) is
// per element, q (7) the logistic loss's pos_weight per column. Reductions over the batch are
// done by the host in f64 from y. Formulas and sources: src/surrogates/mod.rs.
//
//   OP 10..14  binary losses: logistic, hinge, squared hinge, exponential, squared
//   OP 20..22  pairwise smooth max: erf, sqrt, ACON
//   OP 30      binary F1, first pass: y = sigma(x)
//   OP 31      binary F1, second pass: grad = p (1 - p) (2 y - F) / D

@group(0) @binding(4) var<storage, read> b_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> grad: array<f32>;

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

// (loss, dloss/df) of one binary loss, before weights.
fn binary(f: f32, y: f32, pw: f32) -> vec2<f32> {
    if OP == 10u {
        // PyTorch: (1 - y) f - l_w log sigma(f); infinities as its arithmetic gives them.
        // 1 + (pw - 1) y, formed without the cancellation that loses a small pw at y = 1.
        let lw = (1.0 - y) + pw * y;
        let g = lw * sigmoid1(f) - pw * y;
        if is_nan1(f) {
            return vec2<f32>(params.nan);
        }
        if !is_finite1(f) {
            // +inf: (1 - y) inf - 0 is +inf for y < 1, 0 * inf = NaN for y = 1; -inf: NaN.
            let pinf = select(params.nan, params.pos_inf, y < 1.0);
            return vec2<f32>(select(params.nan, pinf, f > 0.0), g);
        }
        let log_sig = min(f, 0.0) - log1p_small(exp(-abs(f)));
        return vec2<f32>((1.0 - y) * f - lw * log_sig, g);
    }
    if !is_finite1(f) {
        return vec2<f32>(params.nan);
    }
    let u = 1.0 - y * f;
    if OP == 11u {
        return select(vec2<f32>(0.0), vec2<f32>(u, -y), u > 0.0);
    }
    if OP == 12u {
        let h = max(u, 0.0);
        return vec2<f32>(h * h, -2.0 * y * h);
    }
    if OP == 13u {
        let e = exp(-y * f);
        return vec2<f32>(e, -y * e);
    }
    return vec2<f32>(u * u, -2.0 * y * u);
}

// (f, df/da, df/db) of the pairwise smooth max, written around max(a, b) so the small
// correction and the small partial derivative keep their relative precision.
fn pairwise(a: f32, b: f32) -> vec3<f32> {
    if !(is_finite1(a) && is_finite1(b)) {
        return vec3<f32>(params.nan);
    }
    let d = a - b;
    let hi = max(a, b);
    let ad = abs(d);
    let k = sp.kappa;
    if OP == 22u {
        let s = sigmoid1(k * d);
        let ga = s * (1.0 + k * d * sigmoid1(-k * d));
        return vec3<f32>(d * s + b, ga, 1.0 - ga);
    }
    var f: f32;
    var small: f32;
    if OP == 20u {
        let z = k * ad;
        let e = erfc1(z);
        let bump = z * 1.1283791671 * exp(-z * z);
        f = hi - ad * e * 0.5;
        small = (e - bump) * 0.5;
    } else {
        // r = hypot(d, mu) scaled against overflow; r - |d| = mu^2 / (r + |d|).
        let big = max(ad, k);
        let q = min(ad, k) / big;
        let r = big * sqrt(1.0 + q * q);
        let c = k * k / (r + ad);
        f = hi + 0.5 * c;
        small = c / (2.0 * r);
    }
    return select(vec3<f32>(f, small, 1.0 - small), vec3<f32>(f, 1.0 - small, small), d >= 0.0);
}

@compute @workgroup_size(256)
fn pointwise(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let e = (wid.y * params.groups_x + wid.x) * WG + lid;
    if e >= sp.n {
        return;
    }
    let f = x[e];
    let yv = b_in[e];
    if OP >= 20u && OP < 30u {
        let r = pairwise(f, yv);
        y[e] = r.x;
        grad[e] = r.y;
        grad[sp.n + e] = r.z;
        return;
    }
    if OP == 30u {
        y[e] = select(params.nan, sigmoid1(f), !is_nan1(f));
        return;
    }
    if OP == 31u {
        let p = sigmoid1(f);
        grad[e] = select(params.nan, p * (1.0 - p) * (2.0 * yv - sp.f1) * sp.inv_d, !is_nan1(f));
        return;
    }
    var pw = 1.0;
    if (sp.flags & 1u) != 0u {
        pw = q[e % params.cols];
    }
    var w = 1.0;
    if (sp.flags & 2u) != 0u {
        w = weight[e];
    }
    let r = binary(f, yv, pw);
    var loss = w * r.x;
    if !is_finite1(r.x) && !is_nan1(r.x) {
        // An infinite loss times a weight: IEEE gives NaN for w = 0 and flips with the sign.
        loss = select(select(params.nan, -r.x, w < 0.0), r.x, w > 0.0);
    }
    y[e] = loss;
    grad[e] = w * r.y * sp.u;
}
