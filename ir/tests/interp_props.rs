//! Property tests: the interpreter's kernels against independent naive references and
//! algebraic identities.
#![allow(clippy::cloned_ref_to_slice_refs)]

use fhec_ir::interp;
use fhec_ir::{ConvAttrs, Graph, Op, PadMode, PoolAttrs, Tensor, TensorFact};
use fhec_testkit::Lcg;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

/// Deterministic pseudo-random values in [-1, 1) (the raw LCG from `seed`, one step skipped),
/// so shapes and data can be drawn independently.
fn random(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = Lcg::with_state(seed);
    rng.next_u64();
    rng.tensor(shape, -1.0, 1.0)
}

/// Runs a graph whose nodes are added by `build` on inputs with the given values.
fn run_graph(
    inputs: &[Tensor],
    build: impl FnOnce(&mut Graph, &[fhec_ir::NodeId]) -> fhec_ir::NodeId,
) -> Tensor {
    let mut g = Graph::new();
    let ids: Vec<_> = inputs
        .iter()
        .enumerate()
        .map(|(i, x)| g.add_input(format!("x{i}"), TensorFact::f32(x.shape())))
        .collect();
    let y = build(&mut g, &ids);
    g.set_outputs(vec![y]);
    g.verify().unwrap();
    interp::run(&g, inputs).unwrap().remove(0)
}

fn eval(op: Op, inputs: &[Tensor]) -> Tensor {
    run_graph(inputs, |g, ids| g.add_node("y", op, ids).unwrap())
}

fn assert_close(got: &Tensor, want: &Tensor, tol: f32) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), want.shape());
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        prop_assert!(
            g == w || (g.is_nan() && w.is_nan()) || (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {}: got {}, want {}",
            i,
            g,
            w
        );
    }
    Ok(())
}

/// Direct-loop N-D convolution (f64 accumulation), written independently of the kernel.
fn naive_conv(x: &Tensor, w: &Tensor, b: Option<&Tensor>, a: &ConvAttrs) -> Tensor {
    let (xs, ws) = (x.shape(), w.shape());
    let sp = xs.len() - 2;
    let (n, m, cg) = (xs[0], ws[0], ws[1]);
    let mg = m / a.group;
    let outs: Vec<usize> = (0..sp)
        .map(|i| {
            (xs[2 + i] + a.pads[i].0 + a.pads[i].1 - a.dilations[i] * (ws[2 + i] - 1) - 1)
                / a.strides[i]
                + 1
        })
        .collect();
    let mut shape = vec![n, m];
    shape.extend(&outs);
    let mut y = ArrayD::<f32>::zeros(IxDyn(&shape));
    let kshape: Vec<usize> = ws[2..].to_vec();
    let mut yidx = vec![0usize; shape.len()];
    for (flat, v) in y.iter_mut().enumerate() {
        let mut r = flat;
        for d in (0..shape.len()).rev() {
            yidx[d] = r % shape[d];
            r /= shape[d];
        }
        let (ni, mi) = (yidx[0], yidx[1]);
        let g = mi / mg;
        let mut acc = b.map_or(0.0, |b| f64::from(b[[mi]]));
        for ci in 0..cg {
            for kflat in 0..kshape.iter().product::<usize>() {
                let mut kidx = vec![0usize; sp];
                let mut r = kflat;
                for d in (0..sp).rev() {
                    kidx[d] = r % kshape[d];
                    r /= kshape[d];
                }
                let mut xi = vec![ni, g * cg + ci];
                let mut inside = true;
                for d in 0..sp {
                    let p = (yidx[2 + d] * a.strides[d] + kidx[d] * a.dilations[d]) as isize
                        - a.pads[d].0 as isize;
                    if p < 0 || p >= xs[2 + d] as isize {
                        inside = false;
                    }
                    xi.push(p.max(0) as usize);
                }
                if inside {
                    let mut wi = vec![mi, ci];
                    wi.extend(&kidx);
                    acc += f64::from(x[IxDyn(&xi)]) * f64::from(w[IxDyn(&wi)]);
                }
            }
        }
        *v = acc as f32;
    }
    y
}

/// Naive numpy matmul for rank >= 2 operands with broadcast batch axes.
fn naive_matmul(a: &Tensor, b: &Tensor) -> Tensor {
    let (ra, rb) = (a.ndim(), b.ndim());
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let rank = ra.max(rb);
    let pad = |s: &[usize]| {
        let mut v = vec![1; rank - s.len()];
        v.extend_from_slice(s);
        v
    };
    let (sa, sb) = (pad(a.shape()), pad(b.shape()));
    let batch: Vec<usize> = (0..rank - 2).map(|i| sa[i].max(sb[i])).collect();
    let mut shape = batch.clone();
    shape.extend([m, n]);
    let a = a
        .broadcast(IxDyn(&[&sa[..rank - 2], &[m, k]].concat()))
        .unwrap()
        .broadcast(IxDyn(&[&batch[..], &[m, k]].concat()))
        .unwrap()
        .to_owned();
    let b = b
        .broadcast(IxDyn(&[&sb[..rank - 2], &[k, n]].concat()))
        .unwrap()
        .broadcast(IxDyn(&[&batch[..], &[k, n]].concat()))
        .unwrap()
        .to_owned();
    let mut y = ArrayD::<f32>::zeros(IxDyn(&shape));
    let nb: usize = batch.iter().product();
    let a3 = a.into_shape_with_order((nb, m, k)).unwrap();
    let b3 = b.into_shape_with_order((nb, k, n)).unwrap();
    for (bi, mut yb) in y
        .view_mut()
        .into_shape_with_order((nb, m, n))
        .unwrap()
        .outer_iter_mut()
        .enumerate()
    {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for l in 0..k {
                    acc += f64::from(a3[[bi, i, l]]) * f64::from(b3[[bi, l, j]]);
                }
                yb[[i, j]] = acc as f32;
            }
        }
    }
    y
}

/// N-D average/max pooling enumerating every kernel tap of every window (PyTorch's
/// formulation: a tap counts for `count_include_pad` when it lies inside the input or its
/// explicit pads), independent of the kernel.
fn naive_pool(x: &Tensor, p: &PoolAttrs, max: bool, out_shape: &[usize]) -> Tensor {
    let s = x.shape();
    let sp = s.len() - 2;
    let mut y = ArrayD::<f32>::zeros(IxDyn(out_shape));
    let taps: usize = p.kernel.iter().product();
    let mut yidx = vec![0usize; out_shape.len()];
    for (flat, out) in y.iter_mut().enumerate() {
        let mut r = flat;
        for d in (0..out_shape.len()).rev() {
            yidx[d] = r % out_shape[d];
            r /= out_shape[d];
        }
        let mut best = f32::NEG_INFINITY;
        let (mut sum, mut cnt, mut cnt_pad) = (0.0f64, 0usize, 0usize);
        for t in 0..taps {
            let mut r = t;
            let mut xi = vec![yidx[0], yidx[1]];
            let (mut inside, mut inside_pad) = (true, true);
            for d in (0..sp).rev() {
                let k = r % p.kernel[d];
                r /= p.kernel[d];
                let i = (yidx[2 + d] * p.strides[d] + k * p.dilations[d]) as isize
                    - p.pads[d].0 as isize;
                inside &= i >= 0 && i < s[2 + d] as isize;
                inside_pad &= i < (s[2 + d] + p.pads[d].1) as isize;
                xi.insert(2, i.max(0) as usize);
            }
            if inside_pad {
                cnt_pad += 1;
            }
            if inside {
                let v = x[IxDyn(&xi)];
                best = best.max(v);
                sum += f64::from(v);
                cnt += 1;
            }
        }
        *out = if max {
            best
        } else {
            let d = if p.count_include_pad { cnt_pad } else { cnt };
            (sum / d as f64) as f32
        };
    }
    y
}

#[derive(Debug, Clone)]
struct ConvCase {
    n: usize,
    group: usize,
    cg: usize,
    mg: usize,
    spatial: Vec<usize>,
    kernel: Vec<usize>,
    strides: Vec<usize>,
    dilations: Vec<usize>,
    pads: Vec<(usize, usize)>,
    bias: bool,
    seed: u64,
}

fn conv_case(rank: usize, max_group: usize) -> impl Strategy<Value = ConvCase> {
    (
        1usize..=2,
        1usize..=max_group,
        1usize..=3,
        1usize..=3,
        prop::collection::vec(
            (
                1usize..=7,
                1usize..=3,
                1usize..=3,
                1usize..=2,
                0usize..=2,
                0usize..=2,
            ),
            rank,
        ),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(n, group, cg, mg, axes, bias, seed)| ConvCase {
            n,
            group,
            cg,
            mg,
            spatial: axes.iter().map(|a| a.0).collect(),
            kernel: axes.iter().map(|a| a.1).collect(),
            strides: axes.iter().map(|a| a.2).collect(),
            dilations: axes.iter().map(|a| a.3).collect(),
            pads: axes.iter().map(|a| (a.4, a.5)).collect(),
            bias,
            seed,
        })
        .prop_filter("window must fit the padded input", |c| {
            (0..c.spatial.len()).all(|i| {
                c.spatial[i] + c.pads[i].0 + c.pads[i].1 > c.dilations[i] * (c.kernel[i] - 1)
            })
        })
}

fn check_conv(c: &ConvCase) -> Result<(), TestCaseError> {
    let attrs = ConvAttrs {
        strides: c.strides.clone(),
        dilations: c.dilations.clone(),
        pads: c.pads.clone(),
        group: c.group,
    };
    let mut xs = vec![c.n, c.cg * c.group];
    xs.extend(&c.spatial);
    let mut wsh = vec![c.mg * c.group, c.cg];
    wsh.extend(&c.kernel);
    let x = random(&xs, c.seed);
    let w = random(&wsh, c.seed ^ 0x5555);
    let b = random(&[c.mg * c.group], c.seed ^ 0xaaaa);
    let mut ins = vec![x.clone(), w.clone()];
    if c.bias {
        ins.push(b.clone());
    }
    let got = eval(Op::Conv(attrs.clone()), &ins);
    let want = naive_conv(&x, &w, c.bias.then_some(&b), &attrs);
    assert_close(&got, &want, 1e-5)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn conv2d_group1_matches_naive(c in conv_case(2, 1)) {
        check_conv(&c)?;
    }

    #[test]
    fn conv2d_grouped_matches_naive(c in conv_case(2, 3)) {
        check_conv(&c)?;
    }

    #[test]
    fn conv1d_matches_naive(c in conv_case(1, 3)) {
        check_conv(&c)?;
    }

    #[test]
    fn conv3d_matches_naive(c in conv_case(3, 2)) {
        check_conv(&c)?;
    }

    /// Explicit zero padding followed by an unpadded conv equals the padded conv.
    #[test]
    fn pad_then_conv_equals_conv_with_pads(c in conv_case(2, 2)) {
        let attrs = ConvAttrs {
            strides: c.strides.clone(),
            dilations: c.dilations.clone(),
            pads: c.pads.clone(),
            group: c.group,
        };
        let unpadded = ConvAttrs { pads: vec![(0, 0); 2], ..attrs.clone() };
        let mut xs = vec![c.n, c.cg * c.group];
        xs.extend(&c.spatial);
        let mut wsh = vec![c.mg * c.group, c.cg];
        wsh.extend(&c.kernel);
        let x = random(&xs, c.seed);
        let w = random(&wsh, c.seed ^ 0x5555);
        let direct = eval(Op::Conv(attrs), &[x.clone(), w.clone()]);
        let mut pads = vec![(0, 0), (0, 0)];
        pads.extend(&c.pads);
        let two_step = run_graph(&[x, w], |g, ids| {
            let p = g.add_node("p", Op::Pad { pads, mode: PadMode::Constant, value: 0.0 }, &ids[..1]).unwrap();
            g.add_node("c", Op::Conv(unpadded), &[p, ids[1]]).unwrap()
        });
        assert_close(&two_step, &direct, 1e-5)?;
    }

    #[test]
    fn matmul_matches_naive(
        batch_a in prop::collection::vec(prop_oneof![Just(1usize), Just(2), Just(3)], 0..=2),
        batch_b in prop::collection::vec(prop_oneof![Just(1usize), Just(2), Just(3)], 0..=2),
        m in 1usize..=5, k in 0usize..=6, n in 1usize..=5,
        seed in any::<u64>(),
    ) {
        // Make the batch shapes broadcastable: where both have an axis, one of them is 1 or equal.
        let mut batch_b = batch_b;
        let off_a = batch_a.len().saturating_sub(batch_b.len());
        let off_b = batch_b.len().saturating_sub(batch_a.len());
        for i in 0..batch_a.len().min(batch_b.len()) {
            let (da, db) = (batch_a[off_a + i], &mut batch_b[off_b + i]);
            if da != *db && da != 1 {
                *db = 1;
            }
        }
        let a = random(&[&batch_a[..], &[m, k]].concat(), seed);
        let b = random(&[&batch_b[..], &[k, n]].concat(), seed ^ 77);
        let got = eval(Op::MatMul, &[a.clone(), b.clone()]);
        let want = naive_matmul(&a, &b);
        assert_close(&got, &want, 1e-5)?;
    }

    #[test]
    fn matmul_rank1_promotion(k in 1usize..=6, n in 1usize..=4, batch in 1usize..=3, seed in any::<u64>()) {
        let v = random(&[k], seed);
        let b = random(&[batch, k, n], seed ^ 3);
        let got = eval(Op::MatMul, &[v.clone(), b.clone()]);
        let want = naive_matmul(&v.clone().into_shape_with_order(IxDyn(&[1, k])).unwrap(), &b);
        assert_close(&got, &want.into_shape_with_order(IxDyn(&[batch, n])).unwrap(), 1e-5)?;
        let a = random(&[batch, n, k], seed ^ 5);
        let got = eval(Op::MatMul, &[a.clone(), v.clone()]);
        let want = naive_matmul(&a, &v.into_shape_with_order(IxDyn(&[k, 1])).unwrap());
        assert_close(&got, &want.into_shape_with_order(IxDyn(&[batch, n])).unwrap(), 1e-5)?;
    }

    #[test]
    fn transpose_twice_with_inverse_is_identity(
        shape in prop::collection::vec(1usize..=4, 1..=5),
        perm_seed in any::<u64>(),
        seed in any::<u64>(),
    ) {
        let rank = shape.len();
        let mut perm: Vec<usize> = (0..rank).collect();
        let mut s = perm_seed;
        for i in (1..rank).rev() {
            s = s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            perm.swap(i, (s >> 33) as usize % (i + 1));
        }
        let mut inv = vec![0; rank];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        let x = random(&shape, seed);
        let y = run_graph(&[x.clone()], |g, ids| {
            let t = g.add_node("t", Op::Transpose { perm: perm.clone() }, ids).unwrap();
            g.add_node("u", Op::Transpose { perm: inv }, &[t]).unwrap()
        });
        prop_assert_eq!(&y, &x);
        let t = eval(Op::Transpose { perm: perm.clone() }, &[x.clone()]);
        let want = x.view().permuted_axes(IxDyn(&perm)).to_owned();
        prop_assert_eq!(t, want);
    }

    #[test]
    fn pool_matches_naive(
        axes in prop::collection::vec(
            (1usize..=7, 1usize..=3, 1usize..=3, 1usize..=2, 0usize..=1, 0usize..=1),
            1..=3,
        ),
        ceil_mode in any::<bool>(),
        count_include_pad in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let p = PoolAttrs {
            kernel: axes.iter().map(|a| a.1).collect(),
            strides: axes.iter().map(|a| a.2).collect(),
            dilations: axes.iter().map(|a| a.3).collect(),
            pads: axes.iter().map(|a| (a.4, a.5)).collect(),
            ceil_mode,
            count_include_pad,
        };
        let mut shape = vec![2, 2];
        shape.extend(axes.iter().map(|a| a.0));
        let fact = TensorFact::f32(shape);
        let Ok(out) = Op::AveragePool(p.clone()).infer(&[&fact]) else {
            return Ok(()); // window larger than the padded input
        };
        let x = random(&fact.shape, seed);
        let avg = eval(Op::AveragePool(p.clone()), &[x.clone()]);
        assert_close(&avg, &naive_pool(&x, &p, false, &out.shape), 1e-6)?;
        let max = eval(Op::MaxPool(p.clone()), &[x.clone()]);
        assert_close(&max, &naive_pool(&x, &p, true, &out.shape), 0.0)?;
    }

    #[test]
    fn reshape_round_trips(shape in prop::collection::vec(1usize..=4, 1..=4), seed in any::<u64>()) {
        let x = random(&shape, seed);
        let n = x.len();
        let y = run_graph(&[x.clone()], |g, ids| {
            let r = g.add_node("r", Op::Reshape { shape: vec![n] }, ids).unwrap();
            g.add_node("s", Op::Reshape { shape: shape.clone() }, &[r]).unwrap()
        });
        prop_assert_eq!(y, x);
    }

    #[test]
    fn quantize_dequantize_error_is_at_most_half_a_step(
        scale in 0.01f32..1.0,
        zp in -20i32..=20,
        seed in any::<u64>(),
    ) {
        use fhec_ir::{DType, QuantAttrs};
        let x = random(&[64], seed).mapv(|v| v * 100.0 * scale);
        let q = QuantAttrs { axis: None, dtype: DType::I8 };
        let s = ArrayD::from_elem(IxDyn(&[]), scale);
        let z = ArrayD::from_elem(IxDyn(&[]), zp as f32);
        let y = run_graph(&[x.clone(), s, z], |g, ids| {
            let qn = g.add_node("q", Op::QuantizeLinear(q.clone()), ids).unwrap();
            g.add_node("d", Op::DequantizeLinear(q), &[qn, ids[1], ids[2]]).unwrap()
        });
        for (&a, &b) in x.iter().zip(y.iter()) {
            let lo = (-128 - zp) as f32 * scale;
            let hi = (127 - zp) as f32 * scale;
            let want = a.clamp(lo, hi);
            prop_assert!((want - b).abs() <= scale * 0.5 * (1.0 + 1e-5) + 1e-6, "x {} -> {}", a, b);
        }
    }
}
