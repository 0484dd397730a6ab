//! The one door, as the dependency graph: the crates that face users (`tverr-server`,
//! `tverr-cli`) reach table data only through this crate. They have no direct dependency on the
//! store or on a crate that reads storage, so they cannot name a Delta table, a Parquet reader,
//! DataFusion or a SQL pool; the compile-fail tests in `tverr-server`'s crate docs show that no
//! value they can get holds one either.

use std::collections::BTreeMap;
use std::process::Command;

/// Crates that read or write storage: only the access layer and what it builds on use them.
const STORAGE: &[&str] = &["tverr-store", "tverr-ingest", "deltalake", "parquet", "object_store", "datafusion", "sqlx", "rusqlite"];

/// Crates that face users: HTTP, web pages, the command line.
const FACING: &[&str] = &["tverr-server", "tverr-cli"];

/// Every workspace crate's direct dependencies (any kind: normal, dev, build), from `cargo
/// metadata`.
fn direct_dependencies() -> BTreeMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|p| {
            let name = p["name"].as_str().expect("a name").to_string();
            let deps = p["dependencies"].as_array().expect("dependencies").iter().map(|d| d["name"].as_str().expect("a name").to_string());
            (name, deps.collect())
        })
        .collect()
}

#[test]
fn the_crates_that_face_users_depend_on_no_storage_crate() {
    let all = direct_dependencies();
    for facing in FACING {
        let deps = all.get(*facing).unwrap_or_else(|| panic!("{facing} is a workspace member"));
        assert!(deps.iter().any(|d| d == "tverr-access"), "{facing} reads through tverr-access");
        let forbidden: Vec<&String> = deps.iter().filter(|d| STORAGE.contains(&d.as_str())).collect();
        assert!(forbidden.is_empty(), "{facing} depends directly on {forbidden:?}: read and write table data through tverr-access");
    }
}

#[test]
fn the_check_sees_the_dependencies_it_forbids() {
    // The access layer itself depends on the store and DataFusion: if `cargo metadata` stopped
    // listing dependencies, the test above would pass for the wrong reason.
    let all = direct_dependencies();
    let access = &all["tverr-access"];
    for needed in ["tverr-store", "datafusion", "deltalake"] {
        assert!(access.iter().any(|d| d == needed), "tverr-access lists {needed}: {access:?}");
    }
}
