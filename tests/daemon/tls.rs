//! TLS through the real binary, with a CA, a server certificate and a
//! client certificate made by `openssl` in the test: to a loopback HTTPS
//! stats endpoint (`openssl s_server`) that asks every client for a
//! certificate (mTLS), and on lbwatch's own listener with basic auth.

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
    // The targets that fail the handshake carry a password and a token in
    // their URL: their errors must show neither.
    let secret_url = format!(
        "https://lbwatch:Passw0rdOverTls@127.0.0.1:{}/stats.csv?token=T0kenOverTls",
        server.port
    );
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
            target("no-ca", &secret_url, &tls(&client)),
            target(
                "no-client-cert",
                &secret_url,
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
    let recorded = std::fs::read_to_string(&out).unwrap();
    for shown in [&recorded, &logs] {
        assert!(
            !shown.contains("Passw0rdOverTls") && !shown.contains("T0kenOverTls"),
            "{shown}"
        );
    }
    assert!(
        logs.contains(
            "targets[1].tls.insecure_skip_verify: the stats endpoint's certificate is NOT checked"
        ),
        "{logs}"
    );
}

/// GET `url` with a client that trusts `ca`, as `user:password` if given;
/// (status, `WWW-Authenticate`, body), or the error.
fn https_get(
    ca: &Path,
    url: &str,
    auth: Option<(&str, &str)>,
) -> Result<(u16, String, String), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pem = std::fs::read(ca).unwrap();
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
            .build()
            .unwrap();
        let mut req = client.get(url);
        if let Some((u, p)) = auth {
            req = req.basic_auth(u, Some(p));
        }
        let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let challenge = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        Ok((status, challenge, resp.text().await.unwrap_or_default()))
    })
}

#[test]
fn the_listener_serves_https_with_basic_auth_and_healthz_stays_open() {
    const PASSWORD: &str = "Listen3rPassw0rd";
    let dir = scratch("listen-tls");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    certificates(&dir);
    std::fs::write(dir.join("password"), format!("{PASSWORD}\n")).unwrap();
    let lb = fake_lb::start(Behaviour::Csv);
    let port = free_port();
    let file = |f: &str| dir.join(f).display().to_string();
    let cfg = write_config(
        "listen-tls.toml",
        &format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\n[http.tls]\ncert_file = \"{}\"\nkey_file = \"{}\"\n\
             [http.basic_auth]\nusername = \"prometheus\"\npassword_file = \"{}\"\n{}",
            file("server.pem"),
            file("server.key"),
            file("password"),
            target("lb1", &lb.url, "")
        ),
    );
    let mut run = Running::start(&["run", "--config", cfg.to_str().unwrap()]);
    run.wait_for(Duration::from_secs(3), |_| false);
    let ca = dir.join("ca.pem");
    let url = |p: &str| format!("https://127.0.0.1:{port}{p}");
    let anonymous = https_get(&ca, &url("/metrics"), None);
    let wrong = https_get(&ca, &url("/api/v1/alerts"), Some(("prometheus", "guess")));
    let right = https_get(&ca, &url("/metrics"), Some(("prometheus", PASSWORD)));
    let health = https_get(&ca, &url("/healthz"), None);
    let plain = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        // With the right credentials: a plain-HTTP listener would answer.
        let auth = base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("prometheus:{PASSWORD}"),
        );
        let _ = s.write_all(
            format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        );
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).to_string()
    };
    let logs = run.stderr.lock().unwrap().clone();
    run.stop();
    let anonymous = anonymous.unwrap();
    assert_eq!(
        (anonymous.0, anonymous.1.as_str()),
        (401, "Basic realm=\"lbwatch\"")
    );
    assert_eq!(wrong.unwrap().0, 401);
    let right = right.unwrap();
    assert_eq!(right.0, 200);
    assert!(
        right.2.contains("lbwatch_target_up{target=\"lb1\"} 1"),
        "{}",
        right.2
    );
    assert_eq!(health.unwrap().0, 200);
    assert!(
        !plain.starts_with("HTTP/"),
        "answered over plain HTTP: {plain}"
    );
    assert!(!logs.contains(PASSWORD), "{logs}");
}
