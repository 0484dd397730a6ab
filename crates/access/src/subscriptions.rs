//! Subscriptions: a consumer who may read a dataset registers a URL, and every new version of
//! the dataset is POSTed there as a small signed event — the dataset, the version, its time and
//! row counts, and a link to the change feed, never row data. The rows themselves are read
//! through the change feed, through the door, like any read.
//!
//! Delivery is at least once: each new version becomes one delivery per subscription in the
//! catalogue (`Catalog::fan_out_versions`), which any node may take under a lease and tries
//! until the receiver answers 2xx or the retry window (24 h) has passed. Before every attempt
//! the subscriber's own API token (sealed with the signing secret) is authenticated and the
//! policy asked again whether they may read the dataset for the subscription's purpose: a
//! revoked or expired agreement, a removed user or a revoked token withholds the event at
//! once, and it is never sent.

use std::collections::HashMap;
use std::sync::Arc;

use futures::StreamExt;
use serde::Serialize;
use tverr_connect::{AddressPolicy, SecretBox};
use tverr_core::DatasetRef;
use tverr_policy::{Denial, Principal};
use tverr_store::{Attempt, Delivery, StoreError, SubscriptionRow, Timestamp};

use crate::{Channel, Engine, QueryError, RecordKind};

/// The deliveries `subscription_deliveries` lists by default.
pub const DEFAULT_DELIVERIES_LISTED: i64 = 50;

/// The most subscriptions one user may have.
pub const MAX_SUBSCRIPTIONS_PER_USER: i64 = 100;

/// The longest receiver URL kept.
const MAX_URL_BYTES: usize = 2000;

/// How a deployment delivers events.
#[derive(Debug, Clone)]
pub struct SubscriptionConfig {
    /// The file with the key that seals secrets (the connectors' key).
    pub key_path: std::path::PathBuf,
    /// Addresses receivers may have beyond the public internet (`TVERR_WEBHOOK_ALLOW`).
    pub addresses: AddressPolicy,
    /// This node's name in leases.
    pub node: String,
    /// How long a node holds a delivery it is trying.
    pub lease: std::time::Duration,
    /// The wait before the first retry; each further failure doubles it, to at most an hour.
    pub retry: std::time::Duration,
    /// How long after the version an event is tried before it is given up.
    pub give_up: std::time::Duration,
    /// How long one POST may take.
    pub timeout: std::time::Duration,
    /// POSTs in flight at once.
    pub concurrency: usize,
    /// The site's public address, for the change feed's link (else the link is a path).
    pub public_url: Option<String>,
}

impl Default for SubscriptionConfig {
    fn default() -> Self {
        Self {
            key_path: std::path::PathBuf::from("connector-key"),
            addresses: AddressPolicy::default(),
            node: "tverr".into(),
            lease: std::time::Duration::from_secs(60),
            retry: std::time::Duration::from_secs(10),
            give_up: std::time::Duration::from_secs(24 * 3600),
            timeout: std::time::Duration::from_secs(10),
            concurrency: 64,
            public_url: None,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Subscriptions {
    secrets: SecretBox,
    config: SubscriptionConfig,
    poster: tverr_connect::Poster,
}

/// What a subscription keeps sealed.
#[derive(serde::Serialize, serde::Deserialize)]
struct Sealed {
    /// The signing secret.
    secret: String,
    /// The subscriber's API token, and its id for revoking it.
    token: String,
    token_id: String,
}

/// A subscription to make.
#[derive(Debug, Clone, Default)]
pub struct NewSubscription {
    /// `ORG/DATASET`.
    pub dataset: String,
    /// Where the events go: an `http(s)` URL.
    pub url: String,
    /// The purpose the subscriber reads the dataset for (none for open data).
    pub purpose: Option<String>,
}

/// A subscription as its subscriber sees it: never the secret.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SubscriptionInfo {
    /// Its id.
    pub id: String,
    /// `ORG/DATASET`.
    pub dataset: String,
    /// Where events are POSTed.
    pub url: String,
    /// The user who receives them.
    pub subscriber: String,
    /// The purpose they read the dataset for.
    pub purpose: Option<String>,
    /// Who made it.
    pub created_by: String,
    /// When.
    #[schema(value_type = String)]
    pub created_at: Timestamp,
    /// The newest version an event has been made for.
    pub last_version: i64,
    /// The newest event, if any.
    pub last_delivery: Option<Delivery>,
}

/// A subscription just made, with the secret that signs its events: shown this once.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CreatedSubscription {
    /// The subscription.
    pub subscription: SubscriptionInfo,
    /// The signing secret (`Tverr-Signature`); it is not shown again.
    pub secret: String,
}

fn invalid(field: &str, message: impl Into<String>) -> QueryError {
    QueryError::Store(StoreError::Invalid { field: field.to_string(), message: message.into() })
}

fn missing(id: &str) -> QueryError {
    QueryError::Store(StoreError::NotFound { what: "subscription", name: id.to_string() })
}

fn sealed_name(id: &str) -> String {
    format!("subscription:{id}")
}

fn later(d: std::time::Duration) -> Timestamp {
    (chrono::Utc::now() + chrono::Duration::from_std(d).unwrap_or(chrono::Duration::hours(1))).into()
}

/// Checks a receiver's URL: `http(s)`, a host, no credentials in it, and an address the
/// operator allows (loopback, private and link-local ranges only when allowed).
async fn check_url(addresses: &AddressPolicy, text: &str) -> Result<url::Url, QueryError> {
    if text.len() > MAX_URL_BYTES {
        return Err(invalid("url", format!("longer than {MAX_URL_BYTES} bytes")));
    }
    let url = url::Url::parse(text.trim()).map_err(|e| invalid("url", format!("{text:?} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("url", "only http and https URLs can receive events"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("url", "a URL with a user name or password is not kept; let the receiver check the signature instead"));
    }
    if url.fragment().is_some() {
        return Err(invalid("url", "a URL with a fragment (#…) cannot receive events"));
    }
    let host = url.host_str().ok_or_else(|| invalid("url", "the URL names no host"))?;
    let port = url.port_or_known_default().unwrap_or(443);
    addresses.resolve(host, port).await.map_err(|e| match e {
        tverr_connect::ConnectError::Refused(m) => QueryError::NotAllowed(m),
        other => invalid("url", other.to_string()),
    })?;
    Ok(url)
}

impl Engine {
    /// Lets this engine keep subscriptions and deliver their events with `config`, opening (or
    /// making) the sealing key.
    pub fn with_subscriptions(mut self, config: SubscriptionConfig) -> Result<Self, QueryError> {
        let secrets = SecretBox::open(&config.key_path).map_err(|e| QueryError::Invalid(e.to_string()))?;
        self.subscriptions = Some(Arc::new(Subscriptions { secrets, config, poster: tverr_connect::Poster::default() }));
        Ok(self)
    }

    fn subscription_runtime(&self) -> Result<&Subscriptions, QueryError> {
        self.subscriptions.as_deref().ok_or_else(|| QueryError::Invalid("this node is not configured for subscriptions".into()))
    }

    /// Wakes the delivery loop (a version was just committed in this process).
    pub(crate) fn wake_deliveries(&self) {
        self.deliveries_due.notify_one();
    }

    /// Waits until this process commits a version or `tick` has passed.
    pub async fn deliveries_wait(&self, tick: std::time::Duration) {
        let _ = tokio::time::timeout(tick, self.deliveries_due.notified()).await;
    }

    /// Registers a webhook for `who`, a signed-in user who may read the dataset for `purpose`
    /// (the operator acts as one with `--as`). Events start with the next version.
    pub async fn create_subscription(
        &self,
        who: &Principal,
        channel: Channel,
        new: NewSubscription,
    ) -> Result<CreatedSubscription, QueryError> {
        let runtime = self.subscription_runtime()?;
        let Principal::User(user) = who else {
            return Err(QueryError::NotAllowed(
                "a subscription follows a user's access: make it as a signed-in user (tverr subscription create --as USER)".into(),
            ));
        };
        let dataset: DatasetRef = new.dataset.parse().map_err(|e: tverr_core::ModelError| invalid("dataset", e.to_string()))?;
        let purpose = new.purpose.as_deref().map(str::trim).filter(|p| !p.is_empty());
        // The subscriber must be able to read the dataset now, as for a read (the same 404 for
        // one they may not see, the same refusal without a purpose).
        let grant = self.grant(who, purpose, &dataset, &dataset.to_string(), channel).await?;
        // Open data is read for no purpose: none is kept (one given is not checked for it).
        let purpose = purpose.filter(|_| grant.classification() != tverr_core::Classification::Open);
        let url = check_url(&runtime.config.addresses, &new.url).await?;
        if self.store.catalog.subscription_count(&user.username).await? >= MAX_SUBSCRIPTIONS_PER_USER {
            return Err(QueryError::NotAllowed(format!(
                "{} has {MAX_SUBSCRIPTIONS_PER_USER} subscriptions, the most one user may have; delete one first",
                user.username
            )));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let intent = serde_json::json!({
            "action": "create", "subscription": id, "dataset": dataset.to_string(), "url": url.as_str(),
            "subscriber": user.username, "purpose": purpose,
        });
        self.log_event(RecordKind::SubscriptionChange, who, channel, intent).await?;
        let secret = tverr_connect::webhook::new_secret().map_err(|e| QueryError::Invalid(e.to_string()))?;
        let token = self.policy.create_token(&user.username, None).await?;
        let sealed = Sealed { secret: secret.clone(), token: token.secret.clone(), token_id: token.id.clone() };
        let sealed = runtime.secrets.seal(&sealed_name(&id), &sealed).map_err(|e| QueryError::Invalid(e.to_string()))?;
        let last_version = self.store.catalog.versions(&dataset).await?.last().map_or(-1, |v| v.version);
        let row = SubscriptionRow {
            id,
            org: dataset.org.as_str().to_string(),
            dataset: dataset.dataset.as_str().to_string(),
            url: url.to_string(),
            subscriber: user.username.clone(),
            purpose: purpose.map(str::to_string),
            secrets: sealed,
            created_by: user.username.clone(),
            created_at: Timestamp::now(),
            last_version,
        };
        if let Err(e) = self.store.catalog.insert_subscription(&row).await {
            let _ = self.policy.revoke_token(&token.id).await;
            return Err(e.into());
        }
        Ok(CreatedSubscription { subscription: info(&row, None), secret })
    }

    /// A subscription `who` may see: their own (any, for the operator); another's is missing.
    async fn subscription_for(&self, who: &Principal, id: &str) -> Result<SubscriptionRow, QueryError> {
        let row = match self.store.catalog.subscription(id).await {
            Ok(r) => r,
            Err(StoreError::NotFound { .. }) => return Err(missing(id)),
            Err(e) => return Err(e.into()),
        };
        match who {
            Principal::Operator(_) => Ok(row),
            Principal::User(u) if u.username == row.subscriber => Ok(row),
            _ => Err(missing(id)),
        }
    }

    /// The subscriptions `who` may see (their own; every one for the operator), optionally of
    /// one dataset, oldest first.
    pub async fn subscriptions(&self, who: &Principal, dataset: Option<&DatasetRef>) -> Result<Vec<SubscriptionInfo>, QueryError> {
        let mut out = Vec::new();
        for row in self.store.catalog.subscriptions().await? {
            let mine = match who {
                Principal::Operator(_) => true,
                Principal::User(u) => u.username == row.subscriber,
                _ => false,
            };
            if !mine || dataset.is_some_and(|d| d.org.as_str() != row.org || d.dataset.as_str() != row.dataset) {
                continue;
            }
            let last = self.store.catalog.deliveries(&row.id, 1).await?.into_iter().next();
            out.push(info(&row, last));
        }
        Ok(out)
    }

    /// One subscription.
    pub async fn subscription(&self, who: &Principal, id: &str) -> Result<SubscriptionInfo, QueryError> {
        let row = self.subscription_for(who, id).await?;
        let last = self.store.catalog.deliveries(&row.id, 1).await?.into_iter().next();
        Ok(info(&row, last))
    }

    /// A subscription's deliveries, newest version first.
    pub async fn subscription_deliveries(&self, who: &Principal, id: &str, limit: i64) -> Result<Vec<Delivery>, QueryError> {
        let row = self.subscription_for(who, id).await?;
        Ok(self.store.catalog.deliveries(&row.id, limit.clamp(1, 1000)).await?)
    }

    /// Deletes a subscription and revokes its token.
    pub async fn delete_subscription(&self, who: &Principal, channel: Channel, id: &str) -> Result<(), QueryError> {
        let row = self.subscription_for(who, id).await?;
        let intent = serde_json::json!({
            "action": "delete", "subscription": id, "dataset": format!("{}/{}", row.org, row.dataset), "subscriber": row.subscriber,
        });
        self.log_event(RecordKind::SubscriptionChange, who, channel, intent).await?;
        self.store.catalog.delete_subscription(id).await?;
        if let Ok(runtime) = self.subscription_runtime()
            && let Ok(sealed) = runtime.secrets.open_sealed::<Sealed>(&sealed_name(id), &row.secrets)
            && let Err(e) = self.policy.revoke_token(&sealed.token_id).await
        {
            tracing::warn!(subscription = id, error = %e, "cannot revoke the deleted subscription's token");
        }
        Ok(())
    }

    /// Makes the deliveries of new versions, then tries the due ones this node can take; how
    /// many were tried. Other nodes on the same catalogue do the same: the lease gives each
    /// attempt to one of them.
    pub async fn deliver_due_events(&self) -> Result<usize, QueryError> {
        let runtime = self.subscription_runtime()?;
        self.store.catalog.fan_out_versions(Timestamp::now()).await?;
        let mut tried = 0;
        loop {
            // A batch is sent well within its lease, even to receivers that time out.
            let batch = (runtime.config.concurrency.max(1) * 4) as i64;
            let claimed =
                self.store.catalog.claim_deliveries(&runtime.config.node, Timestamp::now(), later(runtime.config.lease), batch).await?;
            if claimed.is_empty() {
                return Ok(tried);
            }
            let full = claimed.len() as i64 == batch;
            tried += claimed.len();
            let subscriptions: HashMap<String, SubscriptionRow> =
                self.store.catalog.subscriptions().await?.into_iter().map(|s| (s.id.clone(), s)).collect();
            let subscriptions = &subscriptions;
            let mut readers = Readers::default();
            // Who each subscriber is, and what they may read, is asked once per batch.
            for d in &claimed {
                if let Some(s) = subscriptions.get(&d.subscription) {
                    readers.check(self, runtime, s).await;
                }
            }
            let readers = &readers;
            let done: Vec<(String, Attempt)> = futures::stream::iter(claimed)
                .map(|d| async move {
                    let attempt = match subscriptions.get(&d.subscription) {
                        Some(s) => self.attempt(runtime, s, readers, &d).await,
                        None => withheld("the subscription was deleted"),
                    };
                    (d.id, attempt)
                })
                .buffer_unordered(runtime.config.concurrency.max(1))
                .collect()
                .await;
            self.store.catalog.finish_deliveries(&runtime.config.node, &done).await?;
            if !full {
                return Ok(tried);
            }
        }
    }

    /// One attempt to deliver `d`.
    async fn attempt(&self, runtime: &Subscriptions, s: &SubscriptionRow, readers: &Readers, d: &Delivery) -> Attempt {
        let (secret, counts) = match readers.get(&s.id) {
            Some(Reader::May(secret, counts)) => (secret, *counts),
            Some(Reader::MayNot(why)) => return withheld(why),
            Some(Reader::Unknown(why)) => return retry(runtime, d, None, format!("the subscriber's access could not be checked: {why}")),
            None => return retry(runtime, d, None, "the subscriber's access could not be checked".to_string()),
        };
        let dataset = format!("{}/{}", s.org, s.dataset);
        let version = match self.version_meta(s, d.version).await {
            Ok(Some(v)) => v,
            Ok(None) => return withheld(&format!("{dataset} has no version {}", d.version)),
            Err(e) => return retry(runtime, d, None, format!("cannot read the version: {e}")),
        };
        let changes = format!(
            "{}/api/v1/datasets/{}/{}/changes?from_version={}&to_version={}",
            runtime.config.public_url.as_deref().unwrap_or("").trim_end_matches('/'),
            s.org,
            s.dataset,
            d.version - 1,
            d.version
        );
        let body = serde_json::json!({
            "id": d.id,
            "type": "dataset.version",
            "subscription": s.id,
            "dataset": dataset,
            "version": d.version,
            "committed_at": version.committed_at,
            "mode": version.mode.as_str(),
            "rows_written": counts.then_some(version.rows_written),
            "rows_removed": counts.then_some(version.rows_removed),
            "changes": if d.version > 0 { Some(changes) } else { None },
        });
        let body = serde_json::to_vec(&body).unwrap_or_default();
        let Ok(url) = url::Url::parse(&s.url) else { return withheld("the subscription's URL cannot be read") };
        let signature = tverr_connect::webhook::signature(secret, chrono::Utc::now().timestamp(), &body);
        let headers = [("Tverr-Signature", signature), ("Tverr-Event", d.id.clone())];
        match runtime.poster.post_json(&runtime.config.addresses, &url, &headers, body, runtime.config.timeout).await {
            Ok(status) if (200..300).contains(&status) => {
                Attempt { state: "delivered".into(), next_attempt_at: Timestamp::now(), status: Some(i64::from(status)), error: None }
            }
            Ok(status) => retry(runtime, d, Some(i64::from(status)), format!("the receiver answered HTTP {status}")),
            Err(e) => retry(runtime, d, None, e.to_string()),
        }
    }

    async fn version_meta(&self, s: &SubscriptionRow, version: i64) -> Result<Option<tverr_store::VersionMeta>, QueryError> {
        let r: DatasetRef =
            format!("{}/{}", s.org, s.dataset).parse().map_err(|e: tverr_core::ModelError| QueryError::Invalid(e.to_string()))?;
        Ok(self.store.catalog.versions(&r).await?.into_iter().find(|v| v.version == version))
    }
}

/// Whether a subscriber may have an event now.
enum Reader {
    /// Yes: the signing secret, and whether row counts may be shown.
    May(String, bool),
    /// No, and why: the event is withheld.
    MayNot(String),
    /// Not known (the catalogue did not answer): tried again later.
    Unknown(String),
}

/// Per subscription of a batch: whether its subscriber may have events.
#[derive(Default)]
struct Readers(HashMap<String, Reader>);

impl Readers {
    fn get(&self, id: &str) -> Option<&Reader> {
        self.0.get(id)
    }

    /// Authenticates the subscriber's token and asks the policy whether they may read the
    /// dataset for the subscription's purpose now.
    async fn check(&mut self, engine: &Engine, runtime: &Subscriptions, s: &SubscriptionRow) {
        if self.0.contains_key(&s.id) {
            return;
        }
        let outcome = async {
            let sealed: Sealed = match runtime.secrets.open_sealed(&sealed_name(&s.id), &s.secrets) {
                Ok(x) => x,
                Err(e) => return Reader::MayNot(e.to_string()),
            };
            let who = match engine.policy.authenticate_token(&sealed.token).await {
                Ok(w) => w,
                Err(e @ tverr_policy::PolicyError::Unauthenticated(_)) => {
                    return Reader::MayNot(format!("the subscription can no longer act for {} ({e})", s.subscriber));
                }
                Err(e) => return Reader::Unknown(e.to_string()),
            };
            let Ok(dataset) = format!("{}/{}", s.org, s.dataset).parse::<DatasetRef>() else {
                return Reader::MayNot(format!("{}/{} is not a dataset", s.org, s.dataset));
            };
            let grant = match engine.policy.entitle(&who, s.purpose.as_deref(), &dataset).await {
                Ok(Ok(g)) => g,
                Ok(Err(Denial::NotFound)) => return Reader::MayNot(format!("{} may no longer read {dataset}", s.subscriber)),
                Ok(Err(_)) => return Reader::MayNot(format!("{} may no longer read {dataset} for this purpose", s.subscriber)),
                Err(e) => return Reader::Unknown(e.to_string()),
            };
            // Row counts as the dataset page shows them: not to a reader from whom protected
            // people's rows are kept (the count would tell how many there are).
            let counts = !matches!(grant.protection(), tverr_policy::Protection::ByPerson { visible: false, .. });
            Reader::May(sealed.secret, counts)
        }
        .await;
        self.0.insert(s.id.clone(), outcome);
    }
}

fn info(row: &SubscriptionRow, last_delivery: Option<Delivery>) -> SubscriptionInfo {
    SubscriptionInfo {
        id: row.id.clone(),
        dataset: format!("{}/{}", row.org, row.dataset),
        url: row.url.clone(),
        subscriber: row.subscriber.clone(),
        purpose: row.purpose.clone(),
        created_by: row.created_by.clone(),
        created_at: row.created_at,
        last_version: row.last_version,
        last_delivery,
    }
}

fn withheld(why: &str) -> Attempt {
    Attempt { state: "withheld".into(), next_attempt_at: Timestamp::now(), status: None, error: Some(why.to_string()) }
}

/// A failed attempt: tried again after the back-off, or given up when the next try would be
/// past the retry window.
fn retry(runtime: &Subscriptions, d: &Delivery, status: Option<i64>, error: String) -> Attempt {
    let wait = crate::connectors::backoff(runtime.config.retry, d.attempts + 1).min(std::time::Duration::from_secs(3600));
    let next = chrono::Utc::now() + chrono::Duration::from_std(wait).unwrap_or(chrono::Duration::hours(1));
    let give_up = d.created_at.instant() + chrono::Duration::from_std(runtime.config.give_up).unwrap_or(chrono::Duration::hours(24));
    if next > give_up {
        return Attempt {
            state: "failed".into(),
            next_attempt_at: Timestamp::now(),
            status,
            error: Some(format!("{error}; given up after {} attempts", d.attempts + 1)),
        };
    }
    Attempt { state: "pending".into(), next_attempt_at: next.into(), status, error: Some(error) }
}
