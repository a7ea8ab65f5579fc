//! Sharding: several lbwatch processes split a fleet's targets by a hash of
//! each target's name, as Prometheus' `hashmod` relabelling splits scrape
//! targets. Every process of shard `I` of `N` keeps the targets whose name
//! hashes to `I`; two replicas of a shard watch the same targets and both
//! notify (Alertmanager's clustering makes that one page; PagerDuty merges
//! the triggers of one incident key, which names the target alone, and
//! webhook events carry an id both replicas compute alike).

use serde::Deserialize;

/// `[cluster]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// `"I/N"`: this process is shard I (from 0) of N.
    pub shard: Option<String>,
    /// N, with the shard index taken from the pod's ordinal: the number at
    /// the end of `$LBWATCH_SHARD_ORDINAL` or else of `$HOSTNAME` (a
    /// StatefulSet's `lbwatch-4`), modulo N. With 2N pods, ordinals k and
    /// k + N are the two replicas of shard k.
    pub shards: Option<u32>,
}

/// One shard of a fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("{0:?} is not I/N (shard I from 0 of N shards, e.g. 0/3)")]
    Syntax(String),
    #[error("{0:?}: the index must be below the number of shards")]
    Range(String),
    #[error("cluster.shards = {0}: needs the pod's ordinal in $LBWATCH_SHARD_ORDINAL or at the end of $HOSTNAME, and neither has one")]
    NoOrdinal(u32),
    #[error("cluster.shards = 0: there must be at least one shard")]
    NoShards,
    #[error("LBWATCH_SHARD_ORDINAL: {0:?} is not a pod ordinal (a whole number)")]
    BadOrdinal(String),
}

impl std::str::FromStr for Shard {
    type Err = ShardError;

    fn from_str(text: &str) -> Result<Shard, ShardError> {
        let syntax = || ShardError::Syntax(text.to_string());
        let (i, n) = text.trim().split_once('/').ok_or_else(syntax)?;
        let index: u32 = i.trim().parse().map_err(|_| syntax())?;
        let count: u32 = n.trim().parse().map_err(|_| syntax())?;
        if index >= count {
            return Err(ShardError::Range(text.to_string()));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Whether this shard watches `target`.
    pub fn keeps(&self, target: &str) -> bool {
        self.count <= 1
            || fmix64(fnv1a(target.as_bytes())) % u64::from(self.count) == u64::from(self.index)
    }

    /// The shard of `[cluster]`, where `ordinal` gives the environment's
    /// value of a name (`LBWATCH_SHARD_ORDINAL`, `HOSTNAME`); `None` when
    /// the process watches every target.
    pub fn of(
        cfg: &ClusterConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Shard>, ShardError> {
        if let Some(text) = &cfg.shard {
            return text.parse().map(Some);
        }
        let Some(count) = cfg.shards else {
            return Ok(None);
        };
        if count == 0 {
            return Err(ShardError::NoShards);
        }
        let ordinal = match env("LBWATCH_SHARD_ORDINAL").filter(|v| !v.trim().is_empty()) {
            Some(v) => v
                .trim()
                .parse::<u64>()
                .map_err(|_| ShardError::BadOrdinal(v.clone()))?,
            None => env("HOSTNAME")
                .as_deref()
                .and_then(pod_ordinal)
                .ok_or(ShardError::NoOrdinal(count))?,
        };
        Ok(Some(Shard {
            index: (ordinal % u64::from(count)) as u32,
            count,
        }))
    }
}

/// A StatefulSet pod's ordinal: `lbwatch-12` → 12. Only a name ending in
/// `-` and digits, with no digit before: a Deployment's
/// `lbwatch-6d8f-xk2p9` or a host's `ip-10-0-0-12` have none worth
/// trusting.
fn pod_ordinal(host: &str) -> Option<u64> {
    let (stem, digits) = host.trim().rsplit_once('-')?;
    let plain = !stem.is_empty()
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !stem.bytes().any(|b| b.is_ascii_digit());
    plain.then(|| digits.parse().ok()).flatten()
}

/// FNV-1a, 64 bits: stable across versions and platforms (a shard's
/// targets must not move when lbwatch is upgraded), and spreads short
/// names evenly. Not Prometheus' MD5: a hashmod relabelling and lbwatch
/// may split one fleet differently.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// MurmurHash3's 64-bit finaliser: FNV-1a's low bits depend only on the
/// low bits of each byte (its multiplier is odd), so modulo an even number
/// of shards names would split by the parity of their characters; mixing
/// spreads every bit of the hash into every bit.
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_read_and_refuse_what_is_not_i_of_n() {
        assert_eq!("1/3".parse(), Ok(Shard { index: 1, count: 3 }));
        assert_eq!(" 0 / 1 ".parse(), Ok(Shard { index: 0, count: 1 }));
        for bad in ["3/3", "1", "a/3", "1/b", "-1/3", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn every_target_is_in_exactly_one_shard_and_they_are_even() {
        let names: Vec<String> = (0..3000).map(|i| format!("lb-{i}.eu-west-1")).collect();
        for count in [2, 3, 4] {
            let shards: Vec<Shard> = (0..count).map(|index| Shard { index, count }).collect();
            let mut sizes = vec![0usize; count as usize];
            for n in &names {
                let owners: Vec<u32> = shards
                    .iter()
                    .filter(|s| s.keeps(n))
                    .map(|s| s.index)
                    .collect();
                assert_eq!(owners.len(), 1, "{n}: {owners:?}");
                sizes[owners[0] as usize] += 1;
            }
            let even = 3000 / count as usize;
            for s in &sizes {
                assert!(s.abs_diff(even) * 10 < even, "{count} shards: {sizes:?}");
            }
        }
        // Names that differ in one odd digit do not all fall in shards of
        // one parity (what FNV-1a alone does modulo an even count).
        let parity: Vec<u32> = ["lb-eu-1", "lb-eu-3", "lb-eu-5", "lb-eu-7", "lb-eu-9"]
            .iter()
            .map(|n| {
                (0..4)
                    .find(|i| {
                        Shard {
                            index: *i,
                            count: 4,
                        }
                        .keeps(n)
                    })
                    .unwrap()
                    % 2
            })
            .collect();
        assert!(parity.contains(&0) && parity.contains(&1), "{parity:?}");
        // Stable: FNV-1a's published value for "a", the same in every
        // version of lbwatch.
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn the_ordinal_of_a_statefulset_pod_picks_its_shard() {
        let cfg = ClusterConfig {
            shard: None,
            shards: Some(3),
        };
        let host = |h: &'static str| move |k: &str| (k == "HOSTNAME").then(|| h.to_string());
        assert_eq!(
            Shard::of(&cfg, &host("lbwatch-4")).unwrap().unwrap().index,
            1
        );
        assert_eq!(
            Shard::of(&cfg, &host("lbwatch-fleet-1"))
                .unwrap()
                .unwrap()
                .index,
            1
        );
        for no in ["lbwatch", "lbwatch-6d8f-xk2p9", "ip-10-0-0-12", "lbwatch-"] {
            assert_eq!(
                Shard::of(&cfg, &host(no)),
                Err(ShardError::NoOrdinal(3)),
                "{no}"
            );
        }
        let bad = |k: &str| (k == "LBWATCH_SHARD_ORDINAL").then(|| "abc".to_string());
        assert_eq!(
            Shard::of(&cfg, &bad),
            Err(ShardError::BadOrdinal("abc".into()))
        );
        let ordinal = |k: &str| (k == "LBWATCH_SHARD_ORDINAL").then(|| "5".to_string());
        assert_eq!(Shard::of(&cfg, &ordinal).unwrap().unwrap().index, 2);
        let fixed = ClusterConfig {
            shard: Some("2/5".into()),
            shards: None,
        };
        assert_eq!(
            Shard::of(&fixed, &|_| None),
            Ok(Some(Shard { index: 2, count: 5 }))
        );
        assert_eq!(Shard::of(&ClusterConfig::default(), &|_| None), Ok(None));
    }
}
