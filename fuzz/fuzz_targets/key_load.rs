//! Fuzz target: see `fhec_fuzz::key_load` (an error is a normal outcome; a panic, hang or huge
//! allocation is a bug).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = fhec_fuzz::key_load(data);
});
