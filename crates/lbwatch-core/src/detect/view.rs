//! What the detector currently sees, for lbwatch's metrics, its API and its
//! status page: per target, pool and server the last interval's rates and
//! shares, the expected shares, and the statistics the checks rest on; and
//! the alerts currently firing. Read-only views of the state, computed on
//! demand so the per-sample path pays nothing for them.

use serde::Serialize;

use super::latency::LatencyTrack;
use super::maybe::Maybe;
use super::pool::PoolState;
use super::server::ServerState;
use super::skew::follows_weights;
use super::stats::effective_servers;
use super::target::TargetState;
use crate::model::Timestamp;

/// One target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetView {
    pub target: String,
    /// The latest scrape succeeded.
    pub up: bool,
    pub last_sample: Option<Timestamp>,
    pub last_success: Option<Timestamp>,
    /// Seconds the latest rates are measured over.
    pub interval_seconds: Option<f64>,
    pub pools: Vec<PoolView>,
}

/// One pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PoolView {
    pub pool: String,
    pub algorithm: Option<String>,
    /// "weight", or "recent history" for pools whose algorithm does not
    /// follow the weights.
    pub expected_from: &'static str,
    pub requests_per_second: Option<f64>,
    pub error_ratio: Option<f64>,
    /// The largest ratio of a server's share to its expected share in the
    /// last interval: what the share test of TrafficSkew measures.
    pub skew_ratio: Option<f64>,
    /// Effective number of servers taking the traffic (1 / sum of squared
    /// shares) in the last interval, and in the pool's baseline: what the
    /// concentration test of TrafficSkew compares.
    pub effective_servers: Option<f64>,
    pub usual_effective_servers: Option<f64>,
    /// Servers the LB lists in the pool.
    pub listed_servers: usize,
    /// Each of them, in a full view; none in a summary (`target_summary`).
    pub servers: Vec<ServerView>,
}

/// One server of a pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerView {
    pub server: std::sync::Arc<str>,
    pub up: bool,
    pub weight: f64,
    pub backup: bool,
    pub requests_per_second: Maybe,
    /// Its share of the pool's requests in the last interval.
    pub share: Maybe,
    /// The share it should take: by weight among the servers in rotation,
    /// or its usual share where the pool is judged by history.
    pub expected_share: Maybe,
    pub error_ratio: Maybe,
    /// The optional signals, where the LB publishes them.
    #[serde(flatten)]
    pub signals: SignalsView,
}

/// A server's optional signals as last scraped, and its usual response
/// time (LatencySpike's baseline, once learnt).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SignalsView {
    #[serde(skip_serializing_if = "Maybe::is_none")]
    pub response_time_ms: Maybe,
    #[serde(skip_serializing_if = "Maybe::is_none")]
    pub usual_response_time_ms: Maybe,
    #[serde(skip_serializing_if = "Maybe::is_none")]
    pub queue: Maybe,
    #[serde(skip_serializing_if = "Maybe::is_none")]
    pub sessions: Maybe,
    #[serde(skip_serializing_if = "Maybe::is_none")]
    pub session_limit: Maybe,
    /// Fraction of its responses in the last interval that were 4xx.
    #[serde(skip_serializing_if = "Maybe::is_none")]
    pub client_error_ratio: Maybe,
}

fn signals_view(s: &ServerState) -> SignalsView {
    let Some(p) = s.signals.lb.as_deref() else {
        return SignalsView::default();
    };
    SignalsView {
        response_time_ms: p.response_ms,
        usual_response_time_ms: p.latency.as_deref().and_then(LatencyTrack::usual_ms).into(),
        queue: p.queue,
        sessions: p.sessions,
        session_limit: p.session_limit,
        client_error_ratio: p
            .responses_4xx
            .delta()
            .filter(|_| s.counts.has_delta)
            .and_then(|d| ratio(d, s.counts.d_req))
            .into(),
    }
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

/// A target with every server of its pools.
pub fn target_view(t: &TargetState) -> TargetView {
    view_of(t, true)
}

/// A target with its pools' figures but not their servers: what lbwatch
/// keeps after each sample. A fleet's 100,000 servers would otherwise be
/// kept twice, once as state and once as a view nobody may ask for.
pub fn target_summary(t: &TargetState) -> TargetView {
    view_of(t, false)
}

fn view_of(t: &TargetState, with_servers: bool) -> TargetView {
    let dt = t.last_dt;
    TargetView {
        target: t.name.to_string(),
        up: t.last_ok.is_some() && t.fail_streak == 0,
        last_sample: t.last_ts,
        last_success: t.last_ok,
        interval_seconds: dt,
        pools: t
            .pools
            .iter()
            .filter(|p| p.listed)
            .map(|p| pool_view(p, dt, with_servers))
            .collect(),
    }
}

/// What a pool's servers are measured against in the last interval.
struct PoolTotals {
    dt: Option<f64>,
    requests: f64,
    expected: f64,
}

impl PoolTotals {
    fn share(&self, s: &ServerState) -> Maybe {
        if s.counts.has_delta {
            ratio(s.counts.d_req, self.requests).into()
        } else {
            Maybe::default()
        }
    }

    fn expected_share(&self, p: &PoolState, i: usize) -> Maybe {
        let expected = p.expected.get(i).copied().unwrap_or(0.0);
        ratio(expected, self.expected).into()
    }

    fn server_view(&self, p: &PoolState, i: usize, s: &ServerState) -> ServerView {
        ServerView {
            server: s.name.clone(),
            up: s.up,
            weight: s.weight,
            backup: s.backup,
            requests_per_second: s
                .counts
                .has_delta
                .then_some(self.dt)
                .flatten()
                .and_then(|dt| ratio(s.counts.d_req, dt))
                .into(),
            share: self.share(s),
            expected_share: self.expected_share(p, i),
            error_ratio: if s.counts.has_delta {
                ratio(s.counts.d_err, s.counts.d_req).into()
            } else {
                Maybe::default()
            },
            signals: signals_view(s),
        }
    }
}

fn pool_view(p: &PoolState, dt: Option<f64>, with_servers: bool) -> PoolView {
    let by_weight = follows_weights(p.algo.as_deref());
    let totals = PoolTotals {
        dt,
        requests: p.interval_requests(),
        expected: p.expected.iter().sum(),
    };
    let errors: f64 = p
        .servers
        .iter()
        .filter(|s| s.counts.has_delta)
        .map(|s| s.counts.d_err)
        .sum();
    let listed = || p.servers.iter().enumerate().filter(|(_, s)| s.listed);
    let servers: Vec<ServerView> = if with_servers {
        listed().map(|(i, s)| totals.server_view(p, i, s)).collect()
    } else {
        Vec::new()
    };
    let skew_ratio = listed()
        .filter_map(
            |(i, s)| match (totals.share(s).get(), totals.expected_share(p, i).get()) {
                (Some(share), Some(exp)) if exp > 0.0 => Some(share / exp),
                _ => None,
            },
        )
        .reduce(f64::max);
    PoolView {
        pool: p.name.to_string(),
        algorithm: p.algo.as_deref().map(str::to_string),
        expected_from: if by_weight {
            "weight"
        } else {
            "recent history"
        },
        requests_per_second: dt
            .and_then(|dt| ratio(totals.requests, dt))
            .filter(|_| p.servers.iter().any(|s| s.counts.has_delta)),
        error_ratio: ratio(errors, totals.requests),
        skew_ratio,
        effective_servers: effective_servers(p.servers.iter().map(|s| {
            if s.counts.has_delta {
                s.counts.d_req
            } else {
                0.0
            }
        })),
        usual_effective_servers: effective_servers(p.servers.iter().map(|s| s.shares.base_req)),
        listed_servers: listed().count(),
        servers,
    }
}

#[cfg(test)]
mod tests {
    use crate::detect::{DetectConfig, Detector};
    use crate::model::{Sample, SampleBody, ServerStat, Timestamp};

    /// A scrape at second `t`: servers a (weight 3) and b (weight 1) of
    /// pool web, with these counters; pool gone listed only before t=2.
    fn sample(t: i64, a: (u64, u64), b: (u64, u64)) -> Sample<'static> {
        let row = |pool: &str, name: &str, (req, err): (u64, u64), weight: f64| ServerStat {
            pool: pool.to_string().into(),
            server: name.to_string().into(),
            requests_total: req,
            responses_5xx_total: err,
            up: true,
            weight,
            backup: false,
            algo: None,
            ..Default::default()
        };
        let mut rows = vec![row("web", "a", a, 3.0), row("web", "b", b, 1.0)];
        if t < 2 {
            rows.push(row("gone", "x", (1, 0), 1.0));
        }
        Sample {
            ts: Timestamp::from_micros(1_700_000_000_000_000 + t * 5_000_000),
            target: "lb".into(),
            body: SampleBody::Servers(rows),
            frontends: Vec::new(),
        }
    }

    /// The name a view shows is the one `server_name` lends: one copy.
    #[test]
    fn a_servers_name_is_lent_not_copied() {
        let mut d = Detector::new(DetectConfig::default());
        d.observe(&sample(0, (1000, 0), (1000, 0)));
        let lent = d.server_name("lb", "web", "b").unwrap();
        assert_eq!(&*lent, "b");
        let view = d.target_view("lb").unwrap();
        let b = &view.pools[1].servers[1];
        assert!(std::sync::Arc::ptr_eq(&lent, &b.server));
        assert_eq!(d.server_name("lb", "web", "c"), None);
        assert_eq!(d.server_name("lb", "api", "b"), None);
        assert_eq!(d.server_name("other", "web", "b"), None);
    }

    #[test]
    fn a_view_shows_the_last_interval_against_the_weights() {
        let mut d = Detector::new(DetectConfig::default());
        d.observe(&sample(0, (1000, 0), (1000, 0)));
        d.observe(&sample(1, (1300, 3), (1100, 0)));
        d.observe(&sample(2, (1600, 9), (1200, 0)));
        let v = d.target_view("lb").unwrap();
        assert!(v.up);
        assert_eq!(v.interval_seconds, Some(5.0));
        // A pool no longer listed is not shown.
        assert_eq!(v.pools.len(), 1);
        let p = &v.pools[0];
        assert_eq!(p.pool, "web");
        assert_eq!(p.expected_from, "weight");
        assert_eq!(p.requests_per_second, Some(80.0));
        assert_eq!(p.error_ratio, Some(6.0 / 400.0));
        let a = &p.servers[0];
        assert_eq!((&*a.server, a.share.get()), ("a", Some(0.75)));
        assert_eq!(a.expected_share.get(), Some(0.75));
        assert_eq!(a.error_ratio.get(), Some(0.02));
        assert_eq!(p.servers[1].expected_share.get(), Some(0.25));
        assert!(a.signals.queue.is_none());
        // Written as `Option`s are: none is null, or left out.
        let json = serde_json::to_value(a).unwrap();
        assert_eq!(json["share"], 0.75);
        assert_eq!(json.get("queue"), None);
        let none = super::ServerView {
            share: super::Maybe::default(),
            ..a.clone()
        };
        assert_eq!(
            serde_json::to_value(none).unwrap()["share"],
            serde_json::Value::Null
        );
        // The pool that vanished is announced (info), and nothing else.
        let firing: Vec<_> = d.firing().map(|a| (a.alert, a.pool.clone())).collect();
        assert_eq!(
            firing,
            [(
                crate::model::AlertName::PoolMembershipChanged,
                Some("gone".to_string())
            )]
        );
    }

    /// A summary is the full view less the servers: the same pools' figures.
    #[test]
    fn a_summary_is_the_view_without_its_servers() {
        let mut d = Detector::new(DetectConfig::default());
        d.observe(&sample(0, (1000, 0), (1000, 0)));
        d.observe(&sample(1, (1300, 3), (1100, 0)));
        // Equal requests to servers weighted 3:1; pool "gone" left.
        d.observe(&sample(2, (1400, 6), (1200, 0)));
        let full = d.target_view("lb").unwrap();
        let summary = d.target_summary("lb").unwrap();
        assert_eq!(full.pools.len(), 1);
        assert_eq!(full.pools[0].listed_servers, 2);
        assert_eq!(full.pools[0].servers.len(), 2);
        assert!(summary.pools.iter().all(|p| p.servers.is_empty()));
        let mut stripped = full.clone();
        for p in &mut stripped.pools {
            p.servers.clear();
        }
        assert_eq!(summary, stripped);
        // b took half against a quarter expected.
        assert_eq!(summary.pools[0].skew_ratio, Some(2.0));
        assert_eq!(summary.pools[0].error_ratio, Some(3.0 / 200.0));
        assert_eq!(summary.pools[0].requests_per_second, Some(40.0));
        assert_eq!(d.target_summary("other"), None);
    }

    #[test]
    fn a_failed_scrape_shows_the_target_down_with_its_last_success() {
        let mut d = Detector::new(DetectConfig::default());
        d.observe(&sample(0, (1000, 0), (1000, 0)));
        let mut failed = sample(1, (0, 0), (0, 0));
        failed.body = SampleBody::Error("connection refused".into());
        d.observe(&failed);
        let v = d.target_view("lb").unwrap();
        assert!(!v.up);
        assert_eq!(v.last_success, Some(sample(0, (0, 0), (0, 0)).ts));
        assert_eq!(v.last_sample, Some(failed.ts));
    }
}
