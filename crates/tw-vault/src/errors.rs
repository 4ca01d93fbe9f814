//! The vault's error codes (see the crate docs for the list).

use crate::codes;
use tw_core::{Error, ErrorKind};

/// 404 for an unknown entry, and equally for someone else's: knowing an id is never enough.
pub(crate) fn entry_not_found(id: &crate::EntryId) -> Error {
    entry_not_found_text().with("entry", id.to_string())
}

pub(crate) fn entry_not_found_text() -> Error {
    Error::not_found(codes::VAULT_ENTRY_NOT_FOUND, "no such vault entry")
}

pub(crate) fn reconsent_required(id: &crate::EntryId) -> Error {
    Error::conflict(
        codes::VAULT_RECONSENT_REQUIRED,
        "the IdP no longer accepts this entry's token (spent, revoked or expired): the user must consent again",
    )
    .with("entry", id.to_string())
}

pub(crate) fn forbidden(what: &str, permission: &str) -> Error {
    Error::new(
        ErrorKind::Forbidden,
        codes::VAULT_FORBIDDEN,
        format!("{what} needs the permission `{permission}`"),
    )
    .with("permission", permission)
}

/// 403 at the consent callback: someone other than the caller signed in at the IdP.
pub(crate) fn user_mismatch() -> Error {
    Error::new(
        ErrorKind::Forbidden,
        codes::CONSENT_USER_MISMATCH,
        "the user who signed in at the IdP is not the caller who asked for this token",
    )
}

/// 403 when storing a caller's token: the IdP says it was issued to another user.
pub(crate) fn token_owner_mismatch() -> Error {
    Error::new(
        ErrorKind::Forbidden,
        codes::TOKEN_OWNER_MISMATCH,
        "the refresh token belongs to another user",
    )
}

/// 400 `invalid_entry_id`: entry ids are UUIDs in their hyphenated form.
pub(crate) fn invalid_entry_id() -> Error {
    Error::bad_request(
        codes::INVALID_ENTRY_ID,
        "an entry id is a UUID such as 7d5b1c1e-0000-4000-8000-000000000000",
    )
}

pub(crate) fn bad_attributes(why: &str) -> Error {
    Error::bad_request(
        codes::VAULT_ATTRIBUTES_INVALID,
        format!("attributes: {why}"),
    )
}

/// 400 `redirect_not_allowed`: the page after a consent is not one `[vault.consent]` allows.
pub(crate) fn redirect_not_allowed(why: &str) -> Error {
    Error::bad_request(codes::REDIRECT_NOT_ALLOWED, why.to_owned())
}
