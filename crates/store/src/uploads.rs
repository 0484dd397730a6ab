//! Web uploads between their steps, kept in the catalogue and in storage so that any node shows
//! and confirms an upload another node checked: the row in `web_uploads` (migration 0019) says
//! where it stands, and the checked file waits under `_staging/uploads/ID/` in the lake's
//! storage until the ingest has read it.

use std::path::{Path, PathBuf};

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use sqlx::Row;
use tokio::io::AsyncWriteExt;

use crate::{Store, StoreError};

/// Where an upload stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UploadStep {
    /// Checked, waiting for its owner's confirmation.
    Checked,
    /// Being ingested by a node.
    Running,
    /// Stored as a new version.
    Done,
    /// Refused, with its problems.
    Failed,
}

impl UploadStep {
    fn as_str(self) -> &'static str {
        match self {
            UploadStep::Checked => "checked",
            UploadStep::Running => "running",
            UploadStep::Done => "done",
            UploadStep::Failed => "failed",
        }
    }

    fn parse(text: &str) -> Result<Self, StoreError> {
        Ok(match text {
            "checked" => UploadStep::Checked,
            "running" => UploadStep::Running,
            "done" => UploadStep::Done,
            "failed" => UploadStep::Failed,
            other => return Err(crate::catalog::corrupt("web_uploads.step", format!("unknown step {other:?}"))),
        })
    }
}

/// A web upload.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Its id (random).
    pub id: String,
    /// The user who started it; no one else sees it.
    pub owner: String,
    /// `ORG/DATASET`.
    pub dataset: String,
    /// The file's size in bytes.
    pub size: u64,
    /// Where it stands.
    pub step: UploadStep,
    /// The file's name as uploaded (made safe).
    pub file_name: String,
    /// The ingest settings, JSON.
    pub settings: String,
    /// Bytes the ingest has read.
    pub bytes_read: u64,
    /// The new version, when done.
    pub version: Option<i64>,
    /// Rows the version wrote, when done.
    pub rows: Option<u64>,
    /// The problems, JSON, when failed.
    pub problems: Option<String>,
    /// Seconds since the last word of it (a running upload's node writes every few seconds).
    pub quiet_for: u64,
}

/// How long a checked or finished upload is kept.
pub const UPLOAD_KEEP: std::time::Duration = std::time::Duration::from_secs(3600);

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn staged(id: &str, file_name: &str) -> object_store::path::Path {
    object_store::path::Path::from_iter(["_staging", "uploads", id, file_name])
}

fn storage(e: object_store::Error) -> StoreError {
    StoreError::Read(e.to_string())
}

fn upload_of(row: &sqlx::any::AnyRow) -> Result<Upload, StoreError> {
    let updated: i64 = row.try_get("updated_at")?;
    Ok(Upload {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        dataset: row.try_get("dataset")?,
        size: row.try_get::<i64, _>("size")?.max(0) as u64,
        step: UploadStep::parse(&row.try_get::<String, _>("step")?)?,
        file_name: row.try_get("file_name")?,
        settings: row.try_get("settings")?,
        bytes_read: row.try_get::<i64, _>("bytes_read")?.max(0) as u64,
        version: row.try_get("version")?,
        rows: row.try_get::<Option<i64>, _>("rows_written")?.map(|r| r.max(0) as u64),
        problems: row.try_get("problems")?,
        quiet_for: (unix_now() - updated).max(0) as u64,
    })
}

const COLUMNS: &str = "id, owner, dataset, size, step, file_name, settings, bytes_read, version, rows_written, problems, updated_at";

impl Store {
    /// Keeps a checked upload: its file in storage, its row in the catalogue. Uploads older
    /// than [`UPLOAD_KEEP`] that are not running are forgotten, with their files.
    pub async fn stage_upload(&self, upload: &Upload, file: &Path) -> Result<(), StoreError> {
        self.forget_old_uploads().await?;
        let store = self.lake.root_store()?;
        let location = staged(&upload.id, &upload.file_name);
        let mut writer = object_store::WriteMultipart::new(store.put_multipart(&location).await.map_err(storage)?);
        let mut reader = tokio::fs::File::open(file).await.map_err(|e| StoreError::Read(format!("{}: {e}", file.display())))?;
        let mut buffer = vec![0u8; 8 << 20];
        loop {
            use tokio::io::AsyncReadExt;
            let n = reader.read(&mut buffer).await.map_err(|e| StoreError::Read(format!("{}: {e}", file.display())))?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(4).await.map_err(storage)?;
            writer.write(&buffer[..n]);
        }
        writer.finish().await.map_err(storage)?;
        sqlx::query(&format!("INSERT INTO web_uploads ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, 0, NULL, NULL, NULL, $8)"))
            .bind(&upload.id)
            .bind(&upload.owner)
            .bind(&upload.dataset)
            .bind(upload.size as i64)
            .bind(UploadStep::Checked.as_str())
            .bind(&upload.file_name)
            .bind(&upload.settings)
            .bind(unix_now())
            .execute(self.catalog.pool())
            .await?;
        Ok(())
    }

    /// The upload `id` if `owner` started it.
    pub async fn upload(&self, id: &str, owner: &str) -> Result<Option<Upload>, StoreError> {
        let row = sqlx::query(&format!("SELECT {COLUMNS} FROM web_uploads WHERE id = $1 AND owner = $2"))
            .bind(id)
            .bind(owner)
            .fetch_optional(self.catalog.pool())
            .await?;
        row.as_ref().map(upload_of).transpose()
    }

    /// Takes a checked upload for ingesting, once (of two confirmations on two nodes, one gets
    /// it), and fetches its file into `dir`: the upload and the file's path, or `None` when it is
    /// not `owner`'s or not waiting.
    pub async fn claim_upload(&self, id: &str, owner: &str, dir: &Path) -> Result<Option<(Upload, PathBuf)>, StoreError> {
        let claimed = sqlx::query("UPDATE web_uploads SET step = $1, updated_at = $2 WHERE id = $3 AND owner = $4 AND step = $5")
            .bind(UploadStep::Running.as_str())
            .bind(unix_now())
            .bind(id)
            .bind(owner)
            .bind(UploadStep::Checked.as_str())
            .execute(self.catalog.pool())
            .await?
            .rows_affected();
        if claimed == 0 {
            return Ok(None);
        }
        let Some(upload) = self.upload(id, owner).await? else { return Ok(None) };
        let path = dir.join(&upload.file_name);
        let fetched = async {
            let store = self.lake.root_store()?;
            let mut stream = store.get(&staged(id, &upload.file_name)).await.map_err(storage)?.into_stream();
            let mut file = tokio::fs::File::create(&path).await.map_err(|e| StoreError::Read(format!("{}: {e}", path.display())))?;
            while let Some(chunk) = stream.next().await {
                file.write_all(&chunk.map_err(storage)?).await.map_err(|e| StoreError::Read(format!("{}: {e}", path.display())))?;
            }
            file.flush().await.map_err(|e| StoreError::Read(format!("{}: {e}", path.display())))?;
            Ok::<(), StoreError>(())
        }
        .await;
        if let Err(e) = fetched {
            // Back to waiting: the owner may confirm again.
            let _ = sqlx::query("UPDATE web_uploads SET step = $1 WHERE id = $2")
                .bind(UploadStep::Checked.as_str())
                .bind(id)
                .execute(self.catalog.pool())
                .await;
            return Err(e);
        }
        Ok(Some((upload, path)))
    }

    /// A running upload's progress (and the sign that its node is alive).
    pub async fn upload_progress(&self, id: &str, bytes_read: u64) -> Result<(), StoreError> {
        sqlx::query("UPDATE web_uploads SET bytes_read = $1, updated_at = $2 WHERE id = $3 AND step = $4")
            .bind(bytes_read as i64)
            .bind(unix_now())
            .bind(id)
            .bind(UploadStep::Running.as_str())
            .execute(self.catalog.pool())
            .await?;
        Ok(())
    }

    /// Ends a running upload: `Ok((version, rows))` or `Err(problems as JSON)`; its staged file
    /// is deleted.
    pub async fn finish_upload(&self, id: &str, outcome: Result<(i64, u64), String>) -> Result<(), StoreError> {
        let (step, version, rows, problems) = match outcome {
            Ok((version, rows)) => (UploadStep::Done, Some(version), Some(rows as i64), None),
            Err(problems) => (UploadStep::Failed, None, None, Some(problems)),
        };
        sqlx::query("UPDATE web_uploads SET step = $1, version = $2, rows_written = $3, problems = $4, bytes_read = size, updated_at = $5 WHERE id = $6")
            .bind(step.as_str())
            .bind(version)
            .bind(rows)
            .bind(problems)
            .bind(unix_now())
            .bind(id)
            .execute(self.catalog.pool())
            .await?;
        self.delete_staged(id).await
    }

    async fn delete_staged(&self, id: &str) -> Result<(), StoreError> {
        let store = self.lake.root_store()?;
        let prefix = object_store::path::Path::from_iter(["_staging", "uploads", id]);
        let objects: Vec<_> = store.list(Some(&prefix)).try_collect().await.map_err(storage)?;
        for o in objects {
            store.delete(&o.location).await.map_err(storage)?;
        }
        Ok(())
    }

    /// Forgets uploads older than [`UPLOAD_KEEP`] that are not running, and their files.
    async fn forget_old_uploads(&self) -> Result<(), StoreError> {
        let before = unix_now() - UPLOAD_KEEP.as_secs() as i64;
        let old: Vec<String> = sqlx::query_scalar("SELECT id FROM web_uploads WHERE updated_at < $1 AND step <> $2")
            .bind(before)
            .bind(UploadStep::Running.as_str())
            .fetch_all(self.catalog.pool())
            .await?;
        for id in old {
            self.delete_staged(&id).await?;
            sqlx::query("DELETE FROM web_uploads WHERE id = $1").bind(&id).execute(self.catalog.pool()).await?;
        }
        Ok(())
    }
}
