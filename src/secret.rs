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

    /// `text` (a receiver's answer, which may echo the request) with the
    /// secret parts of this URL cut out.
    pub fn scrub(&self, text: &str) -> String {
        let full = self.url.expose();
        let rest = full.split_once("://").map_or(full, |(_, r)| r);
        let tail = rest.find(['/', '?', '#']).map_or("", |i| &rest[i..]);
        let mut out = text.replace(full, &self.shown);
        if tail.len() > 1 {
            out = out.replace(tail, "/…");
        }
        out
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
    }

    #[test]
    fn a_receiver_answer_that_echoes_the_url_loses_its_token() {
        let u = SecretUrl::new("https://hooks.slack.com/services/T0/B0/s3cretT0ken?x=1");
        assert_eq!(
            format!("{u} {u:?}"),
            "https://hooks.slack.com/… https://hooks.slack.com/…"
        );
        let answer = "no such hook: /services/T0/B0/s3cretT0ken?x=1";
        assert!(!u.scrub(answer).contains("s3cret"), "{}", u.scrub(answer));
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
