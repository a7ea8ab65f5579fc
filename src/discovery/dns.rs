//! Kind `dns`: SRV records (a host and a port each) or A / AAAA records
//! (addresses, with the block's `port`), asked again at every refresh.

use std::time::Duration;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::{ProtoError, ProtoErrorKind};
use hickory_resolver::{ResolveError, Resolver, TokioResolver};
use serde_json::{Map, Value};

use super::{DiscoveryConfig, DiscoveryError, Found, RecordType, Source};

/// A name's lookup, all tries included, gives up after this: a refresh
/// must end even when the server never answers, and lbwatch's start and
/// reloads wait for one.
const LOOKUP_DEADLINE: Duration = Duration::from_secs(3);

/// Asks for block `b`'s names. A name with no records has no targets; a
/// name whose lookup failed (no answer, SERVFAIL) keeps the ones it had.
pub(super) async fn read(b: usize, block: &DiscoveryConfig) -> Found {
    let mut found = Found::default();
    let resolver = match resolver(block) {
        Ok(r) => r,
        Err(e) => {
            for name in &block.names {
                let source = Source::Name(name.clone());
                let why = format!("no resolver: {e}");
                found.errors.push(DiscoveryError::Source {
                    block: b,
                    from: source.clone(),
                    why,
                });
                found.sources.push(((b, source), None));
            }
            return found;
        }
    };
    for name in &block.names {
        let source = Source::Name(name.clone());
        let asked = tokio::time::timeout(LOOKUP_DEADLINE, addresses(&resolver, block, name)).await;
        let looked = match asked {
            Ok(Ok(found)) => Ok(found),
            Ok(Err(e)) => match answered(&e) {
                Some(ResponseCode::NXDomain | ResponseCode::NoError) => {
                    Err((Some(Vec::new()), "no records".into()))
                }
                Some(code) => Err((None, format!("the server answered {code:?} ({code})"))),
                None => Err((None, e.to_string())),
            },
            Err(_) => Err((None, format!("no answer in {}s", LOOKUP_DEADLINE.as_secs()))),
        };
        match looked {
            Ok(addresses) => {
                let targets = targets(b, block, &source, &addresses, &mut found.errors);
                found.sources.push(((b, source), Some(targets)));
            }
            Err((kept, why)) => {
                found.errors.push(DiscoveryError::Source {
                    block: b,
                    from: source.clone(),
                    why,
                });
                found.sources.push(((b, source), kept));
            }
        }
    }
    found
}

/// The response code of a lookup that the server answered without
/// records. The resolver reports SERVFAIL, REFUSED and the like as "no
/// records found" too; only NXDOMAIN and an empty NOERROR say the name
/// has none, the others say nothing about it.
fn answered(e: &ResolveError) -> Option<ResponseCode> {
    match e.proto().map(ProtoError::kind) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => Some(*response_code),
        _ => None,
    }
}

/// The block's resolver: its `nameservers`, else the system's. Nothing is
/// cached across refreshes: each one asks again.
fn resolver(block: &DiscoveryConfig) -> Result<TokioResolver, ResolveError> {
    let mut builder = if block.nameservers.is_empty() {
        Resolver::builder_tokio()?
    } else {
        let mut group = NameServerConfigGroup::new();
        for addr in &block.nameservers {
            let one = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
            group.merge(one);
        }
        let config = ResolverConfig::from_parts(None, vec![], group);
        Resolver::builder_with_config(config, TokioConnectionProvider::default())
    };
    let opts = builder.options_mut();
    opts.timeout = Duration::from_secs(1);
    opts.attempts = 1;
    opts.cache_size = 0;
    Ok(builder.build())
}

/// One discovered address and the labels it carries.
struct Address {
    address: String,
    labels: Map<String, Value>,
}

/// The addresses a name's records give, sorted, without repeats.
async fn addresses(
    resolver: &TokioResolver,
    block: &DiscoveryConfig,
    name: &str,
) -> Result<Vec<Address>, ResolveError> {
    let mut found: Vec<(String, Vec<(&str, String)>)> = match block.record_type {
        RecordType::Srv => resolver
            .srv_lookup(name)
            .await?
            .iter()
            .map(|srv| {
                let host = srv.target().to_utf8();
                let host = host.trim_end_matches('.').to_string();
                let port = srv.port();
                let labels = vec![
                    ("__meta_dns_srv_record_target", host.clone()),
                    ("__meta_dns_srv_record_port", port.to_string()),
                ];
                (format!("{host}:{port}"), labels)
            })
            .collect(),
        RecordType::A => {
            let port = block.port.unwrap_or_default();
            let ips = resolver.ipv4_lookup(name).await?;
            ips.iter()
                .map(|ip| (format!("{ip}:{port}"), vec![]))
                .collect()
        }
        RecordType::Aaaa => {
            let port = block.port.unwrap_or_default();
            let ips = resolver.ipv6_lookup(name).await?;
            ips.iter()
                .map(|ip| (format!("[{ip}]:{port}"), vec![]))
                .collect()
        }
    };
    found.sort();
    found.dedup_by(|a, b| a.0 == b.0);
    Ok(found
        .into_iter()
        .map(|(address, extra)| {
            let mut labels = Map::new();
            labels.insert("__meta_dns_name".into(), Value::String(name.into()));
            for (k, v) in extra {
                labels.insert(k.into(), Value::String(v));
            }
            Address { address, labels }
        })
        .collect())
}

/// The targets of one name's addresses.
fn targets(
    b: usize,
    block: &DiscoveryConfig,
    source: &Source,
    addresses: &[Address],
    errors: &mut Vec<DiscoveryError>,
) -> Vec<crate::config::TargetConfig> {
    let mut found = Vec::new();
    for (index, a) in addresses.iter().enumerate() {
        match super::target(block, &a.labels, &a.address) {
            Ok(t) => found.push(t),
            Err(why) => errors.push(DiscoveryError::Target {
                block: b,
                from: source.clone(),
                group: 0,
                index,
                why,
            }),
        }
    }
    found
}
