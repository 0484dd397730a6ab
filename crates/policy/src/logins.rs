//! What a log-in needs between requests, kept in the catalogue so that any node answers the next
//! request as the node that answered the first would: failed attempts counted per user name and
//! per client address (the throttle), and browser log-ins sent to an OIDC issuer and not yet
//! back. Times are the nodes' clocks in Unix seconds (nodes keep time with NTP).

use super::*;
use crate::credentials::token_hash;

/// A browser log-in sent to an issuer: what its callback needs to finish it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingLogin {
    /// The issuer's index in the configuration.
    pub issuer: usize,
    /// The PKCE code verifier.
    pub verifier: String,
    /// The nonce the ID token must carry.
    pub nonce: String,
    /// The local page to go to afterwards.
    pub next: String,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

impl Policy {
    /// Counts one log-in attempt against each `(key, limit)` within `window`. `Some(seconds to
    /// wait)` when a key has had more than its limit: the password is then not checked. Each
    /// count is one atomic statement, so attempts on several nodes at once get no more password
    /// checks than the limit.
    pub async fn count_login_attempt(&self, keys: &[(&str, u32)], window: std::time::Duration) -> Result<Option<u64>, PolicyError> {
        let now = unix_now();
        let window = window.as_secs() as i64;
        let mut wait: Option<i64> = None;
        for (key, limit) in keys {
            let (since, n): (i64, i64) = sqlx::query_as(
                "INSERT INTO login_attempts (key, since, n) VALUES ($1, $2, 1) ON CONFLICT (key) DO UPDATE SET \
                 since = CASE WHEN login_attempts.since <= $3 THEN $2 ELSE login_attempts.since END, \
                 n = CASE WHEN login_attempts.since <= $3 THEN 1 ELSE login_attempts.n + 1 END \
                 RETURNING since, n",
            )
            .bind(*key)
            .bind(now)
            .bind(now - window)
            .fetch_one(self.pool())
            .await?;
            if n > i64::from(*limit) {
                let left = (since + window - now).max(1);
                wait = Some(wait.map_or(left, |w| w.max(left)));
            }
        }
        // Now and then, counts whose window has passed are forgotten.
        if rand::random::<u8>() == 0 {
            sqlx::query("DELETE FROM login_attempts WHERE since <= $1").bind(now - window).execute(self.pool()).await?;
        }
        Ok(wait.map(|w| w as u64))
    }

    /// A successful log-in: the user name's count is cleared and the attempt taken back from the
    /// client's.
    pub async fn login_attempt_succeeded(&self, user_key: &str, client_key: &str) -> Result<(), PolicyError> {
        sqlx::query("DELETE FROM login_attempts WHERE key = $1").bind(user_key).execute(self.pool()).await?;
        sqlx::query("UPDATE login_attempts SET n = n - 1 WHERE key = $1 AND n > 0").bind(client_key).execute(self.pool()).await?;
        Ok(())
    }

    /// Keeps a browser log-in sent to an issuer under its `state` (only the state's hash is
    /// stored), and forgets those older than `keep`.
    pub async fn start_pending_login(&self, state: &str, login: &PendingLogin, keep: std::time::Duration) -> Result<(), PolicyError> {
        let now = unix_now();
        sqlx::query("DELETE FROM oidc_pending WHERE started_at <= $1").bind(now - keep.as_secs() as i64).execute(self.pool()).await?;
        sqlx::query("INSERT INTO oidc_pending (state_hash, issuer, verifier, nonce, next, started_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(token_hash(state))
            .bind(login.issuer as i64)
            .bind(&login.verifier)
            .bind(&login.nonce)
            .bind(&login.next)
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Takes out the log-in pending under `state`, if one started within `keep`: once only, on
    /// whichever node the issuer sends the browser back to.
    pub async fn take_pending_login(&self, state: &str, keep: std::time::Duration) -> Result<Option<PendingLogin>, PolicyError> {
        let row = sqlx::query("DELETE FROM oidc_pending WHERE state_hash = $1 RETURNING issuer, verifier, nonce, next, started_at")
            .bind(token_hash(state))
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let started: i64 = row.try_get("started_at")?;
        if unix_now() - started >= keep.as_secs() as i64 {
            return Ok(None);
        }
        let issuer: i64 = row.try_get("issuer")?;
        Ok(Some(PendingLogin {
            issuer: usize::try_from(issuer).map_err(|_| PolicyError::invalid("issuer", "not an index"))?,
            verifier: row.try_get("verifier")?,
            nonce: row.try_get("nonce")?,
            next: row.try_get("next")?,
        }))
    }
}
