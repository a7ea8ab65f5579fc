//! A scriptable HTTP receiver on loopback for notifications: records every
//! request (headers and body) with its arrival time, answers with the
//! statuses it is told to, and can go down (every connection dropped
//! unanswered) and come back.

#![allow(dead_code)]
// A receiver lives in real time; the clock ban is for lbwatch itself.
#![allow(clippy::disallowed_methods)]

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

/// One request received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The status it was answered with.
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Statuses for the next requests; 200 (or `default`) when empty.
    script: VecDeque<u16>,
}

pub struct Sink {
    pub port: u16,
    state: Arc<Mutex<State>>,
    down: Arc<AtomicBool>,
    /// The next request is recorded, and its answer held until released.
    hold: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    default: u16,
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A request's path, headers and body.
type Request = (String, Vec<(String, String)>, String);

fn read_request(s: &mut TcpStream) -> Option<Request> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
        let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&data[..end]).to_string();
        let mut lines = head.lines();
        let path = lines.next()?.split(' ').nth(1)?.to_string();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0);
        let body = &data[end + 4..];
        if body.len() >= len {
            return Some((
                path,
                headers,
                String::from_utf8_lossy(&body[..len]).to_string(),
            ));
        }
    }
}

fn st_last(state: &Arc<Mutex<State>>) -> Received {
    state
        .lock()
        .unwrap()
        .received
        .last()
        .cloned()
        .expect("the request just stored")
}

/// A failure's answer: the request's path, credentials and routing key
/// echoed back, escaped as JSON.
fn echo(r: &Received) -> String {
    let body: serde_json::Value = serde_json::from_str(&r.body).unwrap_or_default();
    serde_json::json!({
        "error": "scripted",
        "path": r.path,
        "authorization": r.header("authorization"),
        "routing_key": body.get("routing_key"),
    })
    .to_string()
}

impl Sink {
    /// Answers `default` unless scripted otherwise.
    pub fn start(default: u16) -> Sink {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let sink = Sink {
            port,
            state: Arc::default(),
            down: Arc::default(),
            hold: Arc::default(),
            stop: Arc::default(),
            default,
        };
        let (state, down, stop) = (sink.state.clone(), sink.down.clone(), sink.stop.clone());
        let hold = sink.hold.clone();
        thread::spawn(move || {
            listener.set_nonblocking(true).unwrap();
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    // Down: the connection is dropped unanswered. The port
                    // stays bound, so nothing else on the machine takes it
                    // while this receiver is "down".
                    Ok(_) if down.load(Ordering::Relaxed) => {}
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let Some((path, headers, body)) = read_request(&mut s) else {
                            continue;
                        };
                        let status = {
                            let mut st = state.lock().unwrap();
                            let status = st.script.pop_front().unwrap_or(default);
                            st.received.push(Received {
                                at: Instant::now(),
                                path,
                                headers,
                                body,
                                status,
                            });
                            status
                        };
                        // Held: answered once released (by then, maybe to
                        // a sender that is gone).
                        while hold.load(Ordering::Relaxed) && !stop.load(Ordering::Relaxed) {
                            thread::sleep(Duration::from_millis(10));
                        }
                        // A failure echoes what was sent, as many real
                        // receivers do: whatever lbwatch logs of it must
                        // still hold no secret.
                        let body = if status >= 400 {
                            echo(&st_last(&state))
                        } else {
                            "{}".to_string()
                        };
                        let _ = write!(
                            s,
                            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        sink
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// The next requests are answered with these statuses, in order.
    pub fn script(&self, statuses: &[u16]) {
        self.state.lock().unwrap().script.extend(statuses);
    }

    /// Holds the answer to the requests from now on (each is recorded as
    /// received) until `release`.
    pub fn hold(&self) {
        self.hold.store(true, Ordering::Relaxed);
    }

    pub fn release(&self) {
        self.hold.store(false, Ordering::Relaxed);
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Requests answered 2xx.
    pub fn accepted(&self) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| (200..300).contains(&r.status))
            .collect()
    }

    /// The events of the generic webhook payloads accepted, in order, with
    /// their arrival times.
    pub fn webhook_events(&self) -> Vec<(Instant, serde_json::Value)> {
        self.accepted()
            .iter()
            .flat_map(|r| {
                let at = r.at;
                r.json()["events"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .map(move |e| (at, e))
            })
            .collect()
    }

    /// Waits until `done` holds of what was received, at most `limit`.
    pub fn wait(&self, limit: Duration, done: impl Fn(&[Received]) -> bool) -> bool {
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if done(&self.received()) {
                return true;
            }
            thread::sleep(Duration::from_millis(50));
        }
        done(&self.received())
    }
}
