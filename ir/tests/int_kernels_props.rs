//! The fast exact kernels of the integer interpreter (Conv, Gemm, MatMul through
//! `fhec_kernels::exact`) against its element-by-element checked reference
//! (`int_interp::eval_checked`): equal results, and equal refusals, for operands of every
//! size — small ones (f32), ones around 2^24 (where f64 takes over), ones whose sums may
//! reach 2^53 (the checked fallback) and ones that overflow i64 (an error either way).

use fhec_ir::int_interp::{eval, eval_checked, Value};
use fhec_ir::{ConvAttrs, GemmAttrs, Op};
use fhec_testkit::Lcg;
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;

/// Deterministic values in `[-magnitude, magnitude]` from `seed` (the raw LCG from `seed | 1`).
fn values(n: usize, magnitude: i64, seed: u64) -> Vec<i64> {
    let mut rng = Lcg::with_state(seed | 1);
    (0..n)
        .map(|_| {
            let r = (rng.next_u64() >> 1) as i64;
            if magnitude == i64::MAX {
                r
            } else {
                r.rem_euclid(2 * magnitude + 1) - magnitude
            }
        })
        .collect()
}

fn int(shape: &[usize], data: Vec<i64>) -> Value {
    Value::Int(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
}

/// Magnitudes that exercise each path: small, near the 2^53 bound, and overflowing.
fn magnitude() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 1i64..300,
        // Sums around 2^24, where the kernels switch from f32 to f64.
        3 => (1i64 << 9)..(1i64 << 13),
        2 => (1i64 << 20)..(1i64 << 28),
        1 => (1i64 << 28)..(1i64 << 40),
        1 => Just(i64::MAX),
    ]
}

fn same(op: &Op, ins: &[Value], out_shape: &[usize]) -> Result<(), TestCaseError> {
    let refs: Vec<&Value> = ins.iter().collect();
    let fast = eval(op, &refs, out_shape);
    let reference = eval_checked(op, &refs, out_shape);
    match (&fast, &reference) {
        (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        _ => prop_assert!(false, "fast {fast:?}\nreference {reference:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn conv_kernels_equal_the_checked_reference(
        cg in 1usize..4, mg in 1usize..4, group in 1usize..3,
        h in 1usize..9, w in 1usize..9, kh in 1usize..4, kw in 1usize..4,
        stride in 1usize..3, dil in 1usize..3, pad in 0usize..3,
        mx in magnitude(), mw in magnitude(), seed in any::<u64>(),
    ) {
        let (c, m) = (cg * group, mg * group);
        let (eh, ew) = ((kh - 1) * dil + 1, (kw - 1) * dil + 1);
        prop_assume!(h + 2 * pad >= eh && w + 2 * pad >= ew);
        let out = [1, m, (h + 2 * pad - eh) / stride + 1, (w + 2 * pad - ew) / stride + 1];
        let attrs = ConvAttrs {
            strides: vec![stride, stride],
            dilations: vec![dil, dil],
            pads: vec![(pad, pad), (pad, pad)],
            group,
        };
        let ins = [
            int(&[1, c, h, w], values(c * h * w, mx, seed)),
            int(&[m, cg, kh, kw], values(m * cg * kh * kw, mw, seed ^ 1)),
            int(&[m], values(m, mx, seed ^ 2)),
        ];
        same(&Op::Conv(attrs), &ins, &out)?;
    }

    #[test]
    fn gemm_and_matmul_kernels_equal_the_checked_reference(
        rows in 1usize..4, k in 0usize..50, n in 1usize..8, trans_b in any::<bool>(),
        ma in magnitude(), mb in magnitude(), seed in any::<u64>(),
    ) {
        let b_shape = if trans_b { [n, k] } else { [k, n] };
        let gemm = Op::Gemm(GemmAttrs { alpha: 1.0, beta: 1.0, trans_a: false, trans_b });
        let ins = [
            int(&[rows, k], values(rows * k, ma, seed)),
            int(&b_shape, values(k * n, mb, seed ^ 1)),
            int(&[n], values(n, ma, seed ^ 2)),
        ];
        same(&gemm, &ins, &[rows, n])?;
        if !trans_b {
            same(&Op::MatMul, &ins[..2], &[rows, n])?;
        }
    }
}
