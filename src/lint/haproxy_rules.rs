//! HAProxy's request rules (`http-request`, `tcp-request`): which turn
//! every request away, given their conditions and the rules before them.

use super::acl::{Judged, Truth};
use super::haproxy_section::Section;
use super::model::{refuses, Blocker, LbConfig, Location, UndefinedAcl};

/// Actions after which a request skips the rest of its rule set and goes
/// on to a server. (A `redirect`, `return` or `auth` answers the request
/// itself: what it lets through comes back and meets the later deny.)
const ESCAPES: &[&str] = &["allow", "accept"];
/// Actions that turn a request away.
const BLOCKS: &[&str] = &["deny", "reject", "tarpit", "silent-drop"];

/// A request rule: records whether it lets requests escape the rest of its
/// set, and whether it blocks every request that reaches it.
pub fn rule(section: &mut Section, out: &mut LbConfig, words: &[String], at: &Location) {
    // `tcp-request connection reject` names its set in the second word.
    let (set, action_at) = if words[0] == "tcp-request" {
        (
            format!("{} {}", words[0], words.get(1).map_or("", |w| w)),
            2,
        )
    } else {
        (words[0].clone(), 1)
    };
    let Some(action) = words.get(action_at) else {
        return;
    };
    let cond_at = words.iter().position(|w| w == "if" || w == "unless");
    let judged = condition(section, out, cond_at.map_or(&[][..], |i| &words[i..]), at);
    let blocks = BLOCKS.contains(&action.as_str()) || blocking_return(action, words);
    let escaped = section.escapes.get(&set).copied().unwrap_or(false);
    if ESCAPES.contains(&action.as_str()) && !blocks && judged.truth != Truth::Never {
        section.escapes.insert(set.clone(), true);
    }
    if blocks
        && judged.truth == Truth::Always
        && !escaped
        && !section.uncertain
        && set != "http-response"
    {
        let blocker = Blocker {
            at: at.clone(),
            pool: Some(section.name.clone()),
            why: judged.why,
            rule: words.join(" "),
        };
        section.blockers.push((blocker, !set.starts_with("tcp-")));
    }
}

/// `http-request return status 403`: a return that answers with an error.
fn blocking_return(action: &str, words: &[String]) -> bool {
    if action != "return" {
        return false;
    }
    let status = words
        .iter()
        .position(|w| w == "status")
        .and_then(|i| words.get(i + 1))
        .and_then(|s| s.parse::<u16>().ok());
    status.is_some_and(refuses)
}

/// Judges `if …`/`unless …` (or no condition: every request), recording the
/// ACL names it uses that the section never defined.
pub fn condition(section: &Section, out: &mut LbConfig, words: &[String], at: &Location) -> Judged {
    let Some((keyword, rest)) = words.split_first() else {
        return Judged {
            truth: Truth::Always,
            why: "it has no condition".to_string(),
        };
    };
    let mut undefined = Vec::new();
    let judged = section
        .acls
        .condition(rest, keyword == "unless", &mut undefined);
    for name in undefined {
        out.undefined_acls.push(UndefinedAcl {
            at: at.clone(),
            section: section.name.clone(),
            name,
        });
    }
    judged
}
