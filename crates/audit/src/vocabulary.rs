//! The log's vocabulary, in one place: every kind of record the log holds and every channel a
//! record can come through. Writers name them by these enums, so a new kind or channel is added
//! here or nowhere; the text each stands for is what the log stores (and what its hash covers),
//! so a text never changes once written.

macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)*
        }

        impl $name {
            /// Every value, in the order listed.
            pub const ALL: &'static [Self] = &[$(Self::$variant,)*];

            /// The text the log stores.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)*
                }
            }

            /// The value a stored text stands for.
            pub fn parse(text: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|v| v.as_str() == text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// What a record is about.
    RecordKind {
        /// A read of data that is not open: before the first row leaves.
        Access = "access",
        /// The people a later batch of a read adds.
        Subjects = "subjects",
        /// How a read ended: rows released, status, duration.
        Completion = "completion",
        /// A read the policy refused.
        Refusal = "refusal",
        /// Entries removed under the retention rule.
        Retention = "retention",
        /// A write about to be made (ingest, replace, upsert, erasure).
        WriteIntent = "write-intent",
        /// A new version written from a file.
        Ingest = "ingest",
        /// A person's rows erased.
        Erasure = "erasure",
        /// A write that failed after its intent was recorded.
        WriteFailed = "write-failed",
        /// An agreement change about to be made.
        AgreementIntent = "agreement-intent",
        /// An agreement change made.
        Agreement = "agreement",
        /// A change of a column's category, requested or decided.
        CategoryChange = "category-change",
        /// A register of address protection named.
        ProtectionRegister = "protection-register",
        /// A register of address protection removed.
        ProtectionRegisterRemoved = "protection-register-removed",
        /// A protection link set.
        ProtectionLink = "protection-link",
        /// A protection link removed.
        ProtectionLinkRemoved = "protection-link-removed",
        /// A register of parental responsibility named.
        GuardianshipRegister = "guardianship-register",
        /// A dataset's metadata changed (its legal basis).
        DatasetChange = "dataset-change",
        /// An organisation or department created.
        OrganisationChange = "organisation-change",
        /// A user account created.
        UserChange = "user-change",
        /// An API token issued or revoked.
        TokenChange = "token-change",
        /// A purpose registered.
        PurposeChange = "purpose-change",
        /// A legal basis registered.
        LegalBasisChange = "legal-basis-change",
        /// A search or verification of the log itself.
        AuditRead = "audit-read",
        /// A citizen reading who accessed them.
        CitizenRead = "citizen-read",
        /// A log-in, whatever its outcome.
        Login = "login",
        /// A log-out.
        Logout = "logout",
        /// A credential's use.
        Authentication = "authentication",
        /// A connector created or deleted.
        ConnectorChange = "connector-change",
        /// A connector run that ended without a new version (unchanged source, or a failure
        /// before any write).
        ConnectorRun = "connector-run",
        /// A subscription created or deleted.
        SubscriptionChange = "subscription-change",
        /// A backup of the whole deployment about to be taken (a copy of every dataset).
        Backup = "backup",
        /// A backup put into this deployment (the first record after a restore).
        Restore = "restore",
    }
}

vocabulary! {
    /// The way in a record came through.
    Channel {
        /// A `tverr` command that is not one of the reads below.
        Cli = "cli",
        /// `tverr sql`.
        CliSql = "cli-sql",
        /// `tverr export`.
        CliExport = "cli-export",
        /// `tverr lookup`.
        CliLookup = "cli-lookup",
        /// The HTTP API, where no more particular channel below applies.
        Http = "http",
        /// `POST /api/v1/sql`.
        HttpSql = "http-sql",
        /// `/api/v1/datasets/…/rows`.
        HttpRows = "http-rows",
        /// `/api/v1/subjects/…`.
        HttpLookup = "http-lookup",
        /// OGC API – Features (`/ogc/…`).
        Ogc = "ogc",
        /// `/api/v1/me/data`.
        HttpMe = "http-me",
        /// `/api/v1/properties…` (the property service).
        HttpProperty = "http-property",
        /// An upload over the API.
        HttpUpload = "http-upload",
        /// The web pages.
        Web = "web",
        /// An upload on the web pages.
        WebUpload = "web-upload",
        /// The demo municipality being created.
        Demo = "demo",
        /// The benchmark harness.
        Bench = "bench",
        /// A connector's scheduled or requested run.
        Connector = "connector",
        /// `/api/v1/connectors`.
        HttpConnectors = "http-connectors",
        /// `/api/v1/datasets/…/changes` (the change feed).
        HttpChanges = "http-changes",
        /// `/api/v1/subscriptions`.
        HttpSubscriptions = "http-subscriptions",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_text_is_distinct_and_reads_back() {
        for (i, k) in RecordKind::ALL.iter().enumerate() {
            assert_eq!(RecordKind::parse(k.as_str()), Some(*k));
            assert!(RecordKind::ALL[..i].iter().all(|o| o.as_str() != k.as_str()), "{k} twice");
        }
        for (i, c) in Channel::ALL.iter().enumerate() {
            assert_eq!(Channel::parse(c.as_str()), Some(*c));
            assert!(Channel::ALL[..i].iter().all(|o| o.as_str() != c.as_str()), "{c} twice");
        }
        assert_eq!(serde_json::json!({"channel": Channel::HttpSql}).to_string(), r#"{"channel":"http-sql"}"#);
        assert_eq!(RecordKind::parse("no-such-kind"), None);
    }
}
