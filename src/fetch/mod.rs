//! Transports: getting a stats page's bytes, over HTTP(S) or HAProxy's
//! runtime API socket. Parsers never know where the bytes came from.
//!
//! Every fetch is bounded: a timeout for the whole exchange and a cap on the
//! response size, so a hanging or enormous endpoint costs one failed scrape,
//! never the daemon's memory or its other targets.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::config::TlsConfig;
pub use crate::endpoint::Endpoint;
use error::error_chain;
pub use error::FetchError;
use page::Page;
use plain::PlainHttp;

mod error;
mod page;
mod plain;
pub use crate::secret::{redact, Secret};

/// The settings every client of lbwatch has: no redirects (a stats page
/// that moved is a config to fix), lbwatch's user agent.
fn base_client() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(plain::USER_AGENT)
}

/// A target's TLS settings that cannot be used, naming the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(String);

/// One target's transport, built once.
#[derive(Debug, Clone)]
pub struct Fetcher {
    endpoint: Endpoint,
    client: reqwest::Client,
    timeout: Duration,
    max_bytes: u64,
    auth: Option<(String, Option<Secret>)>,
    /// `http://` without a proxy: fetched on a socket kept between
    /// scrapes instead of through `client`.
    plain: Option<PlainHttp>,
}

impl Fetcher {
    /// One HTTP client for every target: a client holds its TLS roots and
    /// connection pool, which 1,000 targets need only once.
    pub fn shared_client() -> Result<reqwest::Client, FetchError> {
        base_client().build().map_err(|e| FetchError::Connect {
            endpoint: "client".into(),
            reason: e.to_string(),
        })
    }

    /// A client of its own for a target with TLS settings (the others
    /// share one: a client holds its pool and roots). `key` names the
    /// setting in errors.
    pub fn tls_client(tls: &TlsConfig, key: &str) -> Result<reqwest::Client, TlsError> {
        let read = |what: &str, path: &PathBuf| {
            std::fs::read(path)
                .map_err(|e| TlsError(format!("{key}.{what}: cannot read {}: {e}", path.display())))
        };
        let mut b = base_client().danger_accept_invalid_certs(tls.insecure_skip_verify);
        if let Some(ca) = &tls.ca_file {
            // As Prometheus does: a CA file is what is trusted, instead of
            // the built-in roots (a private PKI, pinned).
            b = b.tls_built_in_root_certs(false);
            let pem = read("ca_file", ca)?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                TlsError(format!(
                    "{key}.ca_file: {}: not PEM certificates: {e}",
                    ca.display()
                ))
            })?;
            for c in certs {
                b = b.add_root_certificate(c);
            }
        }
        if let (Some(cert), Some(k)) = (&tls.cert_file, &tls.key_file) {
            let mut pem = read("cert_file", cert)?;
            pem.extend(read("key_file", k)?);
            let id = reqwest::Identity::from_pem(&pem).map_err(|e| {
                TlsError(format!(
                    "{key}.cert_file: not a PEM certificate and key: {e}"
                ))
            })?;
            b = b.identity(id);
        }
        b.build()
            .map_err(|e| TlsError(format!("{key}: {}", error_chain(&e))))
    }

    pub fn new(
        endpoint: Endpoint,
        client: reqwest::Client,
        timeout: Duration,
        max_bytes: u64,
        auth: Option<(String, Option<Secret>)>,
    ) -> Self {
        let plain = match &endpoint {
            Endpoint::Http(url) => PlainHttp::new(url, auth.as_ref()),
            Endpoint::Unix(_) => None,
        };
        Fetcher {
            endpoint,
            client,
            timeout,
            max_bytes,
            auth,
            plain,
        }
    }

    fn shown(&self) -> String {
        match &self.endpoint {
            Endpoint::Http(u) => redact(u),
            Endpoint::Unix(p) => format!("unix://{}", p.display()),
        }
    }

    /// The stats page's bytes, or why not.
    pub async fn fetch(&self) -> Result<Vec<u8>, FetchError> {
        // Boxed for the time of the fetch: in place, the largest of the
        // transports' futures (about 3 kB) would be part of each target's
        // scrape task for as long as it runs.
        match tokio::time::timeout(self.timeout, Box::pin(self.fetch_inner())).await {
            Ok(r) => r,
            Err(_) => Err(FetchError::Timeout(self.timeout)),
        }
    }

    async fn fetch_inner(&self) -> Result<Vec<u8>, FetchError> {
        let shown = self.shown();
        if let Some(plain) = &self.plain {
            return plain.get(self.max_bytes, &shown).await;
        }
        match &self.endpoint {
            Endpoint::Http(url) => {
                let mut req = self.client.get(url).timeout(self.timeout);
                if let Some((user, pass)) = &self.auth {
                    req = req.basic_auth(user, pass.as_ref().map(Secret::expose));
                }
                // `without_url`: reqwest's errors print the whole URL, and a
                // URL may carry a token.
                let mut resp = req.send().await.map_err(|e| {
                    let e = e.without_url();
                    if e.is_timeout() {
                        FetchError::Timeout(self.timeout)
                    } else {
                        FetchError::Connect {
                            endpoint: shown.clone(),
                            reason: error_chain(&e),
                        }
                    }
                })?;
                page::success(resp.status(), &shown)?;
                let mut page = Page::new(resp.content_length(), self.max_bytes, &shown);
                while let Some(chunk) = resp.chunk().await.map_err(|e| FetchError::Read {
                    endpoint: shown.clone(),
                    reason: error_chain(&e.without_url()),
                })? {
                    page.push(&chunk)?;
                }
                Ok(page.bytes())
            }
            Endpoint::Unix(path) => {
                let mut sock = tokio::net::UnixStream::connect(path).await.map_err(|e| {
                    FetchError::Connect {
                        endpoint: shown.clone(),
                        reason: e.to_string(),
                    }
                })?;
                let read_err = |e: std::io::Error| FetchError::Read {
                    endpoint: shown.clone(),
                    reason: e.to_string(),
                };
                sock.write_all(b"show stat\n").await.map_err(read_err)?;
                let mut page = Page::new(None, self.max_bytes, &shown);
                let mut buf = vec![0u8; 64 << 10];
                loop {
                    let n = sock.read(&mut buf).await.map_err(read_err)?;
                    if n == 0 {
                        break;
                    }
                    page.push(&buf[..n])?;
                }
                Ok(page.bytes())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A body whose length is said is read into room of that size, once:
    /// grown chunk by chunk, 300 kB would end in 512 kB of room.
    #[tokio::test]
    async fn a_body_of_said_length_is_read_into_room_of_that_size() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/stats", listener.local_addr().unwrap());
        let stop = tokio_util::sync::CancellationToken::new();
        let body = "x".repeat(300_000);
        tokio::spawn(crate::http::serve(
            listener,
            move |_: &crate::http::Request| crate::http::Reply::ok("text/plain", body.clone()),
            crate::http::Guard::default(),
            stop.clone(),
        ));
        // Through a kept socket, and (credentials in the URL) through reqwest.
        let with_credentials = url.replace("http://", "http://u:p@");
        for url in [&url, &with_credentials] {
            let endpoint = Endpoint::parse(url).unwrap();
            let client = Fetcher::shared_client().unwrap();
            let f = Fetcher::new(endpoint, client, Duration::from_secs(10), 1 << 20, None);
            assert_eq!(f.plain.is_some(), !url.contains('@'), "{url}");
            let page = f.fetch().await.expect("the page");
            assert_eq!(page.len(), 300_000);
            assert_eq!(page.capacity(), 300_000, "room reserved once");
        }
        // A limit below the said length: refused, whatever was reserved.
        let small = Fetcher::new(
            Endpoint::parse(&url).unwrap(),
            Fetcher::shared_client().unwrap(),
            Duration::from_secs(10),
            100_000,
            None,
        );
        assert!(matches!(
            small.fetch().await,
            Err(FetchError::TooLarge { limit: 100_000, .. })
        ));
        stop.cancel();
    }
}
