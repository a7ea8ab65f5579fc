//! The detector is a pure function of its samples: `src/detect/` must not do
//! I/O, read a clock, use randomness or an async runtime. A replay and a live
//! run agree only while this holds.

use std::fs;
use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "std::fs",
    "std::net",
    "std::env",
    "std::io",
    "std::process",
    "std::thread",
    "rand::",
    "SystemTime",
    "Instant",
    "chrono",
    "time::OffsetDateTime",
    "UNIX_EPOCH",
    "println!",
    "eprintln!",
];

#[test]
fn the_detector_does_no_io_reads_no_clock_and_draws_no_random_number() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/detect");
    let mut checked = 0;
    let mut offences = Vec::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        checked += 1;
        let text = fs::read_to_string(&path).unwrap();
        for (no, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for word in FORBIDDEN {
                if code.contains(word) {
                    offences.push(format!("{}:{}: {word}: {line}", path.display(), no + 1));
                }
            }
        }
    }
    assert!(
        checked >= 5,
        "expected the detector's sources in {}",
        dir.display()
    );
    assert!(
        offences.is_empty(),
        "the detector must stay pure:\n{}",
        offences.join("\n")
    );
}

#[test]
fn the_purity_check_catches_what_it_looks_for() {
    // Guard against a check that cannot fail: each forbidden word is caught
    // in a line of code and ignored in a comment.
    for word in FORBIDDEN {
        let code = format!("let x = {word};");
        assert!(code.split("//").next().unwrap().contains(word));
        let comment = format!("// {word}");
        assert!(!comment.split("//").next().unwrap().contains(word));
    }
}
