//! Plain-HTTP scrapes over a connection kept between them.
//!
//! A connection reqwest keeps alive holds hyper's buffers and request
//! channel while it waits for the next scrape, about 30 kB: 31 MB for a
//! fleet of 1,000 targets (heaptrack), a quarter of its memory. Here only
//! the socket waits; each scrape runs one HTTP/1.1 exchange with hyper
//! over it and takes the socket back, so the buffers live as long as the
//! exchange. HTTPS, credentials in the URL and proxies set in the
//! environment stay with reqwest.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{
    HeaderValue, ACCEPT, AUTHORIZATION, CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING,
};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::error::{error_chain, FetchError};
use super::page::{success, Page};
use crate::secret::Secret;

/// lbwatch's user agent, on every request it makes.
pub const USER_AGENT: &str = concat!("lbwatch/", env!("CARGO_PKG_VERSION"));

/// The variables reqwest takes a proxy for `http://` from: a target is
/// then fetched through reqwest, which honours them (and `NO_PROXY`).
const PROXY_VARS: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];

/// One `http://` target: where to connect, what to ask, and the socket
/// kept since its last scrape.
#[derive(Debug, Clone)]
pub struct PlainHttp {
    /// Host and port to connect to (an IPv6 address without brackets).
    host: String,
    port: u16,
    /// The `Host` header: the URL's host, and its port when one is given.
    authority: HeaderValue,
    path_and_query: hyper::Uri,
    /// `Basic ...`, marked sensitive.
    authorization: Option<HeaderValue>,
    idle: Arc<Mutex<Option<TcpStream>>>,
}

/// Why one exchange failed: on a kept socket the server may have closed
/// it while it waited, and the request is sent again on a new one.
enum Failed {
    Stale(FetchError),
    Final(FetchError),
}

impl PlainHttp {
    /// The transport for `url`, or none where reqwest is needed (see the
    /// module's comment).
    pub fn new(url: &str, auth: Option<&(String, Option<Secret>)>) -> Option<PlainHttp> {
        let proxied = PROXY_VARS
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|p| !p.is_empty()));
        Self::unless_proxied(url, auth, proxied)
    }

    fn unless_proxied(
        url: &str,
        auth: Option<&(String, Option<Secret>)>,
        proxied: bool,
    ) -> Option<PlainHttp> {
        let parsed = reqwest::Url::parse(url).ok()?;
        // reqwest sends the URL's credentials as basic auth, a password
        // alone too.
        let credentials = !parsed.username().is_empty() || parsed.password().is_some();
        if parsed.scheme() != "http" || credentials || proxied {
            return None;
        }
        let host = parsed.host_str()?;
        let authority = match parsed.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.to_string(),
        };
        let mut path_and_query = parsed.path().to_string();
        if let Some(q) = parsed.query() {
            path_and_query.push('?');
            path_and_query.push_str(q);
        }
        Some(PlainHttp {
            host: host.trim_start_matches('[').trim_end_matches(']').into(),
            port: parsed.port_or_known_default()?,
            authority: HeaderValue::from_str(&authority).ok()?,
            path_and_query: path_and_query.parse().ok()?,
            authorization: auth.map(basic),
            idle: Arc::default(),
        })
    }

    /// The page at the URL, on the kept socket when there is one (and
    /// again on a new one if the server had closed it), at most
    /// `max_bytes` of it. `shown` names the endpoint in errors.
    pub async fn get(&self, max_bytes: u64, shown: &str) -> Result<Vec<u8>, FetchError> {
        let kept = self.idle.lock().expect("lock").take();
        if let Some(socket) = kept.filter(still_open) {
            match self.exchange(socket, max_bytes, shown).await {
                Err(Failed::Stale(_)) => {}
                Err(Failed::Final(e)) => return Err(e),
                Ok(page) => return Ok(page),
            }
        }
        let socket = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(|e| FetchError::Connect {
                endpoint: shown.into(),
                reason: e.to_string(),
            })?;
        // As reqwest does: a request is one small write, sent at once.
        let _ = socket.set_nodelay(true);
        match self.exchange(socket, max_bytes, shown).await {
            Err(Failed::Stale(e) | Failed::Final(e)) => Err(e),
            Ok(page) => Ok(page),
        }
    }

    /// One request and its response on `socket`, which is kept for the
    /// next scrape if the response leaves it usable.
    async fn exchange(
        &self,
        socket: TcpStream,
        max_bytes: u64,
        shown: &str,
    ) -> Result<Vec<u8>, Failed> {
        let sending = |e: hyper::Error| {
            Failed::Stale(FetchError::Connect {
                endpoint: shown.into(),
                reason: error_chain(&e),
            })
        };
        // hyper's adaptive read buffer, not an exact one: reads of a fixed
        // size would also cap the response's head at that size.
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
            .await
            .map_err(sending)?;
        let request = self.request();
        let work = async move {
            let response = send.send_request(request).await.map_err(sending)?;
            drop(send);
            read(response, max_bytes, shown)
                .await
                .map_err(Failed::Final)
        };
        // The connection is driven alongside; with the request channel
        // dropped and the response read, it ends and gives the socket back.
        let (page, parts) = tokio::join!(work, conn.without_shutdown());
        let (page, reusable) = page?;
        if let Ok(parts) = parts {
            if reusable && parts.read_buf.is_empty() {
                *self.idle.lock().expect("lock") = Some(parts.io.into_inner());
            }
        }
        Ok(page)
    }

    fn request(&self) -> hyper::Request<Empty<Bytes>> {
        let mut request = hyper::Request::new(Empty::new());
        *request.uri_mut() = self.path_and_query.clone();
        let headers = request.headers_mut();
        headers.insert(HOST, self.authority.clone());
        headers.insert(
            hyper::header::USER_AGENT,
            HeaderValue::from_static(USER_AGENT),
        );
        headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
        if let Some(a) = &self.authorization {
            headers.insert(AUTHORIZATION, a.clone());
        }
        request
    }
}

/// The body of a successful response, and whether its connection may
/// carry the next request.
async fn read(
    response: hyper::Response<hyper::body::Incoming>,
    max_bytes: u64,
    shown: &str,
) -> Result<(Vec<u8>, bool), FetchError> {
    success(response.status(), shown)?;
    let closes = response.headers().get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("close"))
    });
    // A body without a length or chunks ends when the server closes.
    let framed = response.headers().contains_key(CONTENT_LENGTH)
        || response.headers().contains_key(TRANSFER_ENCODING);
    let reusable = response.version() == hyper::Version::HTTP_11 && !closes && framed;
    // Exact where the response says its length.
    let said = hyper::body::Body::size_hint(response.body()).exact();
    let mut page = Page::new(said, max_bytes, shown);
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| FetchError::Read {
            endpoint: shown.into(),
            reason: error_chain(&e),
        })?;
        if let Ok(chunk) = frame.into_data() {
            page.push(&chunk)?;
        }
    }
    Ok((page.bytes(), reusable))
}

/// Whether a kept socket is still open, as far as can be told without
/// waiting: a server that closed it (or sent what nobody asked for) makes
/// it readable. Saves the request a closed socket would have wasted.
fn still_open(socket: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(socket.try_read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// `Authorization: Basic ...` for a user and password, as reqwest sends
/// it (a missing password is an empty one), marked sensitive.
fn basic((user, pass): &(String, Option<Secret>)) -> HeaderValue {
    use base64::Engine as _;
    let pass = pass.as_ref().map_or("", Secret::expose);
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let mut value = HeaderValue::from_str(&format!("Basic {token}"))
        .unwrap_or_else(|_| HeaderValue::from_static("Basic"));
    value.set_sensitive(true);
    value
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A server on loopback answering each request on a connection with
    /// `reply(request head, n-th request on that connection)`, closing
    /// after `per_connection` requests. Counts the connections it took.
    async fn server(
        per_connection: usize,
        reply: fn(&str, usize) -> String,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/stats;csv?x=1", listener.local_addr().unwrap());
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    for n in 0..per_connection {
                        let mut byte = [0u8; 1];
                        while !head.ends_with(b"\r\n\r\n") {
                            if socket.read(&mut byte).await.unwrap_or(0) == 0 {
                                return;
                            }
                            head.push(byte[0]);
                        }
                        let text = String::from_utf8_lossy(&head).to_string();
                        head.clear();
                        let _ = socket.write_all(reply(&text, n).as_bytes()).await;
                    }
                });
            }
        });
        (url, accepted)
    }

    fn ok(body: &str) -> String {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    #[tokio::test]
    async fn the_socket_is_kept_for_the_next_scrape() {
        let (url, accepted) = server(100, |head, n| {
            assert!(
                head.starts_with("GET /stats;csv?x=1 HTTP/1.1\r\n"),
                "{head}"
            );
            assert!(head.contains(USER_AGENT), "{head}");
            ok(&format!("page {n}"))
        })
        .await;
        let plain = PlainHttp::unless_proxied(&url, None, false).expect("plain http");
        for n in 0..3 {
            let page = plain.get(1 << 20, "lb").await.expect("the page");
            assert_eq!(page, format!("page {n}").as_bytes());
        }
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            1,
            "one connection for three scrapes"
        );
    }

    /// A server closes an idle connection when it likes: the request is
    /// sent again on a new one, and the scrape does not fail.
    #[tokio::test]
    async fn a_socket_the_server_closed_is_replaced() {
        let (url, accepted) = server(1, |_, _| ok("page")).await;
        let plain = PlainHttp::unless_proxied(&url, None, false).expect("plain http");
        for _ in 0..3 {
            assert_eq!(plain.get(1 << 20, "lb").await.expect("the page"), b"page");
            assert!(plain.idle.lock().unwrap().is_some(), "kept");
            // The server's close reaches the kept socket.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
        // Closed before the request is written: the same, found without
        // a request sent in vain.
        let socket = plain.idle.lock().unwrap().take().unwrap();
        assert!(!still_open(&socket), "the server closed it");
    }

    /// `Connection: close` and HTTP/1.0 answers leave nothing kept;
    /// chunked bodies are read whole. (The server closes after each
    /// answer, as such a server does: the HTTP/1.0 body ends there.)
    #[tokio::test]
    async fn a_closing_answer_is_not_kept_and_chunks_are_joined() {
        let (url, accepted) = server(1, |_, _| {
            "HTTP/1.1 200 OK\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\npage\r\n3\r\n 1,\r\n0\r\n\r\n"
                .into()
        })
        .await;
        let plain = PlainHttp::unless_proxied(&url, None, false).expect("plain http");
        assert_eq!(plain.get(1 << 20, "lb").await.unwrap(), b"page 1,");
        assert!(plain.idle.lock().unwrap().is_none(), "nothing kept");
        assert_eq!(plain.get(1 << 20, "lb").await.unwrap(), b"page 1,");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
        let (url, _) = server(1, |_, _| "HTTP/1.0 200 OK\r\n\r\nold".into()).await;
        let plain = PlainHttp::unless_proxied(&url, None, false).expect("plain http");
        assert_eq!(plain.get(1 << 20, "lb").await.unwrap(), b"old");
        assert!(plain.idle.lock().unwrap().is_none(), "nothing kept");
    }

    #[tokio::test]
    async fn errors_name_the_endpoint_and_the_status_or_limit() {
        let (url, _) = server(100, |_, _| {
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 4\r\n\r\nbusy".into()
        })
        .await;
        let plain = PlainHttp::unless_proxied(&url, None, false).expect("plain http");
        let e = plain.get(1 << 20, "lb-a").await.unwrap_err();
        assert_eq!(e.to_string(), "HTTP 503 from lb-a");
        let (url, _) = server(100, |_, _| ok(&"x".repeat(5000))).await;
        let plain = PlainHttp::unless_proxied(&url, None, false).expect("plain http");
        let e = plain.get(4096, "lb-b").await.unwrap_err();
        assert_eq!(e.to_string(), "response larger than 4096 bytes from lb-b");
        // Nothing listens on a port just freed.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", free.local_addr().unwrap());
        drop(free);
        let plain = PlainHttp::unless_proxied(&url, None, false).expect("plain http");
        let e = plain.get(1 << 20, "lb-c").await.unwrap_err();
        assert!(e.to_string().starts_with("connecting to lb-c: "), "{e}");
    }

    #[tokio::test]
    async fn basic_auth_is_sent_as_reqwest_sends_it() {
        let (url, _) = server(100, |head, _| {
            // "admin:s3cret"
            let want = "authorization: Basic YWRtaW46czNjcmV0\r\n";
            assert!(
                head.to_ascii_lowercase()
                    .contains(&want.to_ascii_lowercase()),
                "{head}"
            );
            ok("page")
        })
        .await;
        let auth = ("admin".to_string(), Some(Secret::new("s3cret".into())));
        let plain = PlainHttp::unless_proxied(&url, Some(&auth), false).expect("plain http");
        assert_eq!(plain.get(1 << 20, "lb").await.unwrap(), b"page");
        assert!(
            !format!("{plain:?}").contains("YWRtaW46czNjcmV0"),
            "{plain:?}"
        );
        // No password: an empty one, as reqwest sends it ("admin:").
        assert_eq!(basic(&("admin".to_string(), None)), "Basic YWRtaW46");
    }

    #[test]
    fn https_credentials_in_the_url_and_proxies_stay_with_reqwest() {
        assert!(PlainHttp::new("https://lb/stats", None).is_none());
        assert!(PlainHttp::new("http://u:p@lb/stats", None).is_none());
        assert!(PlainHttp::new("http://:p@lb/stats", None).is_none());
        assert!(PlainHttp::unless_proxied("http://lb/stats", None, true).is_none());
        assert!(PlainHttp::unless_proxied("http://lb/stats", None, false).is_some());
        let v6 = PlainHttp::unless_proxied("http://[::1]:8404/stats", None, false).expect("plain");
        assert_eq!((v6.host.as_str(), v6.port), ("::1", 8404));
        assert_eq!(v6.authority, "[::1]:8404");
        let default = PlainHttp::unless_proxied("http://lb/", None, false).expect("plain");
        assert_eq!(
            (default.port, default.authority.to_str().unwrap()),
            (80, "lb")
        );
    }
}
