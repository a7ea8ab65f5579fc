//! Debian's dnsmasq as a DNS server on loopback, answering only the
//! records a test gives it (no upstream, no /etc/hosts), and stopped (the
//! process this harness started, by its handle) when dropped.

#![allow(dead_code)]
#![allow(clippy::disallowed_methods)] // a real process in real time

use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::tools::{binary, eventually};

/// The domain the server answers for; a name in it without records is
/// NXDOMAIN, not a question forwarded anywhere.
pub const DOMAIN: &str = "lbwatch.test";

pub struct Dnsmasq {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Dnsmasq {
    /// Starts on 127.0.0.1:`port` (UDP and TCP) with `records`, dnsmasq
    /// options such as `--srv-host=…` and `--host-record=…`.
    pub fn start(dir: &Path, port: u16, records: &[String]) -> Dnsmasq {
        std::fs::create_dir_all(dir).unwrap();
        let mut d = Dnsmasq {
            port,
            dir: dir.to_path_buf(),
            child: None,
        };
        d.serve(records);
        d
    }

    /// Stops it and starts it again on the same port with `records`:
    /// dnsmasq reads SRV records only at start.
    pub fn restart(&mut self, records: &[String]) {
        self.stop();
        self.serve(records);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn serve(&mut self, records: &[String]) {
        let log = std::fs::File::create(self.dir.join("dnsmasq.log")).unwrap();
        let mut args = vec![
            "--keep-in-foreground".to_string(),
            "--conf-file=/dev/null".into(),
            "--no-resolv".into(),
            "--no-hosts".into(),
            "--no-poll".into(),
            "--bind-interfaces".into(),
            "--listen-address=127.0.0.1".into(),
            format!("--port={}", self.port),
            format!("--pid-file={}", self.dir.join("dnsmasq.pid").display()),
            format!("--local=/{DOMAIN}/"),
            "--log-facility=-".into(),
            "--log-queries".into(),
        ];
        // As root, dnsmasq would change to a user that may not exist here.
        if is_root() {
            args.push("--user=root".into());
        }
        args.extend(records.iter().cloned());
        let child = Command::new(binary("dnsmasq", "dnsmasq-base"))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let port = self.port;
        let up = eventually(Duration::from_secs(10), || answers(port).then_some(()));
        assert!(up.is_some(), "dnsmasq did not answer on 127.0.0.1:{port}");
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
    })
}

/// Whether a DNS server answers an A question for the domain on `port`.
fn answers(port: u16) -> bool {
    let Ok(sock) = UdpSocket::bind("127.0.0.1:0") else {
        return false;
    };
    let _ = sock.set_read_timeout(Some(Duration::from_millis(300)));
    // Header: id 1, recursion desired, one question.
    let mut q = vec![0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in format!("probe.{DOMAIN}").split('.') {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]);
    let mut buf = [0u8; 512];
    sock.send_to(&q, ("127.0.0.1", port)).is_ok() && sock.recv(&mut buf).is_ok_and(|n| n >= 12)
}

/// A DNS server on 127.0.0.1:`port` (UDP) that answers every question
/// with SERVFAIL, as a resolver whose upstream is down does; it stops
/// when dropped.
pub struct ServFail {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ServFail {
    pub fn start(port: u16) -> ServFail {
        let sock = UdpSocket::bind(("127.0.0.1", port)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stopped.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                if n < 12 {
                    continue;
                }
                // The question back, flagged a response (QR), recursion
                // available, RCODE 2, and no records.
                let mut reply = buf[..question_end(&buf[..n])].to_vec();
                reply[2] = 0x80 | (buf[2] & 0x01);
                reply[3] = 0x80 | 2;
                reply[6..12].fill(0);
                let _ = sock.send_to(&reply, from);
            }
        });
        ServFail {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for ServFail {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where a query's first question ends (its labels, then type and class):
/// the reply leaves out what follows, such as an EDNS record.
fn question_end(q: &[u8]) -> usize {
    let mut at = 12;
    while at < q.len() && q[at] != 0 {
        at += 1 + usize::from(q[at]);
    }
    (at + 5).min(q.len())
}
