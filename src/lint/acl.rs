//! HAProxy conditions (`if`/`unless` followed by ACLs), judged without a
//! request: some match every request whatever it is, some none, the rest
//! depend on the request. Only the first kind makes a deny rule an outage,
//! so everything not certain is `Depends`.

use std::collections::HashMap;

/// What a condition does for every possible request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    Always,
    Never,
    Depends,
}

impl Truth {
    fn not(self) -> Truth {
        match self {
            Truth::Always => Truth::Never,
            Truth::Never => Truth::Always,
            Truth::Depends => Truth::Depends,
        }
    }

    fn and(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::Never, _) | (_, Truth::Never) => Truth::Never,
            (Truth::Always, Truth::Always) => Truth::Always,
            _ => Truth::Depends,
        }
    }

    fn or(self, other: Truth) -> Truth {
        match (self, other) {
            (Truth::Always, _) | (_, Truth::Always) => Truth::Always,
            (Truth::Never, Truth::Never) => Truth::Never,
            _ => Truth::Depends,
        }
    }
}

/// A verdict and the reason a person can check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judged {
    pub truth: Truth,
    pub why: String,
}

impl Judged {
    fn depends() -> Judged {
        Judged {
            truth: Truth::Depends,
            why: String::new(),
        }
    }
}

/// The named ACLs of one proxy section: each `acl` line with that name adds
/// patterns, and the ACL matches when any line does.
#[derive(Debug, Default)]
pub struct Acls {
    named: HashMap<String, Judged>,
}

/// ACLs HAProxy predefines (section 7.4 of its configuration manual).
const PREDEFINED: &[&str] = &[
    "FALSE",
    "HTTP",
    "HTTP_1.0",
    "HTTP_1.1",
    "HTTP_2.0",
    "HTTP_3.0",
    "HTTP_CONTENT",
    "HTTP_URL_ABS",
    "HTTP_URL_SLASH",
    "HTTP_URL_STAR",
    "LOCALHOST",
    "METH_CONNECT",
    "METH_DELETE",
    "METH_GET",
    "METH_HEAD",
    "METH_OPTIONS",
    "METH_POST",
    "METH_PUT",
    "METH_TRACE",
    "RDP_COOKIE",
    "REQ_CONTENT",
    "TRUE",
    "WAIT_END",
];

/// Fetches that compare a string or address with patterns: with no pattern
/// they match nothing (only boolean and integer samples match bare).
const PATTERN_FETCHES: &[&str] = &[
    "src", "dst", "path", "path_beg", "path_end", "path_sub", "path_reg", "path_dir", "url",
    "url_beg", "url_end", "url_sub", "url_reg", "hdr", "hdr_beg", "hdr_end", "hdr_sub", "hdr_reg",
    "hdr_dom", "req.hdr", "base", "base_beg", "method",
];

impl Acls {
    /// Takes `acl NAME CRITERION [FLAGS] [VALUES]` (the words after `acl`).
    pub fn define(&mut self, words: &[String]) {
        let Some((name, rest)) = words.split_first() else {
            return;
        };
        let judged = judge_acl(rest);
        let merged = match self.named.remove(name) {
            None => judged,
            Some(before) => Judged {
                truth: before.truth.or(judged.truth),
                why: if judged.truth == Truth::Always {
                    judged.why
                } else {
                    before.why
                },
            },
        };
        self.named.insert(name.clone(), merged);
    }

    /// Judges the words after `if`/`unless` (`unless` passed as `negate`).
    /// Names used and defined nowhere are pushed to `undefined`.
    pub fn condition(&self, words: &[String], negate: bool, undefined: &mut Vec<String>) -> Judged {
        let mut any = Judged {
            truth: Truth::Never,
            why: String::new(),
        };
        for group in split_or(words) {
            let all = self.and_group(group, undefined);
            if all.truth == Truth::Always || any.truth != Truth::Always {
                any.why = all.why.clone();
            }
            any.truth = any.truth.or(all.truth);
        }
        if negate {
            any.truth = any.truth.not();
        }
        if any.truth == Truth::Depends {
            any.why.clear();
        }
        any
    }

    fn and_group(&self, words: &[String], undefined: &mut Vec<String>) -> Judged {
        let mut all = Judged {
            truth: Truth::Always,
            why: String::new(),
        };
        let mut i = 0;
        while i < words.len() {
            let mut negated = false;
            let mut word = words[i].as_str();
            while let Some(rest) = word.strip_prefix('!') {
                negated = !negated;
                word = rest;
            }
            // `! name` with a space: the negation stands alone.
            let at = if word.is_empty() { i + 1 } else { i };
            let rest: Vec<String> = std::iter::once(word.to_string())
                .filter(|w| !w.is_empty())
                .chain(words[i + 1..].iter().cloned())
                .collect();
            let (term, used) = self.term(&rest, undefined);
            let used = used + at - i;
            let term = if negated { negate(term, word) } else { term };
            if term.truth != Truth::Always || all.why.is_empty() {
                all.why = term.why;
            }
            all.truth = all.truth.and(term.truth);
            i += used;
        }
        all
    }

    /// The term at the start of `words` (a name, or `{ … }` an anonymous
    /// ACL) and how many words it took.
    fn term(&self, words: &[String], undefined: &mut Vec<String>) -> (Judged, usize) {
        match words.first().map(String::as_str) {
            Some("{") => {
                let end = words.iter().position(|w| w == "}").unwrap_or(words.len());
                (judge_acl(&words[1..end]), (end + 1).min(words.len()))
            }
            Some(name) => (self.named_term(name, undefined), 1),
            None => (Judged::depends(), 1),
        }
    }

    fn named_term(&self, name: &str, undefined: &mut Vec<String>) -> Judged {
        if let Some(judged) = self.named.get(name) {
            return judged.clone();
        }
        match name {
            "TRUE" => always("`TRUE` matches every request"),
            "FALSE" => never("`FALSE` matches no request"),
            _ if PREDEFINED.contains(&name) => Judged::depends(),
            _ => {
                undefined.push(name.to_string());
                Judged::depends()
            }
        }
    }
}

fn negate(term: Judged, word: &str) -> Judged {
    match term.truth {
        Truth::Never => always(&format!(
            "`!{word}` is always true: {}",
            if term.why.is_empty() {
                format!("`{word}` never matches")
            } else {
                term.why
            }
        )),
        truth => Judged {
            truth: truth.not(),
            why: String::new(),
        },
    }
}

fn always(why: &str) -> Judged {
    Judged {
        truth: Truth::Always,
        why: why.to_string(),
    }
}

fn never(why: &str) -> Judged {
    Judged {
        truth: Truth::Never,
        why: why.to_string(),
    }
}

/// Splits a condition on `||` and `or` into groups that all must match.
fn split_or(words: &[String]) -> impl Iterator<Item = &[String]> {
    let mut depth = 0usize;
    words
        .split(move |w| {
            match w.as_str() {
                "{" => depth += 1,
                "}" => depth = depth.saturating_sub(1),
                _ => {}
            }
            depth == 0 && (w == "||" || w == "or")
        })
        .filter(|g| !g.is_empty())
}

/// Judges one ACL's criterion and patterns (`src 0.0.0.0/0`,
/// `path_beg -i /`, `always_true`).
fn judge_acl(words: &[String]) -> Judged {
    let Some((criterion, rest)) = words.split_first() else {
        return Judged::depends();
    };
    let fetch = criterion
        .split('(')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut method = None;
    let mut values = Vec::new();
    let mut it = rest.iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            // Patterns from a file or a map: unknown here.
            "-f" | "-M" => return Judged::depends(),
            "-m" => method = it.next().map(|m| m.to_ascii_lowercase()),
            "-i" | "-n" | "-u" | "--" => {}
            _ => values.push(w.as_str()),
        }
    }
    let shown = words.join(" ");
    match (fetch.as_str(), method.as_deref()) {
        ("always_true", _) => always(&format!("`{shown}` matches every request")),
        ("always_false", _) => never(&format!("`{shown}` matches no request")),
        (_, Some("found")) | (_, Some("bool")) | (_, Some("int")) => Judged::depends(),
        ("src", _) if values.iter().any(|v| covers_every_address(v)) => {
            always(&format!("`{shown}` covers every client address"))
        }
        ("path_beg", None) | ("path", Some("beg")) if values.contains(&"/") => {
            always(&format!("`{shown}`: every path begins with `/`"))
        }
        ("path_reg", None) | ("path", Some("reg")) | ("url_reg", None) | ("url", Some("reg"))
            if values
                .iter()
                .any(|v| matches!(*v, ".*" | "^" | "^.*" | ".")) =>
        {
            always(&format!("`{shown}` matches every path"))
        }
        (f, _) if values.is_empty() && PATTERN_FETCHES.contains(&f) => never(&format!(
            "`{shown}` has no pattern, so it matches no request"
        )),
        _ => Judged::depends(),
    }
}

fn covers_every_address(pattern: &str) -> bool {
    matches!(
        pattern,
        "0.0.0.0/0" | "::/0" | "0.0.0.0/0.0.0.0" | "0/0" | "::0/0"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    fn judge(acls: &[&str], cond: &str, negate: bool) -> (Truth, Vec<String>) {
        let mut set = Acls::default();
        for a in acls {
            set.define(&w(a));
        }
        let mut undefined = Vec::new();
        let j = set.condition(&w(cond), negate, &mut undefined);
        (j.truth, undefined)
    }

    #[test]
    fn always_true_conditions() {
        let t = |acls: &[&str], c: &str| judge(acls, c, false).0;
        assert_eq!(t(&[], "TRUE"), Truth::Always);
        assert_eq!(t(&[], "!FALSE"), Truth::Always);
        assert_eq!(t(&[], "{ always_true }"), Truth::Always);
        assert_eq!(t(&["all src 0.0.0.0/0"], "all"), Truth::Always);
        assert_eq!(t(&["all src ::/0"], "all"), Truth::Always);
        assert_eq!(t(&["root path_beg /"], "root"), Truth::Always);
        assert_eq!(t(&["root path -m beg /"], "root"), Truth::Always);
        assert_eq!(t(&["none src"], "!none"), Truth::Always);
        assert_eq!(
            t(&["net src 10.0.0.0/8", "net src 0.0.0.0/0"], "net"),
            Truth::Always
        );
        assert_eq!(t(&["a hdr(host) x"], "a || TRUE"), Truth::Always);
        assert_eq!(t(&[], "{ src 0.0.0.0/0 } TRUE"), Truth::Always);
    }

    #[test]
    fn conditions_that_depend_on_the_request() {
        let t = |acls: &[&str], c: &str| judge(acls, c, false).0;
        assert_eq!(t(&["net src 10.0.0.0/8"], "net"), Truth::Depends);
        assert_eq!(t(&["net src 10.0.0.0/8"], "!net"), Truth::Depends);
        assert_eq!(t(&["adm path_beg /admin"], "adm"), Truth::Depends);
        assert_eq!(t(&["ssl ssl_fc"], "!ssl"), Truth::Depends);
        assert_eq!(t(&["h hdr(x-a) -m found"], "!h"), Truth::Depends);
        assert_eq!(t(&["b src -f /etc/blocked.lst"], "b"), Truth::Depends);
        assert_eq!(t(&["a src 0.0.0.0/0"], "a METH_POST"), Truth::Depends);
        assert_eq!(judge(&[], "FALSE", true).0, Truth::Always);
        assert_eq!(judge(&["a src 0.0.0.0/0"], "a", true).0, Truth::Never);
    }

    #[test]
    fn undefined_names_are_reported_and_predefined_ones_are_not() {
        let (_, undefined) = judge(&["adm path_beg /admin"], "!admn || METH_GET", false);
        assert_eq!(undefined, vec!["admn".to_string()]);
    }
}
