//! The results folder of a run, claimed before anything is written: never shared with another
//! run. The default name (`results/<scenario>-<UTC timestamp>`, one-second resolution) is made
//! with `create_dir`, which fails when the folder exists, so two runs started in the same second
//! get two folders (the second `…-2`, then `…-3`, ...). A folder given with `--out` may exist
//! only when empty, unless `--overwrite`.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

/// A results or identities folder that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FolderError {
    #[error(
        "{}: the results folder is not empty (it holds {first}): choose a new or empty folder, or add --overwrite to write into it anyway",
        path.display()
    )]
    NotEmpty { path: PathBuf, first: String },
    #[error("{}: exists and is not a folder", path.display())]
    NotAFolder { path: PathBuf },
    #[error(
        "--save-identities: {} exists (an identity saved by an earlier run): fleetstorm never overwrites saved private keys; choose another folder or move the earlier run's files",
        file.display()
    )]
    IdentityExists { file: PathBuf },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl FolderError {
    /// Refused because it would overwrite something (as opposed to an I/O failure).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, FolderError::Io { .. })
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> FolderError + '_ {
    move |source| FolderError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Most suffixes tried before giving up (`-2` … `-1000`): far more runs than can start in one
/// second.
const MAX_SUFFIX: u32 = 1000;

/// Create `base` (its parents as needed), or the first of `base-2`, `base-3`, ... that does not
/// exist yet; the folder returned was created by this call and by no one else.
pub fn claim_default(base: &Path) -> Result<PathBuf, FolderError> {
    if let Some(parent) = base.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let name = base
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    for n in 1..=MAX_SUFFIX {
        let candidate = if n == 1 {
            base.to_path_buf()
        } else {
            base.with_file_name(format!("{name}-{n}"))
        };
        match std::fs::create_dir(&candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io(&candidate)(e)),
        }
    }
    Err(io(base)(std::io::Error::new(
        ErrorKind::AlreadyExists,
        format!("it and {name}-2 … {name}-{MAX_SUFFIX} all exist"),
    )))
}

/// `--out DIR`: created when missing; an existing folder must be empty unless `overwrite`
/// (then the run's files replace those of the same name; other files stay).
pub fn claim_given(path: &Path, overwrite: bool) -> Result<PathBuf, FolderError> {
    match std::fs::create_dir_all(path) {
        Ok(()) => {}
        Err(_) if path.exists() && !path.is_dir() => {
            return Err(FolderError::NotAFolder {
                path: path.to_path_buf(),
            });
        }
        Err(e) => return Err(io(path)(e)),
    }
    if !path.is_dir() {
        return Err(FolderError::NotAFolder {
            path: path.to_path_buf(),
        });
    }
    if overwrite {
        return Ok(path.to_path_buf());
    }
    let mut names: Vec<String> = std::fs::read_dir(path)
        .map_err(io(path))?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    match names.into_iter().next() {
        None => Ok(path.to_path_buf()),
        Some(first) => Err(FolderError::NotEmpty {
            path: path.to_path_buf(),
            first,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_taken_default_name_gets_the_next_free_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("results").join("s-20260101T000000Z");
        let first = claim_default(&base).unwrap();
        let second = claim_default(&base).unwrap();
        let third = claim_default(&base).unwrap();
        assert_eq!(first, base);
        assert_eq!(second, base.with_file_name("s-20260101T000000Z-2"));
        assert_eq!(third, base.with_file_name("s-20260101T000000Z-3"));
        assert!(first.is_dir() && second.is_dir() && third.is_dir());
    }

    #[test]
    fn a_given_folder_must_be_missing_or_empty_unless_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a/b");
        assert_eq!(claim_given(&out, false).unwrap(), out);
        // Empty: still fine.
        assert_eq!(claim_given(&out, false).unwrap(), out);
        std::fs::write(out.join("summary.json"), "{}").unwrap();
        let err = claim_given(&out, false).unwrap_err();
        assert!(err.is_refusal());
        let text = err.to_string();
        assert!(
            text.contains("a/b") && text.contains("summary.json") && text.contains("--overwrite"),
            "{text}"
        );
        assert_eq!(claim_given(&out, true).unwrap(), out);
        let file = out.join("summary.json");
        let err = claim_given(&file, true).unwrap_err();
        assert!(matches!(err, FolderError::NotAFolder { .. }), "{err:?}");
    }
}
