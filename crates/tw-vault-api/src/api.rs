//! The vault API's request and response bodies: its own types, converted from the vault's views
//! (`From`), so the storage's rows never are the API. The OpenAPI document is generated from
//! them ([`crate::openapi`]). Tokens appear only in [`AccessToken`] (the mint answer) and in the
//! requests that hand one to the vault.

use serde::{Deserialize, Deserializer, Serialize};
use std::collections::BTreeMap;
use tw_core::Secret;
use tw_vault::{DeleteOutcome, EntryId, EntryStatus, EntryView, MintedToken, TokenType};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{RefOr, schema::AdditionalProperties};
use utoipa::{PartialSchema, ToSchema};

/// Whose entry it is: the user who consented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Owner {
    pub issuer: String,
    pub subject: String,
}

/// What kind of token an entry holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryTokenType {
    /// An ordinary refresh token (bound to the user's SSO session at the IdP).
    Refresh,
    /// An offline token (`offline_access`): outlives the SSO session.
    Offline,
}

impl From<TokenType> for EntryTokenType {
    fn from(t: TokenType) -> Self {
        match t {
            TokenType::Refresh => Self::Refresh,
            TokenType::Offline => Self::Offline,
        }
    }
}

/// Whether an entry can mint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EntryState {
    Active,
    /// The IdP refused the stored token as spent, revoked or expired: the user must consent again.
    ReconsentRequired,
}

impl From<EntryStatus> for EntryState {
    fn from(s: EntryStatus) -> Self {
        match s {
            EntryStatus::Active => Self::Active,
            EntryStatus::ReconsentRequired => Self::ReconsentRequired,
        }
    }
}

/// An entry as the API shows it (never the token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Entry {
    #[schema(format = "uuid")]
    pub id: String,
    pub owner: Owner,
    pub token_type: EntryTokenType,
    pub status: EntryState,
    /// The IdP session the token belongs to, or a vault-assigned `vault:<uuid>` shared by the
    /// duplicates of one consent.
    pub session_id: Option<String>,
    /// Unix time (seconds).
    pub created_at: i64,
    /// Unix time (seconds).
    pub last_used_at: Option<i64>,
    /// When the stored token expires, if the IdP said (Unix time, seconds).
    pub expires_at: Option<i64>,
    /// Which encryption key seals it.
    pub key_id: String,
    pub attributes: BTreeMap<String, String>,
}

impl From<&EntryView> for Entry {
    fn from(e: &EntryView) -> Self {
        Self {
            id: e.id.to_string(),
            owner: Owner {
                issuer: e.owner_issuer.clone(),
                subject: e.owner_subject.clone(),
            },
            token_type: e.token_type.into(),
            status: e.status.into(),
            session_id: e.session_id.clone(),
            created_at: e.created_at.as_secs(),
            last_used_at: e.last_used_at.map(|t| t.as_secs()),
            expires_at: e.expires_at.map(|t| t.as_secs()),
            key_id: e.key_id.clone(),
            attributes: e.attributes.clone(),
        }
    }
}

/// One IdP session and the entries that belong to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Session {
    pub session_id: String,
    /// Entry ids.
    pub entries: Vec<String>,
}

/// `GET /v1/entries`: entries, newest first, and the sessions they share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct EntryList {
    pub entries: Vec<Entry>,
    pub sessions: Vec<Session>,
}

impl From<&[EntryView]> for EntryList {
    fn from(entries: &[EntryView]) -> Self {
        let mut sessions: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for e in entries {
            if let Some(sid) = &e.session_id {
                sessions.entry(sid).or_default().push(e.id.to_string());
            }
        }
        Self {
            entries: entries.iter().map(Entry::from).collect(),
            sessions: sessions
                .into_iter()
                .map(|(sid, entries)| Session {
                    session_id: sid.to_owned(),
                    entries,
                })
                .collect(),
        }
    }
}

/// The first step of a consent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ConsentStart {
    /// Where to send the user's browser (authorization code + PKCE, single-use signed state).
    #[schema(format = "uri")]
    pub consent_url: String,
    /// Unix time after which the state is refused.
    pub expires_at: i64,
}

impl From<&tw_vault::ConsentStart> for ConsentStart {
    fn from(c: &tw_vault::ConsentStart) -> Self {
        Self {
            consent_url: c.consent_url.as_str().to_owned(),
            expires_at: c.expires_at.as_secs(),
        }
    }
}

/// A minted access token (`Cache-Control: no-store`).
#[derive(Serialize, ToSchema)]
pub struct AccessToken {
    pub access_token: String,
    /// Seconds left (0 when the IdP gave no lifetime).
    pub expires_in: u64,
    pub token_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl From<&MintedToken> for AccessToken {
    fn from(m: &MintedToken) -> Self {
        Self {
            access_token: m.access_token.expose().to_owned(),
            expires_in: m.expires_in,
            token_type: m.token_type.clone(),
            scope: m.scope.clone(),
        }
    }
}

/// `DELETE /v1/entries/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    /// The token was revoked at the IdP (RFC 7009); `false` when another active entry of the same
    /// owner shares its session.
    pub revoked_at_idp: bool,
    /// The revocation ended a session the IdP itself named.
    pub session_revoked: bool,
}

impl Deleted {
    pub fn new(id: &EntryId, outcome: DeleteOutcome) -> Self {
        Self {
            id: id.to_string(),
            revoked_at_idp: outcome.revoked_at_idp,
            session_revoked: outcome.session_revoked,
        }
    }
}

/// `POST /v1/validate-token`: the IdP's RFC 7662 answer as it gave it (`active`, and when active
/// the token's claims).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Introspection(pub serde_json::Value);

impl PartialSchema for Introspection {
    fn schema() -> RefOr<Schema> {
        RefOr::T(Schema::Object(
            ObjectBuilder::new()
                .schema_type(Type::Object)
                .property("active", ObjectBuilder::new().schema_type(Type::Boolean))
                .required("active")
                .additional_properties(Some(AdditionalProperties::FreeForm(true)))
                .build(),
        ))
    }
}

impl ToSchema for Introspection {}

/// `POST /v1/access-token` body (or `?id=`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// The entry id.
    pub id: Option<String>,
}

/// `POST /v1/refresh-token` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreToken {
    #[serde(deserialize_with = "de_secret")]
    #[schema(value_type = String)]
    pub refresh_token: Secret,
    /// Free attributes stored with the entry.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
}

/// `POST /v1/validate-token` body.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ValidateToken {
    #[serde(deserialize_with = "de_secret")]
    #[schema(value_type = String)]
    pub token: Secret,
}

fn de_secret<'de, D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
    String::deserialize(d).map(Secret::new)
}

/// `GET /health`: alive.
#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// The storage as the background ping last saw it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StorageState {
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub reachable: bool,
    /// Why the last ping failed.
    pub error: Option<String>,
}

impl From<tw_store::health::StoreReadiness> for StorageState {
    fn from(r: tw_store::health::StoreReadiness) -> Self {
        Self {
            backend: r.backend.to_owned(),
            reachable: r.reachable,
            error: r.error,
        }
    }
}

/// `GET /health/ready` (200 ready, 503 not): the storage reachable and the callers' issuers'
/// keys loaded.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub storage: StorageState,
    pub caller_keys_loaded: bool,
}

/// `GET /version`.
#[derive(Serialize, ToSchema)]
pub struct Version {
    pub name: String,
    pub version: String,
}
