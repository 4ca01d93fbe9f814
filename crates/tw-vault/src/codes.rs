//! The vault's error codes: the stable `code` of every [`tw_core::Error`] the vault raises itself
//! (the IdP's refusals keep the codes the IdP client gives them, `idp_*`; the store's are
//! `tw_store::codes`). Code that branches on a vault failure compares [`tw_core::Error::code`]
//! with these constants, never with a string literal, so a misspelt code does not compile.

/// 404: no such entry, and equally someone else's (knowing an id is never enough).
pub const VAULT_ENTRY_NOT_FOUND: &str = "vault_entry_not_found";
/// 400: an entry id that is not a UUID in its hyphenated form.
pub const INVALID_ENTRY_ID: &str = "invalid_entry_id";
/// 400: attributes out of bounds.
pub const VAULT_ATTRIBUTES_INVALID: &str = "vault_attributes_invalid";
/// 400: the page after a consent is not one `[vault.consent]` allows (also at the callback).
pub const REDIRECT_NOT_ALLOWED: &str = "redirect_not_allowed";
/// 400: the consent `state` is missing, malformed or not signed by this vault.
pub const VAULT_STATE_INVALID: &str = "vault_state_invalid";
/// 400: the consent `state` has expired.
pub const VAULT_STATE_EXPIRED: &str = "vault_state_expired";
/// 400: the consent `state` was used already (or its pending consent was cleared).
pub const VAULT_STATE_USED: &str = "vault_state_used";
/// 400: the IdP's callback carries neither `code` nor `error`.
pub const VAULT_CODE_MISSING: &str = "vault_code_missing";
/// 400: the IdP reported an `error` at the callback (its code in context `idp_error`).
pub const CONSENT_DENIED: &str = "consent_denied";
/// 400: no token given (to store, or to validate).
pub const VAULT_TOKEN_MISSING: &str = "vault_token_missing";
/// 400: the IdP does not accept a caller-supplied refresh token from the vault's client.
pub const VAULT_TOKEN_REJECTED: &str = "vault_token_rejected";
/// 400: only offline entries can be duplicated.
pub const VAULT_DUPLICATE_UNSUPPORTED: &str = "vault_duplicate_unsupported";
/// 403: the caller lacks the `vault:*` permission the operation needs.
pub const VAULT_FORBIDDEN: &str = "vault_forbidden";
/// 403: another user than the caller signed in at the consent.
pub const CONSENT_USER_MISMATCH: &str = "consent_user_mismatch";
/// 403: a caller-supplied token is another user's.
pub const TOKEN_OWNER_MISMATCH: &str = "token_owner_mismatch";
/// 409: the IdP no longer accepts the entry's token; the user must consent again.
pub const VAULT_RECONSENT_REQUIRED: &str = "vault_reconsent_required";
/// 429: the owner has too many consents pending (retry when the oldest expires).
pub const VAULT_TOO_MANY_PENDING_CONSENTS: &str = "vault_too_many_pending_consents";
/// 503 (retryable): another instance held the lineage's refresh lease for as long as a caller
/// waits.
pub const VAULT_REFRESH_IN_PROGRESS: &str = "vault_refresh_in_progress";
/// 503 (retryable): the entry was changed concurrently under every commit attempt.
pub const VAULT_COMMIT_CONFLICT: &str = "vault_commit_conflict";
/// 503 (retryable): the lease was taken over before the fenced write; nothing was written.
pub const VAULT_LEASE_LOST: &str = "vault_lease_lost";
/// 500: a row names a key id the key ring does not hold.
pub const VAULT_KEY_UNKNOWN: &str = "vault_key_unknown";
/// 500: a sealed value does not open (wrong key, or the row's bound data changed).
pub const VAULT_DECRYPT_FAILED: &str = "vault_decrypt_failed";
/// 500: sealing failed.
pub const VAULT_ENCRYPT_FAILED: &str = "vault_encrypt_failed";
/// 500: the task running a mint ended without an answer.
pub const VAULT_MINT_FAILED: &str = "vault_mint_failed";
/// 500: a spawned vault task (delete, duplicate) ended without an answer.
pub const VAULT_TASK_FAILED: &str = "vault_task_failed";
/// Settings: a key of the key ring is unusable.
pub const VAULT_KEY_INVALID: &str = "vault_key_invalid";
/// Settings: the state signing key is unusable.
pub const VAULT_STATE_KEY_INVALID: &str = "vault_state_key_invalid";
/// 502: the consent's ID token does not fit the consent (nonce, subject) or does not verify.
pub const IDP_ID_TOKEN_INVALID: &str = "idp_id_token_invalid";
/// 502: the IdP's answer to a consent carries no refresh token.
pub const IDP_NO_REFRESH_TOKEN: &str = "idp_no_refresh_token";
/// 502: the IdP sent no id_token and its introspection does not vouch for the subject.
pub const IDP_TOKEN_UNVERIFIABLE: &str = "idp_token_unverifiable";
/// 500: an entry id read from storage is not a UUID (the storage was changed by hand).
pub const VAULT_ENTRY_ID_CORRUPT: &str = "storage_error";
