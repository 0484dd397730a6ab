//! The lifecycle against a real SQLite catalogue, and the decision's branches.

use std::collections::BTreeMap;

use tverr_core::{Classification, ColumnCategory, DatasetRef, SubjectKind};
use tverr_store::tverr_ingest::IngestOptions;
use tverr_store::{IngestRequest, NewDataset, Store, StoreConfig, WriteMode};

use super::*;
use crate::bases::is_gdpr_article;

struct World {
    _dir: tempfile::TempDir,
    policy: Policy,
    kari: Principal,
    siri: Principal,
    ola: Principal,
}

fn principal(u: User) -> Principal {
    Principal::User(SignedIn::new(u))
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreConfig { data_dir: dir.path().join("data"), catalog_url: None, storage_url: None }).await.unwrap();
    let c = &store.catalog;
    c.create_org("hamar", "Hamar kommune", "970540008", Some("3403")).await.unwrap();
    for d in ["folkeregister", "byggesak", "helse"] {
        c.create_department("hamar", d, d).await.unwrap();
    }
    let csv = dir.path().join("innbyggere.csv");
    std::fs::write(
        &csv,
        "fodselsnummer;navn;adresse;adressebeskyttelse;diagnose\n\
         01010012356;Kari;Storgata 1;ugradert;x\n",
    )
    .unwrap();
    store
        .ingest(IngestRequest {
            dataset: "hamar/innbyggere".parse().unwrap(),
            path: csv,
            options: IngestOptions { subjects: [("fodselsnummer".to_string(), SubjectKind::Person)].into(), ..Default::default() },
            mode: WriteMode::Append,
            create: Some(NewDataset {
                department: "folkeregister".into(),
                title: "Innbyggere".into(),
                description: String::new(),
                classification: Classification::Confidential,
                theme: None,
                keywords: Vec::new(),
                licence: None,
                update_frequency: None,
            }),
            categories: BTreeMap::from([
                ("adresse".to_string(), ColumnCategory::ProtectedAddress),
                ("diagnose".to_string(), ColumnCategory::SpecialCategory),
            ]),
            descriptions: BTreeMap::new(),
            actor: "test".into(),
        })
        .await
        .unwrap();
    let policy = Policy::new(&store);
    policy
        .create_legal_basis(&LegalBasis {
            org: "hamar".into(),
            slug: "pbl".into(),
            gdpr_article: "6(1)(e)".into(),
            hjemmel: "plan- og bygningsloven § 21-4".into(),
            lovdata_url: Some("https://lovdata.no/lov/2008-06-27-71/§21-4".into()),
        })
        .await
        .unwrap();
    for (slug, dept) in [("byggesaksbehandling", "byggesak"), ("folkeregisterforvaltning", "folkeregister")] {
        policy
            .create_purpose(&Purpose {
                org: "hamar".into(),
                slug: slug.into(),
                department: Some(dept.into()),
                name: slug.into(),
                description: String::new(),
                legal_basis: "pbl".into(),
            })
            .await
            .unwrap();
    }
    let kari = policy.create_user("hamar", Some("folkeregister"), "kari", Role::Steward, Some("et langt passord")).await.unwrap();
    let siri = policy.create_user("hamar", Some("byggesak"), "siri", Role::Steward, None).await.unwrap();
    let ola = policy.create_user("hamar", Some("byggesak"), "ola", Role::Employee, None).await.unwrap();
    World { _dir: dir, policy, kari: principal(kari), siri: principal(siri), ola: principal(ola) }
}

fn request(valid_to: Option<chrono::NaiveDate>) -> AgreementRequest {
    AgreementRequest {
        provider: "hamar/folkeregister".parse().unwrap(),
        consumer: "hamar/byggesak".parse().unwrap(),
        datasets: vec![DatasetTerms {
            dataset: "hamar/innbyggere".into(),
            columns: vec!["fodselsnummer".into(), "navn".into(), "adresse".into()],
            masks: BTreeMap::from([("fodselsnummer".to_string(), Mask::Hmac)]),
            row_filter: Some("navn <> 'Ola'".into()),
            min_group_size: None,
        }],
        purposes: vec!["byggesaksbehandling".into()],
        legal_basis: None,
        valid_from: None,
        valid_to,
        release_fortrolig: false,
    }
}

fn innbyggere() -> DatasetRef {
    "hamar/innbyggere".parse().unwrap()
}

#[tokio::test]
async fn agreement_lifecycle_and_who_may_do_what() {
    let w = world().await;
    let p = &w.policy;
    let r = innbyggere();
    // Before any agreement, byggesak cannot see the dataset at all.
    assert_eq!(p.entitle(&w.ola, Some("byggesaksbehandling"), &r).await.unwrap().unwrap_err(), Denial::NotFound);

    // The provider's steward cannot request on the consumer's behalf; an employee cannot either.
    for actor in [&w.kari, &w.ola, &Principal::Anonymous] {
        assert!(matches!(p.request_agreement(actor, request(None)).await, Err(PolicyError::Forbidden(_))));
    }
    let a = p.request_agreement(&w.siri, request(None)).await.unwrap();
    assert_eq!(a.state, AgreementState::Requested);
    // Requested is not in force.
    assert_eq!(p.entitle(&w.ola, Some("byggesaksbehandling"), &r).await.unwrap().unwrap_err(), Denial::NotFound);
    // The consumer cannot approve its own request.
    assert!(matches!(p.approve(&w.siri, a.id, None).await, Err(PolicyError::Forbidden(_))));
    let a = p.approve(&w.kari, a.id, Some("ok")).await.unwrap();
    assert_eq!(a.state, AgreementState::Approved);
    // Approving twice is a state error.
    assert!(matches!(p.approve(&w.kari, a.id, None).await, Err(PolicyError::Invalid { .. })));

    let g = p.entitle(&w.ola, Some("byggesaksbehandling"), &r).await.unwrap().unwrap();
    let names: Vec<&str> = g.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["fodselsnummer", "navn", "adresse"]);
    assert_eq!(g.columns[0].mask, Some(Mask::Hmac));
    assert_eq!(g.row_filter.as_deref(), Some("navn <> 'Ola'"));
    assert_eq!(g.protection, Protection::ByRow { release_fortrolig: false });
    assert_eq!(g.basis, Basis::Agreement { id: a.id, purpose: "byggesaksbehandling".into() });
    assert_eq!(g.hmac_key.len(), 32);
    // No purpose, and the wrong purpose, are refused with what is wrong.
    assert_eq!(p.entitle(&w.ola, None, &r).await.unwrap().unwrap_err(), Denial::PurposeRequired);
    assert_eq!(p.entitle(&w.ola, Some("folkeregisterforvaltning"), &r).await.unwrap().unwrap_err(), Denial::PurposeNotAllowed);

    // Revocation applies to the very next decision.
    p.revoke(&w.siri, a.id, Some("no longer needed")).await.unwrap();
    assert_eq!(p.entitle(&w.ola, Some("byggesaksbehandling"), &r).await.unwrap().unwrap_err(), Denial::NotFound);
    assert!(matches!(p.approve(&w.kari, a.id, None).await, Err(PolicyError::Invalid { .. })));
    let events = p.agreement_events(a.id).await.unwrap();
    let states: Vec<&str> = events.iter().map(|e| e.state.as_str()).collect();
    assert_eq!(states, ["requested", "approved", "revoked"]);
    assert_eq!(events[1].actor, "kari");
    assert_eq!(events[2].note.as_deref(), Some("no longer needed"));

    // A denied request never applies.
    let b = p.request_agreement(&w.siri, request(None)).await.unwrap();
    p.deny(&w.kari, b.id, Some("too wide")).await.unwrap();
    assert_eq!(p.entitle(&w.ola, Some("byggesaksbehandling"), &r).await.unwrap().unwrap_err(), Denial::NotFound);
}

#[tokio::test]
async fn expiry_is_at_the_end_of_the_last_day() {
    let w = world().await;
    let p = &w.policy;
    let today = chrono::Utc::now().date_naive();
    let mut req = request(Some(today));
    req.valid_from = Some(today - chrono::Duration::days(30));
    let a = p.request_agreement(&w.siri, req).await.unwrap();
    p.approve(&w.kari, a.id, None).await.unwrap();
    assert!(p.entitle(&w.ola, Some("byggesaksbehandling"), &innbyggere()).await.unwrap().is_ok());

    let mut req = request(Some(today - chrono::Duration::days(1)));
    req.valid_from = Some(today - chrono::Duration::days(30));
    let b = p.request_agreement(&w.siri, req).await.unwrap();
    let b = p.approve(&w.kari, b.id, None).await.unwrap();
    assert_eq!(b.state, AgreementState::Expired);
    p.revoke(&w.siri, a.id, None).await.unwrap();
    assert_eq!(p.entitle(&w.ola, Some("byggesaksbehandling"), &innbyggere()).await.unwrap().unwrap_err(), Denial::NotFound);

    // Not yet valid.
    let mut req = request(None);
    req.valid_from = Some(today + chrono::Duration::days(1));
    let c = p.request_agreement(&w.siri, req).await.unwrap();
    p.approve(&w.kari, c.id, None).await.unwrap();
    assert_eq!(p.entitle(&w.ola, Some("byggesaksbehandling"), &innbyggere()).await.unwrap().unwrap_err(), Denial::NotFound);
}

#[tokio::test]
async fn requests_are_checked() {
    let w = world().await;
    let p = &w.policy;
    let bad = |f: fn(&mut AgreementRequest)| {
        let mut r = request(None);
        f(&mut r);
        r
    };
    let cases: Vec<(AgreementRequest, &str)> = vec![
        (bad(|r| r.datasets[0].columns.push("nope".into())), "no column \"nope\""),
        (
            bad(|r| {
                r.datasets[0].masks.insert("navn".into(), Mask::YearOnly);
            }),
            "year_only does not apply",
        ),
        (bad(|r| r.purposes = vec!["spionasje".into()]), "not a purpose"),
        (bad(|r| r.provider = "hamar/helse".parse().unwrap()), "not to the provider"),
        (bad(|r| r.consumer = "hamar/folkeregister".parse().unwrap()), "own datasets"),
        (bad(|r| r.datasets[0].dataset = "hamar/finnes-ikke".into()), "does not exist"),
        (bad(|r| r.datasets[0].row_filter = Some("1=1; DROP TABLE x".into())), "one SQL boolean"),
        (bad(|r| r.datasets[0].min_group_size = Some(1)), "at least 3"),
    ];
    for (req, expected) in cases {
        let actor = if req.consumer.department == "folkeregister" { &w.kari } else { &w.siri };
        let err = p.request_agreement(actor, req).await.unwrap_err().to_string();
        assert!(err.contains(expected), "{err} should contain {expected}");
    }
    assert!(p.agreements().await.unwrap().is_empty(), "a refused request stores nothing");
}

#[tokio::test]
async fn own_department_operator_and_special_categories() {
    let w = world().await;
    let p = &w.policy;
    let r = innbyggere();
    let kari_grant = p.entitle(&w.kari, Some("folkeregisterforvaltning"), &r).await.unwrap().unwrap();
    assert_eq!(kari_grant.columns.len(), 5, "the owner sees every column, special category included");
    assert_eq!(kari_grant.protection, Protection::ByRow { release_fortrolig: true });
    // Her own department, but another department's purpose.
    assert_eq!(p.entitle(&w.kari, Some("byggesaksbehandling"), &r).await.unwrap().unwrap_err(), Denial::PurposeNotAllowed);
    assert_eq!(p.entitle(&Principal::Operator(crate::OperatorSeal(())), None, &r).await.unwrap().unwrap_err(), Denial::PurposeRequired);
    assert!(p.entitle(&Principal::Operator(crate::OperatorSeal(())), Some("tilsyn"), &r).await.unwrap().is_ok());
    assert_eq!(p.entitle(&Principal::Anonymous, None, &r).await.unwrap().unwrap_err(), Denial::NotFound);
    let missing: DatasetRef = "hamar/finnes-ikke".parse().unwrap();
    assert_eq!(p.entitle(&w.kari, Some("folkeregisterforvaltning"), &missing).await.unwrap().unwrap_err(), Denial::NotFound);

    // An agreement without a column list leaves special-category columns out.
    let mut req = request(None);
    req.datasets[0].columns.clear();
    req.datasets[0].masks.clear();
    let a = p.request_agreement(&w.siri, req).await.unwrap();
    p.approve(&w.kari, a.id, None).await.unwrap();
    let g = p.entitle(&w.ola, Some("byggesaksbehandling"), &r).await.unwrap().unwrap();
    assert!(g.columns.iter().all(|c| c.name != "diagnose"));
    assert_eq!(g.columns.len(), 4);
}

#[tokio::test]
async fn passwords_and_tokens() {
    let w = world().await;
    let p = &w.policy;
    assert_eq!(p.login("kari", "et langt passord").await.unwrap().name(), "kari");
    let wrong = p.login("kari", "feil passord!!").await.unwrap_err().to_string();
    let unknown = p.login("ingen", "et langt passord").await.unwrap_err().to_string();
    assert_eq!(wrong, unknown, "unknown users and wrong passwords look the same");
    // A user without a password cannot log in with any.
    assert!(p.login("siri", "").await.is_err());
    assert!(p.create_user("hamar", None, "kort", Role::Admin, Some("kort")).await.is_err());
    assert!(p.create_user("hamar", None, "emp", Role::Employee, None).await.is_err(), "employees need a department");

    let t = p.create_token("ola", Some(30)).await.unwrap();
    assert!(t.secret.starts_with(TOKEN_PREFIX));
    assert_eq!(p.authenticate_token(&t.secret).await.unwrap().name(), "ola");
    // A token that differs in one character, and a token of another shape, are refused.
    let mut forged = t.secret.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == '0' { '1' } else { '0' });
    assert!(p.authenticate_token(&forged).await.is_err());
    assert!(p.authenticate_token("Bearer ola").await.is_err());
    p.revoke_token(&t.id).await.unwrap();
    let err = p.authenticate_token(&t.secret).await.unwrap_err().to_string();
    assert!(err.contains("revoked"), "{err}");
    assert!(p.revoke_token(&t.id).await.is_err(), "revoking twice says so");
    // A token kept by this process while valid is refused once it has expired, and a stored
    // expiry that is not a time refuses the token instead of ignoring the expiry.
    let e = p.create_token("ola", Some(30)).await.unwrap();
    assert_eq!(p.authenticate_token(&e.secret).await.unwrap().name(), "ola");
    for (expiry, refusal) in [("2020-01-01T00:00:00.000Z", "expired"), ("neste år", "")] {
        sqlx::query("UPDATE api_tokens SET expires_at = $1 WHERE id = $2").bind(expiry).bind(&e.id).execute(p.pool()).await.unwrap();
        let err = p.authenticate_token(&e.secret).await.unwrap_err().to_string();
        assert!(err.contains(refusal), "{expiry}: {err}");
    }
    // Only a hash is stored.
    let stored: Vec<String> = sqlx::query_scalar("SELECT hash FROM api_tokens").fetch_all(p.pool()).await.unwrap();
    assert!(stored.iter().all(|h| !h.contains(&t.secret) && h.len() == 64));

    // Citizen tokens act as the citizen, and only for a valid number.
    let c = p.create_citizen_token("01010012356", None).await.unwrap();
    assert_eq!(p.authenticate_token(&c.secret).await.unwrap(), Principal::Citizen(Citizen::new("01010012356".into())));
    for bad in ["01010012357", "0101001235", "x", ""] {
        assert!(p.create_citizen_token(bad, None).await.is_err(), "{bad}");
    }
    p.revoke_token(&c.secret).await.unwrap();
    assert!(p.authenticate_token(&c.secret).await.unwrap_err().to_string().contains("revoked"));
}

#[tokio::test]
async fn a_citizen_reads_only_their_own_rows() {
    let w = world().await;
    let grants = w.policy.own_data("01010012356").await.unwrap();
    assert_eq!(grants.len(), 1, "the one dataset with a person key");
    let g = &grants[0];
    assert_eq!(g.basis, Basis::DataSubject);
    assert_eq!(g.row_filter.as_deref(), Some("\"fodselsnummer\" = '01010012356'"));
    assert_eq!(g.subject_key.as_deref(), Some("fodselsnummer"));
    assert!(g.columns.iter().all(|c| c.mask.is_none()), "everything about themselves, unmasked");
    assert!(w.policy.own_data("12345678901").await.is_err(), "not a valid number");
}

#[test]
fn masks_parse() {
    assert_eq!("round:5".parse::<Mask>().unwrap(), Mask::Round(5.0));
    assert_eq!("YEAR_ONLY".parse::<Mask>().unwrap(), Mask::YearOnly);
    for bad in ["round:0", "round:-1", "round:x", "hash", ""] {
        assert!(bad.parse::<Mask>().is_err(), "{bad}");
    }
    assert!(is_gdpr_article("6(1)(e)") && is_gdpr_article("9(2)(h)"));
    assert!(!is_gdpr_article("6(1)(g)") && !is_gdpr_article("9(2)") && !is_gdpr_article("art. 6"));
}

#[test]
fn the_operator_key_is_taken_once_per_process() {
    let key = OperatorKey::take().expect("the first take gets the key");
    assert!(OperatorKey::take().is_none(), "no second holder");
    assert!(matches!(key.principal(), Principal::Operator(_)));
    let citizens = CitizenDemoKey::take().expect("the first take gets the demo's citizen key");
    assert!(CitizenDemoKey::take().is_none(), "no second holder");
    assert!(matches!(citizens.citizen("01010012356"), Ok(Principal::Citizen(c)) if c.pid() == "01010012356"));
    assert!(citizens.citizen("01010012357").is_err(), "a wrong check digit is no citizen");
}

#[test]
fn one_answer_says_who_may_act() {
    let user = |org: &str, department: Option<&str>, role: Role| {
        Principal::User(SignedIn::new(User { username: "u".into(), org: org.into(), department: department.map(Into::into), role }))
    };
    let steward = user("hamar", Some("oppvekst"), Role::Steward);
    let other_steward = user("hamar", Some("helse"), Role::Steward);
    let admin = user("hamar", None, Role::Admin);
    let employee = user("hamar", Some("oppvekst"), Role::Employee);
    let auditor = user("hamar", None, Role::Auditor);
    let operator = Principal::Operator(crate::OperatorSeal(()));
    let write = Action::Write { org: "hamar", department: "oppvekst" };
    let consumer = Party { org: "hamar".into(), department: "oppvekst".into(), role: None };
    let request = Action::RequestAgreement(&consumer);
    let audit = Action::ReadAuditLog { org: "hamar" };
    let cases: [(&Principal, Action<'_>, bool); 17] = [
        (&steward, write, true),
        (&other_steward, write, false),
        (&admin, write, false),
        (&employee, write, false),
        (&operator, write, false),
        (&Principal::Anonymous, write, false),
        (&steward, Action::Upload, true),
        (&admin, Action::Upload, false),
        (&auditor, Action::Upload, false),
        (&steward, request, true),
        (&admin, request, true),
        (&other_steward, request, false),
        (&employee, request, false),
        (&auditor, audit, true),
        (&admin, audit, false),
        (&user("hias", None, Role::Auditor), audit, false),
        (&operator, audit, false),
    ];
    for (who, action, expected) in cases {
        let answer = Policy::may(who, action);
        assert_eq!(answer.is_ok(), expected, "{} may {action}: {answer:?}", who.name());
        if let Err(e) = answer {
            assert!(matches!(e, PolicyError::Forbidden(_)), "{e:?}");
        }
    }
}
