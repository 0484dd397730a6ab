//! The one question every handler, command and page asks before it acts: [`Policy::may`].

use super::*;

impl Policy {
    /// Whether `who` may do `action`: the one answer that handlers, the command line and what
    /// the web pages offer all ask. `Err(Forbidden)` says who may.
    pub fn may(who: &Principal, action: Action<'_>) -> Result<(), PolicyError> {
        let user = match who {
            Principal::User(u) => Some(u),
            _ => None,
        };
        let admin_of = |org: &str| user.is_some_and(|u| u.role == Role::Admin && u.org == org);
        let (may, who_may) = match action {
            Action::RequestAgreement(consumer) => (
                grant::is_steward_of(who, &consumer.org, &consumer.department) || admin_of(&consumer.org),
                format!("a steward of {consumer} or an admin of {}", consumer.org),
            ),
            Action::Decide(a) => {
                (grant::is_steward_of(who, &a.provider.org, &a.provider.department), format!("a steward of the provider {}", a.provider))
            }
            Action::Revoke(a) => (
                grant::is_steward_of(who, &a.provider.org, &a.provider.department)
                    || grant::is_steward_of(who, &a.consumer.org, &a.consumer.department),
                format!("a steward of {} or {}", a.provider, a.consumer),
            ),
            Action::Write { org, department } => (grant::is_steward_of(who, org, department), format!("a steward of {org}/{department}")),
            Action::Upload => (user.is_some_and(|u| u.role == Role::Steward && u.department.is_some()), "a steward".to_string()),
            Action::ReadAuditLog { org } => (user.is_some_and(|u| u.role == Role::Auditor && u.org == org), format!("an auditor of {org}")),
        };
        if may { Ok(()) } else { Err(PolicyError::Forbidden(format!("only {who_may} may {action}"))) }
    }
}

/// Something a principal asks to do rather than read, answered by [`Policy::may`].
#[derive(Debug, Clone, Copy)]
pub enum Action<'a> {
    /// Request an agreement for a consumer department.
    RequestAgreement(&'a Party),
    /// Approve or deny a requested agreement.
    Decide(&'a Agreement),
    /// Revoke an agreement.
    Revoke(&'a Agreement),
    /// Create datasets in, or write versions of the datasets of, a department.
    Write {
        /// The organisation.
        org: &'a str,
        /// The department.
        department: &'a str,
    },
    /// Upload files at all (whether the upload page is offered).
    Upload,
    /// Read an organisation's access log.
    ReadAuditLog {
        /// The organisation.
        org: &'a str,
    },
}

impl std::fmt::Display for Action<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Action::RequestAgreement(c) => write!(f, "request an agreement for {c}"),
            Action::Decide(a) => write!(f, "approve or deny agreement {}", a.id),
            Action::Revoke(a) => write!(f, "revoke agreement {}", a.id),
            Action::Write { org, department } => write!(f, "create or change the datasets of {org}/{department}"),
            Action::Upload => write!(f, "upload"),
            Action::ReadAuditLog { org } => write!(f, "read the access log of {org}"),
        }
    }
}
