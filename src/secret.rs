//! Secrets: passwords, routing keys, webhook keys, header values and URLs
//! that carry a token. They print as `***` (a URL as its scheme and host),
//! come from a file or the environment rather than the config file, and
//! never reach a log line, an error, a metric or the API.

use std::fmt;
use std::path::PathBuf;

/// `url` as logs and errors may show it: scheme, host and port only. Its
/// user and password, and its path and query, where webhooks of chat tools
/// and many APIs carry their token (`/services/T0/B0/XXXX`, `?token=`), are
/// left out; "/…" says something was.
///
/// Read by the same URL parser that sends the requests (a `\\` is a `/`
/// there, a `/` in a password ends nothing): what does not parse shows
/// nothing of itself.
pub fn redact(url: &str) -> String {
    if !url.contains("://") {
        return "(not a URL)".into();
    }
    let Ok(u) = reqwest::Url::parse(url) else {
        return "(invalid URL)".into();
    };
    let host = match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        (None, _) => String::new(),
    };
    let tail = u.path().trim_start_matches('/').is_empty() && u.query().is_none();
    let more = if tail { "" } else { "/…" };
    format!("{}://{host}{more}", u.scheme())
}

/// A secret (password, routing key): prints as `***` everywhere.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Read from the config file as a plain string.
impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret)
    }
}

/// A URL that may carry a secret (userinfo, a token in its path or
/// query): used whole for requests, shown as scheme and host.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    url: Secret,
    shown: String,
}

impl SecretUrl {
    pub fn new(url: &str) -> Self {
        SecretUrl {
            url: Secret::new(url.to_string()),
            shown: redact(url),
        }
    }

    pub fn expose(&self) -> &str {
        self.url.expose()
    }

    /// Scheme, host and port: what logs and errors may say.
    pub fn shown(&self) -> &str {
        &self.shown
    }
}

impl Default for SecretUrl {
    /// No URL: what an unset `url` key reads as.
    fn default() -> Self {
        SecretUrl {
            url: Secret::new(String::new()),
            shown: String::new(),
        }
    }
}

/// Read from the config file as a plain string; a config dumped with
/// `{:?}` shows it as scheme and host.
impl<'de> serde::Deserialize<'de> for SecretUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|u| SecretUrl::new(&u))
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Cuts secrets out of text that came from outside and goes into an error:
/// a receiver's answer, a login page. Answers echo what they were sent in
/// many shapes, so each secret is cut as written, percent-encoded,
/// percent-decoded and JSON-escaped (`\/` too).
#[derive(Clone, Default)]
pub struct Scrubber {
    /// Longest first, so a secret inside a longer one goes with it.
    needles: Vec<String>,
}

/// Path segments at least this long are taken for tokens (Slack's and
/// Discord's webhook keys are 24 and 68 characters; the ids before them,
/// which are not secret, are shorter).
const TOKEN_SEGMENT: usize = 16;

/// The shortest start of a secret that is cut where an excerpt ends: shorter
/// ones are too common in ordinary text to cut.
const CUT_PREFIX: usize = 6;

impl Scrubber {
    /// Adds a secret and the shapes an answer may echo it in.
    pub fn secret(mut self, secret: &str) -> Self {
        if secret.is_empty() {
            return self;
        }
        let encoded =
            percent_encoding::utf8_percent_encode(secret, percent_encoding::NON_ALPHANUMERIC)
                .to_string();
        let lower_hex = lowercase_escapes(&encoded);
        let decoded = percent_encoding::percent_decode_str(secret)
            .decode_utf8_lossy()
            .into_owned();
        let json = serde_json::to_string(secret).unwrap_or_default();
        let json = json.trim_matches('"').to_string();
        let slashed = json.replace('/', "\\/");
        for n in [
            secret.to_string(),
            encoded,
            lower_hex,
            decoded,
            json,
            slashed,
        ] {
            if !n.is_empty() && !self.needles.contains(&n) {
                self.needles.push(n);
            }
        }
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
        self
    }

    /// Adds a URL's secret parts: the whole URL, its path and query, its
    /// password, each query value and each path segment long enough to be
    /// a token.
    pub fn url(mut self, url: &str) -> Self {
        self = self.secret(url);
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        if let Some(i) = rest.find(['/', '?', '#']) {
            if rest.len() - i > 1 {
                self = self.secret(&rest[i..]);
            }
        }
        let Ok(u) = reqwest::Url::parse(url) else {
            return self;
        };
        if !u.username().is_empty() {
            // An API key is often the user part.
            self = self.secret(u.username());
        }
        if let Some(p) = u.password() {
            self = self.secret(p);
            self = self.basic_auth(&decode(u.username()), &decode(p));
        }
        if u.path().len() > 1 {
            self = self.secret(u.path());
        }
        if let Some(q) = u.query() {
            self = self.secret(q);
            // As written too: `+` for a space, say.
            for (_, v) in q.split('&').filter_map(|kv| kv.split_once('=')) {
                self = self.part(v);
            }
        }
        let values: Vec<String> = u.query_pairs().map(|(_, v)| v.into_owned()).collect();
        let segments: Vec<String> = u
            .path_segments()
            .into_iter()
            .flatten()
            .filter(|s| s.len() >= TOKEN_SEGMENT)
            .map(str::to_string)
            .collect();
        for v in values.iter().chain(&segments) {
            self = self.part(v);
        }
        self
    }

    /// Credentials sent as HTTP basic auth: their base64 form, which a page
    /// echoing the request's headers shows.
    pub fn basic_auth(self, user: &str, password: &str) -> Self {
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        self.secret(&b64)
    }

    /// A header value: whole, and its credential without the scheme word
    /// (`Bearer`, `Basic`), which a receiver may echo alone.
    pub fn header(self, value: &str) -> Self {
        let s = self.secret(value);
        match value.split_once(' ') {
            Some((_, credential)) => s.part(credential.trim()),
            None => s,
        }
    }

    /// A part of a URL that may be a token: one too short to be one (`v=1`)
    /// would cut ordinary words.
    fn part(self, part: &str) -> Self {
        if part.chars().count() >= CUT_PREFIX {
            self.secret(part)
        } else {
            self
        }
    }

    /// `text` with every secret replaced by `***`, and the start of one
    /// that an excerpt cut off (before `...` or at the end) too.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = self
            .needles
            .iter()
            .fold(text.to_string(), |t, n| t.replace(n.as_str(), "***"));
        // Where an excerpt may have cut: before each `...`, and the end.
        // From the back, so that the places before stay where they are.
        let mut cuts: Vec<usize> = out.match_indices("...").map(|(i, _)| i).collect();
        cuts.push(out.len());
        for &end in cuts.iter().rev() {
            if let Some(k) = self.cut_start(&out[..end]) {
                out.replace_range(end - k..end, "***");
            }
        }
        out
    }

    /// The length of the longest start of a secret (`CUT_PREFIX` bytes or
    /// more) that `before` ends with.
    fn cut_start(&self, before: &str) -> Option<usize> {
        self.needles
            .iter()
            .filter_map(|n| {
                n.char_indices()
                    .map(|(i, _)| i)
                    .filter(|&i| i >= CUT_PREFIX)
                    .rev()
                    .find(|&i| before.ends_with(&n[..i]))
            })
            .max()
    }
}

/// `%2F` as `%2f`: some servers echo escapes in lower case.
fn lowercase_escapes(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut hex = 0;
    for c in encoded.chars() {
        if c == '%' {
            hex = 2;
            out.push(c);
        } else if hex > 0 {
            hex -= 1;
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn decode(part: &str) -> String {
    percent_encoding::percent_decode_str(part)
        .decode_utf8_lossy()
        .into_owned()
}

impl fmt::Debug for Scrubber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scrubber({} needles)", self.needles.len())
    }
}

/// Why a secret could not be read: names the setting, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("{key}: cannot read {path}: {reason}")]
    File {
        key: String,
        path: PathBuf,
        reason: String,
    },
    #[error("{key}: environment variable {var} is not set")]
    Env { key: String, var: String },
    #[error("{key}: is empty")]
    Empty { key: String },
}

/// A secret from a file (trailing newline dropped) or an environment
/// variable; `key` names the setting in errors.
pub fn read_secret(
    file: Option<&PathBuf>,
    env: Option<&String>,
    key: &str,
) -> Result<Option<Secret>, SecretError> {
    let value = if let Some(path) = file {
        std::fs::read_to_string(path)
            .map_err(|e| SecretError::File {
                key: key.into(),
                path: path.clone(),
                reason: e.to_string(),
            })?
            .trim_end_matches(['\n', '\r'])
            .to_string()
    } else if let Some(var) = env {
        std::env::var(var).map_err(|_| SecretError::Env {
            key: key.into(),
            var: var.clone(),
        })?
    } else {
        return Ok(None);
    };
    if value.trim().is_empty() {
        return Err(SecretError::Empty { key: key.into() });
    }
    Ok(Some(Secret::new(value)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_and_tokens_in_urls_never_show() {
        for (url, shown) in [
            ("http://admin:s3cret@lb:8404/stats", "http://lb:8404/…"),
            (
                "https://hooks.slack.com/services/T0AAAA/B0BBBB/s3cretT0ken",
                "https://hooks.slack.com/…",
            ),
            (
                "https://api.example/hook?token=s3cret",
                "https://api.example/…",
            ),
            ("https://am.example:9093/", "https://am.example:9093"),
            ("http://[::1]:8404", "http://[::1]:8404"),
            ("unix:///run/haproxy/admin.sock", "unix:///…"),
            ("s3cret-not-a-url", "(not a URL)"),
            // A password with a slash, a backslash path: the parser's reading.
            ("http://admin:pa/ss@lb/x", "(invalid URL)"),
            (
                "https://hooks.slack.com\\services\\T\\s3cret",
                "https://hooks.slack.com/…",
            ),
        ] {
            assert_eq!(redact(url), shown, "{url}");
        }
        let s = Secret::new("s3cret".into());
        assert_eq!(format!("{s} {s:?}"), "*** ***");
        let u: SecretUrl = serde_json::from_str("\"https://h/hook?token=s3cret\"").unwrap();
        assert_eq!(format!("{u:?}"), "https://h/…");
        assert_eq!(u.expose(), "https://h/hook?token=s3cret");
    }

    #[test]
    fn a_receiver_answer_that_echoes_the_url_loses_its_token() {
        let u = SecretUrl::new("https://hooks.slack.com/services/T0/B0/s3cretT0ken?x=1");
        assert_eq!(
            format!("{u} {u:?}"),
            "https://hooks.slack.com/… https://hooks.slack.com/…"
        );
        let answer = "no such hook: /services/T0/B0/s3cretT0ken?x=1";
        let scrubbed = Scrubber::default().url(u.expose()).scrub(answer);
        assert_eq!(scrubbed, "no such hook: ***");
    }

    #[test]
    fn echoes_in_other_shapes_lose_their_secrets_too() {
        let url = "https://user:p%40ss@hooks.example/api/webhooks/123/AbCdEfGhIjKlMnOpQrSt?token=t0k3n+x&v=1";
        let s = Scrubber::default()
            .url(url)
            .secret("R0ut1ngK3y")
            .secret("Bearer a/b\"c");
        for echo in [
            // The path without the query, as many servers log it.
            "POST /api/webhooks/123/AbCdEfGhIjKlMnOpQrSt failed",
            // Inside a JSON answer, slashes escaped.
            r#"{"error":"bad url https:\/\/user:p%40ss@hooks.example\/api\/webhooks\/123\/AbCdEfGhIjKlMnOpQrSt"}"#,
            // A token alone, or decoded from the query.
            "invalid token 'AbCdEfGhIjKlMnOpQrSt'",
            "token t0k3n x expired",
            "token t0k3n+x expired",
            "password p@ss rejected",
            // Percent-encoded, as in a redirect's query.
            "see /login?next=%2Fapi%2Fwebhooks%2F123%2FAbCdEfGhIjKlMnOpQrSt",
            // A routing key, a header value echoed in JSON.
            "{\"message\":\"Invalid routing key R0ut1ngK3y\"}",
            r#"{"headers":{"authorization":"Bearer a/b\"c"}}"#,
        ] {
            let out = s.scrub(echo);
            for secret in [
                "AbCdEf", "t0k3n", "p@ss", "p%40ss", "R0ut1ng", "a/b", "a\\/b",
            ] {
                assert!(!out.contains(secret), "{secret} shows in {out}");
            }
            assert!(out.contains("***"), "{out}");
        }
        // The user part of a URL, basic auth's base64, a bearer token
        // echoed without its scheme word, escapes in lower case.
        let s2 = Scrubber::default()
            .url("https://sk_live_k3y@api.example/hook")
            .url("http://admin:pa%40ss@lb/stats")
            .header("Bearer T0kenAloneEchoed")
            .secret("a/b+c");
        for echo in [
            "Invalid API key: sk_live_k3y",
            "Authorization: Basic YWRtaW46cGFAc3M=",
            "invalid token T0kenAloneEchoed",
            "next=a%2fb%2bc",
        ] {
            let out = s2.scrub(echo);
            for secret in ["sk_live", "YWRtaW46", "T0kenAlone", "a%2fb"] {
                assert!(!out.contains(secret), "{secret} shows in {out}");
            }
        }
        // An excerpt that cut a token short.
        let cut = s.scrub("redirected to /api/webhooks/123/AbCdEfGhIj...");
        assert_eq!(cut, "redirected to ***...");
        assert_eq!(s.scrub("token t0k3n+"), "token ***");
        // Words that are not secret stay readable.
        assert_eq!(
            s.scrub("503 Service Unavailable"),
            "503 Service Unavailable"
        );
    }

    #[test]
    fn secrets_come_from_a_file_or_the_environment_and_errors_never_show_them() {
        let dir = std::env::temp_dir().join(format!("lbwatch-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("key");
        std::fs::write(&f, "s3cret\n").unwrap();
        let got = read_secret(Some(&f), None, "k").unwrap().unwrap();
        assert_eq!(got.expose(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        assert_eq!(
            read_secret(Some(&f), None, "n.secret_file")
                .unwrap_err()
                .to_string(),
            "n.secret_file: is empty"
        );
        let missing = read_secret(Some(&dir.join("nope")), None, "k").unwrap_err();
        assert!(
            missing.to_string().starts_with("k: cannot read "),
            "{missing}"
        );
        let unset = read_secret(None, Some(&"LBWATCH_NO_SUCH_VAR".to_string()), "k");
        assert_eq!(
            unset.unwrap_err().to_string(),
            "k: environment variable LBWATCH_NO_SUCH_VAR is not set"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
