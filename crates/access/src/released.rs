//! A result on its way out ([`Released`]) and its access-log side ([`Tracker`]): the intent record
//! before the first batch leaves, the people each later batch adds, and the completion when the
//! stream ends, fails or is dropped. A log that cannot be written fails the stream instead.

use super::*;

/// A result on its way out: the rows, and the grants they were read under.
///
/// For non-open data the stream is audited: before it yields its first batch it writes the
/// intent record (with the data subjects the first batch drew on), before every later batch the
/// data subjects that batch adds, and when it ends, fails or is dropped the completion record
/// (rows released, status, duration). If the log cannot be written the stream fails instead of
/// yielding the batch.
pub struct Released {
    /// The rows.
    pub stream: SendableRecordBatchStream,
    /// The grants used, one per dataset.
    pub grants: Vec<Grant>,
    /// The version each dataset was read at, in the order of `grants`.
    pub versions: Vec<Option<i64>>,
}

impl Released {
    /// Computes the first batch now, so that planning, execution and access-log failures
    /// surface before a response starts; the stream yields that batch again first.
    pub async fn started(self) -> Result<Self, QueryError> {
        use futures::StreamExt;
        let Released { mut stream, grants, versions } = self;
        let schema = stream.schema();
        let first = stream.next().await.transpose()?;
        let rest = futures::stream::iter(first.map(Ok)).chain(stream);
        let stream = Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, rest));
        Ok(Released { stream, grants, versions })
    }

    /// Ends the stream with [`QueryError::TooManyRows`] once it would release more than
    /// `max_rows` rows (the cap for callers who are not signed in).
    pub fn capped(self, max_rows: u64) -> Self {
        use datafusion::error::DataFusionError;
        use futures::StreamExt;
        let Released { stream, grants, versions } = self;
        let schema = stream.schema();
        let stream = futures::stream::unfold((stream, 0u64, false), move |(mut inner, rows, stopped)| async move {
            if stopped {
                return None;
            }
            match inner.next().await {
                Some(Ok(batch)) if rows + batch.num_rows() as u64 > max_rows => {
                    Some((Err(DataFusionError::External(Box::new(RowCap(max_rows)))), (inner, rows, true)))
                }
                Some(Ok(batch)) => {
                    let rows = rows + batch.num_rows() as u64;
                    Some((Ok(batch), (inner, rows, false)))
                }
                Some(Err(e)) => Some((Err(e), (inner, rows, true))),
                None => None,
            }
        });
        let stream = Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream));
        Released { stream, grants, versions }
    }

    /// Stops the stream with [`QueryError::Timeout`] once `limit` has passed, and keeps `guard`
    /// (a concurrency permit, say) until the stream is dropped.
    pub fn bounded(self, limit: std::time::Duration, guard: impl Send + 'static) -> Self {
        use datafusion::error::DataFusionError;
        use futures::StreamExt;
        let Released { stream, grants, versions } = self;
        let schema = stream.schema();
        let deadline = tokio::time::Instant::now() + limit;
        let seconds = limit.as_secs().max(1);
        let stream = futures::stream::unfold((stream, guard, false), move |(mut inner, guard, stopped)| async move {
            if stopped {
                return None;
            }
            match tokio::time::timeout_at(deadline, inner.next()).await {
                Ok(Some(item)) => Some((item, (inner, guard, false))),
                Ok(None) => None,
                Err(_) => Some((Err(DataFusionError::External(Box::new(TimedOut(seconds)))), (inner, guard, true))),
            }
        });
        let stream = Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream));
        Released { stream, grants, versions }
    }
}

impl std::fmt::Debug for Released {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Released").field("grants", &self.grants.len()).finish()
    }
}

/// At most this many data subjects are named in one log entry; more go into further entries.
pub(crate) const SUBJECTS_PER_ENTRY: usize = 10_000;

/// The access-log side of one release.
pub(crate) struct Tracker {
    pub(crate) audit: Audit,
    /// The intent record, until it is written.
    pub(crate) intent: Option<serde_json::Value>,
    /// Its sequence number, once written.
    pub(crate) access: Option<i64>,
    pub(crate) sink: secure::SubjectSink,
    /// Datasets already recorded as read in bulk.
    pub(crate) bulk_recorded: Vec<String>,
    pub(crate) rows: u64,
    pub(crate) started: std::time::Instant,
    pub(crate) finished: bool,
    /// The HTTP request it answers: the completion, written when the response's stream ends
    /// (outside the request's task), names it as the intent does.
    pub(crate) request_id: Option<String>,
}

/// The entries that name what a take saw: `(subjects by dataset, new bulk reads, index keys)`.
pub(crate) type Naming = Vec<(serde_json::Value, serde_json::Value, Vec<String>)>;

impl Tracker {
    /// What the taps saw since the last call, as entries: named people in chunks, and bulk reads
    /// not yet recorded with the first chunk.
    pub(crate) fn naming(&mut self) -> Naming {
        let taken = self.sink.take();
        let mut chunks: Naming = subject_chunks(taken.named)
            .into_iter()
            .map(|(named, ids)| (named, serde_json::Value::Object(Default::default()), ids))
            .collect();
        let new_bulk: BTreeMap<String, u64> = taken.bulk.into_iter().filter(|(d, _)| !self.bulk_recorded.contains(d)).collect();
        if !new_bulk.is_empty() {
            if chunks.is_empty() {
                chunks.push((serde_json::Value::Object(Default::default()), serde_json::Value::Null, Vec::new()));
            }
            let first = &mut chunks[0];
            first.1 = serde_json::to_value(&new_bulk).unwrap_or_default();
            first.2.extend(new_bulk.keys().map(|d| format!("{BULK_PREFIX}{d}")));
            self.bulk_recorded.extend(new_bulk.into_keys());
        }
        chunks
    }

    /// Writes what must be in the log before the next batch leaves: the intent (first time) and
    /// the data subjects seen so far.
    pub(crate) async fn before_release(&mut self) -> Result<(), AuditError> {
        self.write_before_release(false).await
    }

    /// For a result known whole before anything leaves (a look-up): the intent with its outcome
    /// (rows, `ok`, duration) as one durable record, and no completion record after it.
    pub(crate) async fn before_release_of_whole(&mut self) -> Result<(), AuditError> {
        self.write_before_release(true).await?;
        self.finished = true;
        Ok(())
    }

    pub(crate) async fn write_before_release(&mut self, whole: bool) -> Result<(), AuditError> {
        let mut chunks = self.naming().into_iter();
        if let Some(mut intent) = self.intent.take() {
            let (named, bulk, ids) = chunks.next().unwrap_or_default();
            intent["subjects"] = named;
            intent["bulk"] = bulk;
            if whole {
                let millis = self.started.elapsed().as_millis() as u64;
                // The sink's named people were taken above; its bulk counts are kept.
                let bulk_rows = self.sink.take().bulk;
                intent["outcome"] = serde_json::json!({"rows": self.rows, "status": "ok", "millis": millis, "bulk_rows": bulk_rows});
            }
            self.access = Some(self.audit.append_about(RecordKind::Access, &intent, ids, None).await?);
        }
        for (named, bulk, ids) in chunks {
            let record = serde_json::json!({"access": self.access, "subjects": named, "bulk": bulk});
            self.audit.append_about(RecordKind::Subjects, &record, ids, self.access).await?;
        }
        Ok(())
    }

    /// Queues the completion (and, if nothing was released, the intent with it); nothing waits
    /// on it.
    pub(crate) fn finish(&mut self, status: &str) {
        for (kind, record, ids, access) in self.closing(status) {
            self.audit.record_about(kind, &record, ids, access);
        }
    }

    /// Writes the completion durably before the caller learns how the read ended: a failure
    /// is itself an answer (an error raised for one hidden value), so it is released only
    /// once it is in the log.
    pub(crate) async fn finish_durably(&mut self, status: &str) -> Result<(), AuditError> {
        for (kind, record, ids, access) in self.closing(status) {
            self.audit.append_about(kind, &record, ids, access).await?;
        }
        Ok(())
    }

    /// The records that close this release: `(kind, record, index keys, access)`.
    pub(crate) fn closing(&mut self, status: &str) -> Vec<(RecordKind, serde_json::Value, Vec<String>, Option<i64>)> {
        if self.finished {
            return Vec::new();
        }
        self.finished = true;
        let millis = self.started.elapsed().as_millis() as u64;
        tverr_core::metrics::query(status, self.started.elapsed());
        match self.intent.take() {
            // Nothing was released: one record says what was asked, whose rows it read and how
            // it ended.
            Some(mut intent) => {
                let taken = self.sink.take();
                let mut ids: Vec<String> = taken.named.values().flatten().cloned().collect();
                ids.extend(taken.bulk.keys().map(|d| format!("{BULK_PREFIX}{d}")));
                intent["subjects"] = serde_json::to_value(&taken.named).unwrap_or_default();
                intent["bulk"] = serde_json::to_value(&taken.bulk).unwrap_or_default();
                intent["outcome"] = serde_json::json!({"rows": 0, "status": status, "millis": millis, "bulk_rows": taken.bulk});
                vec![(RecordKind::Access, intent, ids, None)]
            }
            None => {
                let mut out: Vec<_> = self
                    .naming()
                    .into_iter()
                    .map(|(named, bulk, ids)| {
                        (
                            RecordKind::Subjects,
                            serde_json::json!({"access": self.access, "subjects": named, "bulk": bulk}),
                            ids,
                            self.access,
                        )
                    })
                    .collect();
                let mut record = serde_json::json!({
                    "access": self.access, "rows": self.rows, "status": status, "millis": millis,
                    "bulk_rows": self.sink.take().bulk,
                });
                if let Some(id) = &self.request_id {
                    record["request_id"] = serde_json::Value::String(id.clone());
                }
                out.push((RecordKind::Completion, record, Vec::new(), None));
                out
            }
        }
    }
}

impl Drop for Tracker {
    /// A client that goes away mid-stream still leaves a completion record.
    fn drop(&mut self) {
        self.finish("cancelled");
    }
}

/// Splits the subjects seen into entries of at most [`SUBJECTS_PER_ENTRY`]: each entry's
/// `{dataset: [ids]}` and its flat id list for the index.
pub(crate) fn subject_chunks(seen: BTreeMap<String, Vec<String>>) -> Vec<(serde_json::Value, Vec<String>)> {
    let mut out: Vec<(serde_json::Map<String, serde_json::Value>, Vec<String>)> = Vec::new();
    for (dataset, ids) in seen {
        for part in ids.chunks(SUBJECTS_PER_ENTRY) {
            let fits = out.last().is_some_and(|(_, all)| all.len() + part.len() <= SUBJECTS_PER_ENTRY);
            if !fits {
                out.push(Default::default());
            }
            let (named, all) = out.last_mut().expect("just pushed");
            let list = named.entry(dataset.clone()).or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(a) = list {
                a.extend(part.iter().cloned().map(serde_json::Value::String));
            }
            all.extend(part.iter().cloned());
        }
    }
    out.into_iter().map(|(named, all)| (serde_json::Value::Object(named), all)).collect()
}

/// The stream with its tracker: every batch waits for the log before it is yielded.
pub(crate) fn audited(inner: SendableRecordBatchStream, tracker: Tracker) -> SendableRecordBatchStream {
    use datafusion::error::DataFusionError;
    use futures::StreamExt;
    let schema = inner.schema();
    let stream = futures::stream::unfold((inner, tracker), |(mut inner, mut tracker)| async move {
        if tracker.finished {
            return None;
        }
        match inner.next().await {
            Some(Ok(batch)) => match tracker.before_release().await {
                Ok(()) => {
                    tracker.rows += batch.num_rows() as u64;
                    Some((Ok(batch), (inner, tracker)))
                }
                Err(e) => {
                    tracker.finish("refused: the access log cannot be written");
                    Some((Err(DataFusionError::External(Box::new(AuditFailure(e.to_string())))), (inner, tracker)))
                }
            },
            Some(Err(e)) => {
                // An error can answer a question about a row that never left the scan, so a
                // failed read names everyone it could have read, durably, before the error
                // leaves.
                tracker.sink.assume_all_read();
                match tracker.finish_durably("failed").await {
                    Ok(()) => Some((Err(e), (inner, tracker))),
                    Err(a) => Some((Err(DataFusionError::External(Box::new(AuditFailure(a.to_string())))), (inner, tracker))),
                }
            }
            None => {
                tracker.finish("ok");
                None
            }
        }
    });
    Box::pin(datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(schema, stream))
}
