//! TLS to stats endpoints, through the real binary: a loopback HTTPS stats
//! endpoint (`openssl s_server`) with a CA, a server certificate and a
//! client certificate made by `openssl` in the test, which asks every
//! client for a certificate (mTLS).

use super::*;

/// Runs `openssl` with `args` in `dir`, or fails naming what it said.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is not installed: `apt-get install openssl`");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate,
/// each signed by the CA.
fn certificates(dir: &Path) {
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=lbwatch test CA",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
        ],
    );
    // Version 3 certificates (an extension each): rustls refuses v1.
    std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
    for who in ["server", "client"] {
        let key = format!("{who}.key");
        let csr = format!("{who}.csr");
        let pem = format!("{who}.pem");
        openssl(
            dir,
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={who}"),
                "-keyout",
                &key,
                "-out",
                &csr,
            ],
        );
        let ext = format!("{who}.ext");
        let sign = [
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &pem,
        ];
        openssl(dir, &sign);
    }
}

/// `openssl s_server` serving `dir`'s files over HTTPS, asking every
/// client for a certificate signed by the CA; killed when dropped.
struct HttpsServer {
    child: std::process::Child,
    port: u16,
}

impl Drop for HttpsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(dir: &Path) -> HttpsServer {
    let port = free_port();
    let accept = format!("127.0.0.1:{port}");
    let child = Command::new("openssl")
        .args([
            "s_server",
            "-quiet",
            "-WWW",
            "-accept",
            &accept,
            "-cert",
            "server.pem",
            "-key",
            "server.key",
            "-CAfile",
            "ca.pem",
            "-Verify",
            "1",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl is not installed: `apt-get install openssl`");
    let up = support::tools::eventually(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    assert!(up.is_some(), "openssl s_server did not listen");
    HttpsServer { child, port }
}

#[test]
fn https_stats_with_a_custom_ca_and_a_client_certificate() {
    let dir = scratch("tls");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    std::fs::write(
        dir.join("stats.csv"),
        "# pxname,svname,stot,hrsp_5xx,status,weight,type,\nweb,web-1,100,0,UP,1,2,\nweb,web-2,110,0,UP,1,2,\n",
    )
    .unwrap();
    let server = serve(&dir);
    let url = format!("https://127.0.0.1:{}/stats.csv", server.port);
    let file = |f: &str| dir.join(f).display().to_string();
    let tls = |lines: &str| format!("[targets.tls]\n{lines}\n");
    let client = format!(
        "cert_file = \"{}\"\nkey_file = \"{}\"",
        file("client.pem"),
        file("client.key")
    );
    let (mut run, out) = record(
        "tls",
        &[
            target(
                "trusted",
                &url,
                &tls(&format!("ca_file = \"{}\"\n{client}", file("ca.pem"))),
            ),
            target(
                "insecure",
                &url,
                &tls(&format!("insecure_skip_verify = true\n{client}")),
            ),
            target("no-ca", &url, &tls(&client)),
            target(
                "no-client-cert",
                &url,
                &tls(&format!("ca_file = \"{}\"", file("ca.pem"))),
            ),
        ],
    );
    let samples = |t: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(&out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|s| s["target"] == t)
            .collect()
    };
    let enough = support::tools::eventually(Duration::from_secs(20), || {
        ["trusted", "insecure", "no-ca", "no-client-cert"]
            .iter()
            .all(|t| samples(t).len() >= 3)
            .then_some(())
    });
    run.wait_for(Duration::from_millis(200), |_| false);
    let logs = run.stderr.lock().unwrap().clone();
    run.stop();
    assert!(enough.is_some(), "too few samples: {logs}");
    for t in ["trusted", "insecure"] {
        let s = samples(t);
        assert!(
            s.iter()
                .all(|s| s["servers"].as_array().is_some_and(|v| v.len() == 2)),
            "{t}: {s:?}"
        );
    }
    for (t, why) in [
        ("no-ca", "invalid peer certificate: UnknownIssuer"),
        ("no-client-cert", "CertificateRequired"),
    ] {
        let s = samples(t);
        assert!(
            s.iter().all(|s| s["error"]
                .as_str()
                .is_some_and(|e| e.contains(why) && !e.contains("stats.csv"))),
            "{t}: {s:?}"
        );
    }
    assert!(
        logs.contains(
            "targets[1].tls.insecure_skip_verify: the stats endpoint's certificate is NOT checked"
        ),
        "{logs}"
    );
}
