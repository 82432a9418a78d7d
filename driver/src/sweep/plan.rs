//! What a sweep set out to do, written beside its results as `sweep_<NAME>.json`: the model,
//! the datasets, every configuration in order and, for a shard, which share it ran. A merge
//! checks the shards of one sweep against each other with it, orders the merged rows by it and
//! reports configurations no shard has finished.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::table::{write_atomic, Row};
use crate::error::{DriverError, FileFix, Result};

/// Marks a plan file (and keeps other JSON files out of a merge).
const FORMAT: &str = "fhec-sweep-plan";
const VERSION: u32 = 1;

/// The configuration columns of a results row: what identifies a configuration across
/// runs, resumes and shards.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigKey {
    pub bits: u32,
    pub rounding_bits: String,
    pub rounding_mode: String,
    /// As written in the CSV (`0.008`, `9.094947017729282e-13`).
    pub p_error: String,
    pub p_error_kind: String,
    pub prune_threshold: String,
    pub prune_rate: String,
    pub prune_method: String,
}

impl ConfigKey {
    pub fn of(r: &Row) -> Self {
        ConfigKey {
            bits: r.bits,
            rounding_bits: r.rounding_bits.clone(),
            rounding_mode: r.rounding_mode.clone(),
            p_error: r.p_error.to_string(),
            p_error_kind: r.p_error_kind.clone(),
            prune_threshold: r.prune_threshold.clone(),
            prune_rate: r.prune_rate.clone(),
            prune_method: r.prune_method.clone(),
        }
    }

    /// The configurations a shard shares its quantisation with (differing only in failure
    /// probability) stay on one shard, so it quantises and runs the clear model once for
    /// them.
    fn quantisation_group(&self) -> (u32, &str, &str, &str, &str, &str) {
        (
            self.bits,
            &self.rounding_bits,
            &self.rounding_mode,
            &self.prune_threshold,
            &self.prune_rate,
            &self.prune_method,
        )
    }
}

impl std::fmt::Display for ConfigKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bits={} rounding={}/{} p_error={} ({}) prune_threshold={} prune_rate={} ({})",
            self.bits,
            self.rounding_bits,
            self.rounding_mode,
            self.p_error,
            self.p_error_kind,
            self.prune_threshold,
            self.prune_rate,
            self.prune_method
        )
    }
}

/// `I/N`: the I-th (from 0) of N shares of a sweep's configurations.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

/// Parses `I/N` with 0 <= I < N.
pub fn parse_shard(s: &str) -> Result<Shard, String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("'{s}' is not I/N (e.g. 0/4 for the first of four shards)"))?;
    let index: u32 = i
        .trim()
        .parse()
        .map_err(|_| format!("'{i}' in '{s}' is not a shard index (0, 1, ...)"))?;
    let count: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("'{n}' in '{s}' is not a shard count"))?;
    if count == 0 || index >= count {
        return Err(format!(
            "shard {index} of {count} does not exist: shards are numbered 0 to N-1"
        ));
    }
    Ok(Shard { index, count })
}

impl Shard {
    /// The configurations of `all` this shard runs: whole quantisation groups, dealt out
    /// round-robin in order of first appearance. Deterministic, and the shards of one plan
    /// cover every configuration exactly once.
    pub fn select<T>(&self, all: Vec<T>, key: impl Fn(&T) -> ConfigKey) -> Vec<T> {
        let keys: Vec<ConfigKey> = all.iter().map(&key).collect();
        let mut groups: Vec<(u32, &str, &str, &str, &str, &str)> = Vec::new();
        let owner: Vec<usize> = keys
            .iter()
            .map(|k| {
                let g = k.quantisation_group();
                groups.iter().position(|x| *x == g).unwrap_or_else(|| {
                    groups.push(g);
                    groups.len() - 1
                })
            })
            .collect();
        all.into_iter()
            .zip(owner)
            .filter(|(_, g)| *g % self.count as usize == self.index as usize)
            .map(|(c, _)| c)
            .collect()
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// A sweep's plan (`sweep_<NAME>.json`).
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Plan {
    pub format: String,
    pub version: u32,
    /// The `<NAME>` of the results files.
    pub name: String,
    /// The model's file name.
    pub model: String,
    /// Dataset names (results file suffixes), in order.
    pub datasets: Vec<String>,
    /// Every configuration of the sweep, in the order rows are written (all shards').
    pub configurations: Vec<ConfigKey>,
    /// The share this run made, `None` for a whole sweep or a merge.
    pub shard: Option<Shard>,
}

impl Plan {
    pub fn new(
        name: &str,
        model: &str,
        datasets: Vec<String>,
        configurations: Vec<ConfigKey>,
        shard: Option<Shard>,
    ) -> Self {
        Plan {
            format: FORMAT.into(),
            version: VERSION,
            name: name.into(),
            model: model.into(),
            datasets,
            configurations,
            shard,
        }
    }

    pub fn path(dir: &Path, name: &str) -> PathBuf {
        dir.join(format!("sweep_{name}.json"))
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        let mut text = serde_json::to_string_pretty(self).expect("a plan serialises");
        text.push('\n');
        write_atomic(&Plan::path(dir, &self.name), text.as_bytes())
    }

    /// Every plan in `dir` (`sweep_*.json` files of this format), sorted by name.
    pub fn read_all(dir: &Path) -> Result<Vec<(PathBuf, Plan)>> {
        let read = |path: &Path, source| DriverError::Read {
            what: "sweep plan",
            path: path.to_path_buf(),
            source,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| read(dir, e))?;
        let mut paths: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name().is_some_and(|n| {
                    let n = n.to_string_lossy();
                    n.starts_with("sweep_") && n.ends_with(".json")
                })
            })
            .collect();
        paths.sort();
        let mut plans = Vec::new();
        for p in paths {
            let text = std::fs::read_to_string(&p).map_err(|e| read(&p, e))?;
            let foreign = |problem: String| DriverError::ForeignFile {
                path: p.clone(),
                problem,
                fix: FileFix::Rerun,
            };
            let value: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| foreign(format!("is not JSON: {e}")))?;
            if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
                continue;
            }
            let plan: Plan = serde_json::from_value(value).map_err(|e| {
                foreign(format!(
                    "is not a sweep plan this fhec can read ({e}); it was written by another \
                     version"
                ))
            })?;
            if plan.version != VERSION {
                return Err(foreign(format!(
                    "is a version {} sweep plan; this fhec reads version {VERSION}",
                    plan.version
                )));
            }
            plans.push((p, plan));
        }
        Ok(plans)
    }

    /// Why `other` is not a shard of the same sweep as `self`, if it is not.
    pub fn mismatch(&self, other: &Plan) -> Option<String> {
        if self.model != other.model {
            return Some(format!("models '{}' and '{}'", self.model, other.model));
        }
        if self.datasets != other.datasets {
            return Some(format!(
                "datasets [{}] and [{}]",
                self.datasets.join(", "),
                other.datasets.join(", ")
            ));
        }
        if self.configurations != other.configurations {
            return Some(format!(
                "different configurations ({} and {})",
                self.configurations.len(),
                other.configurations.len()
            ));
        }
        let count = |p: &Plan| p.shard.map_or(1, |s| s.count);
        if count(self) != count(other) {
            return Some(format!("{} and {} shards", count(self), count(other)));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(bits: u32, p: &str) -> ConfigKey {
        ConfigKey {
            bits,
            rounding_bits: "6".into(),
            rounding_mode: "approximate".into(),
            p_error: p.into(),
            p_error_kind: "per_pbs".into(),
            prune_threshold: "none".into(),
            prune_rate: "0".into(),
            prune_method: "none".into(),
        }
    }

    #[test]
    fn shards_cover_every_configuration_once_and_keep_quantisation_groups_together() {
        let all: Vec<ConfigKey> = (2..8)
            .flat_map(|b| [key(b, "0.01"), key(b, "0.001")])
            .collect();
        let mut seen = Vec::new();
        for index in 0..4 {
            let mine = Shard { index, count: 4 }.select(all.clone(), Clone::clone);
            for pair in all.chunks(2) {
                // Both failure probabilities of one bit width land on the same shard.
                assert_eq!(mine.contains(&pair[0]), mine.contains(&pair[1]));
            }
            seen.extend(mine);
        }
        seen.sort_by_key(|k| (k.bits, k.p_error.clone()));
        let mut expected = all.clone();
        expected.sort_by_key(|k| (k.bits, k.p_error.clone()));
        assert_eq!(seen, expected);
        // Six groups over four shards: 2, 2, 1, 1 groups.
        let sizes: Vec<usize> = (0..4)
            .map(|index| {
                Shard { index, count: 4 }
                    .select(all.clone(), Clone::clone)
                    .len()
            })
            .collect();
        assert_eq!(sizes, [4, 4, 2, 2]);
    }

    #[test]
    fn shard_specs_parse() {
        assert_eq!(parse_shard("1/4"), Ok(Shard { index: 1, count: 4 }));
        assert!(parse_shard("4/4").unwrap_err().contains("0 to N-1"));
        assert!(parse_shard("0/0").is_err());
        assert!(parse_shard("1").is_err());
        assert!(parse_shard("a/2").is_err());
    }
}
