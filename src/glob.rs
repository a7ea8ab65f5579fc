//! Shell-style wildcards in paths (`*`, `?`, `[…]`), as NGINX's `include`
//! and Prometheus' `file_sd` file lists take them.

use std::path::{Path, PathBuf};

/// Files matching a path whose components may hold `*`, `?` and `[…]`
/// wildcards, as NGINX's glob lists them (in order).
pub fn glob(path: &Path) -> Vec<PathBuf> {
    let mut found = vec![PathBuf::new()];
    for part in path.components() {
        let name = part.as_os_str().to_string_lossy();
        if !is_wild(&name) {
            found.iter_mut().for_each(|p| p.push(part));
            continue;
        }
        found = found
            .iter()
            .flat_map(|dir| {
                let listed = std::fs::read_dir(if dir.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    dir
                });
                let mut matches: Vec<PathBuf> = listed
                    .into_iter()
                    .flatten()
                    .filter_map(Result::ok)
                    .filter(|e| wildcard(&name, &e.file_name().to_string_lossy()))
                    .map(|e| dir.join(e.file_name()))
                    .collect();
                matches.sort();
                matches
            })
            .collect();
    }
    found.retain(|p| p.is_file());
    found
}

/// Whether a path component holds a wildcard.
pub fn is_wild(part: &str) -> bool {
    part.contains(['*', '?', '['])
}

/// `*` matches any run of characters, `?` one, `[abc]`/`[a-z]` one of a set.
pub fn wildcard(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    matches_at(&p, &n)
}

fn matches_at(p: &[char], n: &[char]) -> bool {
    match p.first() {
        None => n.is_empty(),
        Some('*') => (0..=n.len()).any(|i| matches_at(&p[1..], &n[i..])),
        Some('?') => !n.is_empty() && matches_at(&p[1..], &n[1..]),
        Some('[') => {
            let Some(end) = p.iter().position(|c| *c == ']') else {
                return n.first() == Some(&'[') && matches_at(&p[1..], &n[1..]);
            };
            let set = &p[1..end];
            let Some(c) = n.first() else {
                return false;
            };
            let hit = set
                .windows(3)
                .any(|w| w[1] == '-' && (w[0]..=w[2]).contains(c))
                || set.contains(c);
            hit && matches_at(&p[end + 1..], &n[1..])
        }
        Some(c) => n.first() == Some(c) && matches_at(&p[1..], &n[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_a_shell() {
        assert!(wildcard("up?.conf", "up1.conf"));
        assert!(wildcard("up[0-9].conf", "up7.conf"));
        assert!(!wildcard("up[0-9].conf", "upx.conf"));
        assert!(wildcard("*.conf", "a.conf"));
        assert!(!wildcard("*.conf", "a.conf.bak"));
        assert!(wildcard("*", "x"));
        assert!(wildcard("a*b*c", "aXbYc"));
    }
}
