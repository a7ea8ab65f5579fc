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

fn percent_decode(v: &str) -> String {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = |b: u8| (b as char).to_digit(16);
                match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                    }
                    _ => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
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

/// Serves `handler` (request -> reply) on `listener` until the task is
/// dropped.
pub async fn serve<H>(listener: tokio::net::TcpListener, handler: H)
where
    H: Fn(&Request) -> Reply + Send + Sync + 'static,
{
    let handler = Arc::new(handler);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let request = Request {
                        path: req.uri().path().to_string(),
                        query: req.uri().query().map(str::to_string),
                        accept: req
                            .headers()
                            .get(hyper::header::ACCEPT)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string(),
                    };
                    let reply = handler(&request);
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(reply.status)
                                .header("content-type", reply.content_type)
                                .header("cache-control", "no-store")
                                .body(Full::new(Bytes::from(reply.body)))
                                .expect("a valid response"),
                        )
                    }
                });
            let io = hyper_util::rt::TokioIo::new(stream);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, service)
                .await;
        });
    }
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
}
