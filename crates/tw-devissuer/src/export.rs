//! Keycloak's realm export format (admin console "partial export", `kc.sh export`), as far as the
//! dev issuer reads it. Every field is optional or defaulted like Keycloak's own import; a wrong
//! type is an error naming the JSON path. Parts the issuer does not use are found by walking the
//! raw JSON (`realm::Notes`), so nothing is dropped silently. No `Debug` on types holding secrets.

use serde::Deserialize;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RealmRep {
    pub realm: String,
    pub enabled: Option<bool>,
    /// Seconds. Keycloak keeps these as Java ints: a larger value is refused (naming its path)
    /// as Keycloak's import refuses it, rather than issuing tokens that never expire.
    pub access_token_lifespan: Option<i32>,
    pub sso_session_idle_timeout: Option<i32>,
    pub sso_session_max_lifespan: Option<i32>,
    #[serde(default)]
    pub revoke_refresh_token: bool,
    #[serde(default)]
    pub refresh_token_max_reuse: u32,
    #[serde(default)]
    pub clients: Vec<ClientRep>,
    #[serde(default)]
    pub client_scopes: Vec<ClientScopeRep>,
    #[serde(default)]
    pub roles: RolesRep,
    #[serde(default)]
    pub users: Vec<UserRep>,
    #[serde(default)]
    pub groups: Vec<GroupRep>,
    pub default_role: Option<NamedRep>,
    pub default_default_client_scopes: Option<Vec<String>>,
}

#[derive(Deserialize)]
pub(crate) struct NamedRep {
    pub name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientRep {
    pub client_id: String,
    pub enabled: Option<bool>,
    pub secret: Option<String>,
    #[serde(default)]
    pub public_client: bool,
    #[serde(default)]
    pub bearer_only: bool,
    #[serde(default)]
    pub service_accounts_enabled: bool,
    pub client_authenticator_type: Option<String>,
    pub protocol: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub protocol_mappers: Vec<MapperRep>,
    pub default_client_scopes: Option<Vec<String>>,
    #[serde(default)]
    pub optional_client_scopes: Vec<String>,
    #[serde(default)]
    pub web_origins: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MapperRep {
    pub name: String,
    pub protocol: Option<String>,
    pub protocol_mapper: String,
    #[serde(default)]
    pub config: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ClientScopeRep {
    pub name: String,
    pub protocol: Option<String>,
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    #[serde(default)]
    pub protocol_mappers: Vec<MapperRep>,
}

#[derive(Default, Deserialize)]
pub(crate) struct RolesRep {
    #[serde(default)]
    pub realm: Vec<RoleRep>,
    #[serde(default)]
    pub client: BTreeMap<String, Vec<RoleRep>>,
}

#[derive(Deserialize)]
pub(crate) struct RoleRep {
    pub name: String,
    pub composites: Option<CompositesRep>,
}

#[derive(Default, Deserialize)]
pub(crate) struct CompositesRep {
    #[serde(default)]
    pub realm: Vec<String>,
    #[serde(default)]
    pub client: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserRep {
    pub id: Option<String>,
    pub username: String,
    pub enabled: Option<bool>,
    pub service_account_client_id: Option<String>,
    #[serde(default)]
    pub realm_roles: Vec<String>,
    #[serde(default)]
    pub client_roles: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    #[serde(default)]
    pub attributes: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct GroupRep {
    pub name: String,
    #[serde(default)]
    pub realm_roles: Vec<String>,
    #[serde(default)]
    pub client_roles: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub sub_groups: Vec<GroupRep>,
}
