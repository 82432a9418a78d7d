//! The generic executor: runs a [`Program`] on any [`Engine`]. The structural validation that
//! makes a loaded circuit safe to execute is in [`crate::validate`], the client-side
//! (de)quantisation in [`crate::client`] (re-exported here).
//!
//! Instructions run in order; each tensor is a row-major `Vec` of engine elements and is
//! dropped as soon as its last consumer ran (ciphertext tensors of a CNN are large). Linear
//! instructions are parallel over output elements with rayon, because one FHE element is a
//! ciphertext of thousands of words. Table lookups are handed to the engine as one batch per
//! instruction (one per tree level for max pooling), so the engine parallelises bootstraps.
//!
//! Semantics match `ir::int_interp` exactly: windows visit kernel positions in row-major
//! order, padded positions contribute nothing, `Dense` is a product over the last axis.

use std::ops::Range;

use ndarray::{ArrayD, ArrayView2, ArrayViewD, IxDyn};
use rayon::prelude::*;

use crate::circuit::{Instruction, IntTensor, Lut, Program, ValueInfo, Window};
use crate::engine::Engine;
use crate::error::RuntimeError;

pub use crate::client::{dequantize_outputs, quantize_inputs};

/// Runs `program` on `engine` and returns the tensors of `program.outputs` in order.
///
/// `inputs[k]` is the tensor of `program.inputs[k]` and must have exactly its shape. The
/// program is validated first, so a hostile program yields an error rather than a panic.
pub fn execute<E: Engine>(
    program: &Program,
    engine: &E,
    inputs: Vec<ArrayD<E::Ct>>,
) -> Result<Vec<ArrayD<E::Ct>>, RuntimeError> {
    execute_observed(program, engine, inputs, |_, _| {})
}

/// The elements of `a` in row-major order, moved out of the array without a copy when it
/// is laid out so (iterating an `IxDyn` array element by element is slow).
fn row_major_vec<T: Clone>(a: ArrayD<T>) -> Vec<T> {
    if !a.is_standard_layout() {
        return a.iter().cloned().collect();
    }
    let len = a.len();
    let (mut data, offset) = a.into_raw_vec_and_offset();
    data.drain(..offset.unwrap_or(0).min(data.len()));
    data.truncate(len);
    data
}

/// Integer outputs of a plain-integer engine as decryption would read them
/// ([`crate::circuit::ValueInfo::decoded`]): the clear and simulation engines reproduce the
/// circuit's wrap-around even after a lookup read outside its table's domain.
pub fn decoded_outputs(program: &Program, outputs: Vec<ArrayD<i64>>) -> Vec<ArrayD<i64>> {
    outputs
        .into_iter()
        .zip(&program.outputs)
        .map(|(a, spec)| match program.values.get(spec.value) {
            Some(info) => a.mapv(|v| info.decoded(v)),
            None => a,
        })
        .collect()
}

/// [`execute`], calling `before(i, instruction)` before each instruction runs: engines that
/// record per-instruction facts (the FHE noise trace) learn which instruction a lookup
/// batch belongs to.
pub fn execute_observed<E: Engine>(
    program: &Program,
    engine: &E,
    inputs: Vec<ArrayD<E::Ct>>,
    mut before: impl FnMut(usize, &Instruction),
) -> Result<Vec<ArrayD<E::Ct>>, RuntimeError> {
    program.validate()?;
    crate::client::check_input_shapes(program, inputs.iter().map(|a| a.shape()))?;

    // Input tensors in row-major order, moved (not cloned) out of the arrays.
    let mut input_data: Vec<Option<Vec<E::Ct>>> =
        inputs.into_iter().map(|a| Some(row_major_vec(a))).collect();
    let mut input_uses = vec![0usize; program.inputs.len()];
    for ins in &program.instructions {
        if let Instruction::Input { index } = ins {
            input_uses[*index] += 1;
        }
    }

    let last_use = last_uses(program);
    let mut values: Vec<Option<Vec<E::Ct>>> = Vec::with_capacity(program.instructions.len());
    for (i, ins) in program.instructions.iter().enumerate() {
        before(i, ins);
        let out = if let Instruction::Input { index } = ins {
            input_uses[*index] -= 1;
            let taken = if input_uses[*index] == 0 {
                input_data[*index].take()
            } else {
                input_data[*index].clone()
            };
            taken.ok_or_else(|| internal(i, ins, "input tensor already consumed"))?
        } else {
            let mut ctx = Ctx {
                program,
                engine,
                values: &mut values,
                last_use: &last_use,
                index: i,
                ins,
            };
            ctx.run()?
        };
        if out.len() != program.values[i].len() {
            return Err(internal(
                i,
                ins,
                &format!(
                    "produced {} elements for shape {:?}",
                    out.len(),
                    program.values[i].shape
                ),
            ));
        }
        // A value nobody reads is dropped at once.
        values.push((last_use[i] != i).then_some(out));
        // Free every operand whose last consumer was this instruction.
        for v in ins.operands() {
            if last_use[v] == i {
                values[v] = None;
            }
        }
    }

    let mut output_uses = vec![0usize; values.len()];
    for o in &program.outputs {
        output_uses[o.value] += 1;
    }
    program
        .outputs
        .iter()
        .map(|o| {
            output_uses[o.value] -= 1;
            let data = if output_uses[o.value] == 0 {
                values[o.value].take()
            } else {
                values[o.value].clone()
            }
            .ok_or_else(|| {
                RuntimeError::Mismatch(format!("output '{}' was freed early", o.name))
            })?;
            ArrayD::from_shape_vec(IxDyn(&program.values[o.value].shape), data)
                .map_err(|e| RuntimeError::Mismatch(format!("output '{}': {e}", o.name)))
        })
        .collect()
}

/// For each value, the index of the last instruction reading it (`usize::MAX` for outputs,
/// which must survive to the end; the value's own index when nothing reads it).
fn last_uses(program: &Program) -> Vec<usize> {
    let mut last: Vec<usize> = (0..program.instructions.len()).collect();
    for (i, ins) in program.instructions.iter().enumerate() {
        for v in ins.operands() {
            last[v] = i;
        }
    }
    for o in &program.outputs {
        last[o.value] = usize::MAX;
    }
    last
}

fn internal(i: usize, ins: &Instruction, message: &str) -> RuntimeError {
    RuntimeError::Execution {
        instruction: i,
        op: ins.name(),
        message: message.to_string(),
    }
}

/// Execution state for one instruction.
struct Ctx<'a, E: Engine> {
    program: &'a Program,
    engine: &'a E,
    values: &'a mut Vec<Option<Vec<E::Ct>>>,
    last_use: &'a [usize],
    index: usize,
    ins: &'a Instruction,
}

impl<E: Engine> Ctx<'_, E> {
    fn info(&self, v: usize) -> &ValueInfo {
        &self.program.values[v]
    }

    fn out_info(&self) -> &ValueInfo {
        &self.program.values[self.index]
    }

    fn get(&self, v: usize) -> Result<&[E::Ct], RuntimeError> {
        self.values[v]
            .as_deref()
            .ok_or_else(|| internal(self.index, self.ins, "operand was freed early"))
    }

    /// The operand's data, moved out when this instruction is its last reader.
    fn take(&mut self, v: usize) -> Result<Vec<E::Ct>, RuntimeError> {
        if self.last_use[v] == self.index {
            self.values[v]
                .take()
                .ok_or_else(|| internal(self.index, self.ins, "operand was freed early"))
        } else {
            Ok(self.get(v)?.to_vec())
        }
    }

    fn wrap(&self, e: RuntimeError) -> RuntimeError {
        match e {
            RuntimeError::Execution { .. } | RuntimeError::InvalidCircuit { .. } => e,
            other => RuntimeError::Execution {
                instruction: self.index,
                op: self.ins.name(),
                message: other.to_string(),
            },
        }
    }

    /// A dense layer on the exact integer kernel, for plain-integer engines when its bound
    /// holds (`None`: run element by element).
    fn plain_dense(
        &self,
        input: usize,
        weights: &[i64],
        (in_features, out_features): (usize, usize),
        bias: &[i64],
    ) -> Result<Option<Vec<E::Ct>>, RuntimeError> {
        let Some(x) = self.engine.as_plain(self.get(input)?) else {
            return Ok(None);
        };
        let shape_error = |e: ndarray::ShapeError| internal(self.index, self.ins, &e.to_string());
        let rows = x.len() / in_features.max(1);
        let a = ArrayView2::from_shape((rows, in_features), x).map_err(shape_error)?;
        let w =
            ArrayView2::from_shape((out_features, in_features), weights).map_err(shape_error)?;
        let Some(out) = fhec_kernels::exact::matmul_exact(&a, &w.t()) else {
            return Ok(None);
        };
        let mut out = out.into_raw_vec_and_offset().0;
        for row in out.chunks_mut(out_features.max(1)) {
            for (o, &b) in row.iter_mut().zip(bias) {
                *o = o.wrapping_add(b);
            }
        }
        Ok(self.engine.wrap_plain(out))
    }

    /// A convolution on the exact integer kernel (see [`Ctx::plain_dense`]).
    fn plain_conv(
        &self,
        input: usize,
        weights: &[i64],
        weight_shape: &[usize],
        bias: &[i64],
        window: &Window,
        group: usize,
    ) -> Result<Option<Vec<E::Ct>>, RuntimeError> {
        let Some(x) = self.engine.as_plain(self.get(input)?) else {
            return Ok(None);
        };
        let shape = fhec_kernels::ConvShape {
            input: &self.info(input).shape,
            weight: weight_shape,
            output: &self.out_info().shape,
            strides: &window.strides,
            dilations: &window.dilations,
            pads: &window.pads,
            group,
        };
        let out = fhec_kernels::exact::conv_exact(&shape, x, weights, Some(bias))
            .map_err(|e: String| internal(self.index, self.ins, &e))?;
        Ok(out.and_then(|o| self.engine.wrap_plain(o)))
    }

    fn run(&mut self) -> Result<Vec<E::Ct>, RuntimeError> {
        let ins = self.ins;
        match ins {
            Instruction::Input { .. } => Err(internal(self.index, self.ins, "unreachable")),
            Instruction::Dense {
                input,
                weights,
                in_features,
                out_features,
                bias,
            } => self.dense(*input, weights, (*in_features, *out_features), bias),
            Instruction::Conv {
                input,
                weights,
                weight_shape,
                bias,
                window,
                group,
            } => self.conv(*input, weights, weight_shape, bias, window, *group),
            Instruction::SumPool { input, window } => self.sum_pool(*input, window),
            Instruction::MaxPool {
                input,
                window,
                relu,
            } => self.max_pool(*input, window, relu),
            Instruction::Add { a, b } => self.add_sub(*a, *b, false),
            Instruction::Sub { a, b } => self.add_sub(*a, *b, true),
            Instruction::AddConst { input, constant } => self.with_constant(*input, constant, true),
            Instruction::MulConst { input, constant } => {
                self.with_constant(*input, constant, false)
            }
            Instruction::Reshape { input } => self.take(*input),
            Instruction::Rescale { input, shift } => self.rescale(*input, *shift),
            Instruction::Transpose { input, perm } => self.transpose(*input, perm),
            Instruction::Pad { input, pads, value } => self.pad(*input, pads, *value),
            Instruction::Concat { inputs, axis } => self.concat(inputs, *axis),
            Instruction::Tlu { input, lut } => self.tlu(*input, lut),
        }
    }

    /// `Dense`: on the exact integer kernel when the engine allows, else one multiply-add
    /// chain per output element.
    fn dense(
        &self,
        input: usize,
        weights: &[i64],
        (nin, nout): (usize, usize),
        bias: &[i64],
    ) -> Result<Vec<E::Ct>, RuntimeError> {
        if let Some(out) = self.plain_dense(input, weights, (nin, nout), bias)? {
            return Ok(out);
        }
        let engine = self.engine;
        let delta = self.out_info().delta_log2;
        let x = self.get(input)?;
        let n = self.out_info().len();
        Ok((0..n)
            .into_par_iter()
            .map(|j| {
                let (r, o) = (j / nout, j % nout);
                let mut acc = engine.trivial(bias[o], delta);
                let row = &x[r * nin..(r + 1) * nin];
                let w = &weights[o * nin..(o + 1) * nin];
                for (xi, &wi) in row.iter().zip(w) {
                    if wi != 0 {
                        engine.mul_add_assign(&mut acc, xi, wi);
                    }
                }
                acc
            })
            .collect())
    }

    /// `Conv`: on the exact integer kernel when the engine allows, else one multiply-add
    /// chain per output element over its window's taps.
    fn conv(
        &self,
        input: usize,
        weights: &[i64],
        weight_shape: &[usize],
        bias: &[i64],
        window: &Window,
        group: usize,
    ) -> Result<Vec<E::Ct>, RuntimeError> {
        if let Some(out) = self.plain_conv(input, weights, weight_shape, bias, window, group)? {
            return Ok(out);
        }
        let engine = self.engine;
        let delta = self.out_info().delta_log2;
        let x = self.get(input)?;
        let geo = Geometry::new(&self.info(input).shape, &self.out_info().shape);
        let cin = self.info(input).shape[1];
        let cout = weight_shape[0];
        let cin_g = weight_shape[1];
        let cout_g = cout / group;
        let k_total: usize = window.kernel.iter().product();
        let n = self.out_info().len();
        Ok((0..n)
            .into_par_iter()
            .map(|j| {
                let os = j % geo.out_sp;
                let plane = j / geo.out_sp;
                let (bn, oc) = (plane / cout, plane % cout);
                let g = oc / cout_g;
                let taps = geo.taps(os, window);
                let mut acc = engine.trivial(bias[oc], delta);
                for ic in 0..cin_g {
                    let xb = (bn * cin + g * cin_g + ic) * geo.in_sp;
                    let wb = (oc * cin_g + ic) * k_total;
                    for &(kf, isp) in &taps {
                        let w = weights[wb + kf];
                        if w != 0 {
                            engine.mul_add_assign(&mut acc, &x[xb + isp], w);
                        }
                    }
                }
                acc
            })
            .collect())
    }

    /// `SumPool`: the sum of each window.
    fn sum_pool(&self, input: usize, window: &Window) -> Result<Vec<E::Ct>, RuntimeError> {
        let engine = self.engine;
        let delta = self.out_info().delta_log2;
        let x = self.get(input)?;
        let geo = Geometry::new(&self.info(input).shape, &self.out_info().shape);
        let n = self.out_info().len();
        Ok((0..n)
            .into_par_iter()
            .map(|j| {
                let (plane, os) = (j / geo.out_sp, j % geo.out_sp);
                let xb = plane * geo.in_sp;
                let mut acc = engine.trivial(0, delta);
                for (_, isp) in geo.taps(os, window) {
                    engine.add_assign(&mut acc, &x[xb + isp]);
                }
                acc
            })
            .collect())
    }

    /// `Add` (or `Sub` when `sub`), element-wise, into `a`'s data when it is its last use.
    fn add_sub(&mut self, a: usize, b: usize, sub: bool) -> Result<Vec<E::Ct>, RuntimeError> {
        let engine = self.engine;
        let mut x = if a == b {
            self.get(a)?.to_vec()
        } else {
            self.take(a)?
        };
        let y = self.get(b)?;
        x.par_iter_mut().zip(y.par_iter()).for_each(|(p, q)| {
            if sub {
                engine.sub_assign(p, q)
            } else {
                engine.add_assign(p, q)
            }
        });
        Ok(x)
    }

    /// `AddConst` (when `add`) or `MulConst`, with the constant broadcast to the input.
    fn with_constant(
        &mut self,
        input: usize,
        constant: &IntTensor,
        add: bool,
    ) -> Result<Vec<E::Ct>, RuntimeError> {
        let engine = self.engine;
        let in_delta = self.info(input).delta_log2;
        let consts = broadcast_constant(constant, &self.info(input).shape)
            .ok_or_else(|| internal(self.index, self.ins, "constant does not broadcast"))?;
        let mut x = self.take(input)?;
        x.par_iter_mut().zip(consts.par_iter()).for_each(|(p, &c)| {
            if add {
                engine.add_const_assign(p, c, in_delta)
            } else {
                engine.mul_assign(p, c)
            }
        });
        Ok(x)
    }

    fn rescale(&mut self, input: usize, shift: u32) -> Result<Vec<E::Ct>, RuntimeError> {
        let engine = self.engine;
        let mut x = self.take(input)?;
        x.par_iter_mut().for_each(|p| engine.rescale(p, shift));
        Ok(x)
    }

    fn transpose(&self, input: usize, perm: &[usize]) -> Result<Vec<E::Ct>, RuntimeError> {
        let x = self.get(input)?;
        let in_strides = strides(&self.info(input).shape);
        let out_shape = &self.out_info().shape;
        let st: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
        Ok((0..self.out_info().len())
            .into_par_iter()
            .map(|j| {
                let mut r = j;
                let mut src = 0;
                for d in (0..out_shape.len()).rev() {
                    src += (r % out_shape[d]) * st[d];
                    r /= out_shape[d];
                }
                x[src].clone()
            })
            .collect())
    }

    /// `Pad`: padding elements are trivial encryptions of `value`.
    fn pad(
        &self,
        input: usize,
        pads: &[(usize, usize)],
        value: i64,
    ) -> Result<Vec<E::Ct>, RuntimeError> {
        let x = self.get(input)?;
        let in_shape = &self.info(input).shape;
        let in_strides = strides(in_shape);
        let out_shape = &self.out_info().shape;
        let fill = self.engine.trivial(value, self.out_info().delta_log2);
        Ok((0..self.out_info().len())
            .into_par_iter()
            .map(|j| {
                let mut r = j;
                let mut src = 0;
                for d in (0..out_shape.len()).rev() {
                    let c = r % out_shape[d];
                    r /= out_shape[d];
                    match c.checked_sub(pads[d].0) {
                        Some(ci) if ci < in_shape[d] => src += ci * in_strides[d],
                        _ => return fill.clone(),
                    }
                }
                x[src].clone()
            })
            .collect())
    }

    fn concat(&self, inputs: &[usize], axis: usize) -> Result<Vec<E::Ct>, RuntimeError> {
        let parts: Vec<&[E::Ct]> = inputs
            .iter()
            .map(|&v| self.get(v))
            .collect::<Result<_, _>>()?;
        let shapes: Vec<&[usize]> = inputs
            .iter()
            .map(|&v| self.info(v).shape.as_slice())
            .collect();
        let outer: usize = self.out_info().shape[..axis].iter().product();
        let inner: usize = self.out_info().shape[axis + 1..].iter().product();
        let mut out = Vec::with_capacity(self.out_info().len());
        for o in 0..outer {
            for (part, shape) in parts.iter().zip(&shapes) {
                let chunk = shape[axis] * inner;
                out.extend_from_slice(&part[o * chunk..(o + 1) * chunk]);
            }
        }
        Ok(out)
    }

    /// `Tlu`: one lookup per element, in the table of its channel when the table set has an
    /// axis.
    fn tlu(&self, input: usize, lut: &Lut) -> Result<Vec<E::Ct>, RuntimeError> {
        let x = self.get(input)?;
        let shape = &self.info(input).shape;
        let tables: Vec<usize> = match lut.axis {
            None => vec![0; x.len()],
            Some(a) => {
                // Runs of `stride` elements read one table (no division per element).
                let stride: usize = shape[a + 1..].iter().product::<usize>().max(1);
                let mut tables = Vec::with_capacity(x.len());
                for k in 0..x.len().div_ceil(stride) {
                    let run = stride.min(x.len() - k * stride);
                    tables.extend(std::iter::repeat_n(k % shape[a], run));
                }
                tables
            }
        };
        let refs: Vec<&E::Ct> = x.iter().collect();
        self.engine
            .lookup(
                lut,
                self.info(input),
                self.out_info().delta_log2,
                &refs,
                &tables,
            )
            .map_err(|e| self.wrap(e))
    }

    /// `max` over each window as a tree of `a + relu(b - a)`, one lookup batch per level.
    ///
    /// Level 0 reads the operand in place (no copy of the windows); later levels own their
    /// partial maxima. The operand is freed after level 0 when this is its last reader.
    fn max_pool(
        &mut self,
        input: usize,
        window: &Window,
        relu: &Lut,
    ) -> Result<Vec<E::Ct>, RuntimeError> {
        // Noise factor of the operand: comparisons at level L see 2 (alpha + L).
        let alpha = self.info(input).noise_factor;
        let mut lists = {
            let x = self.get(input)?;
            let geo = Geometry::new(&self.info(input).shape, &self.out_info().shape);
            let windows: Vec<Vec<&E::Ct>> = (0..self.out_info().len())
                .into_par_iter()
                .map(|j| {
                    let xb = (j / geo.out_sp) * geo.in_sp;
                    geo.taps(j % geo.out_sp, window)
                        .into_iter()
                        .map(|(_, isp)| &x[xb + isp])
                        .collect()
                })
                .collect();
            self.tree_level(windows, relu, alpha, 0)?
        };
        if self.last_use[input] == self.index {
            self.values[input] = None;
        }
        let mut level = 1;
        while lists.iter().any(|l| l.len() > 1) {
            lists = self.tree_level(lists, relu, alpha, level)?;
            level += 1;
        }
        lists
            .into_iter()
            .map(|l| l.into_iter().next())
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| internal(self.index, self.ins, "a window lies entirely in padding"))
    }

    /// One level of the max tree over every window: pairs `(a, b)` become `a + relu(b - a)`
    /// (one lookup batch for the whole tensor), an odd last element passes through.
    fn tree_level<T: Element<E::Ct>>(
        &self,
        lists: Vec<Vec<T>>,
        relu: &Lut,
        alpha: f64,
        level: usize,
    ) -> Result<Vec<Vec<E::Ct>>, RuntimeError> {
        let engine = self.engine;
        let delta = self.out_info().delta_log2;
        let diffs: Vec<E::Ct> = lists
            .par_iter()
            .flat_map_iter(|l| {
                l.chunks_exact(2).map(|p| {
                    let mut d = p[1].element().clone();
                    engine.sub_assign(&mut d, p[0].element());
                    d
                })
            })
            .collect();
        let info = ValueInfo {
            shape: vec![diffs.len()],
            min: relu.input_min,
            max: relu.input_min.saturating_neg(),
            delta_log2: relu.input_delta_log2(),
            noise_factor: 2.0 * (alpha + level as f64),
        };
        let pairs = diffs.len();
        let relus = {
            let refs: Vec<&E::Ct> = diffs.iter().collect();
            engine
                .lookup(relu, &info, delta, &refs, &vec![0; pairs])
                .map_err(|e| self.wrap(e))?
        };
        drop(diffs);
        if relus.len() != pairs {
            return Err(internal(
                self.index,
                self.ins,
                "the engine returned a wrong number of lookups",
            ));
        }
        // Hand each window its slice of results, then a += relu(b - a).
        let mut results = relus.into_iter();
        let per_list: Vec<Vec<E::Ct>> = lists
            .iter()
            .map(|l| results.by_ref().take(l.len() / 2).collect())
            .collect();
        Ok(lists
            .into_par_iter()
            .zip(per_list)
            .map(|(l, r)| {
                let mut out = Vec::with_capacity(l.len().div_ceil(2));
                let mut it = l.into_iter();
                for rv in r {
                    let (Some(a), Some(_b)) = (it.next(), it.next()) else {
                        break;
                    };
                    let mut a = a.into_element();
                    engine.add_assign(&mut a, &rv);
                    out.push(a);
                }
                out.extend(it.map(T::into_element));
                out
            })
            .collect())
    }
}

/// A tensor element, owned or borrowed from the operand (max-pool tree levels).
trait Element<C>: Send + Sync {
    fn element(&self) -> &C;
    fn into_element(self) -> C;
}

impl<C: Clone + Send + Sync> Element<C> for &C {
    fn element(&self) -> &C {
        self
    }
    fn into_element(self) -> C {
        self.clone()
    }
}

impl<C: Clone + Send + Sync> Element<C> for C {
    fn element(&self) -> &C {
        self
    }
    fn into_element(self) -> C {
        self
    }
}

/// Row-major strides of a shape.
fn strides(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// `constant` broadcast (numpy rules) to `shape`, row-major; `None` when it does not broadcast.
fn broadcast_constant(constant: &IntTensor, shape: &[usize]) -> Option<Vec<i64>> {
    let view = ArrayViewD::from_shape(IxDyn(&constant.shape), &constant.data).ok()?;
    Some(view.broadcast(IxDyn(shape))?.iter().copied().collect())
}

/// Spatial geometry of a windowed instruction on an N-C-spatial tensor.
struct Geometry {
    in_spatial: Vec<usize>,
    out_spatial: Vec<usize>,
    in_sp: usize,
    out_sp: usize,
}

impl Geometry {
    fn new(in_shape: &[usize], out_shape: &[usize]) -> Self {
        let in_spatial = in_shape[2..].to_vec();
        let out_spatial = out_shape[2..].to_vec();
        Geometry {
            in_sp: in_spatial.iter().product(),
            out_sp: out_spatial.iter().product(),
            in_spatial,
            out_spatial,
        }
    }

    /// Non-padding window positions of output position `os` (row-major flat spatial index):
    /// `(flat kernel index, flat input spatial index)`, kernel positions in row-major order.
    fn taps(&self, os: usize, window: &Window) -> Vec<(usize, usize)> {
        let sp = self.out_spatial.len();
        let mut ranges: Vec<Range<usize>> = Vec::with_capacity(sp);
        let mut r = os;
        let mut o = vec![0; sp];
        for d in (0..sp).rev() {
            o[d] = r % self.out_spatial[d];
            r /= self.out_spatial[d];
        }
        for (d, &od) in o.iter().enumerate() {
            let range = fhec_kernels::conv::tap_range(
                od,
                self.in_spatial[d],
                window.kernel[d],
                window.strides[d],
                window.dilations[d],
                window.pads[d].0,
            );
            if range.is_empty() {
                return Vec::new();
            }
            ranges.push(range);
        }
        let count: usize = ranges.iter().map(|r| r.len()).product();
        let mut out = Vec::with_capacity(count);
        let mut k: Vec<usize> = ranges.iter().map(|r| r.start).collect();
        loop {
            let (mut kf, mut isp) = (0, 0);
            for d in 0..sp {
                kf = kf * window.kernel[d] + k[d];
                let pos = o[d] * window.strides[d] + k[d] * window.dilations[d] - window.pads[d].0;
                isp = isp * self.in_spatial[d] + pos;
            }
            out.push((kf, isp));
            // Next kernel position, last axis fastest.
            let mut d = sp;
            loop {
                if d == 0 {
                    return out;
                }
                d -= 1;
                k[d] += 1;
                if k[d] < ranges[d].end {
                    break;
                }
                k[d] = ranges[d].start;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_are_never_freed() {
        let p = Program {
            inputs: vec![],
            outputs: vec![crate::circuit::OutputSpec {
                name: "y".into(),
                value: 0,
                scale: 1.0,
                zero_point: 0,
                channel_scales: vec![],
            }],
            values: vec![],
            instructions: vec![
                Instruction::Input { index: 0 },
                Instruction::Reshape { input: 0 },
                Instruction::Reshape { input: 1 },
            ],
        };
        assert_eq!(last_uses(&p), vec![usize::MAX, 2, 2]);
    }
}
