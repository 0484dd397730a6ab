//! The catalogue's connectors and their runs (`migrations/0013_connectors.sql`). A connector's
//! row holds its settings and its sealed secrets as text; what they mean is the access layer's.
//! Runs are claimed with a lease, so one node at a time runs a connector.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::catalog::{corrupt, is_unique_violation};
use crate::{Catalog, StoreError, Timestamp};

/// A connector as the catalogue holds it.
#[derive(Debug, Clone)]
pub struct ConnectorRow {
    /// Its name (a slug, unique in the deployment).
    pub name: String,
    /// The organisation of the dataset it writes.
    pub org: String,
    /// The dataset's slug.
    pub dataset: String,
    /// The source's URL, without a password.
    pub source: String,
    /// The cron schedule.
    pub schedule: String,
    /// How to read the source and ingest it (JSON).
    pub settings: String,
    /// Sealed secrets.
    pub secrets: String,
    /// The user it writes as.
    pub owner: String,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// What the last successful run saw (JSON).
    pub state: String,
    /// When it runs next.
    pub next_run_at: Timestamp,
    /// Failed runs since the last success.
    pub failures: i64,
    /// The node running it now, if any.
    pub lease_owner: Option<String>,
    /// Until when that node's lease holds.
    pub lease_until: Option<Timestamp>,
}

/// One run of a connector.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct ConnectorRun {
    /// The run's id.
    pub id: String,
    /// The connector.
    pub connector: String,
    /// `schedule`, `retry` or `manual`.
    pub trigger: String,
    /// The node that ran it.
    pub node: String,
    /// When it started.
    pub started_at: Timestamp,
    /// When it ended (none while running).
    pub finished_at: Option<Timestamp>,
    /// `running`, `ingested`, `unchanged`, `failed` or `interrupted`.
    pub status: String,
    /// The version it wrote.
    pub version: Option<i64>,
    /// Rows it wrote.
    pub rows: Option<i64>,
    /// The source file or object it read.
    pub source_name: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
    /// The located problems of a file it could not ingest.
    pub problems: Vec<tverr_ingest::Problem>,
}

const CONNECTOR_COLUMNS: &str = "name, org, dataset, source, schedule, settings, secrets, owner, created_by, created_at, state, \
                                 next_run_at, failures, lease_owner, lease_until";

fn connector_from_row(r: &AnyRow) -> Result<ConnectorRow, StoreError> {
    let lease_until: Option<String> = r.try_get("lease_until")?;
    Ok(ConnectorRow {
        name: r.try_get("name")?,
        org: r.try_get("org")?,
        dataset: r.try_get("dataset")?,
        source: r.try_get("source")?,
        schedule: r.try_get("schedule")?,
        settings: r.try_get("settings")?,
        secrets: r.try_get("secrets")?,
        owner: r.try_get("owner")?,
        created_by: r.try_get("created_by")?,
        created_at: Timestamp::from_row(r, "created_at")?,
        state: r.try_get("state")?,
        next_run_at: Timestamp::from_row(r, "next_run_at")?,
        failures: r.try_get("failures")?,
        lease_owner: r.try_get("lease_owner")?,
        lease_until: match lease_until {
            None => None,
            Some(t) => Some(
                chrono::DateTime::parse_from_rfc3339(&t)
                    .map_err(|e| corrupt("lease_until", format!("{t:?}: {e}")))?
                    .with_timezone(&chrono::Utc)
                    .into(),
            ),
        },
    })
}

fn run_from_row(r: &AnyRow) -> Result<ConnectorRun, StoreError> {
    let finished: Option<String> = r.try_get("finished_at")?;
    Ok(ConnectorRun {
        id: r.try_get("id")?,
        connector: r.try_get("connector")?,
        trigger: r.try_get("trigger_kind")?,
        node: r.try_get("node")?,
        started_at: Timestamp::from_row(r, "started_at")?,
        finished_at: match finished {
            None => None,
            Some(_) => Some(Timestamp::from_row(r, "finished_at")?),
        },
        status: r.try_get("status")?,
        version: r.try_get("version")?,
        rows: r.try_get("rows_written")?,
        source_name: r.try_get("source_name")?,
        error: r.try_get("error")?,
        problems: {
            let text: Option<String> = r.try_get("problems")?;
            match text {
                None => Vec::new(),
                Some(t) => serde_json::from_str(&t).map_err(|e| corrupt("run problems", e))?,
            }
        },
    })
}

impl Catalog {
    /// Adds a connector; its name must be new.
    pub async fn insert_connector(&self, c: &ConnectorRow) -> Result<(), StoreError> {
        sqlx::query(&format!(
            "INSERT INTO connectors ({CONNECTOR_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, NULL, NULL)"
        ))
        .bind(&c.name)
        .bind(&c.org)
        .bind(&c.dataset)
        .bind(&c.source)
        .bind(&c.schedule)
        .bind(&c.settings)
        .bind(&c.secrets)
        .bind(&c.owner)
        .bind(&c.created_by)
        .bind(c.created_at.to_string())
        .bind(&c.state)
        .bind(c.next_run_at.to_string())
        .bind(c.failures)
        .execute(self.pool())
        .await
        .map_err(|e| if is_unique_violation(&e) { StoreError::Exists { what: "connector", name: c.name.clone() } } else { e.into() })?;
        Ok(())
    }

    /// Every connector, by name.
    pub async fn connectors(&self) -> Result<Vec<ConnectorRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {CONNECTOR_COLUMNS} FROM connectors ORDER BY name")).fetch_all(self.pool()).await?;
        rows.iter().map(connector_from_row).collect()
    }

    /// One connector.
    pub async fn connector(&self, name: &str) -> Result<ConnectorRow, StoreError> {
        let row = sqlx::query(&format!("SELECT {CONNECTOR_COLUMNS} FROM connectors WHERE name = $1"))
            .bind(name)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound { what: "connector", name: name.to_string() })?;
        connector_from_row(&row)
    }

    /// Removes a connector and its runs.
    pub async fn delete_connector(&self, name: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM connectors WHERE name = $1").bind(name).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "connector", name: name.to_string() });
        }
        sqlx::query("DELETE FROM connector_runs WHERE connector = $1").bind(name).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The connectors due at `now` whose lease has run out.
    pub async fn due_connectors(&self, now: Timestamp) -> Result<Vec<String>, StoreError> {
        let now = now.to_string();
        let rows = sqlx::query(
            "SELECT name FROM connectors WHERE next_run_at <= $1 AND (lease_until IS NULL OR lease_until < $2) ORDER BY next_run_at",
        )
        .bind(&now)
        .bind(&now)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| r.try_get("name").map_err(StoreError::from)).collect()
    }

    /// Takes the lease of a connector for `node` until `until`, if no other node holds one
    /// (and, with `due_only`, if it is due): whether it was taken. A run the previous holder
    /// left unfinished (the node stopped) is marked `interrupted`.
    pub async fn claim_connector(
        &self,
        name: &str,
        node: &str,
        now: Timestamp,
        until: Timestamp,
        due_only: bool,
    ) -> Result<bool, StoreError> {
        let now_text = now.to_string();
        let mut tx = self.begin_write().await?;
        let sql = if due_only {
            "UPDATE connectors SET lease_owner = $1, lease_until = $2 WHERE name = $3 AND (lease_until IS NULL OR lease_until < $4) \
             AND next_run_at <= $5"
        } else {
            "UPDATE connectors SET lease_owner = $1, lease_until = $2 WHERE name = $3 AND (lease_until IS NULL OR lease_until < $4) \
             AND $5 = $5"
        };
        let done = sqlx::query(sql).bind(node).bind(until.to_string()).bind(name).bind(&now_text).bind(&now_text).execute(&mut *tx).await?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        sqlx::query("UPDATE connector_runs SET status = 'interrupted', finished_at = $1 WHERE connector = $2 AND status = 'running'")
            .bind(&now_text)
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Extends `node`'s lease of a connector: false when the node no longer holds it.
    pub async fn renew_connector_lease(&self, name: &str, node: &str, until: Timestamp) -> Result<bool, StoreError> {
        let done = sqlx::query("UPDATE connectors SET lease_until = $1 WHERE name = $2 AND lease_owner = $3")
            .bind(until.to_string())
            .bind(name)
            .bind(node)
            .execute(self.pool())
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives up `node`'s lease, recording the next run, the failure count and (after a success)
    /// the state the run leaves.
    pub async fn release_connector(
        &self,
        name: &str,
        node: &str,
        state: Option<&str>,
        next_run_at: Timestamp,
        failures: i64,
    ) -> Result<(), StoreError> {
        let q = match state {
            Some(state) => sqlx::query(
                "UPDATE connectors SET lease_owner = NULL, lease_until = NULL, next_run_at = $1, failures = $2, state = $3 \
                 WHERE name = $4 AND lease_owner = $5",
            )
            .bind(next_run_at.to_string())
            .bind(failures)
            .bind(state.to_string()),
            None => sqlx::query(
                "UPDATE connectors SET lease_owner = NULL, lease_until = NULL, next_run_at = $1, failures = $2 \
                 WHERE name = $3 AND lease_owner = $4",
            )
            .bind(next_run_at.to_string())
            .bind(failures),
        };
        q.bind(name).bind(node).execute(self.pool()).await?;
        Ok(())
    }

    /// Records that a run started.
    pub async fn start_connector_run(&self, run: &ConnectorRun) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO connector_runs (id, connector, trigger_kind, node, started_at, status) VALUES ($1, $2, $3, $4, $5, 'running')",
        )
        .bind(&run.id)
        .bind(&run.connector)
        .bind(&run.trigger)
        .bind(&run.node)
        .bind(run.started_at.to_string())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records how a run ended.
    pub async fn finish_connector_run(&self, run: &ConnectorRun) -> Result<(), StoreError> {
        tverr_core::metrics::connector_run(&run.status);
        sqlx::query(
            "UPDATE connector_runs SET finished_at = $1, status = $2, version = $3, rows_written = $4, source_name = $5, error = $6, \
             problems = $7 WHERE id = $8",
        )
        .bind(run.finished_at.unwrap_or_else(Timestamp::now).to_string())
        .bind(&run.status)
        .bind(run.version)
        .bind(run.rows)
        .bind(run.source_name.clone())
        .bind(run.error.clone())
        .bind(if run.problems.is_empty() { None } else { serde_json::to_string(&run.problems).ok() })
        .bind(&run.id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A connector's last `limit` runs, newest first.
    pub async fn connector_runs(&self, name: &str, limit: i64) -> Result<Vec<ConnectorRun>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, connector, trigger_kind, node, started_at, finished_at, status, version, rows_written, source_name, error, problems \
             FROM connector_runs WHERE connector = $1 ORDER BY started_at DESC, id DESC LIMIT $2",
        )
        .bind(name)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(run_from_row).collect()
    }
}
