//! What a principal may read of one dataset for one purpose: the [`Grant`] the secure scan
//! enforces.

use serde::Serialize;
use tverr_core::{Classification, ColumnCategory, DatasetRef, SubjectKind};
use tverr_store::{ColumnMeta, DatasetMeta};

use crate::{Agreement, Mask, Principal, Purpose, Role};

/// The column that holds a person's address protection (`ugradert`, `fortrolig`,
/// `strengt_fortrolig`), as the Folkeregister names it.
pub const PROTECTION_COLUMN: &str = "adressebeskyttelse";

/// Why a read is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Basis {
    /// The dataset is open.
    Open,
    /// The built-in operator, for a declared purpose.
    Operator {
        /// Declared purpose.
        purpose: String,
    },
    /// The caller's own department owns the dataset and the purpose is the department's.
    OwnDepartment {
        /// Declared purpose.
        purpose: String,
    },
    /// An agreement in force for the declared purpose.
    Agreement {
        /// Agreement number.
        id: i64,
        /// Declared purpose.
        purpose: String,
    },
    /// A citizen reading the rows about themselves (GDPR art. 15).
    DataSubject,
    /// A parent reading the rows about their child under 16, whom a register of parental
    /// responsibility names.
    Guardian,
}

/// One permitted column and how it is released.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ColumnGrant {
    /// Column name.
    pub name: String,
    /// Mask applied in the scan, if any.
    pub mask: Option<Mask>,
    /// Category (decides the mandatory rules).
    pub category: ColumnCategory,
    /// Subject key kind, if a key column.
    pub subject: Option<SubjectKind>,
    /// For a geometry column, its CRS (`EPSG:25833`; EPSG:4326 when none was recorded).
    pub crs: Option<String>,
}

/// How the address-protection rule applies to the protected-address columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Protection {
    /// The dataset has no protected-address columns among those granted.
    NotApplicable,
    /// Null the protected-address columns in rows whose [`PROTECTION_COLUMN`] is
    /// `strengt_fortrolig`, and also `fortrolig` unless `release_fortrolig`.
    ByRow {
        /// Whether `fortrolig` rows keep their address.
        release_fortrolig: bool,
    },
    /// The dataset cannot tell who is protected: every protected-address value is withheld.
    WithholdAll,
    /// Protection is the person's, read from the registers of address protection: a row's
    /// level is the highest of the people its person keys name, and of the properties its
    /// property keys name (a property has the level of the protected people any dataset links
    /// it to: its owner in the property register, an applicant in a building case).
    ///
    /// A reader who may not see protected persons (`visible: false`) does not get their rows at
    /// all, so the protection cannot be read off a withheld address; one who may sees the rows,
    /// with the protected-address columns withheld for `strengt_fortrolig`, and for
    /// `fortrolig` unless `release_fortrolig`.
    ByPerson {
        /// The person key columns whose people decide the row's level.
        keys: Vec<String>,
        /// The property key columns whose properties decide the row's level.
        properties: Vec<String>,
        /// The columns that carry the level of another dataset's rows (protection links).
        links: Vec<String>,
        /// Whether the reader may see that a person is protected.
        visible: bool,
        /// Whether `fortrolig` rows keep their address (and, when not `visible`, their row).
        release_fortrolig: bool,
    },
}

/// What a principal may read of one dataset, for one purpose.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grant {
    /// The dataset.
    pub(crate) dataset: DatasetRef,
    /// Its classification.
    pub(crate) classification: Classification,
    /// Permitted columns, in the dataset's order.
    pub(crate) columns: Vec<ColumnGrant>,
    /// Rows to share: a SQL boolean expression over the dataset's columns.
    pub(crate) row_filter: Option<String>,
    /// The address-protection rule.
    pub(crate) protection: Protection,
    /// Why it is allowed.
    pub(crate) basis: Basis,
    /// Statistics only, with groups smaller than this suppressed.
    pub(crate) min_group_size: Option<u32>,
    /// Key for `hmac` masks (the agreement's own).
    #[serde(skip)]
    pub(crate) hmac_key: Vec<u8>,
    /// The dataset's person subject key (a fødselsnummer column), whether or not it is granted:
    /// the scan records whose data each released row is.
    pub(crate) subject_key: Option<String>,
    /// Every person subject-key column (a guardian's as well as a child's): the scan records
    /// the people of each released row from all of them.
    pub(crate) person_keys: Vec<String>,
    /// The legal basis of the read: the agreement's, or that of the department's purpose.
    pub(crate) legal_basis: Option<crate::LegalBasis>,
    /// The citizen reading (their own rows, or a child's): their own protection does not count
    /// towards a row's level, so they see their own rows; anyone else's in the row does.
    #[serde(skip)]
    pub(crate) reader: Option<String>,
}

/// Read access to a grant; it is minted only by the policy layer ([`crate::Policy::decide`]
/// and its kin), so code elsewhere cannot widen, forge or edit one.
///
/// ```compile_fail,E0451
/// // Outside the policy crate a grant cannot be built…
/// fn forge(g: &tverr_policy::Grant) -> tverr_policy::Grant {
///     tverr_policy::Grant { row_filter: None, ..g.clone() }
/// }
/// ```
///
/// ```compile_fail,E0616
/// // …nor changed.
/// fn widen(mut g: tverr_policy::Grant) -> tverr_policy::Grant {
///     g.row_filter = None;
///     g
/// }
/// ```
impl Grant {
    /// The dataset.
    pub fn dataset(&self) -> &DatasetRef {
        &self.dataset
    }

    /// Its classification.
    pub fn classification(&self) -> Classification {
        self.classification
    }

    /// Permitted columns, in the dataset's order.
    pub fn columns(&self) -> &[ColumnGrant] {
        &self.columns
    }

    /// Rows to share: a SQL boolean expression over the dataset's columns.
    pub fn row_filter(&self) -> Option<&str> {
        self.row_filter.as_deref()
    }

    /// The address-protection rule.
    pub fn protection(&self) -> &Protection {
        &self.protection
    }

    /// Why it is allowed.
    pub fn basis(&self) -> &Basis {
        &self.basis
    }

    /// Statistics only, with groups smaller than this suppressed.
    pub fn min_group_size(&self) -> Option<u32> {
        self.min_group_size
    }

    /// Key for `hmac` masks (the agreement's own).
    pub fn hmac_key(&self) -> &[u8] {
        &self.hmac_key
    }

    /// The dataset's person subject key, whether or not it is granted.
    pub fn subject_key(&self) -> Option<&str> {
        self.subject_key.as_deref()
    }

    /// Every person subject-key column.
    pub fn person_keys(&self) -> &[String] {
        &self.person_keys
    }

    /// The legal basis of the read.
    pub fn legal_basis(&self) -> Option<&crate::LegalBasis> {
        self.legal_basis.as_ref()
    }

    /// The citizen reading, whose own protection does not count towards a row's level.
    pub fn reader(&self) -> Option<&str> {
        self.reader.as_deref()
    }

    /// The same grant, releasing no row that names a protected person, whoever reads: for a
    /// document that goes out of the municipality (a neighbour notice's list of owners).
    pub fn without_protected(mut self) -> Self {
        if let Protection::ByPerson { visible, release_fortrolig, .. } = &mut self.protection {
            *visible = false;
            *release_fortrolig = false;
        }
        self
    }
}

/// Why a principal may not read a dataset. The server turns every variant except
/// `PurposeRequired` and `PurposeNotAllowed` into the same 404 as a missing dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Not entitled, or it does not exist: the caller cannot tell which.
    NotFound,
    /// Entitled for some purpose, but none was declared.
    PurposeRequired,
    /// Entitled for other purposes, not the declared one.
    PurposeNotAllowed,
}

/// Everything the decision needs, loaded by [`crate::Policy::entitle`].
pub(crate) struct Facts<'a> {
    pub principal: &'a Principal,
    pub purpose: Option<&'a str>,
    pub dataset: &'a DatasetMeta,
    pub columns: &'a [ColumnMeta],
    /// The caller's organisation's purposes.
    pub purposes: &'a [Purpose],
    /// Approved agreements of the caller's department that cover this dataset.
    pub agreements: &'a [Agreement],
    pub today: chrono::NaiveDate,
    /// Whether a register of address protection is named: then protection is the person's.
    pub protection_registered: bool,
    /// The dataset's columns that carry protection from another dataset (protection links).
    pub links: &'a [String],
}

/// The decision itself: pure, so every branch is tested without a database.
pub(crate) fn decide(f: &Facts<'_>) -> Result<Grant, Denial> {
    let r: DatasetRef = f.dataset.reference().parse().map_err(|_| Denial::NotFound)?;
    let all = || f.columns.iter().map(|c| column_grant(c, None)).collect::<Vec<_>>();
    // Who may see that a person is protected: those who hold the data already (the owning
    // department, the operator) and consumers whose agreement releases fortrolig addresses.
    let grant = |columns: Vec<ColumnGrant>, row_filter, release_fortrolig: bool, basis: Basis, hmac_key| {
        let visible = match &basis {
            Basis::Operator { .. } | Basis::OwnDepartment { .. } | Basis::DataSubject => true,
            Basis::Guardian => false,
            Basis::Agreement { .. } => release_fortrolig,
            Basis::Open => false,
        };
        let keys_of_rows = person_keys(f.columns);
        let properties = property_keys(f.columns);
        let links = f.links.to_vec();
        let protection = if f.protection_registered && !(keys_of_rows.is_empty() && properties.is_empty() && links.is_empty()) {
            // Open data is for anyone: it releases no protected person's address.
            let release_fortrolig = release_fortrolig && basis != Basis::Open;
            Protection::ByPerson { keys: keys_of_rows.clone(), properties, links, visible, release_fortrolig }
        } else {
            protection(f.columns, &columns, release_fortrolig)
        };
        Grant {
            dataset: r.clone(),
            classification: f.dataset.classification,
            columns,
            row_filter,
            protection,
            basis,
            min_group_size: None,
            hmac_key,
            subject_key: person_key(f.columns),
            person_keys: keys_of_rows,
            legal_basis: None,
            reader: None,
        }
    };
    if f.dataset.classification == Classification::Open {
        return Ok(grant(all(), None, true, Basis::Open, Vec::new()));
    }
    let user = match f.principal {
        // Citizens and systems read open data only, until look-ups and system agreements exist.
        Principal::Anonymous | Principal::Citizen { .. } | Principal::System { .. } => return Err(Denial::NotFound),
        Principal::Operator(_) => {
            let purpose = f.purpose.ok_or(Denial::PurposeRequired)?;
            return Ok(grant(all(), None, true, Basis::Operator { purpose: purpose.into() }, Vec::new()));
        }
        Principal::User(u) => u,
    };
    // Admins and auditors read no data by their role; departmental users read through their
    // department.
    let Some(department) = user.department.as_deref().filter(|_| user.role.is_departmental()) else {
        return Err(Denial::NotFound);
    };
    let own = user.org == f.dataset.org && department == f.dataset.department;
    let mut entitled_somehow = false;
    if own {
        entitled_somehow = true;
        if let Some(p) = f.purpose {
            let allowed = f.purposes.iter().any(|x| x.slug == p && x.org == user.org && x.department.as_deref() == Some(department));
            if allowed {
                return Ok(grant(all(), None, true, Basis::OwnDepartment { purpose: p.into() }, Vec::new()));
            }
        }
    }
    for a in f.agreements {
        if !a.in_force(f.today)
            || a.consumer.org != user.org
            || a.consumer.department != department
            || a.consumer.role.is_some_and(|r| r != user.role)
        {
            continue;
        }
        let Some(terms) = a.terms.datasets.iter().find(|d| d.dataset == f.dataset.reference()) else {
            continue;
        };
        entitled_somehow = true;
        let Some(p) = f.purpose else { continue };
        if !a.terms.purposes.iter().any(|x| x == p) {
            continue;
        }
        let columns = f
            .columns
            .iter()
            .filter(|c| {
                if terms.columns.is_empty() {
                    c.category != ColumnCategory::SpecialCategory
                } else {
                    terms.columns.iter().any(|n| n == &c.name)
                }
            })
            .map(|c| column_grant(c, terms.masks.get(&c.name).copied()))
            .collect();
        let mut g = grant(
            columns,
            terms.row_filter.clone(),
            a.terms.release_fortrolig,
            Basis::Agreement { id: a.id, purpose: p.into() },
            a.hmac_key.clone(),
        );
        g.min_group_size = terms.min_group_size;
        g.legal_basis = Some(a.terms.legal_basis.clone());
        return Ok(g);
    }
    match (entitled_somehow, f.purpose) {
        (false, _) => Err(Denial::NotFound),
        (true, None) => Err(Denial::PurposeRequired),
        (true, Some(_)) => Err(Denial::PurposeNotAllowed),
    }
}

/// The first column whose subject kind is a person.
pub(crate) fn person_key(columns: &[ColumnMeta]) -> Option<String> {
    columns.iter().find(|c| c.subject_key == Some(SubjectKind::Person)).map(|c| c.name.clone())
}

/// Every column whose subject kind is a person.
pub(crate) fn person_keys(columns: &[ColumnMeta]) -> Vec<String> {
    columns.iter().filter(|c| c.subject_key == Some(SubjectKind::Person)).map(|c| c.name.clone()).collect()
}

/// Every column whose subject kind is a property.
pub(crate) fn property_keys(columns: &[ColumnMeta]) -> Vec<String> {
    columns.iter().filter(|c| c.subject_key == Some(SubjectKind::Property)).map(|c| c.name.clone()).collect()
}

/// What a citizen may read of a dataset about themselves: every column of the rows where any
/// person key is their number, their own protected address included; `None` without a person
/// key.
/// What a citizen may read about themselves in one dataset: the rows that name them, with every
/// column. With a register of address protection named, no row that also names another,
/// protected person is released (a parent does not learn where a protected child goes to
/// kindergarten); the citizen's own protection does not count.
pub(crate) fn own_rows_protected(dataset: &DatasetMeta, columns: &[ColumnMeta], pid: &str, protection_registered: bool) -> Option<Grant> {
    let mut g = own_rows(dataset, columns, pid)?;
    if protection_registered {
        g.protection = others_protected(columns);
    }
    g.reader = Some(pid.to_string());
    Some(g)
}

/// Rows naming a protected person (other than the reader) withheld whole, by person keys only
/// (a property's level is its owner's, who may be the reader).
fn others_protected(columns: &[ColumnMeta]) -> Protection {
    Protection::ByPerson { keys: person_keys(columns), properties: Vec::new(), links: Vec::new(), visible: false, release_fortrolig: false }
}

pub(crate) fn own_rows(dataset: &DatasetMeta, columns: &[ColumnMeta], pid: &str) -> Option<Grant> {
    let key = person_key(columns)?;
    let r: DatasetRef = dataset.reference().parse().ok()?;
    // The number is checked to be digits before it gets here; quoting keeps it a literal anyway.
    let literal = pid.replace('\'', "''");
    // Every row the person is in, under whichever person key: their own row, and the rows
    // that name them as a guardian, an applicant or an owner (GDPR art. 15 covers them all).
    let keys = person_keys(columns);
    let row_filter = keys.iter().map(|k| format!("\"{}\" = '{literal}'", k.replace('"', "\"\""))).collect::<Vec<_>>().join(" OR ");
    Some(Grant {
        dataset: r,
        classification: dataset.classification,
        columns: columns.iter().map(|c| column_grant(c, None)).collect(),
        row_filter: Some(row_filter),
        protection: Protection::NotApplicable,
        basis: Basis::DataSubject,
        min_group_size: None,
        hmac_key: Vec::new(),
        subject_key: Some(key),
        person_keys: person_keys(columns),
        legal_basis: None,
        reader: None,
    })
}

/// What a parent may read of one dataset about their child: the rows that name the child, with
/// every column, except that no row naming a protected person is released (the child's or anyone
/// else's: a parent is not entitled to learn where a protected child or other parent lives).
pub(crate) fn ward_rows(
    dataset: &DatasetMeta,
    columns: &[ColumnMeta],
    child: &str,
    parent: &str,
    protection_registered: bool,
    links: &[String],
) -> Option<Grant> {
    let mut g = own_rows(dataset, columns, child)?;
    g.basis = Basis::Guardian;
    g.protection = if protection_registered {
        Protection::ByPerson {
            keys: person_keys(columns),
            properties: property_keys(columns),
            links: links.to_vec(),
            visible: false,
            release_fortrolig: false,
        }
    } else {
        protection(columns, &g.columns, false)
    };
    // The parent's own protection does not hide the rows that name them with their child.
    g.reader = Some(parent.to_string());
    Some(g)
}

fn column_grant(c: &ColumnMeta, mask: Option<Mask>) -> ColumnGrant {
    let crs =
        (c.column_type == tverr_store::tverr_ingest::ColumnType::Geometry).then(|| c.crs.clone().unwrap_or_else(|| "EPSG:4326".into()));
    ColumnGrant { name: c.name.clone(), mask, category: c.category, subject: c.subject_key, crs }
}

fn protection(all: &[ColumnMeta], granted: &[ColumnGrant], release_fortrolig: bool) -> Protection {
    if !granted.iter().any(|c| c.category == ColumnCategory::ProtectedAddress) {
        return Protection::NotApplicable;
    }
    if all.iter().any(|c| c.name == PROTECTION_COLUMN) { Protection::ByRow { release_fortrolig } } else { Protection::WithholdAll }
}

/// Whether a role may act for a department in agreement matters.
pub(crate) fn is_steward_of(principal: &Principal, org: &str, department: &str) -> bool {
    match principal {
        Principal::User(u) => u.role == Role::Steward && u.org == org && u.department.as_deref() == Some(department),
        _ => false,
    }
}
