//! Changing what a column is (its category) as an action of its own: raising protection is
//! applied at once; lowering it (special category, protected address, person id → less) waits
//! for a second person's approval, because it can release what was withheld. Every change is
//! in the access log before it is made (the caller writes the record first, see
//! `tverr-access`'s `Engine::log_event`).

use serde::Serialize;
use sqlx::Row;
use tverr_core::{ColumnCategory, DatasetRef};

use crate::{Policy, PolicyError, Principal, Role};

/// A change of one column's category.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct CategoryChange {
    /// Its number.
    pub id: i64,
    /// `org/dataset`.
    pub dataset: String,
    /// The column.
    pub column: String,
    /// The category before.
    pub from: ColumnCategory,
    /// The category asked for.
    pub to: ColumnCategory,
    /// `applied` (raised at once, or approved), `requested` (waits for approval) or `denied`.
    pub state: String,
    /// Who asked.
    pub requested_by: String,
    /// When (RFC 3339).
    pub requested_at: String,
    /// Who approved or denied.
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<String>,
}

/// How much a category protects: a change to a lower rank, or between two different kinds of
/// the highest rank, lowers protection.
fn rank(c: ColumnCategory) -> u8 {
    match c {
        ColumnCategory::SpecialCategory | ColumnCategory::ProtectedAddress => 3,
        ColumnCategory::PersonId => 2,
        ColumnCategory::Personal => 1,
        _ => 0,
    }
}

/// Whether moving from `from` to `to` raises protection (applied at once).
pub fn raises(from: ColumnCategory, to: ColumnCategory) -> bool {
    rank(to) > rank(from)
}

/// A name for who acts, as the change records it.
fn actor(who: &Principal) -> Result<String, PolicyError> {
    match who {
        Principal::Operator(_) => Ok("operator".into()),
        Principal::User(u) => Ok(u.username.clone()),
        _ => Err(PolicyError::Forbidden("only the owning department's steward or the operator changes a column's category".into())),
    }
}

impl Policy {
    /// Whether `who` may change the columns of a dataset owned by `org`/`department`: its
    /// department's steward, or the operator.
    fn may_classify(who: &Principal, org: &str, department: &str) -> bool {
        match who {
            Principal::Operator(_) => true,
            Principal::User(u) => u.role == Role::Steward && u.org == org && u.department.as_deref() == Some(department),
            _ => false,
        }
    }

    /// Asks to change a column's category: applied at once when it raises protection, kept as
    /// `requested` for a second person when it lowers it.
    pub async fn change_category(
        &self,
        who: &Principal,
        r: &DatasetRef,
        column: &str,
        to: ColumnCategory,
    ) -> Result<CategoryChange, PolicyError> {
        let dataset = self.catalog.dataset(r).await?;
        if !Self::may_classify(who, &dataset.org, &dataset.department) {
            return Err(PolicyError::Forbidden(format!(
                "only a steward of {}/{} changes the columns of {r}",
                dataset.org, dataset.department
            )));
        }
        let columns = self.catalog.columns(r).await?;
        let from = columns
            .iter()
            .find(|c| c.name == column)
            .ok_or_else(|| PolicyError::invalid("column", format!("{r} has no column {column:?}")))?
            .category;
        if from == to {
            return Err(PolicyError::invalid("category", format!("column {column:?} of {r} is already {to}")));
        }
        let by = actor(who)?;
        let at = crate::now();
        let state = if raises(from, to) { "applied" } else { "requested" };
        let mut tx = self.raw.begin_write().await?;
        let id: i64 =
            sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM column_changes").fetch_one(&mut *tx).await?.try_get("next")?;
        sqlx::query(
            "INSERT INTO column_changes (id, dataset, column_name, from_category, to_category, state, requested_by, requested_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(r.to_string())
        .bind(column)
        .bind(from.as_str())
        .bind(to.as_str())
        .bind(state)
        .bind(&by)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        if state == "applied" {
            set_category(&mut tx, r, column, to).await?;
        }
        tx.commit().await?;
        Ok(CategoryChange {
            id,
            dataset: r.to_string(),
            column: column.into(),
            from,
            to,
            state: state.into(),
            requested_by: by,
            requested_at: at,
            decided_by: None,
            decided_at: None,
        })
    }

    /// Approves (`approve`) or denies a requested change; the one who asked cannot decide it.
    /// An approved change is applied only if the column is still what it was when asked.
    pub async fn decide_category_change(&self, who: &Principal, id: i64, approve: bool) -> Result<CategoryChange, PolicyError> {
        let change = self.category_change(id).await?;
        let r: DatasetRef = change.dataset.parse().map_err(|e: tverr_core::ModelError| PolicyError::Corrupt(e.to_string()))?;
        let dataset = self.catalog.dataset(&r).await?;
        if !Self::may_classify(who, &dataset.org, &dataset.department) {
            return Err(PolicyError::Forbidden(format!("only a steward of {}/{} decides changes to {r}", dataset.org, dataset.department)));
        }
        let by = actor(who)?;
        if by == change.requested_by {
            return Err(PolicyError::Forbidden(
                "a change that lowers protection is decided by someone other than the one who asked".into(),
            ));
        }
        if change.state != "requested" {
            return Err(PolicyError::invalid("state", format!("change {id} is {}, not requested", change.state)));
        }
        let current = self.catalog.columns(&r).await?.into_iter().find(|c| c.name == change.column).map(|c| c.category);
        if approve && current != Some(change.from) {
            return Err(PolicyError::invalid(
                "state",
                format!("column {:?} of {r} changed since change {id} was asked for; ask again", change.column),
            ));
        }
        let at = crate::now();
        let state = if approve { "applied" } else { "denied" };
        let mut tx = self.raw.begin_write().await?;
        let done =
            sqlx::query("UPDATE column_changes SET state = $1, decided_by = $2, decided_at = $3 WHERE id = $4 AND state = 'requested'")
                .bind(state)
                .bind(&by)
                .bind(&at)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() != 1 {
            return Err(PolicyError::invalid("state", format!("change {id} was decided by someone else just now")));
        }
        if approve {
            set_category(&mut tx, &r, &change.column, change.to).await?;
        }
        tx.commit().await?;
        Ok(CategoryChange { state: state.into(), decided_by: Some(by), decided_at: Some(at), ..change })
    }

    /// One change.
    pub async fn category_change(&self, id: i64) -> Result<CategoryChange, PolicyError> {
        self.category_changes()
            .await?
            .into_iter()
            .find(|c| c.id == id)
            .ok_or_else(|| PolicyError::invalid("id", format!("no category change {id}")))
    }

    /// Every change, oldest first.
    pub async fn category_changes(&self) -> Result<Vec<CategoryChange>, PolicyError> {
        let rows = sqlx::query(
            "SELECT id, dataset, column_name, from_category, to_category, state, requested_by, requested_at, decided_by, decided_at \
             FROM column_changes ORDER BY id",
        )
        .fetch_all(self.raw.pool())
        .await?;
        rows.iter()
            .map(|r| {
                let category = |name: &str| -> Result<ColumnCategory, PolicyError> {
                    r.try_get::<String, _>(name)?.parse().map_err(|e: tverr_core::ModelError| PolicyError::Corrupt(e.to_string()))
                };
                Ok(CategoryChange {
                    id: r.try_get("id")?,
                    dataset: r.try_get("dataset")?,
                    column: r.try_get("column_name")?,
                    from: category("from_category")?,
                    to: category("to_category")?,
                    state: r.try_get("state")?,
                    requested_by: r.try_get("requested_by")?,
                    requested_at: r.try_get("requested_at")?,
                    decided_by: r.try_get("decided_by")?,
                    decided_at: r.try_get("decided_at")?,
                })
            })
            .collect()
    }
}

async fn set_category(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    r: &DatasetRef,
    column: &str,
    to: ColumnCategory,
) -> Result<(), PolicyError> {
    sqlx::query("UPDATE dataset_columns SET category = $1 WHERE org = $2 AND dataset = $3 AND name = $4")
        .bind(to.as_str())
        .bind(r.org.as_str())
        .bind(r.dataset.as_str())
        .bind(column)
        .execute(&mut **tx)
        .await?;
    Ok(())
}
