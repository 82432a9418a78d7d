//! Tensor kernels shared by the float interpreter, the integer interpreter and the runtime's
//! plain-integer engines (clear and simulation), so that all of them compute a convolution or
//! a matrix product the same way, and fast.
//!
//! - [`conv`]: N-D convolution (im2col + matrix multiply) over `f32`/`f64`, on row-major slices.
//! - [`exact`]: the same products over `i64`, run in `f64` when a bound proves that every
//!   partial sum is an integer below 2^53 (so the float result is exact whatever the
//!   summation order); `None` when it cannot be proven, and the caller keeps its checked path.
//! - [`quant`]: the element-level quantisation semantics (client quantisation, the bootstrap's
//!   negacyclic table read), one definition for the interpreter and the runtime.
//! - [`softmax`]: softmax along an axis (the interpreter's op and the client's
//!   post-processing).

pub mod conv;
pub mod exact;
pub mod quant;
pub mod softmax;

pub use conv::{conv, ConvShape};

/// Element types the kernels run on.
pub trait Scalar: ndarray::LinalgScalar + Send + Sync {}

impl Scalar for f32 {}
impl Scalar for f64 {}
