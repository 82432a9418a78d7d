//! `fhec plot`: plots of a sweep results CSV written beside it, and clear errors for files
//! that are not sweep results.

mod common;

use std::path::Path;

use common::{fails, fhec, ok};

const HEADER: &str = "dataset,model,format,size,method,bits,rounding_bits,rounding_mode,p_error,\
p_error_kind,prune_threshold,status,error,samples,float_accuracy,clear_accuracy,simulate_accuracy,\
fhe_samples,fhe_accuracy,fhe_clear_agreement,max_accumulator_bits,pbs_count,tlu_precision_bits,\
lwe_dimension,glwe_dimension,polynomial_size,pbs_base_log,pbs_level,ks_base_log,ks_level,\
p_error_per_pbs,global_p_error,predicted_latency_s,measured_latency_s,keygen_s,server_key_bytes,\
compile_s,fingerprint";

/// A small clear-mode sweep: two rounding settings, one failed configuration.
fn results_csv() -> String {
    let rows = [
        "digits,mlp.onnx,GREY,8x8,PTQ,4,none,none,0.01,per_pbs,none,ok,,360,0.9611,0.9333,,0,,,9,74,5,740,1,2048,15,1,3,5,0.01,0.24,0.35,,,,0.5,aa01",
        "digits,mlp.onnx,GREY,8x8,PTQ,5,none,none,0.01,per_pbs,none,ok,,360,0.9611,0.9528,,0,,,10,74,6,760,1,4096,15,1,3,5,0.01,0.24,0.81,,,,0.5,aa02",
        "digits,mlp.onnx,GREY,8x8,PTQ,6,none,none,0.01,per_pbs,none,error,\"no crypto parameters for 7-bit lookups, try --rounding-bits\",360,0.9611,,,0,,,,,,,,,,,,,,,,,,,0.5,",
        "digits,mlp.onnx,GREY,8x8,PTQ,6,4,approximate,0.01,per_pbs,none,ok,,360,0.9611,0.9472,,0,,,11,74,5,740,1,2048,15,1,3,5,0.01,0.24,0.38,,,,0.5,aa03",
    ];
    format!("{HEADER}\n{}\n", rows.join("\n"))
}

fn plot(csv: &Path) -> std::process::Output {
    fhec([std::ffi::OsStr::new("plot"), csv.as_os_str()])
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn plot_writes_images_beside_the_csv_and_prints_them() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("sweep.csv");
    std::fs::write(&csv, results_csv()).unwrap();
    let out = ok(&plot(&csv));
    let printed: Vec<&str> = out.lines().collect();
    let expected: Vec<String> = ["accuracy.png", "accuracy.svg", "latency.png", "latency.svg"]
        .iter()
        .map(|s| dir.path().join(format!("sweep_{s}")).display().to_string())
        .collect();
    assert_eq!(printed, expected);
    for p in &expected {
        let bytes = std::fs::read(p).unwrap();
        if p.ends_with(".png") {
            assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{p}");
        } else {
            let svg = String::from_utf8(bytes).unwrap();
            assert!(svg.starts_with("<svg"), "{p}");
            assert!(svg.contains("rounding 4 (approximate)"), "{p}");
            assert!(svg.contains("failed (1 config)"), "{p}");
        }
    }
    let svg = std::fs::read_to_string(&expected[1]).unwrap();
    assert!(svg.contains("Accuracy vs bits: digits (mlp.onnx), p_error 0.01 per PBS"));
    assert!(svg.contains("float model (0.9611)"));
}

#[test]
fn plot_rejects_files_that_are_not_sweep_results() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("other.csv");
    std::fs::write(&csv, "a,b,c\n1,2,3\n").unwrap();
    fails(&plot(&csv), &["other.csv", "no column 'dataset'"]);
    let failed = dir.path().join("failed.csv");
    let text = results_csv()
        .lines()
        .enumerate()
        .filter(|(i, _)| *i == 0 || *i == 3)
        .map(|(_, l)| format!("{l}\n"))
        .collect::<String>();
    std::fs::write(&failed, text).unwrap();
    fails(
        &plot(&failed),
        &[
            "failed.csv",
            "all status=error",
            "no crypto parameters for 7-bit lookups",
        ],
    );
    fails(&plot(&dir.path().join("absent.csv")), &["absent.csv"]);
    assert_eq!(
        names(dir.path()),
        ["failed.csv", "other.csv"],
        "no image written"
    );
}
