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

const WG: u32 = 256u;
const ROWS_PER_WG: u32 = WG / ROW_THREADS;
const LOWEST: f32 = -3.40282347e38;
const FLAG_NAN: u32 = 1u;
const FLAG_POS_INF: u32 = 2u;

struct Params {
    rows: u32,        // rows in this chunk
    cols: u32,        // C, in scalars
    cols_v: u32,      // C in vec4 units: ceil(C / 4)
    segs: u32,        // segments per row, S >= 1 (S > 1: several workgroups per row)
    seg_len: u32,     // vec4 units per segment
    groups_x: u32,    // workgroups along x of the folded 2-D grid
    temperature: f32, // T > 0: every op sees x / T
    inv_temperature: f32, // 1 / T
    neg_inf: f32,     // -inf, +inf, NaN: WGSL has no literal for them
    pos_inf: f32,
    nan: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
// partials: (rows, S, 4) u32 = (bits(m), bits(s), flags, unused) of each row segment.
// Stored as u32 so the flag word and the float bits cross memory untouched.
@group(0) @binding(3) var<storage, read_write> partials: array<u32>;

// The online softmax normalizer (Milakov & Gimelshein 2018, arXiv 1805.02867), at temperature T:
// m = running max of the finite raw values x (LOWEST when none), s = sum of exp((x - m) / T),
// flags = NaN / +inf seen. Invariant: m and s are finite, s >= 0.
// Since max(x / T) = max(x) / T, the exponent is formed as (x - m) * (1/T): x - m is exact
// for nearby values, whereas x / T in f32 would lose eps*|x/T| before the max is taken off.
// Then lse_T = T * ln sum exp(x/T) = m + T * ln s.
struct Stats {
    m: f32,
    s: f32,
    flags: u32,
}

fn stats_empty() -> Stats {
    return Stats(LOWEST, 0.0, 0u);
}

// exp((d) / T) for d <= 0. The argument is clamped at -126 (e^-126 is far below the smallest
// f32) so no kernel ever evaluates exp(-inf), which the finite-math assumption leaves undefined.
fn exp_t(d: f32) -> f32 {
    return exp(max(d * params.inv_temperature, -126.0));
}

fn exp_t4(d: vec4<f32>) -> vec4<f32> {
    return exp(max(d * params.inv_temperature, vec4<f32>(-126.0)));
}

fn finite4(v: vec4<f32>) -> vec4<bool> {
    return (bitcast<vec4<u32>>(v) & vec4<u32>(0x7fffffffu)) < vec4<u32>(0x7f800000u);
}

fn flags4(v: vec4<f32>) -> u32 {
    let b = bitcast<vec4<u32>>(v);
    let a = b & vec4<u32>(0x7fffffffu);
    return select(0u, FLAG_NAN, any(a > vec4<u32>(0x7f800000u)))
         | select(0u, FLAG_POS_INF, any(b == vec4<u32>(0x7f800000u)));
}

// Folds four values into the running stats: one rescale per vec4, not per element.
// Non-finite lanes are masked out of both max and sum (-inf contributes exactly 0).
fn absorb(st: Stats, v: vec4<f32>) -> Stats {
    let fin = finite4(v);
    let xs = select(vec4<f32>(LOWEST), v, fin);
    let m = max(st.m, max(max(xs.x, xs.y), max(xs.z, xs.w)));
    let e = select(vec4<f32>(0.0), exp_t4(xs - vec4<f32>(m)), fin);
    return Stats(m, st.s * exp_t(st.m - m) + ((e.x + e.y) + (e.z + e.w)), st.flags | flags4(v));
}

// (m_a, s_a) + (m_b, s_b) = (m, s_a e^{(m_a - m)/T} + s_b e^{(m_b - m)/T}), m = max(m_a, m_b).
// Both exponents are <= 0 (and clamped), so the merge never makes a NaN.
fn merge(a: Stats, b: Stats) -> Stats {
    let m = max(a.m, b.m);
    return Stats(m, a.s * exp_t(a.m - m) + b.s * exp_t(b.m - m), a.flags | b.flags);
}

// A row's normalizer is usable when it saw no NaN, no +inf and at least one finite value.
fn stats_finite(st: Stats) -> bool {
    return (st.flags == 0u) && (st.s > 0.0);
}

fn store_partial(row: u32, seg: u32, st: Stats) {
    let i = 4u * (row * params.segs + seg);
    partials[i] = bitcast<u32>(st.m);
    partials[i + 1u] = bitcast<u32>(st.s);
    partials[i + 2u] = st.flags;
}

fn row_from_partials(row: u32) -> Stats {
    var st = stats_empty();
    for (var seg = 0u; seg < params.segs; seg++) {
        let i = 4u * (row * params.segs + seg);
        st = merge(st, Stats(bitcast<f32>(partials[i]), bitcast<f32>(partials[i + 1u]), partials[i + 2u]));
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
var<workgroup> sh_f: array<u32, WG>;

// Stats of an item: each invocation reads a strided share of the segment (consecutive lanes
// read consecutive vec4s), then a shared-memory tree merges the ROW_THREADS partial stats.
// Every invocation of the workgroup must call this (it holds barriers).
fn item_stats(it: Item, lid: u32) -> Stats {
    var st = stats_empty();
    if it.valid {
        let end = seg_end(it);
        for (var j = seg_begin(it) + it.lane; j < end; j += ROW_THREADS) {
            st = absorb(st, load4(it.row, j));
        }
    }
    if ROW_THREADS == 1u {
        return st;
    }
    sh_m[lid] = st.m;
    sh_s[lid] = st.s;
    sh_f[lid] = st.flags;
    for (var off = ROW_THREADS / 2u; off > 0u; off >>= 1u) {
        workgroupBarrier();
        if it.lane < off {
            let a = Stats(sh_m[lid], sh_s[lid], sh_f[lid]);
            let b = Stats(sh_m[lid + off], sh_s[lid + off], sh_f[lid + off]);
            let c = merge(a, b);
            sh_m[lid] = c.m;
            sh_s[lid] = c.s;
            sh_f[lid] = c.flags;
        }
    }
    workgroupBarrier();
    let head = it.slot * ROW_THREADS;
    return Stats(sh_m[head], sh_s[head], sh_f[head]);
}
