//! The normalized data model shared by every source, the detector and every
//! output: one scrape of one target (`Sample`) in, state changes of alerts
//! (`AlertEvent`) out. The JSON forms are the contract of `docs/replay.md`;
//! recordings, scenario files and other tools depend on them, so field names
//! and optionality here must not drift.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An instant, as microseconds since the Unix epoch (UTC).
///
/// Live samples are stamped once at scrape start; recorded samples carry
/// their own time. The detector never reads a clock: this is its only notion
/// of time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

/// Why an RFC 3339 timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {text:?}: {reason}")]
pub struct TimestampError {
    text: String,
    reason: &'static str,
}

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// Seconds from `earlier` to `self` (negative when `earlier` is later).
    pub fn secs_since(self, earlier: Timestamp) -> f64 {
        (self.0 - earlier.0) as f64 / 1e6
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, any number of fraction
    /// digits (kept to the microsecond), `T`/`t`/space as separator.
    pub fn parse_rfc3339(text: &str) -> Result<Self, TimestampError> {
        let err = |reason| TimestampError {
            text: text.to_string(),
            reason,
        };
        let b = text.as_bytes();
        if b.len() < 20 {
            return Err(err("too short"));
        }
        let num = |range: std::ops::Range<usize>| -> Result<i64, TimestampError> {
            let mut v = 0i64;
            for &c in &b[range] {
                if !c.is_ascii_digit() {
                    return Err(err("expected a digit"));
                }
                v = v * 10 + i64::from(c - b'0');
            }
            Ok(v)
        };
        if b[4] != b'-' || b[7] != b'-' || b[13] != b':' || b[16] != b':' {
            return Err(err("expected YYYY-MM-DDTHH:MM:SS"));
        }
        if !matches!(b[10], b'T' | b't' | b' ') {
            return Err(err("expected 'T' between date and time"));
        }
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
            return Err(err("date out of range"));
        }
        if hour > 23 || minute > 59 || second > 60 {
            return Err(err("time out of range"));
        }
        let mut i = 19;
        let mut micros = 0i64;
        if b[i] == b'.' {
            i += 1;
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                if i - start < 6 {
                    micros = micros * 10 + i64::from(b[i] - b'0');
                }
                i += 1;
            }
            if i == start {
                return Err(err("empty fraction"));
            }
            for _ in (i - start)..6 {
                micros *= 10;
            }
        }
        let offset_s = match &b[i..] {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
                let (oh, om) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
                if oh > 23 || om > 59 {
                    return Err(err("offset out of range"));
                }
                let off = oh * 3600 + om * 60;
                if *sign == b'-' {
                    -off
                } else {
                    off
                }
            }
            _ => return Err(err("expected 'Z' or an offset ±HH:MM")),
        };
        let days = days_from_civil(year, month, day);
        let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_s;
        Ok(Timestamp(secs * 1_000_000 + micros))
    }

    /// Hours, minutes and seconds of the UTC time of day, for summaries.
    pub fn hms(self) -> (i64, i64, i64) {
        let secs = self.0.div_euclid(1_000_000).rem_euclid(86_400);
        (secs / 3600, secs / 60 % 60, secs % 60)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with millisecond precision, or microseconds where the
    /// instant has them, so an event's `ts` is exactly its sample's instant.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.div_euclid(1_000_000);
        let micros = self.0.rem_euclid(1_000_000);
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
        let (hh, mm, ss) = self.hms();
        write!(f, "{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}")?;
        if micros % 1000 == 0 {
            write!(f, ".{:03}Z", micros / 1000)
        } else {
            write!(f, ".{micros:06}Z")
        }
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(d)?;
        Timestamp::parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days: exact proleptic
// Gregorian conversion without a calendar dependency.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

/// One scrape of one target: every server the stats endpoint listed, or the
/// reason the scrape failed. Names borrow from the input where they can, so
/// replaying a large file does not allocate per server.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample<'a> {
    pub ts: Timestamp,
    pub target: Cow<'a, str>,
    pub body: SampleBody<'a>,
    /// The LB's frontends (listeners), where it publishes them: what they
    /// received and denied before any pool saw a request.
    pub frontends: Vec<FrontendStat<'a>>,
}

/// One frontend as the LB reports it (HAProxy's FRONTEND rows). Every
/// counter but the name is optional: NGINX Plus has no deny counter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrontendStat<'a> {
    #[serde(borrow)]
    pub frontend: Cow<'a, str>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_total: Option<u64>,
    /// Requests and connections denied (`dreq` + `dcon` + `dses`); those
    /// denied at the connection level never reach `requests_total`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses_4xx_total: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses_5xx_total: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SampleBody<'a> {
    Servers(Vec<ServerStat<'a>>),
    Error(Cow<'a, str>),
}

/// One server of one pool as the load balancer reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStat<'a> {
    #[serde(borrow)]
    pub pool: Cow<'a, str>,
    #[serde(borrow)]
    pub server: Cow<'a, str>,
    pub requests_total: u64,
    pub responses_5xx_total: u64,
    #[serde(default = "default_true")]
    pub up: bool,
    #[serde(default = "default_weight")]
    pub weight: f64,
    #[serde(default)]
    pub backup: bool,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub algo: Option<Cow<'a, str>>,
    /// The optional signals: `None` is "not published by this LB".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses_4xx_total: Option<u64>,
    /// Failed connection attempts to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_errors_total: Option<u64>,
    /// Aborted or broken responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_errors_total: Option<u64>,
    /// Retries and redispatches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries_total: Option<u64>,
    /// Gauge: the LB's recent average response time, in ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_time_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_current: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_current: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_limit: Option<f64>,
}

impl Default for ServerStat<'_> {
    /// An up server of weight 1 with no counts and no optional signal.
    fn default() -> Self {
        ServerStat {
            pool: Cow::Borrowed(""),
            server: Cow::Borrowed(""),
            requests_total: 0,
            responses_5xx_total: 0,
            up: true,
            weight: 1.0,
            backup: false,
            algo: None,
            responses_4xx_total: None,
            connection_errors_total: None,
            response_errors_total: None,
            retries_total: None,
            response_time_ms: None,
            queue_current: None,
            sessions_current: None,
            session_limit: None,
        }
    }
}

/// A name that owns its text, to outlive what it was read from.
fn owned(c: Cow<'_, str>) -> Cow<'static, str> {
    Cow::Owned(c.into_owned())
}

impl ServerStat<'_> {
    /// The same row, owning its names.
    pub fn into_owned(self) -> ServerStat<'static> {
        ServerStat {
            pool: owned(self.pool),
            server: owned(self.server),
            algo: self.algo.map(owned),
            ..self
        }
    }
}

impl FrontendStat<'_> {
    /// The same frontend, owning its name.
    pub fn into_owned(self) -> FrontendStat<'static> {
        FrontendStat {
            frontend: owned(self.frontend),
            ..self
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_weight() -> f64 {
    1.0
}

/// The wire form: `servers` or `error`, exactly one of them.
#[derive(Deserialize, Serialize)]
struct SampleWire<'a> {
    ts: Timestamp,
    #[serde(borrow)]
    target: Cow<'a, str>,
    #[serde(
        default,
        deserialize_with = "rows",
        skip_serializing_if = "Option::is_none"
    )]
    servers: Option<Vec<ServerStat<'a>>>,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    error: Option<Cow<'a, str>>,
    #[serde(default, borrow, skip_serializing_if = "Vec::is_empty")]
    frontends: Vec<FrontendStat<'a>>,
}

/// Room for this many rows from the start: JSON says no list's length, and
/// a list read without one grows from four, moving every row (over 200
/// bytes) at each doubling (memmove was 6% of `replay`'s time in a profile).
const ROWS_AT_ONCE: usize = 64;

/// A sample's rows, read into room made once for most samples; `null`
/// is no rows, as for any optional field.
fn rows<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<ServerStat<'a>>>, D::Error> {
    struct Rows<'a>(std::marker::PhantomData<ServerStat<'a>>);
    impl<'de: 'a, 'a> serde::de::Visitor<'de> for Rows<'a> {
        type Value = Option<Vec<ServerStat<'a>>>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a list of servers")
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            // A format that says the length: that, within a megabyte of
            // rows (as serde's own lists: the length may lie).
            let cap = (1 << 20) / std::mem::size_of::<ServerStat<'_>>();
            let room = seq.size_hint().unwrap_or(ROWS_AT_ONCE).min(cap);
            let mut rows = Vec::with_capacity(room);
            while let Some(row) = seq.next_element()? {
                rows.push(row);
            }
            Ok(Some(rows))
        }
    }
    d.deserialize_option(Rows(std::marker::PhantomData))
}

impl<'de: 'a, 'a> Deserialize<'de> for Sample<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let w = SampleWire::deserialize(d)?;
        let body = match (w.servers, w.error) {
            (Some(servers), None) => SampleBody::Servers(servers),
            (None, Some(error)) => SampleBody::Error(error),
            (Some(_), Some(_)) => {
                return Err(serde::de::Error::custom(
                    "a sample has either `servers` or `error`, not both",
                ))
            }
            (None, None) => {
                return Err(serde::de::Error::custom(
                    "a sample needs `servers` (a list) or `error` (the scrape failure)",
                ))
            }
        };
        if w.target.is_empty() {
            return Err(serde::de::Error::custom("`target` is empty"));
        }
        Ok(Sample {
            ts: w.ts,
            target: w.target,
            body,
            frontends: w.frontends,
        })
    }
}

impl Serialize for Sample<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (servers, error) = match &self.body {
            SampleBody::Servers(v) => (Some(v.clone()), None),
            SampleBody::Error(e) => (None, Some(e.clone())),
        };
        SampleWire {
            ts: self.ts,
            target: self.target.clone(),
            servers,
            error,
            frontends: self.frontends.clone(),
        }
        .serialize(s)
    }
}

/// The alerts lbwatch raises; one meaning each (see the alerts reference in
/// the README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AlertName {
    TrafficSkew,
    TrafficDrop,
    ErrorSpike,
    ServerDown,
    PoolUnavailable,
    PoolMembershipChanged,
    ScrapeFailed,
    LatencySpike,
    Saturation,
    RequestsDenied,
    ClientErrorSpike,
    ServerFlapping,
}

impl AlertName {
    pub const ALL: [AlertName; 12] = [
        AlertName::TrafficSkew,
        AlertName::TrafficDrop,
        AlertName::ErrorSpike,
        AlertName::ServerDown,
        AlertName::PoolUnavailable,
        AlertName::PoolMembershipChanged,
        AlertName::ScrapeFailed,
        AlertName::LatencySpike,
        AlertName::Saturation,
        AlertName::RequestsDenied,
        AlertName::ClientErrorSpike,
        AlertName::ServerFlapping,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertName::TrafficSkew => "TrafficSkew",
            AlertName::TrafficDrop => "TrafficDrop",
            AlertName::ErrorSpike => "ErrorSpike",
            AlertName::ServerDown => "ServerDown",
            AlertName::PoolUnavailable => "PoolUnavailable",
            AlertName::PoolMembershipChanged => "PoolMembershipChanged",
            AlertName::ScrapeFailed => "ScrapeFailed",
            AlertName::LatencySpike => "LatencySpike",
            AlertName::Saturation => "Saturation",
            AlertName::RequestsDenied => "RequestsDenied",
            AlertName::ClientErrorSpike => "ClientErrorSpike",
            AlertName::ServerFlapping => "ServerFlapping",
        }
    }
}

impl fmt::Display for AlertName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Critical,
    Warning,
    Info,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// One state change of one alert. `ts` is the time of the sample that caused
/// it, never the wall clock, so a replay and a live run agree to the byte.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    pub ts: Timestamp,
    pub state: AlertState,
    pub alert: AlertName,
    pub severity: Severity,
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
}

impl AlertEvent {
    /// Identifies the alert (not the event): the same for its firing and
    /// its resolve, different for every other alert.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.alert,
            self.target,
            self.pool.as_deref().unwrap_or(""),
            self.server.as_deref().unwrap_or("")
        )
    }
}

/// How much a counter grew between two readings; after a restart (lower
/// than before) it counts from zero, as the LB's counters do.
pub fn counter_increase(now: u64, before: u64) -> f64 {
    if now >= before {
        (now - before) as f64
    } else {
        now as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    /// A sample's rows are read into room made once: 40 rows (or none) in
    /// the room for 64; every row read, names borrowed; `null` is no rows;
    /// a `servers` that is no list is refused.
    #[test]
    fn rows_are_read_into_room_made_once() {
        let line = |n: usize| {
            let rows: Vec<String> = (0..n)
                .map(|i| format!(r#"{{"pool":"p","server":"s{i}","requests_total":{i},"responses_5xx_total":0}}"#))
                .collect();
            format!(
                r#"{{"ts":"2024-06-05T14:00:00Z","target":"lb","servers":[{}]}}"#,
                rows.join(",")
            )
        };
        for n in [40, 100, 0] {
            let text = line(n);
            let s: Sample = serde_json::from_str(&text).unwrap();
            let SampleBody::Servers(rows) = &s.body else {
                panic!("{s:?}")
            };
            assert_eq!(rows.len(), n);
            if n <= ROWS_AT_ONCE {
                assert_eq!(rows.capacity(), ROWS_AT_ONCE, "{n} rows");
            }
            assert!(
                rows.iter()
                    .enumerate()
                    .all(|(i, r)| r.requests_total == i as u64
                        && matches!(r.server, Cow::Borrowed(_)))
            );
        }
        // `null` is no rows, as before: an error sample may carry it.
        let null = r#"{"ts":"2024-06-05T14:00:00Z","target":"lb","servers":null,"error":"x"}"#;
        let s: Sample = serde_json::from_str(null).unwrap();
        assert_eq!(s.body, SampleBody::Error("x".into()));
        let not_a_list = r#"{"ts":"2024-06-05T14:00:00Z","target":"lb","servers":3}"#;
        let e = serde_json::from_str::<Sample>(not_a_list)
            .unwrap_err()
            .to_string();
        assert!(e.contains("a list of servers"), "{e}");
    }

    #[test]
    fn timestamps_parse_every_form_the_contract_allows() {
        let base = ts("2024-06-05T14:00:00Z");
        assert_eq!(base.micros(), 1_717_596_000_000_000);
        for (text, micros) in [
            ("2024-06-05T14:00:00.5Z", 500_000),
            ("2024-06-05T14:00:00.123Z", 123_000),
            ("2024-06-05T14:00:00.123456Z", 123_456),
            ("2024-06-05T14:00:00.1234567Z", 123_456),
            ("2024-06-05t14:00:00z", 0),
            ("2024-06-05 14:00:00Z", 0),
            ("2024-06-05T16:00:00+02:00", 0),
            ("2024-06-05T13:30:00-00:30", 0),
        ] {
            assert_eq!(ts(text).micros() - base.micros(), micros, "{text}");
        }
    }

    #[test]
    fn timestamps_refuse_malformed_text_and_name_it() {
        for text in [
            "",
            "2024-06-05",
            "2024-06-05T14:00:00",
            "2024-13-05T14:00:00Z",
            "2024-02-30T14:00:00Z",
            "2024-06-05T24:00:00Z",
            "2024-06-05T14:00:00.Z",
            "2024-06-05T14:00:00+2:00",
            "2024-06-05X14:00:00Z",
            "yesterday at noon, roughly",
        ] {
            let e = Timestamp::parse_rfc3339(text).unwrap_err();
            assert!(e.to_string().contains(&format!("{text:?}")), "{e}");
        }
    }

    #[test]
    fn timestamps_format_as_utc_and_round_trip() {
        for (text, shown) in [
            ("2024-06-05T14:00:00Z", "2024-06-05T14:00:00.000Z"),
            ("2024-02-29T23:59:59.999+01:00", "2024-02-29T22:59:59.999Z"),
            ("1999-12-31T23:59:59.000001Z", "1999-12-31T23:59:59.000001Z"),
        ] {
            assert_eq!(ts(text).to_string(), shown);
            assert_eq!(ts(shown), ts(text));
        }
    }

    #[test]
    fn samples_read_the_contract_form_with_defaults_and_unknown_fields() {
        let line = r#"{"ts":"2024-06-05T14:00:00Z","target":"lb-eu-1","exporter":"x","servers":[
            {"pool":"web","server":"web1","requests_total":120345,"responses_5xx_total":12,"up":true,"weight":1,"scur":3},
            {"pool":"web","server":"web2","requests_total":119877,"responses_5xx_total":9,"algo":"roundrobin"}]}"#;
        let s: Sample = serde_json::from_str(line).unwrap();
        let SampleBody::Servers(v) = &s.body else {
            panic!("servers expected")
        };
        assert_eq!(v.len(), 2);
        assert!(v[1].up && !v[1].backup && v[1].weight == 1.0);
        assert_eq!(v[1].algo.as_deref(), Some("roundrobin"));
        let err: Sample = serde_json::from_str(
            r#"{"ts":"2024-06-05T14:00:01Z","target":"lb-eu-1","error":"connection refused"}"#,
        )
        .unwrap();
        assert_eq!(err.body, SampleBody::Error("connection refused".into()));
    }

    #[test]
    fn samples_without_a_body_or_with_both_are_refused() {
        for line in [
            r#"{"ts":"2024-06-05T14:00:00Z","target":"a"}"#,
            r#"{"ts":"2024-06-05T14:00:00Z","target":"a","servers":[],"error":"x"}"#,
            r#"{"ts":"2024-06-05T14:00:00Z","target":"","servers":[]}"#,
            r#"{"ts":"2024-06-05T14:00:00Z","target":"a","servers":[{"pool":"p","server":"s","requests_total":-1,"responses_5xx_total":0}]}"#,
        ] {
            assert!(serde_json::from_str::<Sample>(line).is_err(), "{line}");
        }
    }

    #[test]
    fn samples_round_trip_through_json() {
        let line = r#"{"ts":"2024-06-05T14:00:00.250Z","target":"lb","servers":[{"pool":"web","server":"w1","requests_total":5,"responses_5xx_total":1,"up":false,"weight":2.0,"backup":true}]}"#;
        let s: Sample = serde_json::from_str(line).unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), line);
    }

    #[test]
    fn alert_events_serialize_exactly_the_contract_fields() {
        let ev = AlertEvent {
            ts: ts("2024-06-05T14:31:02Z"),
            state: AlertState::Resolved,
            alert: AlertName::TrafficSkew,
            severity: Severity::Critical,
            target: "lb-eu-1".into(),
            pool: Some("web".into()),
            server: None,
            summary: None,
            value: None,
        };
        assert_eq!(
            serde_json::to_string(&ev).unwrap(),
            r#"{"ts":"2024-06-05T14:31:02.000Z","state":"resolved","alert":"TrafficSkew","severity":"critical","target":"lb-eu-1","pool":"web"}"#
        );
    }
}
