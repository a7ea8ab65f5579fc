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
#[derive(Debug, Clone, Default)]
pub struct FileConfig {
    pub http: HttpConfig,
    pub targets: Vec<TargetConfig>,
    pub notifiers: Vec<NotifierConfig>,
    pub detection: DetectConfig,
    pub state: StateConfig,
    pub log: crate::log::LogConfig,
    pub metrics: crate::cardinality::MetricsConfig,
    pub cluster: crate::cluster::ClusterConfig,
    pub discovery: Vec<crate::discovery::DiscoveryConfig>,
}

/// The file as read: each `[[notifiers]]` entry is read into its kind
/// afterwards, on its own, so that every entry's errors are reported, not
/// only the first one's.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileText {
    #[serde(default)]
    http: HttpConfig,
    #[serde(default)]
    targets: Vec<serde_json::Value>,
    #[serde(default)]
    notifiers: Vec<serde_json::Value>,
    #[serde(default)]
    detection: DetectConfig,
    #[serde(default)]
    state: StateConfig,
    #[serde(default)]
    log: crate::log::LogConfig,
    #[serde(default)]
    metrics: crate::cardinality::MetricsConfig,
    #[serde(default)]
    cluster: crate::cluster::ClusterConfig,
    #[serde(default)]
    discovery: Vec<crate::discovery::DiscoveryConfig>,
}

/// `[state]`: where lbwatch keeps what must survive a restart (the
/// notification outboxes, the detector's state, the incident history).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StateConfig {
    /// Default: `$STATE_DIRECTORY` (set by systemd's `StateDirectory=`),
    /// else `lbwatch-state` in the working directory.
    pub dir: Option<PathBuf>,
    /// How long closed incidents are kept (default 90 days).
    pub incident_retention: Option<crate::detect::Secs>,
    /// How many incidents are kept at most, the oldest dropped first
    /// (default 1000).
    pub max_incidents: Option<usize>,
}

impl StateConfig {
    pub fn incident_limits(&self) -> crate::incident::store::Limits {
        crate::incident::store::Limits {
            retention_s: self.incident_retention.map_or(90.0 * 86_400.0, |s| s.0),
            max: self.max_incidents.unwrap_or(1000).max(1),
        }
    }

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
///
/// Unknown keys are refused by `format`, which takes the keys this struct
/// does not: serde cannot deny them here as well as flatten.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TargetConfig {
    /// Appears as `target` in samples, alerts and metrics.
    pub name: String,
    /// `kind`, and the keys only that kind takes (`mapping`).
    #[serde(flatten)]
    pub format: crate::source::Format,
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

/// `[[notifiers]]`: where alert events go besides stdout, by `kind`; each
/// kind takes its own keys, so a key of another kind is an unknown key.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum NotifierConfig {
    Webhook(WebhookConfig),
    Pagerduty(PagerDutyConfig),
    Alertmanager(AlertmanagerConfig),
}

// The keys every kind shares (name, url, url_file, url_env, timeout,
// queue_size, route) are written out in each kind, and
// `NotifierConfig::common` reads them whatever the kind. Targets do it the
// other way round (`source::Format`): the shared keys in one struct, the
// kind a tagged enum flattened into it that refuses the keys no one took.
// Notifiers could follow; until then the two ways stand side by side.

/// `kind = "webhook"`: the generic JSON payload, optional headers and HMAC
/// signature.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// Names the notifier in metrics, logs and its outbox file; default
    /// `<kind>-<position>`. Keep it stable: the outbox is found by it.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub url: Option<SecretUrl>,
    /// The URL from a file or the environment instead of `url`, for URLs
    /// that carry their token (chat webhooks, `?token=`): it is then a
    /// secret, shown as its scheme and host only.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub url_env: Option<String>,
    /// Extra request headers (their values are secrets).
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Signs each body with HMAC-SHA256 under this shared secret (header
    /// `X-Lbwatch-Signature: sha256=<hex>`).
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    #[serde(default)]
    pub secret_env: Option<String>,
    /// Per request.
    #[serde(default = "default_notify_timeout")]
    pub timeout: Secs,
    /// Undelivered notifications kept; beyond it new ones are dropped and
    /// counted.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Which alerts go here; every alert when empty.
    #[serde(default)]
    pub route: RouteConfig,
}

/// `kind = "pagerduty"`: Events API v2, one event per request.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// The Events API v2 endpoint; default PagerDuty's own.
    #[serde(default)]
    pub url: Option<SecretUrl>,
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub url_env: Option<String>,
    /// The integration's routing key, from a file or the environment,
    /// never from this file.
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    #[serde(default)]
    pub routing_key_env: Option<String>,
    /// Per request.
    #[serde(default = "default_notify_timeout")]
    pub timeout: Secs,
    /// Undelivered notifications kept; beyond it new ones are dropped and
    /// counted.
    #[serde(default = "default_queue_size")]
    pub queue_size: usize,
    /// Which alerts go here; every alert when empty.
    #[serde(default)]
    pub route: RouteConfig,
}

/// `kind = "alertmanager"`: API v2, the whole set of alerts, re-sent on a
/// lease.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    #[serde(default)]
    pub name: Option<String>,
    /// One Alertmanager's base URL, or `urls`: every instance of a cluster,
    /// each sent every alert (never put a load balancer in front of them).
    #[serde(default)]
    pub url: Option<SecretUrl>,
    #[serde(default)]
    pub urls: Vec<SecretUrl>,
    /// The URLs, separated by white space or commas, from a file or the
    /// environment.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    #[serde(default)]
    pub url_env: Option<String>,
    /// Firing alerts are re-sent this often, each with a lease of 4 times it.
    #[serde(default = "default_resend_interval")]
    pub resend_interval: Secs,
    /// Per request.
    #[serde(default = "default_notify_timeout")]
    pub timeout: Secs,
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

/// The keys every kind of notifier has, whatever its kind.
#[derive(Debug)]
pub struct NotifierCommon<'a> {
    pub name: Option<&'a str>,
    pub url: Option<&'a SecretUrl>,
    pub urls: &'a [SecretUrl],
    pub url_file: Option<&'a PathBuf>,
    pub url_env: Option<&'a String>,
    pub timeout: Secs,
    pub queue_size: usize,
    pub route: &'a RouteConfig,
}

impl NotifierConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            NotifierConfig::Webhook(_) => "webhook",
            NotifierConfig::Pagerduty(_) => "pagerduty",
            NotifierConfig::Alertmanager(_) => "alertmanager",
        }
    }

    pub fn common(&self) -> NotifierCommon<'_> {
        macro_rules! common {
            ($c:expr, $urls:expr) => {
                NotifierCommon {
                    name: $c.name.as_deref(),
                    url: $c.url.as_ref(),
                    urls: $urls,
                    url_file: $c.url_file.as_ref(),
                    url_env: $c.url_env.as_ref(),
                    timeout: $c.timeout,
                    queue_size: $c.queue_size,
                    route: &$c.route,
                }
            };
        }
        match self {
            NotifierConfig::Webhook(c) => common!(c, &[]),
            NotifierConfig::Pagerduty(c) => common!(c, &[]),
            NotifierConfig::Alertmanager(c) => common!(c, &c.urls),
        }
    }

    /// The name it goes by (metrics, logs, outbox file).
    pub fn name(&self, i: usize) -> String {
        self.common()
            .name
            .map_or_else(|| format!("{}-{i}", self.kind()), str::to_string)
    }

    /// Every receiver URL written in the file (not those of `url_file` or
    /// `url_env`).
    pub fn receivers(&self) -> Vec<SecretUrl> {
        let c = self.common();
        c.url.into_iter().chain(c.urls).cloned().collect()
    }

    /// Whether the URL comes from a file or the environment.
    fn url_is_secret(&self) -> bool {
        let c = self.common();
        c.url_file.is_some() || c.url_env.is_some()
    }
}

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
pub(crate) fn without_values(message: &str) -> String {
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
    // Numbers are quoted with backticks (`invalid type: integer `123``),
    // as are the names of keys, which stay.
    let text = ["integer `", "floating point `", "character `"]
        .iter()
        .fold(kept.join(": "), |t, what| hide_after(&t, what, '`'));
    let mut out = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
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

/// `text` with what follows each `opening` up to `close` replaced by `…`.
fn hide_after(text: &str, opening: &str, close: char) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(opening) {
        out.push_str(&rest[..i + opening.len()]);
        rest = &rest[i + opening.len()..];
        let end = rest.find(close).unwrap_or(rest.len());
        out.push('…');
        rest = &rest[end..];
    }
    out.push_str(rest);
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
    let text: FileText = built
        .try_deserialize()
        .map_err(|e| invalid(vec![without_values(&e.to_string())]))?;
    let (cfg, at, mut errors) = text.typed();
    errors.extend(cfg.validate_at(&at));
    if errors.is_empty() {
        Ok(cfg)
    } else {
        Err(invalid(errors))
    }
}

impl FileText {
    /// The config with each notifier read into its kind, and the errors of
    /// those that could not be, each naming its entry.
    /// Also the position in the file of each entry read.
    fn typed(self) -> (FileConfig, Positions, Vec<String>) {
        let mut errors = Vec::new();
        let (targets, t_at) = entries("targets", self.targets, &mut errors);
        let (notifiers, n_at) = entries("notifiers", self.notifiers, &mut errors);
        let cfg = FileConfig {
            http: self.http,
            targets,
            notifiers,
            detection: self.detection,
            state: self.state,
            log: self.log,
            metrics: self.metrics,
            cluster: self.cluster,
            discovery: self.discovery,
        };
        let at = Positions {
            targets: t_at,
            notifiers: n_at,
        };
        (cfg, at, errors)
    }
}

/// Where each target and notifier read was in the file: entries that could
/// not be read are left out, and errors must name the others' places.
#[derive(Debug)]
struct Positions {
    targets: Vec<usize>,
    notifiers: Vec<usize>,
}

/// The entries of array `what` read into `T`, each on its own, with their
/// positions; each one that cannot be read adds an error naming it.
fn entries<T: serde::de::DeserializeOwned>(
    what: &str,
    values: Vec<serde_json::Value>,
    errors: &mut Vec<String>,
) -> (Vec<T>, Vec<usize>) {
    let mut read = Vec::new();
    let mut at = Vec::new();
    for (i, v) in values.into_iter().enumerate() {
        match serde_json::from_value::<T>(v) {
            Ok(t) => {
                read.push(t);
                at.push(i);
            }
            Err(e) => errors.push(format!(
                "{what}[{i}]: {}",
                // What serde says of a key an empty kind variant (a target
                // of a kind without keys of its own) does not take.
                without_values(&e.to_string())
                    .replace(", there are no fields", ": not a key of this kind")
            )),
        }
    }
    (read, at)
}

impl FileConfig {
    /// Every problem of the whole file, each naming its key path and value.
    pub fn validate(&self) -> Vec<String> {
        self.validate_at(&Positions {
            targets: (0..self.targets.len()).collect(),
            notifiers: (0..self.notifiers.len()).collect(),
        })
    }

    /// ... where `at` says where each target and notifier was in the file.
    fn validate_at(&self, at: &Positions) -> Vec<String> {
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
        if let Some(text) = &self.cluster.shard {
            if let Err(e) = text.parse::<crate::cluster::Shard>() {
                errs.push(format!("cluster.shard: {e}"));
            }
        }
        for (i, d) in self.discovery.iter().enumerate() {
            errs.extend(d.problems(i));
        }
        if self.cluster.shard.is_some() && self.cluster.shards.is_some() {
            errs.push("cluster.shards: set shard = \"I/N\" or shards = N (the index from the pod's ordinal), not both".into());
        }
        if self.cluster.shards == Some(0) {
            errs.push(crate::cluster::ShardError::NoShards.to_string());
        }
        if self.http.listen.parse::<SocketAddr>().is_err() {
            errs.push(format!(
                "http.listen: {:?} is invalid: expected an address and port like \"127.0.0.1:9847\"",
                self.http.listen
            ));
        }
        let mut names = std::collections::BTreeSet::new();
        for (t, &i) in self.targets.iter().zip(&at.targets) {
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
            errs.extend(validate_target(t, &key));
        }
        let mut notifier_names = std::collections::BTreeSet::new();
        for (n, &i) in self.notifiers.iter().zip(&at.notifiers) {
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

/// The problems of one `[[targets]]` entry besides its name; `key` names
/// one of its keys.
fn validate_target(t: &TargetConfig, key: &dyn Fn(&str) -> String) -> Vec<String> {
    let mut errs = Vec::new();
    let secret_url = t.url_file.is_some() || t.url_env.is_some();
    if secret_url && !t.url.expose().is_empty() || t.url_file.is_some() && t.url_env.is_some() {
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
    errs
}

/// Every problem of one `[[notifiers]]` entry.
fn validate_notifier(i: usize, n: &NotifierConfig) -> Vec<String> {
    let key = |k: &str| format!("notifiers[{i}].{k}");
    let c = n.common();
    let mut errs = Vec::new();
    if let Some(name) = c.name {
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
    if c.url_file.is_some() && c.url_env.is_some() {
        errs.push(format!(
            "{}: set url_file or url_env, not both",
            key("url_file")
        ));
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
    if !(c.timeout.0.is_finite() && c.timeout.0 > 0.0) {
        errs.push(format!(
            "{}: {} is invalid: a positive duration",
            key("timeout"),
            c.timeout
        ));
    }
    if c.queue_size == 0 {
        errs.push(format!("{}: 0 is invalid: at least 1", key("queue_size")));
    }
    errs.extend(validate_route(c.route, &key));
    errs.extend(match n {
        NotifierConfig::Webhook(w) => validate_webhook(w, n.url_is_secret(), &key),
        NotifierConfig::Pagerduty(p) => secret_source(
            p.routing_key_file.as_ref(),
            p.routing_key_env.as_ref(),
            "routing_key",
            &key,
        ),
        NotifierConfig::Alertmanager(a) => validate_alertmanager(a, n.url_is_secret(), &key),
    });
    errs
}

/// A secret read from `<what>_file` or `<what>_env`: exactly one of them
/// (`required`), or at most one.
fn secret_source(
    file: Option<&PathBuf>,
    env: Option<&String>,
    what: &str,
    key: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let required = what == "routing_key";
    match (file.is_some(), env.is_some()) {
        (true, true) => vec![format!(
            "{}: set {what}_file or {what}_env, not both",
            key(&format!("{what}_file"))
        )],
        (false, false) if required => vec![format!(
            "{}: missing: pagerduty needs {what}_file or {what}_env",
            key(&format!("{what}_file"))
        )],
        _ => vec![],
    }
}

fn validate_webhook(
    w: &WebhookConfig,
    url_is_secret: bool,
    key: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut errs = secret_source(w.secret_file.as_ref(), w.secret_env.as_ref(), "secret", key);
    if w.url.is_none() && !url_is_secret {
        errs.push(format!(
            "{}: missing: a webhook needs url, url_file or url_env",
            key("url")
        ));
    }
    for (h, v) in &w.headers {
        if reqwest::header::HeaderName::from_bytes(h.as_bytes()).is_err()
            || reqwest::header::HeaderValue::from_str(v.expose()).is_err()
        {
            errs.push(format!(
                "{}: {h:?} is not a valid HTTP header",
                key("headers")
            ));
        }
    }
    errs
}

fn validate_alertmanager(
    a: &AlertmanagerConfig,
    url_is_secret: bool,
    key: &dyn Fn(&str) -> String,
) -> Vec<String> {
    let mut errs = Vec::new();
    if a.url.is_none() && a.urls.is_empty() && !url_is_secret {
        errs.push(format!(
            "{}: missing: an alertmanager notifier needs url, urls, url_file or url_env",
            key("url")
        ));
    }
    if !(a.resend_interval.0.is_finite() && a.resend_interval.0 >= 1.0) {
        errs.push(format!(
            "{}: {} is invalid: at least 1s",
            key("resend_interval"),
            a.resend_interval
        ));
    }
    errs
}

fn validate_route(route: &RouteConfig, key: &dyn Fn(&str) -> String) -> Vec<String> {
    let mut errs = Vec::new();
    for a in &route.alerts {
        if !crate::model::AlertName::ALL.iter().any(|x| x.as_str() == a) {
            errs.push(format!(
                "{}: {a:?} is invalid: alerts are {}",
                key("route.alerts"),
                crate::model::AlertName::ALL.map(|x| x.as_str()).join(", ")
            ));
        }
    }
    for s in &route.severities {
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
        assert_eq!(cfg.notifiers[1].common().route.severities, ["critical"]);
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
    fn each_kind_takes_its_own_keys_and_every_entry_is_reported_at_once() {
        let e = load_text(
            r#"
[[notifiers]]
kind = "webhook"
url = "https://hooks.example/x"
routing_key_file = "/k"

[[notifiers]]
kind = "slack"

[[notifiers]]
kind = "pagerduty"
routing_key_env = "K"
headers = { Authorization = "Bearer s3cret" }

[[notifiers]]
url = "https://x/"

[[notifiers]]
kind = "alertmanager"
url = "https://am/"
queue_size = "s3cret-in-the-\"wrong\" place"

[[notifiers]]
kind = "webhook"
url = "https://hooks.example/y"
headers = { X-Api-Key = 982347611 }

[[notifiers]]
kind = "alertmanager"
resend_interval = "0s"

[detection.skew]
hot_ratio = 0.5
"#,
            &[],
        )
        .unwrap_err();
        let text = e.lines().join("\n");
        for part in [
            "notifiers[0]: unknown field `routing_key_file`",
            "notifiers[1]: unknown variant `slack`, expected one of `webhook`, `pagerduty`, `alertmanager`",
            "notifiers[2]: unknown field `headers`",
            "notifiers[3]: missing field `kind`",
            "notifiers[4]: invalid type",
            "notifiers[5]: invalid type: integer `…`, expected a string",
            "notifiers[6].url: missing",
            "notifiers[6].resend_interval: 0s is invalid",
            "detection.skew.hot_ratio: 0.5",
        ] {
            assert!(text.contains(part), "{part:?} missing from\n{text}");
        }
        for secret in ["s3cret", "wrong", "place", "982347611"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
    }

    #[test]
    fn each_target_kind_takes_its_own_keys() {
        let mapping =
            "[targets.mapping]\npool_label = \"service\"\nrequests = { metric = \"x_total\" }\n";
        let e = load_text(
            &format!(
                "[[targets]]\nname = \"a\"\nkind = \"haproxy\"\nurl = \"http://lb/\"\n{mapping}\n\
                 [[targets]]\nname = \"b\"\nkind = \"prometheus\"\nurl = \"http://lb/\"\n\n\
                 [[targets]]\nname = \"c\"\nkind = \"envoy\"\nurl = \"http://lb/\"\nintervall = \"1s\"\n\n\
                 [[targets]]\nname = \"d\"\nkind = \"prometheus\"\nurl = \"http://lb/\"\n{mapping}"
            ),
            &[],
        )
        .unwrap_err();
        let text = e.lines().join("\n");
        for part in [
            "targets[0]: unknown field `mapping`: not a key of this kind",
            "targets[1]: missing field `mapping`",
            "targets[2]: unknown field `intervall`: not a key of this kind",
        ] {
            assert!(text.contains(part), "{part:?} missing from\n{text}");
        }
        assert!(!text.contains("targets[3]"), "{text}");
        let ok = load_text(
            &format!(
                "[[targets]]\nname = \"d\"\nkind = \"prometheus\"\nurl = \"http://lb/\"\n{mapping}"
            ),
            &[],
        )
        .unwrap();
        assert!(matches!(
            &ok.targets[0].format,
            crate::source::Format::Prometheus { mapping } if mapping.pool_label == "service"
        ));
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
