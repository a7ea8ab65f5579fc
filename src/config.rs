//! The configuration file: TOML, with `LBWATCH__SECTION__KEY` environment
//! overrides, read with the `config` crate and validated as a whole before
//! anything starts. Every error names its key path and value, and all of
//! them are reported at once.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use config::{Environment, File, FileFormat};
use serde::Deserialize;

use crate::detect::{DetectConfig, Secs};
use crate::secret::{Secret, SecretUrl};

/// The whole file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub targets: Vec<TargetConfig>,
    #[serde(default)]
    pub notifiers: Vec<NotifierConfig>,
    #[serde(default)]
    pub detection: DetectConfig,
    #[serde(default)]
    pub state: StateConfig,
    #[serde(default)]
    pub log: crate::log::LogConfig,
}

/// `[state]`: where lbwatch keeps what must survive a restart (the
/// notification outboxes and the detector's state).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// Default: `$STATE_DIRECTORY` (set by systemd's `StateDirectory=`),
    /// else `lbwatch-state` in the working directory.
    pub dir: Option<PathBuf>,
}

impl StateConfig {
    pub fn dir(&self) -> PathBuf {
        self.dir.clone().unwrap_or_else(|| {
            std::env::var_os("STATE_DIRECTORY")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("lbwatch-state"))
        })
    }
}

/// `[http]`: lbwatch's own listener (/metrics, /healthz).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Loopback unless told otherwise: the stats of a load balancer are
    /// nobody else's business.
    pub listen: String,
    /// How others reach this listener (Alertmanager's `generatorURL`, links
    /// in notifications); default `http://<listen>`.
    pub external_url: Option<String>,
    /// For a listener beyond loopback, as Prometheus exporters' web config
    /// does: HTTPS ...
    pub tls: Option<ListenTls>,
    /// ... and basic auth on everything but /healthz.
    pub basic_auth: Option<BasicAuth>,
}

/// `[http.tls]`: the listener's certificate chain and key, PEM.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenTls {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// `[http.basic_auth]`: one user; the password from a file or the
/// environment, never from this file.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub username: String,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: "127.0.0.1:9847".into(),
            external_url: None,
            tls: None,
            basic_auth: None,
        }
    }
}

impl HttpConfig {
    pub fn external_url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.external_url
            .clone()
            .unwrap_or_else(|| format!("{scheme}://{}", self.listen))
            .trim_end_matches('/')
            .to_string()
    }
}

/// `[[targets]]`: one load balancer's stats endpoint.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    /// Appears as `target` in samples, alerts and metrics.
    pub name: String,
    /// The stats format.
    pub kind: String,
    /// `http(s)://...` or `unix:///path/to/admin.sock` (HAProxy runtime API).
    #[serde(default)]
    pub url: SecretUrl,
    /// The URL from a file or the environment instead, for a stats URL that
    /// carries a token (`?token=`, a password): it is then a secret, shown
    /// as scheme and host only.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub url_env: Option<String>,
    #[serde(default = "default_interval")]
    pub interval: Secs,
    /// Per scrape; default: the interval, at most 10 s.
    #[serde(default)]
    pub timeout: Option<Secs>,
    /// A larger response is cut off and the scrape counted as failed.
    #[serde(default = "default_max_response_bytes")]
    pub max_response_bytes: u64,
    /// HTTP basic auth; the password comes from a file or the environment,
    /// never from this file, and never appears in logs or errors.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    #[serde(default)]
    pub password_env: Option<String>,
    /// For `kind = "prometheus"`: which metrics and labels are what.
    #[serde(default)]
    pub mapping: Option<crate::source::prometheus::Mapping>,
    /// For an `https://` endpoint: its CA, a client certificate (mTLS).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `[targets.tls]`: how lbwatch trusts a stats endpoint and proves itself
/// to it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificates to trust, instead of the built-in Mozilla roots.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key, PEM, for endpoints that ask for
    /// one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// Accepts any certificate: for a lab, never production. Logged as a
    /// warning at every start and reload.
    pub insecure_skip_verify: bool,
}

fn default_interval() -> Secs {
    Secs(5.0)
}

fn default_max_response_bytes() -> u64 {
    16 << 20
}

impl TargetConfig {
    pub fn timeout(&self) -> Secs {
        self.timeout.unwrap_or(Secs(self.interval.0.min(10.0)))
    }
}

/// `[[notifiers]]`: where alert events go besides stdout.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifierConfig {
    /// webhook | alertmanager | pagerduty
    pub kind: String,
    /// Names the notifier in metrics, logs and its outbox file; default
    /// `<kind>-<position>`. Keep it stable: the outbox is found by it.
    #[serde(default)]
    pub name: Option<String>,
    /// The receiver: the webhook's URL, an Alertmanager's base URL, or the
    /// PagerDuty Events API v2 endpoint (default PagerDuty's own).
    #[serde(default)]
    pub url: Option<SecretUrl>,
    /// Alertmanager: every instance of a cluster, each sent every alert
    /// (never put a load balancer in front of them).
    #[serde(default)]
    pub urls: Vec<SecretUrl>,
    /// The receiver's URL from a file or the environment instead of `url`,
    /// for URLs that carry their token (chat webhooks, `?token=`): it is
    /// then a secret, shown as its scheme and host only. For an Alertmanager
    /// cluster, every URL, separated by white space or commas.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub url_env: Option<String>,
    /// Webhook: extra request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// PagerDuty: the integration's routing key, from a file or the
    /// environment, never from this file.
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    #[serde(default)]
    pub routing_key_env: Option<String>,
    /// Webhook: signs each body with HMAC-SHA256 under this shared secret
    /// (header `X-Lbwatch-Signature: sha256=<hex>`).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Per request.
    #[serde(default = "default_notify_timeout")]
    pub timeout: Secs,
    /// Alertmanager: firing alerts are re-sent this often, each with a
    /// lease of 4 times it.
    #[serde(default = "default_resend_interval")]
    pub resend_interval: Secs,
    /// Undelivered notifications kept; beyond it new ones are dropped and
    /// counted.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Which alerts go here; every alert when empty.
    #[serde(default)]
    pub route: RouteConfig,
}

/// `[notifiers.route]`: each list, when not empty, must contain the alert's
/// value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RouteConfig {
    pub alerts: Vec<String>,
    pub severities: Vec<String>,
    pub targets: Vec<String>,
    pub pools: Vec<String>,
}

fn default_notify_timeout() -> Secs {
    Secs(10.0)
}

fn default_resend_interval() -> Secs {
    Secs(60.0)
}

fn default_queue_size() -> usize {
    10_000
}

impl NotifierConfig {
    /// The name it goes by (metrics, logs, outbox file).
    pub fn name(&self, i: usize) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("{}-{i}", self.kind))
    }

    /// Every receiver URL written in the file (not those of `url_file` or
    /// `url_env`).
    pub fn receivers(&self) -> Vec<SecretUrl> {
        self.url.iter().chain(&self.urls).cloned().collect()
    }

    /// Whether the URL comes from a file or the environment.
    fn url_is_secret(&self) -> bool {
        self.url_file.is_some() || self.url_env.is_some()
    }
}

/// Notifiers this version delivers to.
pub const NOTIFIER_KINDS: &[&str] = &["webhook", "alertmanager", "pagerduty"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {}", errors.join("; "))]
    Invalid { path: PathBuf, errors: Vec<String> },
}

impl ConfigError {
    /// Every problem found, one per line, each prefixed with the file.
    pub fn lines(&self) -> Vec<String> {
        match self {
            ConfigError::Read { .. } => vec![self.to_string()],
            ConfigError::Invalid { path, errors } => errors
                .iter()
                .map(|e| format!("{}: {e}", path.display()))
                .collect(),
        }
    }
}

/// A TOML or type error without the text it quotes: the line it shows and
/// any quoted value may be a password, a token in a URL or a header value.
/// What stays says where (line, column, key) and what was expected.
fn without_values(message: &str) -> String {
    let kept: Vec<&str> = message
        .lines()
        .filter(|l| {
            !l.trim_start()
                .trim_start_matches(|c: char| c.is_ascii_digit())
                .trim_start()
                .starts_with('|')
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    let mut out = String::new();
    let mut quoted = false;
    for c in kept.join(": ").chars() {
        match c {
            '"' if quoted => {
                out.push_str("…\"");
                quoted = false;
            }
            '"' => {
                out.push('"');
                quoted = true;
            }
            c if !quoted => out.push(c),
            _ => {}
        }
    }
    out
}

/// Reads `path` with overrides from the process environment.
pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// Reads `path` with overrides from `env` (`LBWATCH__DETECTION__SKEW__HOT_RATIO=3`).
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_with_env(path, &text, env)
}

/// The config in `text` (read from `path`, which errors name), with
/// overrides from `env`: no I/O, so it can be checked on any input.
pub fn parse_with_env(
    path: &Path,
    text: &str,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<FileConfig, ConfigError> {
    let overrides: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with("LBWATCH__"))
        .collect();
    let invalid = |errors: Vec<String>| ConfigError::Invalid {
        path: path.to_path_buf(),
        errors,
    };
    let built = config::Config::builder()
        .add_source(File::from_str(text, FileFormat::Toml))
        .add_source(
            Environment::with_prefix("LBWATCH")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(overrides)),
        )
        .build()
        .map_err(|e| invalid(vec![without_values(&e.to_string())]))?;
    let cfg: FileConfig = built
        .try_deserialize()
        .map_err(|e| invalid(vec![without_values(&e.to_string())]))?;
    let errors = cfg.validate();
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(invalid(errors))
    }
}

impl FileConfig {
    /// Every problem of the whole file, each naming its key path and value.
    pub fn validate(&self) -> Vec<String> {
        let mut errs: Vec<String> = self
            .detection
            .validate()
            .iter()
            .map(ToString::to_string)
            .collect();
        if let Some(why) = self.log.invalid_level() {
            errs.push(format!("log.level: {:?} is invalid: {why}", self.log.level));
        }
        if let Some(a) = &self.http.basic_auth {
            if a.password_file.is_some() == a.password_env.is_some() {
                errs.push(
                    "http.basic_auth.password_file: set password_file or password_env, one of them"
                        .into(),
                );
            }
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            errs.push(format!(
                "http.listen: {:?} is invalid: expected an address and port like \"127.0.0.1:9847\"",
                self.http.listen
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (i, t) in self.targets.iter().enumerate() {
            let key = |k: &str| format!("targets[{i}].{k}");
            if t.name.trim().is_empty() {
                errs.push(format!(
                    "{}: {:?} is invalid: a target needs a name",
                    key("name"),
                    t.name
                ));
            } else if !names.insert(t.name.clone()) {
                errs.push(format!(
                    "{}: {:?} is invalid: another target has that name",
                    key("name"),
                    t.name
                ));
            }
            if let Err(why) = crate::source::build(&t.kind, t.mapping.as_ref()) {
                errs.push(format!("{}: {:?} is invalid: {why}", key("kind"), t.kind));
            }
            let secret_url = t.url_file.is_some() || t.url_env.is_some();
            if secret_url && !t.url.expose().is_empty()
                || t.url_file.is_some() && t.url_env.is_some()
            {
                errs.push(format!(
                    "{}: set url, url_file or url_env, one of them",
                    key("url_file")
                ));
            } else if t.url.expose().is_empty() && !secret_url {
                errs.push(format!(
                    "{}: missing: a target needs url, url_file or url_env",
                    key("url")
                ));
            } else if let Some(why) = (!secret_url)
                .then(|| crate::endpoint::Endpoint::parse(t.url.expose()).err())
                .flatten()
            {
                errs.push(format!(
                    "{}: {:?} is invalid: {why}",
                    key("url"),
                    t.url.shown()
                ));
            }
            if !(t.interval.0.is_finite() && t.interval.0 >= 0.1) {
                errs.push(format!(
                    "{}: {} is invalid: at least 100ms",
                    key("interval"),
                    t.interval
                ));
            }
            let timeout = t.timeout();
            if !(timeout.0.is_finite() && timeout.0 > 0.0) {
                errs.push(format!(
                    "{}: {timeout} is invalid: a positive duration",
                    key("timeout")
                ));
            }
            if t.max_response_bytes < 1024 {
                errs.push(format!(
                    "{}: {} is invalid: at least 1024",
                    key("max_response_bytes"),
                    t.max_response_bytes
                ));
            }
            if t.password_file.is_some() && t.password_env.is_some() {
                errs.push(format!(
                    "{}: set password_file or password_env, not both",
                    key("password_file")
                ));
            }
            if (t.password_file.is_some() || t.password_env.is_some()) && t.username.is_none() {
                errs.push(format!("{}: a password needs a username", key("username")));
            }
            if let Some(tls) = &t.tls {
                if tls.cert_file.is_some() != tls.key_file.is_some() {
                    errs.push(format!(
                        "{}: a client certificate needs cert_file and key_file",
                        key("tls.cert_file")
                    ));
                }
                if !secret_url && !t.url.expose().starts_with("https://") {
                    errs.push(format!("{}: TLS settings need an https:// url", key("tls")));
                }
            }
        }
        let mut notifier_names = std::collections::BTreeSet::new();
        for (i, n) in self.notifiers.iter().enumerate() {
            errs.extend(validate_notifier(i, n));
            let name = n.name(i);
            if !notifier_names.insert(name.clone()) {
                errs.push(format!(
                    "notifiers[{i}].name: {name:?} is invalid: another notifier has that name"
                ));
            }
        }
        errs
    }
}

/// Every problem of one `[[notifiers]]` entry.
fn validate_notifier(i: usize, n: &NotifierConfig) -> Vec<String> {
    let key = |k: &str| format!("notifiers[{i}].{k}");
    let mut errs = Vec::new();
    if !NOTIFIER_KINDS.contains(&n.kind.as_str()) {
        errs.push(format!(
            "{}: {:?} is invalid: supported kinds are {}",
            key("kind"),
            n.kind,
            NOTIFIER_KINDS.join(", ")
        ));
        return errs;
    }
    let kind = n.kind.as_str();
    if let Some(name) = &n.name {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            errs.push(format!(
                "{}: {name:?} is invalid: letters, digits, '-', '_' and '.' only (it names a file)",
                key("name")
            ));
        }
    }
    let receivers = n.receivers();
    if n.url_is_secret() && !receivers.is_empty() {
        errs.push(format!(
            "{}: set url (or urls) or url_file or url_env, one of them",
            key("url_file")
        ));
    }
    if n.url_file.is_some() && n.url_env.is_some() {
        errs.push(format!(
            "{}: set url_file or url_env, not both",
            key("url_file")
        ));
    }
    match kind {
        _ if n.url_is_secret() => {}
        "webhook" if n.url.is_none() => errs.push(format!(
            "{}: missing: a webhook needs url, url_file or url_env",
            key("url")
        )),
        "webhook" if !n.urls.is_empty() => errs.push(format!(
            "{}: a webhook takes one url, not a list",
            key("urls")
        )),
        "alertmanager" if receivers.is_empty() => errs.push(format!(
            "{}: missing: an alertmanager notifier needs url, urls, url_file or url_env",
            key("url")
        )),
        "pagerduty" if !n.urls.is_empty() => {
            errs.push(format!("{}: pagerduty takes one url", key("urls")))
        }
        _ => {}
    }
    for u in &receivers {
        match crate::endpoint::Endpoint::parse(u.expose()) {
            Ok(crate::endpoint::Endpoint::Http(_)) => {}
            Ok(_) => errs.push(format!(
                "{}: {:?} is invalid: a receiver is http(s)://",
                key("url"),
                u.shown()
            )),
            Err(why) => errs.push(format!("{}: {:?} is invalid: {why}", key("url"), u.shown())),
        }
    }
    let secret =
        |file: &Option<PathBuf>, env: &Option<String>, what: &str, errs: &mut Vec<String>| {
            if file.is_some() && env.is_some() {
                errs.push(format!(
                    "{}: set {what}_file or {what}_env, not both",
                    key(&format!("{what}_file"))
                ));
            }
        };
    secret(
        &n.routing_key_file,
        &n.routing_key_env,
        "routing_key",
        &mut errs,
    );
    secret(&n.secret_file, &n.secret_env, "secret", &mut errs);
    if kind == "pagerduty" && n.routing_key_file.is_none() && n.routing_key_env.is_none() {
        errs.push(format!(
            "{}: missing: pagerduty needs routing_key_file or routing_key_env",
            key("routing_key_file")
        ));
    }
    if kind != "pagerduty" && (n.routing_key_file.is_some() || n.routing_key_env.is_some()) {
        errs.push(format!(
            "{}: only pagerduty takes a routing key",
            key("routing_key_file")
        ));
    }
    if kind != "webhook"
        && (n.secret_file.is_some() || n.secret_env.is_some() || !n.headers.is_empty())
    {
        errs.push(format!(
            "{}: only a webhook takes a secret or headers",
            key("secret_file")
        ));
    }
    for (h, v) in &n.headers {
        if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(v.expose()).is_err()
        {
            errs.push(format!(
                "{}: {h:?} is not a valid HTTP header",
                key("headers")
            ));
        }
    }
    if !(n.timeout.0.is_finite() && n.timeout.0 > 0.0) {
        errs.push(format!(
            "{}: {} is invalid: a positive duration",
            key("timeout"),
            n.timeout
        ));
    }
    if !(n.resend_interval.0.is_finite() && n.resend_interval.0 >= 1.0) {
        errs.push(format!(
            "{}: {} is invalid: at least 1s",
            key("resend_interval"),
            n.resend_interval
        ));
    }
    if n.queue_size == 0 {
        errs.push(format!("{}: 0 is invalid: at least 1", key("queue_size")));
    }
    for a in &n.route.alerts {
        if !crate::model::AlertName::ALL.iter().any(|x| x.as_str() == a) {
            errs.push(format!(
                "{}: {a:?} is invalid: alerts are {}",
                key("route.alerts"),
                crate::model::AlertName::ALL.map(|x| x.as_str()).join(", ")
            ));
        }
    }
    for s in &n.route.severities {
        if !["critical", "warning", "info"].contains(&s.as_str()) {
            errs.push(format!(
                "{}: {s:?} is invalid: severities are critical, warning, info",
                key("route.severities")
            ));
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Secs;

    fn load_text(text: &str, env: &[(&str, &str)]) -> Result<FileConfig, ConfigError> {
        let dir = std::env::temp_dir().join(format!("lbwatch-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{:x}.toml", text.len() * 31 + env.len()));
        std::fs::write(&path, text).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        let r = load_with_env(&path, env);
        std::fs::remove_file(&path).unwrap();
        r
    }

    #[test]
    fn the_minimal_config_of_the_interface_is_accepted() {
        let cfg = load_text(
            r#"
[http]
listen = "127.0.0.1:9847"

[[targets]]
name = "lb1"
kind = "haproxy"
url = "http://127.0.0.1:8404/stats;csv"
interval = "1s"

[[notifiers]]
kind = "webhook"
url = "http://127.0.0.1:9999/hook"
"#,
            &[],
        )
        .unwrap();
        assert_eq!(cfg.detection, DetectConfig::default());
    }

    #[test]
    fn detection_settings_and_environment_overrides_apply() {
        let cfg = load_text(
            "[detection]\nresolve_after = \"2m\"\n[detection.skew]\nhot_ratio = 3.0\n",
            &[("LBWATCH__DETECTION__DROP__RATIO", "0.01"), ("OTHER", "x")],
        )
        .unwrap();
        assert_eq!(cfg.detection.resolve_after, Secs(120.0));
        assert_eq!(cfg.detection.skew.hot_ratio, 3.0);
        assert_eq!(cfg.detection.drop.ratio, 0.01);
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let e = load_text("[detection.skew]\nhot_ration = 3.0\n", &[]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("hot_ration"), "{msg}");
        let e = load_text("[detectoin]\n", &[]).unwrap_err();
        assert!(e.to_string().contains("detectoin"), "{e}");
    }

    #[test]
    fn invalid_values_are_all_reported_with_their_key_path() {
        let e = load_text(
            "[detection.skew]\nhot_ratio = 0.5\n[detection.errors]\nsignificance = 7\n",
            &[],
        )
        .unwrap_err();
        let lines = e.lines();
        assert!(
            lines
                .iter()
                .any(|l| l.contains("detection.skew.hot_ratio: 0.5")),
            "{lines:?}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.contains("detection.errors.significance: 7")),
            "{lines:?}"
        );
        // The value itself is not repeated (a value in a config may be a
        // secret); the key and what was expected are.
        let e = load_text("[detection]\nresolve_after = \"soon\"\n", &[]).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("invalid duration")
                && msg.contains("detection.resolve_after")
                && !msg.contains("soon"),
            "{msg}"
        );
    }

    #[test]
    fn every_notifier_kind_is_accepted_with_its_settings() {
        let cfg = load_text(
            r#"
[[notifiers]]
kind = "alertmanager"
urls = ["http://10.0.0.1:9093", "http://10.0.0.2:9093"]
resend_interval = "30s"

[[notifiers]]
kind = "pagerduty"
routing_key_env = "PD_KEY"
[notifiers.route]
severities = ["critical"]
alerts = ["TrafficSkew", "TrafficDrop"]

[[notifiers]]
kind = "webhook"
name = "chat"
url = "https://hooks.example.com/x"
secret_file = "/etc/lbwatch/hook.secret"
headers = { Authorization = "Bearer t" }
"#,
            &[],
        )
        .unwrap();
        let names: Vec<String> = cfg
            .notifiers
            .iter()
            .enumerate()
            .map(|(i, n)| n.name(i))
            .collect();
        assert_eq!(names, ["alertmanager-0", "pagerduty-1", "chat"]);
        assert_eq!(cfg.notifiers[0].receivers().len(), 2);
        assert_eq!(cfg.notifiers[1].route.severities, ["critical"]);
    }

    #[test]
    fn bad_notifiers_are_reported_with_their_key_path_and_value() {
        let e = load_text(
            r#"
[[notifiers]]
kind = "pagerduty"
routing_key_file = "/k"
routing_key_env = "K"
[notifiers.route]
alerts = ["TraficSkew"]
severities = ["page"]

[[notifiers]]
kind = "alertmanager"
resend_interval = "0s"

[[notifiers]]
kind = "webhook"
name = "a b"
url = "ftp://user:pw@x/"
queue_size = 0
"#,
            &[],
        )
        .unwrap_err();
        let text = e.lines().join("\n");
        for part in [
            "notifiers[0].routing_key_file: set routing_key_file or routing_key_env, not both",
            "notifiers[0].route.alerts: \"TraficSkew\" is invalid",
            "notifiers[0].route.severities: \"page\" is invalid",
            "notifiers[1].url: missing",
            "notifiers[1].resend_interval: 0s is invalid",
            "notifiers[2].name: \"a b\" is invalid",
            "notifiers[2].queue_size: 0 is invalid",
            "notifiers[2].url: \"ftp://x\" is invalid",
        ] {
            assert!(text.contains(part), "{part:?} missing from\n{text}");
        }
        assert!(!text.contains("pw"), "a password leaked: {text}");
    }

    #[test]
    fn the_documented_example_holds_exactly_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/lbwatch.toml");
        let cfg = load_with_env(&path, []).unwrap();
        assert_eq!(cfg.detection, DetectConfig::default());
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let e = load(Path::new("/nonexistent/lbwatch.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("/nonexistent/lbwatch.toml: cannot read"),
            "{e}"
        );
    }
}
