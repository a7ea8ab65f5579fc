//! The tokio runtime lbwatch's commands run on: a few worker threads, not
//! one per core.

/// Worker threads at most, unless `TOKIO_WORKER_THREADS` sets their number.
/// The detector loop runs on the thread that blocks on the runtime, not on
/// a worker; the workers scrape, parse, serve HTTP and deliver, a tenth of
/// a core for 100,000 servers a second. Each worker that allocates gets a
/// malloc arena of its own, which keeps the room its bursts of pages took:
/// the fleet benchmark measured 154.9 MiB of RSS with eight workers (as
/// tokio would start on an eight-core host), against about 132 with two
/// and 129.2 with one. Two, not one, so that rendering `/metrics` for a
/// large fleet (a quarter of a second at 100,000 servers) holds up no scrape.
pub const MAX_WORKERS: usize = 2;

/// Worker threads on a host of `cores`; `None` where the environment sets
/// their number (`TOKIO_WORKER_THREADS`, which tokio reads).
pub fn workers(cores: usize, set_by_env: bool) -> Option<usize> {
    (!set_by_env).then(|| cores.clamp(1, MAX_WORKERS))
}

/// A multi-threaded runtime (the delivery of acknowledgements blocks in
/// place, which needs one) with `workers` threads.
pub fn build() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    builder.enable_all();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let set_by_env = std::env::var_os("TOKIO_WORKER_THREADS").is_some();
    if let Some(n) = workers(cores, set_by_env) {
        builder.worker_threads(n);
    }
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_workers_at_most_unless_the_environment_says() {
        assert_eq!(workers(1, false), Some(1));
        assert_eq!(workers(2, false), Some(2));
        assert_eq!(workers(8, false), Some(MAX_WORKERS));
        assert_eq!(workers(64, false), Some(MAX_WORKERS));
        assert_eq!(workers(64, true), None);
    }
}
