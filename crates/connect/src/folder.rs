//! Drop folders: a directory a municipal system (or an SFTP or SMB share) delivers files into.
//! Each run ingests the files there in name order, one version each, and moves each to
//! `processed/`, or to `failed/` with `NAME.error.txt` beside it. Hidden files and names ending
//! in `.part` or `.tmp` are still being written and wait for the next run.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_std::fs::Dir;

use crate::{ConnectError, Delivery, FetchConfig, Fetched, SourceState};

/// The most files one run takes.
const MAX_FILES_PER_RUN: usize = 1_000;

/// The drop folder's real path: inside `ROOT/ORG/DEPARTMENT/` of a root the operator allows,
/// for the department that owns the dataset, so one department cannot take another's
/// deliveries. The path is checked by its words before anything on disk is looked at (so the
/// check tells nothing of paths outside the roots), and again once resolved.
fn folder_of(config: &FetchConfig, url: &url::Url, owner: (&str, &str)) -> Result<PathBuf, ConnectError> {
    let dir = url.to_file_path().map_err(|_| ConnectError::invalid("source", "a drop folder is file:///absolute/dir/"))?;
    let refused = || {
        ConnectError::Refused(format!(
            "{} is not inside {}/{}/ of a directory the operator allows for drop folders (TVERR_DROP_ROOTS)",
            dir.display(),
            owner.0,
            owner.1
        ))
    };
    if dir.components().any(|c| matches!(c, std::path::Component::ParentDir | std::path::Component::CurDir)) {
        return Err(refused());
    }
    let mine = |root: &Path| root.join(owner.0).join(owner.1);
    if !config.drop_roots.iter().any(|r| dir.starts_with(mine(r))) {
        return Err(refused());
    }
    let real = std::fs::canonicalize(&dir).map_err(|e| ConnectError::Source(format!("drop folder {}: {e}", dir.display())))?;
    let inside = config.drop_roots.iter().filter_map(|r| std::fs::canonicalize(mine(r)).ok()).any(|root| real.starts_with(&root));
    if !inside {
        return Err(refused());
    }
    Ok(real)
}

/// Checks a drop folder's URL against the operator's roots for the department `owner` (org,
/// department), at creation as at every run; its real path.
pub fn check(config: &FetchConfig, url: &url::Url, owner: (&str, &str)) -> Result<PathBuf, ConnectError> {
    folder_of(config, url, owner)
}

/// The real path a drop folder's URL names now, if it exists.
pub fn real_path(url: &url::Url) -> Option<PathBuf> {
    url.to_file_path().ok().and_then(|p| std::fs::canonicalize(p).ok())
}

fn waiting(name: &str) -> bool {
    name.starts_with('.') || name.ends_with(".part") || name.ends_with(".tmp") || name.ends_with(".error.txt")
}

/// The drop folder opened once, by a descriptor: listing, reading and moving all go through it,
/// so a folder swapped for a link after the check is never the one read or written to.
fn open_folder(real: &Path) -> Result<Dir, ConnectError> {
    let dir = Dir::open_ambient_dir(real, cap_std::ambient_authority())?;
    let now = std::fs::symlink_metadata(real)?;
    let opened = dir.dir_metadata()?;
    let same = std::os::unix::fs::MetadataExt::dev(&now) == cap_fs_ext::MetadataExt::dev(&opened)
        && std::os::unix::fs::MetadataExt::ino(&now) == cap_fs_ext::MetadataExt::ino(&opened);
    if now.file_type().is_symlink() || !same {
        return Err(ConnectError::Refused(format!("{} changed while it was opened", real.display())));
    }
    Ok(dir)
}

pub(crate) fn fetch(config: &FetchConfig, url: &url::Url, state: &SourceState, owner: (&str, &str)) -> Result<Fetched, ConnectError> {
    let real = folder_of(config, url, owner)?;
    let dir = Arc::new(open_folder(&real)?);
    let mut names = Vec::new();
    for entry in dir.entries()? {
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
        // Opened through the folder's descriptor without following a link, checked to be a
        // plain file with one link, and copied from that descriptor: what is ingested is the
        // copy, so a link swapped in after the listing, or a hard link to a file elsewhere, is
        // never read.
        let staging = tempfile::tempdir()?;
        let copy = staging.path().join(&name);
        let (refused, sha256) = match copy_plain_file(&dir, &name, &copy) {
            Ok(sha) => (None, Some(sha)),
            Err(reason) => (Some(reason), None),
        };
        deliveries.push(Delivery {
            path: copy,
            name: name.clone(),
            state: SourceState { watermark: None, sha256, ..state.clone() },
            unchanged: false,
            refused,
            dropped: Some((dir.clone(), name)),
            _staging: Some(staging),
        });
    }
    Ok(Fetched::Deliveries(deliveries))
}

/// Copies `name` in `dir`, if it is a plain file with one link, opened without following a
/// link, to `to`; its SHA-256, or why it is not read.
fn copy_plain_file(dir: &Dir, name: &str, to: &Path) -> Result<String, String> {
    use cap_fs_ext::{FollowSymlinks, OpenOptionsFollowExt};
    use cap_std::fs::OpenOptionsExt;
    use sha2::Digest;
    use std::io::{Read, Write};
    use std::os::unix::fs::MetadataExt;
    let mut options = cap_std::fs::OpenOptions::new();
    options.read(true).follow(FollowSymlinks::No).custom_flags(libc::O_NONBLOCK);
    let file = dir.open_with(name, &options).map_err(|e| format!("the file could not be opened as a plain file: {e}"))?;
    let mut file = file.into_std();
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.file_type().is_file() {
        return Err("not a plain file".into());
    }
    if meta.nlink() != 1 {
        return Err("the file has other links to it; deliver a plain file".into());
    }
    let mut out = std::fs::File::create(to).map_err(|e| e.to_string())?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        out.write_all(&buf[..n]).map_err(|e| e.to_string())?;
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Moves a delivered file to `processed/`, or to `failed/` with `error` in `NAME.error.txt`,
/// through the folder's descriptor: `processed/` and `failed/` must be directories in the
/// folder, never links (which could lead anywhere the server may write).
pub(crate) fn finish(dir: &Dir, name: &str, error: Option<&str>) -> Result<(), ConnectError> {
    use cap_fs_ext::{DirExt, FollowSymlinks, OpenOptionsFollowExt};
    use std::io::Write;
    let sub = if error.is_some() { "failed" } else { "processed" };
    match dir.create_dir(sub) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e.into()),
    }
    let target = dir
        .open_dir_nofollow(sub)
        .map_err(|e| ConnectError::Refused(format!("{sub}/ in the drop folder is not a directory of its own: {e}")))?;
    let mut to = name.to_string();
    if target.symlink_metadata(&to).is_ok() {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        to = format!("{stamp}-{name}");
    }
    if let Some(error) = error {
        let mut options = cap_std::fs::OpenOptions::new();
        options.write(true).create_new(true).follow(FollowSymlinks::No);
        let mut note = target.open_with(format!("{to}.error.txt"), &options)?;
        note.write_all(format!("{error}\n").as_bytes())?;
    }
    dir.rename(name, &target, &to)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_taken_in_name_order_and_moved_when_done() {
        let root = tempfile::tempdir().unwrap();
        let drop = root.path().join("hamar/skatt/innbetalinger");
        std::fs::create_dir_all(&drop).unwrap();
        for n in ["b.csv", "a.csv", ".hidden.csv", "c.csv.part"] {
            std::fs::write(drop.join(n), "x\n1\n").unwrap();
        }
        let url = url::Url::from_directory_path(&drop).unwrap();
        let denied = FetchConfig::default();
        assert!(matches!(fetch(&denied, &url, &SourceState::default(), OWNER), Err(ConnectError::Refused(_))));
        let config = FetchConfig { drop_roots: vec![root.path().to_path_buf()], ..FetchConfig::default() };
        assert!(
            matches!(fetch(&config, &url, &SourceState::default(), ("hamar", "andre")), Err(ConnectError::Refused(_))),
            "another department's folder"
        );
        let Fetched::Deliveries(d) = fetch(&config, &url, &SourceState::default(), OWNER).unwrap() else { panic!("files") };
        assert_eq!(d.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(), ["a.csv", "b.csv"]);
        d[0].finish(None).unwrap();
        d[1].finish(Some("line 2, column x: not a number")).unwrap();
        assert!(drop.join("processed/a.csv").exists());
        assert!(!drop.join("a.csv").exists() && !drop.join("b.csv").exists());
        assert!(drop.join("failed/b.csv").exists());
        assert!(std::fs::read_to_string(drop.join("failed/b.csv.error.txt")).unwrap().contains("line 2"));
        assert!(matches!(fetch(&config, &url, &SourceState::default(), OWNER).unwrap(), Fetched::Unchanged));
    }

    const OWNER: (&str, &str) = ("hamar", "skatt");

    #[test]
    fn links_and_files_with_other_links_are_not_read() {
        let root = tempfile::tempdir().unwrap();
        let drop = root.path().join("hamar/skatt/inn");
        std::fs::create_dir_all(&drop).unwrap();
        let secret = root.path().join("hemmelig.csv");
        std::fs::write(&secret, "a\nHEMMELIG\n").unwrap();
        std::fs::hard_link(&secret, drop.join("hard.csv")).unwrap();
        std::os::unix::fs::symlink(&secret, drop.join("soft.csv")).unwrap();
        // As if a link was swapped in after the listing: the copy is refused, never read.
        let dir = Dir::open_ambient_dir(&drop, cap_std::ambient_authority()).unwrap();
        assert!(copy_plain_file(&dir, "soft.csv", &root.path().join("out1")).is_err());
        assert!(copy_plain_file(&dir, "hard.csv", &root.path().join("out2")).unwrap_err().contains("other links"));
        let config = FetchConfig { drop_roots: vec![root.path().to_path_buf()], ..FetchConfig::default() };
        let url = url::Url::from_directory_path(&drop).unwrap();
        let Fetched::Deliveries(d) = fetch(&config, &url, &SourceState::default(), OWNER).unwrap() else { panic!("files") };
        assert_eq!(d.len(), 1, "the symbolic link is not listed");
        assert!(d[0].refused.is_some(), "the hard link is refused");
        // processed/ and failed/ that are links to elsewhere are not written through.
        let outside = root.path().join("utenfor");
        std::fs::create_dir_all(&outside).unwrap();
        std::os::unix::fs::symlink(&outside, drop.join("failed")).unwrap();
        assert!(d[0].finish(Some("x")).is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing written through the link");
        for bad in ["file:///etc/", "file:///tmp/../etc/"] {
            let url = url::Url::parse(bad).unwrap();
            assert!(matches!(fetch(&config, &url, &SourceState::default(), OWNER), Err(ConnectError::Refused(_))), "{bad}");
        }
    }
}
