// ---- prelude: shared by every smoothmax kernel ---------------------------------------------
//
// Preceded by a header from src/gpu/shaders.rs that fixes the specialization:
//   const ROW_THREADS: u32   invocations cooperating on one (row, segment) item, a power of 2
//   const LOG_OUTPUT: bool   softmax family: write log-softmax instead of softmax
// and followed by one load/store variant (vec4.wgsl or scalar.wgsl), then the kernel family.
//
// Numerics. WGSL lets the compiler assume no inf/NaN; on lavapipe `x != x` is false for NaN,
// `max(NaN, 0)` is 0 and `x - x` folds to 0. So values are classified by their bits, NaN and
// +inf travel as flags beside the running (max, sum), the running max starts at the lowest
// finite f32 (never -inf, so `exp(m_old - m_new)` is never `exp(-inf + inf)`, cf.
// flash-attention issue 1930), and -inf / +inf / NaN results come from the host through
// `params`, never from literals or log(0).

// Steps of an invocation's serial loop summed into fresh statistics before they are merged
// into its running ones. A running f32 sum can lose half an ulp at each addition, in the same
// direction when the data line up (a dominant term, then many equal ones near half an ulp of
// it): the surrogates' loop on a CPU adapter, 2048 vec4 per invocation, lost 500 eps that
// way (tests/summation.rs). Blocked, no f32 sum takes more than SUM_BLOCK + steps / SUM_BLOCK
// additions (48 at most for the statistics), for two more exp2 per block (no measurable cost
// at 32 steps on lavapipe; 8 and 16 cost 3-6% in logsumexp).
const SUM_BLOCK: u32 = 32u;
const ROWS_PER_WG: u32 = WG / ROW_THREADS;
const LOWEST: f32 = -3.40282347e38;

struct Params {
    rows: u32,        // rows in this chunk
    cols: u32,        // C, in scalars
    cols_v: u32,      // C in vec4 units: ceil(C / 4)
    segs: u32,        // segments per row, S >= 1 (S > 1: several workgroups per row)
    seg_len: u32,     // vec4 units per segment
    groups_x: u32,    // workgroups along x of the folded 2-D grid
    temperature: f32, // T > 0: every op sees x / T
    exp_h: f32,       // h of the exponent (see `shifted`; src/scale.rs): 1, 1/2 or 2^64
    neg_inf: f32,     // -inf, +inf, NaN: WGSL has no literal for them
    pos_inf: f32,
    nan: f32,
    // Where the data sit in their bindings (bindings start at 256-byte aligned offsets, so a
    // matrix inside a larger buffer begins a few elements in): x row r starts at element
    // x_base + r * x_stride; y (and lse) row r at y_base + r * cols (y_base + r for lse).
    x_base: u32,
    x_stride: u32,
    y_base: u32,
    exp_c: f32,       // c = kappa * log2(e) / h, kappa = 1/T (or |beta|)
    exp_c_log: f32,   // kappa / h: the same for log-domain outputs
    exp_h2: f32,      // h again: see `shifted`
    zero: u32,        // 0, for `keep`
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// partials: (rows, S, 4) u32 = (bits(m), bits(s), abits, ibits) of each row segment
// (the cross-entropy family uses a stride of 8). Stored as u32 so bits cross memory untouched.
@group(0) @binding(3) var<storage, read_write> partials: array<u32>;

// The online softmax normalizer (Milakov & Gimelshein 2018, arXiv 1805.02867), at temperature T:
// m = running max of the raw values x (LOWEST when none), s = sum of exp((x - m) / T).
// Since max(x / T) = max(x) / T, the exponent is formed from x - m: exact for nearby values,
// whereas x / T in f32 would lose eps*|x/T| before the max is taken off (`shifted` below).
// Then lse_T = T * ln sum exp(x/T) = m + T * ln s.
//
// Non-finite values are not masked out of the sums: a -inf adds exp2(max(-inf, -182)) = 0,
// and NaN / +inf decide the row on their own, through two integer maxima of the bit patterns
// (cheaper per element than compares and selects, which matters on lavapipe):
//   abits = max |bits|            NaN present  <=> abits >  0x7f800000
//   ibits = max bits (as i32)     +inf present <=> ibits >= 0x7f800000 (when no NaN)
// The bits, not the values: the compiler may assume no NaN / inf in float compares.
struct Stats {
    m: f32,
    s: f32,
    abits: u32,
    ibits: i32,
}

fn stats_empty() -> Stats {
    return Stats(LOWEST, 0.0, 0u, i32(-2147483647 - 1));
}

// v itself, opaque to the compiler. lavapipe's compiler reassociates float arithmetic (its
// inexact math allows it; measured: fma(v, h, -m h) - f evaluated as fma(v, h, -m h - f),
// which overflows, and products regrouped into one that overflows), so a value that must be
// formed before anything is added to it or multiplied into it passes through here: an XOR with
// a uniform 0 it cannot see through.
fn keep(v: f32) -> f32 {
    return bitcast<f32>(bitcast<u32>(v) ^ params.zero);
}

fn keep4(v: vec4<f32>) -> vec4<f32> {
    return bitcast<vec4<f32>>(bitcast<vec4<u32>>(v) ^ vec4<u32>(params.zero));
}

// 2^k for an integer k in [-126, 127], exactly (built from the bits; exp2 need not be exact).
fn pow2(k: i32) -> f32 {
    return bitcast<f32>(u32(k + 127) << 23u);
}

// (x - m) * h, formed so that no accepted temperature and no finite row overflows where the
// exact exponent does not (src/scale.rs has the table), by EXP_FORM (compile-time):
//   0  T <= 1: x - m (h = 1): an overflow means the exact exponent is below -f32::MAX too;
//   1  T > 1: fma(x, 1/2, -m/2): x/2 - m/2 cannot overflow;
//   2  T < 1/f32::MAX: (x - m) * 2^64, exact wherever the result is not -inf (kept from being
//      regrouped with c: 2^64 c overflows).
// In form 1 the second h is a second uniform of the same value: given one, lavapipe's compiler
// may factor fma(x, h, -m*h) into (x - m) * h (its inexact float math allows it; measured in
// the surrogates' kernel), which is the overflow this form exists to avoid.
fn shifted(v: f32, m: f32) -> f32 {
    if EXP_FORM == EXP_TINY {
        return keep((v - m) * params.exp_h);
    }
    if EXP_FORM == EXP_HALF {
        return fma(v, params.exp_h, -m * params.exp_h2);
    }
    return v - m;
}

fn shifted4(v: vec4<f32>, m: f32) -> vec4<f32> {
    if EXP_FORM == EXP_TINY {
        return keep4((v - vec4<f32>(m)) * params.exp_h);
    }
    if EXP_FORM == EXP_HALF {
        return fma(v, vec4<f32>(params.exp_h), vec4<f32>(-m * params.exp_h2));
    }
    return v - vec4<f32>(m);
}

// exp((v - m) / T) for v <= m, as exp2(shifted(v, m) * log2(e) / (T h)): GPUs and lavapipe
// evaluate exp(u) as exp2(u * log2(e)) anyway, so log2(e) is folded into c on the host. The
// argument is clamped at -182 (2^-182 is far below the smallest f32) so no kernel ever
// evaluates exp2(-inf), which the finite-math assumption leaves undefined.
fn exp_sub(v: f32, m: f32) -> f32 {
    return exp2(max(shifted(v, m) * params.exp_c, -182.0));
}

fn exp_sub4(v: vec4<f32>, m: f32) -> vec4<f32> {
    return exp2(max(shifted4(v, m) * params.exp_c, vec4<f32>(-182.0)));
}

fn hmax4(v: vec4<f32>) -> f32 {
    return max(max(v.x, v.y), max(v.z, v.w));
}

fn hsum4(v: vec4<f32>) -> f32 {
    return (v.x + v.y) + (v.z + v.w);
}

fn abits4(v: vec4<f32>) -> u32 {
    let a = bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu);
    return max(max(a.x, a.y), max(a.z, a.w));
}

fn ibits4(v: vec4<f32>) -> i32 {
    let b = bitcast<vec4<i32>>(v);
    return max(max(b.x, b.y), max(b.z, b.w));
}

fn finite4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) < vec4<u32>(0x7f800000u);
}

fn has_nan(st: Stats) -> bool {
    return st.abits > 0x7f800000u;
}

fn has_pos_inf(st: Stats) -> bool {
    return st.ibits >= 0x7f800000;
}

// Folds sixteen values into the running stats with one rescale.
// The maxima are taken lane-wise over the four vectors first and across lanes once (6
// operations per sixteen values instead of 15; measurable on lavapipe, where the arithmetic
// around the exp, not the exp, is what this loop pays for).
fn absorb16(st: Stats, v0: vec4<f32>, v1: vec4<f32>, v2: vec4<f32>, v3: vec4<f32>) -> Stats {
    let m = max(st.m, hmax4(max(max(v0, v1), max(v2, v3))));
    let e = (exp_sub4(v0, m) + exp_sub4(v1, m)) + (exp_sub4(v2, m) + exp_sub4(v3, m));
    let mask = vec4<u32>(0x7fffffffu);
    let a = max(max(bitcast<vec4<u32>>(v0) & mask, bitcast<vec4<u32>>(v1) & mask),
                max(bitcast<vec4<u32>>(v2) & mask, bitcast<vec4<u32>>(v3) & mask));
    let b = max(max(bitcast<vec4<i32>>(v0), bitcast<vec4<i32>>(v1)), max(bitcast<vec4<i32>>(v2), bitcast<vec4<i32>>(v3)));
    return Stats(
        m,
        st.s * exp_sub(st.m, m) + hsum4(e),
        max(st.abits, max(max(a.x, a.y), max(a.z, a.w))),
        max(st.ibits, max(max(b.x, b.y), max(b.z, b.w))),
    );
}

// Folds four values.
fn absorb(st: Stats, v: vec4<f32>) -> Stats {
    let m = max(st.m, hmax4(v));
    let s = st.s * exp_sub(st.m, m) + hsum4(exp_sub4(v, m));
    return Stats(m, s, max(st.abits, abits4(v)), max(st.ibits, ibits4(v)));
}

// (m_a, s_a) + (m_b, s_b) = (m, s_a e^{(m_a - m)/T} + s_b e^{(m_b - m)/T}), m = max(m_a, m_b).
fn merge(a: Stats, b: Stats) -> Stats {
    let m = max(a.m, b.m);
    let s = a.s * exp_sub(a.m, m) + b.s * exp_sub(b.m, m);
    return Stats(m, s, max(a.abits, b.abits), max(a.ibits, b.ibits));
}

// A row's normalizer is usable when it saw no NaN, no +inf and at least one finite value.
fn stats_finite(st: Stats) -> bool {
    return !has_nan(st) && !has_pos_inf(st) && (st.s > 0.0);
}

// lse_T = m + T * ln s; NaN wins over +inf wins over "no finite value" (-inf). For T > 1 it
// is T * (m/T + ln s): T * ln s alone can overflow where the sum does not ([-3e38] * 3 at
// T = 3e38 is 0.74e38), and m/T cannot.
fn lse_of(st: Stats) -> f32 {
    if has_nan(st) {
        return params.nan;
    }
    if has_pos_inf(st) {
        return params.pos_inf;
    }
    if st.s <= 0.0 {
        return params.neg_inf;
    }
    let t = params.temperature;
    if t > 1.0 {
        return t * (st.m / t + log(st.s));
    }
    return st.m + t * log(st.s);
}

fn store_partial(row: u32, seg: u32, st: Stats) {
    let i = 4u * (row * params.segs + seg);
    partials[i] = bitcast<u32>(st.m);
    partials[i + 1u] = bitcast<u32>(st.s);
    partials[i + 2u] = st.abits;
    partials[i + 3u] = bitcast<u32>(st.ibits);
}

// After a merge pass stored a row's merged stats in its segment-0 slot.
fn row_merged(row: u32) -> Stats {
    let i = 4u * (row * params.segs);
    return Stats(bitcast<f32>(partials[i]), bitcast<f32>(partials[i + 1u]), partials[i + 2u], bitcast<i32>(partials[i + 3u]));
}

fn row_from_partials(row: u32) -> Stats {
    var st = stats_empty();
    for (var seg = 0u; seg < params.segs; seg++) {
        let i = 4u * (row * params.segs + seg);
        st = merge(st, Stats(bitcast<f32>(partials[i]), bitcast<f32>(partials[i + 1u]), partials[i + 2u], bitcast<i32>(partials[i + 3u])));
    }
    return st;
}

// One work item = one segment of one row, handled by ROW_THREADS consecutive invocations.
// The grid is folded to 2-D (at most 65535 workgroups per dimension): group = y * gx + x.
struct Item {
    row: u32,
    seg: u32,
    lane: u32,  // 0 .. ROW_THREADS
    slot: u32,  // which item of this workgroup
    valid: bool,
}

fn work_item(wid: vec3<u32>, lid: u32) -> Item {
    let group = wid.y * params.groups_x + wid.x;
    let slot = lid / ROW_THREADS;
    let item = group * ROWS_PER_WG + slot;
    let row = item / params.segs;
    return Item(row, item % params.segs, lid % ROW_THREADS, slot, row < params.rows);
}

// vec4 range of an item's segment: [begin, end).
fn seg_begin(it: Item) -> u32 {
    return it.seg * params.seg_len;
}

fn seg_end(it: Item) -> u32 {
    return min(seg_begin(it) + params.seg_len, params.cols_v);
}

var<workgroup> sh_m: array<f32, WG>;
var<workgroup> sh_s: array<f32, WG>;
var<workgroup> sh_a: array<u32, WG>;
var<workgroup> sh_i: array<i32, WG>;

fn sh_put_stats(i: u32, st: Stats) {
    sh_m[i] = st.m;
    sh_s[i] = st.s;
    sh_a[i] = st.abits;
    sh_i[i] = st.ibits;
}

fn sh_get_stats(i: u32) -> Stats {
    return Stats(sh_m[i], sh_s[i], sh_a[i], sh_i[i]);
}

// Stats of an item: each invocation reads a strided share of the segment (consecutive lanes
// read consecutive vec4s), then a shared-memory tree merges the ROW_THREADS partial stats.
// Every invocation of the workgroup must call this (it holds barriers).
fn item_stats(it: Item, lid: u32) -> Stats {
    var st = stats_empty();
    if it.valid {
        let end = seg_end(it);
        var j = seg_begin(it) + it.lane;
        // Four vec4 per step (one rescale per sixteen values), in blocks of SUM_BLOCK steps,
        // then the rest one by one.
        for (; j + 3u * ROW_THREADS < end;) {
            let stop = min(end, j + SUM_BLOCK * 4u * ROW_THREADS);
            var blk = stats_empty();
            for (; j + 3u * ROW_THREADS < stop; j += 4u * ROW_THREADS) {
                blk = absorb16(blk, load4(it.row, j), load4(it.row, j + ROW_THREADS),
                               load4(it.row, j + 2u * ROW_THREADS), load4(it.row, j + 3u * ROW_THREADS));
            }
            st = merge(st, blk);
        }
        for (; j < end; j += ROW_THREADS) {
            st = absorb(st, load4(it.row, j));
        }
    }
    if ROW_THREADS == 1u {
        return st;
    }
    sh_put_stats(lid, st);
    for (var off = ROW_THREADS / 2u; off > 0u; off >>= 1u) {
        workgroupBarrier();
        if it.lane < off {
            sh_put_stats(lid, merge(sh_get_stats(lid), sh_get_stats(lid + off)));
        }
    }
    workgroupBarrier();
    return sh_get_stats(it.slot * ROW_THREADS);
}
