//! Handler-level tests: the router answered in process with `oneshot`, no socket. The
//! real-binary tests in `crates/cli/tests` cover the same routes end to end.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use tverr_access::{Engine, StoreConfig};
use tverr_policy::Role;

use crate::{AppState, ProblemKind, app};

/// A server over an empty municipality with one user per role, and their tokens.
struct Fixture {
    _dir: tempfile::TempDir,
    state: AppState,
    tokens: HashMap<&'static str, String>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig { data_dir: dir.path().into(), catalog_url: None, storage_url: None };
    let audit = tverr_audit::AuditConfig {
        key_path: dir.path().join("audit-key.pk8"),
        subject_key_path: dir.path().join("subject-key"),
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(60),
        witness_path: None,
    };
    let engine = Engine::open(&config, audit).await.unwrap();
    engine.catalog().create_org("hamar", "Hamar kommune", "970540008", Some("3403")).await.unwrap();
    engine.catalog().create_department("hamar", "oppvekst", "Oppvekst og utdanning").await.unwrap();
    let mut tokens = HashMap::new();
    for (name, role) in [("ansatt", Role::Employee), ("forvalter", Role::Steward), ("sjef", Role::Admin), ("revisor", Role::Auditor)] {
        let department = role.is_departmental().then_some("oppvekst");
        engine.policy().create_user("hamar", department, name, role, None).await.unwrap();
        tokens.insert(name, engine.policy().create_token(name, None).await.unwrap().secret);
    }
    tokens.insert("innbygger", engine.policy().create_citizen_token("01010012356", None).await.unwrap().secret);
    Fixture { _dir: dir, state: AppState::from_engine(engine), tokens }
}

impl Fixture {
    /// The status and body of one request, as `who` (`None`: anonymous).
    async fn call(&self, method: Method, path: &str, who: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(who) = who {
            request = request.header("Authorization", format!("Bearer {}", self.tokens[who]));
        }
        let response = app(self.state.clone()).oneshot(request.body(Body::empty()).unwrap()).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (status, serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
    }
}

/// What a refusal must look like: the problem table's type, status and title.
fn is_problem(body: &serde_json::Value, kind: ProblemKind) -> bool {
    body["type"] == format!("/problems/{}", kind.slug()) && body["status"] == kind.status().as_u16() && body["title"] == kind.title()
}

#[tokio::test]
async fn each_role_is_answered_before_its_handler_runs() {
    let f = fixture().await;
    // (path, who, expected): the role extractors (Auditor, SignedIn, CitizenCaller,
    // Authenticated) refuse before any handler code; the ones let through get the answer.
    let cases: &[(&str, Option<&str>, Result<StatusCode, ProblemKind>)] = &[
        ("/api/v1/audit/verify", None, Err(ProblemKind::Unauthenticated)),
        ("/api/v1/audit/verify", Some("ansatt"), Err(ProblemKind::Forbidden)),
        ("/api/v1/audit/verify", Some("sjef"), Err(ProblemKind::Forbidden)),
        ("/api/v1/audit/verify", Some("revisor"), Ok(StatusCode::OK)),
        ("/api/v1/audit?user=ansatt", Some("forvalter"), Err(ProblemKind::Forbidden)),
        ("/api/v1/audit?user=ansatt", Some("revisor"), Ok(StatusCode::OK)),
        ("/api/v1/agreements", None, Err(ProblemKind::Unauthenticated)),
        ("/api/v1/agreements", Some("ansatt"), Ok(StatusCode::OK)),
        ("/api/v1/agreements/1", Some("ansatt"), Err(ProblemKind::AgreementNotFound)),
        ("/api/v1/me/access-log", None, Err(ProblemKind::Unauthenticated)),
        ("/api/v1/me/access-log", Some("ansatt"), Err(ProblemKind::Forbidden)),
        ("/api/v1/me/data", Some("revisor"), Err(ProblemKind::Forbidden)),
        ("/api/v1/subjects/person/01017012345", None, Err(ProblemKind::Unauthenticated)),
        // A citizen is signed in, but agreements are not theirs (403, not 401); Min side is.
        ("/api/v1/agreements", Some("innbygger"), Err(ProblemKind::Forbidden)),
        ("/api/v1/me/access-log", Some("innbygger"), Ok(StatusCode::OK)),
        // A time that is not one is an error, not "no entries" (attack 5, F9).
        ("/api/v1/audit?from=garbage", Some("revisor"), Err(ProblemKind::InvalidInput)),
        ("/api/v1/audit?to=2026-99-99", Some("revisor"), Err(ProblemKind::InvalidInput)),
    ];
    for (path, who, expected) in cases {
        let (status, body) = f.call(Method::GET, path, *who).await;
        match expected {
            Ok(s) => assert_eq!(status, *s, "{path} as {who:?}: {body}"),
            Err(kind) => {
                assert_eq!(status, kind.status(), "{path} as {who:?}: {body}");
                assert!(is_problem(&body, *kind), "{path} as {who:?}: {body}");
            }
        }
    }
    // A refused request left no read of the log in it; the auditor's two reads are there.
    let (_, found) = f.call(Method::GET, "/api/v1/audit", Some("revisor")).await;
    let reads = found["entries"].as_array().unwrap().iter().filter(|e| e["kind"] == "audit-read").count();
    assert_eq!(reads, 3, "verify, search, and this search: {found}");
}

#[tokio::test]
async fn a_forged_or_doubled_credential_is_refused_as_a_problem() {
    let f = fixture().await;
    let call = |auth: Vec<&'static str>| {
        let state = f.state.clone();
        async move {
            let mut request = Request::builder().uri("/api/v1/agreements");
            for a in auth {
                request = request.header("Authorization", a);
            }
            app(state).oneshot(request.body(Body::empty()).unwrap()).await.unwrap()
        }
    };
    for auth in [vec!["Bearer tverr_forged"], vec!["Basic YTpi"], vec!["Bearer"], vec!["Bearer tverr_a", "Bearer tverr_b"]] {
        let response = call(auth.clone()).await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        let body: serde_json::Value = serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap();
        assert!(is_problem(&body, ProblemKind::Unauthenticated), "{auth:?}: {body}");
    }
}

#[tokio::test]
async fn the_framework_answers_with_the_same_problem_table() {
    let f = fixture().await;
    let (status, body) = f.call(Method::GET, "/api/v1/no-such-route", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(is_problem(&body, ProblemKind::NotFound), "{body}");
    let (status, body) = f.call(Method::DELETE, "/api/v1/sql", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(is_problem(&body, ProblemKind::MethodNotAllowed), "{body}");
    // A write without a credential is told to send one, whatever the dataset (attack 5, F9).
    for path in ["/api/v1/datasets?org=hamar&dataset=ny", "/api/v1/datasets/hamar/finnes-ikke/versions"] {
        let (status, body) = f.call(Method::POST, path, None).await;
        assert!(status == StatusCode::UNAUTHORIZED && is_problem(&body, ProblemKind::Unauthenticated), "{path}: {body}");
    }
    let (status, body) = f.call(Method::GET, "/api/v1/datasets/hamar/finnes-ikke", Some("ansatt")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(is_problem(&body, ProblemKind::DatasetNotFound), "{body}");
}
