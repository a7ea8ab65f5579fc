//! The detector is a pure function of its samples, and that is structural:
//! it lives in its own crate (`crates/lbwatch-core`), whose dependencies are
//! data formats and statistics only, and whose `clippy.toml` bans the
//! standard library's files, sockets, environment, processes, threads and
//! clocks (`scripts/test` runs clippy on the whole workspace with warnings
//! as errors). These tests hold the two lists to account: adding an I/O
//! crate to the core, or taking a ban away, fails here.

use std::path::Path;

fn core_file(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("crates/lbwatch-core")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The names under `[dependencies]` (not dev-dependencies) of a Cargo.toml.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut in_deps = false;
    let mut out = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
            continue;
        }
        if in_deps && !line.is_empty() && !line.starts_with('#') {
            if let Some((name, _)) = line.split_once('=') {
                out.push(name.trim().to_string());
            }
        }
    }
    out
}

#[test]
fn the_core_depends_on_data_formats_and_statistics_only() {
    let deps = dependencies(&core_file("Cargo.toml"));
    let allowed = [
        "serde",
        "statrs",
        "thiserror",
        "postcard",
        "rustc-hash",
        "humantime",
    ];
    let extra: Vec<&String> = deps
        .iter()
        .filter(|d| !allowed.contains(&d.as_str()))
        .collect();
    assert!(
        extra.is_empty(),
        "the detector's crate may not depend on {extra:?}: it must stay free of I/O"
    );
    assert!(deps.len() >= 3, "no dependencies read: {deps:?}");
}

#[test]
fn the_core_bans_the_standard_librarys_io_clocks_and_processes() {
    let bans = core_file("clippy.toml");
    for path in [
        "std::time::SystemTime::now",
        "std::time::Instant::now",
        "std::fs::read_to_string",
        "std::fs::File",
        "std::net::TcpStream",
        "std::env::var",
        "std::io::stdout",
        "std::thread::spawn",
        "std::process::Command",
    ] {
        assert!(
            bans.contains(&format!("path = \"{path}\"")),
            "{path} is no longer banned in crates/lbwatch-core/clippy.toml"
        );
    }
}

#[test]
fn the_dependency_reader_reads_only_dependencies() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\nserde = \"1\"\n# a comment\ntokio = { version = \"1\" }\n[dev-dependencies]\nproptest = \"1\"\n";
    assert_eq!(dependencies(manifest), ["serde", "tokio"]);
}
