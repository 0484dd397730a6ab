//! Every kind of tampering is detected; a clean log verifies.

use std::time::Duration;

use serde_json::json;
use tverr_store::{Store, StoreConfig};

use super::*;

/// Keys under `dir`, a checkpoint every 4 entries.
fn config(dir: &Path, subject_key: &str) -> AuditConfig {
    AuditConfig {
        key_path: dir.join("audit.key"),
        subject_key_path: dir.join(subject_key),
        checkpoint_every: 4,
        checkpoint_interval: Duration::from_secs(3600),
        witness_path: None,
    }
}

async fn setup(dir: &Path) -> (Store, Audit) {
    let store = Store::open(&StoreConfig { data_dir: dir.join("data"), catalog_url: None, storage_url: None }).await.unwrap();
    let audit = Audit::open(&store.raw_catalog(), config(dir, "subject.key")).unwrap();
    (store, audit)
}

async fn fill(audit: &Audit, n: i64) {
    for i in 0..n {
        audit.append(RecordKind::Access, &json!({"who": "ola", "i": i, "dataset": "hamar/innbyggere"})).await.unwrap();
    }
}

async fn exec(store: &Store, sql: &str) {
    sqlx::query(sql).execute(store.raw_catalog().pool()).await.unwrap();
}

async fn problem(audit: &Audit, witness: Option<&Checkpoint>) -> String {
    audit.verify(witness).await.unwrap().problem.unwrap_or_default()
}

#[tokio::test]
async fn a_clean_log_verifies_and_has_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, audit) = setup(dir.path()).await;
    fill(&audit, 10).await;
    let v = audit.verify(None).await.unwrap();
    assert_eq!((v.entries, v.head_seq, v.problem), (10, 10, None));
    assert_eq!(v.checkpoints, 2, "every 4 entries");
    let c = audit.checkpoint().await.unwrap();
    assert_eq!(c.seq, 10);
    assert!(c.signed_by(&audit.public_key()));
    assert!(audit.verify(Some(&c)).await.unwrap().problem.is_none());
}

#[tokio::test]
async fn every_kind_of_tampering_is_detected() {
    let cases: &[(&str, &str)] = &[
        ("UPDATE audit_log SET payload = '{\"who\":\"nobody\"}' WHERE seq = 3", "entry 3 has been changed"),
        ("DELETE FROM audit_log WHERE seq = 5", "entry 5 is missing"),
        (
            "UPDATE audit_log SET seq = -seq WHERE seq IN (6, 7); UPDATE audit_log SET seq = 7 WHERE seq = -6; UPDATE audit_log SET seq = 6 WHERE seq = -7",
            "entry 6 does not follow",
        ),
        ("UPDATE audit_log SET hash = 'x' WHERE seq = 9", "entry 9 has been changed"),
        ("DELETE FROM audit_log WHERE seq > 9", "truncated"),
    ];
    for (sql, expected) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (store, audit) = setup(dir.path()).await;
        fill(&audit, 12).await;
        for statement in sql.split("; ") {
            exec(&store, statement).await;
        }
        let p = problem(&audit, None).await;
        assert!(p.contains(expected), "{sql}: {p:?}");
    }
}

#[tokio::test]
async fn an_inserted_entry_with_a_recomputed_chain_breaks_the_signed_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (store, audit) = setup(dir.path()).await;
    fill(&audit, 8).await;
    // An attacker rewrites entry 2 and recomputes every hash after it, but cannot sign.
    rewrite_entry_2(&store, &audit).await;
    let p = problem(&audit, None).await;
    assert!(p.contains("differs from its signed checkpoint"), "{p}");
}

/// Rewrites entry 2 and recomputes every hash after it, as someone with write access to the
/// catalogue but without the signing key can.
async fn rewrite_entry_2(store: &Store, audit: &Audit) {
    let entries = audit.entries().await.unwrap();
    let mut prev = entries[0].hash.clone();
    for e in &entries[1..] {
        let payload = if e.seq == 2 { "{\"who\":\"nobody\"}".to_string() } else { e.payload.clone() };
        let hash = entry_hash(&prev, e.seq, &e.at, &e.kind, &payload);
        sqlx::query("UPDATE audit_log SET payload = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&payload)
            .bind(&prev)
            .bind(&hash)
            .bind(e.seq)
            .execute(store.raw_catalog().pool())
            .await
            .unwrap();
        prev = hash;
    }
}

/// [`rewrite_entry_2`], and every checkpoint deleted.
async fn rewrite_without_checkpoints(store: &Store, audit: &Audit) {
    rewrite_entry_2(store, audit).await;
    exec(store, "DELETE FROM audit_checkpoints").await;
}

/// A log under `dir` that publishes to a witness file, a second handle on it without the
/// witness, and the witness file's path.
async fn with_witness(dir: &Path) -> (Store, Audit, Audit, PathBuf) {
    let store = Store::open(&StoreConfig { data_dir: dir.join("data"), catalog_url: None, storage_url: None }).await.unwrap();
    let witness = dir.join("witness.ndjson");
    let audit =
        Audit::open(&store.raw_catalog(), AuditConfig { witness_path: Some(witness.clone()), ..config(dir, "subject.key") }).unwrap();
    let bare = Audit::open(&store.raw_catalog(), config(dir, "subject.key")).unwrap();
    (store, audit, bare, witness)
}

#[tokio::test]
async fn a_rewritten_chain_without_checkpoints_fails_by_the_cadence_and_by_the_witness() {
    let dir = tempfile::tempdir().unwrap();
    let (store, audit, bare, witness) = with_witness(dir.path()).await;
    fill(&audit, 10).await;
    // Every signed checkpoint was published as it was written (entries 4 and 8).
    let published = std::fs::read_to_string(&witness).unwrap();
    assert_eq!(published.lines().count(), 2, "{published}");
    assert_eq!(problem(&audit, None).await, "");
    rewrite_without_checkpoints(&store, &audit).await;
    // Without a witness, the missing checkpoints give it away.
    let p = problem(&bare, None).await;
    assert!(p.contains("no signed checkpoint between entries 1 and 4") && p.contains("checkpoints were deleted"), "{p}");
    assert!(problem(&audit, None).await.contains("checkpoints were deleted"));
}

#[tokio::test]
async fn a_rewritten_log_too_short_for_the_cadence_is_caught_by_the_witness() {
    let dir = tempfile::tempdir().unwrap();
    let (store, audit, bare, witness) = with_witness(dir.path()).await;
    fill(&audit, 3).await;
    audit.checkpoint().await.unwrap();
    rewrite_without_checkpoints(&store, &audit).await;
    assert_eq!(problem(&bare, None).await, "", "three entries, no checkpoint due: the chain alone cannot tell");
    let p = problem(&audit, None).await;
    assert!(p.contains("entry 3 differs from its checkpoint kept outside the catalogue"), "{p}");
    // A witness line that is not a checkpoint is itself a finding.
    std::fs::write(&witness, "not a checkpoint\n").unwrap();
    assert!(problem(&audit, None).await.contains("cannot be read"));
}

#[tokio::test]
async fn truncation_and_rollback_are_caught_by_a_checkpoint_kept_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    let (store, audit) = setup(dir.path()).await;
    fill(&audit, 6).await;
    let witness = audit.checkpoint().await.unwrap();
    // Cut the tail and every checkpoint that mentioned it: the chain alone still looks fine…
    exec(&store, "DELETE FROM audit_log WHERE seq > 4").await;
    exec(&store, "DELETE FROM audit_checkpoints WHERE seq > 4").await;
    assert_eq!(problem(&audit, None).await, "");
    // …but not against the checkpoint kept elsewhere.
    assert!(problem(&audit, Some(&witness)).await.contains("truncated or rolled back"));
    // A forged witness is refused.
    let mut forged = witness.clone();
    forged.seq = 2;
    assert!(problem(&audit, Some(&forged)).await.contains("not signed"));
}

#[tokio::test]
async fn two_writers_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (store, first) = setup(dir.path()).await;
    // A second node (its own lock and state) over the same catalogue and key.
    let second = Audit::open(&store.raw_catalog(), config(dir.path(), "subject.key")).unwrap();
    let mut tasks = Vec::new();
    for (n, audit) in [first.clone(), second].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                audit.append(RecordKind::Access, &json!({"node": n, "i": i})).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let v = first.verify(None).await.unwrap();
    assert_eq!((v.entries, v.problem), (50, None));
}

#[tokio::test]
async fn retention_keeps_what_remains_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let (store, audit) = setup(dir.path()).await;
    fill(&audit, 10).await;
    let witness = audit.checkpoint().await.unwrap();
    let removed = audit.prune("9999-12-31").await.unwrap();
    assert_eq!(removed, 10, "everything up to the last checkpoint");
    fill(&audit, 3).await;
    let v = audit.verify(Some(&witness)).await.unwrap();
    assert_eq!((v.entries, v.problem), (4, None), "the retention entry and three more");
    // Deleting beyond the anchor is still caught.
    exec(&store, "DELETE FROM audit_log WHERE seq = 11").await;
    assert!(
        problem(&audit, None).await.contains("without a signed checkpoint of entry 10") || problem(&audit, None).await.contains("entry 11")
    );
    // Removing the oldest entries up to a checkpoint without retention is caught.
    let dir2 = tempfile::tempdir().unwrap();
    let (store2, audit2) = setup(dir2.path()).await;
    fill(&audit2, 10).await;
    exec(&store2, "DELETE FROM audit_log WHERE seq <= 4").await;
    assert!(problem(&audit2, None).await.contains("without a retention record"));
    // Nothing signed before the date: nothing is removed.
    assert_eq!(audit.prune("1970-01-01").await.unwrap(), 0);
}

#[tokio::test]
async fn concurrent_appends_share_commits_and_keep_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, audit) = setup(dir.path()).await;
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let audit = audit.clone();
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for i in 0..20 {
                    seqs.push(audit.append(RecordKind::Access, &json!({"task": n, "i": i})).await.unwrap());
                }
                seqs
            })
        })
        .collect();
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.extend(t.await.unwrap());
    }
    seqs.sort();
    assert_eq!(seqs, (1..=1280).collect::<Vec<_>>(), "every append got its own sequence number");
    audit.record(RecordKind::Completion, &json!({"deferred": true}));
    audit.flush().await;
    let v = audit.verify(None).await.unwrap();
    assert_eq!((v.entries, v.problem), (1281, None));
}

#[tokio::test]
async fn data_subjects_are_indexed_by_keyed_digest_and_the_index_is_verified() {
    let dir = tempfile::tempdir().unwrap();
    let (store, audit) = setup(dir.path()).await;
    let (kari, ola, per) = (audit.subject_id("01010012356"), audit.subject_id("02020012345"), audit.subject_id("03030012345"));
    assert_eq!(kari.len(), 32);
    assert_ne!(kari, hex::encode(&Sha256::digest(b"01010012356")[..16]), "not a plain hash of the number");
    let access = audit
        .append_about(RecordKind::Access, &json!({"subjects": {"hamar/innbyggere": [&kari, &ola]}}), vec![kari.clone(), ola.clone()], None)
        .await
        .unwrap();
    audit
        .append_about(
            RecordKind::Subjects,
            &json!({"access": access, "subjects": {"hamar/innbyggere": [&per]}}),
            vec![per.clone()],
            Some(access),
        )
        .await
        .unwrap();
    fill(&audit, 2).await;
    for pid in ["01010012356", "03030012345"] {
        let found = audit.accesses_of(pid).await.unwrap();
        assert_eq!(found.iter().map(|a| a.entry.seq).collect::<Vec<_>>(), vec![access], "{pid}");
        assert_eq!(found[0].datasets, vec!["hamar/innbyggere".to_string()]);
    }
    assert!(audit.accesses_of("04040012345").await.unwrap().is_empty());
    let hits = audit.search(&Search { subject: Some("02020012345".into()), ..Default::default() }).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(problem(&audit, None).await, "");
    // Hiding an access from a citizen by deleting index rows is caught, and so is inventing one.
    exec(&store, &format!("DELETE FROM audit_subjects WHERE subject = '{per}'")).await;
    assert!(problem(&audit, None).await.contains("lacks a person named by entry 2"), "{}", problem(&audit, None).await);
    exec(&store, &format!("INSERT INTO audit_subjects (subject, access, seq) VALUES ('{per}', {access}, 2)")).await;
    assert_eq!(problem(&audit, None).await, "");
    exec(&store, &format!("INSERT INTO audit_subjects (subject, access, seq) VALUES ('{per}', 3, 3)")).await;
    assert!(problem(&audit, None).await.contains("rows were added"));
    exec(&store, "DELETE FROM audit_subjects WHERE seq = 3").await;
    // Retention removes the index rows with their entries.
    audit.checkpoint().await.unwrap();
    audit.prune("9999-12-31").await.unwrap();
    assert!(audit.accesses_of("01010012356").await.unwrap().is_empty());
    assert_eq!(problem(&audit, None).await, "");
}

#[tokio::test]
async fn the_subject_key_is_kept_outside_the_catalogue_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (store, audit) = setup(dir.path()).await;
    let id = audit.subject_id("01010012356");
    let again = Audit::open(&store.raw_catalog(), config(dir.path(), "subject.key")).unwrap();
    assert_eq!(again.subject_id("01010012356"), id, "same key file, same identifier");
    assert_eq!(std::fs::read(dir.path().join("subject.key")).unwrap().len(), 32);
    std::fs::write(dir.path().join("short.key"), b"too short").unwrap();
    let short = Audit::open(&store.raw_catalog(), config(dir.path(), "short.key"));
    assert!(matches!(short, Err(AuditError::Key { .. })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_share_a_commit() {
    let dir = tempfile::tempdir().unwrap();
    let (store, audit) = setup(dir.path()).await;
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let audit = audit.clone();
            tokio::spawn(async move {
                for i in 0..50 {
                    audit.append(RecordKind::Access, &json!({"task": n, "i": i})).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let groups: i64 = sqlx::query_scalar("SELECT count(DISTINCT at) FROM audit_log").fetch_one(store.raw_catalog().pool()).await.unwrap();
    // Entries of one group share their time stamp. Without group commit every entry is its own
    // commit; a writer that finds its entry already written must not start a group of one.
    assert!(groups <= 3200 / 8, "{groups} commits for 3,200 entries from 64 writers ({:?})", started.elapsed());
    assert_eq!(audit.verify(None).await.unwrap().problem, None);
}

#[tokio::test]
async fn an_sqlite_log_made_before_the_rowid_change_is_rebuilt_with_every_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (store, audit) = setup(dir.path()).await;
    fill(&audit, 9).await;
    let before = audit.entries().await.unwrap();
    // The table as migration 0003 made it, rows and all.
    exec(
        &store,
        "BEGIN IMMEDIATE; \
         CREATE TABLE old_log (seq BIGINT PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, payload TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL); \
         INSERT INTO old_log SELECT * FROM audit_log; DROP TABLE audit_log; ALTER TABLE old_log RENAME TO audit_log; COMMIT;",
    )
    .await;
    let declared = || async {
        let t: String = sqlx::query_scalar("SELECT type FROM pragma_table_info('audit_log') WHERE name = 'seq'")
            .fetch_one(store.raw_catalog().pool())
            .await
            .unwrap();
        t
    };
    assert_eq!(declared().await, "BIGINT");
    let reopened = Store::open(&StoreConfig { data_dir: dir.path().join("data"), catalog_url: None, storage_url: None }).await.unwrap();
    assert_eq!(declared().await, "INTEGER");
    let audit = Audit::open(&reopened.raw_catalog(), config(dir.path(), "subject.key")).unwrap();
    let after = audit.entries().await.unwrap();
    assert_eq!(serde_json::to_value(&after).unwrap(), serde_json::to_value(&before).unwrap());
    fill(&audit, 3).await;
    let v = audit.verify(None).await.unwrap();
    assert_eq!((v.entries, v.problem), (12, None));
}

#[tokio::test]
async fn the_writer_checkpoints_the_wal_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, audit) = setup(dir.path()).await;
    fill(&audit, 50).await;
    // The WAL index (`-shm`, native byte order): mxFrame, the last frame in the WAL, at byte 16;
    // nBackfill, the frames already copied into the database file, at byte 96.
    let shm = std::fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with("-shm"))
        .expect("a WAL index");
    let frames = || {
        let b = std::fs::read(&shm).unwrap();
        let at = |o: usize| u32::from_ne_bytes(b[o..o + 4].try_into().unwrap());
        (at(16), at(96))
    };
    let (written, _) = frames();
    assert!(written > 0, "the log wrote to the WAL");
    // 50 small entries are far below SQLite's automatic checkpoint (1,000 pages): only the
    // writer's checkpointer copies them.
    let mut copied = (0, 0);
    for _ in 0..20 {
        tokio::time::sleep(CHECKPOINT_WAL_EVERY).await;
        copied = frames();
        if copied.0 > 0 && copied.1 == copied.0 {
            break;
        }
    }
    assert_eq!(copied.1, copied.0, "every frame of the WAL is in the database file");
}

#[tokio::test]
async fn a_group_of_any_size_is_written_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (store, audit) = setup(dir.path()).await;
    // The first append learns the head; the rest go the writer's own connection.
    audit.append(RecordKind::Access, &json!({"first": true})).await.unwrap();
    // 437 records in one queue, 874 subjects.
    for i in 0..437 {
        let ids = vec![format!("s{}", i % 7), format!("t{i}")];
        audit.record_about(RecordKind::Access, &json!({"i": i, "subjects": {"hamar/innbyggere": ids.clone()}}), ids, None);
    }
    audit.flush().await;
    let v = audit.verify(None).await.unwrap();
    assert_eq!((v.entries, v.problem), (438, None));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_subjects").fetch_one(store.raw_catalog().pool()).await.unwrap();
    assert_eq!(n, 874);
}

#[tokio::test]
async fn a_failed_group_writes_nothing_and_the_next_one_chains_on() {
    let dir = tempfile::tempdir().unwrap();
    let (store, audit) = setup(dir.path()).await;
    // With the head known, groups go the writer's own connection.
    fill(&audit, 2).await;
    exec(&store, "CREATE TRIGGER broken BEFORE INSERT ON audit_subjects BEGIN SELECT RAISE(ABORT, 'disk full'); END").await;
    let refused = audit.append_about(RecordKind::Access, &json!({"subjects": {"hamar/innbyggere": ["s1"]}}), vec!["s1".into()], None).await;
    let message = refused.expect_err("the group cannot be written").to_string();
    assert!(message.contains("disk full"), "{message}");
    // The entry was inserted before its subject failed: the whole group is rolled back.
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_log").fetch_one(store.raw_catalog().pool()).await.unwrap();
    assert_eq!(n, 2);
    exec(&store, "DROP TRIGGER broken").await;
    audit.append_about(RecordKind::Access, &json!({"subjects": {"hamar/innbyggere": ["s2"]}}), vec!["s2".into()], None).await.unwrap();
    let v = audit.verify(None).await.unwrap();
    assert_eq!((v.entries, v.problem), (3, None));
}

/// The writer holds no handle to its own inbox: once the last `Audit` is dropped, it stops (and
/// with it the WAL checkpointer), instead of living as long as the runtime.
#[tokio::test]
async fn the_writer_stops_when_the_last_handle_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (_store, audit) = setup(dir.path()).await;
    fill(&audit, 1).await;
    let state = Arc::downgrade(&audit.state);
    drop(audit);
    for _ in 0..200 {
        if state.upgrade().is_none() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the writer still holds the log's state 2 s after the last handle was dropped");
}

#[tokio::test]
async fn retention_that_cannot_write_its_record_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (store, audit) = setup(dir.path()).await;
    fill(&audit, 9).await;
    audit.checkpoint().await.unwrap();
    let count =
        || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM audit_log").fetch_one(store.raw_catalog().pool()).await.unwrap() };
    let before = count().await;
    exec(&store, "CREATE TRIGGER broken BEFORE INSERT ON audit_log BEGIN SELECT RAISE(ABORT, 'disk full'); END").await;
    assert!(audit.prune("9999-12-31").await.is_err(), "the record could not be written, so nothing may go");
    assert_eq!(count().await, before, "every entry is still there");
    exec(&store, "DROP TRIGGER broken").await;
    assert_eq!(problem(&audit, None).await, "", "and the log still verifies");
    assert!(audit.prune("9999-12-31").await.unwrap() > 0);
    assert_eq!(problem(&audit, None).await, "", "a retention that could write its record verifies");
}
