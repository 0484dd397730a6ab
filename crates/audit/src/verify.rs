//! Verification: the chain, every checkpoint and its cadence, the witness file and a checkpoint
//! given by hand, and the subject index against the entries. The first problem names the entry.

use super::*;

/// What [`Audit::verify`] found.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Verification {
    /// Entries checked.
    pub entries: i64,
    /// Checkpoints checked.
    pub checkpoints: i64,
    /// The last sequence number.
    pub head_seq: i64,
    /// The first problem, if any.
    pub problem: Option<String>,
}

impl Audit {
    /// Checks the whole chain, every stored checkpoint, and (if given) a checkpoint kept
    /// elsewhere. The first problem names the entry.
    pub async fn verify(&self, witness: Option<&Checkpoint>) -> Result<Verification, AuditError> {
        let entries = self.entries().await?;
        let checkpoints: Vec<Checkpoint> =
            sqlx::query_as("SELECT seq, head_hash, at, public_key, signature FROM audit_checkpoints ORDER BY seq")
                .fetch_all(self.catalog.pool())
                .await?;
        let head_seq = entries.last().map_or(0, |e| e.seq);
        let mut v = Verification { entries: entries.len() as i64, checkpoints: checkpoints.len() as i64, head_seq, problem: None };
        let mut witnesses: Vec<Checkpoint> = witness.into_iter().cloned().collect();
        if let Some(path) = &self.config.witness_path {
            match read_witness(path) {
                Ok(kept) => witnesses.extend(kept),
                Err(e) => {
                    v.problem = Some(format!("the witness {} cannot be read: {e}", path.display()));
                    return Ok(v);
                }
            }
        }
        v.problem = find_problem(&entries, &checkpoints, &self.public_key(), &witnesses, self.config.checkpoint_every);
        if v.problem.is_none() {
            let index: Vec<(String, i64, i64)> =
                sqlx::query_as("SELECT subject, access, seq FROM audit_subjects").fetch_all(self.catalog.pool()).await?;
            v.problem = index_problem(&entries, index);
        }
        Ok(v)
    }
}

/// The subjects an entry names, by the access they belong to: an `access` entry's own
/// `subjects`, or a `subjects` entry's list for its `access`.
pub(crate) fn named_subjects(e: &Entry) -> Vec<(String, i64, i64)> {
    if e.kind != RecordKind::Access.as_str() && e.kind != RecordKind::Subjects.as_str() {
        return Vec::new();
    }
    let Ok(record) = serde_json::from_str::<serde_json::Value>(&e.payload) else { return Vec::new() };
    let access = if e.kind == RecordKind::Access.as_str() { Some(e.seq) } else { record["access"].as_i64() };
    let Some(access) = access else { return Vec::new() };
    let mut out = Vec::new();
    if let Some(by_dataset) = record["subjects"].as_object() {
        for ids in by_dataset.values() {
            for id in ids.as_array().into_iter().flatten().filter_map(|v| v.as_str()) {
                out.push((id.to_string(), access, e.seq));
            }
        }
    }
    // A bulk read of a dataset is indexed once, as `bulk:org/dataset`.
    for dataset in record["bulk"].as_object().into_iter().flat_map(|m| m.keys()) {
        out.push((format!("{BULK_PREFIX}{dataset}"), access, e.seq));
    }
    out
}

/// The subject index must say exactly what the entries say: a row removed would hide an access
/// from a citizen, a row added would invent one.
pub(crate) fn index_problem(entries: &[Entry], index: Vec<(String, i64, i64)>) -> Option<String> {
    let mut stated: Vec<(String, i64, i64)> = entries.iter().flat_map(named_subjects).collect();
    stated.sort();
    stated.dedup();
    let mut index = index;
    index.sort();
    if stated == index {
        return None;
    }
    let stated_set: std::collections::BTreeSet<_> = stated.iter().collect();
    let index_set: std::collections::BTreeSet<_> = index.iter().collect();
    if let Some((_, _, seq)) = stated_set.difference(&index_set).next() {
        return Some(format!("the data-subject index lacks a person named by entry {seq}: rows were deleted"));
    }
    let (_, _, seq) = index_set.difference(&stated_set).next().copied().unwrap_or(&index[0]);
    Some(format!("the data-subject index names a person that entry {seq} does not: rows were added"))
}

/// Appends one checkpoint to the witness file as a JSON line, and waits until it is on disk.
pub(crate) fn append_witness(path: &Path, c: &Checkpoint) -> std::io::Result<()> {
    use std::io::Write;
    let mut line = serde_json::to_vec(c).map_err(std::io::Error::other)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    // One write of one short line: appends from several processes do not interleave.
    file.write_all(&line)?;
    file.sync_data()
}

/// The checkpoints in the witness file (none when it does not exist yet). A line that is not a
/// checkpoint is an error: the witness was tampered with or is not one.
pub(crate) fn read_witness(path: &Path) -> std::io::Result<Vec<Checkpoint>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("line {}: not a checkpoint: {e}", i + 1)))
        })
        .collect()
}

/// Entries whose chain is intact but whose checkpoints were deleted: after the checkpoint
/// (or the log's start) at `from`, the group of entries written together (one `at`) that holds
/// entry `from + every` ends with a checkpoint, since a writer signs the head of every group
/// that reaches its cadence. `None` when every stretch has its checkpoint.
pub(crate) fn missing_checkpoint(entries: &[Entry], checkpoints: &[Checkpoint], every: i64) -> Option<String> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else { return None };
    let mut from = first.seq - 1;
    loop {
        let due = from + every;
        if due > last.seq {
            return None;
        }
        let at = &entries[(due - first.seq) as usize].at;
        let mut group_end = due;
        while group_end < last.seq && &entries[(group_end + 1 - first.seq) as usize].at == at {
            group_end += 1;
        }
        match checkpoints.iter().map(|c| c.seq).filter(|s| *s > from && *s <= group_end).min() {
            Some(next) => from = next,
            None => {
                return Some(format!(
                    "no signed checkpoint between entries {} and {group_end}, where one is written at least every {every} entries: checkpoints were deleted",
                    from + 1
                ));
            }
        }
    }
}

pub(crate) fn find_problem(
    entries: &[Entry],
    checkpoints: &[Checkpoint],
    public_key: &str,
    witnesses: &[Checkpoint],
    every: i64,
) -> Option<String> {
    for c in checkpoints {
        if c.public_key != public_key || !c.signed_by(public_key) {
            return Some(format!("the checkpoint at entry {} is not signed by this installation's key", c.seq));
        }
    }
    // After retention the log starts later: the first entry must follow a signed checkpoint.
    let first_seq = entries.first().map_or(1, |e| e.seq);
    let mut prev = GENESIS.to_string();
    if first_seq > 1 {
        match checkpoints.iter().find(|c| c.seq == first_seq - 1) {
            Some(anchor) => {
                // …and the log itself must say that retention removed exactly that much.
                let declared = entries.iter().any(|e| {
                    e.kind == RecordKind::Retention.as_str()
                        && serde_json::from_str::<serde_json::Value>(&e.payload)
                            .is_ok_and(|p| p["removed_through"].as_i64() == Some(first_seq - 1))
                });
                if !declared {
                    return Some(format!("entries up to {} were removed without a retention record", first_seq - 1));
                }
                prev = anchor.head_hash.clone();
            }
            None => {
                return Some(format!(
                    "the log starts at entry {first_seq} without a signed checkpoint of entry {}: entries were deleted",
                    first_seq - 1
                ));
            }
        }
    }
    let mut expected_seq = first_seq;
    for e in entries {
        if e.seq != expected_seq {
            return Some(format!("entry {expected_seq} is missing (the next entry is {}): deleted or reordered", e.seq));
        }
        if e.prev_hash != prev {
            return Some(format!("entry {} does not follow entry {}: inserted, deleted or reordered", e.seq, e.seq - 1));
        }
        if entry_hash(&e.prev_hash, e.seq, &e.at, &e.kind, &e.payload) != e.hash {
            return Some(format!("entry {} has been changed (its hash does not match its content)", e.seq));
        }
        prev = e.hash.clone();
        expected_seq += 1;
    }
    let last_seq = expected_seq - 1;
    let hash_at = |seq: i64| (seq >= first_seq).then(|| entries.get((seq - first_seq) as usize).map(|e| e.hash.as_str())).flatten();
    for c in checkpoints.iter().filter(|c| c.seq >= first_seq) {
        match hash_at(c.seq) {
            None => return Some(format!("the log ends at entry {last_seq} but a checkpoint covers entry {}: truncated", c.seq)),
            Some(h) if h != c.head_hash => {
                return Some(format!("entry {} differs from its signed checkpoint: the log was rewritten", c.seq));
            }
            Some(_) => {}
        }
    }
    if let Some(problem) = missing_checkpoint(entries, checkpoints, every) {
        return Some(problem);
    }
    for w in witnesses {
        if !w.signed_by(public_key) {
            return Some(format!("the checkpoint of entry {} kept outside the catalogue is not signed by this installation's key", w.seq));
        }
        if w.seq > last_seq {
            return Some(format!(
                "the log ends at entry {last_seq} but a checkpoint kept outside the catalogue covers entry {}: truncated or rolled back",
                w.seq
            ));
        }
        // A witness older than the retained log can only be compared with the anchor.
        let known =
            if w.seq >= first_seq { hash_at(w.seq) } else { checkpoints.iter().find(|c| c.seq == w.seq).map(|c| c.head_hash.as_str()) };
        if let Some(h) = known
            && h != w.head_hash
        {
            return Some(format!("entry {} differs from its checkpoint kept outside the catalogue: rolled back or rewritten", w.seq));
        }
    }
    None
}
