//! What the detector currently sees, for lbwatch's metrics, its API and its
//! status page: per target, pool and server the last interval's rates and
//! shares, the expected shares, and the statistics the checks rest on; and
//! the alerts currently firing. Read-only views of the state, computed on
//! demand so the per-sample path pays nothing for them.

use serde::Serialize;

use super::pool::PoolState;
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
    pub servers: Vec<ServerView>,
}

/// One server of a pool.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerView {
    pub server: String,
    pub up: bool,
    pub weight: f64,
    pub backup: bool,
    pub requests_per_second: Option<f64>,
    /// Its share of the pool's requests in the last interval.
    pub share: Option<f64>,
    /// The share it should take: by weight among the servers in rotation,
    /// or its usual share where the pool is judged by history.
    pub expected_share: Option<f64>,
    pub error_ratio: Option<f64>,
}

fn ratio(num: f64, den: f64) -> Option<f64> {
    (den > 0.0).then(|| num / den)
}

pub fn target_view(t: &TargetState) -> TargetView {
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
            .map(|p| pool_view(p, dt))
            .collect(),
    }
}

fn pool_view(p: &PoolState, dt: Option<f64>) -> PoolView {
    let by_weight = follows_weights(p.algo.as_deref());
    let total: f64 = p.interval_requests();
    let errors: f64 = p
        .servers
        .iter()
        .filter(|s| s.has_delta)
        .map(|s| s.d_err)
        .sum();
    let expected_total: f64 = p.expected.iter().sum();
    let listed: Vec<(usize, &super::server::ServerState)> = p
        .servers
        .iter()
        .enumerate()
        .filter(|(_, s)| s.listed)
        .collect();
    let servers: Vec<ServerView> = listed
        .iter()
        .map(|&(i, s)| {
            let expected = p.expected.get(i).copied().unwrap_or(0.0);
            ServerView {
                server: s.name.to_string(),
                up: s.up,
                weight: s.weight,
                backup: s.backup,
                requests_per_second: s
                    .has_delta
                    .then_some(dt)
                    .flatten()
                    .and_then(|dt| ratio(s.d_req, dt)),
                share: if s.has_delta {
                    ratio(s.d_req, total)
                } else {
                    None
                },
                expected_share: ratio(expected, expected_total),
                error_ratio: if s.has_delta {
                    ratio(s.d_err, s.d_req)
                } else {
                    None
                },
            }
        })
        .collect();
    let skew_ratio = servers
        .iter()
        .filter_map(|s| match (s.share, s.expected_share) {
            (Some(share), Some(exp)) if exp > 0.0 => Some(share / exp),
            _ => None,
        })
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
            .and_then(|dt| ratio(total, dt))
            .filter(|_| p.servers.iter().any(|s| s.has_delta)),
        error_ratio: ratio(errors, total),
        skew_ratio,
        effective_servers: effective_servers(p.servers.iter().map(|s| {
            if s.has_delta {
                s.d_req
            } else {
                0.0
            }
        })),
        usual_effective_servers: effective_servers(p.servers.iter().map(|s| s.base_req)),
        servers,
    }
}
