//! Integer semantics of the float interpreter: the rule stated in `fhec_ir::interp`'s module
//! doc (truncating division, two's-complement wrap-around, exact within ±(2^24 - 1), refused
//! beyond), checked exhaustively for 8-bit arithmetic and against i64 arithmetic for int32.

use fhec_ir::interp::{self, eval_op, InterpError};
use fhec_ir::{BinaryOp, DType, GemmAttrs, Graph, Op, PoolAttrs, Tensor, TensorFact, UnaryOp};
use fhec_testkit::{tensor as t, Lcg};

fn v(data: &[f32]) -> Tensor {
    t(&[data.len()], data)
}

/// An operand: a typed graph input, or an f32 constant (how the IR holds every constant).
enum Arg {
    In(DType, Tensor),
    Const(Tensor),
}

/// Builds a one-op graph on the operands, checks it and runs it: the output and its fact, or
/// the error (of graph building or of the interpreter) as text.
fn run_op(op: Op, args: Vec<Arg>) -> Result<(Tensor, TensorFact), String> {
    let mut g = Graph::new();
    let mut ids = vec![];
    let mut feeds = vec![];
    for (i, a) in args.into_iter().enumerate() {
        ids.push(match a {
            Arg::In(dtype, x) => {
                let id = g.add_input(format!("x{i}"), TensorFact::new(dtype, x.shape()));
                feeds.push(x);
                id
            }
            Arg::Const(c) => g
                .add_node(format!("c{i}"), Op::Const(c), &[])
                .map_err(|e| e.to_string())?,
        });
    }
    let y = g.add_node("y", op, &ids).map_err(|e| e.to_string())?;
    g.set_outputs(vec![y]);
    g.verify().map_err(|e| e.to_string())?;
    let out = interp::run(&g, &feeds).map_err(|e| e.to_string())?;
    Ok((out[0].clone(), g.node(y).fact.clone()))
}

#[track_caller]
fn ok(op: Op, args: Vec<Arg>, dtype: DType, want: &[f32]) {
    let (y, fact) = run_op(op, args).unwrap();
    assert_eq!(fact.dtype, dtype);
    assert_eq!(y.iter().copied().collect::<Vec<_>>(), want);
}

#[track_caller]
fn err(op: Op, args: Vec<Arg>, needle: &str) {
    let e = run_op(op, args).expect_err("the case must be refused");
    assert!(e.contains(needle), "{e:?} does not mention {needle:?}");
}

fn div() -> Op {
    Op::Binary(BinaryOp::Div)
}

// ---------------------------------------------------------------- truncating division

#[test]
fn integer_div_truncates_toward_zero() {
    // ONNX test_div_int32_trunc and more: -7 / 2 = -3, not -3.5 or floor's -4.
    ok(
        div(),
        vec![
            Arg::In(DType::I8, v(&[-7., 7., -7., 7., -128., 100., 0., -1.])),
            Arg::Const(v(&[2., 2., -2., -2., -1., 3., 5., 2.])),
        ],
        DType::I8,
        // -128 / -1 = 128 wraps to -128, as numpy computes it.
        &[-3., 3., 3., -3., -128., 33., 0., 0.],
    );
    ok(
        div(),
        vec![
            Arg::In(DType::U8, v(&[255., 7., 1.])),
            Arg::Const(v(&[2., 3., 2.])),
        ],
        DType::U8,
        &[127., 2., 0.],
    );
    ok(
        div(),
        vec![
            Arg::In(DType::I32, v(&[-3., 3., -3., 3.])),
            Arg::In(DType::I32, v(&[2., 2., -2., -2.])),
        ],
        DType::I32,
        &[-1., 1., 1., -1.],
    );
}

#[test]
fn constant_dividend_gives_integer_division() {
    // The constant is an f32 node; the integer operand makes the op integer.
    ok(
        div(),
        vec![Arg::Const(v(&[100.])), Arg::In(DType::I8, v(&[3., -7.]))],
        DType::I8,
        &[33., -14.],
    );
}

#[test]
fn float_division_is_untouched() {
    ok(
        div(),
        vec![Arg::In(DType::F32, v(&[-7.])), Arg::Const(v(&[2.]))],
        DType::F32,
        &[-3.5],
    );
}

/// Deterministic pseudo-random integers in `[-m, m]` (bits 11.. of the raw LCG's state).
fn lcg(rng: &mut Lcg, m: i64) -> i64 {
    ((rng.next_u64() >> 11) % (2 * m as u64 + 1)) as i64 - m
}

#[test]
fn int32_division_is_exact_up_to_2_pow_24() {
    const M: i64 = (1 << 24) - 1;
    let mut pairs: Vec<(i64, i64)> = vec![
        (M, 1),
        (M, 2),
        (M, -2),
        (-M, 3),
        (M - 1, M),
        (M, M - 1),
        (1, M),
        (-M, M),
        (M, 4095),
        (M - 2, 8_388_607),
    ];
    let mut rng = Lcg::with_state(7);
    for k in 0..20_000 {
        // Small and large divisors both.
        let m = if k % 2 == 0 { M } else { 1000 };
        let b = lcg(&mut rng, m);
        pairs.push((lcg(&mut rng, M), if b == 0 { 1 } else { b }));
    }
    let a: Vec<f32> = pairs.iter().map(|p| p.0 as f32).collect();
    let b: Vec<f32> = pairs.iter().map(|p| p.1 as f32).collect();
    let want: Vec<f32> = pairs.iter().map(|(a, b)| (a / b) as f32).collect();
    ok(
        div(),
        vec![Arg::In(DType::I32, v(&a)), Arg::In(DType::I32, v(&b))],
        DType::I32,
        &want,
    );
}

#[test]
fn integer_division_by_zero_is_refused() {
    err(
        div(),
        vec![Arg::In(DType::I8, v(&[1., 2.])), Arg::Const(v(&[1., 0.]))],
        "integer division by zero at flat index 1",
    );
    err(
        div(),
        vec![Arg::In(DType::U8, v(&[0.])), Arg::Const(v(&[0.]))],
        "division by zero",
    );
}

// ---------------------------------------------------------------- 8-bit arithmetic, exhaustive

/// Every pair of 8-bit values of the type, as two flat operands.
fn all_pairs(dtype: DType) -> (Vec<i64>, Vec<i64>) {
    let (lo, hi) = dtype.int_range().unwrap();
    let mut a = vec![];
    let mut b = vec![];
    for x in lo..=hi {
        for y in lo..=hi {
            a.push(x);
            b.push(y);
        }
    }
    (a, b)
}

fn check_all_pairs(dtype: DType, op: BinaryOp, f: impl Fn(i64, i64) -> i64) {
    let (mut a, mut b) = all_pairs(dtype);
    if op == BinaryOp::Div {
        let keep: Vec<bool> = b.iter().map(|&y| y != 0).collect();
        let mut k = keep.iter();
        a.retain(|_| *k.next().unwrap());
        b.retain(|&y| y != 0);
    }
    let want: Vec<f32> = a.iter().zip(&b).map(|(&x, &y)| f(x, y) as f32).collect();
    let fa: Vec<f32> = a.iter().map(|&x| x as f32).collect();
    let fb: Vec<f32> = b.iter().map(|&x| x as f32).collect();
    ok(
        Op::Binary(op),
        vec![Arg::In(dtype, v(&fa)), Arg::In(dtype, v(&fb))],
        dtype,
        &want,
    );
}

#[test]
fn int8_arithmetic_matches_wrapping_integers() {
    let w = |r: i64| r as i8 as i64;
    check_all_pairs(DType::I8, BinaryOp::Add, |x, y| w(x + y));
    check_all_pairs(DType::I8, BinaryOp::Sub, |x, y| w(x - y));
    check_all_pairs(DType::I8, BinaryOp::Mul, |x, y| w(x * y));
    check_all_pairs(DType::I8, BinaryOp::Div, |x, y| {
        (x as i8).wrapping_div(y as i8) as i64
    });
}

#[test]
fn uint8_arithmetic_matches_wrapping_integers() {
    let w = |r: i64| r as u8 as i64;
    check_all_pairs(DType::U8, BinaryOp::Add, |x, y| w(x + y));
    check_all_pairs(DType::U8, BinaryOp::Sub, |x, y| w(x - y));
    check_all_pairs(DType::U8, BinaryOp::Mul, |x, y| w(x * y));
    check_all_pairs(DType::U8, BinaryOp::Div, |x, y| x / y);
}

#[test]
fn wrap_around_examples() {
    let add = Op::Binary(BinaryOp::Add);
    ok(
        add.clone(),
        vec![
            Arg::In(DType::I8, v(&[100., -100.])),
            Arg::Const(v(&[100., -100.])),
        ],
        DType::I8,
        &[-56., 56.],
    );
    ok(
        Op::Binary(BinaryOp::Sub),
        vec![Arg::In(DType::U8, v(&[3.])), Arg::Const(v(&[5.]))],
        DType::U8,
        &[254.],
    );
    ok(
        Op::Unary(UnaryOp::Neg),
        vec![Arg::In(DType::I8, v(&[-128., 5.]))],
        DType::I8,
        &[-128., -5.],
    );
    ok(
        Op::Unary(UnaryOp::Neg),
        vec![Arg::In(DType::U8, v(&[0., 1., 255.]))],
        DType::U8,
        &[0., 255., 1.],
    );
}

// ---------------------------------------------------------------- int32/int64 exactness

#[test]
fn wide_integer_results_beyond_2_pow_24_are_refused() {
    let mul = Op::Binary(BinaryOp::Mul);
    ok(
        mul.clone(),
        vec![Arg::In(DType::I32, v(&[4095.])), Arg::Const(v(&[4097.]))],
        DType::I32,
        &[16_777_215.],
    );
    err(
        mul,
        vec![Arg::In(DType::I32, v(&[4096.])), Arg::Const(v(&[4096.]))],
        "beyond 2^24 - 1",
    );
    err(
        Op::Binary(BinaryOp::Add),
        vec![
            Arg::In(DType::I64, v(&[16_777_215.])),
            Arg::In(DType::I64, v(&[1.])),
        ],
        "beyond 2^24 - 1",
    );
}

#[test]
fn integer_inputs_must_be_exact_integers() {
    let id = || Op::Identity;
    ok(
        id(),
        vec![Arg::In(DType::I64, v(&[-16_777_215., 16_777_215.]))],
        DType::I64,
        &[-16_777_215., 16_777_215.],
    );
    err(
        id(),
        vec![Arg::In(DType::I8, v(&[1., 3.5]))],
        "holds 3.5 at flat index 1",
    );
    err(
        id(),
        vec![Arg::In(DType::I8, v(&[128.]))],
        "integers in [-128, 127]",
    );
    err(
        id(),
        vec![Arg::In(DType::U8, v(&[-1.]))],
        "integers in [0, 255]",
    );
    err(
        id(),
        vec![Arg::In(DType::I32, v(&[16_777_216.]))],
        "exact up to 2^24 - 1",
    );
    // The error is typed.
    let mut g = Graph::new();
    let x = g.add_input("x", TensorFact::new(DType::I32, [1]));
    g.set_outputs(vec![x]);
    assert!(matches!(
        interp::run(&g, &[v(&[0.5])]),
        Err(InterpError::NotInteger {
            dtype: DType::I32,
            index: 0,
            ..
        })
    ));
}

// ---------------------------------------------------------------- casts

#[test]
fn cast_between_integer_types_wraps() {
    // ONNX: "discard higher bits and reinterpret", e.g. 200 (int16) -> -56 (int8).
    let x = || Arg::In(DType::I32, v(&[200., 300., -1., -129., 7.]));
    ok(
        Op::Cast { to: DType::I8 },
        vec![x()],
        DType::I8,
        &[-56., 44., -1., 127., 7.],
    );
    ok(
        Op::Cast { to: DType::U8 },
        vec![x()],
        DType::U8,
        &[200., 44., 255., 127., 7.],
    );
    ok(
        Op::Cast { to: DType::I32 },
        vec![Arg::In(DType::U8, v(&[255.]))],
        DType::I32,
        &[255.],
    );
    ok(
        Op::Cast { to: DType::F32 },
        vec![x()],
        DType::F32,
        &[200., 300., -1., -129., 7.],
    );
}

#[test]
fn cast_of_undefined_or_inexact_values_is_refused() {
    let cast = |to: DType, x: &[f32]| {
        let x = v(x);
        eval_op(&Op::Cast { to }, &[&x], &TensorFact::new(to, [x.len()]))
    };
    assert!(cast(DType::I8, &[f32::NAN])
        .unwrap_err()
        .contains("undefined"));
    assert!(cast(DType::U8, &[f32::INFINITY])
        .unwrap_err()
        .contains("undefined"));
    assert!(cast(DType::I32, &[3e7]).unwrap_err().contains("2^24"));
    assert_eq!(
        cast(DType::I32, &[-8_388_607.5]).unwrap(),
        v(&[-8_388_607.])
    );
}

// ---------------------------------------------------------------- which ops take integers

#[test]
fn moving_and_comparing_ops_keep_the_integer_type() {
    let pool = PoolAttrs {
        kernel: vec![2, 2],
        strides: vec![1, 1],
        dilations: vec![1, 1],
        pads: vec![(0, 0), (0, 0)],
        ceil_mode: false,
        count_include_pad: false,
    };
    let x = t(&[1, 1, 2, 3], &[1., 250., 3., 4., 5., 6.]);
    ok(
        Op::MaxPool(pool),
        vec![Arg::In(DType::U8, x)],
        DType::U8,
        &[250., 250.],
    );
    ok(
        Op::Unary(UnaryOp::Relu),
        vec![Arg::In(DType::I8, v(&[-3., 3.]))],
        DType::I8,
        &[0., 3.],
    );
    ok(
        Op::Unary(UnaryOp::Clip {
            min: -2.0,
            max: 100.0,
        }),
        vec![Arg::In(DType::I8, v(&[-3., 3., 127.]))],
        DType::I8,
        &[-2., 3., 100.],
    );
    ok(
        Op::Reshape { shape: vec![2, 1] },
        vec![Arg::In(DType::I64, v(&[-3., 3.]))],
        DType::I64,
        &[-3., 3.],
    );
}

#[test]
fn float_only_ops_refuse_integer_tensors() {
    err(
        Op::Unary(UnaryOp::Sigmoid),
        vec![Arg::In(DType::I8, v(&[1.]))],
        "Sigmoid is evaluated on floats only, and this node has an i8 tensor",
    );
    let gemm = Op::Gemm(GemmAttrs {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
    });
    err(
        gemm,
        vec![
            Arg::In(DType::I32, t(&[1, 2], &[1., 2.])),
            Arg::Const(t(&[2, 1], &[1., 1.])),
        ],
        "Gemm is evaluated on floats only, and this node has an i32 tensor",
    );
    err(
        Op::Softmax { axis: 0 },
        vec![Arg::In(DType::U8, v(&[1.]))],
        "floats only",
    );
}

#[test]
fn operands_of_two_integer_types_are_refused() {
    err(
        Op::Binary(BinaryOp::Add),
        vec![Arg::In(DType::I8, v(&[1.])), Arg::In(DType::U8, v(&[1.]))],
        "different element types i8 and u8",
    );
}
