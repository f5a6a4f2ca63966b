//! Stable-toolchain stand-in for `cargo fuzz run decode_request`: mutates valid request
//! encodings for a bounded time and feeds each through `chronik_fuzz::decode_request`.
//!
//! Two kinds of finding, each printed with its reproducer (hex, length prefix included):
//! - a panic;
//! - a single allocation larger than `--alloc-limit-mb` (default 64): no request of a few KiB
//!   justifies that, and a real broker aborts when such an allocation cannot be satisfied.
//!   Oversized allocations are served with a lazily-backed mapping so the run can go on.
//!
//! Usage: decode_request_smoke [--seconds N] [--seed S] [--alloc-limit-mb M] [--hex BYTES]
//! Exits 1 if anything was found.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::panic;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

static LIMIT: AtomicUsize = AtomicUsize::new(64 << 20);
static LARGEST_OVER_LIMIT: AtomicUsize = AtomicUsize::new(0);
/// Set while the target runs: its panics are findings, reported once, not printed as they fly.
static IN_TARGET: AtomicBool = AtomicBool::new(false);

/// System allocator, except that any single allocation above LIMIT is recorded and served by
/// an anonymous MAP_NORESERVE mapping (pages are only committed if touched).
struct Watch;

unsafe impl GlobalAlloc for Watch {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() <= LIMIT.load(Ordering::Relaxed) {
            return System.alloc(layout);
        }
        LARGEST_OVER_LIMIT.fetch_max(layout.size(), Ordering::Relaxed);
        let p = libc::mmap(
            std::ptr::null_mut(),
            layout.size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if p == libc::MAP_FAILED || layout.align() > 4096 {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.size() <= LIMIT.load(Ordering::Relaxed) {
            System.dealloc(ptr, layout)
        } else {
            libc::munmap(ptr.cast(), layout.size());
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let limit = LIMIT.load(Ordering::Relaxed);
        if layout.size() <= limit && new_size <= limit {
            return System.realloc(ptr, layout, new_size);
        }
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

#[global_allocator]
static ALLOC: Watch = Watch;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex"))
        .collect()
}

/// Values that make length and count fields interesting.
const INTERESTING_I32: [i32; 10] = [
    -1,
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0x1000_0000,
    0x7fff_ffff,
    i32::MIN,
];

fn mutate(rng: &mut fastrand::Rng, input: &mut Vec<u8>) {
    for _ in 0..rng.usize(1..=4) {
        if input.len() < 9 {
            input.push(rng.u8(..));
            continue;
        }
        // Leave the length prefix and api key alone most of the time so the body decoders
        // see the mutations; the prefix is fixed up below unless we choose to corrupt it.
        let body = 8..input.len();
        match rng.u8(0..9) {
            0 => {
                let i = rng.usize(body);
                input[i] ^= 1 << rng.u8(0..8);
            }
            1 => {
                let i = rng.usize(body);
                input[i] = [0x00, 0x01, 0x7f, 0x80, 0xff][rng.usize(0..5)];
            }
            2 if input.len() >= 12 => {
                let i = rng.usize(8..input.len() - 3);
                let v = INTERESTING_I32[rng.usize(0..INTERESTING_I32.len())];
                input[i..i + 4].copy_from_slice(&v.to_be_bytes());
            }
            3 => {
                // varint counts of compact arrays and strings
                let i = rng.usize(body);
                let v: &[u8] = [
                    &[0xff, 0xff, 0xff, 0xff, 0x0f][..],
                    &[0x80, 0x80, 0x80, 0x80, 0x08],
                    &[0xff, 0xff, 0x7f],
                ][rng.usize(0..3)];
                let end = (i + v.len()).min(input.len());
                input[i..end].copy_from_slice(&v[..end - i]);
            }
            4 => {
                let cut = rng.usize(8..=input.len());
                input.truncate(cut);
            }
            5 => {
                let i = rng.usize(8..=input.len());
                for _ in 0..rng.usize(1..16) {
                    input.insert(i, rng.u8(..));
                }
            }
            6 => {
                let i = rng.usize(body.clone());
                let n = rng.usize(1..=16).min(input.len() - i);
                input.drain(i..i + n);
            }
            7 => {
                // api version (the header and body layouts change with it)
                input[6..8].copy_from_slice(&rng.i16(-1..20).to_be_bytes());
            }
            _ => {
                let i = rng.usize(body.clone());
                let j = rng.usize(body.clone());
                let n = rng.usize(1..=8).min(input.len() - i.max(j));
                input.copy_within(i..i + n, j);
            }
        }
    }
    let len = input.len().saturating_sub(4) as i32;
    if input.len() >= 4 && rng.u8(0..32) != 0 {
        input[..4].copy_from_slice(&len.to_be_bytes());
    }
}

#[derive(Debug)]
struct Finding {
    what: String,
    input: Vec<u8>,
}

fn api_of(input: &[u8]) -> (i16, i16) {
    if input.len() >= 8 {
        (
            i16::from_be_bytes([input[4], input[5]]),
            i16::from_be_bytes([input[6], input[7]]),
        )
    } else {
        (-1, -1)
    }
}

/// Run one input; describe what went wrong, if anything.
fn run_one(input: &[u8]) -> Option<String> {
    LARGEST_OVER_LIMIT.store(0, Ordering::Relaxed);
    IN_TARGET.store(true, Ordering::Relaxed);
    let outcome = panic::catch_unwind(|| chronik_fuzz::decode_request(input));
    IN_TARGET.store(false, Ordering::Relaxed);
    let big = LARGEST_OVER_LIMIT.load(Ordering::Relaxed);
    match outcome {
        Err(e) => {
            let msg = e
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| e.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic".into());
            Some(format!("panic: {msg}"))
        }
        Ok(()) if big > 0 => Some(format!("allocation of {big} bytes")),
        Ok(()) => None,
    }
}

fn main() {
    let mut seconds = 30u64;
    let mut seed = fastrand::u64(..);
    let mut replay = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--seconds" => seconds = val().parse().expect("--seconds N"),
            "--seed" => seed = val().parse().expect("--seed S"),
            "--alloc-limit-mb" => LIMIT.store(
                val().parse::<usize>().expect("MiB") << 20,
                Ordering::Relaxed,
            ),
            "--hex" => replay = Some(unhex(&val())),
            other => panic!("unknown argument {other}"),
        }
    }

    if let Some(input) = replay {
        let (key, version) = api_of(&input);
        match run_one(&input) {
            Some(what) => {
                println!("api_key={key} version={version}: {what}");
                std::process::exit(1)
            }
            None => println!("api_key={key} version={version}: ok"),
        }
        return;
    }

    let default_hook = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !IN_TARGET.load(Ordering::Relaxed) {
            default_hook(info)
        }
    }));

    let seeds = chronik_fuzz::seed_requests();
    let mut rng = fastrand::Rng::with_seed(seed);
    // One finding per (api key, version, kind), smallest reproducer kept.
    let mut findings: BTreeMap<(i16, i16, bool), Finding> = BTreeMap::new();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut runs = 0u64;
    for s in &seeds {
        if let Some(what) = run_one(s) {
            let (key, version) = api_of(s);
            println!(
                "FINDING (valid seed) api_key={key} version={version}: {what}\n  reproducer: {}",
                hex(s)
            );
            std::process::exit(1);
        }
    }
    while Instant::now() < deadline {
        for _ in 0..1000 {
            let mut input = seeds[rng.usize(0..seeds.len())].clone();
            mutate(&mut rng, &mut input);
            runs += 1;
            if let Some(what) = run_one(&input) {
                let (key, version) = api_of(&input);
                let slot = (key, version, what.starts_with("panic"));
                let keep = findings
                    .get(&slot)
                    .is_none_or(|f| input.len() < f.input.len());
                if keep {
                    findings.insert(slot, Finding { what, input });
                }
            }
        }
    }
    for ((key, version, _), f) in &findings {
        println!(
            "FINDING api_key={key} version={version}: {}\n  reproducer: {}",
            f.what,
            hex(&f.input)
        );
    }
    println!(
        "decode_request_smoke: {runs} inputs from {} seeds in {seconds}s (seed {seed}), {} findings",
        seeds.len(),
        findings.len()
    );
    if !findings.is_empty() {
        std::process::exit(1);
    }
}
