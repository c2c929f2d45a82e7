// ---- matrix products for the fused linear cross-entropy ---------------------------------
//
// C[M, N] = A[M, K] · B[K, N] (+ bias[col]) (+ C when accumulating), f32 accumulation, with
// each operand at any strides: element (r, c) of A at a_base + r * a_rs + c * a_cs, so a
// transposed operand is the same matrix with its strides swapped. A is `x` and B is `b_in`,
// each f32 or half words (`a_at`, `b_at` come with the header); C, the bias and the sums are
// f32.
//
// One workgroup computes a TM x TN tile of C: 256 invocations in a 16 x 16 grid, each owning
// 4 x 4 outputs (registers), over K in steps of TK staged through workgroup memory (the
// classic shared-memory tiling: each staged element is read by 16 invocations). Out-of-range
// elements are staged as 0, so M, N, K need not be multiples of anything. The K loop adds
// in order 0, 1, ..., K - 1 for every output: the error of a dot product summed in order,
// gamma_K * sum |a b| (Higham, Accuracy and Stability of Numerical Algorithms, 3.1).

struct MParams {
    m: u32,
    n: u32,
    k: u32,
    a_base: u32,
    a_rs: u32,
    a_cs: u32,
    b_base: u32,
    b_rs: u32,
    b_cs: u32,
    c_base: u32,
    c_rs: u32,
    flags: u32,     // MM_ACC, MM_BIAS
    tiles_n: u32,   // tiles along N: the workgroup index is tile_m * tiles_n + tile_n
    bias_base: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(2) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> weight: array<f32>;
@group(0) @binding(6) var<uniform> mm: MParams;

const TM: u32 = 64u;
const TN: u32 = 64u;
const TK: u32 = 16u;

// Staged tiles, k-major: sa[kk * TM + r], sb[kk * TN + c].
var<workgroup> sa: array<f32, 1024>;
var<workgroup> sb: array<f32, 1024>;

@compute @workgroup_size(256)
fn matmul(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tile = wid.y * params.groups_x + wid.x;
    let tm = tile / mm.tiles_n;
    let tn = tile % mm.tiles_n;
    let row0 = tm * TM;
    let col0 = tn * TN;
    let tx = lid % 16u;
    let ty = lid / 16u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < mm.k; k0 += TK) {
        // Stage A[row0 .. row0 + TM, k0 .. k0 + TK] and B[k0 .. k0 + TK, col0 .. col0 + TN],
        // four elements of each per invocation, the contiguous index fastest where one is.
        for (var e = 0u; e < 4u; e++) {
            let i = lid + e * 256u;
            var r: u32;
            var kk: u32;
            if (mm.a_cs == 1u) {
                kk = i % TK;
                r = i / TK;
            } else {
                r = i % TM;
                kk = i / TM;
            }
            let gr = row0 + r;
            let gk = k0 + kk;
            var va = 0.0;
            if (gr < mm.m && gk < mm.k) {
                va = a_at(mm.a_base + gr * mm.a_rs + gk * mm.a_cs);
            }
            sa[kk * TM + r] = va;
            var c: u32;
            var kb: u32;
            if (mm.b_cs == 1u) {
                c = i % TN;
                kb = i / TN;
            } else {
                kb = i % TK;
                c = i / TK;
            }
            let gc = col0 + c;
            let gkb = k0 + kb;
            var vb = 0.0;
            if (gc < mm.n && gkb < mm.k) {
                vb = b_at(mm.b_base + gkb * mm.b_rs + gc * mm.b_cs);
            }
            sb[kb * TN + c] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TK; kk++) {
            let ar = kk * TM + ty * 4u;
            let bc = kk * TN + tx * 4u;
            let b = vec4<f32>(sb[bc], sb[bc + 1u], sb[bc + 2u], sb[bc + 3u]);
            acc0 = fma(vec4<f32>(sa[ar]), b, acc0);
            acc1 = fma(vec4<f32>(sa[ar + 1u]), b, acc1);
            acc2 = fma(vec4<f32>(sa[ar + 2u]), b, acc2);
            acc3 = fma(vec4<f32>(sa[ar + 3u]), b, acc3);
        }
        workgroupBarrier();
    }
    var acc = array<vec4<f32>, 4>(acc0, acc1, acc2, acc3);
    for (var i = 0u; i < 4u; i++) {
        let r = row0 + ty * 4u + i;
        if (r >= mm.m) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let c = col0 + tx * 4u + j;
            if (c >= mm.n) {
                break;
            }
            var v = acc[i][j];
            if ((mm.flags & MM_BIAS) != 0u) {
                v += weight[mm.bias_base + c];
            }
            let at = mm.c_base + r * mm.c_rs + c;
            if ((mm.flags & MM_ACC) != 0u) {
                v += y[at];
            }
            y[at] = v;
        }
    }
}

// The CPU-adapter layout (lavapipe: each invocation is a SIMD lane of a CPU thread, and a
// barrier is a coroutine switch, so the staging above costs more than it saves; the CPU's
// caches are the shared memory). A workgroup of 64 invocations computes CR rows x 256 columns
// of C: invocation `lid` owns columns col0 + lid + 64 j (j < 4), so at each k the workgroup
// reads each of its CR elements of A once (the same address in every lane) and 256 elements
// of B. No barrier, no branch in the K loop: out-of-range rows and columns read a clamped
// in-range element and are never stored.
const CR: u32 = 8u;

@compute @workgroup_size(64)
fn matmul_lanes(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tile = wid.y * params.groups_x + wid.x;
    let tm = tile / mm.tiles_n;
    let tn = tile % mm.tiles_n;
    let row0 = tm * CR;
    let c0 = tn * 256u + lid;
    let last_c = mm.n - 1u;
    let cols = vec4<u32>(min(c0, last_c), min(c0 + 64u, last_c), min(c0 + 128u, last_c),
                         min(c0 + 192u, last_c));
    // (Unrolled by hand: a private array indexed in a loop lives in memory on lavapipe.)
    let lr = mm.m - 1u;
    let ra = vec4<u32>(min(row0, lr), min(row0 + 1u, lr), min(row0 + 2u, lr), min(row0 + 3u, lr));
    let rb = vec4<u32>(min(row0 + 4u, lr), min(row0 + 5u, lr), min(row0 + 6u, lr), min(row0 + 7u, lr));
    let pa = vec4<u32>(mm.a_base) + ra * mm.a_rs;
    let pb = vec4<u32>(mm.a_base) + rb * mm.a_rs;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    let bcol = vec4<u32>(mm.b_base) + cols * mm.b_cs;
    for (var k = 0u; k < mm.k; k++) {
        let bk = bcol + vec4<u32>(k * mm.b_rs);
        let b = vec4<f32>(b_at(bk.x), b_at(bk.y), b_at(bk.z), b_at(bk.w));
        let ka = vec4<u32>(k * mm.a_cs);
        let ia = pa + ka;
        let ib = pb + ka;
        acc0 = fma(vec4<f32>(a_at(ia.x)), b, acc0);
        acc1 = fma(vec4<f32>(a_at(ia.y)), b, acc1);
        acc2 = fma(vec4<f32>(a_at(ia.z)), b, acc2);
        acc3 = fma(vec4<f32>(a_at(ia.w)), b, acc3);
        acc4 = fma(vec4<f32>(a_at(ib.x)), b, acc4);
        acc5 = fma(vec4<f32>(a_at(ib.y)), b, acc5);
        acc6 = fma(vec4<f32>(a_at(ib.z)), b, acc6);
        acc7 = fma(vec4<f32>(a_at(ib.w)), b, acc7);
    }
    var acc = array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    store_block(row0, c0, 64u, acc);
}

// Stores a CPU-layout block: rows row0 .. row0 + CR, columns c0 + cstep j (j < 4), with the
// bias and the accumulation the flags ask for.
fn store_block(row0: u32, c0: u32, cstep: u32, acc: array<vec4<f32>, 8>) {
    var a = acc;
    for (var i = 0u; i < CR; i++) {
        let r = row0 + i;
        if (r >= mm.m) {
            break;
        }
        for (var j = 0u; j < 4u; j++) {
            let c = c0 + cstep * j;
            if (c >= mm.n) {
                break;
            }
            var v = a[i][j];
            if ((mm.flags & MM_BIAS) != 0u) {
                v += weight[mm.bias_base + c];
            }
            let at = mm.c_base + r * mm.c_rs + c;
            if ((mm.flags & MM_ACC) != 0u) {
                v += y[at];
            }
            y[at] = v;
        }
    }
}

// The CPU-adapter layout when both operands run along K in memory (a_cs = b_rs = 1, every
// row start and K multiples of 4: the logits H·W_t^T): the same tile as `matmul_lanes`, each
// load four consecutive k (vec4 bindings), each output a sum of 4-term dot products. Storage
// loads are per-lane loops on lavapipe, so a quarter of the loads is most of the gain.
@compute @workgroup_size(64)
fn matmul_dot(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tile = wid.y * params.groups_x + wid.x;
    let tm = tile / mm.tiles_n;
    let tn = tile % mm.tiles_n;
    let row0 = tm * CR;
    let c0 = tn * 256u + lid;
    let last_c = mm.n - 1u;
    let cols = vec4<u32>(min(c0, last_c), min(c0 + 64u, last_c), min(c0 + 128u, last_c),
                         min(c0 + 192u, last_c));
    let lr = mm.m - 1u;
    let ra = vec4<u32>(min(row0, lr), min(row0 + 1u, lr), min(row0 + 2u, lr), min(row0 + 3u, lr));
    let rb = vec4<u32>(min(row0 + 4u, lr), min(row0 + 5u, lr), min(row0 + 6u, lr), min(row0 + 7u, lr));
    let pa = (vec4<u32>(mm.a_base) + ra * mm.a_rs) / 4u;
    let pb = (vec4<u32>(mm.a_base) + rb * mm.a_rs) / 4u;
    let pc = (vec4<u32>(mm.b_base) + cols * mm.b_cs) / 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var q = 0u; q < mm.k / 4u; q++) {
        let b0 = b4_at(pc.x + q);
        let b1 = b4_at(pc.y + q);
        let b2 = b4_at(pc.z + q);
        let b3 = b4_at(pc.w + q);
        var a = a4_at(pa.x + q);
        acc0 += vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
        a = a4_at(pa.y + q);
        acc1 += vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
        a = a4_at(pa.z + q);
        acc2 += vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
        a = a4_at(pa.w + q);
        acc3 += vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
        a = a4_at(pb.x + q);
        acc4 += vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
        a = a4_at(pb.y + q);
        acc5 += vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
        a = a4_at(pb.z + q);
        acc6 += vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
        a = a4_at(pb.w + q);
        acc7 += vec4<f32>(dot(a, b0), dot(a, b1), dot(a, b2), dot(a, b3));
    }
    var acc = array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    store_block(row0, c0, 64u, acc);
}

// The CPU-adapter layout when B runs along N in memory (b_cs = 1) and A along K (a_cs = 1:
// `matmul_nn`, dH = G·W_t) or along M (a_rs = 1: `matmul_tn`, dW_t = G^T·H), row starts and
// the strides across them multiples of 4: invocation `lid` owns the 4 consecutive columns
// col0 + 4 lid .. + 4 (one vec4 of B per k), the workgroup CR rows. Per four k: 8 + 4 loads
// (nn) or 3 per k (tn) for 128 multiply-adds, against 48 in `matmul_lanes`.
@compute @workgroup_size(64)
fn matmul_nn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tile = wid.y * params.groups_x + wid.x;
    let tm = tile / mm.tiles_n;
    let tn = tile % mm.tiles_n;
    let row0 = tm * CR;
    let c0 = tn * 256u + 4u * lid;
    let lr = mm.m - 1u;
    let ra = vec4<u32>(min(row0, lr), min(row0 + 1u, lr), min(row0 + 2u, lr), min(row0 + 3u, lr));
    let rb = vec4<u32>(min(row0 + 4u, lr), min(row0 + 5u, lr), min(row0 + 6u, lr), min(row0 + 7u, lr));
    let pa = (vec4<u32>(mm.a_base) + ra * mm.a_rs) / 4u;
    let pb = (vec4<u32>(mm.a_base) + rb * mm.a_rs) / 4u;
    // (Columns past N read the next elements in the binding, or a clamped one: never stored.)
    let pc = (mm.b_base + c0) / 4u;
    let step = mm.b_rs / 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var q = 0u; q < mm.k / 4u; q++) {
        let kb = pc + 4u * q * step;
        let b0 = b4_at(kb);
        let b1 = b4_at(kb + step);
        let b2 = b4_at(kb + 2u * step);
        let b3 = b4_at(kb + 3u * step);
        var a = a4_at(pa.x + q);
        acc0 = fma(vec4<f32>(a.x), b0, fma(vec4<f32>(a.y), b1, fma(vec4<f32>(a.z), b2, fma(vec4<f32>(a.w), b3, acc0))));
        a = a4_at(pa.y + q);
        acc1 = fma(vec4<f32>(a.x), b0, fma(vec4<f32>(a.y), b1, fma(vec4<f32>(a.z), b2, fma(vec4<f32>(a.w), b3, acc1))));
        a = a4_at(pa.z + q);
        acc2 = fma(vec4<f32>(a.x), b0, fma(vec4<f32>(a.y), b1, fma(vec4<f32>(a.z), b2, fma(vec4<f32>(a.w), b3, acc2))));
        a = a4_at(pa.w + q);
        acc3 = fma(vec4<f32>(a.x), b0, fma(vec4<f32>(a.y), b1, fma(vec4<f32>(a.z), b2, fma(vec4<f32>(a.w), b3, acc3))));
        a = a4_at(pb.x + q);
        acc4 = fma(vec4<f32>(a.x), b0, fma(vec4<f32>(a.y), b1, fma(vec4<f32>(a.z), b2, fma(vec4<f32>(a.w), b3, acc4))));
        a = a4_at(pb.y + q);
        acc5 = fma(vec4<f32>(a.x), b0, fma(vec4<f32>(a.y), b1, fma(vec4<f32>(a.z), b2, fma(vec4<f32>(a.w), b3, acc5))));
        a = a4_at(pb.z + q);
        acc6 = fma(vec4<f32>(a.x), b0, fma(vec4<f32>(a.y), b1, fma(vec4<f32>(a.z), b2, fma(vec4<f32>(a.w), b3, acc6))));
        a = a4_at(pb.w + q);
        acc7 = fma(vec4<f32>(a.x), b0, fma(vec4<f32>(a.y), b1, fma(vec4<f32>(a.z), b2, fma(vec4<f32>(a.w), b3, acc7))));
    }
    var acc = array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    store_block(row0, c0, 1u, acc);
}

@compute @workgroup_size(64)
fn matmul_tn(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let tile = wid.y * params.groups_x + wid.x;
    let tm = tile / mm.tiles_n;
    let tn = tile % mm.tiles_n;
    let row0 = tm * CR;
    let c0 = tn * 256u + 4u * lid;
    // A's CR rows at column k are two vec4 along M (rows past M read neighbours: not stored).
    let pa = (mm.a_base + row0) / 4u;
    let astep = mm.a_cs / 4u;
    let pc = (mm.b_base + c0) / 4u;
    let bstep = mm.b_rs / 4u;
    var acc0 = vec4<f32>(0.0);
    var acc1 = vec4<f32>(0.0);
    var acc2 = vec4<f32>(0.0);
    var acc3 = vec4<f32>(0.0);
    var acc4 = vec4<f32>(0.0);
    var acc5 = vec4<f32>(0.0);
    var acc6 = vec4<f32>(0.0);
    var acc7 = vec4<f32>(0.0);
    for (var k = 0u; k < mm.k; k++) {
        let b = b4_at(pc + k * bstep);
        let lo = a4_at(pa + k * astep);
        let hi = a4_at(pa + k * astep + 1u);
        acc0 = fma(vec4<f32>(lo.x), b, acc0);
        acc1 = fma(vec4<f32>(lo.y), b, acc1);
        acc2 = fma(vec4<f32>(lo.z), b, acc2);
        acc3 = fma(vec4<f32>(lo.w), b, acc3);
        acc4 = fma(vec4<f32>(hi.x), b, acc4);
        acc5 = fma(vec4<f32>(hi.y), b, acc5);
        acc6 = fma(vec4<f32>(hi.z), b, acc6);
        acc7 = fma(vec4<f32>(hi.w), b, acc7);
    }
    var acc = array<vec4<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    store_block(row0, c0, 1u, acc);
}

// Column sums of A: y[c_base + c] (+)= sum over the M rows of A[r, c], in row order, one
// invocation per column (the bias gradient: N is one tile of classes, M the rows).
@compute @workgroup_size(256)
fn col_sums(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let c = (wid.y * params.groups_x + wid.x) * 256u + lid;
    if (c >= mm.n) {
        return;
    }
    var s = 0.0;
    for (var r = 0u; r < mm.m; r++) {
        s += a_at(mm.a_base + r * mm.a_rs + c * mm.a_cs);
    }
    let at = mm.c_base + c;
    if ((mm.flags & MM_ACC) != 0u) {
        s += y[at];
    }
    y[at] = s;
}
