//! The driver's hooks and typed errors, as an embedding application sees them: a set cancel
//! flag stops an evaluation, a sweep reports nested tasks and steps, the thread count is the
//! pool's, and a model that needs calibration data says so with a typed error that names no
//! command-line flag.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Mutex;

use fhec_driver::eval::{EvalMode, EvalRequest};
use fhec_driver::sweep::{SweepMode, SweepSpec};
use fhec_driver::{DriverError, Event, Hooks, QuantConfig};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

fn request<'a>(model: &'a Path, data: &'a Path, mode: EvalMode) -> EvalRequest<'a> {
    EvalRequest {
        model,
        import: Default::default(),
        data,
        keys: Default::default(),
        mode,
        limit: Some(20),
        seed: 0,
        quant: QuantConfig::bits(6),
        crypto: Default::default(),
    }
}

#[test]
fn a_set_cancel_flag_stops_an_evaluation() {
    let (model, data) = (fixture("mlp_torch.onnx"), fixture("data/breast_cancer.npz"));
    let cancel = AtomicBool::new(true);
    let hooks = Hooks {
        cancel: Some(&cancel),
        ..Hooks::silent()
    };
    let e = fhec_driver::evaluate(&request(&model, &data, EvalMode::Clear), &hooks)
        .err()
        .expect("a cancelled evaluation must not return a report");
    assert!(matches!(e, DriverError::Cancelled), "{e:?}");
    // The same request without the flag runs.
    let r = fhec_driver::evaluate(&request(&model, &data, EvalMode::Clear), &Hooks::silent())
        .unwrap()
        .report;
    assert_eq!(r.samples, 20);
}

#[test]
fn a_sweep_reports_nested_tasks_steps_and_notes() {
    let dir = tempfile::tempdir().unwrap();
    let spec = SweepSpec {
        model: fixture("mlp_torch.onnx"),
        import: Default::default(),
        data: vec![fixture("data/breast_cancer.npz")],
        keys: Default::default(),
        bits: vec![4, 5],
        rounding_bits: vec![],
        rounding_mode: vec![Default::default()],
        p_error: vec![],
        global_p_error: vec![],
        prune_threshold: vec![0.0],
        prune_rate: vec![vec![0.0]],
        prune_method: Default::default(),
        modes: HashSet::from([SweepMode::Clear]),
        fhe_samples: 1,
        limit: Some(30),
        calib: None,
        calib_limit: 100,
        threads: None,
        seed: 0,
        out: dir.path().to_path_buf(),
        resume: false,
        overwrite: false,
        name: None,
        shard: None,
    };
    let events = Mutex::new(Vec::<String>::new());
    let record = |e: Event| {
        let text = match e {
            Event::Note(l) => format!("note {l}"),
            Event::Begin { task, total } => format!("begin {task} {total:?}"),
            Event::Phase(p) => format!("phase {p}"),
            Event::Step { .. } => "step".into(),
            Event::Message(m) => format!("message {m}"),
            Event::End => "end".into(),
        };
        events.lock().unwrap().push(text);
    };
    let hooks = Hooks {
        on_event: Some(&record),
        ..Hooks::silent()
    };
    let outcome = fhec_driver::sweep::run(&spec, &hooks).unwrap();
    assert_eq!((outcome.computed, outcome.errors), (2, 0));
    let events = events.into_inner().unwrap();
    assert_eq!(
        events.first().map(String::as_str),
        Some("begin configs Some(2)")
    );
    assert_eq!(events.last().map(String::as_str), Some("end"));
    let count = |p: &str| events.iter().filter(|e| e.starts_with(p)).count();
    assert_eq!(count("step"), 2, "{events:?}");
    assert_eq!(count("begin") + count("phase"), count("end"), "{events:?}");
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("note [2/2] breast_cancer bits=5")),
        "{events:?}"
    );
}

#[test]
fn the_thread_count_is_the_pools() {
    let hooks = Hooks {
        threads: Some(1),
        ..Hooks::silent()
    };
    assert_eq!(hooks.install(rayon::current_num_threads).unwrap(), 1);
    let hooks = Hooks {
        threads: Some(3),
        ..Hooks::silent()
    };
    assert_eq!(hooks.install(rayon::current_num_threads).unwrap(), 3);
}

#[test]
fn a_model_without_calibration_data_gets_a_typed_error_without_flags() {
    let path = fixture("mlp_torch.onnx");
    let model = fhec_driver::import_model(&path, &Default::default()).unwrap();
    let e = fhec_driver::quantise(&model.graph, &QuantConfig::bits(6), vec![], &path)
        .expect_err("a post-training-quantised model needs calibration data");
    assert!(matches!(e, DriverError::NeedsCalibration { .. }), "{e:?}");
    let text = fhec_driver::error::one_line(&e);
    assert!(text.contains("calibration data"), "{text}");
    assert!(!text.contains("--"), "a library error names a flag: {text}");
}
