//! `--save-identities DIR`: each provisioned device's certificate and private key, never
//! overwriting a file. A folder that already holds identities (of an earlier run: the same seed
//! gives the same thing names) is refused before the run starts; a file that appears during the
//! run (two devices given one thing name, another process) is left alone and reported.

use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::{FolderError, OutputError, io_err};
use crate::device::Provisioned;

/// The files identities are saved as.
const SUFFIXES: [&str; 2] = [".private.key", ".cert.pem"];

/// Refuse `dir` when it, or a folder directly below it (where the variants of a run save theirs),
/// holds a saved identity; a missing folder is fine (it is created on the first identity).
pub fn check_identities_folder(dir: &Path) -> Result<(), FolderError> {
    let identity = |dir: &Path| -> Result<Option<PathBuf>, FolderError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(FolderError::Io {
                    path: dir.to_path_buf(),
                    source,
                });
            }
        };
        let mut found: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                SUFFIXES.iter().any(|s| name.ends_with(s))
            })
            .collect();
        found.sort();
        Ok(found.into_iter().next())
    };
    let mut dirs = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut below: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        below.sort();
        dirs.extend(below);
    }
    for d in dirs {
        if let Some(file) = identity(&d)? {
            return Err(FolderError::IdentityExists { file });
        }
    }
    Ok(())
}

/// Write `contents` to a new file `path` (0600 when `secret`); `Ok(false)` when the file exists
/// (left as it is).
fn write_new(path: &Path, contents: &[u8], secret: bool) -> Result<bool, OutputError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = match options.open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(OutputError::new(path, e)),
    };
    file.write_all(contents).map_err(io_err(path))?;
    Ok(true)
}

/// `<name>.cert.pem` and `<name>.private.key` (0600) in `dir`, named by thing name (or client
/// ID). `Ok(Some(file))`: `file` already existed, and nothing of this identity was written.
pub fn save_identity(
    dir: &Path,
    client_id: &str,
    p: &Provisioned,
) -> Result<Option<PathBuf>, OutputError> {
    let name = if p.thing_name.is_empty() {
        client_id
    } else {
        &p.thing_name
    };
    let name: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_:.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    // The key first: a key that cannot be written leaves no certificate without it.
    let key = dir.join(format!("{name}.private.key"));
    if !write_new(&key, p.private_key_pem.as_bytes(), true)? {
        return Ok(Some(key));
    }
    let cert = dir.join(format!("{name}.cert.pem"));
    if !write_new(&cert, p.certificate_pem.as_bytes(), false)? {
        return Ok(Some(cert));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provisioned(key: &str) -> Provisioned {
        Provisioned {
            thing_name: "thing/1".into(),
            certificate_id: "c".into(),
            certificate_pem: "CERT".into(),
            private_key_pem: key.into(),
            device_configuration: Default::default(),
        }
    }

    #[test]
    fn a_saved_key_is_never_overwritten_and_an_earlier_runs_folder_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ids = dir.path().join("ids");
        check_identities_folder(&ids).unwrap();
        assert_eq!(
            save_identity(&ids, "c1", &provisioned("KEY1")).unwrap(),
            None
        );
        let key = ids.join("thing_1.private.key");
        assert_eq!(
            save_identity(&ids, "c1", &provisioned("KEY2")).unwrap(),
            Some(key.clone())
        );
        assert_eq!(std::fs::read_to_string(&key).unwrap(), "KEY1");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let err = check_identities_folder(&ids).unwrap_err();
        assert!(err.is_refusal());
        assert!(err.to_string().contains("thing_1"), "{err}");
        // A variant's folder below it counts too; other files do not.
        let parent = dir.path().join("variants");
        std::fs::create_dir_all(parent.join("fast")).unwrap();
        std::fs::write(parent.join("notes.txt"), "x").unwrap();
        check_identities_folder(&parent).unwrap();
        std::fs::write(parent.join("fast/t.cert.pem"), "x").unwrap();
        let err = check_identities_folder(&parent).unwrap_err().to_string();
        assert!(err.contains("fast/t.cert.pem"), "{err}");
    }
}
