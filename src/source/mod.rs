//! Sources: load balancer stats in, `ServerStat`s out. Each format is a pure
//! parser over bytes (no I/O, so every fixture is a unit test); fetching the
//! bytes is the transports' business.

mod csv;
pub mod envoy;
pub mod haproxy_csv;
pub mod nginx;
pub mod prometheus;

use crate::model::ServerStat;

/// A parser: bytes of one stats page to its servers.
pub type Parser = fn(&[u8]) -> Result<Parsed<'_>, SourceError>;

/// A target's `kind`, with what only that kind takes: the stats format it
/// serves. The variants are empty structs, not units, so that a key another
/// kind takes (a `mapping` on an HAProxy target) is an unknown key here.
#[derive(Debug, Clone, PartialEq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Format {
    /// HAProxy's stats CSV (`/stats;csv` or the runtime API's `show stat`).
    Haproxy {},
    /// HAProxy's Prometheus exporters (built-in or haproxy_exporter).
    HaproxyPrometheus {},
    /// Envoy's admin `/clusters` (JSON or text).
    Envoy {},
    /// NGINX Plus API upstreams.
    NginxPlus {},
    /// nginx-module-vts' JSON.
    NginxVts {},
    /// Any Prometheus endpoint, read through the target's `mapping`.
    Prometheus { mapping: Box<prometheus::Mapping> },
}

/// A target's parser, with its mapping where the kind has one.
pub type BoxedParser = Box<dyn Fn(&[u8]) -> Result<Parsed<'_>, SourceError> + Send + Sync>;

impl Format {
    /// The parser of this format.
    pub fn parser(&self) -> BoxedParser {
        let fixed: Parser = match self {
            Format::Prometheus { mapping } => {
                let m = (**mapping).clone();
                return Box::new(move |bytes| prometheus::parse_mapped(bytes, &m));
            }
            Format::Haproxy {} => haproxy_csv::parse,
            Format::HaproxyPrometheus {} => prometheus::parse_haproxy,
            Format::Envoy {} => envoy::parse,
            Format::NginxPlus {} => nginx::parse_plus,
            Format::NginxVts {} => nginx::parse_vts,
        };
        Box::new(fixed)
    }
}

/// The servers of one scrape, and the rows that could not be read. Names
/// may borrow from the page (HAProxy's CSV does): a fleet's every row would
/// otherwise copy two of them every scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed<'a> {
    pub servers: Vec<ServerStat<'a>>,
    /// The LB's frontends, where the format lists them (HAProxy's FRONTEND
    /// rows).
    pub frontends: Vec<crate::model::FrontendStat<'a>>,
    /// Counted and skipped: one bad row never costs the rest of the scrape.
    pub bad_rows: Vec<RowError>,
}

impl Parsed<'_> {
    /// Whether any name borrows from the page.
    pub fn borrows(&self) -> bool {
        let borrowed = |c: &std::borrow::Cow<'_, str>| matches!(c, std::borrow::Cow::Borrowed(_));
        self.servers.iter().any(|s| {
            borrowed(&s.pool) || borrowed(&s.server) || s.algo.as_ref().is_some_and(borrowed)
        }) || self.frontends.iter().any(|f| borrowed(&f.frontend))
    }

    /// The same, owning its names: to outlive the page.
    pub fn into_owned(self) -> Parsed<'static> {
        Parsed {
            servers: self
                .servers
                .into_iter()
                .map(ServerStat::into_owned)
                .collect(),
            frontends: self.frontends.into_iter().map(|f| f.into_owned()).collect(),
            bad_rows: self.bad_rows,
        }
    }
}

/// A row that was skipped, where it was (`line 5`, `upstreams.web.peers[2]`)
/// and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub at: String,
    pub reason: String,
}

/// A response that is not a stats page at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("not UTF-8 text (invalid byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("expected {expected}, got {found:?}")]
    NotThisFormat {
        expected: &'static str,
        found: String,
    },
    #[error("line {line}: bad header: {reason}")]
    BadHeader { line: usize, reason: String },
    #[error("not JSON: {0}")]
    NotJson(String),
}

/// A counter's value from a float (exporters print counters as floats):
/// NaN, an infinity, a negative number or one beyond 2^64 is named, never
/// passed on as a count.
pub fn counter_value(x: f64, name: &str) -> Result<u64, String> {
    if x.is_finite() && (0.0..1.8e19).contains(&x) {
        Ok(x as u64)
    } else {
        Err(format!("`{name}` is {x}, not a count"))
    }
}

/// A weight: finite and zero or more.
pub fn weight_value(x: f64, name: &str) -> Result<f64, String> {
    if x.is_finite() && x >= 0.0 {
        Ok(x)
    } else {
        Err(format!("`{name}` is {x}, not a weight"))
    }
}

/// A JSON member as a counter: absent is `None`; present, a whole number
/// of 0 or more (or a string of one, as Envoy writes them).
pub fn json_counter(v: Option<&serde_json::Value>, name: &str) -> Result<Option<u64>, String> {
    use serde_json::Value;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => s
            .parse::<u64>()
            .map(Some)
            .map_err(|_| format!("`{name}` is {s:?}, not a count")),
        Some(Value::Number(n)) => match n.as_u64() {
            Some(c) => Ok(Some(c)),
            None => counter_value(n.as_f64().unwrap_or(f64::NAN), name).map(Some),
        },
        Some(other) => Err(format!("`{name}` is {other}, not a count")),
    }
}

/// A JSON member as a gauge (a time, a count of sessions): absent or null
/// is `None`; a negative or non-numeric one is an error naming it.
pub fn json_gauge(v: Option<&serde_json::Value>, name: &str) -> Result<Option<f64>, String> {
    use serde_json::Value;
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
            _ => Err(format!("`{name}` is {n}, not a measurement")),
        },
        Some(other) => Err(format!("`{name}` is {other}, not a measurement")),
    }
}

/// A JSON member as a weight: absent is 1.
pub fn json_weight(v: Option<&serde_json::Value>) -> Result<f64, String> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(1.0),
        Some(w) => match w.as_f64() {
            Some(x) => weight_value(x, "weight"),
            None => Err(format!("`weight` is {w}, not a weight")),
        },
    }
}

/// A page as text, and its first non-empty line (to tell formats apart and
/// to name what arrived when it is not a stats page).
pub fn text_and_first_line(bytes: &[u8]) -> Result<(&str, &str), SourceError> {
    let text = std::str::from_utf8(bytes).map_err(|e| SourceError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    Ok((text, first))
}

/// A JSON page; an HTML page (a login or error page) is named as such.
pub fn json(bytes: &[u8], expected: &'static str) -> Result<serde_json::Value, SourceError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let head = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).to_string();
        let first = head.trim_start().lines().next().unwrap_or("");
        if first.starts_with('<') {
            SourceError::NotThisFormat {
                expected,
                found: excerpt(first),
            }
        } else {
            SourceError::NotJson(e.to_string())
        }
    })
}

/// The start of a line, for error messages (never the whole of a huge body).
/// An HTML page (a login or error page) is named by its title alone: its
/// forms and links may echo the request's URL, token and all.
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 60;
    let text = text.trim_start();
    if text.starts_with('<') {
        let lower = text.to_ascii_lowercase();
        let title = lower
            .find("<title>")
            .map(|i| i + "<title>".len())
            .and_then(|i| Some(&text[i..i + lower[i..].find("</title>")?]));
        return match title {
            Some(t) => format!("an HTML page: {}", excerpt(t.trim())),
            None => "an HTML page".into(),
        };
    }
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// HAProxy's rows borrow their names from the page, so a sample keeps
    /// it; a format whose names are copies does not, and `into_owned`
    /// keeps every field.
    #[test]
    fn csv_names_borrow_from_the_page_and_copies_do_not() {
        let csv = "# pxname,svname,status,weight,req_tot,hrsp_5xx,type\nweb,a,UP,1,5,0,2\nweb,\"b\",UP,1,7,1,2\n";
        let parsed = haproxy_csv::parse(csv.as_bytes()).unwrap();
        assert!(parsed.borrows());
        let owned = parsed.clone().into_owned();
        assert!(!owned.borrows());
        assert_eq!(owned, parsed);
        let prom =
            "haproxy_server_http_responses_total{proxy=\"web\",server=\"a\",code=\"2xx\"} 5\n";
        let parsed = prometheus::parse_haproxy(prom.as_bytes()).unwrap();
        assert_eq!(parsed.servers.len(), 1);
        assert!(!parsed.borrows());
    }

    #[test]
    fn values_that_are_no_counts_or_weights_are_named() {
        assert_eq!(counter_value(12.0, "x"), Ok(12));
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 1e20] {
            let e = counter_value(bad, "requests").unwrap_err();
            assert!(e.starts_with("`requests` is "), "{e}");
        }
        assert_eq!(weight_value(0.0, "w"), Ok(0.0));
        assert!(weight_value(f64::NAN, "weight").is_err());
        assert!(weight_value(-2.0, "weight").is_err());
        let v = serde_json::json!({"a": 5, "b": "7", "c": -3, "d": 1.5, "e": "x", "w": -1});
        assert_eq!(json_counter(v.get("a"), "a"), Ok(Some(5)));
        assert_eq!(json_counter(v.get("b"), "b"), Ok(Some(7)));
        assert_eq!(json_counter(v.get("z"), "z"), Ok(None));
        assert_eq!(
            json_counter(v.get("c"), "c"),
            Err("`c` is -3, not a count".into())
        );
        assert_eq!(json_counter(v.get("d"), "d"), Ok(Some(1)));
        assert!(json_counter(v.get("e"), "e").is_err());
        assert_eq!(json_weight(v.get("z")), Ok(1.0));
        assert!(json_weight(v.get("w")).is_err());
    }
}
