//! HAProxy's `server`, `server-template` and `default-server` lines: what
//! each says about taking traffic, and where the server is.

use super::model::{normalise_address, Location, Server};

/// What a server line (or `default-server`) says about taking traffic.
#[derive(Debug, Clone, Default)]
pub struct ServerParams {
    weight: Option<f64>,
    backup: Option<bool>,
    disabled: Option<bool>,
    /// `resolvers`: a host name is resolved at run time, each server of the
    /// name getting its own address from the answer.
    resolvers: bool,
    /// `source ADDRESS`: two servers at one address from different
    /// sources are two routes (the source-port workaround).
    source: Option<String>,
}

impl ServerParams {
    /// Applies `weight`, `backup`, `disabled`, `resolvers`, `source` and
    /// their opposites.
    pub fn read(&mut self, words: &[String]) {
        let mut it = words.iter();
        while let Some(w) = it.next() {
            match w.as_str() {
                "weight" => self.weight = it.next().and_then(|v| v.parse().ok()),
                "backup" => self.backup = Some(true),
                "no-backup" => self.backup = Some(false),
                "disabled" => self.disabled = Some(true),
                "enabled" => self.disabled = Some(false),
                "resolvers" => self.resolvers = it.next().is_some(),
                "source" => self.source = it.next().cloned(),
                _ => {}
            }
        }
    }

    fn server(&self, name: String, at: &Location, address: Option<String>) -> Server {
        Server {
            name,
            at: at.clone(),
            address,
            weight: self.weight.unwrap_or(1.0),
            backup: self.backup.unwrap_or(false),
            disabled: self.disabled.unwrap_or(false),
        }
    }
}

/// `server NAME ADDRESS [params]`.
pub fn server(defaults: &ServerParams, words: &[String], at: &Location) -> Result<Server, String> {
    let (Some(name), Some(written)) = (words.get(1), words.get(2)) else {
        return Err("`server` needs a name and an address".to_string());
    };
    let mut params = defaults.clone();
    params.read(&words[3..]);
    let address = normalise_address(written, None);
    let host = address
        .rsplit_once(':')
        .map_or(address.as_str(), |(h, _)| h);
    let by_name = host
        .trim_matches(['[', ']'])
        .parse::<std::net::IpAddr>()
        .is_err()
        && !address.starts_with("unix:");
    let address = match (&params.source, params.resolvers && by_name) {
        (_, true) => None,
        (Some(source), false) => Some(format!("{address} from {source}")),
        (None, false) => Some(address),
    };
    Ok(params.server(name.clone(), at, address))
}

/// `server-template PREFIX NUM|FIRST-LAST ADDRESS [params]`: slots filled at
/// run time (DNS or the runtime API), so their addresses are unknown here.
pub fn template(
    defaults: &ServerParams,
    words: &[String],
    at: &Location,
) -> Result<Vec<Server>, String> {
    let (Some(prefix), Some(range)) = (words.get(1), words.get(2)) else {
        return Err("`server-template` needs a prefix, a number and an address".to_string());
    };
    let bad =
        || format!("`server-template {prefix}`: `{range}` is not a number or a range like 1-10");
    let (first, last) = match range.split_once('-') {
        Some((a, b)) => (
            a.parse::<u32>().map_err(|_| bad())?,
            b.parse::<u32>().map_err(|_| bad())?,
        ),
        None => (1, range.parse::<u32>().map_err(|_| bad())?),
    };
    let mut params = defaults.clone();
    params.read(words.get(4..).unwrap_or(&[]));
    Ok((first..=last)
        .map(|n| params.server(format!("{prefix}{n}"), at, None))
        .collect())
}
