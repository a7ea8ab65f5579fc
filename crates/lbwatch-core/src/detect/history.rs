//! What a pool's traffic usually is, for TrafficDrop: the median of the
//! last hour's minutes, the lowest quarter-hour of the last day, and the
//! rate of the last few minutes and of the last minute. Robust by
//! construction: a median ignores a surge or a lull shorter than half its
//! window, a minimum over a day remembers the quietest the pool has run.

use super::stats::decay;

/// The hour's buckets (a minute each at the default window).
const HOUR_BUCKETS: usize = 60;

/// The day's buckets: a quarter-hour each.
const DAY_BUCKETS: usize = 96;
const QUARTER_HOUR: f64 = 900.0;

/// In its first hour (four quarter-hours), a pool's lowest minute counts as
/// its lowest too: with that little history, silence is the better guess.
const FIRST_HOUR: usize = 4;

/// The recent level's time constant, in hour buckets (five minutes).
const RECENT_BUCKETS: f64 = 5.0;

/// Per-bucket rates over a window: a ring of closed buckets and the one
/// being filled, with the closed ones' median and minimum.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Buckets {
    rates: Vec<f32>,
    head: usize,
    requests: f64,
    secs: f64,
    /// Before any bucket closed: the open one's rate.
    median: f64,
    min: Option<f64>,
}

impl Buckets {
    /// `requests` over `dt` seconds. An interval longer than what the open
    /// bucket lacks fills it and the next ones in proportion (a long scrape
    /// interval, a gap, a lull added in one go).
    fn add(&mut self, requests: f64, dt: f64, bucket_secs: f64, capacity: usize) {
        let (mut requests, mut dt) = (requests, dt);
        // More than the ring holds: only the last `capacity` buckets count.
        let span = capacity as f64 * bucket_secs;
        if dt > span {
            requests *= span / dt;
            dt = span;
        }
        while dt > 0.0 && self.secs + dt >= bucket_secs {
            let take = bucket_secs - self.secs;
            let part = requests * take / dt;
            self.requests += part;
            self.secs = bucket_secs;
            self.close(capacity);
            requests -= part;
            dt -= take;
        }
        self.requests += requests;
        self.secs += dt;
        if self.rates.is_empty() && self.secs > 0.0 {
            self.median = self.requests / self.secs;
        }
    }

    fn close(&mut self, capacity: usize) {
        let rate = (self.requests / self.secs) as f32;
        if self.rates.len() < capacity {
            self.rates.push(rate);
        } else {
            self.rates[self.head] = rate;
            self.head = (self.head + 1) % capacity;
        }
        self.requests = 0.0;
        self.secs = 0.0;
        self.median = median(&self.rates);
        self.min = self.rates.iter().copied().reduce(f32::min).map(f64::from);
    }

    /// After a restore: a ring of another size cannot index out of bounds.
    fn repair(&mut self, capacity: usize) {
        self.rates.truncate(capacity);
        if self.head >= self.rates.len() {
            self.head = 0;
        }
        if !(self.requests.is_finite() && self.secs.is_finite() && self.secs >= 0.0) {
            self.requests = 0.0;
            self.secs = 0.0;
        }
    }
}

fn median(rates: &[f32]) -> f64 {
    let mut buf = [0f32; DAY_BUCKETS];
    let buf = &mut buf[..rates.len().min(DAY_BUCKETS)];
    buf.copy_from_slice(&rates[..buf.len()]);
    let mid = buf.len() / 2;
    let (_, m, _) = buf.select_nth_unstable_by(mid, f32::total_cmp);
    f64::from(*m)
}

/// What one pool's (or target's) traffic usually is.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct History {
    /// The rates of the last `drop.baseline_window` (an hour), a sixtieth
    /// of it each.
    hour: Buckets,
    /// Quarter-hour rates of the last day.
    day: Buckets,
    /// Seconds of traffic seen.
    pub age: f64,
    /// The rate of the last few minutes (decayed): the best guess of what
    /// traffic would be now without a fault.
    pub recent: f64,
    /// The rate of the last minute (decayed): what a stop cuts from. A
    /// fault cuts traffic abruptly; a natural lull ramps down to its
    /// bottom, and this follows it down.
    pub last_minute: f64,
}

impl History {
    /// `requests` over `dt` seconds; `window` is `drop.baseline_window`.
    pub fn add(&mut self, requests: f64, dt: f64, window: f64) {
        let minute = window / HOUR_BUCKETS as f64;
        let (w, w1) = if self.age > 0.0 {
            (decay(dt, RECENT_BUCKETS * minute), decay(dt, minute))
        } else {
            (0.0, 0.0)
        };
        self.recent = self.recent * w + requests / dt * (1.0 - w);
        self.last_minute = self.last_minute * w1 + requests / dt * (1.0 - w1);
        self.age += dt;
        self.hour.add(requests, dt, minute, HOUR_BUCKETS);
        self.day.add(requests, dt, QUARTER_HOUR, DAY_BUCKETS);
    }

    /// The median of the last hour's minutes.
    pub fn usual(&self) -> f64 {
        self.hour.median
    }

    /// The lowest rate on record: the lowest quarter-hour of the day; in
    /// the first hour, the lowest minute if lower.
    pub fn lowest(&self) -> f64 {
        let day = self.day.min.unwrap_or(f64::INFINITY);
        if self.day.rates.len() < FIRST_HOUR {
            day.min(self.hour.min.unwrap_or(f64::INFINITY))
        } else {
            day
        }
    }

    /// After a restore from a snapshot.
    pub fn repair(&mut self) {
        self.hour.repair(HOUR_BUCKETS);
        self.day.repair(DAY_BUCKETS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_usual_level_is_the_median_of_the_hour_and_ignores_a_short_surge() {
        let mut h = History::default();
        for _ in 0..3000 {
            h.add(10.0, 1.0, 3600.0);
        }
        for _ in 0..1200 {
            h.add(1000.0, 1.0, 3600.0); // 20 minutes at 100x
        }
        assert!((h.usual() - 10.0).abs() < 1e-6, "{}", h.usual());
    }

    #[test]
    fn an_interval_longer_than_a_bucket_fills_every_bucket_it_spans() {
        let mut h = History::default();
        h.add(7200.0, 7200.0, 3600.0); // two hours at 1 req/s, in one go
        assert_eq!(h.hour.rates.len(), 60);
        assert_eq!(h.day.rates.len(), 8);
        assert!((h.usual() - 1.0).abs() < 1e-6);
        assert_eq!(h.lowest(), 1.0);
    }

    #[test]
    fn the_lowest_quarter_hour_of_the_day_is_remembered() {
        let mut h = History::default();
        h.add(100.0 * 3600.0, 3600.0, 3600.0);
        h.add(5.0 * 900.0, 900.0, 3600.0); // a quiet quarter-hour
        h.add(100.0 * 3600.0, 3600.0, 3600.0);
        assert_eq!(h.lowest(), 5.0);
        assert_eq!(h.usual(), 100.0);
    }

    #[test]
    fn a_snapshot_with_a_ring_of_another_size_is_repaired() {
        let mut h = History::default();
        h.hour.rates = vec![1.0; 500];
        h.hour.head = 700;
        h.repair();
        h.add(60.0, 60.0, 3600.0);
        assert_eq!(h.hour.rates.len(), 60);
    }
}
