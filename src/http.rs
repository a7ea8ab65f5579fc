//! lbwatch's small HTTP server: a loop that accepts on a listener and
//! answers each GET with what a handler says for the request. Used by the
//! daemon (/metrics, /healthz, /ready, /api, the status page) and the demo's
//! simulated load balancer.

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};

/// What a handler sees of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    pub path: String,
    pub query: Option<String>,
    /// The `Accept` header.
    pub accept: String,
}

impl Request {
    /// The first value of query parameter `name`, percent-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == name).then(|| percent_decode(v))
        })
    }
}

/// A query value as a form encodes it: `+` for a space, `%XX` for a byte;
/// a malformed escape stays as written.
fn percent_decode(v: &str) -> String {
    percent_encoding::percent_decode_str(&v.replace('+', " "))
        .decode_utf8_lossy()
        .into_owned()
}

/// A path segment as written in a URL: `%XX` for a byte (a `+` is a plus).
pub fn path_decode(v: &str) -> String {
    percent_encoding::percent_decode_str(v)
        .decode_utf8_lossy()
        .into_owned()
}

/// An answer: status, content type, body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: StatusCode,
    pub content_type: &'static str,
    pub body: String,
}

impl Reply {
    pub fn ok(content_type: &'static str, body: String) -> Self {
        Reply {
            status: StatusCode::OK,
            content_type,
            body,
        }
    }

    pub fn json(value: &impl serde::Serialize) -> Self {
        Reply::ok(
            "application/json",
            serde_json::to_string_pretty(value).expect("serialisable"),
        )
    }

    pub fn with_status(self, status: StatusCode) -> Self {
        Reply { status, ..self }
    }

    pub fn not_found() -> Self {
        Reply {
            status: StatusCode::NOT_FOUND,
            content_type: "text/plain",
            body: "not found\n".into(),
        }
    }
}

/// How the listener guards itself (both optional; changing them takes a
/// restart): HTTPS, and basic auth
/// on every path but /healthz (a liveness probe needs no credentials and
/// learns nothing).
#[derive(Clone, Default)]
pub struct Guard {
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub auth: Option<Credentials>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Guard {{ tls: {}, auth: {:?} }}",
            self.tls.is_some(),
            self.auth
        )
    }
}

/// The one user allowed in, kept as a digest of `user:password`.
#[derive(Clone)]
pub struct Credentials(ring::digest::Digest);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials(***)")
    }
}

impl Credentials {
    pub fn new(user: &str, password: &crate::secret::Secret) -> Self {
        Credentials(digest(&format!("{user}:{}", password.expose())))
    }

    /// Whether an `Authorization` header carries them, compared as digests
    /// in constant time.
    fn admits(&self, header: Option<&str>) -> bool {
        let Some(encoded) = header.and_then(|h| h.strip_prefix("Basic ")) else {
            return false;
        };
        use base64::Engine as _;
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let given = digest(&String::from_utf8_lossy(&decoded));
        // Every byte compared, whatever differs first: the time taken says
        // nothing of where the digests part.
        let diff = given
            .as_ref()
            .iter()
            .zip(self.0.as_ref())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        diff == 0
    }
}

fn digest(text: &str) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, text.as_bytes())
}

/// Serves `handler` (request -> reply) on `listener`, behind `guard`, until
/// the task is dropped.
pub async fn serve<H>(
    listener: tokio::net::TcpListener,
    handler: H,
    guard: Guard,
    stop: tokio_util::sync::CancellationToken,
) where
    H: Fn(&Request) -> Reply + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    let connections = tokio_util::task::TaskTracker::new();
    loop {
        let accepted = tokio::select! {
            () = stop.cancelled() => break,
            a = listener.accept() => a,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let (handler, guard) = (handler.clone(), guard.clone());
        connections.spawn(async move {
            // Nobody holds a connection without saying what it wants: a
            // handshake and a request head each get ten seconds.
            const PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let admitted = admit(&req, guard.auth.as_ref());
                    let handler = handler.clone();
                    async move {
                        let reply = match admitted {
                            Some(request) => answer(request, handler).await,
                            None => unauthorized(),
                        };
                        Ok::<_, std::convert::Infallible>(reply)
                    }
                });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(PATIENCE);
            match &guard.tls {
                None => {
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = http.serve_connection(io, service).await;
                }
                Some(tls) => {
                    // A failed handshake (a plain-HTTP client, a scanner)
                    // costs that connection only.
                    if let Ok(Ok(stream)) = tokio::time::timeout(PATIENCE, tls.accept(stream)).await
                    {
                        let io = hyper_util::rt::TokioIo::new(stream);
                        let _ = http.serve_connection(io, service).await;
                    }
                }
            }
        });
    }
    // Answers in flight finish (a scrape of /metrics takes milliseconds);
    // idle keep-alive connections are not waited for past a second.
    connections.close();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), connections.wait()).await;
}

/// The request, or `None` when its credentials are wrong (all paths but
/// `/healthz` need them, where the listener has some).
fn admit(
    req: &hyper::Request<hyper::body::Incoming>,
    auth: Option<&Credentials>,
) -> Option<Request> {
    let header = |name| req.headers().get(name).and_then(|v| v.to_str().ok());
    let path = req.uri().path();
    if let Some(creds) = auth.filter(|_| path != "/healthz") {
        if !creds.admits(header(hyper::header::AUTHORIZATION)) {
            return None;
        }
    }
    Some(Request {
        path: path.to_string(),
        query: req.uri().query().map(str::to_string),
        accept: header(hyper::header::ACCEPT)
            .unwrap_or_default()
            .to_string(),
    })
}

fn unauthorized() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header("www-authenticate", "Basic realm=\"lbwatch\"")
        .body(Full::new(Bytes::from_static(b"unauthorized\n")))
        .expect("a valid response")
}

/// The handler's reply, made on a thread of the blocking pool: a handler
/// may take long (`/metrics` of 100,000 servers, a third of a second), and
/// the runtime has two workers, which scrapes need. A handler that
/// panicked gets a 500.
async fn answer<H>(request: Request, handler: Arc<H>) -> Response<Full<Bytes>>
where
    H: Fn(&Request) -> Reply + Send + Sync + 'static,
{
    let Ok(reply) = tokio::task::spawn_blocking(move || handler(&request)).await else {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Full::new(Bytes::from_static(b"internal error\n")))
            .expect("a valid response");
    };
    Response::builder()
        .status(reply.status)
        .header("content-type", reply.content_type)
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(reply.body)))
        .expect("a valid response")
}

/// The listener's TLS from its PEM files; errors name the key and file.
pub fn tls_acceptor(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect())
        .map_err(|e| format!("http.tls.cert_file: {}: {e}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("http.tls.key_file: {}: {e}", key.display()))?;
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| format!("http.tls: {e}"))?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .map_err(|e| format!("http.tls: {e}"))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_decoded() {
        let r = Request {
            query: Some("target=lb%201&pool=web+api&x".into()),
            ..Request::default()
        };
        assert_eq!(r.param("target").as_deref(), Some("lb 1"));
        assert_eq!(r.param("pool").as_deref(), Some("web api"));
        assert_eq!(r.param("x").as_deref(), Some(""));
        assert_eq!(r.param("y"), None);
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%41"), "%zzA");
    }

    #[test]
    fn basic_auth_admits_only_its_user_and_password() {
        let c = Credentials::new("prom", &crate::secret::Secret::new("s3cret".into()));
        // base64("prom:s3cret"), and of "prom:wrong".
        assert!(c.admits(Some("Basic cHJvbTpzM2NyZXQ=")));
        assert!(!c.admits(Some("Basic cHJvbTp3cm9uZw==")));
        assert!(!c.admits(Some("Bearer cHJvbTpzM2NyZXQ=")));
        assert!(!c.admits(Some("Basic !!!")));
        assert!(!c.admits(None));
        assert_eq!(format!("{c:?}"), "Credentials(***)");
    }

    /// A GET of `path` on `addr`, its whole response.
    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let head = format!("GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n");
        s.write_all(head.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    /// A handler that takes long keeps no other request waiting, even on a
    /// runtime of one thread: `/slow` waits for `/fast` to be answered,
    /// which it never would be if handlers ran on the runtime's threads.
    #[tokio::test]
    async fn a_slow_handler_holds_up_no_other_request() {
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let started_tx = std::sync::Mutex::new(Some(started_tx));
        let (fast_tx, fast_rx) = std::sync::mpsc::channel::<()>();
        let (fast_tx, fast_rx) = (
            std::sync::Mutex::new(fast_tx),
            std::sync::Mutex::new(fast_rx),
        );
        let handler = move |r: &Request| match r.path.as_str() {
            "/slow" => {
                if let Some(tx) = started_tx.lock().unwrap().take() {
                    let _ = tx.send(());
                }
                let waited = fast_rx
                    .lock()
                    .unwrap()
                    .recv_timeout(std::time::Duration::from_secs(5));
                Reply::ok(
                    "text/plain",
                    if waited.is_ok() {
                        "slow-ok"
                    } else {
                        "slow-alone"
                    }
                    .into(),
                )
            }
            _ => {
                let _ = fast_tx.lock().unwrap().send(());
                Reply::ok("text/plain", "fast".into())
            }
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        tokio::spawn(serve(listener, handler, Guard::default(), stop.clone()));
        let slow = tokio::spawn(get(addr, "/slow"));
        started.await.unwrap();
        assert!(get(addr, "/fast").await.ends_with("fast"));
        let slow = slow.await.unwrap();
        assert!(slow.ends_with("slow-ok"), "{slow}");
        stop.cancel();
    }
}
