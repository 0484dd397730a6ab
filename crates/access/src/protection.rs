//! Address protection as a property of the person: who is protected, read from the registers
//! the catalogue names (`Catalog::protection_registers`, e.g. the Folkeregister copy), kept per
//! catalogue generation and register version, and the function the secure scan uses to find a
//! row's level from its person and property keys ([`ProtectionLevel`], never callable from SQL).
//!
//! A property takes the level of the protected people any dataset links it to (a dataset with
//! both a person key and a property key: the owner in the property register, the applicant in a
//! building case). Otherwise a dataset keyed by property alone (water meters) would place a
//! protected person's property by what it holds that the property register withholds.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use arrow::array::{Array, ArrayRef, AsArray, Int8Array};
use arrow::datatypes::DataType;
use datafusion::common::Result as DfResult;
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility};
use tverr_core::DatasetRef;

use crate::QueryError;

/// No protection (`ugradert`).
pub(crate) const NONE: i8 = 0;
/// `fortrolig` (kode 7).
pub(crate) const FORTROLIG: i8 = 1;
/// `strengt_fortrolig` (kode 6), and any status the register holds that is not one of the
/// three known ones (an unknown status protects).
pub(crate) const STRENGT: i8 = 2;

/// The protected people of every register at one moment: person number → level.
#[derive(Debug, Default)]
pub(crate) struct Persons {
    levels: HashMap<Box<str>, i8>,
    /// Canonical matrikkel unit → the highest level of the people linked to it.
    properties: HashMap<Box<str>, i8>,
    /// Per protection link (`link_key`): key value → the highest level of the target's rows
    /// holding it.
    linked: HashMap<String, HashMap<Box<str>, i8>>,
    /// The registers and linking datasets, and the versions they were read at.
    read_from: Vec<(String, i64)>,
}

impl Persons {
    fn level(&self, key: &str) -> i8 {
        self.levels.get(key).copied().unwrap_or(NONE)
    }

    fn linked_level(&self, link: &str, key: &str) -> i8 {
        self.linked.get(link).and_then(|m| m.get(key.trim())).copied().unwrap_or(NONE)
    }

    fn property_level(&self, key: &str) -> i8 {
        if self.properties.is_empty() {
            return NONE;
        }
        self.properties.get(property_key(key).as_str()).copied().unwrap_or(NONE)
    }
}

/// A property key as the links are kept: canonical when it parses as a matrikkel unit, else
/// trimmed (it is compared, never shown).
fn property_key(value: &str) -> String {
    tverr_core::SubjectKind::Property.canonicalise(value).unwrap_or_else(|_| value.trim().to_string())
}

/// The engine's current view of who is protected, shared with every compiled scan: a scan kept
/// between requests reads the view as it is when it runs.
#[derive(Debug, Default)]
pub(crate) struct Protected {
    current: RwLock<Option<Arc<Persons>>>,
    /// The catalogue generation `current` was checked at.
    checked: Mutex<Option<i64>>,
}

impl Protected {
    /// The function that gives a row's level from its key columns: `persons` person keys, then
    /// `properties` property keys, then one column per link of `links` (`link_key`s).
    pub(crate) fn level_udf(
        self: &Arc<Self>,
        persons: usize,
        properties: usize,
        links: Vec<String>,
    ) -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(ProtectionLevel {
            protected: self.clone(),
            persons,
            properties,
            links,
            signature: Signature::variadic(vec![DataType::Utf8], Volatility::Immutable),
        })
    }

    /// Brings the view up to date with the catalogue: when its generation moved on, the
    /// registers and their versions are compared, and a changed register is read again. Every
    /// register version not yet in the protection history is added to it first (earlier ones
    /// read by time travel), so no version's protection is lost to a later one.
    pub(crate) async fn refresh(&self, store: &tverr_store::Store) -> Result<(), QueryError> {
        let generation = store.catalog.generation().await?;
        if *self.checked.lock().unwrap_or_else(|p| p.into_inner()) == Some(generation) {
            return Ok(());
        }
        let registers = store.catalog.protection_registers().await?;
        let links = links(store).await?;
        let declared = store.catalog.protection_links().await?;
        let mut versions = Vec::new();
        let named = registers.iter().map(|r| &r.dataset).chain(links.iter().map(|l| &l.dataset)).chain(declared.iter().map(|l| &l.target));
        for name in named {
            let dataset: DatasetRef = name.parse().map_err(|e: tverr_core::ModelError| QueryError::Invalid(e.to_string()))?;
            let version = store.catalog.versions(&dataset).await?.last().map_or(-1, |v| v.version);
            versions.push((name.clone(), version));
        }
        let unchanged = self.current.read().unwrap_or_else(|p| p.into_inner()).as_ref().is_some_and(|p| p.read_from == versions);
        if !unchanged {
            let mut history: HashMap<Box<str>, i8> =
                store.catalog.protection_history().await?.into_iter().map(|(k, l)| (k.into_boxed_str(), l)).collect();
            // Earlier versions no one has read yet first, so the latest ones are read knowing
            // everyone a register has protected.
            for r in &registers {
                for (key, level) in record_earlier(store, r).await? {
                    merge_level(&mut history, key, level);
                }
            }
            let mut levels = HashMap::new();
            for r in &registers {
                for (key, level) in record_latest(store, r).await? {
                    merge_level(&mut levels, key, level);
                }
            }
            // A protection once given is kept: a row written while the person was protected
            // may be carried into any later version of any dataset (a property they still own),
            // and Tverr does not yet know which rows were written when. So `ugradert`, or
            // leaving the person out, does not lift it here (see the README).
            for (key, level) in history {
                merge_level(&mut levels, key, level);
            }
            let now = Arc::new(persons(store, &links, &declared, levels, versions).await?);
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(now);
        }
        *self.checked.lock().unwrap_or_else(|p| p.into_inner()) = Some(generation);
        Ok(())
    }

    /// The level of one subject key as the registers have ever given it: a person's own, a
    /// property's from the people linked to it; other keys have none.
    pub(crate) fn key_level(&self, kind: tverr_core::SubjectKind, key: &str) -> i8 {
        let current = self.current.read().unwrap_or_else(|p| p.into_inner());
        let Some(persons) = current.as_ref() else { return NONE };
        match kind {
            tverr_core::SubjectKind::Person => persons.level(key),
            tverr_core::SubjectKind::Property => persons.property_level(key),
            _ => NONE,
        }
    }
}

/// Keeps the higher of a person's levels.
fn merge_level(levels: &mut HashMap<Box<str>, i8>, key: Box<str>, level: i8) {
    let entry = levels.entry(key).or_insert(level);
    *entry = (*entry).max(level);
}

/// The protected people by `levels`, with the properties and linked values they protect.
async fn persons(
    store: &tverr_store::Store,
    links: &[Link],
    declared: &[tverr_store::ProtectionLink],
    levels: HashMap<Box<str>, i8>,
    read_from: Vec<(String, i64)>,
) -> Result<Persons, QueryError> {
    let mut persons = Persons { levels, properties: HashMap::new(), linked: HashMap::new(), read_from };
    if !persons.levels.is_empty() {
        for link in links.iter().filter(|l| l.has_rows) {
            read_link(store, link, &persons.levels, &mut persons.properties).await?;
        }
        for link in declared {
            let map = read_declared(store, link, &persons).await?;
            persons.linked.insert(link_key(&link.dataset, &link.column), map);
        }
    }
    Ok(persons)
}

/// Records every version of a register but the latest that the protection history has not
/// seen, oldest first, and gives what they added. A version an erasure's vacuum removed cannot
/// be read, and is passed over (the erasure read it into the history before it vacuumed).
async fn record_earlier(
    store: &tverr_store::Store,
    register: &tverr_store::ProtectionRegister,
) -> Result<HashMap<Box<str>, i8>, QueryError> {
    let r: DatasetRef = register.dataset.parse().map_err(|e: tverr_core::ModelError| QueryError::Invalid(e.to_string()))?;
    let versions: Vec<i64> = store.catalog.versions(&r).await?.into_iter().map(|v| v.version).collect();
    let seen = store.catalog.protection_history_version(&register.dataset).await?.unwrap_or(-1);
    let mut recorded = HashMap::new();
    let earlier = versions.split_last().map_or(&[][..], |(_, e)| e);
    for &v in earlier.iter().filter(|&&v| v > seen) {
        let protected = match read_register(store, register, Some(v)).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(register = %register.dataset, version = v, error = %e, "a register version could not be read into the protection history");
                continue;
            }
        };
        let rows: Vec<(&str, i8)> = protected.iter().map(|(k, l)| (&**k, *l)).collect();
        store.catalog.record_protection_history(&register.dataset, v, &rows).await?;
        for (key, level) in protected {
            merge_level(&mut recorded, key, level);
        }
    }
    Ok(recorded)
}

/// Reads a register's latest version: its protected people, recorded in the protection history
/// when it is new to it.
async fn record_latest(
    store: &tverr_store::Store,
    register: &tverr_store::ProtectionRegister,
) -> Result<HashMap<Box<str>, i8>, QueryError> {
    let r: DatasetRef = register.dataset.parse().map_err(|e: tverr_core::ModelError| QueryError::Invalid(e.to_string()))?;
    let Some(latest) = store.catalog.versions(&r).await?.last().map(|v| v.version) else {
        return Ok(HashMap::new());
    };
    let protected = read_register(store, register, Some(latest)).await?;
    if store.catalog.protection_history_version(&register.dataset).await?.is_none_or(|seen| seen < latest) {
        let rows: Vec<(&str, i8)> = protected.iter().map(|(k, l)| (&**k, *l)).collect();
        store.catalog.record_protection_history(&register.dataset, latest, &rows).await?;
    }
    Ok(protected)
}

/// A dataset that links people to properties: its person and property key columns.
struct Link {
    dataset: String,
    persons: Vec<String>,
    properties: Vec<String>,
    /// Whether it has a version to read yet.
    has_rows: bool,
}

/// Every dataset, of any organisation, with both a person key and a property key.
async fn links(store: &tverr_store::Store) -> Result<Vec<Link>, QueryError> {
    use tverr_core::SubjectKind;
    let mut out = Vec::new();
    let mut all: Vec<_> = store.catalog.all_columns().await?.into_iter().collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    for (dataset, columns) in all {
        let of = |kind| columns.iter().filter(|c| c.subject_key == Some(kind)).map(|c| c.name.clone()).collect::<Vec<_>>();
        let (persons, properties) = (of(SubjectKind::Person), of(SubjectKind::Property));
        if persons.is_empty() || properties.is_empty() {
            continue;
        }
        let r: DatasetRef = dataset.parse().map_err(|e: tverr_core::ModelError| QueryError::Invalid(e.to_string()))?;
        let has_rows = !store.catalog.versions(&r).await?.is_empty();
        out.push(Link { dataset, persons, properties, has_rows });
    }
    Ok(out)
}

/// A dataset's rows as a plain DataFusion frame (no grant: the protection layer's own read).
async fn raw_frame(store: &tverr_store::Store, r: &DatasetRef, version: Option<i64>) -> Result<datafusion::prelude::DataFrame, QueryError> {
    let table = store.lake.open_for_reading(r, version).await?;
    let ctx = datafusion::prelude::SessionContext::new();
    table.update_datafusion_session(&ctx.state()).map_err(tverr_store::StoreError::from)?;
    let (url, object_store) = store.lake.reading_store(r)?;
    ctx.register_object_store(&url, object_store);
    let provider = table.table_provider().await.map_err(QueryError::from)?;
    Ok(ctx.read_table(provider)?)
}

/// Gives every property `link` ties to a protected person that person's level (the highest, if
/// several).
async fn read_link(
    store: &tverr_store::Store,
    link: &Link,
    levels: &HashMap<Box<str>, i8>,
    properties: &mut HashMap<Box<str>, i8>,
) -> Result<(), QueryError> {
    use futures::StreamExt;
    let r: DatasetRef = link.dataset.parse().map_err(|e: tverr_core::ModelError| QueryError::Invalid(e.to_string()))?;
    let columns = link
        .persons
        .iter()
        .chain(&link.properties)
        .map(|c| datafusion::logical_expr::cast(datafusion::prelude::ident(c), DataType::Utf8).alias(c))
        .collect::<Vec<_>>();
    let mut stream = raw_frame(store, &r, None).await?.select(columns)?.execute_stream().await?;
    let persons = link.persons.len();
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        for i in 0..batch.num_rows() {
            let mut level = NONE;
            for c in 0..persons {
                let keys = batch.column(c).as_string::<i32>();
                if keys.is_valid(i) {
                    level = level.max(levels.get(keys.value(i)).copied().unwrap_or(NONE));
                }
            }
            if level == NONE {
                continue;
            }
            for c in persons..batch.num_columns() {
                let keys = batch.column(c).as_string::<i32>();
                if keys.is_valid(i) {
                    let entry = properties.entry(property_key(keys.value(i)).into()).or_insert(level);
                    *entry = (*entry).max(level);
                }
            }
        }
    }
    Ok(())
}

/// The name a protection link is kept under: the linked dataset and its column.
pub(crate) fn link_key(dataset: &str, column: &str) -> String {
    format!("{dataset}\n{column}")
}

/// The protected values of a declared link: each value of the target's column, with the highest
/// level of the target's rows holding it (by their person and property keys).
async fn read_declared(
    store: &tverr_store::Store,
    link: &tverr_store::ProtectionLink,
    persons: &Persons,
) -> Result<HashMap<Box<str>, i8>, QueryError> {
    use futures::StreamExt;
    use tverr_core::SubjectKind;
    let mut out = HashMap::new();
    let target: DatasetRef = link.target.parse().map_err(|e: tverr_core::ModelError| QueryError::Invalid(e.to_string()))?;
    if store.catalog.versions(&target).await?.is_empty() {
        return Ok(out);
    }
    let columns = store.catalog.columns(&target).await?;
    let of = |kind| columns.iter().filter(|c| c.subject_key == Some(kind)).map(|c| c.name.clone()).collect::<Vec<_>>();
    let (person_keys, property_keys) = (of(SubjectKind::Person), of(SubjectKind::Property));
    let selected = std::iter::once(&link.target_column)
        .chain(&person_keys)
        .chain(&property_keys)
        .map(|c| datafusion::logical_expr::cast(datafusion::prelude::ident(c), DataType::Utf8))
        .enumerate()
        .map(|(i, e)| e.alias(format!("c{i}")))
        .collect::<Vec<_>>();
    let mut stream = raw_frame(store, &target, None).await?.select(selected)?.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let values = batch.column(0).as_string::<i32>();
        for i in 0..batch.num_rows() {
            if values.is_null(i) {
                continue;
            }
            let mut level = NONE;
            for c in 1..batch.num_columns() {
                let keys = batch.column(c).as_string::<i32>();
                if keys.is_valid(i) {
                    let key = keys.value(i);
                    level = level.max(if c <= person_keys.len() { persons.level(key) } else { persons.property_level(key) });
                }
            }
            if level > NONE {
                let entry = out.entry(values.value(i).trim().into()).or_insert(level);
                *entry = (*entry).max(level);
            }
        }
    }
    Ok(out)
}

/// Reads one register at `version` (the latest when `None`): its protected people (every status
/// but `ugradert`, a missing one included) at the highest level it gives each.
async fn read_register(
    store: &tverr_store::Store,
    register: &tverr_store::ProtectionRegister,
    version: Option<i64>,
) -> Result<HashMap<Box<str>, i8>, QueryError> {
    use futures::StreamExt;
    let r: DatasetRef = register.dataset.parse().map_err(|e: tverr_core::ModelError| QueryError::Invalid(e.to_string()))?;
    let status =
        datafusion::functions::string::expr_fn::lower(datafusion::functions::string::expr_fn::btrim(vec![datafusion::logical_expr::cast(
            datafusion::prelude::ident(&register.status_column),
            DataType::Utf8,
        )]));
    let df = raw_frame(store, &r, version).await?.select(vec![
        datafusion::logical_expr::cast(datafusion::prelude::ident(&register.key_column), DataType::Utf8).alias("k"),
        status.alias("s"),
    ])?;
    let mut levels = HashMap::new();
    let mut stream = df.execute_stream().await?;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        let keys = batch.column(0).as_string::<i32>();
        let statuses = batch.column(1).as_string::<i32>();
        for i in 0..batch.num_rows() {
            if keys.is_null(i) {
                continue;
            }
            let level = match statuses.is_valid(i).then(|| statuses.value(i)) {
                Some("ugradert") => continue,
                Some("fortrolig") => FORTROLIG,
                _ => STRENGT,
            };
            merge_level(&mut levels, keys.value(i).into(), level);
        }
    }
    Ok(levels)
}

/// `tverr_protection_level(key, …)`: the highest protection level of the people and properties
/// the keys name (0 none, 1 fortrolig, 2 strengt fortrolig); the first `persons` keys are person
/// keys, the rest property keys. Placed in restricted plans only.
#[derive(Debug)]
struct ProtectionLevel {
    protected: Arc<Protected>,
    persons: usize,
    properties: usize,
    links: Vec<String>,
    signature: Signature,
}

impl PartialEq for ProtectionLevel {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.protected, &other.protected)
            && self.persons == other.persons
            && self.properties == other.properties
            && self.links == other.links
    }
}

impl Eq for ProtectionLevel {}

impl std::hash::Hash for ProtectionLevel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (Arc::as_ptr(&self.protected) as usize).hash(state);
        self.persons.hash(state);
        self.properties.hash(state);
        self.links.hash(state);
    }
}

impl ScalarUDFImpl for ProtectionLevel {
    fn name(&self) -> &str {
        "tverr_protection_level"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(DataType::Int8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let persons = self
            .protected
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| datafusion::error::DataFusionError::Execution("who is protected is not known yet".into()))?;
        // A key the plan made constant (a filter `key = '…'` lets the optimiser put the value in
        // its place) comes as a scalar: every row has it.
        let arrays = args.args.iter().map(|a| a.clone().into_array(args.number_rows)).collect::<DfResult<Vec<ArrayRef>>>()?;
        if let Some(a) = arrays.iter().find(|a| a.len() != args.number_rows) {
            return Err(datafusion::error::DataFusionError::Execution(format!(
                "tverr_protection_level: {} values for {} rows",
                a.len(),
                args.number_rows
            )));
        }
        let mut levels = vec![NONE; args.number_rows];
        for (n, array) in arrays.iter().enumerate() {
            let text = arrow::compute::cast(array, &DataType::Utf8)?;
            let text = text.as_string::<i32>();
            let link = n.checked_sub(self.persons + self.properties).and_then(|l| self.links.get(l));
            for (i, level) in levels.iter_mut().enumerate() {
                if text.is_valid(i) {
                    let key = text.value(i);
                    let found = match link {
                        Some(link) => persons.linked_level(link, key),
                        None if n < self.persons => persons.level(key),
                        None => persons.property_level(key),
                    };
                    *level = (*level).max(found);
                }
            }
        }
        let out: ArrayRef = Arc::new(Int8Array::from(levels));
        Ok(ColumnarValue::Array(out))
    }
}
