//! `lbwatch lint`: the load balancer's config read before it ships, for the
//! outages its stats cannot show (every server line at one address) and the
//! ones they show only once traffic has been lost (a deny that matches
//! everyone, a pool cut to one server).
//!
//! Readers (`haproxy.rs`, `nginx.rs`) turn a config into the [`model`];
//! [`checks`] look at one config, [`against`] at a change; [`render`] prints
//! the findings as text, JSON or SARIF.

pub mod acl;
pub mod against;
pub mod checks;
pub mod haproxy;
pub mod haproxy_rules;
pub mod haproxy_section;
pub mod haproxy_servers;
pub mod keywords;
pub mod model;
pub mod nginx;
pub mod nginx_block;
pub mod nginx_syntax;
pub mod render;

use std::path::{Path, PathBuf};

use model::{Dialect, LbConfig, SourceFile};

#[derive(Debug, thiserror::Error)]
pub enum LintError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{at}: {reason}")]
    Parse { at: String, reason: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Every check, with its ID, severity and what it is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Check {
    PoolOneAddress,
    DuplicateAddress,
    DeniesEverything,
    UndefinedAcl,
    AllDisabled,
    MissingPool,
    PoolShrunk,
    WeightsSkewed,
    BalanceChanged,
    AllBackup,
    SingleServer,
    PoolChanged,
    UnknownDirective,
}

impl Check {
    pub const ALL: [Check; 13] = [
        Check::PoolOneAddress,
        Check::DuplicateAddress,
        Check::DeniesEverything,
        Check::UndefinedAcl,
        Check::AllDisabled,
        Check::MissingPool,
        Check::PoolShrunk,
        Check::WeightsSkewed,
        Check::BalanceChanged,
        Check::AllBackup,
        Check::SingleServer,
        Check::PoolChanged,
        Check::UnknownDirective,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Check::PoolOneAddress => "pool-one-address",
            Check::DuplicateAddress => "duplicate-address",
            Check::DeniesEverything => "denies-everything",
            Check::UndefinedAcl => "undefined-acl",
            Check::AllDisabled => "all-servers-disabled",
            Check::MissingPool => "missing-pool",
            Check::PoolShrunk => "pool-shrunk",
            Check::WeightsSkewed => "weights-skewed",
            Check::BalanceChanged => "balance-changed",
            Check::AllBackup => "all-servers-backup",
            Check::SingleServer => "single-server-pool",
            Check::PoolChanged => "pool-changed",
            Check::UnknownDirective => "unknown-directive",
        }
    }

    pub fn severity(self) -> Severity {
        match self {
            Check::PoolOneAddress
            | Check::DuplicateAddress
            | Check::DeniesEverything
            | Check::UndefinedAcl
            | Check::AllDisabled
            | Check::MissingPool
            | Check::PoolShrunk
            | Check::WeightsSkewed => Severity::Error,
            Check::BalanceChanged | Check::AllBackup | Check::SingleServer => Severity::Warning,
            Check::PoolChanged | Check::UnknownDirective => Severity::Info,
        }
    }

    /// One line on what the check catches (SARIF's rule description).
    pub fn title(self) -> &'static str {
        match self {
            Check::PoolOneAddress => {
                "Every server of a pool is at one address: one machine takes all the traffic"
            }
            Check::DuplicateAddress => "Two servers of a pool are at the same address",
            Check::DeniesEverything => "A rule denies or rejects every request",
            Check::UndefinedAcl => "A condition uses an ACL that is not defined",
            Check::AllDisabled => "No server of a pool can take traffic",
            Check::MissingPool => "A route names a pool that does not exist",
            Check::PoolShrunk => "A pool lost at least half of its servers, or was cut to one",
            Check::WeightsSkewed => "New weights send most of a pool's traffic to few servers",
            Check::BalanceChanged => {
                "The balance algorithm changed to one that can pile traffic on a server"
            }
            Check::AllBackup => "Every server of a pool is a backup",
            Check::SingleServer => "A frontend routes to a pool of one server",
            Check::PoolChanged => "What changed in a pool",
            Check::UnknownDirective => "A directive lbwatch does not read",
        }
    }
}

/// One finding, located in its file.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub check: Check,
    pub file: String,
    pub line: u32,
    /// The line as written, for the report's excerpt.
    pub source: String,
    pub pool: Option<String>,
    pub server: Option<String>,
    pub message: String,
    pub fix: String,
}

impl Finding {
    pub fn severity(&self) -> Severity {
        self.check.severity()
    }
}

/// Builds findings located in one config.
#[derive(Debug)]
pub struct Found<'a> {
    config: &'a LbConfig,
    pub findings: Vec<Finding>,
}

impl<'a> Found<'a> {
    pub fn new(config: &'a LbConfig) -> Self {
        Found {
            config,
            findings: Vec::new(),
        }
    }

    pub fn push(
        &mut self,
        check: Check,
        at: &model::Location,
        (pool, server): (Option<&str>, Option<&str>),
        message: String,
        fix: String,
    ) {
        let file = &self.config.files[at.file];
        self.findings.push(Finding {
            check,
            file: file.path.clone(),
            line: at.line,
            source: file.line(at.line).to_string(),
            pool: pool.map(str::to_string),
            server: server.map(str::to_string),
            message,
            fix,
        });
    }
}

/// Which grammar to read, when the content does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    Haproxy,
    Nginx,
}

/// Reads one config: an HAProxy file or directory (its `.cfg` files in
/// order, as `haproxy -f` reads them), or an NGINX main file.
pub fn load(paths: &[PathBuf], kind: Option<KindArg>) -> Result<LbConfig, LintError> {
    let files = haproxy_files(paths)?;
    let dialect = match kind {
        Some(KindArg::Haproxy) => Dialect::Haproxy,
        Some(KindArg::Nginx) => Dialect::Nginx,
        None => detect(&files),
    };
    match dialect {
        Dialect::Haproxy => haproxy::read(files),
        Dialect::Nginx => match paths {
            [one] if one.is_file() => nginx::read(one),
            _ => Err(LintError::Parse {
                at: paths
                    .first()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
                reason: "an NGINX config is one main file (its includes are followed)".into(),
            }),
        },
    }
}

/// The files of the given paths, directories expanded to their `.cfg`
/// files in lexical order.
fn haproxy_files(paths: &[PathBuf]) -> Result<Vec<SourceFile>, LintError> {
    let mut out = Vec::new();
    for path in paths {
        let list = if path.is_dir() {
            let mut list: Vec<PathBuf> = std::fs::read_dir(path)
                .map_err(|source| read_error(path, source))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "cfg"))
                .collect();
            list.sort();
            list
        } else {
            vec![path.clone()]
        };
        for p in list {
            let text = std::fs::read_to_string(&p).map_err(|source| read_error(&p, source))?;
            out.push(SourceFile::new(p.display().to_string(), text));
        }
    }
    Ok(out)
}

fn read_error(path: &Path, source: std::io::Error) -> LintError {
    LintError::Read {
        path: path.display().to_string(),
        source,
    }
}

/// NGINX configs are blocks of `name … { … }` and `;`-terminated
/// directives; HAProxy's are sections of lines with no `;` or braces
/// closing them.
fn detect(files: &[SourceFile]) -> Dialect {
    let mut nginx = 0;
    let mut haproxy = 0;
    for line in files.iter().flat_map(|f| f.text.lines()) {
        let line = line.split('#').next().unwrap_or("").trim();
        let first = line.split_whitespace().next().unwrap_or("");
        let braced = line.contains('{');
        if line.ends_with(';') {
            nginx += 1;
        }
        if braced
            && matches!(
                first,
                "events" | "http" | "stream" | "upstream" | "server" | "location"
            )
        {
            nginx += 10;
        }
        if !braced
            && matches!(
                first,
                "frontend" | "backend" | "listen" | "defaults" | "global"
            )
        {
            haproxy += 10;
        }
    }
    if nginx > haproxy {
        Dialect::Nginx
    } else {
        Dialect::Haproxy
    }
}

/// Lints a config, and with `old` the change from it.
pub fn lint(new: &LbConfig, old: Option<&LbConfig>) -> Vec<Finding> {
    let mut findings = checks::run(new);
    if let Some(old) = old {
        findings.extend(against::run(old, new));
    }
    findings.sort_by(|a, b| {
        (b.severity(), &a.file, a.line, a.check).cmp(&(a.severity(), &b.file, b.line, b.check))
    });
    findings
}
