//! The policy vocabulary: principals, roles, masks, purposes, legal bases and agreements.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::PolicyError;

/// A local user's role (DESIGN.md, "Who uses it").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Manages an organisation: departments, users, purposes, legal bases.
    Admin,
    /// Owns a department's datasets and approves agreements that share them.
    Steward,
    /// Works in a department and reads what the department is entitled to.
    Employee,
    /// Reads an organisation's audit log.
    Auditor,
}

impl Role {
    /// Every role, in the order they are listed in messages.
    pub const ALL: &'static [Role] = &[Role::Admin, Role::Steward, Role::Employee, Role::Auditor];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Steward => "steward",
            Role::Employee => "employee",
            Role::Auditor => "auditor",
        }
    }

    /// Whether the role belongs to a department (steward, employee) rather than an organisation.
    pub fn is_departmental(self) -> bool {
        matches!(self, Role::Steward | Role::Employee)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Role {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL
            .iter()
            .copied()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| PolicyError::invalid("role", format!("{s:?} is not a role; expected admin, steward, employee or auditor")))
    }
}

/// A local user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct User {
    /// Unique user name.
    pub username: String,
    /// Organisation slug.
    pub org: String,
    /// Department slug, for departmental roles.
    pub department: Option<String>,
    /// Role.
    pub role: Role,
}

/// Who is asking. Built only from a verified credential, never from request headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// No credential: open datasets only.
    Anonymous,
    /// The built-in operator of the command line: may read everything, but must give a purpose
    /// for non-open data and is logged like anyone else. Made only from the [`OperatorKey`].
    Operator(OperatorSeal),
    /// An employee: a local user (password or API token), or one whose verified OIDC token
    /// (Entra ID, Ansattporten) names the organisation, department and role.
    User(SignedIn),
    /// A citizen signed in with ID-porten at level substantial or high.
    Citizen(Citizen),
    /// A system with a Maskinporten token.
    System(System),
}

/// A user whose credential the policy layer checked (a password, an API token, a browser
/// session, an OIDC token), or whom the operator acts as ([`OperatorKey::act_as`]). Only the
/// policy layer makes one: a [`User`] read from the catalogue is not a signed-in user.
///
/// ```compile_fail,E0423
/// // Code outside the policy layer cannot sign a user in by naming them.
/// fn forge(u: tverr_policy::User) -> tverr_policy::Principal {
///     tverr_policy::Principal::User(tverr_policy::SignedIn(u))
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn(User);

impl SignedIn {
    pub(crate) fn new(user: User) -> Self {
        Self(user)
    }

    /// The user.
    pub fn user(&self) -> &User {
        &self.0
    }
}

impl std::ops::Deref for SignedIn {
    type Target = User;

    fn deref(&self) -> &User {
        &self.0
    }
}

/// A citizen the policy layer authenticated (ID-porten, a citizen token, or the demo's log-in
/// through [`CitizenDemoKey`]).
///
/// ```compile_fail,E0451
/// // Code outside the policy layer cannot make a citizen out of a number.
/// let forged = tverr_policy::Principal::Citizen(tverr_policy::Citizen { pid: "01017012345".into() });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Citizen {
    pid: String,
}

impl Citizen {
    pub(crate) fn new(pid: String) -> Self {
        Self { pid }
    }

    /// Fødselsnummer or D-number (the `pid` claim).
    pub fn pid(&self) -> &str {
        &self.pid
    }
}

/// A system the policy layer authenticated (a Maskinporten token).
///
/// ```compile_fail,E0451
/// // Code outside the policy layer cannot make a system principal.
/// let forged = tverr_policy::Principal::System(tverr_policy::System { org: "hamar".into(), scopes: vec![] });
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    org: String,
    scopes: Vec<String>,
}

impl System {
    pub(crate) fn new(org: String, scopes: Vec<String>) -> Self {
        Self { org, scopes }
    }

    /// The organisation the token was issued to (by orgnr).
    pub fn org(&self) -> &str {
        &self.org
    }

    /// Its scopes.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }
}

/// The proof inside [`Principal::Operator`]: it has no public constructor, so an operator
/// principal comes only from [`OperatorKey::principal`].
///
/// ```compile_fail,E0423
/// // Code outside the policy layer cannot make an operator out of nothing.
/// let forged = tverr_policy::Principal::Operator(tverr_policy::OperatorSeal(()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperatorSeal(pub(crate) ());

/// The capability to act as the built-in operator. The first call of [`OperatorKey::take`] in
/// a process gets it (the command line's `main` makes that call before anything else runs);
/// every later call gets `None`, so no library code, handler or connector can take it.
#[derive(Debug)]
pub struct OperatorKey(());

/// Whether `taken` was still false, setting it: each key is handed out once per process.
fn first_take(taken: &std::sync::atomic::AtomicBool) -> bool {
    !taken.swap(true, std::sync::atomic::Ordering::SeqCst)
}

static OPERATOR_KEY_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl OperatorKey {
    /// The key, the first time it is asked for in this process; `None` after that.
    pub fn take() -> Option<Self> {
        first_take(&OPERATOR_KEY_TAKEN).then_some(Self(()))
    }

    /// The operator principal.
    pub fn principal(&self) -> Principal {
        Principal::Operator(OperatorSeal(()))
    }

    /// The operator acting as a user of the catalogue (`tverr … --as USER`): only the holder of
    /// the operator key may sign someone in without their credential.
    pub fn act_as(&self, user: User) -> Principal {
        Principal::User(SignedIn::new(user))
    }
}

/// The capability to sign anyone in as a citizen by fødselsnummer, without ID-porten: the demo's
/// log-in page. Taken once per process like the [`OperatorKey`] (`tverr serve --demo` hands it
/// to the server); no other code can make a citizen.
#[derive(Debug)]
pub struct CitizenDemoKey(());

static CITIZEN_DEMO_KEY_TAKEN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl CitizenDemoKey {
    /// The key, the first time it is asked for in this process (`tverr serve --demo`); `None`
    /// after that.
    pub fn take() -> Option<Self> {
        first_take(&CITIZEN_DEMO_KEY_TAKEN).then_some(Self(()))
    }

    /// The citizen with this number, if it is a valid fødselsnummer or D-number.
    pub fn citizen(&self, pid: &str) -> Result<Principal, tverr_core::IdentError> {
        let pid = tverr_core::Fodselsnummer::parse(pid)?;
        Ok(Principal::Citizen(Citizen::new(pid.as_str().to_string())))
    }
}

impl Principal {
    /// A short name for messages and logs.
    pub fn name(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::Operator(_) => "operator".into(),
            Principal::User(u) => u.username.clone(),
            Principal::Citizen(c) => format!("citizen:{}", c.pid()),
            Principal::System(s) => format!("system:{}", s.org()),
        }
    }
}

/// How a permitted column is released.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub enum Mask {
    /// Always null: the column exists but says nothing.
    Redact,
    /// The first characters and `***`: six characters of a person number (the birth date), one
    /// of anything else.
    Partial,
    /// A pseudonym: HMAC-SHA-256 of the value under the agreement's own key, as hex. The same
    /// value gives the same pseudonym within one agreement and a different one in another.
    Hmac,
    /// The year of a date or timestamp, as an integer.
    YearOnly,
    /// A number rounded to the nearest multiple of N (N > 0).
    Round(f64),
}

impl fmt::Display for Mask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mask::Redact => f.write_str("redact"),
            Mask::Partial => f.write_str("partial"),
            Mask::Hmac => f.write_str("hmac"),
            Mask::YearOnly => f.write_str("year_only"),
            Mask::Round(n) => write!(f, "round:{n}"),
        }
    }
}

impl FromStr for Mask {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        Ok(match s.to_ascii_lowercase().as_str() {
            "redact" => Mask::Redact,
            "partial" => Mask::Partial,
            "hmac" => Mask::Hmac,
            "year_only" | "year-only" => Mask::YearOnly,
            other => match other.strip_prefix("round:").map(str::parse::<f64>) {
                Some(Ok(n)) if n > 0.0 && n.is_finite() => Mask::Round(n),
                _ => {
                    return Err(PolicyError::invalid(
                        "mask",
                        format!("{s:?} is not a mask; expected redact, partial, hmac, year_only or round:N with N > 0"),
                    ));
                }
            },
        })
    }
}

/// In JSON a mask is its text form.
impl utoipa::PartialSchema for Mask {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^(redact|partial|hmac|year_only|round:[0-9.]+)$"))
            .description(Some("redact, partial, hmac, year_only or round:N"))
            .examples(["hmac"])
            .into()
    }
}

impl utoipa::ToSchema for Mask {}

impl From<Mask> for String {
    fn from(m: Mask) -> String {
        m.to_string()
    }
}

impl TryFrom<String> for Mask {
    type Error = PolicyError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// A legal basis (behandlingsgrunnlag): a GDPR article and the Norwegian law that grants it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct LegalBasis {
    /// Organisation that registered it.
    pub org: String,
    /// Slug, e.g. `pbl-20-1`.
    pub slug: String,
    /// GDPR article, e.g. `6(1)(e)` or `9(2)(h)`.
    pub gdpr_article: String,
    /// The Norwegian hjemmel, e.g. "plan- og bygningsloven § 21-4".
    pub hjemmel: String,
    /// A lovdata.no URL.
    pub lovdata_url: Option<String>,
}

/// A purpose (formål) an organisation processes personal data for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct Purpose {
    /// Organisation.
    pub org: String,
    /// Slug, e.g. `byggesaksbehandling`; this is what callers declare.
    pub slug: String,
    /// The department whose own datasets may be read for it.
    pub department: Option<String>,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Slug of the default legal basis (in the same organisation).
    pub legal_basis: String,
}

/// What an agreement shares of one dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DatasetTerms {
    /// `org/dataset`; the provider department must own it.
    pub dataset: String,
    /// Permitted columns. Empty: every column except special-category ones, which must always be
    /// named.
    #[serde(default)]
    pub columns: Vec<String>,
    /// Masks by column name.
    #[serde(default)]
    pub masks: std::collections::BTreeMap<String, Mask>,
    /// A SQL boolean expression over the dataset's columns; only rows where it is true are shared.
    #[serde(default)]
    pub row_filter: Option<String>,
    /// Statistics only: the consumer may run only grouped counts, sums and averages over the
    /// dataset alone, and groups with fewer rows than this are suppressed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_group_size: Option<u32>,
}

/// The terms of an agreement: fixed once requested. Changing them is a new request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Terms {
    /// Datasets shared.
    pub datasets: Vec<DatasetTerms>,
    /// Purposes (slugs in the consumer organisation) the data may be used for.
    pub purposes: Vec<String>,
    /// The legal basis, copied from the consumer's register when requested.
    pub legal_basis: LegalBasis,
    /// First day the agreement applies (inclusive), `YYYY-MM-DD`.
    pub valid_from: chrono::NaiveDate,
    /// Last day the agreement applies (inclusive), `YYYY-MM-DD`.
    pub valid_to: Option<chrono::NaiveDate>,
    /// Whether address columns of persons with `fortrolig` address protection may be released.
    #[serde(default)]
    pub release_fortrolig: bool,
}

/// The stored state of an agreement. `expired` is not stored: it is an approved agreement past
/// its last day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgreementState {
    /// Asked for by the consumer; not yet in force.
    Requested,
    /// Approved by the provider's steward; in force within its validity.
    Approved,
    /// Refused by the provider.
    Denied,
    /// Ended by either side.
    Revoked,
    /// Approved, but its last day has passed.
    Expired,
}

impl AgreementState {
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            AgreementState::Requested => "requested",
            AgreementState::Approved => "approved",
            AgreementState::Denied => "denied",
            AgreementState::Revoked => "revoked",
            AgreementState::Expired => "expired",
        }
    }

    pub(crate) fn parse_stored(s: &str) -> Result<Self, PolicyError> {
        Ok(match s {
            "requested" => AgreementState::Requested,
            "approved" => AgreementState::Approved,
            "denied" => AgreementState::Denied,
            "revoked" => AgreementState::Revoked,
            other => return Err(PolicyError::Corrupt(format!("unknown agreement state {other:?}"))),
        })
    }
}

impl fmt::Display for AgreementState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// One side of an agreement: an organisation's department (and, for consumers, optionally a role).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Party {
    /// Organisation slug.
    pub org: String,
    /// Department slug.
    pub department: String,
    /// For the consumer: only users with this role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

impl fmt::Display for Party {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.department)?;
        if let Some(r) = self.role {
            write!(f, "/{r}")?;
        }
        Ok(())
    }
}

impl FromStr for Party {
    type Err = PolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split('/').collect();
        match parts.as_slice() {
            [org, dept] => Ok(Party { org: org.to_string(), department: dept.to_string(), role: None }),
            [org, dept, role] => Ok(Party { org: org.to_string(), department: dept.to_string(), role: Some(role.parse()?) }),
            _ => Err(PolicyError::invalid("party", format!("{s:?}: expected ORG/DEPARTMENT or ORG/DEPARTMENT/ROLE"))),
        }
    }
}

/// A sharing agreement (delingsavtale).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Agreement {
    /// Number, from 1.
    pub id: i64,
    /// Who shares.
    pub provider: Party,
    /// Who receives.
    pub consumer: Party,
    /// State, with `expired` derived from the validity.
    pub state: AgreementState,
    /// The terms.
    pub terms: Terms,
    /// How many times it has changed.
    pub revision: i64,
    /// When it was requested.
    pub created_at: String,
    /// When it last changed.
    pub updated_at: String,
    #[serde(skip)]
    pub(crate) hmac_key: Vec<u8>,
}

impl Agreement {
    /// Whether it is in force on `day`.
    pub fn in_force(&self, day: chrono::NaiveDate) -> bool {
        self.state == AgreementState::Approved && self.terms.valid_from <= day && self.terms.valid_to.is_none_or(|to| day <= to)
    }
}

/// One change of an agreement.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct AgreementEvent {
    /// Revision it produced.
    pub revision: i64,
    /// State after the change.
    pub state: String,
    /// Who made it.
    pub actor: String,
    /// Why, if given.
    pub note: Option<String>,
    /// When.
    pub at: String,
}
