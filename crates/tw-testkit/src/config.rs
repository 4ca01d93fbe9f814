use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Configuration of one test IdP; serialised as the JSON config file that
/// `testing/idp/server.mjs --config` reads (see `testing/idp/README.md`).
///
/// `clients: None` gives the IdP's default clients (`agent-basic`,
/// `agent-post`, `agent-jwt`, `refresh-client`); `users: None` gives the
/// default user `alice`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IdpConfig {
    pub realm: String,
    /// Lifetime in seconds of access tokens issued from the start.
    pub access_token_ttl: u64,
    pub refresh_token_ttl: u64,
    /// `aud` of every access token.
    pub audience: String,
    /// Fixed IdP port; 0 (the default) lets the OS choose.
    pub port: u16,
    /// Fixed control-API port; 0 (the default) lets the OS choose.
    pub control_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub clients: Option<Vec<ClientSpec>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub users: Option<Vec<UserSpec>>,
}

impl Default for IdpConfig {
    fn default() -> Self {
        Self {
            realm: "test".into(),
            access_token_ttl: 60,
            refresh_token_ttl: 3600,
            audience: "api".into(),
            port: 0,
            control_port: 0,
            clients: None,
            users: None,
        }
    }
}

impl IdpConfig {
    pub fn realm(mut self, realm: impl Into<String>) -> Self {
        self.realm = realm.into();
        self
    }

    pub fn access_token_ttl(mut self, secs: u64) -> Self {
        self.access_token_ttl = secs;
        self
    }

    pub fn refresh_token_ttl(mut self, secs: u64) -> Self {
        self.refresh_token_ttl = secs;
        self
    }

    pub fn audience(mut self, aud: impl Into<String>) -> Self {
        self.audience = aud.into();
        self
    }

    /// Adds a client. The first call replaces the default clients.
    pub fn client(mut self, client: ClientSpec) -> Self {
        self.clients.get_or_insert_with(Vec::new).push(client);
        self
    }

    /// Adds a user. The first call replaces the default user.
    pub fn user(mut self, user: UserSpec) -> Self {
        self.users.get_or_insert_with(Vec::new).push(user);
        self
    }
}

/// One OAuth2 client of the test IdP. Its `Debug` output hides the secret.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct ClientSpec {
    pub client_id: String,
    /// `client_secret_basic`, `client_secret_post`, `client_secret_jwt`,
    /// `private_key_jwt` or `none`.
    pub auth_method: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// `sub` of this client's service-account tokens; default: a stable
    /// UUID derived from the client id (ask [`crate::Idp::client_info`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm_roles: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub client_roles: BTreeMap<String, Vec<String>>,
    /// Default `["client_credentials"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grants: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_uris: Option<Vec<String>>,
    /// PEM files (private or public keys) whose public keys the client's
    /// `private_key_jwt` assertions may be signed with.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub public_key_pem_files: Vec<PathBuf>,
    /// Scopes added to every client-credentials request, as Keycloak's
    /// default client scopes are; default `["profile", "email"]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_scopes: Option<Vec<String>>,
    /// If set, the only scopes the client may request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
}

impl std::fmt::Debug for ClientSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSpec")
            .field("client_id", &self.client_id)
            .field("auth_method", &self.auth_method)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("service_account_id", &self.service_account_id)
            .field("realm_roles", &self.realm_roles)
            .field("client_roles", &self.client_roles)
            .field("grants", &self.grants)
            .field("redirect_uris", &self.redirect_uris)
            .field("public_key_pem_files", &self.public_key_pem_files)
            .field("default_scopes", &self.default_scopes)
            .field("scopes", &self.scopes)
            .finish()
    }
}

impl ClientSpec {
    fn new(client_id: &str, auth_method: &str, secret: Option<&str>) -> Self {
        Self {
            client_id: client_id.into(),
            auth_method: auth_method.into(),
            secret: secret.map(Into::into),
            service_account_id: None,
            realm_roles: None,
            client_roles: BTreeMap::new(),
            grants: None,
            redirect_uris: None,
            public_key_pem_files: Vec::new(),
            default_scopes: None,
            scopes: None,
        }
    }

    /// A confidential client authenticating with HTTP Basic.
    pub fn secret_basic(client_id: &str, secret: &str) -> Self {
        Self::new(client_id, "client_secret_basic", Some(secret))
    }

    /// A confidential client sending its secret in the form body.
    pub fn secret_post(client_id: &str, secret: &str) -> Self {
        Self::new(client_id, "client_secret_post", Some(secret))
    }

    /// A client authenticating with RFC 7523 assertions signed by one of these keys.
    pub fn private_key_jwt<P: Into<PathBuf>>(
        client_id: &str,
        pem_files: impl IntoIterator<Item = P>,
    ) -> Self {
        let mut c = Self::new(client_id, "private_key_jwt", None);
        c.public_key_pem_files = pem_files.into_iter().map(Into::into).collect();
        c
    }

    pub fn service_account_id(mut self, id: impl Into<String>) -> Self {
        self.service_account_id = Some(id.into());
        self
    }

    pub fn realm_roles<S: Into<String>>(mut self, roles: impl IntoIterator<Item = S>) -> Self {
        self.realm_roles = Some(roles.into_iter().map(Into::into).collect());
        self
    }

    pub fn client_roles<S: Into<String>>(
        mut self,
        client: &str,
        roles: impl IntoIterator<Item = S>,
    ) -> Self {
        self.client_roles
            .insert(client.into(), roles.into_iter().map(Into::into).collect());
        self
    }

    pub fn grants<S: Into<String>>(mut self, grants: impl IntoIterator<Item = S>) -> Self {
        self.grants = Some(grants.into_iter().map(Into::into).collect());
        self
    }

    pub fn redirect_uris<S: Into<String>>(mut self, uris: impl IntoIterator<Item = S>) -> Self {
        self.redirect_uris = Some(uris.into_iter().map(Into::into).collect());
        self
    }

    pub fn default_scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.default_scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Restricts the scopes the client may request.
    pub fn scopes<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }
}

/// A user of the test IdP, for refresh tokens and authorization-code flows.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UserSpec {
    pub username: String,
    /// The user's `sub`; default: a stable UUID derived from the username.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub realm_roles: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub client_roles: BTreeMap<String, Vec<String>>,
}

impl UserSpec {
    pub fn new(username: &str) -> Self {
        Self {
            username: username.into(),
            id: None,
            email: None,
            realm_roles: Vec::new(),
            client_roles: BTreeMap::new(),
        }
    }

    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    pub fn realm_roles<S: Into<String>>(mut self, roles: impl IntoIterator<Item = S>) -> Self {
        self.realm_roles = roles.into_iter().map(Into::into).collect();
        self
    }

    pub fn client_roles<S: Into<String>>(
        mut self,
        client: &str,
        roles: impl IntoIterator<Item = S>,
    ) -> Self {
        self.client_roles
            .insert(client.into(), roles.into_iter().map(Into::into).collect());
        self
    }
}
