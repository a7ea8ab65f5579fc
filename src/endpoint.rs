//! Where a target's stats are: an HTTP(S) URL or HAProxy's runtime API
//! socket, checked when the config is.

use std::path::PathBuf;

/// Where a target's stats are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `http://` or `https://`.
    Http(String),
    /// `unix:///run/haproxy/admin.sock`: HAProxy's runtime API (`show stat`).
    Unix(PathBuf),
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Self, String> {
        if let Some(path) = url.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(
                    "a unix socket needs an absolute path: unix:///run/haproxy/admin.sock".into(),
                );
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or("expected http://, https:// or unix:///path")?;
        let host = rest.split(['/', '?']).next().unwrap_or("");
        if host.is_empty() || host.ends_with('@') {
            return Err("no host".into());
        }
        reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        Ok(Endpoint::Http(url.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_http_https_or_an_absolute_unix_socket() {
        assert_eq!(
            Endpoint::parse("unix:///run/haproxy/admin.sock"),
            Ok(Endpoint::Unix("/run/haproxy/admin.sock".into()))
        );
        assert!(matches!(
            Endpoint::parse("http://127.0.0.1:8404/stats;csv"),
            Ok(Endpoint::Http(_))
        ));
        assert!(matches!(
            Endpoint::parse("https://lb/stats;csv"),
            Ok(Endpoint::Http(_))
        ));
        for bad in [
            "ftp://x",
            "unix://relative.sock",
            "http://",
            "127.0.0.1:8404",
            "http://u:p@/x",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
