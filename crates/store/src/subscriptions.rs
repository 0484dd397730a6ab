//! The catalogue's subscriptions and their deliveries (`migrations/0015_subscriptions.sql`).
//! What an event says and whether it may be sent is the access layer's; here are the rows, the
//! fan-out of new versions into deliveries, and the leases that give each delivery attempt to
//! one node.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::catalog::is_unique_violation;
use crate::{Catalog, StoreError, Timestamp};

/// A subscription as the catalogue holds it.
#[derive(Debug, Clone)]
pub struct SubscriptionRow {
    /// Its id (random, unguessable).
    pub id: String,
    /// The organisation of the dataset.
    pub org: String,
    /// The dataset's slug.
    pub dataset: String,
    /// Where events are POSTed.
    pub url: String,
    /// The user who receives the events, and whose access they follow.
    pub subscriber: String,
    /// The purpose the subscriber reads the dataset for.
    pub purpose: Option<String>,
    /// The signing secret and the subscriber's token, sealed.
    pub secrets: String,
    /// Who made it.
    pub created_by: String,
    /// When.
    pub created_at: Timestamp,
    /// The newest version deliveries have been made for.
    pub last_version: i64,
}

/// One version's event to one subscription.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Delivery {
    /// The event's id (the same on every attempt: a receiver drops repeats by it).
    pub id: String,
    /// The subscription.
    pub subscription: String,
    /// The version the event is about.
    pub version: i64,
    /// When the version was seen.
    pub created_at: Timestamp,
    /// `pending` (to be tried, again after a failure), `delivered`, `failed` (given up after
    /// the retry window), or `withheld` (the subscriber could no longer read the dataset).
    pub state: String,
    /// Attempts made.
    pub attempts: i64,
    /// When the next attempt is due.
    pub next_attempt_at: Timestamp,
    /// The HTTP status of the last attempt, if the receiver answered.
    pub last_status: Option<i64>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When it was delivered.
    pub delivered_at: Option<Timestamp>,
}

const SUBSCRIPTION_COLUMNS: &str = "id, org, dataset, url, subscriber, purpose, secrets, created_by, created_at, last_version";
const DELIVERY_COLUMNS: &str =
    "id, subscription, version, created_at, state, attempts, next_attempt_at, last_status, last_error, delivered_at";

fn subscription_from_row(r: &AnyRow) -> Result<SubscriptionRow, StoreError> {
    Ok(SubscriptionRow {
        id: r.try_get("id")?,
        org: r.try_get("org")?,
        dataset: r.try_get("dataset")?,
        url: r.try_get("url")?,
        subscriber: r.try_get("subscriber")?,
        purpose: r.try_get("purpose")?,
        secrets: r.try_get("secrets")?,
        created_by: r.try_get("created_by")?,
        created_at: Timestamp::from_row(r, "created_at")?,
        last_version: r.try_get("last_version")?,
    })
}

fn delivery_from_row(r: &AnyRow) -> Result<Delivery, StoreError> {
    let delivered: Option<String> = r.try_get("delivered_at")?;
    Ok(Delivery {
        id: r.try_get("id")?,
        subscription: r.try_get("subscription")?,
        version: r.try_get("version")?,
        created_at: Timestamp::from_row(r, "created_at")?,
        state: r.try_get("state")?,
        attempts: r.try_get("attempts")?,
        next_attempt_at: Timestamp::from_row(r, "next_attempt_at")?,
        last_status: r.try_get("last_status")?,
        last_error: r.try_get("last_error")?,
        delivered_at: match delivered {
            None => None,
            Some(_) => Some(Timestamp::from_row(r, "delivered_at")?),
        },
    })
}

/// The outcome of one delivery attempt.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The new state.
    pub state: String,
    /// When to try again (for `pending`).
    pub next_attempt_at: Timestamp,
    /// The receiver's HTTP status.
    pub status: Option<i64>,
    /// Why it failed.
    pub error: Option<String>,
}

impl Catalog {
    /// How many subscriptions `subscriber` has.
    pub async fn subscription_count(&self, subscriber: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM subscriptions WHERE subscriber = $1").bind(subscriber).fetch_one(self.pool()).await?)
    }

    /// Adds a subscription.
    pub async fn insert_subscription(&self, s: &SubscriptionRow) -> Result<(), StoreError> {
        sqlx::query(&format!("INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"))
            .bind(&s.id)
            .bind(&s.org)
            .bind(&s.dataset)
            .bind(&s.url)
            .bind(&s.subscriber)
            .bind(s.purpose.clone())
            .bind(&s.secrets)
            .bind(&s.created_by)
            .bind(s.created_at.to_string())
            .bind(s.last_version)
            .execute(self.pool())
            .await
            .map_err(
                |e| if is_unique_violation(&e) { StoreError::Exists { what: "subscription", name: s.id.clone() } } else { e.into() },
            )?;
        Ok(())
    }

    /// Every subscription, oldest first.
    pub async fn subscriptions(&self) -> Result<Vec<SubscriptionRow>, StoreError> {
        let rows = sqlx::query(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY created_at, id"))
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(subscription_from_row).collect()
    }

    /// One subscription.
    pub async fn subscription(&self, id: &str) -> Result<SubscriptionRow, StoreError> {
        let row = sqlx::query(&format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1"))
            .bind(id)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| StoreError::NotFound { what: "subscription", name: id.to_string() })?;
        subscription_from_row(&row)
    }

    /// Removes a subscription and its deliveries.
    pub async fn delete_subscription(&self, id: &str) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query("DELETE FROM subscriptions WHERE id = $1").bind(id).execute(&mut *tx).await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound { what: "subscription", name: id.to_string() });
        }
        sqlx::query("DELETE FROM subscription_deliveries WHERE subscription = $1").bind(id).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Makes a pending delivery for every version a subscription has not had one for, in one
    /// transaction; how many. Two nodes doing it at once make each delivery once.
    pub async fn fan_out_versions(&self, now: Timestamp) -> Result<usize, StoreError> {
        let behind = sqlx::query(
            "SELECT s.id, s.org, s.dataset, s.last_version, v.version FROM subscriptions s \
             JOIN dataset_versions v ON v.org = s.org AND v.dataset = s.dataset AND v.version > s.last_version \
             ORDER BY s.id, v.version",
        )
        .fetch_all(self.pool())
        .await?;
        if behind.is_empty() {
            return Ok(0);
        }
        let now = now.to_string();
        let mut made = 0;
        let mut tx = self.begin_write().await?;
        let mut newest: std::collections::BTreeMap<String, i64> = std::collections::BTreeMap::new();
        for row in &behind {
            let (id, version): (String, i64) = (row.try_get("id")?, row.try_get("version")?);
            let done = sqlx::query(&format!(
                "INSERT INTO subscription_deliveries ({DELIVERY_COLUMNS}, lease_owner, lease_until) \
                 VALUES ($1, $2, $3, $4, 'pending', 0, $5, NULL, NULL, NULL, NULL, NULL) ON CONFLICT (subscription, version) DO NOTHING"
            ))
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(&id)
            .bind(version)
            .bind(&now)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            made += done.rows_affected() as usize;
            let entry = newest.entry(id).or_insert(version);
            *entry = (*entry).max(version);
        }
        for (id, version) in newest {
            sqlx::query("UPDATE subscriptions SET last_version = $1 WHERE id = $2 AND last_version < $3")
                .bind(version)
                .bind(&id)
                .bind(version)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(made)
    }

    /// Takes up to `limit` due deliveries for `node` until `until`: pending, due at `now`, and
    /// held by no other node.
    pub async fn claim_deliveries(&self, node: &str, now: Timestamp, until: Timestamp, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        let (now, until) = (now.to_string(), until.to_string());
        // Read first: a node with nothing due takes no write lock.
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM subscription_deliveries WHERE state = 'pending' AND next_attempt_at <= $1 \
             AND (lease_until IS NULL OR lease_until < $2) ORDER BY next_attempt_at, id LIMIT $3",
        )
        .bind(&now)
        .bind(&now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.begin_write().await?;
        let mut claimed = Vec::new();
        for id in ids {
            // Checked again in the update: of two nodes that chose the same delivery, one wins.
            let done = sqlx::query(
                "UPDATE subscription_deliveries SET lease_owner = $1, lease_until = $2 \
                 WHERE id = $3 AND state = 'pending' AND (lease_until IS NULL OR lease_until < $4)",
            )
            .bind(node)
            .bind(&until)
            .bind(&id)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                claimed.push(id);
            }
        }
        let mut out = Vec::with_capacity(claimed.len());
        for id in &claimed {
            let row = sqlx::query(&format!("SELECT {DELIVERY_COLUMNS} FROM subscription_deliveries WHERE id = $1"))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
            out.push(delivery_from_row(&row)?);
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Records attempts of deliveries `node` holds and gives their leases up, in one
    /// transaction.
    pub async fn finish_deliveries(&self, node: &str, done: &[(String, Attempt)]) -> Result<(), StoreError> {
        let mut tx = self.begin_write().await?;
        let now = Timestamp::now().to_string();
        for (id, a) in done {
            sqlx::query(
                "UPDATE subscription_deliveries SET state = $1, attempts = attempts + 1, next_attempt_at = $2, last_status = $3, \
                 last_error = $4, delivered_at = CASE WHEN $5 = 'delivered' THEN $6 ELSE delivered_at END, \
                 lease_owner = NULL, lease_until = NULL WHERE id = $7 AND lease_owner = $8",
            )
            .bind(&a.state)
            .bind(a.next_attempt_at.to_string())
            .bind(a.status)
            .bind(a.error.clone())
            .bind(&a.state)
            .bind(&now)
            .bind(id)
            .bind(node)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A subscription's deliveries, newest version first.
    pub async fn deliveries(&self, subscription: &str, limit: i64) -> Result<Vec<Delivery>, StoreError> {
        let rows = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM subscription_deliveries WHERE subscription = $1 ORDER BY version DESC LIMIT $2"
        ))
        .bind(subscription)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(delivery_from_row).collect()
    }
}
