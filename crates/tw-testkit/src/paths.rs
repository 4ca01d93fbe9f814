use std::path::PathBuf;

/// The repository root: two levels above this crate's manifest directory
/// (`crates/tw-testkit`), unless `TW_REPO_ROOT` says otherwise.
pub fn repo_root() -> PathBuf {
    if let Some(root) = std::env::var_os("TW_REPO_ROOT") {
        return PathBuf::from(root);
    }
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or(manifest)
}

/// `testing/fixtures/<rel>` in the repository, e.g. `fixture_path("keys/agent-ec.pem")`.
pub fn fixture_path(rel: &str) -> PathBuf {
    repo_root().join("testing").join("fixtures").join(rel)
}

/// `testing/idp`, where the test IdP's `server.mjs` lives.
pub fn idp_dir() -> PathBuf {
    repo_root().join("testing").join("idp")
}
