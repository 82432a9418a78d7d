//! Stable text form of a circuit program, for snapshot tests and `fhec inspect`.
//!
//! One line per instruction:
//! `%i = Op(operands) attrs : shape [min,max] d=delta a=noise_factor`. Weights, constants
//! and tables are summarised (small ones in full, large ones by length, range and an FNV-1a
//! checksum, as `ir::print` does), so the text is short yet changes whenever they do.

use std::fmt::{self, Display, Formatter};

use crate::circuit::{Instruction, IntTensor, Lut, Program, Window};

impl Display for Program {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        writeln!(f, "program {{")?;
        for (k, spec) in self.inputs.iter().enumerate() {
            let q = &spec.quantization;
            writeln!(
                f,
                "  input #{k} '{}' {} scale={:e} zp={} bits={}{}",
                spec.name,
                list(&spec.shape),
                q.scale,
                q.zero_point,
                q.bits,
                if q.signed { "s" } else { "u" }
            )?;
        }
        for (i, ins) in self.instructions.iter().enumerate() {
            let args: Vec<String> = match ins {
                Instruction::Input { index } => vec![format!("#{index}")],
                other => other.operands().iter().map(|v| format!("%{v}")).collect(),
            };
            write!(
                f,
                "  %{i} = {}({}){}",
                ins.name(),
                args.join(", "),
                attrs(ins)
            )?;
            match self.values.get(i) {
                Some(v) => writeln!(
                    f,
                    " : {} [{},{}] d={} a={}",
                    list(&v.shape),
                    v.min,
                    v.max,
                    v.delta_log2,
                    v.noise_factor
                )?,
                None => writeln!(f, " : <no value info>")?,
            }
        }
        for o in &self.outputs {
            write!(
                f,
                "  output '{}' = %{} scale={:e} zp={}",
                o.name, o.value, o.scale, o.zero_point
            )?;
            if !o.channel_scales.is_empty() {
                let s: Vec<String> = o.channel_scales.iter().map(|x| format!("{x:e}")).collect();
                write!(f, " channel_scales=[{}]", s.join(","))?;
            }
            writeln!(f)?;
        }
        write!(f, "}}")
    }
}

/// The attributes of one instruction, with a leading space (empty when it has none).
fn attrs(ins: &Instruction) -> String {
    match ins {
        Instruction::Input { .. } | Instruction::Add { .. } | Instruction::Sub { .. } => {
            String::new()
        }
        Instruction::Reshape { .. } => String::new(),
        Instruction::Dense {
            weights,
            in_features,
            out_features,
            bias,
            ..
        } => format!(
            " in={in_features} out={out_features} w={} b={}",
            summarize_ints(weights),
            summarize_ints(bias)
        ),
        Instruction::Conv {
            weights,
            weight_shape,
            bias,
            window,
            group,
            ..
        } => format!(
            " w{}={} b={} {} group={group}",
            list(weight_shape),
            summarize_ints(weights),
            summarize_ints(bias),
            window_text(window)
        ),
        Instruction::SumPool { window, .. } => format!(" {}", window_text(window)),
        Instruction::MaxPool { window, relu, .. } => {
            format!(" {} relu={}", window_text(window), lut_text(relu))
        }
        Instruction::AddConst { constant, .. } | Instruction::MulConst { constant, .. } => {
            format!(" c={}", tensor_text(constant))
        }
        Instruction::Transpose { perm, .. } => format!(" perm={}", list(perm)),
        Instruction::Pad { pads, value, .. } => {
            let p: Vec<String> = pads.iter().map(|(b, e)| format!("{b}:{e}")).collect();
            format!(" pads=[{}] value={value}", p.join(","))
        }
        Instruction::Concat { axis, .. } => format!(" axis={axis}"),
        Instruction::Rescale { shift, .. } => format!(" shift={shift}"),
        Instruction::Tlu { lut, .. } => format!(" {}", lut_text(lut)),
    }
}

fn window_text(w: &Window) -> String {
    let pads: Vec<String> = w.pads.iter().map(|(b, e)| format!("{b}:{e}")).collect();
    format!(
        "k={} s={} dil={} pads=[{}]",
        list(&w.kernel),
        list(&w.strides),
        list(&w.dilations),
        pads.join(",")
    )
}

fn tensor_text(t: &IntTensor) -> String {
    format!("{}{}", list(&t.shape), summarize_ints(&t.data))
}

/// `lut{min=.. p=.. round=.. axis=.. [sets=table:..,bits:..] tables=count x {summary}}`.
fn lut_text(lut: &Lut) -> String {
    let rounding = match lut.rounding {
        None => "none".to_string(),
        Some(r) => format!(
            "{}{}",
            r.shift,
            if r.is_exact() { "exact" } else { "approx" }
        ),
    };
    let axis = lut.axis.map_or("-".to_string(), |a| a.to_string());
    let all: Vec<i64> = lut.tables.iter().flatten().copied().collect();
    let lens: Vec<usize> = lut.tables.iter().map(Vec::len).collect();
    let len_text = match lens.split_first() {
        Some((first, rest)) if rest.iter().all(|l| l == first) => format!("{first}"),
        _ => list(&lens),
    };
    // Parameter sets only once the optimizer named others than set 0.
    let sets = if lut.sets == Default::default() {
        String::new()
    } else {
        format!(" sets=table:{},bits:{}", lut.sets.table, lut.sets.bits)
    };
    format!(
        "lut{{min={} p={} round={rounding} axis={axis}{sets} tables={}x{len_text} {}}}",
        lut.input_min,
        lut.precision,
        lut.tables.len(),
        summarize_ints(&all)
    )
}

/// Small integer vectors in full, large ones as length, range and an FNV-1a checksum (the
/// same summary as `ir::print::summarize_ints`, so graph and program texts agree).
pub fn summarize_ints(values: &[i64]) -> String {
    if values.len() <= 16 {
        let v: Vec<String> = values.iter().map(|x| x.to_string()).collect();
        return format!("[{}]", v.join(", "));
    }
    let (lo, hi) = values
        .iter()
        .fold((i64::MAX, i64::MIN), |(l, h), &x| (l.min(x), h.max(x)));
    let hash = values.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
    });
    format!(
        "{{len {}, min {lo}, max {hi}, fnv {:08x}}}",
        values.len(),
        hash as u32
    )
}

fn list(v: &[usize]) -> String {
    let s: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", s.join(","))
}
