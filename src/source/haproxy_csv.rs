//! HAProxy's stats CSV (`/stats;csv` and the runtime API's `show stat`),
//! every version from 1.4 to 2.9: a pure function from bytes to servers.
//!
//! Columns are found by name in the `# pxname,svname,...` header. A dump
//! without one (some tools strip it) is read with HAProxy's own column
//! order, which versions have only ever extended at the end. One bad row is
//! counted and skipped; the rest of the scrape survives.

use std::borrow::Cow;
use std::collections::HashMap;

use super::csv::{records, split, Fields, Record};
use super::{Parsed, RowError, SourceError};
use crate::model::{FrontendStat, ServerStat};

/// HAProxy's documented field order (management guide, "CSV format").
pub const DEFAULT_HEADER: &[&str] = &[
    "pxname",
    "svname",
    "qcur",
    "qmax",
    "scur",
    "smax",
    "slim",
    "stot",
    "bin",
    "bout",
    "dreq",
    "dresp",
    "ereq",
    "econ",
    "eresp",
    "wretr",
    "wredis",
    "status",
    "weight",
    "act",
    "bck",
    "chkfail",
    "chkdown",
    "lastchg",
    "downtime",
    "qlimit",
    "pid",
    "iid",
    "sid",
    "throttle",
    "lbtot",
    "tracked",
    "type",
    "rate",
    "rate_lim",
    "rate_max",
    "check_status",
    "check_code",
    "check_duration",
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
    "hanafail",
    "req_rate",
    "req_rate_max",
    "req_tot",
    "cli_abrt",
    "srv_abrt",
    "comp_in",
    "comp_out",
    "comp_byp",
    "comp_rsp",
    "lastsess",
    "last_chk",
    "last_agt",
    "qtime",
    "ctime",
    "rtime",
    "ttime",
    "agent_status",
    "agent_code",
    "agent_duration",
    "check_desc",
    "agent_desc",
    "check_rise",
    "check_fall",
    "check_health",
    "agent_rise",
    "agent_fall",
    "agent_health",
    "addr",
    "cookie",
    "mode",
    "algo",
];

/// The optional signals' columns, read where the version has them.
const SIGNALS: [&str; 11] = [
    "econ", "eresp", "wretr", "wredis", "rtime", "qcur", "scur", "slim", "dreq", "dcon", "dses",
];
const ECON: usize = 0;
const ERESP: usize = 1;
const WRETR: usize = 2;
const WREDIS: usize = 3;
const RTIME: usize = 4;
const QCUR: usize = 5;
const SCUR: usize = 6;
const SLIM: usize = 7;
const DENIALS: [usize; 3] = [8, 9, 10];

const HRSP: [&str; 6] = [
    "hrsp_1xx",
    "hrsp_2xx",
    "hrsp_3xx",
    "hrsp_4xx",
    "hrsp_5xx",
    "hrsp_other",
];

/// Where the columns lbwatch reads are in the current header.
#[derive(Debug, Clone)]
struct Columns {
    /// Fields a row must have, and whether a header line said so (rather
    /// than the dump's other rows).
    width: Option<usize>,
    width_from_header: bool,
    pxname: usize,
    svname: usize,
    status: usize,
    weight: Option<usize>,
    bck: Option<usize>,
    kind: Option<usize>,
    req_tot: Option<usize>,
    hrsp: [Option<usize>; 6],
    lbtot: Option<usize>,
    stot: Option<usize>,
    algo: Option<usize>,
    /// The columns of `SIGNALS`.
    signals: [Option<usize>; SIGNALS.len()],
    /// The highest of the indexes above.
    last: usize,
}

impl Columns {
    fn from_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<Self, String> {
        let at: HashMap<&str, usize> = names.enumerate().map(|(i, n)| (n.trim(), i)).collect();
        let need = |n: &str| {
            at.get(n)
                .copied()
                .ok_or_else(|| format!("no `{n}` column in the header"))
        };
        let hrsp = HRSP.map(|n| at.get(n).copied());
        Ok(Columns {
            width: None,
            width_from_header: false,
            pxname: need("pxname")?,
            svname: need("svname")?,
            status: need("status")?,
            weight: at.get("weight").copied(),
            bck: at.get("bck").copied(),
            kind: at.get("type").copied(),
            req_tot: at.get("req_tot").copied(),
            hrsp,
            lbtot: at.get("lbtot").copied(),
            stot: at.get("stot").copied(),
            algo: at.get("algo").copied(),
            signals: SIGNALS.map(|n| at.get(n).copied()),
            last: 0,
        }
        .with_last())
    }

    /// Records the last column lbwatch reads: the rest of a row is counted,
    /// never split.
    fn with_last(mut self) -> Self {
        let opt = [
            self.weight,
            self.bck,
            self.kind,
            self.req_tot,
            self.lbtot,
            self.stot,
            self.algo,
        ];
        self.last = [self.pxname, self.svname, self.status]
            .into_iter()
            .chain(opt.into_iter().flatten())
            .chain(self.hrsp.into_iter().flatten())
            .chain(self.signals.into_iter().flatten())
            .max()
            .unwrap_or(0);
        self
    }
}

/// What HAProxy's status says about a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    /// Up and taking its weighted share.
    Up,
    /// Failing its health check (or, `MAINT (resolution)`, its DNS).
    Down,
    /// Taken out of rotation on purpose (MAINT, DRAIN, NOLB): up, weight 0.
    OutOfRotation,
}

fn status(text: &str) -> Option<Status> {
    // The common cases without an allocation.
    match text.trim() {
        "UP" => return Some(Status::Up),
        "DOWN" => return Some(Status::Down),
        "no check" => return Some(Status::Up),
        "MAINT" | "DRAIN" | "NOLB" => return Some(Status::OutOfRotation),
        _ => {}
    }
    let s = text.trim().to_ascii_uppercase();
    if s.starts_with("MAINT (RESOLUTION)") {
        return Some(Status::Down);
    }
    // "UP", "UP 1/3" (going down), "DOWN 1/2" (going up), "... (agent)",
    // "MAINT (via be/srv)"; anything after that is a garbled row.
    let word = s.split([' ', '(']).next().unwrap_or("");
    let rest = s[word.len()..].trim();
    let transition = rest.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty() && !b.is_empty() && a.bytes().chain(b.bytes()).all(|c| c.is_ascii_digit())
    });
    let note = rest.starts_with('(') && rest.ends_with(')');
    if !(rest.is_empty() || transition || note || s == "NO CHECK") {
        return None;
    }
    match word {
        "UP" => Some(Status::Up),
        "NO" if s == "NO CHECK" => Some(Status::Up),
        "DOWN" => Some(Status::Down),
        "MAINT" | "DRAIN" | "NOLB" => Some(Status::OutOfRotation),
        _ => None,
    }
}

fn number(fields: &Fields<'_>, col: Option<usize>, name: &str) -> Result<Option<u64>, String> {
    let Some(field) = col.and_then(|c| fields.get(c)) else {
        return Ok(None);
    };
    // Nearly every field is a plain count of a few digits: read at once,
    // without trimming and the standard parser's generality.
    if let Some(n) = digits(field.as_bytes()) {
        return Ok(Some(n));
    }
    let text = field.trim();
    if text.is_empty() {
        return Ok(None);
    }
    text.parse()
        .map(Some)
        .map_err(|_| format!("`{name}` is {text:?}, not a count"))
}

/// The value of 1 to 19 ASCII digits (no overflow possible); `None` for
/// anything else, which the standard parser then reads or refuses.
fn digits(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 19 {
        return None;
    }
    b.iter().try_fold(0u64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + u64::from(c - b'0'))
    })
}

/// The most rows reserved before reading any (about a megabyte).
const PRESIZED_ROWS: usize = 4096;

/// Parses a stats CSV page.
pub fn parse(bytes: &[u8]) -> Result<Parsed<'_>, SourceError> {
    let (text, first) = super::text_and_first_line(bytes)?;
    if first.starts_with('<') {
        return Err(SourceError::NotThisFormat {
            expected: "HAProxy stats CSV",
            found: super::excerpt(first),
        });
    }
    let mut cols = Columns::from_names(DEFAULT_HEADER.iter().copied())
        .expect("the default header has every column");
    let mut header: Vec<Cow<'_, str>> = Vec::with_capacity(128);
    let mut fields = Fields::default();
    if !text.lines().any(|l| l.starts_with('#')) {
        // No header: every row of a dump has the same width, so the most
        // common width stands in for the header's.
        let mut widths: HashMap<usize, usize> = HashMap::new();
        for r in records(text).filter(|r| !r.text.trim().is_empty()) {
            split(r.text, &mut header);
            *widths.entry(header.len()).or_default() += 1;
        }
        cols.width = widths
            .into_iter()
            .max_by_key(|&(w, n)| (n, w))
            .map(|(w, _)| w);
    }
    let mut algos: HashMap<Cow<'_, str>, Cow<'_, str>> = HashMap::new();
    // A row a line, nearly: sized once rather than doubled as it fills (a
    // page's rows wait for the detector with whatever room they have). Up
    // to `PRESIZED_ROWS` only: a page of empty or garbage lines must not
    // reserve a row for each before any is read.
    let lines = memchr::memchr_iter(b'\n', text.as_bytes()).count() + 1;
    let mut rows: Vec<ServerStat<'_>> = Vec::with_capacity(lines.min(PRESIZED_ROWS));
    let mut bad_rows = Vec::new();
    let mut frontends = Vec::new();
    let mut saw_header = false;
    let mut other_rows = 0usize;
    for Record {
        line_no,
        text: line,
        quoted,
    } in records(text)
    {
        if line.trim().is_empty() {
            continue;
        }
        if let Some(names) = line.strip_prefix('#') {
            // Each dump of a concatenation brings its own header.
            split(names.trim_start(), &mut header);
            cols = Columns::from_names(header.iter().map(|f| f.as_ref())).map_err(|reason| {
                SourceError::BadHeader {
                    line: line_no,
                    reason,
                }
            })?;
            cols.width = Some(header.len());
            cols.width_from_header = true;
            saw_header = true;
            continue;
        }
        fields.split(line, quoted, cols.last + 1);
        match row(&fields, &cols) {
            Ok(Row::Server(s, unread)) => {
                rows.push(s);
                bad_rows.extend(unread.into_iter().map(|reason| RowError {
                    at: format!("line {line_no}"),
                    reason,
                }));
            }
            Ok(Row::Backend { pool, algo }) => {
                other_rows += 1;
                if let Some(a) = algo {
                    algos.insert(pool, a);
                }
            }
            Ok(Row::Frontend(f)) => {
                other_rows += 1;
                frontends.push(f);
            }
            Ok(Row::Other) => other_rows += 1,
            Err(reason) => bad_rows.push(RowError {
                at: format!("line {line_no}"),
                reason,
            }),
        }
    }
    // Not one row made sense and nothing announced a stats page: this is
    // something else (an error page, garbage), not a page of bad rows.
    if rows.is_empty() && other_rows == 0 && !bad_rows.is_empty() && !saw_header {
        return Err(SourceError::NotThisFormat {
            expected: "HAProxy stats CSV",
            found: super::excerpt(first),
        });
    }
    if !algos.is_empty() {
        for s in &mut rows {
            s.algo = algos.get(s.pool.as_ref()).cloned();
        }
    }
    Ok(Parsed {
        servers: rows,
        frontends,
        bad_rows,
    })
}

enum Row<'a> {
    /// A server, and why any of its optional signals could not be read.
    Server(ServerStat<'a>, Vec<String>),
    Frontend(FrontendStat<'a>),
    Backend {
        pool: Cow<'a, str>,
        algo: Option<Cow<'a, str>>,
    },
    Other,
}

fn row<'a>(f: &Fields<'a>, c: &Columns) -> Result<Row<'a>, String> {
    let width_found = f.width;
    // A row has the header's width (or, without a header, the dump's usual
    // width): one comma missing shifts every column after it (a real HAProxy
    // bug, "DRAIN (agent)1"). Older versions' rows are short but consistent.
    if let Some(width) = c.width {
        if width_found != width {
            let by = if c.width_from_header {
                "the header has"
            } else {
                "the other rows have"
            };
            return Err(format!(
                "{width_found} fields where {by} {width}: a missing or extra comma would shift every column"
            ));
        }
    }
    let needed = c.status.max(c.svname).max(c.pxname) + 1;
    if width_found < needed {
        return Err(format!(
            "{width_found} fields, fewer than the {needed} needed"
        ));
    }
    let field = |i: usize| f.get(i).unwrap_or("").trim();
    let (pxname, svname) = (field(c.pxname), field(c.svname));
    if pxname.is_empty() || svname.is_empty() {
        return Err("no proxy or server name".into());
    }
    let kind = c
        .kind
        .and_then(|k| f.get(k))
        .map(|k| k.trim())
        .filter(|k| !k.is_empty());
    // FRONTEND and BACKEND are reserved names: they decide even where a
    // tool filled `type` wrongly (haproxy_exporter's test data does).
    let is_backend = match (svname, kind) {
        ("FRONTEND", _) => return frontend(f, c).map(Row::Frontend),
        ("BACKEND", _) => true,
        (_, Some("1")) => true,
        (_, Some("2") | None) => false,
        (_, Some("0" | "3")) => return Ok(Row::Other),
        (_, Some(other)) => return Err(format!("`type` is {other:?}, not 0-3")),
    };
    if is_backend {
        let algo = c.algo.and_then(|a| f.name(a)).filter(|a| !a.is_empty());
        return Ok(Row::Backend {
            pool: f.name(c.pxname).unwrap_or_default(),
            algo,
        });
    }
    let status_text = field(c.status);
    let st = status(status_text)
        .ok_or_else(|| format!("status {status_text:?} is not a server status"))?;
    let weight = number(f, c.weight, "weight")?;
    let backup = number(f, c.bck, "bck")?.unwrap_or(0) == 1;
    // Requests: req_tot where the version keeps it for servers (2.2+), else
    // the sum of the HTTP responses, else (TCP) how often the server was
    // chosen, else its sessions.
    let mut requests = number(f, c.req_tot, "req_tot")?;
    if requests.is_none() {
        let mut sum = None;
        for (col, name) in c.hrsp.iter().zip(HRSP) {
            if let Some(n) = number(f, *col, name)? {
                sum = Some(sum.unwrap_or(0u64).saturating_add(n));
            }
        }
        requests = sum;
    }
    if requests.is_none() {
        requests = number(f, c.lbtot, "lbtot")?;
    }
    if requests.is_none() {
        requests = number(f, c.stot, "stot")?;
    }
    let requests = requests.ok_or("no request counter (req_tot, hrsp_*, lbtot, stot all empty)")?;
    let errors = number(f, c.hrsp[4], "hrsp_5xx")?.unwrap_or(0);
    let weight = match st {
        Status::OutOfRotation => 0.0,
        _ => weight.unwrap_or(1) as f64,
    };
    let mut bad = Vec::new();
    Ok(Row::Server(
        ServerStat {
            pool: f.name(c.pxname).unwrap_or_default(),
            server: f.name(c.svname).unwrap_or_default(),
            requests_total: requests,
            responses_5xx_total: errors,
            up: st != Status::Down,
            weight,
            backup,
            algo: None,
            ..signals(f, c, &mut bad)
        },
        bad,
    ))
}

/// A server row's optional signals (the other fields left default).
/// A server row's optional signals (the other fields left default). One
/// that cannot be read is left out, and said in `bad`: the row's requests
/// and health still count.
fn signals(f: &Fields<'_>, c: &Columns, bad: &mut Vec<String>) -> ServerStat<'static> {
    let mut read = |col: Option<usize>, name: &str| {
        number(f, col, name).unwrap_or_else(|why| {
            bad.push(why);
            None
        })
    };
    let c4xx = read(c.hrsp[3], "hrsp_4xx");
    let mut n = |i: usize| read(c.signals[i], SIGNALS[i]);
    let retries = match (n(WRETR), n(WREDIS)) {
        (None, None) => None,
        (a, b) => Some(a.unwrap_or(0).saturating_add(b.unwrap_or(0))),
    };
    ServerStat {
        responses_4xx_total: c4xx,
        connection_errors_total: n(ECON),
        response_errors_total: n(ERESP),
        retries_total: retries,
        response_time_ms: n(RTIME).map(|x| x as f64),
        queue_current: n(QCUR).map(|x| x as f64),
        sessions_current: n(SCUR).map(|x| x as f64),
        // HAProxy leaves `slim` empty (or 0 in some versions) for no limit.
        session_limit: n(SLIM).map(|x| x as f64).filter(|&l| l > 0.0),
        ..Default::default()
    }
}

/// A FRONTEND row: what the listener received, denied and answered.
fn frontend<'a>(f: &Fields<'a>, c: &Columns) -> Result<FrontendStat<'a>, String> {
    let mut denied = None;
    for i in DENIALS {
        if let Some(d) = number(f, c.signals[i], SIGNALS[i])? {
            denied = Some(denied.unwrap_or(0u64).saturating_add(d));
        }
    }
    Ok(FrontendStat {
        frontend: f.name(c.pxname).unwrap_or_default(),
        requests_total: number(f, c.req_tot, "req_tot")?,
        denied_total: denied,
        responses_4xx_total: number(f, c.hrsp[3], "hrsp_4xx")?,
        responses_5xx_total: number(f, c.hrsp[4], "hrsp_5xx")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unreadable_optional_signal_is_said_and_the_server_still_counts() {
        let page = "# pxname,svname,status,weight,req_tot,hrsp_5xx,rtime,scur,type\n\
            web,web-1,UP,1,10,0,fast,3,2\n";
        let parsed = parse(page.as_bytes()).unwrap();
        let s = &parsed.servers[0];
        assert_eq!(
            (s.requests_total, s.response_time_ms, s.sessions_current),
            (10, None, Some(3.0))
        );
        assert_eq!(parsed.bad_rows.len(), 1);
        assert!(
            parsed.bad_rows[0].reason.contains("`rtime` is \"fast\""),
            "{:?}",
            parsed.bad_rows
        );
    }

    #[test]
    fn a_quoted_field_with_line_breaks_and_quotes_stays_in_its_row() {
        let page = "# pxname,svname,status,weight,stot,hrsp_5xx,check_desc,type\n\
            web,web-1,UP,1,10,0,\"Layer7 check passed:\nline two, \"\"quoted\"\"\",2\n\
            web,web-2,UP,1,12,1,,2\r\n\
            web,web-3,DOWN,1,9,0,\"agent says\r\nno\",2\n";
        let parsed = parse(page.as_bytes()).unwrap();
        assert_eq!(parsed.bad_rows, vec![]);
        let names: Vec<(&str, bool)> = parsed
            .servers
            .iter()
            .map(|s| (s.server.as_ref(), s.up))
            .collect();
        assert_eq!(names, [("web-1", true), ("web-2", true), ("web-3", false)]);
        // A row after a multi-line record is named by its own first line.
        let broken = page.replace("web,web-3,DOWN,1,9", "web,web-3,SICK,1,9");
        let bad = parse(broken.as_bytes()).unwrap().bad_rows;
        assert_eq!(bad[0].at, "line 5", "{bad:?}");
    }

    #[test]
    fn every_status_haproxy_prints_is_understood() {
        for (text, want) in [
            ("UP", Status::Up),
            ("UP 1/3", Status::Up),
            ("UP (agent)", Status::Up),
            ("no check", Status::Up),
            ("NO CHECK", Status::Up),
            ("DOWN", Status::Down),
            ("DOWN 1/2", Status::Down),
            ("DOWN (agent)", Status::Down),
            ("MAINT (resolution)", Status::Down),
            ("NOLB", Status::OutOfRotation),
            ("DRAIN", Status::OutOfRotation),
            ("DRAIN (agent)", Status::OutOfRotation),
            ("MAINT", Status::OutOfRotation),
            ("MAINT (via be/srv)", Status::OutOfRotation),
        ] {
            assert_eq!(status(text), Some(want), "{text}");
        }
        for text in ["", "OPEN", "DRAIN (agent)1", "UPS", "L4OK"] {
            assert_eq!(status(text), None, "{text}");
        }
    }

    #[test]
    fn counts_are_read_as_the_standard_parser_reads_them() {
        for text in [
            "0",
            "7",
            "42",
            " 42 ",
            "007",
            "18446744073709551615",
            "9999999999999999999",
            "99999999999999999999",
            "",
            " ",
            "-1",
            "+5",
            "1.5",
            "1e3",
            "١٢",
            "12a",
        ] {
            let mut fields = Fields::default();
            fields.split(text, false, 1);
            let standard = match text.trim() {
                "" => Ok(None),
                t => t.parse::<u64>().map(Some).map_err(|_| ()),
            };
            let ours = number(&fields, Some(0), "req_tot").map_err(|_| ());
            assert_eq!(ours, standard, "{text:?}");
        }
    }

    /// Rows are reserved from the page's line count, but no more than
    /// `PRESIZED_ROWS` before any is read: a page of 100,000 empty lines
    /// reserves no room for 100,000 servers.
    #[test]
    fn a_page_of_empty_lines_reserves_no_room_for_them() {
        let page = format!("# pxname,svname,status,req_tot\n{}", "\n".repeat(100_000));
        let parsed = parse(page.as_bytes()).unwrap();
        assert!(parsed.servers.is_empty());
        assert!(
            parsed.servers.capacity() <= PRESIZED_ROWS,
            "{}",
            parsed.servers.capacity()
        );
    }

    #[test]
    fn html_and_garbage_are_not_stats() {
        for page in ["<html><body>login</body></html>", "\n  <!DOCTYPE html>"] {
            let e = parse(page.as_bytes()).unwrap_err();
            assert!(e.to_string().contains("HAProxy stats CSV"), "{e}");
        }
        assert!(matches!(
            parse(b"\xff\xfe"),
            Err(SourceError::NotUtf8 { offset: 0 })
        ));
    }
}
