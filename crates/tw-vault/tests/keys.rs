//! Sealed rows: tampering and row swaps are detected, a wrong or missing key is a clear error,
//! rekey moves every entry to the active key and leaves them all usable; SQLite and PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Harness, ring};
use tw_store::{TokenUpdate, VaultStore};
use tw_vault::{EntryId, RekeyReport};

fn assert_code<T: std::fmt::Debug>(r: tw_core::Result<T>, code: &str) {
    let e = r.expect_err("expected an error");
    assert_eq!((e.code(), e.http_status()), (code, 500), "{e:?}");
    assert!(!e.is_retryable());
}

/// Writes `sealed` into the entry's row as an attacker with database access would.
async fn overwrite(h: &Harness, id: &EntryId, sealed: tw_store::Sealed) {
    let row = h.store.get(&id.to_string()).await.unwrap().unwrap();
    let applied = h
        .store
        .update_tokens(&[TokenUpdate {
            id: row.id,
            expected_version: Some(row.version),
            sealed,
            expires_at: row.expires_at,
            used_at: None,
        }])
        .await
        .unwrap();
    assert!(applied);
}

async fn sealed_of(h: &Harness, id: &EntryId) -> tw_store::Sealed {
    h.store.get(&id.to_string()).await.unwrap().unwrap().sealed
}

async fn tampering_and_wrong_keys(h: Harness) {
    let a = h.consent(&h.alice, "alice").await.unwrap().entry;
    let b = h.consent(&h.alice, "alice").await.unwrap().entry;
    let original_a = sealed_of(&h, &a.id).await;

    // One flipped bit in the ciphertext.
    let mut flipped = original_a.clone();
    flipped.ciphertext[3] ^= 0x01;
    overwrite(&h, &a.id, flipped).await;
    assert_code(h.vault.mint(&h.alice, &a.id).await, "vault_decrypt_failed");
    // Another nonce.
    let mut renonced = original_a.clone();
    renonced.nonce[0] ^= 0x80;
    overwrite(&h, &a.id, renonced).await;
    assert_code(h.vault.mint(&h.alice, &a.id).await, "vault_decrypt_failed");
    // B's intact ciphertext moved into A's row: the associated data (entry id) differs.
    overwrite(&h, &a.id, sealed_of(&h, &b.id).await).await;
    assert_code(h.vault.mint(&h.alice, &a.id).await, "vault_decrypt_failed");
    // Restored, it opens again.
    overwrite(&h, &a.id, original_a).await;
    h.vault.mint(&h.alice, &a.id).await.unwrap();

    // A vault whose `k1` is other key material.
    let impostor = h.vault_with_keys(ring("k1", &[("k1", 2)])).await;
    assert_code(impostor.mint(&h.alice, &b.id).await, "vault_decrypt_failed");
    // A vault without `k1` at all.
    let forgetful = h.vault_with_keys(ring("k2", &[("k2", 2)])).await;
    let e = forgetful.mint(&h.alice, &b.id).await.unwrap_err();
    assert_eq!(e.code(), "vault_key_unknown");
    assert_eq!(e.context_value("key_id"), Some("k1"));
    // Both left the row alone: the right key still works.
    h.vault.mint(&h.alice, &b.id).await.unwrap();
}
both!(tampering, tampering_and_wrong_keys);

async fn rekey_keeps_every_entry_readable(h: Harness) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(h.consent(&h.alice, "alice").await.unwrap().entry.id);
    }
    ids.push(h.consent(&h.bob, "bob").await.unwrap().entry.id);

    // Rotation step 1: k2 becomes active, k1 stays for reading. New writes use k2 at once.
    let rotating = h.vault_with_keys(ring("k2", &[("k1", 1), ("k2", 2)])).await;
    h.vault.mint(&h.alice, &ids[0]).await.unwrap();
    assert_eq!(sealed_of(&h, &ids[0]).await.key_id, "k1");
    let newer = h.consent(&h.alice, "alice").await.unwrap().entry.id;
    let minted = rotating.mint(&h.alice, &ids[1]).await.unwrap();
    assert!(!minted.access_token.is_empty());
    assert_eq!(
        sealed_of(&h, &ids[1]).await.key_id,
        "k2",
        "a rotation writes under the active key"
    );
    ids.push(newer);

    let report = rotating.rekey().await.unwrap();
    assert_eq!(
        report,
        RekeyReport {
            rewritten: 4,
            unchanged: 1,
            failed: 0
        }
    );
    for id in &ids {
        assert_eq!(sealed_of(&h, id).await.key_id, "k2");
    }
    assert_eq!(
        rotating.rekey().await.unwrap(),
        RekeyReport {
            rewritten: 0,
            unchanged: 5,
            failed: 0
        }
    );

    // Step 2: k1 retired. Every entry still mints.
    let retired = h.vault_with_keys(ring("k2", &[("k2", 2)])).await;
    for (i, id) in ids.iter().enumerate() {
        let owner = if i == 3 { &h.bob } else { &h.alice };
        retired.mint(owner, id).await.unwrap();
        assert_eq!(retired.get(owner, id).await.unwrap().key_id, "k2");
    }

    // A row that cannot be opened is counted, left as it is, and the rest proceed.
    let k3 = h.vault_with_keys(ring("k3", &[("k2", 2), ("k3", 3)])).await;
    let mut broken = sealed_of(&h, &ids[2]).await;
    broken.ciphertext[0] ^= 0xff;
    overwrite(&h, &ids[2], broken.clone()).await;
    let report = k3.rekey().await.unwrap();
    assert_eq!(
        report,
        RekeyReport {
            rewritten: 4,
            unchanged: 0,
            failed: 1
        }
    );
    assert_eq!(sealed_of(&h, &ids[2]).await, broken);
}
both!(rekey, rekey_keeps_every_entry_readable);
