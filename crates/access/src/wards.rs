//! Parents and their children: a citizen reads, on Min side, the data of the children under 16
//! that a register of parental responsibility (a Folkeregister copy of parents and children,
//! `Catalog::guardianship_registers`) names them the parent of.
//!
//! The register is read here, below the door, to decide (as the protection registers are); what
//! is released about a child goes through the secure scan under the parent's grant
//! ([`tverr_policy::Policy::ward_data`]: the rows that name the child, none that name a protected
//! person) and into the access log, with the parent as the reader and the child as the subject.
//! A child with a protected address is not the platform's to show a parent: such a child is not
//! among the parent's children here at all.

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::{Array, StringArray};
use serde::Serialize;
use tverr_core::{DatasetRef, Fodselsnummer, SubjectKind};
use tverr_policy::Principal;

use crate::{Channel, Engine, QueryError, Released};

/// A parent reads their child's data until the child turns this old.
pub const GUARDIAN_AGE_LIMIT: i32 = 16;

/// A child a parent may read the data of.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Ward {
    /// The child's person number.
    pub pid: String,
    /// Date of birth.
    pub birth_date: chrono::NaiveDate,
    /// Age in whole years today.
    pub age: i32,
}

/// Today's date in Norway, for ages.
fn today() -> chrono::NaiveDate {
    chrono::Utc::now().with_timezone(&chrono_tz::Europe::Oslo).date_naive()
}

impl Engine {
    /// The children under [`GUARDIAN_AGE_LIMIT`] that a register of parental responsibility
    /// names `who` (a signed-in citizen) the parent of, youngest first; none with a protected
    /// address.
    pub async fn wards(&self, who: &Principal) -> Result<Vec<Ward>, QueryError> {
        let Principal::Citizen(citizen) = who else {
            return Err(QueryError::NotAllowed("only a signed-in citizen reads their children's data".into()));
        };
        let registers = self.catalog().guardianship_registers().await?;
        if registers.is_empty() {
            return Ok(Vec::new());
        }
        let places = self.store.locate(citizen.pid()).await?;
        let versions = self.store.indexed_versions().await?;
        self.protected.refresh(&self.store).await?;
        let today = today();
        let mut children: BTreeSet<String> = BTreeSet::new();
        for (r, child, parent) in &registers {
            let Some(version) = versions.get(&r.to_string()).copied() else { continue };
            let schema = self.store.schema_at(r, version).await?;
            let Some(parent_position) = schema.index_of(parent).ok() else { continue };
            let rows: Vec<(String, i64)> = places
                .iter()
                .filter(|p| &p.dataset == r && p.position == parent_position as i64)
                .map(|p| (p.path.clone(), p.row))
                .collect();
            if rows.is_empty() {
                continue;
            }
            let only = BTreeSet::from([child.clone()]);
            let (_, batches) = self.store.read_rows(r, version, &rows, Some(&only)).await?;
            for b in &batches {
                let Some(column) = b.column_by_name(child) else { continue };
                let text =
                    arrow::compute::cast(column, &arrow::datatypes::DataType::Utf8).map_err(|e| QueryError::Output(e.to_string()))?;
                let Some(text) = text.as_any().downcast_ref::<StringArray>() else { continue };
                children.extend((0..text.len()).filter(|i| text.is_valid(*i)).map(|i| text.value(i).to_string()));
            }
        }
        let mut wards: Vec<Ward> = children
            .into_iter()
            .filter_map(|pid| {
                let f = Fodselsnummer::parse(&pid).ok()?;
                let age = f.age_on(today);
                let protected = self.protected.key_level(SubjectKind::Person, f.as_str()) >= crate::protection::FORTROLIG;
                ((0..GUARDIAN_AGE_LIMIT).contains(&age) && !protected).then(|| Ward { birth_date: f.birth_date(), age, pid: f.into() })
            })
            .collect();
        wards.sort_by(|a, b| b.birth_date.cmp(&a.birth_date).then(a.pid.cmp(&b.pid)));
        Ok(wards)
    }

    /// A child's data, read by their parent: per dataset (of `datasets`, or every one), the
    /// rows that name the child, as audited streams. A child who is not among the parent's
    /// [`Engine::wards`] is not found.
    pub async fn ward_data(
        &self,
        who: &Principal,
        child: &str,
        datasets: Option<&[DatasetRef]>,
        channel: Channel,
    ) -> Result<Vec<Released>, QueryError> {
        let child = Fodselsnummer::parse(child).map_err(|_| QueryError::NotFound("the child".into()))?;
        if !self.wards(who).await?.iter().any(|w| w.pid == child.as_str()) {
            return Err(QueryError::NotFound("the child".into()));
        }
        let Principal::Citizen(parent) = who else { return Err(QueryError::NotFound("the child".into())) };
        let mut out = Vec::new();
        for grant in self.policy().ward_data(child.as_str(), parent.pid()).await? {
            if datasets.is_some_and(|only| !only.contains(grant.dataset())) {
                continue;
            }
            let query = format!("a parent's read of their child's data in {}", grant.dataset());
            out.push(self.read_table(who, None, grant, None, None, channel, &query, std::time::Instant::now()).await?);
        }
        Ok(out)
    }

    /// [`Engine::own_data`], limited to `datasets` when given.
    pub async fn own_data_in(
        &self,
        who: &Principal,
        datasets: Option<&[DatasetRef]>,
        channel: Channel,
    ) -> Result<Vec<Released>, QueryError> {
        let Principal::Citizen(citizen) = who else {
            return Err(QueryError::NotAllowed("only a signed-in citizen reads their own data".into()));
        };
        let mut out = Vec::new();
        for grant in self.policy().own_data(citizen.pid()).await? {
            if datasets.is_none_or(|only| only.contains(grant.dataset())) {
                let query = format!("own data {}", grant.dataset());
                out.push(self.read_table(who, None, grant, None, None, channel, &query, std::time::Instant::now()).await?);
            }
        }
        Ok(out)
    }
}

/// Released rows as JSON objects, per dataset, read whole (at most `max` rows each).
pub async fn released_rows(
    reads: Vec<Released>,
    max: usize,
) -> Result<BTreeMap<DatasetRef, Vec<serde_json::Map<String, serde_json::Value>>>, QueryError> {
    use futures::StreamExt;
    let mut out = BTreeMap::new();
    for released in reads {
        let r = released.grants[0].dataset().clone();
        let mut stream = released.stream;
        let mut rows: Vec<serde_json::Map<String, serde_json::Value>> = Vec::new();
        while let Some(batch) = stream.next().await.transpose()? {
            if batch.num_rows() == 0 || rows.len() >= max {
                continue;
            }
            let text = crate::json_objects(&batch, &[])?;
            let parsed: Vec<serde_json::Map<String, serde_json::Value>> =
                serde_json::from_slice(&[b"[".as_slice(), &text, b"]"].concat()).map_err(|e| QueryError::Output(e.to_string()))?;
            rows.extend(parsed.into_iter().take(max - rows.len()));
        }
        out.insert(r, rows);
    }
    Ok(out)
}
