//! `examples/vault.toml` loads and says what its comments promise.

use std::path::PathBuf;

#[test]
fn the_vault_example_loads() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/vault.toml");
    let cfg = tw_config::load(&path).expect("examples/vault.toml is valid");
    let vault = cfg.vault.expect("[vault]");
    assert_eq!(vault.listen, "127.0.0.1:8820");
    assert_eq!(
        vault.redirect_uri().as_str(),
        "http://127.0.0.1:8820/v1/offline-token/callback"
    );
    assert_eq!(vault.encryption.active_key, "2026-01");
    assert!(vault.encryption.keys.contains_key("2026-01"));
    assert_eq!(vault.callers.issuers.len(), 1);
    assert_eq!(vault.callers.roles["vault-scheduler"], ["vault:mint-any"]);
    assert!(vault.mint.cache);
    assert_eq!(
        cfg.storage.expect("[storage]").url,
        "sqlite://tokenwarden-vault.db"
    );
}
