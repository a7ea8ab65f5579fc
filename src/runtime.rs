//! The tokio runtime lbwatch's commands run on: a few worker threads, not
//! one per core.

/// Worker threads at most, unless `TOKIO_WORKER_THREADS` sets their number.
/// The detector loop runs on the thread that blocks on the runtime, not on
/// a worker, and HTTP handlers on the blocking pool; the workers scrape,
/// parse and deliver. Each worker that allocates gets a malloc arena of its
/// own, which keeps the room its bursts of pages took: the fleet benchmark
/// (1,000 targets of 100 servers, every second: 13% of a core in all)
/// measured 154.9 MiB of RSS with eight workers (as tokio would start on
/// an eight-core host), against about 132 with two and 129.2 with one. Two,
/// not one, so that a target whose page is slow to parse holds up no other.
pub const MAX_WORKERS: usize = 2;

/// Worker threads on a host of `cores`, or as many as `env` (the value of
/// `TOKIO_WORKER_THREADS`) says; an error names a value that is no number
/// of threads.
pub fn workers(cores: usize, env: Option<&str>) -> Result<usize, String> {
    match env {
        None => Ok(cores.clamp(1, MAX_WORKERS)),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                format!("TOKIO_WORKER_THREADS={v:?}: not a number of threads (1 or more)")
            }),
    }
}

/// A multi-threaded runtime (acknowledgements are written blocking in
/// place, which needs one) with `workers` threads.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let env = std::env::var_os("TOKIO_WORKER_THREADS");
    let env = env.as_ref().map(|v| v.to_string_lossy());
    let n = workers(cores, env.as_deref())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(n)
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_workers_at_most_unless_the_environment_says() {
        assert_eq!(workers(1, None), Ok(1));
        assert_eq!(workers(2, None), Ok(2));
        assert_eq!(workers(8, None), Ok(MAX_WORKERS));
        assert_eq!(workers(64, None), Ok(MAX_WORKERS));
        assert_eq!(workers(64, Some("6")), Ok(6));
        assert_eq!(workers(1, Some(" 3 ")), Ok(3));
        for bad in ["0", "abc", "", "-1"] {
            let e = workers(8, Some(bad)).unwrap_err();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }
}
