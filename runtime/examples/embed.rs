//! Embedding the runtime in a Rust application: load a circuit compiled by `fhec compile`,
//! generate keys, encrypt an input, execute on ciphertexts, decrypt — and check the result
//! against the clear execution of the same circuit.
//!
//! ```sh
//! fhec compile tests/fixtures/mlp_torch.onnx --bits 6 --rounding-bits 6 --p-error 0.008 \
//!     --calib tests/fixtures/data/breast_cancer.npz -o /tmp/mlp.fhec
//! cargo run --release -p fhec-runtime --example embed -- /tmp/mlp.fhec 0.5,-1.2,0.3
//! ```
//! The values after the circuit fill the first input in order (the rest stay 0).
//!
//! In a real deployment the three roles live in different places: the client keeps
//! `client` and sends `server_key` once (`CompressedServerKey::save`) and ciphertexts per
//! request (`EncryptedTensors::save`); the server only needs the circuit and the server key.
//!
//! `tests/cli_fhe.rs` runs [`infer`] on a circuit compiled by `fhec compile` and checks its
//! results against `fhec predict --mode clear`.

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::Instant;

use fhec_runtime::fhe::{run, ClientKey};
use fhec_runtime::Circuit;
use ndarray::{ArrayD, IxDyn};

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().ok_or("usage: embed MODEL.fhec [v1,v2,...]")?);
    let values: Vec<f32> = match args.next() {
        Some(list) => list
            .split(',')
            .map(|v| v.trim().parse::<f32>())
            .collect::<Result<_, _>>()?,
        None => vec![],
    };
    let outcome = infer(&path, &values)?;
    for (name, (fhe, clear)) in outcome
        .names
        .iter()
        .zip(outcome.fhe.iter().zip(&outcome.clear))
    {
        println!("output '{name}':");
        println!("  fhe   {:?}", fhe.iter().collect::<Vec<_>>());
        println!("  clear {:?}", clear.iter().collect::<Vec<_>>());
    }
    Ok(())
}

/// What one inference gave: per circuit output, its name, the decrypted result and the
/// result of the clear execution of the same circuit.
pub struct Outcome {
    pub names: Vec<String>,
    pub fhe: Vec<ArrayD<f32>>,
    pub clear: Vec<ArrayD<f32>>,
}

/// Loads the circuit at `path`, fills its first input with `values` (in order, the rest 0),
/// and runs it encrypted (keygen, encrypt, run, decrypt) and in the clear.
pub fn infer(path: &Path, values: &[f32]) -> Result<Outcome, Box<dyn Error>> {
    // Load and check the circuit (format, checksum, structure, parameter security).
    let circuit = Circuit::load(path)?;
    println!(
        "circuit: {} ({} bootstraps)",
        circuit.params, circuit.prediction.pbs_count
    );

    // One input tensor per circuit input, shaped as the circuit says.
    let inputs: Vec<ArrayD<f32>> = circuit
        .program
        .inputs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let mut x = ArrayD::<f32>::zeros(IxDyn(&spec.shape));
            if i == 0 {
                for (slot, v) in x.iter_mut().zip(values) {
                    *slot = *v;
                }
            }
            x
        })
        .collect();

    // Client: keys. The compressed server key is what would be sent to the server.
    let t = Instant::now();
    let (client, compressed_server_key) = ClientKey::generate(&circuit.params)?;
    println!("keygen: {:.2} s", t.elapsed().as_secs_f64());

    // Server: expand the evaluation key once, then serve requests.
    let server_key = compressed_server_key.expand();

    // Client: quantise and encrypt.
    let encrypted = client.encrypt(&circuit.program, &inputs)?;

    // Server: execute on ciphertexts.
    let t = Instant::now();
    let encrypted_outputs = run(&circuit, &server_key, &encrypted)?;
    println!("run: {:.3} s", t.elapsed().as_secs_f64());

    // Client: decrypt, dequantise, apply the circuit's client-side post-processing.
    let outputs = client.decrypt(&circuit.program, &encrypted_outputs)?;
    let fhe = fhec_runtime::client::apply_postprocessing(&circuit.postprocessing, outputs)?;

    // The same circuit in the clear, for comparison.
    let clear = fhec_runtime::clear::run_clear(&circuit.program, &inputs)?;
    let clear = fhec_runtime::client::apply_postprocessing(&circuit.postprocessing, clear)?;
    Ok(Outcome {
        names: circuit
            .program
            .outputs
            .iter()
            .map(|o| o.name.clone())
            .collect(),
        fhe,
        clear,
    })
}
