//! Writes through the engine, so that every channel (CLI, API, web) leaves the same records in
//! the access log: an intent, durable before the write starts (a log that cannot be written
//! refuses the write, as it refuses a read), and the outcome once the write is committed or has
//! failed.

use tverr_core::{DatasetRef, SubjectKind};
use tverr_policy::Principal;
use tverr_store::{DeploymentFile, Erasure, IngestOutcome, IngestRequest, Manifest, StoreError, Upload};

use crate::{Channel, Engine, QueryError, RecordKind};

/// The `datasets` field of a record about a change to these datasets, in the shape
/// `tverr audit search --dataset` reads.
pub fn datasets_field<'a>(datasets: impl IntoIterator<Item = &'a str>) -> serde_json::Value {
    serde_json::Value::Array(datasets.into_iter().map(|d| serde_json::json!({ "dataset": d })).collect())
}

impl Engine {
    /// Ingests a file as one new version of a dataset, recorded as `write-intent` before and
    /// `ingest` (or `write-failed`) after, on `channel`, in `who`'s name.
    pub async fn ingest(&self, who: &Principal, channel: Channel, request: IngestRequest) -> Result<IngestOutcome, QueryError> {
        self.check_upsert_key(who, &request).await?;
        let dataset = request.dataset.to_string();
        let file = request.path.file_name().map(|f| f.to_string_lossy().into_owned());
        let intent = serde_json::json!({
            "action": "ingest", "dataset": dataset, "mode": request.mode.label(), "create": request.create.is_some(),
            "file": file, "actor": request.actor,
        });
        self.log_event(RecordKind::WriteIntent, who, channel, intent).await?;
        match self.store.ingest(request).await {
            Ok(o) => {
                let details = serde_json::json!({
                    "dataset": dataset, "version": o.version, "rows": o.report.rows, "rows_removed": o.rows_removed,
                    "created": o.created, "sha256": o.report.sha256, "file": o.report.file_name,
                });
                self.record_outcome(RecordKind::Ingest, who, channel, details).await;
                self.wake_deliveries();
                Ok(o)
            }
            Err(e) => {
                self.record_outcome(
                    RecordKind::WriteFailed,
                    who,
                    channel,
                    serde_json::json!({"action": "ingest", "dataset": dataset, "error": failure(&e)}),
                )
                .await;
                Err(e.into())
            }
        }
    }

    /// Keeps a checked web upload where every node finds it: its file in storage, its row in the
    /// catalogue ([`tverr_store::Store::stage_upload`]). The file is read only by the ingest its
    /// owner confirms.
    pub async fn stage_upload(&self, upload: &Upload, file: &std::path::Path) -> Result<(), QueryError> {
        Ok(self.store.stage_upload(upload, file).await?)
    }

    /// The web upload `id`, if `owner` started it.
    pub async fn upload(&self, id: &str, owner: &str) -> Result<Option<Upload>, QueryError> {
        Ok(self.store.upload(id, owner).await?)
    }

    /// Takes `owner`'s checked upload `id` for ingesting, once, with its file fetched into `dir`.
    pub async fn claim_upload(
        &self,
        id: &str,
        owner: &str,
        dir: &std::path::Path,
    ) -> Result<Option<(Upload, std::path::PathBuf)>, QueryError> {
        Ok(self.store.claim_upload(id, owner, dir).await?)
    }

    /// A running web upload's progress.
    pub async fn upload_progress(&self, id: &str, bytes_read: u64) -> Result<(), QueryError> {
        Ok(self.store.upload_progress(id, bytes_read).await?)
    }

    /// Ends a running web upload: the version and rows, or the problems (JSON).
    pub async fn finish_upload(&self, id: &str, outcome: Result<(i64, u64), String>) -> Result<(), QueryError> {
        Ok(self.store.finish_upload(id, outcome).await?)
    }

    /// Copies the catalogue, `files` (the keys) and every dataset into `dest`, consistent at one
    /// catalogue generation ([`tverr_store::Store::backup`]). Only the operator may: a backup is a
    /// copy of everything. It is in the access log before it starts, so the backup holds the
    /// record of itself.
    pub async fn backup(&self, who: &Principal, dest: &std::path::Path, files: &[DeploymentFile]) -> Result<Manifest, QueryError> {
        if !matches!(who, Principal::Operator(_)) {
            return Err(QueryError::NotAllowed("only the operator takes backups".into()));
        }
        let details = serde_json::json!({"action": "backup", "destination": dest.display().to_string()});
        self.log_event(RecordKind::Backup, who, Channel::Cli, details).await?;
        Ok(self.store.backup(dest, files).await?)
    }

    /// Erases every row about a subject from a dataset (a new version without them, then a
    /// vacuum), recorded as `write-intent` before and `erasure` (or `write-failed`) after. A
    /// person is named in the records by the HMAC of their number, as in every access record.
    pub async fn erase(
        &self,
        who: &Principal,
        channel: Channel,
        r: &DatasetRef,
        kind: SubjectKind,
        id: &str,
    ) -> Result<Erasure, QueryError> {
        let key = kind.canonicalise(id).map_err(|e| QueryError::Invalid(format!("invalid {}: {e}", kind.label())))?;
        let mut subject = serde_json::json!({"kind": kind.as_str()});
        if kind == SubjectKind::Person {
            subject["subject"] = serde_json::json!(self.audit().subject_id(&key));
        } else {
            subject["id"] = serde_json::json!(key);
        }
        let mut intent = serde_json::json!({"action": "erasure", "dataset": r.to_string()});
        merge(&mut intent, &subject);
        self.log_event(RecordKind::WriteIntent, who, channel, intent).await?;
        let actor = match who {
            Principal::User(u) => u.username.clone(),
            _ => "operator".to_string(),
        };
        if self.store.catalog.protection_registers().await?.iter().any(|p| p.dataset == r.to_string()) {
            // The vacuum removes the register's earlier versions for good: whom they protected
            // is read into the protection history first.
            self.protected.refresh(&self.store).await?;
        }
        match self.store.erase(r, kind, &key, &actor).await {
            Ok(outcome) => {
                let mut details = serde_json::to_value(&outcome).unwrap_or_default();
                merge(&mut details, &subject);
                self.record_outcome(RecordKind::Erasure, who, channel, details).await;
                self.wake_deliveries();
                Ok(outcome)
            }
            Err(e) => {
                let mut details = serde_json::json!({"action": "erasure", "dataset": r.to_string(), "error": failure(&e)});
                merge(&mut details, &subject);
                self.record_outcome(RecordKind::WriteFailed, who, channel, details).await;
                Err(e.into())
            }
        }
    }

    /// Refuses an upsert by a key that address protection withholds in some rows (a
    /// `protected-address` column, or a property key once a register of protection is named):
    /// the rows it replaced would tell the writer which withheld keys exist and whose rows they
    /// are. The operator, who holds the lake itself, is not refused.
    async fn check_upsert_key(&self, who: &Principal, request: &IngestRequest) -> Result<(), QueryError> {
        let tverr_store::WriteMode::Upsert { key } = &request.mode else { return Ok(()) };
        if request.create.is_some() || matches!(who, Principal::Operator(_)) {
            return Ok(());
        }
        let columns = match self.store.catalog.columns(&request.dataset).await {
            Ok(c) => c,
            // The store answers a missing dataset itself, after the intent is logged.
            Err(StoreError::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let Some(column) = columns.iter().find(|c| &c.name == key) else { return Ok(()) };
        let by_person = !self.store.catalog.protection_registers().await?.is_empty();
        if column.category == tverr_core::ColumnCategory::ProtectedAddress
            || (column.subject_key == Some(SubjectKind::Property) && by_person)
        {
            return Err(QueryError::Invalid(format!(
                "cannot upsert {} by {key}: address protection withholds {key} in some rows, and the rows an upsert replaces would \
                 tell which of them exist; replace the dataset, or upsert by another key",
                request.dataset
            )));
        }
        Ok(())
    }

    /// Records what a write came to. The intent is already durable, so a log that fails now
    /// cannot hide the write; the failure is reported to the operator's log.
    async fn record_outcome(&self, kind: RecordKind, who: &Principal, channel: Channel, details: serde_json::Value) {
        if let Err(e) = self.log_event(kind, who, channel, details).await {
            tracing::error!(error = %e, kind = kind.as_str(), "cannot record the outcome of a write (its intent is recorded)");
        }
    }
}

/// What kind of failure stopped a write, without its text: an ingest error quotes the file's
/// values, which do not belong in the access log.
fn failure(e: &StoreError) -> String {
    match e {
        StoreError::Ingest(tverr_store::tverr_ingest::IngestError::Invalid(problems)) => format!("{} problems in the file", problems.len()),
        StoreError::Ingest(_) => "the file could not be read".into(),
        StoreError::NotFound { what, name } => format!("no {what} {name}"),
        StoreError::Exists { what, name } => format!("{what} {name} exists"),
        StoreError::Invalid { field, .. } => format!("invalid {field}"),
        _ => "the store failed".into(),
    }
}

fn merge(into: &mut serde_json::Value, from: &serde_json::Value) {
    if let (Some(a), Some(b)) = (into.as_object_mut(), from.as_object()) {
        a.extend(b.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
}
