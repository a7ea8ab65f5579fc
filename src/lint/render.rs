//! Findings as people and tools read them: text in the style of rustc (the
//! line, a caret, the fix), JSON, and SARIF 2.1.0 for code-scanning UIs.

use serde_json::{json, Value};

use super::{Check, Finding, Severity};

/// The report in the style of a compiler's diagnostics.
pub fn text(findings: &[Finding]) -> String {
    let mut out = String::new();
    for f in findings {
        let label = match f.severity() {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        out.push_str(&format!("{label}[{}]: {}\n", f.check.id(), f.message));
        let gutter = " ".repeat(f.line.to_string().len());
        out.push_str(&format!("{gutter}--> {}:{}\n", f.file, f.line));
        if !f.source.trim().is_empty() {
            let indent = f.source.len() - f.source.trim_start().len();
            let caret = "^".repeat(f.source.trim().chars().count());
            out.push_str(&format!(
                "{gutter} |\n{} | {}\n",
                f.line,
                f.source.trim_end()
            ));
            out.push_str(&format!("{gutter} | {}{caret}\n", &f.source[..indent]));
        }
        // A rule's or a route's place is a section or block; the pool
        // checks' is a pool.
        let kind = match f.check {
            Check::DeniesEverything | Check::UndefinedAcl | Check::MissingPool => "",
            _ => "pool ",
        };
        let place = match (&f.pool, &f.server) {
            (Some(p), Some(s)) => format!("{kind}`{p}`, server `{s}`"),
            (Some(p), None) => format!("{kind}`{p}`"),
            _ => String::new(),
        };
        if !place.is_empty() {
            out.push_str(&format!("{gutter} = in: {place}\n"));
        }
        if !f.fix.is_empty() {
            out.push_str(&format!("{gutter} = fix: {}\n", f.fix));
        }
        out.push('\n');
    }
    let count = |s| findings.iter().filter(|f| f.severity() == s).count();
    out.push_str(&format!(
        "{} error(s), {} warning(s), {} info\n",
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info)
    ));
    out
}

/// `{"version":"1","findings":[…]}`: one object per finding.
pub fn json(findings: &[Finding]) -> Value {
    let list: Vec<Value> = findings
        .iter()
        .map(|f| {
            json!({
                "check": f.check.id(),
                "severity": f.severity(),
                "file": f.file,
                "line": f.line,
                "pool": f.pool,
                "server": f.server,
                "message": f.message,
                "fix": f.fix,
            })
        })
        .collect();
    json!({"version": "1", "findings": list})
}

/// SARIF 2.1.0: one run, every check a rule, every finding a result.
pub fn sarif(findings: &[Finding]) -> Value {
    let rules: Vec<Value> = Check::ALL
        .iter()
        .map(|c| {
            json!({
                "id": c.id(),
                "shortDescription": {"text": c.title()},
                "defaultConfiguration": {"level": level(c.severity())},
            })
        })
        .collect();
    let results: Vec<Value> = findings
        .iter()
        .map(|f| {
            let rule = Check::ALL.iter().position(|c| *c == f.check).unwrap_or(0);
            let text = if f.fix.is_empty() {
                f.message.clone()
            } else {
                format!("{} Fix: {}.", f.message, f.fix)
            };
            json!({
                "ruleId": f.check.id(),
                "ruleIndex": rule,
                "level": level(f.severity()),
                "message": {"text": text},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": uri(&f.file)},
                        "region": {"startLine": f.line},
                    }
                }],
            })
        })
        .collect();
    json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "lbwatch",
                "version": env!("CARGO_PKG_VERSION"),
                "rules": rules,
            }},
            "results": results,
        }],
    })
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// A relative path stays relative (code-scanning UIs resolve it against the
/// repository); spaces and the like are percent-encoded.
fn uri(path: &str) -> String {
    percent_encoding::utf8_percent_encode(path.trim_start_matches("./"), URI_SET).to_string()
}

const URI_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'/')
    .remove(b'.')
    .remove(b'-')
    .remove(b'_')
    .remove(b'~');
