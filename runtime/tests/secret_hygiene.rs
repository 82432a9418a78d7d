//! Secret hygiene: the client key never reaches a server-side artifact, its file is
//! owner-only, its memory is wiped before it is freed, and all key and encryption randomness
//! comes from tfhe's `new_seeder()` (the CPU's `rdseed` or the OS's `getrandom`).
//!
//! Key material is looked for in two forms:
//! - as the key files serialise it: one little-endian `u64` per binary coefficient. A window
//!   of 64 consecutive coefficients (512 bytes, 64 bits of key entropy) is searched at every
//!   byte offset. (A 32-byte window would be only 4 coefficients, 4 bits of entropy: any file
//!   with small integers would "contain" it.)
//! - bit-packed (LSB-first and MSB-first, from every bit offset): 32-byte windows, 256 bits
//!   of key entropy, at every byte offset.
//!
//! Both detectors are checked on inputs that do contain the key, so the test can fail.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;

mod common;

use common::{circuit, identity_program, sample};
use fhec_runtime::fhe::{self, insecure_test_params, ClientKey, CompressedServerKey};

/// Coefficients per serialised-form window.
const WORD_WINDOW: usize = 64;
/// Bytes per bit-packed window.
const PACKED_WINDOW: usize = 32;

/// The windows of a client key's secret coefficients, in both forms.
struct KeyWindows {
    /// 64 consecutive coefficients packed into a `u64` (first coefficient most significant).
    words: HashSet<u64>,
    /// 256 consecutive coefficients bit-packed into 32 bytes, both bit orders.
    packed: HashSet<[u8; PACKED_WINDOW]>,
}

impl KeyWindows {
    fn new(client: &ClientKey) -> Self {
        let mut words = HashSet::new();
        let mut packed = HashSet::new();
        let small = client.small_lwe.iter().map(|k| k.as_ref());
        for key in small.chain([client.big_lwe().into_container()]) {
            assert!(key.iter().all(|&b| b <= 1), "binary keys");
            for w in key.windows(WORD_WINDOW) {
                words.insert(w.iter().fold(0u64, |acc, &b| (acc << 1) | b));
            }
            for w in key.windows(PACKED_WINDOW * 8) {
                let (mut lsb, mut msb) = ([0u8; PACKED_WINDOW], [0u8; PACKED_WINDOW]);
                for (i, &b) in w.iter().enumerate() {
                    lsb[i / 8] |= (b as u8) << (i % 8);
                    msb[i / 8] |= (b as u8) << (7 - i % 8);
                }
                packed.insert(lsb);
                packed.insert(msb);
            }
        }
        KeyWindows { words, packed }
    }

    /// Byte offsets (serialised form: of the window's last word) where key material occurs.
    /// Allocates nothing, so the tracking allocator can call it.
    fn first_hit(&self, bytes: &[u8]) -> Option<usize> {
        for align in 0..8 {
            let (mut acc, mut run) = (0u64, 0usize);
            for (i, chunk) in bytes[align.min(bytes.len())..].chunks_exact(8).enumerate() {
                let word = u64::from_le_bytes(chunk.try_into().unwrap_or([2; 8]));
                if word > 1 {
                    run = 0;
                    continue;
                }
                acc = (acc << 1) | word;
                run += 1;
                if run >= WORD_WINDOW && self.words.contains(&acc) {
                    return Some(align + 8 * i);
                }
            }
        }
        bytes.windows(PACKED_WINDOW).position(|w| {
            self.packed
                .contains::<[u8; PACKED_WINDOW]>(w.try_into().unwrap_or(&[0; PACKED_WINDOW]))
        })
    }
}

#[test]
fn client_key_never_appears_in_server_side_artifacts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Small, fast parameters: the key layout is the same as with secure ones.
    let params = insecure_test_params();
    let (client, compressed) = ClientKey::generate_insecure_for_tests(params).unwrap();
    let windows = KeyWindows::new(&client);
    let program = identity_program(59);
    let circuit = circuit(program.clone(), params);
    let paths = |name: &str| d.join(name);
    client.save(&paths("c.key")).unwrap();
    compressed.save(&paths("s.key")).unwrap();
    circuit.save(&paths("m.fhec")).unwrap();
    let inputs = client.encrypt_integers(&program, &[sample()]).unwrap();
    inputs.save(&paths("x.ct")).unwrap();
    let server = CompressedServerKey::load(&paths("s.key")).unwrap().expand();
    let outputs = fhe::run(&circuit, &server, &inputs).unwrap();
    outputs.save(&paths("y.ct")).unwrap();
    assert_eq!(
        client.decrypt_integers(&program, &outputs).unwrap(),
        vec![sample()]
    );

    // The detector finds the key where it is: the client key file (serialised form) and
    // a bit-packed copy at an odd offset.
    let key_file = std::fs::read(paths("c.key")).unwrap();
    assert!(windows.first_hit(&key_file).is_some());
    let mut planted = vec![0xA5u8; 4097];
    let bits = client.big_lwe().into_container();
    for (i, &b) in bits.iter().take(512).enumerate() {
        planted[1001 + i / 8] = (planted[1001 + i / 8] & !(1 << (i % 8))) | ((b as u8) << (i % 8));
    }
    assert!(windows.first_hit(&planted).is_some());

    // ...and nowhere on the server side.
    for name in ["s.key", "m.fhec", "x.ct", "y.ct"] {
        let bytes = std::fs::read(paths(name)).unwrap();
        assert!(bytes.len() > 100, "{name}");
        if let Some(at) = windows.first_hit(&bytes) {
            panic!("client key material in {name} at byte {at}");
        }
    }
}

#[test]
fn secret_key_files_are_owner_only() {
    let dir = tempfile::tempdir().unwrap();
    let (client, _) = ClientKey::generate_insecure_for_tests(insecure_test_params()).unwrap();
    let path = dir.path().join("c.key");
    // A world-readable file already there, and a stale temporary with the name the writer
    // uses: neither may leave the key readable by others.
    std::fs::write(&path, b"old").unwrap();
    let tmp = dir
        .path()
        .join(format!(".c.key.tmp-{}", std::process::id()));
    std::fs::write(&tmp, b"stale").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        for p in [&path, &tmp] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    client.save(&path).unwrap();
    let loaded = ClientKey::load(&path).unwrap();
    assert_eq!(loaded.key_id, client.key_id);
    assert!(!tmp.exists(), "temporary file left behind");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "client key mode {mode:o}");
    }
}

// ---------------------------------------------------------------------------------------------
// Wiping: a global allocator that inspects every block freed by the tracking thread while it
// is still allocated (reading it then is sound), looking for key material.

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
}
static WINDOWS: OnceLock<KeyWindows> = OnceLock::new();
static FREED_BYTES: AtomicUsize = AtomicUsize::new(0);
static FREED_WITH_KEY: AtomicUsize = AtomicUsize::new(0);

struct Inspecting;

unsafe impl GlobalAlloc for Inspecting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let tracking = TRACKING.try_with(|t| t.replace(false)).unwrap_or(false);
        if tracking {
            if let Some(windows) = WINDOWS.get() {
                // SAFETY: the block is still allocated, `layout.size()` bytes long.
                let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
                FREED_BYTES.fetch_add(block.len(), Ordering::SeqCst);
                if windows.first_hit(block).is_some() {
                    FREED_WITH_KEY.fetch_add(1, Ordering::SeqCst);
                }
            }
            let _ = TRACKING.try_with(|t| t.set(true));
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Inspecting = Inspecting;

/// Runs `f` with every block it frees inspected; returns (bytes freed, blocks freed that
/// still held key material).
fn inspect_frees(f: impl FnOnce()) -> (usize, usize) {
    FREED_BYTES.store(0, Ordering::SeqCst);
    FREED_WITH_KEY.store(0, Ordering::SeqCst);
    TRACKING.with(|t| t.set(true));
    f();
    TRACKING.with(|t| t.set(false));
    (
        FREED_BYTES.load(Ordering::SeqCst),
        FREED_WITH_KEY.load(Ordering::SeqCst),
    )
}

#[test]
fn secret_memory_is_wiped_before_it_is_freed() {
    let params = insecure_test_params();
    let (client, _) = ClientKey::generate_insecure_for_tests(params).unwrap();
    assert!(WINDOWS.set(KeyWindows::new(&client)).is_ok());
    let key_bytes = 8 * (params.lwe_dimension + params.big_lwe_dimension());

    // The inspector sees key material in a freed copy of the key.
    let copy: Vec<u64> = client.big_lwe().into_container().to_vec();
    assert_eq!(
        inspect_frees(move || drop(copy)),
        (8 * params.big_lwe_dimension(), 1)
    );

    // Saving wipes the buffers the file was encoded in.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.key");
    let (freed, with_key) = inspect_frees(|| client.save(&path).unwrap());
    assert_eq!(
        with_key, 0,
        "save freed {freed} bytes, some holding the key"
    );

    // Loading wipes the file's bytes once decoded.
    let mut loaded = None;
    let (freed, with_key) = inspect_frees(|| loaded = Some(ClientKey::load(&path).unwrap()));
    assert!(freed >= key_bytes, "load freed only {freed} bytes");
    assert_eq!(
        with_key, 0,
        "load freed {freed} bytes, some holding the key"
    );

    // Dropping a key (generated or loaded) wipes both secret keys.
    for key in [client, loaded.unwrap()] {
        let (freed, with_key) = inspect_frees(move || drop(key));
        assert!(freed >= key_bytes, "drop freed only {freed} bytes");
        assert_eq!(
            with_key, 0,
            "a dropped client key left its secret in freed memory"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Randomness

/// Every source file of the FHE code (client and server side).
fn fhe_sources() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/fhe");
    let mut out: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), text)
        })
        .collect();
    out.sort();
    assert!(
        out.iter().any(|(n, _)| n == "keys.rs") && out.iter().any(|(n, _)| n == "ciphertext.rs")
    );
    out
}

/// Code without `//` comments (doc comments may name what the code must not use).
fn code_of(text: &str) -> String {
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn randomness_comes_only_from_the_os_seeded_csprng() {
    for (name, text) in fhe_sources() {
        let code = code_of(&text);
        // No general-purpose or seedable RNG, no hand-made seeder.
        for banned in [
            "rand::",
            "SmallRng",
            "StdRng",
            "thread_rng",
            "OsRng",
            "getrandom",
            "seed_from_u64",
            "from_seed",
            "DeterministicSeeder",
            "UnixSeeder",
            "RdseedSeeder",
            "impl Seeder",
        ] {
            assert!(!code.contains(banned), "{name} uses {banned}");
        }
        // tfhe's CSPRNGs are seeded from `new_seeder()` only.
        for (at, _) in code.match_indices("RandomGenerator::<DefaultRandomGenerator>::new(") {
            let args: String = code[at..]
                .split_once('(')
                .map(|(_, rest)| {
                    rest.chars()
                        .filter(|c| !c.is_whitespace())
                        .take(14)
                        .collect()
                })
                .unwrap_or_default();
            assert!(
                args.starts_with("seeder.seed()"),
                "{name}: generator seeded with {args}"
            );
        }
        // A `Seed(...)` is either fresh from the seeder, or a stored public mask seed
        // handed back to tfhe to decompress (`from_container`).
        for (at, _) in code.match_indices("Seed(") {
            if code[..at].ends_with("Random") {
                continue;
            }
            let arg: String = code[at + 5..].chars().take_while(|&c| c != ')').collect();
            let fresh = format!("let {arg} = seeder.seed().0;");
            let context = &code[at.saturating_sub(600)..at];
            assert!(
                code.contains(&fresh) || context.contains("from_container("),
                "{name}: Seed({arg}) is neither fresh from new_seeder() nor a stored mask seed"
            );
        }
        // Encryptions take the key's seeder: `new_seeder()`, except for keys made by the one
        // `_for_tests` constructor that takes the caller's seeders.
        if code.contains("seeder") {
            assert!(
                code.contains("new_seeder()") || code.contains("with_encryption_seeder("),
                "{name}: a seeder not from new_seeder()"
            );
        }
        for (at, _) in code.match_indices("Entropy::Injected(") {
            let before = &code[..at];
            let in_fn = before.rfind("fn ").map(|f| &before[f..]).unwrap_or("");
            assert!(
                in_fn.starts_with("fn generate_with_seeders_for_tests(")
                    || in_fn.starts_with("fn with_encryption_seeder<"),
                "{name}: injected seeders outside the test constructor"
            );
        }
    }
}
