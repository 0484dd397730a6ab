//! Who may sign in, and with what: local users with argon2id passwords, API tokens and browser
//! sessions (stored only as SHA-256 of the secret), and the authentication that turns a
//! credential back into a principal.

use super::*;

/// Prefix of every API token, so leaked tokens are recognisable by secret scanners.
pub const TOKEN_PREFIX: &str = "tverr_";

/// Prefix of every browser session secret; a session is never an API token and the other way
/// round.
pub const SESSION_PREFIX: &str = "tverrs_";

/// A new API token: shown once; only its hash is stored.
#[derive(Debug, Clone)]
pub struct NewToken {
    /// Token id, for revoking.
    pub id: String,
    /// The secret to send as `Authorization: Bearer …`.
    pub secret: String,
    /// Expiry (RFC 3339), if any.
    pub expires_at: Option<String>,
}

/// An API token as its owner sees it listed: never its secret, which is not kept.
#[derive(Debug, Clone)]
pub struct TokenInfo {
    /// The token's id (the part of the secret after `tverr_`, before the second `_`).
    pub id: String,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it stops working, if ever.
    pub expires_at: Option<String>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<String>,
}

impl Policy {
    /// Creates a local user. Departmental roles (steward, employee) need a department; admin and
    /// auditor belong to the organisation. The password, if given, is stored as an argon2id hash.
    pub async fn create_user(
        &self,
        org: &str,
        department: Option<&str>,
        username: &str,
        role: Role,
        password: Option<&str>,
    ) -> Result<User, PolicyError> {
        let name = Slug::parse(username, "user").map_err(|e| PolicyError::invalid("username", e.to_string()))?;
        self.catalog.org(org).await?;
        match (role.is_departmental(), department) {
            (true, None) => {
                return Err(PolicyError::invalid("role", format!("a {role} belongs to a department: use ORG/DEPARTMENT/USERNAME")));
            }
            (_, Some(d)) => {
                self.catalog.department(org, d).await?;
            }
            (false, None) => {}
        }
        let hash = match password {
            Some(p) if p.chars().count() < 12 => {
                return Err(PolicyError::invalid("password", "must have at least 12 characters"));
            }
            Some(p) => Some(hash_password(p)?),
            None => None,
        };
        sqlx::query("INSERT INTO users (username, org, department, role, password_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
            .bind(name.as_str())
            .bind(org)
            .bind(department.map(str::to_string))
            .bind(role.as_str())
            .bind(hash)
            .bind(now())
            .execute(self.pool())
            .await
            .map_err(|e| exists_or(e, "user", name.as_str()))?;
        Ok(User { username: name.to_string(), org: org.into(), department: department.map(Into::into), role })
    }

    /// One user.
    pub async fn user(&self, username: &str) -> Result<User, PolicyError> {
        let row = sqlx::query("SELECT username, org, department, role FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(self.pool())
            .await?
            .ok_or_else(|| not_found("user", username))?;
        user_from_row(&row)
    }

    /// All users, optionally of one organisation.
    pub async fn users(&self, org: Option<&str>) -> Result<Vec<User>, PolicyError> {
        let rows = sqlx::query("SELECT username, org, department, role FROM users ORDER BY org, username").fetch_all(self.pool()).await?;
        let users = rows.iter().map(user_from_row).collect::<Result<Vec<_>, _>>()?;
        Ok(users.into_iter().filter(|u| org.is_none_or(|o| u.org == o)).collect())
    }

    /// Checks a user's password. Unknown users and wrong passwords give the same error.
    pub async fn login(&self, username: &str, password: &str) -> Result<Principal, PolicyError> {
        let refused = || PolicyError::Unauthenticated("wrong user name or password".into());
        let row = sqlx::query("SELECT username, org, department, role, password_hash FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else {
            // Spend the same time as a real check, so timing does not tell which users exist.
            let _ = verify_password(password, &DUMMY_HASH);
            return Err(refused());
        };
        let hash: Option<String> = row.try_get("password_hash")?;
        match hash {
            Some(h) if verify_password(password, &h) => Ok(Principal::User(SignedIn::new(user_from_row(&row)?))),
            _ => Err(refused()),
        }
    }

    /// Creates an API token for a user; the secret is returned once and only its hash is kept.
    pub async fn create_token(&self, username: &str, expires_days: Option<u32>) -> Result<NewToken, PolicyError> {
        self.user(username).await?;
        self.insert_token("api_tokens", "username", username, expires_days).await
    }

    /// Creates an API token that acts as a citizen (as an ID-porten login would), for the demo
    /// and tests. The number must be a valid fødselsnummer or D-number.
    pub async fn create_citizen_token(&self, pid: &str, expires_days: Option<u32>) -> Result<NewToken, PolicyError> {
        let pid = tverr_core::Fodselsnummer::parse(pid).map_err(|e| PolicyError::invalid("citizen", e.to_string()))?;
        self.insert_token("citizen_tokens", "pid", pid.as_str(), expires_days).await
    }

    async fn insert_token(&self, table: &str, owner_column: &str, owner: &str, expires_days: Option<u32>) -> Result<NewToken, PolicyError> {
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        let id = hex::encode(id);
        let secret = format!("{TOKEN_PREFIX}{id}_{}", hex::encode(secret));
        let expires_at = expires_days
            .map(|d| (chrono::Utc::now() + chrono::Duration::days(i64::from(d))).to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        sqlx::query(&format!("INSERT INTO {table} (id, {owner_column}, hash, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)"))
            .bind(&id)
            .bind(owner)
            .bind(token_hash(&secret))
            .bind(now())
            .bind(expires_at.clone())
            .execute(self.pool())
            .await?;
        Ok(NewToken { id, secret, expires_at })
    }

    /// A user's API tokens, newest first (never their secrets, which are not kept).
    pub async fn tokens(&self, username: &str) -> Result<Vec<TokenInfo>, PolicyError> {
        let rows =
            sqlx::query("SELECT id, created_at, expires_at, revoked_at FROM api_tokens WHERE username = $1 ORDER BY created_at DESC, id")
                .bind(username)
                .fetch_all(self.pool())
                .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenInfo {
                    id: r.try_get("id")?,
                    created_at: r.try_get("created_at")?,
                    expires_at: r.try_get("expires_at")?,
                    revoked_at: r.try_get("revoked_at")?,
                })
            })
            .collect()
    }

    /// Revokes one of `username`'s own API tokens by its id. Another user's token, or one already
    /// revoked, is not found: a user learns nothing of tokens that are not theirs.
    pub async fn revoke_own_token(&self, username: &str, id: &str) -> Result<(), PolicyError> {
        let revoked = sqlx::query("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND username = $3 AND revoked_at IS NULL")
            .bind(now())
            .bind(id)
            .bind(username)
            .execute(self.pool())
            .await?
            .rows_affected();
        if revoked == 0 {
            return Err(not_found("active token", id));
        }
        Ok(())
    }

    /// Revokes a token by its id (or by the token itself); it stops working at once.
    pub async fn revoke_token(&self, id_or_secret: &str) -> Result<(), PolicyError> {
        let id = match id_or_secret.strip_prefix(TOKEN_PREFIX) {
            Some(rest) => rest.split('_').next().unwrap_or_default().to_string(),
            None => id_or_secret.to_string(),
        };
        let mut revoked = 0;
        for table in ["api_tokens", "citizen_tokens"] {
            revoked += sqlx::query(&format!("UPDATE {table} SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL"))
                .bind(now())
                .bind(&id)
                .execute(self.pool())
                .await?
                .rows_affected();
        }
        if revoked == 0 {
            return Err(not_found("active token", id));
        }
        Ok(())
    }

    /// Starts a browser session for a signed-in principal (a user or a citizen) for `hours`;
    /// `method` says how they signed in (`password`, `oidc:<issuer>`, `demo-citizen`). The
    /// secret (prefix [`SESSION_PREFIX`], never accepted as an API token) is returned once; only
    /// its hash is stored.
    pub async fn create_session(&self, who: &Principal, method: &str, hours: u32) -> Result<NewToken, PolicyError> {
        let (kind, user, pid) = match who {
            Principal::User(u) => ("user", Some(u), None),
            Principal::Citizen(c) => ("citizen", None, Some(c.pid())),
            _ => return Err(PolicyError::invalid("session", "only users and citizens sign in to the web pages")),
        };
        let mut id = [0u8; 6];
        let mut secret = [0u8; 32];
        rand::rng().fill_bytes(&mut id);
        rand::rng().fill_bytes(&mut secret);
        let id = hex::encode(id);
        let secret = format!("{SESSION_PREFIX}{id}_{}", hex::encode(secret));
        let expires_at =
            (chrono::Utc::now() + chrono::Duration::hours(i64::from(hours.max(1)))).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        sqlx::query(
            "INSERT INTO web_sessions (id, hash, method, kind, username, org, department, role, pid, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(token_hash(&secret))
        .bind(method)
        .bind(kind)
        .bind(user.map(|u| u.username.clone()))
        .bind(user.map(|u| u.org.clone()))
        .bind(user.and_then(|u| u.department.clone()))
        .bind(user.map(|u| u.role.to_string()))
        .bind(pid)
        .bind(now())
        .bind(&expires_at)
        .execute(self.pool())
        .await?;
        Ok(NewToken { id, secret, expires_at: Some(expires_at) })
    }

    /// Who a browser session signs in, if it is valid, unexpired and not revoked. A password
    /// session reads the user again, so a changed role or a removed user takes effect at once.
    pub async fn authenticate_session(&self, secret: &str) -> Result<Principal, PolicyError> {
        let refused = |why: &str| PolicyError::Unauthenticated(why.to_string());
        if !secret.starts_with(SESSION_PREFIX) {
            return Err(refused("not a Tverr session"));
        }
        let row = sqlx::query(
            "SELECT method, kind, username, org, department, role, pid, expires_at, revoked_at FROM web_sessions WHERE hash = $1",
        )
        .bind(token_hash(secret))
        .fetch_optional(self.pool())
        .await?
        .ok_or_else(|| refused("unknown session"))?;
        if row.try_get::<Option<String>, _>("revoked_at")?.is_some() {
            return Err(refused("the session has ended"));
        }
        let expires: String = row.try_get("expires_at")?;
        let at = chrono::DateTime::parse_from_rfc3339(&expires).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
        if at <= chrono::Utc::now() {
            return Err(refused("the session has expired"));
        }
        let method: String = row.try_get("method")?;
        match row.try_get::<String, _>("kind")?.as_str() {
            "citizen" => Ok(Principal::Citizen(Citizen::new(row.try_get("pid")?))),
            "user" if method == "password" => {
                let username: String = row.try_get("username")?;
                self.user(&username).await.map(|u| Principal::User(SignedIn::new(u))).map_err(|_| refused("the user no longer exists"))
            }
            "user" => Ok(Principal::User(SignedIn::new(User {
                username: row.try_get("username")?,
                org: row.try_get("org")?,
                department: row.try_get("department")?,
                role: row.try_get::<String, _>("role")?.parse()?,
            }))),
            other => Err(PolicyError::Corrupt(format!("a session of unknown kind {other:?}"))),
        }
    }

    /// Ends a browser session at once.
    pub async fn end_session(&self, secret: &str) -> Result<(), PolicyError> {
        sqlx::query("UPDATE web_sessions SET revoked_at = $1 WHERE hash = $2 AND revoked_at IS NULL")
            .bind(now())
            .bind(token_hash(secret))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Who an API token acts for (a user, or a citizen), if it is valid, unexpired and not
    /// revoked.
    pub async fn authenticate_token(&self, secret: &str) -> Result<Principal, PolicyError> {
        let refused = |why: &str| PolicyError::Unauthenticated(why.to_string());
        if !secret.starts_with(TOKEN_PREFIX) {
            return Err(refused("not a Tverr API token"));
        }
        let hash = token_hash(secret);
        // Tokens and users are generation tables: a token revoked or created anywhere moves the
        // generation on, so a token read under this generation is what the catalogue holds.
        // An unknown token is an error, which `kept` does not keep.
        let snapshot = self.snapshot().await?;
        let token =
            kept(&snapshot.tokens, hash.clone(), async { self.load_token(&hash).await?.ok_or_else(|| refused("unknown token")) }).await?;
        if token.revoked {
            return Err(refused("the token has been revoked"));
        }
        if token.expires_at.is_some_and(|at| at <= chrono::Utc::now()) {
            return Err(refused("the token has expired"));
        }
        Ok(token.principal)
    }

    /// The row of the API token with this hash, if there is one.
    async fn load_token(&self, hash: &str) -> Result<Option<HeldToken>, PolicyError> {
        let user = sqlx::query(
            "SELECT u.username, u.org, u.department, u.role, t.expires_at, t.revoked_at \
             FROM api_tokens t JOIN users u ON u.username = t.username WHERE t.hash = $1",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        let (row, principal) = match user {
            Some(row) => {
                let user = user_from_row(&row)?;
                (row, Principal::User(SignedIn::new(user)))
            }
            None => {
                let row = sqlx::query("SELECT pid, expires_at, revoked_at FROM citizen_tokens WHERE hash = $1")
                    .bind(hash)
                    .fetch_optional(self.pool())
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let pid: String = row.try_get("pid")?;
                (row, Principal::Citizen(Citizen::new(pid)))
            }
        };
        let revoked: Option<String> = row.try_get("revoked_at")?;
        let expires: Option<String> = row.try_get("expires_at")?;
        let expires_at = match expires {
            Some(e) => {
                Some(chrono::DateTime::parse_from_rfc3339(&e).map_err(|e| PolicyError::Corrupt(e.to_string()))?.with_timezone(&chrono::Utc))
            }
            None => None,
        };
        Ok(Some(HeldToken { principal, expires_at, revoked: revoked.is_some() }))
    }

    // ---- legal bases and purposes ----
}

pub(crate) fn user_from_row(r: &AnyRow) -> Result<User, PolicyError> {
    Ok(User {
        username: r.try_get("username")?,
        org: r.try_get("org")?,
        department: r.try_get("department")?,
        role: r.try_get::<String, _>("role")?.parse()?,
    })
}

pub(crate) fn token_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A hash of a random password, checked when the user does not exist.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let mut p = [0u8; 24];
    rand::rng().fill_bytes(&mut p);
    hash_password(&hex::encode(p)).unwrap_or_default()
});

pub(crate) fn hash_password(p: &str) -> Result<String, PolicyError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt = SaltString::encode_b64(&salt).map_err(|e| PolicyError::Corrupt(e.to_string()))?;
    argon2::Argon2::default().hash_password(p.as_bytes(), &salt).map(|h| h.to_string()).map_err(|e| PolicyError::Corrupt(e.to_string()))
}

pub(crate) fn verify_password(p: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| argon2::Argon2::default().verify_password(p.as_bytes(), &h).is_ok())
}
