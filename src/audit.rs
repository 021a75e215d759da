//! The audit trail's tools: `ewall audit verify` recomputes the hash chains the store keeps
//! (see `store::chain`) and names the first record that is altered, inserted or missing;
//! `ewall audit export` writes a person's positions, alerts and actions with their hashes as a
//! file that can be checked without ewall; retention drops old positions and leaves a signed
//! checkpoint per chain so that what remains still verifies.
//!
//! Everything here reads and writes through the [`Store`] trait, so it works the same on
//! SQLite and PostgreSQL. It never changes a record.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::model::PersonId;
use crate::store::chain::{self, ChainHead, Checkpoint, Hash, RetentionOutcome, GENESIS};
use crate::store::{ChainTable, Store, StoreError};

/// Records read per page while walking a chain.
const PAGE: u32 = 1000;

/// Name of the checkpoint key file in the data directory, when the config names no key.
pub const KEY_FILE: &str = "audit-checkpoint.key";

/// The `[audit]` section: retention of positions and the key that signs its checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Positions whose fix time is more than this many days old (counted from the start of
    /// the current UTC day) are dropped; 0 keeps everything (the default).
    pub retention_days: u32,
    /// How often the service applies retention while it runs (also once at start).
    #[serde(with = "humantime_serde")]
    pub retention_interval: Duration,
    /// The HMAC key that signs retention checkpoints. Unset: the key is read from
    /// `checkpoint_key_file`, created with a random key on the first retention run.
    pub checkpoint_key: Option<String>,
    /// Where the checkpoint key is kept when `checkpoint_key` is unset; default
    /// `<data_dir>/audit-checkpoint.key`.
    pub checkpoint_key_file: Option<PathBuf>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            retention_days: 0,
            retention_interval: Duration::from_secs(3600),
            checkpoint_key: None,
            checkpoint_key_file: None,
        }
    }
}

impl AuditConfig {
    /// Checks the values; an error names the key (relative to the section) and the problem.
    ///
    /// # Errors
    /// `(key, problem)` for the first bad value.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.retention_days > 36_500 {
            return Err(("retention_days", "must be at most 36500 (100 years)".into()));
        }
        if self.retention_interval.is_zero() {
            return Err(("retention_interval", "must be longer than zero".into()));
        }
        if self.checkpoint_key.as_deref().is_some_and(|k| k.len() < 16) {
            return Err(("checkpoint_key", "must be at least 16 characters".into()));
        }
        Ok(())
    }

    /// The key file in use: the configured one or the default under `data_dir`.
    pub fn key_file(&self, data_dir: &Path) -> PathBuf {
        self.checkpoint_key_file
            .clone()
            .unwrap_or_else(|| data_dir.join(KEY_FILE))
    }
}

/// Why an audit command could not run (a broken chain is a result, not an error).
#[derive(Debug, Error)]
pub enum AuditError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The checkpoint key could not be read or created.
    #[error("checkpoint key {path}: {reason}")]
    Key {
        /// The key file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// Writing the export failed.
    #[error("writing the export: {0}")]
    Write(#[from] std::io::Error),
}

/// The checkpoint key: the configured one, else the key file's content; with `create`, a new
/// random key is written to the key file (mode 0600) when there is none.
///
/// # Errors
/// [`AuditError::Key`] when the file cannot be read or written. `Ok(None)` when there is no
/// key and `create` is false.
pub fn checkpoint_key(
    config: &AuditConfig,
    data_dir: &Path,
    create: bool,
) -> Result<Option<Vec<u8>>, AuditError> {
    if let Some(key) = &config.checkpoint_key {
        return Ok(Some(key.as_bytes().to_vec()));
    }
    let path = config.key_file(data_dir);
    let failed = |reason: String| AuditError::Key {
        path: path.clone(),
        reason,
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let key = text.trim();
            if key.len() < 16 {
                return Err(failed("holds fewer than 16 characters".into()));
            }
            Ok(Some(key.as_bytes().to_vec()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
            let mut bytes = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
            let key = hex::encode(bytes);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|e| failed(e.to_string()))?;
            }
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&path).map_err(|e| failed(e.to_string()))?;
            writeln!(file, "{key}").map_err(|e| failed(e.to_string()))?;
            file.sync_all().map_err(|e| failed(e.to_string()))?;
            Ok(Some(key.into_bytes()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(failed(e.to_string())),
    }
}

/// The retention cutoff for `days` at `now`: the start of the UTC day `days` days ago, so
/// PostgreSQL drops whole daily partitions.
pub fn retention_cutoff(now: DateTime<Utc>, days: u32) -> DateTime<Utc> {
    let day = now.date_naive() - chrono::Days::new(u64::from(days));
    day.and_hms_opt(0, 0, 0).expect("midnight exists").and_utc()
}

/// Applies retention once: positions older than [`retention_cutoff`] are dropped and the
/// checkpoints moved, signed with `key`.
///
/// # Errors
/// Store errors.
pub async fn apply_retention(
    store: &dyn Store,
    days: u32,
    key: &[u8],
    now: DateTime<Utc>,
) -> Result<RetentionOutcome, StoreError> {
    store
        .drop_positions_before(retention_cutoff(now, days), key)
        .await
}

/// What `ewall audit verify` checks.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Only this device's positions chain and its alerts (the actions chain is then skipped).
    pub device: Option<String>,
    /// Only records with time at or after this (every chain is still walked from its start, so
    /// the links into the window are checked too).
    pub from: Option<DateTime<Utc>>,
    /// Only records with time at or before this.
    pub to: Option<DateTime<Utc>>,
    /// The checkpoint key; without it a chain with a checkpoint cannot be verified.
    pub key: Option<Vec<u8>>,
}

/// The first broken record found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Broken {
    /// Table: `positions`, `alerts`, `audit_actions` or `audit_checkpoints`.
    pub table: &'static str,
    /// The chain.
    pub chain: String,
    /// The record's id in its table, when the record is there to name.
    pub id: Option<String>,
    /// Its place in the chain (for a missing record: the first place missing).
    pub n: Option<i64>,
    /// What is wrong.
    pub reason: String,
}

/// The JSON summary `ewall audit verify` prints.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifySummary {
    /// No chain is broken.
    pub ok: bool,
    /// Records whose hash was recomputed.
    pub records_checked: u64,
    /// Chains walked.
    pub chains: u64,
    /// Retention checkpoints whose signature was checked.
    pub checkpoints: u64,
    /// Rows stored before the audit trail existed (they carry no hash and cannot be checked).
    pub legacy_records: u64,
    /// The first broken record, when one is.
    pub broken: Option<Broken>,
}

/// Recomputes the chains and reports the first break.
///
/// # Errors
/// Store errors (a broken chain is reported in the summary, not as an error).
pub async fn verify(
    store: &dyn Store,
    options: &VerifyOptions,
) -> Result<VerifySummary, StoreError> {
    let mut summary = VerifySummary::default();
    let heads: HashMap<String, ChainHead> = store
        .chain_heads()
        .await?
        .into_iter()
        .map(|h| (h.chain.clone(), h))
        .collect();
    let checkpoints: HashMap<String, Checkpoint> = store
        .checkpoints()
        .await?
        .into_iter()
        .map(|c| (c.chain.clone(), c))
        .collect();
    let mut chains: Vec<String> = match &options.device {
        Some(device) => vec![chain::positions_chain(device)],
        None => {
            let mut chains: std::collections::BTreeSet<String> = heads
                .keys()
                .filter(|c| c.starts_with(chain::POSITIONS_CHAIN_PREFIX))
                .cloned()
                .collect();
            chains.extend(
                store
                    .position_devices()
                    .await?
                    .iter()
                    .map(|d| chain::positions_chain(d)),
            );
            chains.into_iter().collect()
        }
    };
    chains.push(chain::ALERTS_CHAIN.to_owned());
    if options.device.is_none() {
        chains.push(chain::ACTIONS_CHAIN.to_owned());
    }
    for name in &chains {
        summary.chains += 1;
        let checkpoint = checkpoints.get(name);
        if let Some(checkpoint) = checkpoint {
            summary.checkpoints += 1;
            if let Some(broken) = check_checkpoint(checkpoint, options.key.as_deref()) {
                summary.broken = Some(broken);
                return Ok(summary);
            }
        }
        if let Some(broken) = walk(
            store,
            name,
            heads.get(name),
            checkpoint,
            options,
            &mut summary,
        )
        .await?
        {
            summary.broken = Some(broken);
            return Ok(summary);
        }
    }
    let (legacy, foreign) = store.unchained().await?;
    summary.legacy_records = legacy;
    if let Some(row) = foreign {
        summary.broken = Some(Broken {
            table: row.table,
            chain: String::new(),
            id: Some(row.id),
            n: None,
            reason: "the record carries no hash: it was not written by ewall (inserted)".into(),
        });
        return Ok(summary);
    }
    summary.ok = true;
    Ok(summary)
}

fn check_checkpoint(checkpoint: &Checkpoint, key: Option<&[u8]>) -> Option<Broken> {
    let broken = |reason: &str| Broken {
        table: "audit_checkpoints",
        chain: checkpoint.chain.clone(),
        id: Some(checkpoint.chain.clone()),
        n: Some(checkpoint.n),
        reason: reason.to_owned(),
    };
    match key {
        None => Some(broken(
            "the chain has a retention checkpoint, and without the checkpoint key its signature \
             cannot be checked (set [audit] checkpoint_key or checkpoint_key_file)",
        )),
        Some(key) if !chain::checkpoint_signed_by(key, checkpoint) => Some(broken(
            "the checkpoint's signature does not match: the checkpoint was altered or forged",
        )),
        Some(_) => None,
    }
}

fn table_of(name: &str) -> &'static str {
    if name == chain::ALERTS_CHAIN {
        "alerts"
    } else if name == chain::ACTIONS_CHAIN {
        "audit_actions"
    } else {
        "positions"
    }
}

/// Walks one chain from its start (or checkpoint) to its head.
async fn walk(
    store: &dyn Store,
    name: &str,
    head: Option<&ChainHead>,
    checkpoint: Option<&Checkpoint>,
    options: &VerifyOptions,
    summary: &mut VerifySummary,
) -> Result<Option<Broken>, StoreError> {
    let table = table_of(name);
    let (head_n, head_hash) = head.map_or((0, GENESIS), |h| (h.n, h.hash));
    let (mut last, mut prev) = checkpoint.map_or((0, GENESIS), |c| (c.n, c.hash));
    let broken = |id: Option<String>, n: i64, reason: String| Broken {
        table,
        chain: name.to_owned(),
        id,
        n: Some(n),
        reason,
    };
    if last > head_n {
        return Ok(Some(Broken {
            table: "audit_checkpoints",
            ..broken(
                Some(name.to_owned()),
                last,
                format!("the checkpoint covers {last} records but the chain has {head_n}"),
            )
        }));
    }
    loop {
        let page = store.chain_records(name, last, PAGE).await?;
        let done = page.len() < PAGE as usize;
        for record in page {
            let expected = last + 1;
            if record.n < expected {
                return Ok(Some(broken(
                    Some(record.id),
                    record.n,
                    format!(
                        "a second record at place {} of the chain (inserted)",
                        record.n
                    ),
                )));
            }
            if record.n > head_n {
                return Ok(Some(broken(
                    Some(record.id),
                    record.n,
                    format!("the record is beyond the chain's head ({head_n} records): inserted"),
                )));
            }
            if record.n > expected {
                return Ok(Some(broken(
                    Some(record.id),
                    expected,
                    format!(
                        "record {expected} of the chain is missing (deleted); the next stored \
                         is record {}",
                        record.n
                    ),
                )));
            }
            let Some(hash) = record.hash else {
                return Ok(Some(broken(
                    Some(record.id),
                    record.n,
                    "the stored hash is not a SHA-256 hash (altered)".into(),
                )));
            };
            let in_window = options.from.is_none_or(|from| record.time >= from)
                && options.to.is_none_or(|to| record.time <= to)
                && (table != "alerts"
                    || options.device.is_none()
                    || record.device_id == options.device);
            if in_window {
                summary.records_checked += 1;
                if chain::link(&prev, &record.canonical) != hash {
                    return Ok(Some(broken(
                        Some(record.id),
                        record.n,
                        "the record's content does not match its hash (altered)".into(),
                    )));
                }
            }
            prev = hash;
            last = record.n;
        }
        if done {
            break;
        }
    }
    if last < head_n {
        return Ok(Some(broken(
            None,
            last + 1,
            format!(
                "the chain ends at record {last} but its head is at {head_n}: records {}..={head_n} \
                 are missing (deleted)",
                last + 1
            ),
        )));
    }
    if prev != head_hash {
        return Ok(Some(broken(
            None,
            last,
            "the newest record's hash differs from the chain's head (altered)".into(),
        )));
    }
    Ok(None)
}

/// The first line of an export.
#[derive(Debug, Clone, Serialize)]
struct ExportHeader<'a> {
    format: &'static str,
    version: u8,
    person_id: PersonId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    exported_at: DateTime<Utc>,
    hash: &'static str,
    checkpoints: Vec<&'a Checkpoint>,
}

/// One record line of an export.
#[derive(Debug, Clone, Serialize)]
struct ExportRecord<'a> {
    table: &'static str,
    chain: &'a str,
    n: i64,
    id: &'a str,
    time: DateTime<Utc>,
    prev_hash: Option<String>,
    hash: Option<String>,
    canonical: &'a str,
    record: serde_json::Value,
}

/// What an export wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ExportSummary {
    /// Position lines.
    pub positions: u64,
    /// Alert lines.
    pub alerts: u64,
    /// Action lines.
    pub actions: u64,
}

/// Writes `person`'s positions, alerts and actions with time in `[from, to]` to `out` as JSON
/// lines: a header, then one line per record with its canonical encoding, its hash and the
/// hash of the record before it in its chain (see the README's "Audit" section).
///
/// # Errors
/// Store and write errors.
pub async fn export(
    store: &dyn Store,
    person: PersonId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<ExportSummary, AuditError> {
    let checkpoints: HashMap<String, Checkpoint> = store
        .checkpoints()
        .await?
        .into_iter()
        .map(|c| (c.chain.clone(), c))
        .collect();
    let header = ExportHeader {
        format: "ewall-audit-export",
        version: chain::ENCODING_VERSION,
        person_id: person,
        from,
        to,
        exported_at: Utc::now(),
        hash: "sha256(prev_hash || canonical)",
        checkpoints: checkpoints.values().collect(),
    };
    writeln!(out, "{}", json_line(&header))?;
    let mut summary = ExportSummary::default();
    // The hash of the last record written per chain: the next one's prev_hash, read without
    // asking the store again.
    let mut last: HashMap<String, (i64, Hash)> = HashMap::new();
    for table in [
        ChainTable::Positions,
        ChainTable::Alerts,
        ChainTable::Actions,
    ] {
        let mut after = i64::MIN;
        loop {
            let page = store
                .person_records(table, person, from, to, after, PAGE)
                .await?;
            let done = page.len() < PAGE as usize;
            for record in &page {
                after = record.key;
                let prev = if record.hash.is_none() || record.n <= 0 {
                    None
                } else if let Some((_, hash)) =
                    last.get(&record.chain).filter(|(n, _)| *n + 1 == record.n)
                {
                    Some(*hash)
                } else if let Some(c) = checkpoints
                    .get(&record.chain)
                    .filter(|c| c.n + 1 == record.n)
                {
                    Some(c.hash)
                } else if record.n == 1 {
                    Some(GENESIS)
                } else {
                    store.chain_hash(&record.chain, record.n - 1).await?
                };
                if let Some(hash) = record.hash {
                    last.insert(record.chain.clone(), (record.n, hash));
                }
                let canonical = String::from_utf8_lossy(&record.canonical);
                let line = ExportRecord {
                    table: record.table,
                    chain: &record.chain,
                    n: record.n,
                    id: &record.id,
                    time: record.time,
                    prev_hash: prev.map(hex::encode),
                    hash: record.hash.map(hex::encode),
                    canonical: &canonical,
                    record: serde_json::from_slice(&record.canonical)
                        .unwrap_or(serde_json::Value::Null),
                };
                writeln!(out, "{}", json_line(&line))?;
                match table {
                    ChainTable::Positions => summary.positions += 1,
                    ChainTable::Alerts => summary.alerts += 1,
                    ChainTable::Actions => summary.actions += 1,
                }
            }
            if done {
                break;
            }
        }
    }
    out.flush()?;
    Ok(summary)
}

fn json_line<T: Serialize>(value: &T) -> String {
    // Plain structs of strings, numbers and JSON values: serialising them cannot fail.
    serde_json::to_string(value).expect("export lines serialise")
}

/// Applies retention every `config.retention_interval` (once at once) until `token` is
/// cancelled; a failed run is logged and tried again at the next interval.
pub async fn run_retention(
    store: std::sync::Arc<dyn Store>,
    config: AuditConfig,
    key: Vec<u8>,
    token: tokio_util::sync::CancellationToken,
) {
    let mut interval = tokio::time::interval(config.retention_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = token.cancelled() => return,
            _ = interval.tick() => {}
        }
        let run = apply_retention(store.as_ref(), config.retention_days, &key, Utc::now());
        let outcome = tokio::select! {
            _ = token.cancelled() => return,
            outcome = run => outcome,
        };
        match outcome {
            Ok(outcome) => tracing::info!(
                retention_days = config.retention_days,
                positions = outcome.positions_dropped,
                partitions = outcome.partitions_dropped,
                checkpoints = outcome.checkpoints,
                "Retention applied."
            ),
            Err(e) => tracing::warn!(error = %e, "Retention failed; trying again later."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_cutoff_is_the_start_of_a_utc_day() {
        let now = Utc.with_ymd_and_hms(2026, 3, 10, 15, 30, 0).unwrap();
        assert_eq!(
            retention_cutoff(now, 30),
            Utc.with_ymd_and_hms(2026, 2, 8, 0, 0, 0).unwrap()
        );
    }

    #[test]
    fn a_key_file_is_created_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let config = AuditConfig::default();
        assert_eq!(checkpoint_key(&config, dir.path(), false).unwrap(), None);
        let created = checkpoint_key(&config, dir.path(), true).unwrap().unwrap();
        assert_eq!(created.len(), 64);
        assert_eq!(
            checkpoint_key(&config, dir.path(), false).unwrap(),
            Some(created)
        );
        let configured = AuditConfig {
            checkpoint_key: Some("a configured key, long enough".into()),
            ..AuditConfig::default()
        };
        assert_eq!(
            checkpoint_key(&configured, dir.path(), false).unwrap(),
            Some(b"a configured key, long enough".to_vec())
        );
    }
}
