//! Sharing agreements (delingsavtaler): request, the checks of their terms, approve, deny and
//! revoke, each a new revision with its event.

use super::*;

/// A request for an agreement.
#[derive(Debug, Clone)]
pub struct AgreementRequest {
    /// Who shares.
    pub provider: Party,
    /// Who receives.
    pub consumer: Party,
    /// Datasets and, per dataset, columns, masks and row filter.
    pub datasets: Vec<DatasetTerms>,
    /// Purposes (slugs of the consumer organisation).
    pub purposes: Vec<String>,
    /// Legal basis slug in the consumer organisation; default: the first purpose's.
    pub legal_basis: Option<String>,
    /// First day in force; default today.
    pub valid_from: Option<chrono::NaiveDate>,
    /// Last day in force.
    pub valid_to: Option<chrono::NaiveDate>,
    /// Whether `fortrolig` addresses may be released.
    pub release_fortrolig: bool,
}

impl Policy {
    /// Requests an agreement. Only the consumer department's steward (or its organisation's
    /// admin) may ask; every dataset must belong to the provider department, every named column
    /// and mask must exist, and every purpose must be the consumer's.
    pub async fn request_agreement(&self, actor: &Principal, req: AgreementRequest) -> Result<Agreement, PolicyError> {
        Self::may(actor, Action::RequestAgreement(&req.consumer))?;
        self.catalog.department(&req.provider.org, &req.provider.department).await?;
        self.catalog.department(&req.consumer.org, &req.consumer.department).await?;
        if req.provider.role.is_some() {
            return Err(PolicyError::invalid("provider", "a provider is a department, without a role"));
        }
        if req.provider.org == req.consumer.org && req.provider.department == req.consumer.department {
            return Err(PolicyError::invalid("consumer", "a department reads its own datasets without an agreement"));
        }
        if req.datasets.is_empty() {
            return Err(PolicyError::invalid("dataset", "name at least one dataset"));
        }
        for d in &req.datasets {
            self.check_dataset_terms(&req.provider, d).await?;
            // A column named twice is a mistake or an attempt to swell every party's view of the
            // agreement (attack 9, F8: 20 000 copies).
            let mut seen = std::collections::BTreeSet::new();
            if let Some(c) = d.columns.iter().find(|c| !seen.insert(c.as_str())) {
                return Err(PolicyError::invalid("columns", format!("{c:?} of {} is named more than once", d.dataset)));
            }
        }
        if req.purposes.is_empty() {
            return Err(PolicyError::invalid("purpose", "name at least one purpose"));
        }
        let purposes = self.purposes(&req.consumer.org).await?;
        // The consumer department's own purposes or its organisation's shared ones: a department
        // does not read under another's purpose and legal basis (attack 9, F3).
        for p in &req.purposes {
            let own = |x: &&Purpose| &x.slug == p && x.department.as_ref().is_none_or(|d| *d == req.consumer.department);
            if !purposes.iter().any(|x| own(&x)) {
                return Err(PolicyError::invalid("purpose", format!("{p:?} is not a purpose of {}", req.consumer)));
            }
        }
        let basis_slug = match &req.legal_basis {
            Some(b) => b.clone(),
            None => purposes.iter().find(|x| x.slug == req.purposes[0]).map(|x| x.legal_basis.clone()).unwrap_or_default(),
        };
        let legal_basis = self.legal_basis(&req.consumer.org, &basis_slug).await?;
        let today = chrono::Utc::now().date_naive();
        let valid_from = req.valid_from.unwrap_or(today);
        for day in [Some(valid_from), req.valid_to].into_iter().flatten() {
            use chrono::Datelike;
            if !(2000..=2199).contains(&day.year()) {
                return Err(PolicyError::invalid("valid", format!("{day}: an agreement's dates lie in the years 2000 to 2199")));
            }
        }
        if let Some(to) = req.valid_to
            && to < valid_from
        {
            return Err(PolicyError::invalid("valid-to", "is before valid-from"));
        }
        let terms = Terms {
            datasets: req.datasets,
            purposes: req.purposes,
            legal_basis,
            valid_from,
            valid_to: req.valid_to,
            release_fortrolig: req.release_fortrolig,
        };
        let terms_json = serde_json::to_string(&terms).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        let mut tx = self.raw.begin_write().await?;
        let next: i64 =
            sqlx::query("SELECT COALESCE(MAX(id), 0) + 1 AS next FROM agreements").fetch_one(&mut *tx).await?.try_get("next")?;
        let at = now();
        sqlx::query(
            "INSERT INTO agreements (id, provider_org, provider_department, consumer_org, consumer_department, consumer_role, \
             state, terms, hmac_key, revision, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, 'requested', $7, $8, 1, $9, $9)",
        )
        .bind(next)
        .bind(&req.provider.org)
        .bind(&req.provider.department)
        .bind(&req.consumer.org)
        .bind(&req.consumer.department)
        .bind(req.consumer.role.map(|r| r.as_str().to_string()))
        .bind(&terms_json)
        .bind(hex::encode(key))
        .bind(&at)
        .execute(&mut *tx)
        .await
        .map_err(|e| exists_or(e, "agreement", &next.to_string()))?;
        sqlx::query("INSERT INTO agreement_events (agreement, revision, state, terms, actor, note, at) VALUES ($1, 1, 'requested', $2, $3, NULL, $4)")
            .bind(next)
            .bind(&terms_json)
            .bind(actor.name())
            .bind(&at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.agreement(next).await
    }

    async fn check_dataset_terms(&self, provider: &Party, d: &DatasetTerms) -> Result<(), PolicyError> {
        let r: DatasetRef = d.dataset.parse().map_err(|e: tverr_core::ModelError| PolicyError::invalid("dataset", e.to_string()))?;
        let meta = self.catalog.dataset(&r).await?;
        if meta.org != provider.org || meta.department != provider.department {
            return Err(PolicyError::invalid(
                "dataset",
                format!("{} belongs to {}/{}, not to the provider {provider}", d.dataset, meta.org, meta.department),
            ));
        }
        let columns = self.catalog.columns(&r).await?;
        let find = |name: &str, field: &str| {
            columns
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| PolicyError::invalid(field, format!("{} has no column {name:?}", d.dataset)))
        };
        for c in &d.columns {
            find(c, "column")?;
        }
        for (c, mask) in &d.masks {
            let col = find(c, "mask")?;
            if !d.columns.is_empty() && !d.columns.contains(c) {
                return Err(PolicyError::invalid("mask", format!("{c:?} is masked but not among the permitted columns")));
            }
            let ok = match mask {
                Mask::Redact | Mask::Hmac => true,
                Mask::Partial => col.column_type == ColumnType::Text,
                Mask::YearOnly => matches!(col.column_type, ColumnType::Date | ColumnType::Timestamp),
                Mask::Round(_) => matches!(col.column_type, ColumnType::Integer | ColumnType::Float),
            };
            if !ok {
                return Err(PolicyError::invalid("mask", format!("{mask} does not apply to {c:?}, a {} column", col.column_type)));
            }
        }
        if d.min_group_size.is_some_and(|k| k < 3) {
            return Err(PolicyError::invalid("min-group-size", "must be at least 3"));
        }
        if let Some(f) = &d.row_filter
            && (f.trim().is_empty() || f.contains(';'))
        {
            return Err(PolicyError::invalid("row-filter", "must be one SQL boolean expression"));
        }
        Ok(())
    }

    /// One agreement.
    pub async fn agreement(&self, id: i64) -> Result<Agreement, PolicyError> {
        let row = sqlx::query(&format!("{AGREEMENT_SELECT} WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| not_found("agreement", id.to_string()))?;
        agreement_from_row(&row, chrono::Utc::now().date_naive())
    }

    /// Every agreement, newest last.
    pub async fn agreements(&self) -> Result<Vec<Agreement>, PolicyError> {
        let today = chrono::Utc::now().date_naive();
        let rows = sqlx::query(&format!("{AGREEMENT_SELECT} ORDER BY id")).fetch_all(self.pool()).await?;
        rows.iter().map(|r| agreement_from_row(r, today)).collect()
    }

    /// An agreement's history, oldest first.
    pub async fn agreement_events(&self, id: i64) -> Result<Vec<AgreementEvent>, PolicyError> {
        Ok(sqlx::query_as("SELECT revision, state, actor, note, at FROM agreement_events WHERE agreement = $1 ORDER BY revision")
            .bind(id)
            .fetch_all(self.pool())
            .await?)
    }

    /// Approves a requested agreement: only a steward of the provider department may.
    pub async fn approve(&self, actor: &Principal, id: i64, note: Option<&str>) -> Result<Agreement, PolicyError> {
        self.transition(actor, id, note, AgreementState::Approved).await
    }

    /// Denies a requested agreement: only a steward of the provider department may.
    pub async fn deny(&self, actor: &Principal, id: i64, note: Option<&str>) -> Result<Agreement, PolicyError> {
        self.transition(actor, id, note, AgreementState::Denied).await
    }

    /// Revokes an agreement: a steward of either side may. It stops applying at once.
    pub async fn revoke(&self, actor: &Principal, id: i64, note: Option<&str>) -> Result<Agreement, PolicyError> {
        self.transition(actor, id, note, AgreementState::Revoked).await
    }

    async fn transition(&self, actor: &Principal, id: i64, note: Option<&str>, to: AgreementState) -> Result<Agreement, PolicyError> {
        let a = self.agreement(id).await?;
        let allowed_from: &[AgreementState] = match to {
            AgreementState::Approved | AgreementState::Denied => {
                Self::may(actor, Action::Decide(&a))?;
                &[AgreementState::Requested]
            }
            AgreementState::Revoked => {
                Self::may(actor, Action::Revoke(&a))?;
                &[AgreementState::Requested, AgreementState::Approved, AgreementState::Expired]
            }
            AgreementState::Requested | AgreementState::Expired => {
                return Err(PolicyError::invalid("state", format!("agreement {id} cannot be set to {to}")));
            }
        };
        if !allowed_from.contains(&a.state) {
            return Err(PolicyError::invalid("state", format!("agreement {id} is {}; it cannot become {to}", a.state)));
        }
        let terms_json = serde_json::to_string(&a.terms).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
        let at = now();
        let mut tx = self.raw.begin_write().await?;
        // Guarded by the revision, so two concurrent changes cannot both apply.
        let done =
            sqlx::query("UPDATE agreements SET state = $1, revision = revision + 1, updated_at = $2 WHERE id = $3 AND revision = $4")
                .bind(to.as_str())
                .bind(&at)
                .bind(id)
                .bind(a.revision)
                .execute(&mut *tx)
                .await?;
        if done.rows_affected() != 1 {
            return Err(PolicyError::invalid("state", format!("agreement {id} changed meanwhile; try again")));
        }
        sqlx::query(
            "INSERT INTO agreement_events (agreement, revision, state, terms, actor, note, at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(a.revision + 1)
        .bind(to.as_str())
        .bind(&terms_json)
        .bind(actor.name())
        .bind(note.map(str::to_string))
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.agreement(id).await
    }

    // ---- the decision ----

    /// The approved agreements a department consumes, with their state as of `today`.
    pub(crate) async fn agreements_of(&self, org: &str, dept: &str, today: chrono::NaiveDate) -> Result<Vec<Agreement>, PolicyError> {
        let rows = sqlx::query(&format!(
            "{AGREEMENT_SELECT} WHERE consumer_org = $1 AND consumer_department = $2 AND state = 'approved' ORDER BY id"
        ))
        .bind(org)
        .bind(dept)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| agreement_from_row(r, today)).collect()
    }
}

pub(crate) const AGREEMENT_SELECT: &str = "SELECT id, provider_org, provider_department, consumer_org, consumer_department, consumer_role, \
     state, terms, hmac_key, revision, created_at, updated_at FROM agreements";

pub(crate) fn agreement_from_row(r: &AnyRow, today: chrono::NaiveDate) -> Result<Agreement, PolicyError> {
    let terms: String = r.try_get("terms")?;
    let terms: Terms = serde_json::from_str(&terms).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
    let role: Option<String> = r.try_get("consumer_role")?;
    let mut state = AgreementState::parse_stored(&r.try_get::<String, _>("state")?)?;
    if state == AgreementState::Approved && terms.valid_to.is_some_and(|to| today > to) {
        state = AgreementState::Expired;
    }
    let key: String = r.try_get("hmac_key")?;
    Ok(Agreement {
        id: r.try_get("id")?,
        provider: Party { org: r.try_get("provider_org")?, department: r.try_get("provider_department")?, role: None },
        consumer: Party {
            org: r.try_get("consumer_org")?,
            department: r.try_get("consumer_department")?,
            role: role.map(|x| x.parse()).transpose()?,
        },
        state,
        terms,
        revision: r.try_get("revision")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        hmac_key: hex::decode(key).map_err(|e| PolicyError::Corrupt(e.to_string()))?,
    })
}
