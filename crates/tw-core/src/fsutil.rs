//! Atomic file replacement for token and secret files.

use std::io::Write;
use std::path::Path;

/// Which step of an atomic write failed, and why.
#[derive(Debug)]
pub struct AtomicWriteError {
    pub step: &'static str,
    pub source: std::io::Error,
}

impl std::fmt::Display for AtomicWriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.source)
    }
}

impl std::error::Error for AtomicWriteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Replaces `path` with `contents` so that no reader ever sees a partial file:
/// temp file in the same directory (created 0600, and given `mode` before any byte is written),
/// fsync, rename, fsync of the directory. `mode` is a Unix permission mode such as `0o600`.
pub fn atomic_write(path: &Path, contents: &[u8], mode: u32) -> Result<(), AtomicWriteError> {
    let step = |step: &'static str| move |source: std::io::Error| AtomicWriteError { step, source };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .map_err(step("create temp file"))?;
    set_mode(tmp.as_file(), mode).map_err(step("chmod"))?;
    tmp.write_all(contents).map_err(step("write"))?;
    tmp.as_file().sync_all().map_err(step("fsync"))?;
    tmp.persist(path).map_err(|e| AtomicWriteError {
        step: "rename",
        source: e.error,
    })?;
    sync_dir(dir);
    Ok(())
}

#[cfg(unix)]
fn set_mode(file: &std::fs::File, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_mode(_: &std::fs::File, _: u32) -> std::io::Result<()> {
    Ok(())
}

/// Makes the rename durable; best effort (not every filesystem allows opening a directory).
fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn replaces_content_with_the_requested_mode() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "old").unwrap();
        atomic_write(&p, b"new-content", 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "new-content");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        // No temp files left behind.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
