//! Look-ups: everything a caller may see about one subject — a person, a property or an
//! organisation — for one purpose, from every dataset whose subject-key columns hold it.
//!
//! The subject index ([`tverr_store::Store::locate`]) says which rows of which data files hold
//! the key. Those rows are read (a few pages each, and only the columns the scan reads) and go
//! through the dataset's secure scan for the caller's grant, compiled for in-memory rows
//! (`PreparedScan`), with the key test again as a filter on released values, so row filters,
//! masks, address protection and the access log apply exactly as for SQL. All of a look-up's
//! accesses are logged in one durable commit before it returns. A dataset contributes only
//! through key columns its grant releases unmasked: matching on a column the caller cannot
//! see in clear would tell them what it holds. Datasets the caller may not read for the purpose
//! are absent, never listed as refused.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use arrow::array::{Array, RecordBatch, StringArray};
use datafusion::datasource::MemTable;
use datafusion::prelude::{Expr, ident, lit};
use serde::Serialize;
use tverr_core::{DatasetRef, SubjectKind};
use tverr_policy::{Basis, Grant, LegalBasis, Mask, PolicySnapshot, Principal};
use tverr_store::Place;

use crate::secure::{PreparedScan, SubjectSink};
use crate::{Channel, Engine, QueryError};

/// At most this many related subjects are followed from one look-up.
pub const MAX_RELATED: usize = 20;

/// One column of a dataset in a look-up.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LookupColumn {
    /// Name.
    pub name: String,
    /// Type, as in SQL results (`text`, `integer`, `geometry`…).
    #[serde(rename = "type")]
    pub column_type: String,
    /// The mask the agreement applies, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub mask: Option<Mask>,
}

/// The rows of one dataset about the subject, and why the caller may see them.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Found {
    /// `org/dataset`.
    pub dataset: String,
    /// Title.
    pub title: String,
    /// The version read.
    pub version: i64,
    /// Why the caller may read it: own department, or an agreement (with its number).
    pub basis: Basis,
    /// The legal basis of the read.
    pub legal_basis: Option<LegalBasis>,
    /// The key columns that hold the subject.
    pub matched_on: Vec<String>,
    /// The columns released, with their masks.
    pub columns: Vec<LookupColumn>,
    /// The rows, as a JSON array of objects (geometry as WKT), written once from the released
    /// batches and sent as is.
    #[schema(value_type = Vec<Object>)]
    pub rows: Box<serde_json::value::RawValue>,
}

impl Found {
    /// The rows as JSON objects, for callers that show them cell by cell.
    pub fn row_objects(&self) -> Vec<serde_json::Map<String, serde_json::Value>> {
        serde_json::from_str(self.rows.get()).unwrap_or_default()
    }
}

/// One department's datasets in a look-up.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LookupDepartment {
    /// Slug.
    pub department: String,
    /// Name.
    pub name: String,
    /// Its datasets with rows about the subject.
    pub datasets: Vec<Found>,
}

/// One organisation's departments in a look-up.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LookupOrg {
    /// Slug.
    pub org: String,
    /// Name.
    pub name: String,
    /// Its departments with rows about the subject.
    pub departments: Vec<LookupDepartment>,
}

/// Where a related subject was found: a key column of a row about the looked-up subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, utoipa::ToSchema)]
pub struct Via {
    /// `org/dataset` of the row.
    pub dataset: String,
    /// The key column that names the related subject.
    pub column: String,
}

/// A subject one hop away, with the rows about it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Related {
    /// `person`, `property` or `organization`.
    pub kind: String,
    /// Its canonical key.
    pub id: String,
    /// Where the data names it.
    pub via: Via,
    /// The rows about it, grouped as for the subject.
    pub organizations: Vec<LookupOrg>,
}

/// Everything the caller may see about one subject for one purpose.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Lookup {
    /// `person`, `property` or `organization`.
    pub kind: String,
    /// The canonical key.
    pub id: String,
    /// The declared purpose.
    pub purpose: String,
    /// Rows about the subject, by organisation, department and dataset.
    pub organizations: Vec<LookupOrg>,
    /// Subjects one hop away (a person's properties, the building cases on them, a guardian's
    /// children) and the rows about them, each still under the caller's grants for the purpose.
    pub related: Vec<Related>,
}

/// One dataset's contribution before grouping, with what the hop needs.
struct Contribution {
    found: Found,
    grant: Grant,
    batches: Vec<RecordBatch>,
    /// The rows read, as `(dataset, file, row)`.
    rows: Vec<(String, String, i64)>,
    /// The access, until it is logged (none for open data).
    tracker: Option<crate::Tracker>,
}

/// Names for grouping: datasets' titles and departments, departments' and organisations' names.
#[derive(Default)]
struct Names {
    datasets: BTreeMap<String, (String, String)>,
    departments: BTreeMap<(String, String), String>,
    orgs: BTreeMap<String, String>,
}

/// The least time an empty look-up answer takes. Well above what deciding, locating and
/// skipping a protected key cost (about 0.4 ms on the demo), so an empty answer's time is this,
/// whatever the key: measured differences of 25 µs named protected keys.
pub const EMPTY_LOOKUP_TIME: std::time::Duration = std::time::Duration::from_millis(5);

/// Waits until `deadline`, to within the operating system's fine timer. Tokio's timer wakes on
/// millisecond ticks counted from when the worker parks, so where in a millisecond it wakes
/// depends on how much work came before, and an empty answer after more work (a protected key)
/// came a few tens of microseconds later. So tokio sleeps to two milliseconds short, and a
/// blocking thread sleeps the rest to the deadline itself.
pub async fn pad_until(deadline: tokio::time::Instant) {
    if let Some(coarse) = deadline.checked_sub(std::time::Duration::from_millis(2)) {
        tokio::time::sleep_until(coarse).await;
    }
    let deadline = deadline.into_std();
    let _ = tokio::task::spawn_blocking(move || {
        let now = std::time::Instant::now();
        if deadline > now {
            std::thread::sleep(deadline - now);
        }
    })
    .await;
}

/// What one look-up decides under: who, for what, over which catalogue state.
struct Scope<'a> {
    /// The protection level of the key looked up (of the subject one hop away, in a hop).
    key_level: i8,
    who: &'a Principal,
    /// The declared purpose (none for a citizen reading their own rows).
    purpose: Option<&'a str>,
    /// A citizen's own grants, which replace the policy's decisions.
    own: Option<&'a [Grant]>,
    channel: Channel,
    policy: &'a PolicySnapshot,
    view: &'a CatalogView,
}

impl Engine {
    /// Everything `who` may see about one subject for `purpose`: the rows from every dataset
    /// whose key columns hold it, grouped by organisation, department and dataset, and the
    /// subjects one hop away. Each dataset released is one audited access naming the subject.
    ///
    /// An answer with nothing in it is sent no sooner than [`EMPTY_LOOKUP_TIME`] after the
    /// look-up began, so its time does not tell a key held nowhere from one held in rows the
    /// caller may not see.
    pub async fn lookup(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        kind: SubjectKind,
        id: &str,
        channel: Channel,
    ) -> Result<Lookup, QueryError> {
        let started = tokio::time::Instant::now();
        let answer = self.lookup_now(who, purpose, kind, id, channel, Hops::Follow).await;
        if let Ok(found) = &answer
            && found.organizations.is_empty()
            && found.related.is_empty()
        {
            pad_until(started + EMPTY_LOOKUP_TIME).await;
        }
        answer
    }

    /// A look-up without the padding of empty answers; with [`Hops::Follow`], the subjects one
    /// hop away too. Without hops a citizen may ask, and sees only rows about themselves (their
    /// own property's rows, for the property service); [`Hops::Only`] reads one dataset alone.
    pub(crate) async fn lookup_now(
        &self,
        who: &Principal,
        purpose: Option<&str>,
        kind: SubjectKind,
        id: &str,
        channel: Channel,
        only: Hops<'_>,
    ) -> Result<Lookup, QueryError> {
        let hops = matches!(only, Hops::Follow);
        let own = match who {
            Principal::Anonymous => return Err(QueryError::NotAllowed("a look-up needs a signed-in user".into())),
            Principal::Citizen(_) if hops => {
                return Err(QueryError::NotAllowed("citizens see what is held about them at /api/v1/me/data".into()));
            }
            Principal::Citizen(c) => Some(self.policy().own_data(c.pid()).await?),
            _ => None,
        };
        let purpose = match (&own, purpose.filter(|p| !p.trim().is_empty())) {
            // A citizen reads their own rows under their own right, for no declared purpose.
            (Some(_), _) => None,
            (None, Some(p)) => Some(p),
            (None, None) => return Err(QueryError::PurposeRequired("a look-up".into())),
        };
        let policy = self.policy().snapshot().await?;
        let view = self.catalog_view(policy.generation()).await?;
        // Compiled scans read who is protected at run time; the view is current before any runs.
        self.protected.refresh(&self.store).await?;
        let home = match who {
            Principal::User(u) => view.kommune.get(&u.org).copied().flatten(),
            Principal::System(s) => view.kommune.get(s.org()).copied().flatten(),
            _ => None,
        };
        let key = kind.canonicalise_in(id, home).map_err(|e| QueryError::Invalid(format!("invalid {}: {e}", kind.label())))?;
        // Found for every key, held anywhere or not, so a miss costs what a protected key does.
        let key_level = self.protected.key_level(kind, &key);
        let scope = Scope { key_level, who, purpose, own: own.as_deref(), channel, policy: &policy, view: &view };
        let record = self.lookup_record(kind, &key);
        let mut places = self.store.locate(&key).await?;
        if let Hops::Only(r) = only {
            places.retain(|p| &p.dataset == r);
        }
        let mut direct = self.gather(&scope, kind, &key, &places, &BTreeSet::new(), record.clone()).await?;
        if !hops {
            log_together(direct.iter_mut().filter_map(|c| c.tracker.as_mut()).collect()).await?;
            return Ok(Lookup {
                kind: kind.as_str().to_string(),
                id: key,
                purpose: purpose.unwrap_or_default().to_string(),
                organizations: group(direct, &view.names),
                related: Vec::new(),
            });
        }

        // One hop: other key columns released in clear in the rows found.
        let mut related: BTreeMap<(SubjectKind, String), Via> = BTreeMap::new();
        for c in &direct {
            for column in c.grant.columns().iter().filter(|g| g.mask.is_none()) {
                let Some(k) = column.subject else { continue };
                for value in column_values(&c.batches, &column.name) {
                    if (k == kind && value == key) || related.len() >= MAX_RELATED {
                        continue;
                    }
                    related.entry((k, value)).or_insert_with(|| Via { dataset: c.found.dataset.clone(), column: column.name.clone() });
                }
            }
        }
        // Rows already shown are not shown again under a related subject.
        let seen: BTreeSet<(String, String, i64)> = direct.iter().flat_map(|c| c.rows.iter().cloned()).collect();
        // One catalogue query finds every related subject's places; the subjects are then read
        // concurrently, so their accesses share commits of the log.
        let keys: Vec<&str> = related.keys().map(|(_, value)| value.as_str()).collect();
        let located = self.store.locate_many(&keys).await?;
        let hops = related.into_iter().map(|((k, value), via)| {
            let places = located.get(&value).cloned().unwrap_or_default();
            let scope = Scope { key_level: self.protected.key_level(k, &value), ..scope };
            let (seen, record) = (&seen, &record);
            async move {
                let scope = &scope;
                let mut hop_record = self.lookup_record(k, &value);
                hop_record["related_to"] = record.clone();
                hop_record["via"] = serde_json::json!({"dataset": via.dataset, "column": via.column});
                let found = self.gather(scope, k, &value, &places, seen, hop_record).await?;
                Ok::<_, QueryError>((!found.is_empty()).then_some((k, value, via, found)))
            }
        });
        let mut hops: Vec<_> = futures::future::try_join_all(hops).await?.into_iter().flatten().collect();
        // Nothing leaves before every access of the look-up is in the log: all its intents go
        // to the log at once and share one durable commit.
        log_together(direct.iter_mut().chain(hops.iter_mut().flat_map(|h| h.3.iter_mut())).filter_map(|c| c.tracker.as_mut()).collect())
            .await?;
        let related = hops
            .into_iter()
            .map(|(k, value, via, found)| Related {
                kind: k.as_str().to_string(),
                id: value,
                via,
                organizations: group(found, &view.names),
            })
            .collect();
        Ok(Lookup {
            kind: kind.as_str().to_string(),
            id: key,
            purpose: purpose.unwrap_or_default().to_string(),
            organizations: group(direct, &view.names),
            related,
        })
    }

    /// The subject as the access log records it: a person by the keyed digest of their number.
    fn lookup_record(&self, kind: SubjectKind, key: &str) -> serde_json::Value {
        match kind {
            SubjectKind::Person => serde_json::json!({"kind": "person", "subject": self.audit().subject_id(key)}),
            other => serde_json::json!({"kind": other.as_str(), "id": key}),
        }
    }

    /// The names, kommunenummer and indexed versions look-ups read, as of catalogue
    /// `generation` (kept until it moves on).
    async fn catalog_view(&self, generation: i64) -> Result<Arc<CatalogView>, QueryError> {
        if let Some(v) = self.lookups.view.lock().unwrap_or_else(|p| p.into_inner()).as_ref().filter(|v| v.generation == generation) {
            return Ok(v.clone());
        }
        let catalog = &self.store.catalog;
        let mut names = Names::default();
        for d in catalog.datasets().await? {
            names.datasets.insert(d.reference(), (d.title.clone(), d.department.clone()));
        }
        for d in catalog.departments(None).await? {
            names.departments.insert((d.org.clone(), d.slug.clone()), d.name.clone());
        }
        let mut kommune = HashMap::new();
        for o in catalog.orgs().await? {
            kommune.insert(o.slug.clone(), o.kommunenummer.as_deref().and_then(|k| k.parse().ok()));
            names.orgs.insert(o.slug.clone(), o.name.clone());
        }
        let versions = self.store.indexed_versions().await?;
        let view = Arc::new(CatalogView { generation, names, kommune, versions });
        let mut kept = self.lookups.view.lock().unwrap_or_else(|p| p.into_inner());
        if kept.as_ref().is_none_or(|v| v.generation < generation) {
            *kept = Some(view.clone());
        }
        Ok(view)
    }

    /// The contributions of every dataset the index names, read concurrently; places in `skip`
    /// (already shown) are left out.
    async fn gather(
        &self,
        scope: &Scope<'_>,
        kind: SubjectKind,
        key: &str,
        places: &[Place],
        skip: &BTreeSet<(String, String, i64)>,
        record: serde_json::Value,
    ) -> Result<Vec<Contribution>, QueryError> {
        let mut by_dataset: BTreeMap<&DatasetRef, Vec<&Place>> = BTreeMap::new();
        for p in places {
            if !skip.contains(&(p.dataset.to_string(), p.path.clone(), p.row)) {
                by_dataset.entry(&p.dataset).or_default().push(p);
            }
        }
        let reads = by_dataset.into_iter().filter_map(|(r, places)| {
            let version = *scope.view.versions.get(&r.to_string())?;
            Some(self.contribution(scope, kind, key, r, version, places, record.clone()))
        });
        let found = futures::future::try_join_all(reads).await?;
        Ok(found.into_iter().flatten().collect())
    }

    /// One dataset's rows about the subject under the caller's grant, or `None` when the caller
    /// may not see them for this purpose.
    #[allow(clippy::too_many_arguments)]
    async fn contribution(
        &self,
        scope: &Scope<'_>,
        kind: SubjectKind,
        key: &str,
        r: &DatasetRef,
        version: i64,
        places: Vec<&Place>,
        mut record: serde_json::Value,
    ) -> Result<Option<Contribution>, QueryError> {
        let started = std::time::Instant::now();
        let (who, purpose) = (scope.who, scope.purpose);
        let grant = match scope.own {
            Some(own) => own.iter().find(|g| g.dataset() == r).cloned(),
            None => self.policy().entitle_in(scope.policy, who, purpose, r).await?.ok(),
        };
        let Some(grant) = grant else { return Ok(None) };
        if grant.min_group_size().is_some() {
            return Ok(None);
        }
        // A key the grant cannot match is answered as if the index did not hold it, before
        // anything is read or logged: a protected person for a reader who may not see
        // protected people, a protected property for anyone (its key is withheld). Reading
        // first and finding nothing took measurably longer than a key held nowhere, so the
        // time of an empty answer told which keys are protected.
        if let tverr_policy::Protection::ByPerson { visible, release_fortrolig, .. } = grant.protection() {
            let withheld_from = if *release_fortrolig { crate::protection::STRENGT } else { crate::protection::FORTROLIG };
            if scope.key_level >= withheld_from && (!visible || kind == SubjectKind::Property) {
                return Ok(None);
            }
        }
        let schema = self.store.schema_at(r, version).await?;
        // Only key columns of this kind that the grant releases in clear may match.
        let clear: BTreeSet<&str> =
            grant.columns().iter().filter(|c| c.mask.is_none() && c.subject == Some(kind)).map(|c| c.name.as_str()).collect();
        let matched: BTreeMap<i64, &str> = places
            .iter()
            .filter_map(|p| {
                let name = schema.fields().get(p.position as usize)?.name().as_str();
                clear.get(name).map(|n| (p.position, *n))
            })
            .collect();
        if matched.is_empty() {
            return Ok(None);
        }
        let matched_on: BTreeSet<&str> = matched.values().copied().collect();
        let rows: Vec<(String, i64)> =
            places.iter().filter(|p| matched.contains_key(&p.position)).map(|p| (p.path.clone(), p.row)).collect();
        // Only the columns the grant's scan reads are decoded; the others come back null and
        // nothing reads them.
        let prepared = self.prepared(&grant, version, schema)?;
        let (_, batches) = self.store.read_rows(r, version, &rows, Some(prepared.reads())).await?;
        let read: Vec<(String, String, i64)> = rows.into_iter().map(|(path, row)| (r.to_string(), path, row)).collect();
        let sink = SubjectSink::new(self.named_limit);
        let test = matched_on.iter().map(|c| ident(*c).eq(lit(key))).reduce(Expr::or).expect("at least one column matched");
        // The grant's secure scan, compiled once per grant and version, runs the key test as a
        // filter on released values, below its tap.
        let batches = prepared.apply(&batches, test, &self.lookups.state, &sink)?;
        let grants = vec![(grant.clone(), Some(version))];
        let mut intent = self.intent(who, purpose, scope.channel, &format!("lookup {kind} in {r}"), &grants);
        if let Some(i) = &mut intent {
            record["matched_on"] = serde_json::json!(matched_on);
            i["lookup"] = record;
        }
        // Logged by `Engine::lookup` together with the look-up's other accesses, before any
        // of them leaves.
        let mut tracker = intent.map(|intent| self.tracker(intent, sink, started));
        let schema = prepared.schema();
        let rows_out = batches.iter().map(|b| b.num_rows()).sum::<usize>();
        if let Some(t) = &mut tracker {
            t.rows = rows_out as u64;
        }
        if rows_out == 0 {
            if let Some(t) = &mut tracker {
                t.finish("ok");
            }
            return Ok(None);
        }
        let geometry = Self::geometry_columns(&grant, None);
        let mut text = b"[".to_vec();
        for b in &batches {
            if text.len() > 1 {
                text.push(b',');
            }
            text.extend(crate::json_objects(b, &geometry)?);
        }
        text.push(b']');
        let text = String::from_utf8(text).map_err(|e| QueryError::Output(e.to_string()))?;
        let rows = serde_json::value::RawValue::from_string(text).map_err(|e| QueryError::Output(e.to_string()))?;
        let columns = crate::result_columns(&schema)
            .into_iter()
            .map(|c| LookupColumn {
                mask: grant.columns().iter().find(|g| g.name == c.name).and_then(|g| g.mask),
                name: c.name,
                column_type: c.column_type.to_string(),
            })
            .collect();
        let found = Found {
            dataset: r.to_string(),
            title: String::new(),
            version,
            basis: grant.basis().clone(),
            legal_basis: grant.legal_basis().cloned(),
            matched_on: matched_on.iter().map(|s| s.to_string()).collect(),
            columns,
            rows,
        };
        Ok(Some(Contribution { found, grant, batches, rows: read, tracker }))
    }
}

/// How far a look-up reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Hops<'a> {
    /// The subject's rows and the subjects one hop away.
    Follow,
    /// The subject's rows only.
    None,
    /// The subject's rows in one dataset only.
    Only(&'a DatasetRef),
}

/// What look-ups keep between calls: a session without tables, each grant's secure scan
/// compiled for in-memory rows (per grant and version), and the catalogue's names.
pub(crate) struct LookupCache {
    pub(crate) state: datafusion::execution::session_state::SessionState,
    /// Per version and dataset, each grant seen with its compiled scan (found by comparing
    /// whole grants).
    prepared: Mutex<HashMap<(i64, DatasetRef), Vec<CompiledFor>>>,
    view: Mutex<Option<Arc<CatalogView>>>,
}

/// A grant and its secure scan compiled for in-memory rows.
type CompiledFor = (Grant, Arc<PreparedScan>);

/// What look-ups read from the catalogue besides decisions, as of one generation.
struct CatalogView {
    generation: i64,
    names: Names,
    /// Organisations' kommunenummer, for short matrikkel forms.
    kommune: HashMap<String, Option<u16>>,
    /// The version of each dataset the subject index describes.
    versions: BTreeMap<String, i64>,
}

/// Compiled scans kept at most; past that the cache starts again.
const PREPARED_KEPT: usize = 512;

impl LookupCache {
    pub(crate) fn new() -> Self {
        Self { state: Engine::context_with(1).state(), prepared: Mutex::default(), view: Mutex::default() }
    }
}

impl std::fmt::Debug for LookupCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.prepared.lock().map(|p| p.values().map(Vec::len).sum::<usize>()).unwrap_or(0);
        f.debug_struct("LookupCache").field("prepared", &n).finish()
    }
}

impl Engine {
    /// The grant's secure scan compiled for rows of the dataset at `version` (whose schema is
    /// `schema`). The whole grant is the key: a grant differing in anything (columns, masks, row
    /// filter, protection, keys, basis) compiles anew.
    pub(crate) fn prepared(
        &self,
        grant: &Grant,
        version: i64,
        schema: arrow::datatypes::SchemaRef,
    ) -> Result<Arc<PreparedScan>, QueryError> {
        let key = (version, grant.dataset().clone());
        let kept = self
            .lookups
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
            .and_then(|scans| scans.iter().find(|(g, _)| g == grant).map(|(_, p)| p.clone()));
        if let Some(p) = kept {
            return Ok(p);
        }
        let ctx = datafusion::prelude::SessionContext::new_with_state(self.lookups.state.clone());
        // The table is only compiled, never scanned, so it needs no rows and no sink of a request.
        let empty = Arc::new(MemTable::try_new(schema, vec![vec![]])?);
        let table = self.secure_table(&ctx, grant, empty, &SubjectSink::new(0))?;
        let prepared = Arc::new(PreparedScan::new(&table, &self.lookups.state)?);
        let mut cache = self.lookups.prepared.lock().unwrap_or_else(|p| p.into_inner());
        if cache.values().map(Vec::len).sum::<usize>() >= PREPARED_KEPT {
            cache.clear();
        }
        cache.entry(key).or_default().push((grant.clone(), prepared.clone()));
        Ok(prepared)
    }
}

/// Writes every access of one answer to the log in one durable commit, before any of it leaves.
/// The answer is whole before it leaves, so each intent carries its outcome and no completion
/// record follows.
pub(crate) async fn log_together(mut trackers: Vec<&mut crate::Tracker>) -> Result<(), QueryError> {
    let written = futures::future::join_all(trackers.iter_mut().map(|t| t.before_release_of_whole())).await;
    let failed = written.into_iter().find_map(Result::err);
    for t in trackers {
        t.finish(if failed.is_some() { "refused: the access log cannot be written" } else { "ok" });
    }
    match failed {
        Some(e) => Err(QueryError::AuditUnavailable(e.to_string())),
        None => Ok(()),
    }
}

/// The distinct non-null values of a column in released batches.
fn column_values(batches: &[RecordBatch], column: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for b in batches {
        let Some(c) = b.column_by_name(column) else { continue };
        let Ok(text) = arrow::compute::cast(c, &arrow::datatypes::DataType::Utf8) else { continue };
        let Some(text) = text.as_any().downcast_ref::<StringArray>() else { continue };
        for i in 0..text.len() {
            if text.is_valid(i) {
                out.insert(text.value(i).to_string());
            }
        }
    }
    out
}

/// Groups contributions by organisation and department, in name order.
fn group(found: Vec<Contribution>, names: &Names) -> Vec<LookupOrg> {
    let mut tree: BTreeMap<String, BTreeMap<String, Vec<Found>>> = BTreeMap::new();
    for c in found {
        let mut f = c.found;
        let (title, department) = names.datasets.get(&f.dataset).cloned().unwrap_or_default();
        f.title = title;
        let org = f.dataset.split('/').next().unwrap_or_default().to_string();
        tree.entry(org).or_default().entry(department).or_default().push(f);
    }
    tree.into_iter()
        .map(|(org, departments)| LookupOrg {
            name: names.orgs.get(&org).cloned().unwrap_or_default(),
            departments: departments
                .into_iter()
                .map(|(department, datasets)| LookupDepartment {
                    name: names.departments.get(&(org.clone(), department.clone())).cloned().unwrap_or_default(),
                    department,
                    datasets,
                })
                .collect(),
            org,
        })
        .collect()
}
