//! lbwatch's small HTTP server: a loop that accepts on a listener and
//! answers each GET with what a handler says for its path. Used by the
//! daemon (/healthz, /metrics) and the demo's simulated load balancer.

use std::sync::Arc;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Response, StatusCode};

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

    pub fn not_found() -> Self {
        Reply {
            status: StatusCode::NOT_FOUND,
            content_type: "text/plain",
            body: "not found\n".into(),
        }
    }
}

/// Serves `handler` (path -> reply) on `listener` until the task is dropped.
pub async fn serve<H>(listener: tokio::net::TcpListener, handler: H)
where
    H: Fn(&str) -> Reply + Send + Sync + 'static,
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
                    let reply = handler(req.uri().path());
                    async move {
                        Ok::<_, std::convert::Infallible>(
                            Response::builder()
                                .status(reply.status)
                                .header("content-type", reply.content_type)
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
