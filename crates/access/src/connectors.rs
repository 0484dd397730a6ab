//! Connectors: datasets kept current from the systems that own their data. A connector is a
//! source (`tverr_connect`), a schedule and the ingest settings of its dataset; each run stages
//! what the source holds and, when it changed, writes it as a new version through
//! [`Engine::ingest`] — the door every upload goes through, with its intent record — in the
//! name of the steward who made the connector, by an API token of theirs sealed with the
//! connector's other secrets. So a connector can do no more than its owner: a removed user, a
//! revoked token or a lost write permission stops it at its next run.

use std::sync::Arc;

use serde::Serialize;
use tverr_connect::{ConnectError, FetchConfig, Fetched, SecretBox, Secrets, Source, SourceKind, SourceOptions, SourceState};
use tverr_core::{DatasetRef, Slug};
use tverr_policy::{Action, Policy, Principal};
use tverr_store::{ConnectorRow, IngestSettings, StoreError, Timestamp, WriteMode};

pub use tverr_connect::{AddressPolicy, Schedule};
pub use tverr_store::ConnectorRun;

use crate::{Channel, Engine, QueryError, RecordKind};

/// The runs `connector_runs` lists by default.
pub const DEFAULT_RUNS_LISTED: i64 = 20;

/// How a deployment runs connectors.
#[derive(Debug, Clone)]
pub struct ConnectorConfig {
    /// The file with the key that seals secrets (outside the catalogue).
    pub key_path: std::path::PathBuf,
    /// What sources may be reached, and limits.
    pub fetch: FetchConfig,
    /// This node's name in leases and runs.
    pub node: String,
    /// How long a lease holds without renewal; a node that stops leaves its connectors to
    /// others after this.
    pub lease: std::time::Duration,
    /// The wait before the first retry of a failing connector; each further failure doubles it.
    pub retry: std::time::Duration,
}

impl Default for ConnectorConfig {
    fn default() -> Self {
        Self {
            key_path: std::path::PathBuf::from("connector-key"),
            fetch: FetchConfig::default(),
            node: "tverr".into(),
            lease: std::time::Duration::from_secs(120),
            retry: std::time::Duration::from_secs(30),
        }
    }
}

#[derive(Debug)]
pub(crate) struct Connectors {
    secrets: SecretBox,
    config: ConnectorConfig,
}

/// A connector to make.
#[derive(Debug, Clone, Default)]
pub struct NewConnector {
    /// Its name: lower case, digits and `-`.
    pub name: String,
    /// `ORG/DATASET` it writes.
    pub dataset: String,
    /// The source's URL (a password in it is sealed, never stored in the URL).
    pub source: String,
    /// A cron pattern in Norwegian time.
    pub schedule: String,
    /// How to read the source.
    pub options: SourceOptions,
    /// Headers for an HTTP source, `NAME: VALUE` (the values are sealed).
    pub headers: Vec<String>,
    /// How to ingest what it reads, as for an upload.
    pub ingest: IngestSettings,
}

/// A connector as its stewards see it: never a secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConnectorInfo {
    /// Its name.
    pub name: String,
    /// `ORG/DATASET`.
    pub dataset: String,
    /// `http`, `postgres` or `folder`.
    pub kind: String,
    /// The source's URL, without a password.
    pub source: String,
    /// The cron pattern (Norwegian time).
    pub schedule: String,
    /// `append`, `replace` or `upsert`.
    pub mode: String,
    /// The upsert key.
    pub key: Option<String>,
    /// A SQL source's query.
    pub query: Option<String>,
    /// A SQL source's incremental column.
    pub incremental: Option<String>,
    /// A JSON API's pointer to its rows.
    pub pointer: Option<String>,
    /// The names of the headers sent (never their values).
    pub headers: Vec<String>,
    /// Whether a password is kept.
    pub has_password: bool,
    /// The user it writes as.
    pub owner: String,
    /// Who made it.
    pub created_by: String,
    /// When.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// When it runs next.
    #[schema(value_type = String)]
    pub next_run_at: Timestamp,
    /// Failed runs since the last success (retried with back-off).
    pub failures: i64,
    /// Whether a node is running it now.
    pub running: bool,
    /// Its last run.
    pub last_run: Option<ConnectorRun>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(default)]
struct Settings {
    options: SourceOptions,
    ingest: IngestSettings,
    token_id: Option<String>,
}

fn invalid(field: &str, message: impl Into<String>) -> QueryError {
    QueryError::Store(StoreError::Invalid { field: field.to_string(), message: message.into() })
}

fn connect_error(e: ConnectError) -> QueryError {
    match e {
        ConnectError::Invalid { field, message } => invalid(field, message),
        ConnectError::Refused(m) => QueryError::NotAllowed(m),
        other => QueryError::Invalid(other.to_string()),
    }
}

/// The wait before retry `n` (1, 2, …) of a failing connector: `first` doubling with each
/// failure, at most 6 h.
pub fn backoff(first: std::time::Duration, failures: i64) -> std::time::Duration {
    let exp = failures.clamp(1, 20) as u32 - 1;
    first.saturating_mul(1u32 << exp).min(std::time::Duration::from_secs(6 * 3600))
}

fn later(d: std::time::Duration) -> Timestamp {
    (chrono::Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))).into()
}

impl Engine {
    /// Lets this engine run connectors with `config`, opening (or making) the sealing key.
    pub fn with_connectors(mut self, config: ConnectorConfig) -> Result<Self, QueryError> {
        let secrets = SecretBox::open(&config.key_path).map_err(|e| QueryError::Invalid(e.to_string()))?;
        self.connectors = Some(Arc::new(Connectors { secrets, config }));
        Ok(self)
    }

    fn connector_runtime(&self) -> Result<&Connectors, QueryError> {
        self.connectors.as_deref().ok_or_else(|| QueryError::Invalid("this node is not configured to run connectors".into()))
    }

    /// The department a connector's dataset belongs to (or will, when its first run creates it).
    async fn connector_department(&self, dataset: &DatasetRef, ingest: &IngestSettings) -> Result<(String, bool), QueryError> {
        match self.store.catalog.dataset(dataset).await {
            Ok(meta) => Ok((meta.department, true)),
            Err(StoreError::NotFound { .. }) => match ingest.create.as_ref().and_then(|c| c.department.clone()) {
                Some(d) => Ok((d, false)),
                None => Err(QueryError::NotFound(dataset.to_string())),
            },
            Err(e) => Err(e.into()),
        }
    }

    /// Whether `who` may manage the connector (write its dataset); a connector they may not is
    /// answered as missing.
    async fn connector_for(&self, who: &Principal, name: &str) -> Result<(ConnectorRow, Settings), QueryError> {
        let missing = || QueryError::Store(StoreError::NotFound { what: "connector", name: name.to_string() });
        let row = match self.store.catalog.connector(name).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => return Err(missing()),
            Err(e) => return Err(e.into()),
        };
        let settings: Settings = serde_json::from_str(&row.settings).map_err(|e| QueryError::Invalid(format!("connector {name}: {e}")))?;
        let dataset: DatasetRef = format!("{}/{}", row.org, row.dataset).parse().map_err(|_| missing())?;
        let department = match self.connector_department(&dataset, &settings.ingest).await {
            Ok((d, _)) => d,
            Err(_) => return Err(missing()),
        };
        if !matches!(who, Principal::Operator(_)) {
            Policy::may(who, Action::Write { org: &row.org, department: &department }).map_err(|_| missing())?;
        }
        Ok((row, settings))
    }

    fn connector_info(&self, row: &ConnectorRow, settings: &Settings, last_run: Option<ConnectorRun>) -> ConnectorInfo {
        let kind = Source::parse(&row.source).map(|(s, _)| s.kind.as_str()).unwrap_or("unknown");
        let has_password = self
            .connectors
            .as_deref()
            .and_then(|c| c.secrets.open_sealed(&row.name, &row.secrets).ok())
            .is_some_and(|s: Secrets| s.password.is_some());
        let running = row.lease_until.is_some_and(|u| u > Timestamp::now());
        ConnectorInfo {
            name: row.name.clone(),
            dataset: format!("{}/{}", row.org, row.dataset),
            kind: kind.to_string(),
            source: row.source.clone(),
            schedule: row.schedule.clone(),
            mode: settings.ingest.mode.clone().unwrap_or_else(|| "append".into()),
            key: settings.ingest.key.clone(),
            query: settings.options.query.clone(),
            incremental: settings.options.incremental.clone(),
            pointer: settings.options.pointer.clone(),
            headers: settings.options.header_names.clone(),
            has_password,
            owner: row.owner.clone(),
            created_by: row.created_by.clone(),
            created_at: row.created_at,
            next_run_at: row.next_run_at,
            failures: row.failures,
            running,
            last_run,
        }
    }

    /// Makes a connector. `who` must be a signed-in user who may write the dataset's
    /// department (the operator acts as one with `--as`); the connector writes in their name.
    pub async fn create_connector(&self, who: &Principal, channel: Channel, new: NewConnector) -> Result<ConnectorInfo, QueryError> {
        let runtime = self.connector_runtime()?;
        let Principal::User(user) = who else {
            return Err(QueryError::NotAllowed(
                "a connector writes in a steward's name: make it as a signed-in user (tverr connector create --as USER)".into(),
            ));
        };
        let name = Slug::parse(&new.name, "connector").map_err(|e| invalid("name", e.to_string()))?;
        let dataset: DatasetRef = new.dataset.parse().map_err(|e: tverr_core::ModelError| invalid("dataset", e.to_string()))?;
        let (source, password) = Source::parse(&new.source).map_err(connect_error)?;
        let mut options = new.options.clone();
        let mut headers = Vec::new();
        for h in &new.headers {
            let (n, v) = h.split_once(':').ok_or_else(|| invalid("header", "expected NAME: VALUE"))?;
            let (n, v) = (n.trim(), v.trim());
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(invalid("header", format!("{n:?} is not a header name")));
            }
            const RESERVED: &[&str] =
                &["host", "connection", "content-length", "transfer-encoding", "te", "upgrade", "proxy-authorization", "keep-alive"];
            if RESERVED.contains(&n.to_ascii_lowercase().as_str()) {
                return Err(invalid("header", format!("{n} is set by Tverr, not by a connector")));
            }
            if v.bytes().any(|b| b.is_ascii_control()) {
                return Err(invalid("header", format!("the value of {n} holds a control character")));
            }
            headers.push((n.to_string(), v.to_string()));
        }
        options.header_names = headers.iter().map(|(n, _)| n.clone()).collect();
        source.check_options(&options).map_err(connect_error)?;
        let schedule = Schedule::parse(&new.schedule).map_err(connect_error)?;
        let mode = new.ingest.clone().request(dataset.clone(), "check".into(), user.username.clone())?.mode;
        if options.incremental.is_some() && !matches!(mode, WriteMode::Upsert { .. }) {
            return Err(invalid("incremental", "an incremental read adds changed rows by their key: use --mode upsert --key COLUMN"));
        }
        let (department, exists) = self.connector_department(&dataset, &new.ingest).await?;
        if let Err(e) = Policy::may(who, Action::Write { org: dataset.org.as_str(), department: &department }) {
            // As for an upload: a dataset the caller may not even see is the 404 of a missing
            // one, whatever department a request names; one they see, the refusal.
            let visible = exists
                && (user.org == dataset.org.as_str()
                    || !matches!(self.policy.entitle(who, None, &dataset).await, Ok(Err(tverr_policy::Denial::NotFound)) | Err(_)));
            return Err(if visible { e.into() } else { QueryError::NotFound(dataset.to_string()) });
        }
        if source.kind == SourceKind::Folder {
            let real = tverr_connect::folder::check(&runtime.config.fetch, &source.url, (dataset.org.as_str(), &department))
                .map_err(connect_error)?;
            // One folder, one connector: two would take each other's files, and one inside
            // another's folder (its processed/ or failed/) would take what that one delivered.
            for other in self.store.catalog.connectors().await? {
                let theirs = Source::parse(&other.source).ok().and_then(|(s, _)| tverr_connect::folder::real_path(&s.url));
                if theirs.is_some_and(|t| t.starts_with(&real) || real.starts_with(&t)) {
                    return Err(invalid("source", "another connector reads this drop folder, or one around or inside it"));
                }
            }
        }
        let mut ingest = new.ingest.clone();
        if exists {
            ingest.create = None;
        }
        let intent = serde_json::json!({
            "action": "create", "connector": name.as_str(), "dataset": dataset.to_string(), "source": source.url.as_str(),
            "kind": source.kind.as_str(), "schedule": new.schedule, "owner": user.username,
        });
        self.log_event(RecordKind::ConnectorChange, who, channel, intent).await?;
        let token = self.policy.create_token(&user.username, None).await?;
        let secrets = Secrets { password, headers, token: Some(token.secret.clone()) };
        let sealed = runtime.secrets.seal(name.as_str(), &secrets).map_err(connect_error)?;
        let settings = Settings { options, ingest, token_id: Some(token.id.clone()) };
        let row = ConnectorRow {
            name: name.as_str().to_string(),
            org: dataset.org.as_str().to_string(),
            dataset: dataset.dataset.as_str().to_string(),
            source: source.url.to_string(),
            schedule: new.schedule.trim().to_string(),
            settings: serde_json::to_string(&settings).map_err(|e| QueryError::Invalid(e.to_string()))?,
            secrets: sealed,
            owner: user.username.clone(),
            created_by: user.username.clone(),
            created_at: Timestamp::now(),
            state: "{}".into(),
            next_run_at: schedule.next_after(chrono::Utc::now()).map_err(connect_error)?.into(),
            failures: 0,
            lease_owner: None,
            lease_until: None,
        };
        if let Err(e) = self.store.catalog.insert_connector(&row).await {
            let _ = self.policy.revoke_token(&token.id).await;
            return Err(e.into());
        }
        Ok(self.connector_info(&row, &settings, None))
    }

    /// The connectors `who` may manage, by name.
    pub async fn connectors(&self, who: &Principal) -> Result<Vec<ConnectorInfo>, QueryError> {
        let mut out = Vec::new();
        for row in self.store.catalog.connectors().await? {
            if let Ok((row, settings)) = self.connector_for(who, &row.name).await {
                let last = self.store.catalog.connector_runs(&row.name, 1).await?.into_iter().next();
                out.push(self.connector_info(&row, &settings, last));
            }
        }
        Ok(out)
    }

    /// The connectors of one dataset that `who` may manage.
    pub async fn dataset_connectors(&self, who: &Principal, dataset: &DatasetRef) -> Result<Vec<ConnectorInfo>, QueryError> {
        let all = self.connectors(who).await?;
        Ok(all.into_iter().filter(|c| c.dataset == dataset.to_string()).collect())
    }

    /// One connector.
    pub async fn connector(&self, who: &Principal, name: &str) -> Result<ConnectorInfo, QueryError> {
        let (row, settings) = self.connector_for(who, name).await?;
        let last = self.store.catalog.connector_runs(name, 1).await?.into_iter().next();
        Ok(self.connector_info(&row, &settings, last))
    }

    /// A connector's last `limit` runs, newest first.
    pub async fn connector_runs(&self, who: &Principal, name: &str, limit: i64) -> Result<Vec<ConnectorRun>, QueryError> {
        self.connector_for(who, name).await?;
        Ok(self.store.catalog.connector_runs(name, limit.clamp(1, 1000)).await?)
    }

    /// Deletes a connector and revokes its token.
    pub async fn delete_connector(&self, who: &Principal, channel: Channel, name: &str) -> Result<(), QueryError> {
        let (row, settings) = self.connector_for(who, name).await?;
        let intent = serde_json::json!({"action": "delete", "connector": name, "dataset": format!("{}/{}", row.org, row.dataset)});
        self.log_event(RecordKind::ConnectorChange, who, channel, intent).await?;
        self.store.catalog.delete_connector(name).await?;
        if let Some(id) = &settings.token_id
            && let Err(e) = self.policy.revoke_token(id).await
        {
            tracing::warn!(connector = name, error = %e, "cannot revoke the deleted connector's token");
        }
        Ok(())
    }

    /// Runs a connector now, on this node, unless another node is running it.
    pub async fn run_connector(&self, who: &Principal, name: &str) -> Result<Vec<ConnectorRun>, QueryError> {
        self.connector_for(who, name).await?;
        let runtime = self.connector_runtime()?;
        let claimed =
            self.store.catalog.claim_connector(name, &runtime.config.node, Timestamp::now(), later(runtime.config.lease), false).await?;
        if !claimed {
            return Err(QueryError::Invalid(format!("connector {name} is running on another node; try again when it has finished")));
        }
        // The run is a task of its own: a caller that goes away (a browser closed, a proxy's
        // time limit) does not stop it halfway, and it ends, gives up its lease and is recorded.
        let engine = self.clone();
        let name = name.to_string();
        tokio::spawn(async move { engine.run_claimed(&name, "manual").await })
            .await
            .map_err(|e| QueryError::Invalid(format!("the connector's run failed: {e}")))?
    }

    /// Runs every connector that is due and that no other node holds; how many ran.
    pub async fn run_due_connectors(&self) -> Result<usize, QueryError> {
        let runtime = self.connector_runtime()?;
        let mut ran = 0;
        for name in self.store.catalog.due_connectors(Timestamp::now()).await? {
            let claimed = self
                .store
                .catalog
                .claim_connector(&name, &runtime.config.node, Timestamp::now(), later(runtime.config.lease), true)
                .await?;
            if claimed {
                let trigger = match self.store.catalog.connector(&name).await {
                    Ok(r) if r.failures > 0 => "retry",
                    _ => "schedule",
                };
                self.run_claimed(&name, trigger).await?;
                ran += 1;
            }
        }
        Ok(ran)
    }

    /// Runs a connector whose lease this node holds, renewing the lease while it runs, and
    /// gives the lease up with the next run's time.
    async fn run_claimed(&self, name: &str, trigger: &str) -> Result<Vec<ConnectorRun>, QueryError> {
        let runtime = self.connector_runtime()?;
        let node = runtime.config.node.clone();
        let lease = runtime.config.lease;
        let row = self.store.catalog.connector(name).await?;
        let mut run = ConnectorRun {
            id: uuid::Uuid::new_v4().to_string(),
            connector: name.to_string(),
            trigger: trigger.to_string(),
            node: node.clone(),
            started_at: Timestamp::now(),
            finished_at: None,
            status: "running".into(),
            version: None,
            rows: None,
            source_name: None,
            error: None,
            problems: Vec::new(),
        };
        self.store.catalog.start_connector_run(&run).await?;
        let renewing = {
            let catalog = self.store.catalog.clone();
            let (name, node) = (name.to_string(), node.clone());
            AbortOnDrop(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(lease / 3).await;
                    match catalog.renew_connector_lease(&name, &node, later(lease)).await {
                        Ok(true) => {}
                        Ok(false) => break,
                        Err(e) => tracing::warn!(connector = %name, error = %e, "cannot renew the connector's lease"),
                    }
                }
            }))
        };
        let mut runs = Vec::new();
        let outcome = self.run_connector_once(&row, &mut run, &mut runs).await;
        drop(renewing);
        let schedule = Schedule::parse(&row.schedule).ok();
        let on_schedule = || -> Timestamp {
            schedule
                .as_ref()
                .and_then(|s| s.next_after(chrono::Utc::now()).ok())
                .map(Timestamp::from)
                .unwrap_or_else(|| later(std::time::Duration::from_secs(3600)))
        };
        match outcome {
            Ok(state) => {
                let state = state.map(|s| serde_json::to_string(&s).unwrap_or_else(|_| "{}".into()));
                self.store.catalog.release_connector(name, &node, state.as_deref(), on_schedule(), 0).await?;
            }
            Err(error) => {
                let failures = row.failures + 1;
                // The error may quote the source's values: it is kept with the run, for the
                // dataset's stewards, not written to the server's log.
                tracing::warn!(connector = name, failures, "connector run failed");
                run.status = "failed".into();
                run.error = Some(error);
                run.finished_at = Some(Timestamp::now());
                self.store.catalog.finish_connector_run(&run).await?;
                runs.push(run.clone());
                self.store.catalog.release_connector(name, &node, None, later(backoff(runtime.config.retry, failures)), failures).await?;
            }
        }
        Ok(runs)
    }

    /// Reads the source and ingests what changed. `Ok` with the state to keep (none when there
    /// is nothing to keep), or the error that failed the run; `run` is finished here on
    /// success, by the caller on failure, and `runs` gets every run finished.
    async fn run_connector_once(
        &self,
        row: &ConnectorRow,
        run: &mut ConnectorRun,
        runs: &mut Vec<ConnectorRun>,
    ) -> Result<Option<SourceState>, String> {
        let runtime = self.connector_runtime().map_err(|e| e.to_string())?;
        let settings: Settings = serde_json::from_str(&row.settings).map_err(|e| format!("the connector's settings: {e}"))?;
        let secrets: Secrets = runtime.secrets.open_sealed(&row.name, &row.secrets).map_err(|e| e.to_string())?;
        let token = secrets.token.as_deref().ok_or("the connector has no token to write with")?;
        let who = self
            .policy
            .authenticate_token(token)
            .await
            .map_err(|e| format!("the connector can no longer write in {}'s name ({e}); make it again", row.owner))?;
        let dataset: DatasetRef = format!("{}/{}", row.org, row.dataset).parse().map_err(|e| format!("{e}"))?;
        let (department, exists) = self.connector_department(&dataset, &settings.ingest).await.map_err(|e| e.to_string())?;
        Policy::may(&who, Action::Write { org: &row.org, department: &department })
            .map_err(|e| format!("{} may no longer write {dataset}: {e}", row.owner))?;
        let (source, _) = Source::parse(&row.source).map_err(|e| e.to_string())?;
        let state: SourceState = serde_json::from_str(&row.state).unwrap_or_default();
        let fetched = tverr_connect::fetch(&runtime.config.fetch, &source, &settings.options, &secrets, &state, (&row.org, &department))
            .await
            .map_err(|e| e.to_string())?;
        let deliveries = match fetched {
            Fetched::Unchanged => {
                run.status = "unchanged".into();
                run.finished_at = Some(Timestamp::now());
                self.store.catalog.finish_connector_run(run).await.map_err(|e| e.to_string())?;
                runs.push(run.clone());
                return Ok(None);
            }
            Fetched::Deliveries(d) => d,
        };
        // The last version's source: a run that stopped after its commit and before its state
        // was kept does not write the same content again.
        let mut last_sha = if exists {
            self.store.catalog.versions(&dataset).await.ok().and_then(|v| v.last().and_then(|v| v.source_sha256.clone()))
        } else {
            None
        };
        let mut kept = None;
        let mut first_error = None;
        let mut exists = exists;
        for (i, delivery) in deliveries.iter().enumerate() {
            if i > 0 {
                *run = ConnectorRun { id: uuid::Uuid::new_v4().to_string(), started_at: Timestamp::now(), ..run.clone() };
                run.status = "running".into();
                run.version = None;
                run.rows = None;
                run.error = None;
                run.problems = Vec::new();
                self.store.catalog.start_connector_run(run).await.map_err(|e| e.to_string())?;
            }
            run.source_name = Some(delivery.name.clone());
            let same = delivery.unchanged
                || (delivery.state.watermark.is_none() && delivery.state.sha256.is_some() && delivery.state.sha256 == last_sha);
            let result = if let Some(reason) = &delivery.refused {
                Err(format!("{}: {reason}", delivery.name))
            } else if same {
                run.status = "unchanged".into();
                Ok(())
            } else {
                let mut ingest = settings.ingest.clone();
                if exists {
                    ingest.create = None;
                }
                let actor = who.name();
                match ingest.request(dataset.clone(), delivery.path.clone(), actor) {
                    Err(e) => Err(e.to_string()),
                    Ok(request) => match self.ingest(&who, Channel::Connector, request).await {
                        Ok(outcome) => {
                            exists = true;
                            last_sha = Some(outcome.report.sha256.clone());
                            run.status = "ingested".into();
                            run.version = Some(outcome.version);
                            run.rows = Some(outcome.report.rows as i64);
                            Ok(())
                        }
                        Err(e) => {
                            if let QueryError::Store(StoreError::Ingest(tverr_store::tverr_ingest::IngestError::Invalid(ps))) = &e {
                                run.problems = ps.clone();
                            }
                            Err(e.to_string())
                        }
                    },
                }
            };
            if let Err(e) = delivery.finish(result.as_ref().err().map(String::as_str)) {
                tracing::warn!(connector = %row.name, file = %delivery.name, error = %e, "cannot move a delivered file");
            }
            match result {
                Ok(()) => {
                    kept = Some(delivery.state.clone());
                    run.finished_at = Some(Timestamp::now());
                    self.store.catalog.finish_connector_run(run).await.map_err(|e| e.to_string())?;
                    runs.push(run.clone());
                }
                Err(e) if (source.kind == SourceKind::Folder && i + 1 < deliveries.len()) || source.kind == SourceKind::S3 => {
                    // A bad file goes to failed/; the files after it are still delivered. A bad
                    // object stays where it is and is passed over: the next run starts after it
                    // (a new upload of it is a new object).
                    if source.kind == SourceKind::S3 {
                        kept = Some(delivery.state.clone());
                    }
                    run.status = "failed".into();
                    run.error = Some(e.clone());
                    run.finished_at = Some(Timestamp::now());
                    self.store.catalog.finish_connector_run(run).await.map_err(|e| e.to_string())?;
                    runs.push(run.clone());
                    first_error.get_or_insert(e);
                }
                Err(e) => return Err(e),
            }
        }
        match first_error {
            Some(e) if kept.is_none() => Err(e),
            _ => Ok(kept),
        }
    }
}

/// A task stopped when its handle is dropped: a lease is renewed only while its run lives.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Checks a cron pattern (for forms that show the error before anything is sent).
pub fn check_schedule(text: &str) -> Result<(), QueryError> {
    Schedule::parse(text).map(|_| ()).map_err(connect_error)
}
