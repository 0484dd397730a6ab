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

/// A second node over the fixture's data directory: its own engine, the same catalogue.
async fn second_node(f: &Fixture) -> Engine {
    let dir = f._dir.path();
    let config = StoreConfig { data_dir: dir.into(), catalog_url: None, storage_url: None };
    let audit = tverr_audit::AuditConfig {
        key_path: dir.join("audit-key.pk8"),
        subject_key_path: dir.join("subject-key"),
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(60),
        witness_path: None,
    };
    Engine::open(&config, audit).await.unwrap()
}

mod log_ins {
    use super::*;
    use crate::limits::{LOGIN_FAILURES_PER_CLIENT, LOGIN_FAILURES_PER_USER, LoginThrottle, Refused};

    fn addr(s: &str) -> Option<std::net::SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[tokio::test]
    async fn a_user_name_is_locked_on_every_node_after_its_failures_and_a_success_unlocks_it() {
        let f = fixture().await;
        let other = second_node(&f).await;
        let nodes = [f.state.engine.policy(), other.policy()];
        let t = LoginThrottle;
        for i in 0..LOGIN_FAILURES_PER_USER as usize {
            assert!(t.attempt(nodes[i % 2], "Ola", addr("10.0.0.1:1")).await.is_ok(), "attempt {i}");
        }
        for node in nodes {
            let refused = t.attempt(node, "ola", addr("10.0.0.2:1")).await;
            assert!(
                matches!(refused, Err(Refused::Throttled(w)) if w > 0 && w <= 300),
                "locked on every node, whatever the case and address"
            );
        }
        assert!(t.attempt(nodes[1], "kari", addr("10.0.0.2:1")).await.is_ok(), "another user from another address is not");
        t.succeeded(nodes[0], "ola", addr("10.0.0.1:1")).await;
        assert!(t.attempt(nodes[1], "ola", addr("10.0.0.2:1")).await.is_ok(), "a success on one node unlocks on the other");
    }

    #[tokio::test]
    async fn one_client_trying_many_user_names_is_locked_too() {
        let f = fixture().await;
        let t = LoginThrottle;
        for i in 0..LOGIN_FAILURES_PER_CLIENT {
            assert!(t.attempt(f.state.engine.policy(), &format!("u{i}"), addr("10.0.0.1:1")).await.is_ok());
        }
        assert!(t.attempt(f.state.engine.policy(), "fresh", addr("10.0.0.1:1")).await.is_err());
        // The addresses of one IPv6 /64 are one client.
        for i in 0..LOGIN_FAILURES_PER_CLIENT {
            assert!(t.attempt(f.state.engine.policy(), &format!("v{i}"), addr(&format!("[2001:db8::{i}]:1"))).await.is_ok());
        }
        assert!(t.attempt(f.state.engine.policy(), "fresh2", addr("[2001:db8::ffff]:1")).await.is_err());
    }

    #[tokio::test]
    async fn concurrent_attempts_on_two_nodes_get_no_more_checks_than_the_limit() {
        let f = fixture().await;
        let other = second_node(&f).await;
        let mut tasks = Vec::new();
        for i in 0..60u8 {
            let engine = if i % 2 == 0 { f.state.engine.clone() } else { other.clone() };
            tasks.push(tokio::spawn(
                async move { LoginThrottle.attempt(engine.policy(), "ola", addr(&format!("10.0.1.{i}:1"))).await.is_ok() },
            ));
        }
        let mut passed = 0;
        for task in tasks {
            passed += u32::from(task.await.unwrap());
        }
        assert_eq!(passed, LOGIN_FAILURES_PER_USER, "only the limit's worth of password checks, from any addresses and nodes");
    }

    #[tokio::test]
    async fn successful_log_ins_do_not_lock_an_office_address() {
        let f = fixture().await;
        let policy = f.state.engine.policy();
        for i in 0..(LOGIN_FAILURES_PER_CLIENT * 2) {
            let user = format!("u{i}");
            assert!(LoginThrottle.attempt(policy, &user, addr("10.0.0.9:1")).await.is_ok(), "attempt {i}");
            LoginThrottle.succeeded(policy, &user, addr("10.0.0.9:1")).await;
        }
    }

    #[tokio::test]
    async fn a_pending_oidc_log_in_is_taken_once_on_any_node_and_not_when_old() {
        let f = fixture().await;
        let other = second_node(&f).await;
        let pending = tverr_policy::PendingLogin { issuer: 1, verifier: "v".repeat(43), nonce: "n1".into(), next: "/min-side".into() };
        let keep = Duration::from_secs(600);
        f.state.engine.policy().start_pending_login("state-1", &pending, keep).await.unwrap();
        assert_eq!(other.policy().take_pending_login("state-2", keep).await.unwrap(), None, "another state");
        assert_eq!(other.policy().take_pending_login("state-1", keep).await.unwrap(), Some(pending.clone()), "on the other node");
        assert_eq!(f.state.engine.policy().take_pending_login("state-1", keep).await.unwrap(), None, "once only");
        f.state.engine.policy().start_pending_login("state-3", &pending, keep).await.unwrap();
        assert_eq!(other.policy().take_pending_login("state-3", Duration::ZERO).await.unwrap(), None, "too old");
        assert_eq!(f.state.engine.policy().take_pending_login("state-3", keep).await.unwrap(), None, "and gone");
    }
}
