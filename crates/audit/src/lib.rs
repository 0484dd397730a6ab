//! The access log: append-only entries in the catalogue database, each chained to the one before
//! by SHA-256, and Ed25519-signed checkpoints of the chain's head written every N entries or T
//! seconds with a key kept outside the catalogue. [`Audit::verify`] walks the chain and checks
//! every checkpoint; given a checkpoint kept elsewhere it also detects a rollback of the whole
//! database to an earlier copy.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use tokio::sync::{Mutex, mpsc, oneshot};
use tverr_store::RawCatalog;

mod keys;
mod local;
mod verify;
mod vocabulary;

use keys::{load_or_make_key, load_or_make_subject_key, subject_id};
pub use verify::Verification;
use verify::append_witness;
pub use vocabulary::{Channel, RecordKind};

/// Index key prefix of a bulk read: an access that read more people of a dataset than it names
/// one by one is indexed as `bulk:org/dataset`.
pub const BULK_PREFIX: &str = "bulk:";

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What can go wrong with the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The log could not be written or read; reads that need it must be refused.
    #[error("the access log is unavailable: {0}")]
    Unavailable(String),
    /// A key file (the signing key, the subject key) could not be read or made, or is not the deployment's.
    #[error("the key file {path}: {message}")]
    Key {
        /// Its path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A checkpoint file is unreadable.
    #[error("checkpoint file: {0}")]
    Checkpoint(String),
}

impl From<sqlx::Error> for AuditError {
    fn from(e: sqlx::Error) -> Self {
        AuditError::Unavailable(e.to_string())
    }
}

/// Where the keys live and how often checkpoints are written.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Where the Ed25519 key lives (PKCS#8); made on first use.
    pub key_path: PathBuf,
    /// Where the key for data-subject identifiers (HMAC of the fødselsnummer) lives: 32 random
    /// bytes, made on first use. Kept outside the catalogue, so the log alone cannot be searched
    /// for a known number.
    pub subject_key_path: PathBuf,
    /// A checkpoint at least every this many entries.
    pub checkpoint_every: i64,
    /// A checkpoint at least this often while entries are written.
    pub checkpoint_interval: Duration,
    /// The witness: a file outside the catalogue that every signed checkpoint is appended to
    /// (one JSON line each) as it is written, and that [`Audit::verify`] checks the log against.
    /// Meant for a place the catalogue's credentials cannot rewrite (an append-only file, a
    /// write-once share); `None` publishes nowhere.
    pub witness_path: Option<PathBuf>,
}

/// A signed statement of the chain's head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Checkpoint {
    /// Sequence number of the last entry covered.
    pub seq: i64,
    /// That entry's hash.
    pub head_hash: String,
    /// When it was signed (RFC 3339).
    pub at: String,
    /// The signer's public key (hex).
    pub public_key: String,
    /// Ed25519 signature (hex) of [`Checkpoint::message`].
    pub signature: String,
}

impl Checkpoint {
    fn message(seq: i64, head: &str, at: &str) -> Vec<u8> {
        format!("tverr-audit-checkpoint\n{seq}\n{head}\n{at}").into_bytes()
    }

    /// Whether the signature is valid for `public_key` (hex).
    pub fn signed_by(&self, public_key: &str) -> bool {
        let (Ok(key), Ok(sig)) = (hex::decode(public_key), hex::decode(&self.signature)) else { return false };
        UnparsedPublicKey::new(&ED25519, key).verify(&Self::message(self.seq, &self.head_hash, &self.at), &sig).is_ok()
    }
}

/// One entry as stored.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Entry {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// When (RFC 3339).
    pub at: String,
    /// `access`, `completion`, `refusal`, …
    pub kind: String,
    /// The canonical JSON of the record.
    pub payload: String,
    /// The previous entry's hash.
    pub prev_hash: String,
    /// This entry's hash.
    pub hash: String,
}

fn entry_hash(prev: &str, seq: i64, at: &str, kind: &str, payload: &str) -> String {
    let mut h = Sha256::new();
    for part in [prev, &seq.to_string(), at, kind, payload] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex::encode(h.finalize())
}

/// One access that released data about a person.
#[derive(Debug, Clone)]
pub struct SubjectAccess {
    /// The intent record.
    pub entry: Entry,
    /// The datasets (`org/dataset`) whose rows about the person it released.
    pub datasets: Vec<String>,
    /// Datasets it read in bulk (more people than are named one by one): the person may have
    /// been among them.
    pub bulk: Vec<String>,
}

/// Which entries [`Audit::search`] returns; every set field must match.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Search {
    /// Only entries about this organisation (its users' reads, or reads of its datasets).
    pub org: Option<String>,
    /// Only entries of this user name.
    pub user: Option<String>,
    /// Only entries that name this dataset (`org/dataset`).
    pub dataset: Option<String>,
    /// From this time (RFC 3339 or a date), inclusive.
    pub from: Option<String>,
    /// Before this time (RFC 3339 or a date), exclusive.
    pub to: Option<String>,
    /// Only accesses that released data about the person with this fødselsnummer.
    pub subject: Option<String>,
}

impl Search {
    fn matches(&self, e: &Entry) -> bool {
        if self.from.as_ref().is_some_and(|f| e.at.as_str() < f.as_str()) || self.to.as_ref().is_some_and(|t| e.at.as_str() >= t.as_str()) {
            return false;
        }
        let record: serde_json::Value = serde_json::from_str(&e.payload).unwrap_or_default();
        let principal = &record["principal"];
        let mut datasets: Vec<String> = record["datasets"]
            .as_array()
            .map(|a| a.iter().filter_map(|d| d["dataset"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if let Some(d) = record["dataset"].as_str() {
            datasets.push(d.replacen('.', "/", 1));
        }
        if let Some(u) = &self.user
            && principal["username"].as_str() != Some(u.as_str())
        {
            return false;
        }
        if let Some(d) = &self.dataset
            && !datasets.iter().any(|x| x == d)
        {
            return false;
        }
        if let Some(o) = &self.org {
            let own = principal["org"].as_str() == Some(o.as_str());
            let theirs = datasets.iter().any(|d| d.split('/').next() == Some(o.as_str()));
            if !own && !theirs {
                return false;
            }
        }
        true
    }
}

struct State {
    last_checkpoint_seq: i64,
    last_checkpoint_at: Instant,
    /// The head this writer wrote last. Another writer may have moved it since: then the insert
    /// fails on the sequence number and the head is read again.
    head: Option<(i64, String)>,
    /// On a SQLite file, the writer's own connection, outside the pool and without automatic
    /// WAL checkpoints (see [`checkpointer`]); made again after an error.
    local: Option<local::LocalLog>,
}

/// One group of entries, chained onto a head: the rows to insert, the subjects to index, and the
/// checkpoint if one is due. It owns its values, so it can go to [`local::LocalLog`]'s thread.
struct Group {
    at: String,
    first: i64,
    last: i64,
    head_hash: String,
    rows: Vec<GroupRow>,
    subjects: Vec<(String, i64, i64)>,
    checkpoint: Option<Checkpoint>,
}

/// One entry's row: seq, kind, payload, prev_hash, hash.
struct GroupRow {
    seq: i64,
    kind: String,
    payload: String,
    prev_hash: String,
    hash: String,
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

impl Group {
    fn new(audit: &Audit, batch: &[Pending], (head_seq, head_hash): (i64, String), at: String, state: &State) -> Self {
        let first = head_seq + 1;
        let mut prev_hash = head_hash;
        let mut rows = Vec::with_capacity(batch.len());
        let mut subjects = Vec::new();
        for (i, p) in batch.iter().enumerate() {
            let seq = first + i as i64;
            let hash = entry_hash(&prev_hash, seq, &at, p.kind, &p.payload);
            subjects.extend(p.subjects.iter().map(|s| (s.clone(), p.access.unwrap_or(seq), seq)));
            let prev = std::mem::replace(&mut prev_hash, hash.clone());
            rows.push(GroupRow { seq, kind: p.kind.to_string(), payload: p.payload.clone(), prev_hash: prev, hash });
        }
        let last = first + batch.len() as i64 - 1;
        let due = last - state.last_checkpoint_seq >= audit.config.checkpoint_every
            || state.last_checkpoint_at.elapsed() >= audit.config.checkpoint_interval;
        let checkpoint = due.then(|| audit.sign(last, &prev_hash, &at));
        Self { at, first, last, head_hash: prev_hash, rows, subjects, checkpoint }
    }

    /// Binds one entry's row: seq, at, kind, payload, prev_hash, hash.
    fn bind_entry<'q>(&'q self, q: AnyQuery<'q>, r: &'q GroupRow) -> AnyQuery<'q> {
        q.bind(r.seq).bind(self.at.as_str()).bind(r.kind.as_str()).bind(r.payload.as_str()).bind(r.prev_hash.as_str()).bind(r.hash.as_str())
    }

    /// The statements, in order, each with its placeholders.
    fn push_sql(&self, sql: &mut String, anonymous: bool) {
        for chunk in self.rows.chunks(ROWS_PER_STATEMENT) {
            sql.push_str(INSERT_ENTRIES);
            push_placeholders(sql, chunk.len(), 6, anonymous);
            sql.push_str("; ");
        }
        for chunk in self.subjects.chunks(ROWS_PER_STATEMENT * 2) {
            sql.push_str(INSERT_SUBJECTS);
            push_placeholders(sql, chunk.len(), 3, anonymous);
            sql.push_str("; ");
        }
        if self.checkpoint.is_some() {
            sql.push_str(INSERT_CHECKPOINT);
            push_placeholders(sql, 1, 5, anonymous);
            sql.push_str(ONCE_PER_SEQ);
            sql.push_str("; ");
        }
    }

    /// The statements one by one, for a transaction (PostgreSQL takes one statement per query).
    fn statement_sqls(&self, anonymous: bool) -> Vec<String> {
        let mut all = String::new();
        self.push_sql(&mut all, anonymous);
        all.split("; ").filter(|s| !s.trim().is_empty()).map(str::to_string).collect()
    }

    /// Binds the values of statement `i` of [`Group::statement_sqls`].
    fn bind_statement<'q>(&'q self, i: usize, mut q: AnyQuery<'q>) -> AnyQuery<'q> {
        let row_chunks = self.rows.len().div_ceil(ROWS_PER_STATEMENT);
        let subject_chunks = self.subjects.len().div_ceil(ROWS_PER_STATEMENT * 2);
        if i < row_chunks {
            for r in self.rows.chunks(ROWS_PER_STATEMENT).nth(i).into_iter().flatten() {
                q = self.bind_entry(q, r);
            }
        } else if i < row_chunks + subject_chunks {
            for (subject, access, seq) in self.subjects.chunks(ROWS_PER_STATEMENT * 2).nth(i - row_chunks).into_iter().flatten() {
                q = q.bind(subject.as_str()).bind(*access).bind(*seq);
            }
        } else if let Some(c) = &self.checkpoint {
            q = bind_checkpoint(q, c);
        }
        q
    }

    /// After the commit: the new head and checkpoint schedule; the first sequence number.
    fn finished(self, state: &mut State) -> i64 {
        state.head = Some((self.last, self.head_hash));
        if self.checkpoint.is_some() {
            state.last_checkpoint_seq = self.last;
            state.last_checkpoint_at = Instant::now();
        }
        self.first
    }
}

/// Binds a checkpoint's row: seq, head_hash, at, public_key, signature.
fn bind_checkpoint<'q>(q: AnyQuery<'q>, c: &'q Checkpoint) -> AnyQuery<'q> {
    q.bind(c.seq).bind(c.head_hash.as_str()).bind(c.at.as_str()).bind(c.public_key.as_str()).bind(c.signature.as_str())
}

tokio::task_local! {
    /// The id of the HTTP request being answered, which its entries name.
    static REQUEST_ID: String;
}

/// Runs `f` as the answer to the HTTP request `id`: every entry it makes names the request
/// (`request_id`), as the server's own log lines do, so an entry and the node's log of the same
/// request can be put side by side.
pub async fn with_request_id<F: std::future::Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}

/// The id of the HTTP request being answered, if any.
pub fn request_id() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// An entry ready for the writer: its canonical payload, the data subjects it names (each once).
fn pending(
    kind: RecordKind,
    record: &serde_json::Value,
    mut subjects: Vec<String>,
    access: Option<i64>,
    reply: Option<oneshot::Sender<Result<i64, String>>>,
) -> Result<Pending, AuditError> {
    let with_id;
    let record = match (REQUEST_ID.try_with(Clone::clone), record) {
        (Ok(id), serde_json::Value::Object(fields)) if !fields.contains_key("request_id") => {
            let mut fields = fields.clone();
            fields.insert("request_id".into(), serde_json::Value::String(id));
            with_id = serde_json::Value::Object(fields);
            &with_id
        }
        _ => record,
    };
    // serde_json keeps object keys sorted (no preserve_order), so this is canonical.
    let payload = serde_json::to_string(record).map_err(|e| AuditError::Unavailable(e.to_string()))?;
    subjects.sort_unstable();
    subjects.dedup();
    Ok(Pending { kind: kind.as_str(), payload, subjects, access, reply })
}

/// An entry waiting for the next group commit.
struct Pending {
    kind: &'static str,
    payload: String,
    /// The data subjects the entry names, and the access they belong to (`None`: this entry).
    subjects: Vec<String>,
    access: Option<i64>,
    /// Whoever waits for the entry to be durable.
    reply: Option<oneshot::Sender<Result<i64, String>>>,
}

/// The inserts of the log's three tables, up to their values; every writer path appends its
/// own placeholders.
const INSERT_ENTRIES: &str = "INSERT INTO audit_log (seq, at, kind, payload, prev_hash, hash) VALUES ";
const INSERT_SUBJECTS: &str = "INSERT INTO audit_subjects (subject, access, seq) VALUES ";
const INSERT_CHECKPOINT: &str = "INSERT INTO audit_checkpoints (seq, head_hash, at, public_key, signature) VALUES ";
/// A checkpoint is stored once per sequence number.
const ONCE_PER_SEQ: &str = " ON CONFLICT (seq) DO NOTHING";

/// At most this many entries go into one multi-row INSERT.
const ROWS_PER_STATEMENT: usize = 200;

/// At most this many entries go into one commit.
const MAX_GROUP: usize = 4096;

/// How long records that gate nothing wait for an entry that does, to share its commit.
const LINGER: Duration = Duration::from_millis(20);

/// What the writer task is asked to do.
enum Message {
    Entry(Pending),
    /// Reply once everything sent before is written.
    Flush(oneshot::Sender<()>),
}

/// The access log over a catalogue.
///
/// Appends are group-committed: one writer task takes every entry waiting and writes them in
/// one transaction, so many concurrent requests share one durable commit. Records that gate
/// nothing wait up to [`LINGER`] for one that does, to share its commit.
#[derive(Clone)]
pub struct Audit {
    catalog: RawCatalog,
    key: Arc<Ed25519KeyPair>,
    subject_key: Arc<Vec<u8>>,
    config: AuditConfig,
    /// The writer task's inbox, made with the task on first use.
    inbox: Arc<std::sync::OnceLock<mpsc::UnboundedSender<Message>>>,
    /// The checkpoint schedule (the writer task's, and [`Audit::checkpoint`]'s).
    state: Arc<Mutex<State>>,
    enabled: bool,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").field("key_path", &self.config.key_path).finish()
    }
}

impl Audit {
    /// The log over a catalogue, with its key (made on first use).
    pub fn open(catalog: &RawCatalog, config: AuditConfig) -> Result<Self, AuditError> {
        let key = load_or_make_key(&config.key_path)?;
        let subject_key = load_or_make_subject_key(&config.subject_key_path)?;
        Ok(Self {
            catalog: catalog.clone(),
            key: Arc::new(key),
            subject_key: Arc::new(subject_key),
            config,
            inbox: Arc::default(),
            state: Arc::new(Mutex::new(State { last_checkpoint_seq: -1, last_checkpoint_at: Instant::now(), head: None, local: None })),
            enabled: true,
        })
    }

    /// A log that records nothing, for measuring what auditing costs. Exists only in builds with
    /// the `unaudited` feature, which only the benchmark binary turns on.
    #[cfg(feature = "unaudited")]
    pub fn unaudited_for_benchmarks(catalog: &RawCatalog, config: AuditConfig) -> Result<Self, AuditError> {
        Ok(Self { enabled: false, ..Self::open(catalog, config)? })
    }

    /// Checks that this process has the deployment's keys: the first process to open the
    /// catalogue records its public key and a fingerprint of its subject key; every later one
    /// (another node, the CLI) must have the same, or it would sign checkpoints no verifier
    /// accepts and name citizens by identifiers no one else computes.
    pub async fn check_keys(&self) -> Result<(), AuditError> {
        let public = self.public_key();
        let fingerprint = subject_id(&self.subject_key, "tverr-deployment-key-check");
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        sqlx::query(
            "INSERT INTO deployment_keys (id, signing_public_key, subject_key_fingerprint, recorded_at) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&public)
        .bind(&fingerprint)
        .bind(now)
        .execute(self.catalog.pool())
        .await?;
        let row = sqlx::query("SELECT signing_public_key, subject_key_fingerprint FROM deployment_keys WHERE id = 1")
            .fetch_one(self.catalog.pool())
            .await?;
        let (known_public, known_fingerprint): (String, String) = (row.try_get(0)?, row.try_get(1)?);
        if known_public != public {
            return Err(AuditError::Key {
                path: self.config.key_path.clone(),
                message: format!(
                    "this is not the key the catalogue's access log is signed with (public key {}…, this one {}…); \
                     copy audit-key.pk8 and subject-key from a node of this deployment",
                    &known_public[..16.min(known_public.len())],
                    &public[..16]
                ),
            });
        }
        if known_fingerprint != fingerprint {
            return Err(AuditError::Key {
                path: self.config.subject_key_path.clone(),
                message: "this is not the key the deployment names data subjects with; copy subject-key from a node of this deployment"
                    .into(),
            });
        }
        Ok(())
    }

    /// Whether entries are written (always, except in the benchmark-only unaudited build).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The identifier of a data subject in the log: HMAC-SHA-256 of the fødselsnummer (or
    /// D-number) under the subject key, 128 bits as hex. The number itself is never stored.
    pub fn subject_id(&self, pid: &str) -> String {
        subject_id(&self.subject_key, pid.trim())
    }

    /// The subject key, for taps that compute [`Audit::subject_id`] on many rows.
    pub fn subject_key(&self) -> Arc<Vec<u8>> {
        self.subject_key.clone()
    }

    /// The public key (hex) checkpoints are signed with.
    pub fn public_key(&self) -> String {
        hex::encode(self.key.public_key().as_ref())
    }

    /// Appends one record durably and returns its sequence number. When this returns an error,
    /// nothing may be released.
    pub async fn append(&self, kind: RecordKind, record: &serde_json::Value) -> Result<i64, AuditError> {
        self.append_about(kind, record, Vec::new(), None).await
    }

    /// Appends a record that names data subjects (identifiers from [`Audit::subject_id`]),
    /// released in `access` (`None`: this entry is the access), and indexes them for
    /// [`Audit::accesses_of`].
    pub async fn append_about(
        &self,
        kind: RecordKind,
        record: &serde_json::Value,
        subjects: Vec<String>,
        access: Option<i64>,
    ) -> Result<i64, AuditError> {
        if !self.enabled {
            return Ok(0);
        }
        let (tx, rx) = oneshot::channel();
        self.send(Message::Entry(pending(kind, record, subjects, access, Some(tx))?))?;
        rx.await.unwrap_or_else(|_| Err("the log writer stopped".into())).map_err(AuditError::Unavailable)
    }

    /// Queues a record that gates nothing (a completion, a token use): it is written with the
    /// next group commit, at most [`LINGER`] later. [`Audit::flush`] waits for it.
    pub fn record(&self, kind: RecordKind, record: &serde_json::Value) {
        self.record_about(kind, record, Vec::new(), None);
    }

    /// [`Audit::record`] for a record that names data subjects, as [`Audit::append_about`].
    pub fn record_about(&self, kind: RecordKind, record: &serde_json::Value, subjects: Vec<String>, access: Option<i64>) {
        if !self.enabled {
            return;
        }
        let sent = pending(kind, record, subjects, access, None).and_then(|p| self.send(Message::Entry(p)));
        if let Err(e) = sent {
            tracing_error(&format!("a {kind} record was lost: {e}"));
        }
    }

    /// Waits until every record queued before is written.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.send(Message::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Sends to the writer task, starting it on first use (in the current Tokio runtime).
    fn send(&self, message: Message) -> Result<(), AuditError> {
        let inbox = match self.inbox.get() {
            Some(inbox) => inbox,
            None => {
                let handle = tokio::runtime::Handle::try_current()
                    .map_err(|_| AuditError::Unavailable("the access log needs a Tokio runtime".into()))?;
                self.inbox.get_or_init(|| {
                    let (tx, rx) = mpsc::unbounded_channel();
                    // The writer's own handle holds no sender: once every `Audit` is gone, its
                    // inbox closes and it stops.
                    handle.spawn(Self { inbox: Arc::default(), ..self.clone() }.writer(rx));
                    tx
                })
            }
        };
        inbox.send(message).map_err(|_| AuditError::Unavailable("the log writer stopped".into()))
    }

    /// The writer task: takes what is waiting, lingers while only records that gate nothing
    /// wait, writes the group in one transaction and answers.
    async fn writer(self, mut rx: mpsc::UnboundedReceiver<Message>) {
        let wal = self.catalog.is_sqlite().then(|| tokio::spawn(checkpointer(self.catalog.clone())));
        let mut batch: Vec<Pending> = Vec::new();
        let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
        let take = |m: Message, batch: &mut Vec<Pending>, flushes: &mut Vec<oneshot::Sender<()>>| match m {
            Message::Entry(p) => batch.push(p),
            Message::Flush(f) => flushes.push(f),
        };
        while let Some(first) = rx.recv().await {
            take(first, &mut batch, &mut flushes);
            loop {
                while batch.len() < MAX_GROUP {
                    match rx.try_recv() {
                        Ok(m) => take(m, &mut batch, &mut flushes),
                        Err(_) => break,
                    }
                }
                let urgent = batch.iter().any(|p| p.reply.is_some()) || !flushes.is_empty() || batch.len() >= MAX_GROUP;
                if urgent {
                    break;
                }
                match tokio::time::timeout(LINGER, rx.recv()).await {
                    Ok(Some(m)) => take(m, &mut batch, &mut flushes),
                    Ok(None) | Err(_) => break,
                }
            }
            if !batch.is_empty() {
                self.write(std::mem::take(&mut batch)).await;
            }
            for f in flushes.drain(..) {
                let _ = f.send(());
            }
        }
        if let Some(wal) = wal {
            wal.abort();
        }
    }

    /// Writes one group (retrying when another node took the sequence numbers first) and
    /// answers everyone waiting for it.
    async fn write(&self, batch: Vec<Pending>) {
        let mut state = self.state.lock().await;
        let started = Instant::now();
        // Another server node may take the same sequence numbers first: then the insert fails on
        // the primary key and the group is chained again onto the new head.
        let mut attempts = 0;
        let result = loop {
            match self.write_group(&batch, &mut state).await {
                Err(e) if e.retryable() && attempts < 20 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(2 * attempts)).await;
                }
                other => break other,
            }
        };
        drop(state);
        match result {
            Ok(first) => {
                tverr_core::metrics::log_commit(batch.len(), started.elapsed());
                for (i, p) in batch.into_iter().enumerate() {
                    if let Some(reply) = p.reply {
                        let _ = reply.send(Ok(first + i as i64));
                    }
                }
            }
            Err(e) => {
                let message = e.to_string();
                for p in batch {
                    match p.reply {
                        Some(reply) => {
                            let _ = reply.send(Err(message.clone()));
                        }
                        None => tracing_error(&format!("a {} record was lost: {message}", p.kind)),
                    }
                }
            }
        }
    }

    /// Writes a group in one transaction; returns the first entry's sequence number.
    async fn write_group(&self, batch: &[Pending], state: &mut State) -> Result<i64, WriteError> {
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        // On a SQLite file, with the head and the checkpoint schedule known, the group is written
        // on the writer's own connection on a blocking thread, in one go (see `local`).
        if let Some(path) = self.catalog.sqlite_file().filter(|_| state.last_checkpoint_seq >= 0)
            && let Some(known) = state.head.take()
        {
            let group = Group::new(self, batch, known, at, state);
            let (kept, path) = (state.local.take(), path.to_path_buf());
            let (local, group) = tokio::task::spawn_blocking(move || {
                let mut local = match kept {
                    Some(local) => local,
                    None => local::LocalLog::open(&path)?,
                };
                local.write(&group)?;
                Ok::<_, rusqlite::Error>((local, group))
            })
            .await
            .map_err(|e| WriteError::Stopped(e.to_string()))??;
            // After an error the connection is dropped (its transaction rolled back): the
            // next group opens a new one and reads the head again.
            state.local = Some(local);
            self.publish(group.checkpoint.as_ref());
            return Ok(group.finished(state));
        }
        let mut tx = self.catalog.begin_write().await?;
        let known = match state.head.take() {
            Some(known) => known,
            None => head(&mut tx).await?,
        };
        if state.last_checkpoint_seq < 0 {
            let r = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM audit_checkpoints").fetch_one(&mut *tx).await?;
            state.last_checkpoint_seq = r.try_get("seq")?;
        }
        let group = Group::new(self, batch, known, at, state);
        let sqls = group.statement_sqls(self.catalog.is_sqlite());
        for (i, sql) in sqls.iter().enumerate() {
            group.bind_statement(i, sqlx::query(sql)).execute(&mut *tx).await?;
        }
        tx.commit().await?;
        self.publish(group.checkpoint.as_ref());
        Ok(group.finished(state))
    }

    /// Appends a committed checkpoint to the witness. A witness that cannot be written loses
    /// nothing of the log; `verify` then finds the witness behind, and the error is logged.
    fn publish(&self, checkpoint: Option<&Checkpoint>) {
        let (Some(c), Some(path)) = (checkpoint, &self.config.witness_path) else { return };
        if let Err(e) = append_witness(path, c) {
            tracing_error(&format!("the checkpoint of entry {} could not be written to the witness {}: {e}", c.seq, path.display()));
        }
    }

    fn sign(&self, seq: i64, head: &str, at: &str) -> Checkpoint {
        let sig = self.key.sign(&Checkpoint::message(seq, head, at));
        Checkpoint {
            seq,
            head_hash: head.to_string(),
            at: at.to_string(),
            public_key: self.public_key(),
            signature: hex::encode(sig.as_ref()),
        }
    }

    /// Signs the current head now (also stored), for keeping elsewhere.
    pub async fn checkpoint(&self) -> Result<Checkpoint, AuditError> {
        self.flush().await;
        let _state = self.state.lock().await;
        let mut conn = self.catalog.pool().acquire().await?;
        let (seq, head) = head(&mut conn).await?;
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let c = self.sign(seq, &head, &at);
        if seq > 0 {
            insert_checkpoint(self.catalog.pool(), &c).await?;
            self.publish(Some(&c));
        }
        Ok(c)
    }

    /// The sequence number of the log's last entry (`None` for an empty log): a read that shows
    /// the log answers.
    pub async fn last_seq(&self) -> Result<Option<i64>, AuditError> {
        Ok(sqlx::query_scalar("SELECT max(seq) FROM audit_log").fetch_one(self.catalog.pool()).await?)
    }

    /// Entries, oldest first.
    pub async fn entries(&self) -> Result<Vec<Entry>, AuditError> {
        Ok(sqlx::query_as("SELECT seq, at, kind, payload, prev_hash, hash FROM audit_log ORDER BY seq")
            .fetch_all(self.catalog.pool())
            .await?)
    }

    /// Retention: removes the entries up to the last checkpoint signed before `before` (RFC 3339
    /// or a date), keeping that checkpoint as the anchor the rest of the chain is verified from,
    /// and records the removal as an entry. Returns the number of entries removed.
    pub async fn prune(&self, before: &str) -> Result<i64, AuditError> {
        let anchor = sqlx::query("SELECT seq FROM audit_checkpoints WHERE at < $1 ORDER BY seq DESC LIMIT 1")
            .bind(before)
            .fetch_optional(self.catalog.pool())
            .await?;
        let Some(anchor) = anchor else { return Ok(0) };
        let anchor: i64 = anchor.try_get("seq")?;
        let removing: i64 =
            sqlx::query_scalar("SELECT count(*) FROM audit_log WHERE seq <= $1").bind(anchor).fetch_one(self.catalog.pool()).await?;
        // The record first, durable, as for every other change: a log that cannot be written
        // keeps every entry (and a removal that then fails leaves a record of nothing removed,
        // which verification accepts).
        self.append(RecordKind::Retention, &serde_json::json!({"removed_through": anchor, "before": before, "entries": removing})).await?;
        let mut tx = self.catalog.begin_write().await?;
        let removed = sqlx::query("DELETE FROM audit_log WHERE seq <= $1").bind(anchor).execute(&mut *tx).await?.rows_affected();
        sqlx::query("DELETE FROM audit_subjects WHERE seq <= $1").bind(anchor).execute(&mut *tx).await?;
        sqlx::query("DELETE FROM audit_checkpoints WHERE seq < $1").bind(anchor).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(removed as i64)
    }

    /// Entries that match a search, oldest first.
    pub async fn search(&self, search: &Search) -> Result<Vec<Entry>, AuditError> {
        let about = match &search.subject {
            Some(pid) => Some(self.accesses_of(pid).await?.into_iter().map(|a| a.entry.seq).collect::<std::collections::HashSet<_>>()),
            None => None,
        };
        Ok(self
            .entries()
            .await?
            .into_iter()
            .filter(|e| search.matches(e) && about.as_ref().is_none_or(|seqs| seqs.contains(&e.seq)))
            .collect())
    }

    /// The accesses that released data about the person with this fødselsnummer, oldest first,
    /// each with the datasets that named them; found through the subject index (which
    /// [`Audit::verify`] checks against the chain).
    pub async fn accesses_of(&self, pid: &str) -> Result<Vec<SubjectAccess>, AuditError> {
        let subject = self.subject_id(pid);
        let like = format!("{BULK_PREFIX}%");
        let entries: Vec<Entry> = sqlx::query_as(
            "SELECT seq, at, kind, payload, prev_hash, hash FROM audit_log WHERE seq IN \
             (SELECT access FROM audit_subjects WHERE subject = $1 OR subject LIKE $2 \
              UNION SELECT seq FROM audit_subjects WHERE subject = $1 OR subject LIKE $2) \
             ORDER BY seq",
        )
        .bind(&subject)
        .bind(&like)
        .fetch_all(self.catalog.pool())
        .await?;
        let mut out: Vec<SubjectAccess> = Vec::new();
        for e in entries {
            let record: serde_json::Value = serde_json::from_str(&e.payload).unwrap_or_default();
            let naming: Vec<String> = record["subjects"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter(|(_, ids)| ids.as_array().is_some_and(|a| a.iter().any(|v| v.as_str() == Some(subject.as_str()))))
                        .map(|(d, _)| d.clone())
                        .collect()
                })
                .unwrap_or_default();
            let bulk: Vec<String> = record["bulk"].as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
            let target = if e.kind == RecordKind::Access.as_str() {
                out.push(SubjectAccess { entry: e, datasets: Vec::new(), bulk: Vec::new() });
                out.last_mut()
            } else {
                out.iter_mut().find(|a| Some(a.entry.seq) == record["access"].as_i64())
            };
            if let Some(a) = target {
                for d in naming {
                    if !a.datasets.contains(&d) {
                        a.datasets.push(d);
                    }
                }
                for d in bulk {
                    if !a.bulk.contains(&d) && !a.datasets.contains(&d) {
                        a.bulk.push(d);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// How often the WAL is checkpointed on SQLite while the log is in use.
const CHECKPOINT_WAL_EVERY: Duration = Duration::from_millis(500);

/// On SQLite, copies the write-ahead log into the database file every
/// [`CHECKPOINT_WAL_EVERY`] without blocking anyone. The writer's connection does not checkpoint
/// itself: SQLite's automatic checkpoint runs inside the commit that crosses 1,000 pages, and its
/// copy and fsync would then sit in that group's latency (measured: a third of the append rate).
async fn checkpointer(catalog: RawCatalog) {
    let mut tick = tokio::time::interval(CHECKPOINT_WAL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = catalog.checkpoint_wal().await {
            tracing_error(&format!("checkpointing the catalogue's WAL failed: {e}"));
        }
    }
}

/// The chain's head: the last entry, or after retention removed every entry, the anchor
/// checkpoint; `(0, GENESIS)` for an empty log.
async fn head(conn: &mut sqlx::AnyConnection) -> Result<(i64, String), sqlx::Error> {
    if let Some(r) = sqlx::query("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *conn).await? {
        return Ok((r.try_get("seq")?, r.try_get("hash")?));
    }
    match sqlx::query("SELECT seq, head_hash FROM audit_checkpoints ORDER BY seq DESC LIMIT 1").fetch_optional(&mut *conn).await? {
        Some(r) => Ok((r.try_get("seq")?, r.try_get("head_hash")?)),
        None => Ok((0, GENESIS.to_string())),
    }
}

/// Why a group was not written.
#[derive(Debug, thiserror::Error)]
enum WriteError {
    #[error(transparent)]
    Catalog(#[from] sqlx::Error),
    #[error(transparent)]
    Local(#[from] rusqlite::Error),
    #[error("the log's writing thread stopped: {0}")]
    Stopped(String),
}

impl WriteError {
    /// A race with another writer: the same sequence number taken (unique violation), or
    /// SQLite's busy and stale-snapshot errors, or PostgreSQL's serialization failure.
    fn retryable(&self) -> bool {
        match self {
            Self::Catalog(sqlx::Error::Database(d)) => {
                d.is_unique_violation() || matches!(d.code().as_deref(), Some("5" | "517" | "40001"))
            }
            Self::Local(e) => local::retryable(e),
            _ => false,
        }
    }
}

/// Stores a checkpoint (once per sequence number).
async fn insert_checkpoint<'e, E: sqlx::Executor<'e, Database = sqlx::Any>>(executor: E, c: &Checkpoint) -> Result<(), sqlx::Error> {
    let sql = format!("{INSERT_CHECKPOINT}($1, $2, $3, $4, $5){ONCE_PER_SEQ}");
    sqlx::query(&sql).bind(c.seq).bind(&c.head_hash).bind(&c.at).bind(&c.public_key).bind(&c.signature).execute(executor).await.map(|_| ())
}

/// `($1, $2, …), (…)` for `rows` rows of `width` values; on SQLite `(?, ?, …)`, because SQLite
/// looks a numbered parameter up by a linear scan, which makes binding a long statement
/// quadratic.
fn push_placeholders(sql: &mut String, rows: usize, width: usize, anonymous: bool) {
    use std::fmt::Write;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..width {
            sql.push_str(if c == 0 { "" } else { ", " });
            if anonymous {
                sql.push('?');
            } else {
                let _ = write!(sql, "${}", r * width + c + 1);
            }
        }
        sql.push(')');
    }
}

fn tracing_error(message: &str) {
    tracing::error!("access log: {message}");
}

#[cfg(test)]
mod tests;
