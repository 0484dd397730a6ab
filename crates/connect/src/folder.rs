//! Drop folders: a directory a municipal system (or an SFTP or SMB share) delivers files into.
//! Each run ingests the files there in name order, one version each, and moves each to
//! `processed/`, or to `failed/` with `NAME.error.txt` beside it. Hidden files and names ending
//! in `.part` or `.tmp` are still being written and wait for the next run.

use std::path::{Path, PathBuf};

use crate::{ConnectError, Delivery, FetchConfig, Fetched, SourceState};

/// The most files one run takes.
const MAX_FILES_PER_RUN: usize = 1_000;

fn folder_of(config: &FetchConfig, url: &url::Url) -> Result<PathBuf, ConnectError> {
    let dir = url.to_file_path().map_err(|_| ConnectError::invalid("source", "a drop folder is file:///absolute/dir/"))?;
    let real = std::fs::canonicalize(&dir).map_err(|e| ConnectError::Source(format!("drop folder {}: {e}", dir.display())))?;
    let inside = config.drop_roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).any(|root| real.starts_with(&root));
    if !inside {
        return Err(ConnectError::Refused(format!(
            "{} is not inside a directory the operator allows for drop folders (TVERR_DROP_ROOTS)",
            dir.display()
        )));
    }
    Ok(real)
}

/// Checks a drop folder's URL against the operator's roots (at creation, as at every run).
pub fn check(config: &FetchConfig, url: &url::Url) -> Result<(), ConnectError> {
    folder_of(config, url).map(|_| ())
}

fn waiting(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp") || name.ends_with(".error.txt")
}

pub(crate) fn fetch(config: &FetchConfig, url: &url::Url, state: &SourceState) -> Result<Fetched, ConnectError> {
    let dir = folder_of(config, url)?;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Only plain files: a link could point anywhere on the machine.
        if entry.file_type()?.is_file() && !waiting(&name) {
            names.push(name);
        }
    }
    names.sort();
    names.truncate(MAX_FILES_PER_RUN);
    if names.is_empty() {
        return Ok(Fetched::Unchanged);
    }
    let mut deliveries = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        // The file's digest: one identical to the last version's source was ingested by a run
        // that stopped before it could move the file, and is not ingested twice.
        let sha256 = digest(&path)?;
        deliveries.push(Delivery {
            path,
            name,
            state: SourceState { watermark: None, sha256: Some(sha256), ..state.clone() },
            unchanged: false,
            dropped: Some(dir.clone()),
            _staging: None,
        });
    }
    Ok(Fetched::Deliveries(deliveries))
}

fn digest(path: &Path) -> Result<String, ConnectError> {
    use sha2::Digest;
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

pub(crate) fn finish(folder: &Path, file: &Path, error: Option<&str>) -> Result<(), ConnectError> {
    let name = file.file_name().ok_or_else(|| ConnectError::Source("a delivered file has no name".into()))?;
    let target = folder.join(if error.is_some() { "failed" } else { "processed" });
    std::fs::create_dir_all(&target)?;
    let mut to = target.join(name);
    if to.exists() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        to = target.join(format!("{stamp}-{}", name.to_string_lossy()));
    }
    if let Some(error) = error {
        let mut note = to.clone().into_os_string();
        note.push(".error.txt");
        std::fs::write(&note, format!("{error}\n"))?;
    }
    std::fs::rename(file, &to)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_taken_in_name_order_and_moved_when_done() {
        let root = tempfile::tempdir().unwrap();
        let drop = root.path().join("skatt");
        std::fs::create_dir_all(&drop).unwrap();
        for n in ["b.csv", "a.csv", ".hidden.csv", "c.csv.part"] {
            std::fs::write(drop.join(n), "x\n1\n").unwrap();
        }
        let url = url::Url::from_directory_path(&drop).unwrap();
        let denied = FetchConfig::default();
        assert!(matches!(fetch(&denied, &url, &SourceState::default()), Err(ConnectError::Refused(_))));
        let config = FetchConfig { drop_roots: vec![root.path().to_path_buf()], ..FetchConfig::default() };
        let Fetched::Deliveries(d) = fetch(&config, &url, &SourceState::default()).unwrap() else { panic!("files") };
        assert_eq!(d.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["a.csv", "b.csv"]);
        d[0].finish(None).unwrap();
        d[1].finish(Some("line 2, column x: not a number")).unwrap();
        assert!(drop.join("processed/a.csv").exists());
        assert!(drop.join("failed/b.csv").exists());
        assert!(std::fs::read_to_string(drop.join("failed/b.csv.error.txt")).unwrap().contains("line 2"));
        assert!(matches!(fetch(&config, &url, &SourceState::default()).unwrap(), Fetched::Unchanged));
    }
}
