//! `lbwatch lint` on a large config: 2,000 servers in 20 HAProxy backends
//! (and in 20 NGINX upstreams), a frontend routing to each through an ACL,
//! read from disk and checked, alone and `--against` a previous version
//! with one weight changed. The figure to hold: under 100 ms for 2,000
//! servers.
//!
//! `cargo bench --bench lint`; `cargo test --bench lint` only shows it works.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use lbwatch::lint;

const POOLS: usize = 20;
const PER_POOL: usize = 100;

fn haproxy(weight_of_first: u32) -> String {
    let mut s = String::from("global\n  maxconn 50000\ndefaults\n  mode http\n  balance roundrobin\n  timeout client 30s\n  timeout server 30s\n  timeout connect 5s\nfrontend fe\n  bind 127.0.0.1:8080\n  http-request deny if { src 192.0.2.0/24 }\n");
    for p in 0..POOLS {
        s += &format!("  acl is_p{p} path_beg /p{p}/\n  use_backend p{p} if is_p{p}\n");
    }
    s += "  default_backend p0\n";
    for p in 0..POOLS {
        s += &format!("backend p{p}\n  default-server check inter 2s\n");
        for i in 0..PER_POOL {
            let w = if i == 0 { weight_of_first } else { 10 };
            s += &format!(
                "  server p{p}-s{i} 10.{p}.{}.{}:8080 weight {w}\n",
                i / 250,
                i % 250
            );
        }
    }
    s
}

fn nginx() -> String {
    let mut s = String::from("events {}\nhttp {\n");
    for p in 0..POOLS {
        s += &format!("  upstream p{p} {{\n    least_conn;\n");
        for i in 0..PER_POOL {
            s += &format!(
                "    server 10.{p}.{}.{}:8080 weight=10 max_fails=3;\n",
                i / 250,
                i % 250
            );
        }
        s += "  }\n";
    }
    s += "  server {\n    listen 8080;\n";
    for p in 0..POOLS {
        s += &format!("    location /p{p}/ {{ proxy_pass http://p{p}; }}\n");
    }
    s += "    location / { proxy_pass http://p0; }\n  }\n}\n";
    s
}

fn write(name: &str, text: &str) -> PathBuf {
    let path =
        std::env::temp_dir().join(format!("lbwatch-bench-lint-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn bench(c: &mut Criterion) {
    let new = write("new.cfg", &haproxy(100));
    let old = write("old.cfg", &haproxy(10));
    let conf = write("nginx.conf", &nginx());
    let mut g = c.benchmark_group("lint");
    g.throughput(Throughput::Elements((POOLS * PER_POOL) as u64));
    g.bench_function("haproxy 2000 servers", |b| {
        b.iter(|| {
            let config = lint::load(std::slice::from_ref(&new), None).unwrap();
            lint::lint(&config, None)
        })
    });
    g.bench_function("haproxy 2000 servers --against", |b| {
        b.iter(|| {
            let config = lint::load(std::slice::from_ref(&new), None).unwrap();
            let before = lint::load(std::slice::from_ref(&old), None).unwrap();
            let findings = lint::lint(&config, Some(&before));
            assert!(findings
                .iter()
                .any(|f| f.check == lint::Check::WeightsSkewed));
            findings
        })
    });
    g.bench_function("nginx 2000 servers", |b| {
        b.iter(|| {
            let config = lint::load(std::slice::from_ref(&conf), None).unwrap();
            lint::lint(&config, None)
        })
    });
    g.finish();
    for p in [new, old, conf] {
        let _ = std::fs::remove_file(p);
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
