//! Every threshold of the detector, with defaults that work untuned on pools
//! from 0.5 req/s to 20k req/s and scrape intervals from 1 s to 15 s.
//!
//! The defaults are argued in the README's tuning section; the short form:
//! effect sizes are set well outside what healthy traffic shows (a hot server
//! runs at up to ~1.4x its share, per-interval noise reaches ~1.6x at 1 s
//! scrapes), and significance levels are small enough that a pool scraped
//! every second for a year raises no alert by chance.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A duration in seconds, written in the config as humantime reads it
/// (`"500ms"`, `"15s"`, `"10m"`, `"1h 30m"`, `"7d"`) or as a plain number
/// of seconds.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Secs(pub f64);

/// A duration that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {0:?}: expected a number with a unit, like 500ms, 15s, 10m, 1h or 7d")]
pub struct DurationError(pub String);

impl Secs {
    pub fn parse(text: &str) -> Result<Self, DurationError> {
        let t = text.trim();
        let err = || DurationError(text.into());
        if let Ok(secs) = t.parse::<f64>() {
            return (secs.is_finite() && secs >= 0.0)
                .then_some(Secs(secs))
                .ok_or_else(err);
        }
        humantime::parse_duration(t)
            .map(|d| Secs(d.as_secs_f64()))
            .map_err(|_| err())
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}s", self.0)
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Num(f64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Num(n) => Ok(Secs(n)),
            Raw::Text(t) => Secs::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

/// The `[detection]` section.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DetectConfig {
    /// Consecutive samples a statistical condition must hold before its alert
    /// fires (TrafficSkew). ErrorSpike and TrafficDrop accumulate their own
    /// evidence over at least two intervals and fire as soon as it suffices.
    pub fire_after_samples: u32,
    /// ... and across at least this long, so a one-second hiccup at 1 s
    /// scrapes is not a fault (at longer intervals two samples span it).
    pub fire_after: Secs,
    /// A firing alert resolves once its condition has been clear this long
    /// (and for at least two samples): one fault, one firing, one resolve.
    /// TrafficDrop resolves after two intervals of traffic instead: an
    /// outage that is over is over.
    pub resolve_after: Secs,
    /// Time constant of the pools' own baselines (share per server, 5xx ratio).
    pub baseline_window: Secs,
    /// Healthy traffic needed before a baseline-based check is armed (at
    /// most 60 scrape intervals, see `warmup`).
    pub baseline_warmup: Secs,
    /// Baselines do not learn while an alert of theirs is pending or firing,
    /// so they never learn the fault; past this, a condition that persists is
    /// taken as the new normal and learnt.
    pub baseline_max_freeze: Secs,
    /// Consecutive failed scrapes that raise ScrapeFailed.
    pub scrape_failures: u32,
    /// PoolMembershipChanged (info) resolves after the pool is stable this long.
    pub membership_hold: Secs,
    pub skew: SkewConfig,
    pub errors: ErrorConfig,
    pub drop: DropConfig,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SkewConfig {
    /// A server taking at least this multiple of its expected share, in a
    /// single interval, is skewed (when significant).
    pub hot_ratio: f64,
    /// The same over the smoothing window: catches slow drifts while single
    /// noisy intervals cannot reach it.
    pub hot_ratio_sustained: f64,
    /// A server taking at most this fraction of its expected share is starved.
    pub cold_ratio: f64,
    /// Smoothing window (time constant) of the sustained test.
    pub window: Secs,
    /// Significance level of the goodness-of-fit test (G-test) and of the
    /// per-server binomial test, before the Bonferroni correction for the
    /// number of servers.
    pub significance: f64,
    /// A server expected to receive fewer requests than this in the window is
    /// not judged starved (nothing can be concluded from 0 of 2).
    pub min_expected: f64,
    /// Traffic concentrated on at most this fraction of the pool's usual
    /// effective number of servers (1/sum of squared shares) is skewed even
    /// when the weights the LB reports agree.
    pub concentration_ratio: f64,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ErrorConfig {
    /// The 5xx ratio must reach this multiple of its baseline ...
    pub ratio_multiple: f64,
    /// ... and exceed it by at least this much (absolute, 0.005 = 0.5 points).
    pub min_increase: f64,
    /// Baseline 5xx ratio assumed at least this (a server that never failed
    /// still fails sometimes).
    pub baseline_floor: f64,
    /// Until the baseline is armed, the ratio it is compared with is at least this.
    pub unarmed_floor: f64,
    /// Evidence (log-likelihood ratio, CUSUM) needed to fire; one interval
    /// contributes at most half of it, so a one-interval blip never fires.
    pub evidence: f64,
    /// Significance level of the binomial test, per pool; per server it is
    /// divided by the number of servers (Bonferroni).
    pub significance: f64,
}

/// TrafficDrop: see `drop.rs` for the model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DropConfig {
    /// A stop: the requests of a run of intervals stay at most this
    /// fraction of the rate of the minute before (and a tenth of the usual
    /// level, a quarter of the day's lowest quarter-hour), plus one stray
    /// request.
    pub ratio: f64,
    /// The usual level is the median of the per-minute rates over this long
    /// (60 buckets): long enough that a surge or a lull shorter than half of
    /// it does not move it.
    pub baseline_window: Secs,
    /// A stop pages only when it is significant at this level against a
    /// pool still running at `lull_ratio` of its recent level (the last
    /// five minutes, at most four times the usual level) ...
    pub significance: f64,
    /// ... the deepest a natural lull is assumed to go.
    pub lull_ratio: f64,
    /// ... and only once it has lasted this many times the longest natural
    /// lull on record ...
    pub lull_margin: f64,
    /// ... and at least this long: a stall of a few seconds that recovers
    /// by itself is over before anyone could act on a page.
    pub min_duration: Secs,
    /// Lulls on record fade over this long (time constant).
    pub lull_memory: Secs,
    /// History a pool needs before a stop can page: with less, a surge it
    /// started in reads as its usual level.
    pub min_history: Secs,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            fire_after_samples: 2,
            fire_after: Secs(2.0),
            resolve_after: Secs(60.0),
            baseline_window: Secs(600.0),
            baseline_warmup: Secs(120.0),
            baseline_max_freeze: Secs(3600.0),
            scrape_failures: 3,
            membership_hold: Secs(300.0),
            skew: SkewConfig::default(),
            errors: ErrorConfig::default(),
            drop: DropConfig::default(),
        }
    }
}

impl Default for SkewConfig {
    fn default() -> Self {
        SkewConfig {
            hot_ratio: 2.0,
            hot_ratio_sustained: 1.6,
            cold_ratio: 0.3,
            window: Secs(60.0),
            significance: 1e-6,
            min_expected: 5.0,
            concentration_ratio: 0.5,
        }
    }
}

impl Default for ErrorConfig {
    fn default() -> Self {
        ErrorConfig {
            ratio_multiple: 4.0,
            min_increase: 0.005,
            baseline_floor: 1e-4,
            unarmed_floor: 0.01,
            evidence: 12.0,
            significance: 1e-6,
        }
    }
}

impl Default for DropConfig {
    fn default() -> Self {
        DropConfig {
            ratio: 0.02,
            baseline_window: Secs(3600.0),
            significance: 1e-5,
            lull_ratio: 0.07,
            lull_margin: 1.5,
            min_duration: Secs(8.0),
            lull_memory: Secs(7.0 * 86400.0),
            min_history: Secs(600.0),
        }
    }
}

/// One invalid value, with the key path that holds it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("detection.{key}: {value} is invalid: {expected}")]
pub struct InvalidValue {
    pub key: &'static str,
    pub value: String,
    pub expected: &'static str,
}

impl DetectConfig {
    /// Healthy traffic a baseline needs before its check is armed, at a
    /// scrape interval of `dt` seconds: `baseline_warmup`, but never more
    /// than 60 intervals (at 1 s scrapes a minute of data is plenty, and a
    /// restarted lbwatch should not stay blind longer than it must).
    pub fn warmup(&self, dt: f64) -> f64 {
        self.baseline_warmup.0.min(60.0 * dt)
    }

    /// Checks every value and returns all problems at once.
    pub fn validate(&self) -> Vec<InvalidValue> {
        let mut rules = self.general_rules();
        rules.extend(self.skew.rules());
        rules.extend(self.errors.rules());
        rules.extend(self.drop.rules());
        rules
            .into_iter()
            .filter(|r| !r.ok)
            .map(|r| InvalidValue {
                key: r.key,
                value: r.value,
                expected: r.expected,
            })
            .collect()
    }

    fn general_rules(&self) -> Vec<Rule> {
        let mut rules = vec![
            rule(
                self.fire_after_samples >= 1,
                "fire_after_samples",
                self.fire_after_samples,
                "at least 1",
            ),
            rule(
                self.scrape_failures >= 1,
                "scrape_failures",
                self.scrape_failures,
                "at least 1",
            ),
            rule(
                non_negative(self.fire_after),
                "fire_after",
                self.fire_after,
                "a duration of zero or more",
            ),
        ];
        for (key, v) in [
            ("resolve_after", self.resolve_after),
            ("baseline_window", self.baseline_window),
            ("baseline_warmup", self.baseline_warmup),
            ("baseline_max_freeze", self.baseline_max_freeze),
            ("membership_hold", self.membership_hold),
            ("skew.window", self.skew.window),
            ("drop.baseline_window", self.drop.baseline_window),
            ("drop.lull_memory", self.drop.lull_memory),
            ("drop.min_history", self.drop.min_history),
        ] {
            rules.push(rule(
                v.0.is_finite() && v.0 > 0.0,
                key,
                v,
                "a positive duration",
            ));
        }
        rules
    }
}

/// One setting's check: whether it holds, and what to say if not.
#[derive(Debug)]
struct Rule {
    ok: bool,
    key: &'static str,
    value: String,
    expected: &'static str,
}

fn rule(ok: bool, key: &'static str, value: impl fmt::Display, expected: &'static str) -> Rule {
    Rule {
        ok,
        key,
        value: value.to_string(),
        expected,
    }
}

fn prob(p: f64) -> bool {
    p > 0.0 && p < 1.0
}

fn non_negative(d: Secs) -> bool {
    d.0.is_finite() && d.0 >= 0.0
}

impl SkewConfig {
    fn rules(&self) -> Vec<Rule> {
        vec![
            rule(
                self.hot_ratio > 1.0,
                "skew.hot_ratio",
                self.hot_ratio,
                "greater than 1",
            ),
            rule(
                self.hot_ratio_sustained > 1.0 && self.hot_ratio_sustained <= self.hot_ratio,
                "skew.hot_ratio_sustained",
                self.hot_ratio_sustained,
                "greater than 1 and at most skew.hot_ratio",
            ),
            rule(
                prob(self.cold_ratio),
                "skew.cold_ratio",
                self.cold_ratio,
                "between 0 and 1",
            ),
            rule(
                prob(self.significance),
                "skew.significance",
                self.significance,
                "a probability between 0 and 1",
            ),
            rule(
                self.min_expected >= 0.0,
                "skew.min_expected",
                self.min_expected,
                "zero or more",
            ),
            rule(
                prob(self.concentration_ratio),
                "skew.concentration_ratio",
                self.concentration_ratio,
                "between 0 and 1",
            ),
        ]
    }
}

impl ErrorConfig {
    fn rules(&self) -> Vec<Rule> {
        vec![
            rule(
                self.ratio_multiple > 1.0,
                "errors.ratio_multiple",
                self.ratio_multiple,
                "greater than 1",
            ),
            rule(
                (0.0..1.0).contains(&self.min_increase),
                "errors.min_increase",
                self.min_increase,
                "between 0 and 1",
            ),
            rule(
                prob(self.baseline_floor),
                "errors.baseline_floor",
                self.baseline_floor,
                "a ratio between 0 and 1",
            ),
            rule(
                prob(self.unarmed_floor),
                "errors.unarmed_floor",
                self.unarmed_floor,
                "a ratio between 0 and 1",
            ),
            rule(
                self.evidence > 0.0,
                "errors.evidence",
                self.evidence,
                "positive",
            ),
            rule(
                prob(self.significance),
                "errors.significance",
                self.significance,
                "a probability between 0 and 1",
            ),
        ]
    }
}

impl DropConfig {
    fn rules(&self) -> Vec<Rule> {
        vec![
            rule(
                self.ratio > 0.0 && self.ratio < self.lull_ratio,
                "drop.ratio",
                self.ratio,
                "between 0 and drop.lull_ratio",
            ),
            rule(
                prob(self.lull_ratio),
                "drop.lull_ratio",
                self.lull_ratio,
                "between 0 and 1",
            ),
            rule(
                self.lull_margin >= 1.0,
                "drop.lull_margin",
                self.lull_margin,
                "at least 1",
            ),
            rule(
                non_negative(self.min_duration),
                "drop.min_duration",
                self.min_duration,
                "a duration of zero or more",
            ),
            rule(
                prob(self.significance),
                "drop.significance",
                self.significance,
                "a probability between 0 and 1",
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_every_unit() {
        for (text, secs) in [
            ("500ms", 0.5),
            ("15s", 15.0),
            ("10m", 600.0),
            ("1h", 3600.0),
            ("7d", 604800.0),
            ("2.5", 2.5),
            (" 3m ", 180.0),
            ("1h 30m", 5400.0),
            ("2weeks", 1209600.0),
            ("1.5s", 1.5),
        ] {
            assert_eq!(Secs::parse(text), Ok(Secs(secs)), "{text}");
        }
        for text in ["", "m", "1e400s", "-3s", "-3", "NaN", "fast"] {
            let e = Secs::parse(text).unwrap_err();
            assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
        }
    }

    #[test]
    fn defaults_are_valid() {
        assert_eq!(DetectConfig::default().validate(), vec![]);
    }

    #[test]
    fn every_invalid_value_is_reported_with_its_key() {
        let mut c = DetectConfig::default();
        c.skew.hot_ratio = 0.5;
        c.errors.significance = 2.0;
        c.drop.ratio = 0.9;
        c.resolve_after = Secs(0.0);
        let keys: Vec<_> = c.validate().iter().map(|e| e.key).collect();
        assert_eq!(
            keys,
            [
                "resolve_after",
                "skew.hot_ratio",
                "skew.hot_ratio_sustained",
                "errors.significance",
                "drop.ratio"
            ]
        );
        let msg = c.validate()[1].to_string();
        assert_eq!(
            msg,
            "detection.skew.hot_ratio: 0.5 is invalid: greater than 1"
        );
    }
}
