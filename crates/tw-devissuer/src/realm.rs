//! A realm export compiled into what the issuer needs: clients with their authentication,
//! service accounts with their effective (composite-expanded) roles, and client scopes with their
//! mappers. Everything in the export that the issuer does not use is listed as [`Unsupported`].

use crate::export::{ClientRep, GroupRep, MapperRep, RealmRep, RoleRep};
use crate::report::{RealmSummary, Unsupported};
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;
use tw_core::Invalid;
use tw_core::{Error, Secret};

/// Keycloak shows this instead of the secret in partial exports.
pub(crate) const MASKED_SECRET: &str = "**********";
const DEFAULT_ACCESS_TOKEN_LIFESPAN: u64 = 300;
const DEFAULT_SSO_IDLE: u64 = 1800;
const DEFAULT_SSO_MAX: u64 = 36000;
/// The scopes Keycloak gives a client when neither it nor the realm names any.
const KEYCLOAK_DEFAULT_SCOPES: [&str; 5] = ["web-origins", "acr", "profile", "roles", "email"];

/// A role: realm role by name, or client role by client id and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum RoleRef {
    Realm(String),
    Client(String, String),
}

#[derive(Debug)]
pub(crate) struct Realm {
    pub name: String,
    pub source: String,
    pub enabled: bool,
    pub access_token_lifespan: Duration,
    pub sso_idle: Duration,
    pub sso_max: Duration,
    pub revoke_refresh_token: bool,
    pub refresh_token_max_reuse: u32,
    pub clients: BTreeMap<String, Client>,
    pub scopes: BTreeMap<String, Scope>,
    /// Service accounts by the client id they belong to.
    pub service_accounts: BTreeMap<String, ServiceAccount>,
    pub summary: RealmSummary,
}

#[derive(Debug)]
pub(crate) enum ClientSecret {
    None,
    Given(Secret),
    /// Masked in the export and not supplied: secret authentication is refused.
    Masked,
}

pub(crate) struct JwtKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKey").field("kid", &self.kid).finish()
    }
}

#[derive(Debug)]
pub(crate) enum ClientAuth {
    Secret,
    Jwt(Vec<JwtKey>),
    /// An authenticator the issuer does not implement (its name).
    Unsupported(String),
}

#[derive(Debug)]
pub(crate) struct Client {
    pub client_id: String,
    pub enabled: bool,
    pub public: bool,
    pub bearer_only: bool,
    pub service_accounts: bool,
    pub secret: ClientSecret,
    pub auth: ClientAuth,
    pub assertion_alg: Option<Algorithm>,
    pub access_token_lifespan: Option<Duration>,
    pub use_refresh_token: bool,
    pub mappers: Vec<MapperRep>,
    pub default_scopes: Vec<String>,
    pub optional_scopes: Vec<String>,
    pub web_origins: Vec<String>,
}

#[derive(Debug)]
pub(crate) struct Scope {
    pub include_in_token_scope: bool,
    pub mappers: Vec<MapperRep>,
}

#[derive(Debug)]
pub(crate) struct ServiceAccount {
    pub id: String,
    pub username: String,
    pub enabled: bool,
    /// Effective roles: direct, from groups, composites expanded.
    pub roles: BTreeSet<RoleRef>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub email_verified: bool,
    pub attributes: BTreeMap<String, Vec<String>>,
}

/// Mapper types the issuer implements (others are listed as unsupported).
pub(crate) const SUPPORTED_MAPPERS: &[&str] = &[
    "oidc-usermodel-realm-role-mapper",
    "oidc-usermodel-client-role-mapper",
    "oidc-audience-mapper",
    "oidc-audience-resolve-mapper",
    "oidc-usersessionmodel-note-mapper",
    "oidc-usermodel-attribute-mapper",
    "oidc-usermodel-property-mapper",
    "oidc-hardcoded-claim-mapper",
    "oidc-acr-mapper",
    "oidc-allowed-origins-mapper",
    "oidc-full-name-mapper",
    "oidc-sub-mapper",
];

/// Client attributes the issuer reads.
const USED_CLIENT_ATTRIBUTES: &[&str] = &[
    "access.token.lifespan",
    "client_credentials.use_refresh_token",
    "jwt.credential.certificate",
    "jwt.credential.public.key",
    "use.jwks.string",
    "jwks.string",
    "use.jwks.url",
    "jwks.url",
    "token.endpoint.auth.signing.alg",
];

/// Top-level keys the issuer reads (or that only describe the export itself).
const USED_REALM_KEYS: &[&str] = &[
    "id",
    "realm",
    "displayName",
    "displayNameHtml",
    "enabled",
    "accessTokenLifespan",
    "ssoSessionIdleTimeout",
    "ssoSessionMaxLifespan",
    "revokeRefreshToken",
    "refreshTokenMaxReuse",
    "clients",
    "clientScopes",
    "roles",
    "users",
    "groups",
    "defaultRole",
    "defaultRoles",
    "defaultDefaultClientScopes",
    "defaultOptionalClientScopes",
    "keycloakVersion",
    "notBefore",
    "defaultSignatureAlgorithm",
];

/// Client keys that only describe the client or that the issuer reads.
const USED_CLIENT_KEYS: &[&str] = &[
    "id",
    "clientId",
    "name",
    "description",
    "enabled",
    "secret",
    "publicClient",
    "bearerOnly",
    "serviceAccountsEnabled",
    "clientAuthenticatorType",
    "protocol",
    "attributes",
    "protocolMappers",
    "defaultClientScopes",
    "optionalClientScopes",
    "webOrigins",
    "notBefore",
    "alwaysDisplayInConsole",
    "surrogateAuthRequired",
    "nodeReRegistrationTimeout",
    "access",
    "rootUrl",
    "baseUrl",
    "adminUrl",
    "redirectUris",
    "consentRequired",
    "frontchannelLogout",
    "authenticationFlowBindingOverrides",
];

/// Compiles one export. `raw` is the parsed JSON (for the unsupported listing), `rep` its typed form.
pub(crate) fn compile(
    source: &str,
    raw: &Value,
    rep: RealmRep,
    secret_overrides: &BTreeMap<(String, String), Secret>,
) -> Result<Realm, Error> {
    let realm_name = rep.realm.clone();
    if realm_name.is_empty() || realm_name.contains('/') {
        return Err(Error::config(
            "bad_realm_export",
            format!("{source}: $.realm: a realm name must be non-empty and without '/'"),
        )
        .with("file", source));
    }
    let mut notes = Notes {
        realm: realm_name.clone(),
        items: Vec::new(),
    };
    notes.realm_level(raw);

    let roles = RoleGraph::new(&rep, &mut notes);
    let mut groups = BTreeMap::new();
    flatten_groups(&rep.groups, "", &BTreeSet::new(), &mut groups);

    let mut scopes: BTreeMap<String, Scope> = builtin_scopes();
    for (i, s) in rep.client_scopes.iter().enumerate() {
        if let Some(protocol) = other_protocol(s.protocol.as_deref()) {
            notes.push(
                format!("$.clientScopes[{i}]"),
                format!("client scope \"{}\" with protocol {protocol}", s.name),
                "not used: only OpenID Connect scopes are served",
            );
            continue;
        }
        let mappers = keep_supported_mappers(
            &s.protocol_mappers,
            &format!("$.clientScopes[{i}]"),
            &format!("client scope \"{}\"", s.name),
            &mut notes,
        );
        scopes.insert(
            s.name.clone(),
            Scope {
                include_in_token_scope: s
                    .attributes
                    .get("include.in.token.scope")
                    .is_none_or(|v| v == "true"),
                mappers,
            },
        );
    }
    let realm_default_scopes = rep.default_default_client_scopes.clone();

    let mut clients = BTreeMap::new();
    for (i, c) in rep.clients.iter().enumerate() {
        let path = format!("$.clients[{i}]");
        notes.client_level(raw.pointer(&format!("/clients/{i}")), &path, c);
        if let Some(protocol) = other_protocol(c.protocol.as_deref()) {
            notes.push(
                path,
                format!("client \"{}\" with protocol {protocol}", c.client_id),
                "not loaded: only OpenID Connect clients are served",
            );
            continue;
        }
        let client = compile_client(
            c,
            &path,
            &realm_name,
            realm_default_scopes.as_deref(),
            secret_overrides,
            &mut notes,
        )?;
        for scope in client
            .default_scopes
            .iter()
            .chain(client.optional_scopes.iter())
        {
            if !scopes.contains_key(scope) && scope != "openid" {
                notes.push(
                    format!("{path}.defaultClientScopes"),
                    format!(
                        "client \"{}\": scope \"{scope}\" is not an OpenID Connect client scope of the export",
                        c.client_id
                    ),
                    "ignored: it adds no claims",
                );
            }
        }
        clients.insert(c.client_id.clone(), client);
    }

    let mut service_accounts = BTreeMap::new();
    let mut plain_users = Vec::new();
    for (i, u) in rep.users.iter().enumerate() {
        let Some(client_id) = &u.service_account_client_id else {
            plain_users.push(u.username.clone());
            continue;
        };
        let mut direct = BTreeSet::new();
        for r in &u.realm_roles {
            direct.insert(RoleRef::Realm(r.clone()));
        }
        for (cid, rs) in &u.client_roles {
            for r in rs {
                direct.insert(RoleRef::Client(cid.clone(), r.clone()));
            }
        }
        for (j, g) in u.groups.iter().enumerate() {
            let path = if g.starts_with('/') {
                g.clone()
            } else {
                format!("/{g}")
            };
            match groups.get(&path) {
                Some(rs) => direct.extend(rs.iter().cloned()),
                None => notes.push(
                    format!("$.users[{i}].groups[{j}]"),
                    format!("user \"{}\": group \"{g}\" is not defined", u.username),
                    "ignored: the group grants no roles",
                ),
            }
        }
        let roles = roles.expand(&direct, &format!("$.users[{i}]"), &mut notes);
        if !clients.contains_key(client_id) {
            notes.push(
                format!("$.users[{i}].serviceAccountClientId"),
                format!(
                    "service account \"{}\" of unknown client \"{client_id}\"",
                    u.username
                ),
                "ignored",
            );
            continue;
        }
        service_accounts.insert(
            client_id.clone(),
            ServiceAccount {
                id: u
                    .id
                    .clone()
                    .unwrap_or_else(|| stable_user_id(&realm_name, &u.username)),
                username: u.username.clone(),
                enabled: u.enabled.unwrap_or(true),
                roles,
                email: u.email.clone(),
                first_name: u.first_name.clone(),
                last_name: u.last_name.clone(),
                email_verified: u.email_verified,
                attributes: u.attributes.clone(),
            },
        );
    }
    if !plain_users.is_empty() {
        notes.push(
            "$.users".into(),
            format!(
                "{} user(s) without a service account ({})",
                plain_users.len(),
                plain_users.join(", ")
            ),
            "not usable: the dev issuer serves no user logins (no password or authorization-code grant); their credentials are ignored",
        );
    }
    // Keycloak creates the service-account user when service accounts are switched on; partial
    // exports often leave it out. It gets the realm's default role, as in Keycloak.
    let default_role = rep
        .default_role
        .as_ref()
        .map(|r| r.name.clone())
        .unwrap_or_else(|| format!("default-roles-{realm_name}"));
    for c in clients.values() {
        if c.service_accounts && !service_accounts.contains_key(&c.client_id) {
            let username = format!("service-account-{}", c.client_id.to_lowercase());
            let direct: BTreeSet<RoleRef> = if roles.has(&RoleRef::Realm(default_role.clone())) {
                [RoleRef::Realm(default_role.clone())].into()
            } else {
                BTreeSet::new()
            };
            let roles = roles.expand(&direct, "$.defaultRole", &mut notes);
            service_accounts.insert(
                c.client_id.clone(),
                ServiceAccount {
                    id: stable_user_id(&realm_name, &username),
                    username,
                    enabled: true,
                    roles,
                    email: None,
                    first_name: None,
                    last_name: None,
                    email_verified: false,
                    attributes: BTreeMap::new(),
                },
            );
        }
    }

    let summary = RealmSummary {
        realm: realm_name.clone(),
        source: source.to_owned(),
        issuer: String::new(),
        enabled: rep.enabled.unwrap_or(true),
        clients: clients.len(),
        service_accounts: service_accounts.len(),
        realm_roles: rep.roles.realm.len(),
        client_roles: rep.roles.client.values().map(Vec::len).sum(),
        groups: groups.len(),
        client_scopes: rep.client_scopes.len(),
        unsupported: notes.items,
    };
    let lifespan = |key: &str, seconds: Option<i32>, default: u64| {
        realm_lifespan(source, key, seconds, default)
    };
    Ok(Realm {
        name: realm_name,
        source: source.to_owned(),
        enabled: rep.enabled.unwrap_or(true),
        access_token_lifespan: lifespan(
            "accessTokenLifespan",
            rep.access_token_lifespan,
            DEFAULT_ACCESS_TOKEN_LIFESPAN,
        )?,
        sso_idle: lifespan(
            "ssoSessionIdleTimeout",
            rep.sso_session_idle_timeout,
            DEFAULT_SSO_IDLE,
        )?,
        sso_max: lifespan(
            "ssoSessionMaxLifespan",
            rep.sso_session_max_lifespan,
            DEFAULT_SSO_MAX,
        )?,
        revoke_refresh_token: rep.revoke_refresh_token,
        refresh_token_max_reuse: rep.refresh_token_max_reuse,
        clients,
        scopes,
        service_accounts,
        summary,
    })
}

/// A realm lifespan in seconds: unset or 0 means Keycloak's default; a negative one is refused
/// (it would issue tokens that are expired on arrival).
fn realm_lifespan(
    source: &str,
    key: &str,
    seconds: Option<i32>,
    default: u64,
) -> Result<Duration, Error> {
    match seconds {
        None | Some(0) => Ok(Duration::from_secs(default)),
        Some(s) => u64::try_from(s).map(Duration::from_secs).map_err(|_| {
            Error::config(
                "bad_realm_export",
                format!("{source}: $.{key}: expected seconds (0 for the default), got {s}"),
            )
            .with("file", source)
            .with("key", format!("$.{key}"))
        }),
    }
}

/// A user id that stays the same across reloads (so `sub` does not change) when the export has none.
fn stable_user_id(realm: &str, username: &str) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!("tokenwarden-dev-issuer:{realm}:{username}").as_bytes(),
    )
    .to_string()
}

fn compile_client(
    c: &ClientRep,
    path: &str,
    realm: &str,
    realm_default_scopes: Option<&[String]>,
    secret_overrides: &BTreeMap<(String, String), Secret>,
    notes: &mut Notes,
) -> Result<Client, Error> {
    let id = &c.client_id;
    let attr = |k: &str| c.attributes.get(k).map(String::as_str);
    let secret = match secret_overrides
        .get(&(realm.to_owned(), id.clone()))
        .or_else(|| secret_overrides.get(&(String::new(), id.clone())))
    {
        Some(s) => ClientSecret::Given(s.clone()),
        None => match c.secret.as_deref() {
            Some(MASKED_SECRET) => {
                if !c.public_client {
                    notes.push(
                        format!("{path}.secret"),
                        format!("client \"{id}\": the secret is masked (\"{MASKED_SECRET}\") in this export"),
                        format!(
                            "client-secret authentication is refused for it; give the secret with `--client-secret {id}=ENV_VAR` (the name of an environment variable holding it), or put it into the file"
                        ),
                    );
                }
                ClientSecret::Masked
            }
            Some(s) if !s.is_empty() => ClientSecret::Given(Secret::new(s)),
            _ => ClientSecret::None,
        },
    };
    let authenticator = c
        .client_authenticator_type
        .as_deref()
        .unwrap_or("client-secret");
    let auth = match authenticator {
        "client-secret" => ClientAuth::Secret,
        "client-jwt" => ClientAuth::Jwt(jwt_keys(c, path, notes)?),
        other => {
            notes.push(
                format!("{path}.clientAuthenticatorType"),
                format!("client \"{id}\": authenticator \"{other}\""),
                "not implemented: the client cannot authenticate (only client-secret and client-jwt are)",
            );
            ClientAuth::Unsupported(other.to_owned())
        }
    };
    let assertion_alg = match attr("token.endpoint.auth.signing.alg") {
        None | Some("") => None,
        Some(a) => match a.parse::<Algorithm>() {
            Ok(alg) => Some(alg),
            Err(_) => {
                notes.push(
                    format!("{path}.attributes[\"token.endpoint.auth.signing.alg\"]"),
                    format!("client \"{id}\": assertion algorithm \"{a}\""),
                    "unknown: any RSA/EC algorithm fitting the key is accepted",
                );
                None
            }
        },
    };
    // Seconds, an int as in Keycloak; 0 means the realm's lifespan.
    let access_token_lifespan = match attr("access.token.lifespan") {
        None | Some("") => None,
        Some(v) => match v.trim().parse::<i32>().map(u64::try_from) {
            Ok(Ok(0)) => None,
            Ok(Ok(s)) => Some(Duration::from_secs(s)),
            Ok(Err(_)) | Err(_) => {
                let key = format!("{path}.attributes[\"access.token.lifespan\"]");
                return Err(Error::config(
                    "bad_realm_export",
                    format!(
                        "{key}: expected seconds from 0 to {}, got \"{v}\"",
                        i32::MAX
                    ),
                )
                .with("key", key));
            }
        },
    };
    let default_scopes = c
        .default_client_scopes
        .clone()
        .or_else(|| realm_default_scopes.map(<[String]>::to_vec))
        .unwrap_or_else(|| KEYCLOAK_DEFAULT_SCOPES.map(String::from).to_vec());
    let mappers = keep_supported_mappers(
        &c.protocol_mappers,
        path,
        &format!("client \"{id}\""),
        notes,
    );
    Ok(Client {
        client_id: id.clone(),
        enabled: c.enabled.unwrap_or(true),
        public: c.public_client,
        bearer_only: c.bearer_only,
        service_accounts: c.service_accounts_enabled,
        secret,
        auth,
        assertion_alg,
        access_token_lifespan,
        use_refresh_token: attr("client_credentials.use_refresh_token") == Some("true"),
        mappers,
        default_scopes,
        optional_scopes: c.optional_client_scopes.clone(),
        web_origins: c.web_origins.clone(),
    })
}

/// The public keys a `client-jwt` client signs its assertions with: the certificate or public
/// key Keycloak stores in attributes, or an inline JWKS.
fn jwt_keys(c: &ClientRep, path: &str, notes: &mut Notes) -> Result<Vec<JwtKey>, Error> {
    let id = &c.client_id;
    let attr = |k: &str| c.attributes.get(k).map(String::as_str);
    let bad = |key: &str, why: String| {
        Error::config(
            "bad_realm_export",
            format!("{path}.attributes[\"{key}\"]: {why}"),
        )
    };
    let mut keys = Vec::new();
    if attr("use.jwks.string") == Some("true") {
        let text = attr("jwks.string").unwrap_or("");
        let set: jsonwebtoken::jwk::JwkSet = serde_json::from_str(text)
            .map_err(|e| bad("jwks.string", format!("not a JWK set: {e}")))?;
        for jwk in &set.keys {
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| bad("jwks.string", format!("unusable key: {e}")))?;
            keys.push(JwtKey {
                kid: jwk.common.key_id.clone(),
                key,
            });
        }
    } else if attr("use.jwks.url") == Some("true") {
        notes.push(
            format!("{path}.attributes[\"jwks.url\"]"),
            format!("client \"{id}\": keys from a JWKS URL"),
            "not fetched: the client cannot authenticate; use `jwks.string` (inline JWKS) or `jwt.credential.certificate`",
        );
    } else if let Some(cert) = attr("jwt.credential.certificate").filter(|s| !s.is_empty()) {
        keys.push(JwtKey {
            kid: None,
            key: key_from_der_b64(cert, "CERTIFICATE").map_err(|e| {
                bad(
                    "jwt.credential.certificate",
                    format!("not a base64 DER certificate with an RSA or EC key: {e}"),
                )
            })?,
        });
    } else if let Some(pk) = attr("jwt.credential.public.key").filter(|s| !s.is_empty()) {
        keys.push(JwtKey {
            kid: None,
            key: key_from_der_b64(pk, "PUBLIC KEY").map_err(|e| {
                bad(
                    "jwt.credential.public.key",
                    format!("not a base64 DER public key: {e}"),
                )
            })?,
        });
    }
    if keys.is_empty() && attr("use.jwks.url") != Some("true") {
        notes.push(
            format!("{path}.attributes"),
            format!("client \"{id}\": signed-JWT authentication without a key"),
            "the client cannot authenticate; set `jwt.credential.certificate` or `use.jwks.string` + `jwks.string`",
        );
    }
    Ok(keys)
}

fn key_from_der_b64(b64: &str, pem_tag: &str) -> Result<DecodingKey, Invalid> {
    let compact: String = b64.chars().filter(|c| !c.is_whitespace()).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| e.to_string())?;
    let pem = pem::encode(&pem::Pem::new(pem_tag, der));
    DecodingKey::from_rsa_pem(pem.as_bytes())
        .or_else(|_| DecodingKey::from_ec_pem(pem.as_bytes()))
        .map_err(|e| Invalid::new(e.to_string()))
}

fn keep_supported_mappers(
    mappers: &[MapperRep],
    path: &str,
    owner: &str,
    notes: &mut Notes,
) -> Vec<MapperRep> {
    let mut kept = Vec::new();
    for (i, m) in mappers.iter().enumerate() {
        if other_protocol(m.protocol.as_deref()).is_none()
            && SUPPORTED_MAPPERS.contains(&m.protocol_mapper.as_str())
        {
            kept.push(m.clone());
        } else {
            notes.push(
                format!("{path}.protocolMappers[{i}]"),
                format!(
                    "{owner}: protocol mapper \"{}\" of type {}",
                    m.name, m.protocol_mapper
                ),
                "not applied: its claim is missing from tokens",
            );
        }
    }
    kept
}

/// A protocol other than OpenID Connect (Keycloak's default when none is named), e.g. `saml`.
fn other_protocol(protocol: Option<&str>) -> Option<&str> {
    protocol.filter(|p| *p != "openid-connect")
}

/// Scopes Keycloak creates in every realm; used when the export names them without defining them.
fn builtin_scopes() -> BTreeMap<String, Scope> {
    let mapper = |kind: &str, config: &[(&str, &str)]| MapperRep {
        name: kind.to_owned(),
        protocol: None,
        protocol_mapper: kind.to_owned(),
        config: config
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    };
    let scope = |name: &str, in_scope: bool, mappers: Vec<MapperRep>| {
        (
            name.to_owned(),
            Scope {
                include_in_token_scope: in_scope,
                mappers,
            },
        )
    };
    [
        scope(
            "roles",
            false,
            vec![
                mapper(
                    "oidc-usermodel-realm-role-mapper",
                    &[
                        ("claim.name", "realm_access.roles"),
                        ("multivalued", "true"),
                    ],
                ),
                mapper(
                    "oidc-usermodel-client-role-mapper",
                    &[
                        ("claim.name", "resource_access.${client_id}.roles"),
                        ("multivalued", "true"),
                    ],
                ),
                mapper("oidc-audience-resolve-mapper", &[]),
            ],
        ),
        scope(
            "profile",
            true,
            vec![mapper(
                "oidc-usermodel-attribute-mapper",
                &[
                    ("user.attribute", "username"),
                    ("claim.name", "preferred_username"),
                ],
            )],
        ),
        scope(
            "email",
            true,
            vec![
                mapper(
                    "oidc-usermodel-attribute-mapper",
                    &[("user.attribute", "email"), ("claim.name", "email")],
                ),
                mapper(
                    "oidc-usermodel-property-mapper",
                    &[
                        ("user.attribute", "emailVerified"),
                        ("claim.name", "email_verified"),
                        ("jsonType.label", "boolean"),
                    ],
                ),
            ],
        ),
        scope(
            "web-origins",
            false,
            vec![mapper("oidc-allowed-origins-mapper", &[])],
        ),
        scope("acr", false, vec![mapper("oidc-acr-mapper", &[])]),
        scope("basic", false, vec![mapper("oidc-sub-mapper", &[])]),
        scope("offline_access", true, vec![]),
    ]
    .into_iter()
    .collect()
}

/// Group path (`/parent/child`) → the roles a member gets, parents' roles included.
fn flatten_groups(
    groups: &[GroupRep],
    parent: &str,
    inherited: &BTreeSet<RoleRef>,
    out: &mut BTreeMap<String, BTreeSet<RoleRef>>,
) {
    for g in groups {
        let path = format!("{parent}/{}", g.name);
        let mut roles = inherited.clone();
        roles.extend(g.realm_roles.iter().map(|r| RoleRef::Realm(r.clone())));
        for (cid, rs) in &g.client_roles {
            roles.extend(rs.iter().map(|r| RoleRef::Client(cid.clone(), r.clone())));
        }
        flatten_groups(&g.sub_groups, &path, &roles, out);
        out.insert(path, roles);
    }
}

/// Roles and their composites.
struct RoleGraph {
    composites: BTreeMap<RoleRef, Vec<RoleRef>>,
}

impl RoleGraph {
    fn new(rep: &RealmRep, notes: &mut Notes) -> Self {
        let mut composites = BTreeMap::new();
        let add = |role: RoleRef, r: &RoleRep, composites: &mut BTreeMap<RoleRef, Vec<RoleRef>>| {
            let mut children = Vec::new();
            if let Some(c) = &r.composites {
                children.extend(c.realm.iter().map(|n| RoleRef::Realm(n.clone())));
                for (cid, names) in &c.client {
                    children.extend(
                        names
                            .iter()
                            .map(|n| RoleRef::Client(cid.clone(), n.clone())),
                    );
                }
            }
            composites.insert(role, children);
        };
        for r in &rep.roles.realm {
            add(RoleRef::Realm(r.name.clone()), r, &mut composites);
        }
        for (cid, roles) in &rep.roles.client {
            for r in roles {
                add(
                    RoleRef::Client(cid.clone(), r.name.clone()),
                    r,
                    &mut composites,
                );
            }
        }
        // Keycloak always has these two realm roles.
        for builtin in ["offline_access", "uma_authorization"] {
            composites
                .entry(RoleRef::Realm(builtin.to_owned()))
                .or_default();
        }
        let graph = Self { composites };
        for (role, children) in &graph.composites {
            for child in children {
                if !graph.has(child) {
                    notes.push(
                        "$.roles".into(),
                        format!(
                            "composite role {} names the undefined role {}",
                            describe(role),
                            describe(child)
                        ),
                        "the undefined role is still granted by name",
                    );
                }
            }
        }
        graph
    }

    fn has(&self, role: &RoleRef) -> bool {
        self.composites.contains_key(role)
    }

    /// `direct` plus every role reachable through composites (cycle-safe).
    fn expand(
        &self,
        direct: &BTreeSet<RoleRef>,
        path: &str,
        notes: &mut Notes,
    ) -> BTreeSet<RoleRef> {
        let mut out = BTreeSet::new();
        let mut stack: Vec<RoleRef> = direct.iter().cloned().collect();
        for role in direct {
            if !self.has(role) {
                notes.push(
                    path.to_owned(),
                    format!("role {} is not defined in the export", describe(role)),
                    "granted by name anyway",
                );
            }
        }
        while let Some(role) = stack.pop() {
            if !out.insert(role.clone()) {
                continue;
            }
            if let Some(children) = self.composites.get(&role) {
                stack.extend(children.iter().filter(|c| !out.contains(*c)).cloned());
            }
        }
        out
    }
}

fn describe(role: &RoleRef) -> String {
    match role {
        RoleRef::Realm(n) => format!("\"{n}\""),
        RoleRef::Client(c, n) => format!("\"{c}\":\"{n}\""),
    }
}

/// Collects the unsupported parts of one realm.
struct Notes {
    realm: String,
    items: Vec<Unsupported>,
}

impl Notes {
    fn push(&mut self, path: String, what: String, instead: impl Into<String>) {
        self.items.push(Unsupported {
            realm: self.realm.clone(),
            path,
            what,
            instead: instead.into(),
        });
    }

    fn realm_level(&mut self, raw: &Value) {
        let Some(obj) = raw.as_object() else {
            return;
        };
        let mut settings = Vec::new();
        for (key, value) in obj {
            if USED_REALM_KEYS.contains(&key.as_str()) || is_empty(value) {
                continue;
            }
            let path = format!("$.{key}");
            match key.as_str() {
                "identityProviders" => {
                    for (i, idp) in as_items(value) {
                        self.push(
                            format!("{path}[{i}]"),
                            format!(
                                "identity provider \"{}\" ({})",
                                str_at(idp, "alias"),
                                str_at(idp, "providerId")
                            ),
                            "not used: no brokered logins; service accounts authenticate directly",
                        );
                    }
                }
                "authenticationFlows" => {
                    let mut builtin = 0;
                    for (i, flow) in as_items(value) {
                        if flow.get("builtIn").and_then(Value::as_bool) == Some(true) {
                            builtin += 1;
                        } else {
                            self.push(
                                format!("{path}[{i}]"),
                                format!("custom authentication flow \"{}\"", str_at(flow, "alias")),
                                "not run: clients authenticate by secret or signed JWT only; user login flows do not exist here",
                            );
                        }
                    }
                    if builtin > 0 {
                        self.push(
                            path,
                            format!("{builtin} built-in authentication flow(s)"),
                            "not run: the dev issuer has no login flows",
                        );
                    }
                }
                "components" => self.components(value),
                "userFederationProviders" => {
                    for (i, p) in as_items(value) {
                        self.push(
                            format!("{path}[{i}]"),
                            format!("user federation \"{}\"", str_at(p, "displayName")),
                            "not consulted: only users in the export exist",
                        );
                    }
                }
                "requiredActions" => self.push(
                    path,
                    format!("{} required action(s)", as_items(value).len()),
                    "not enforced: they apply to interactive user logins",
                ),
                "smtpServer" => {
                    self.push(path, "SMTP server".into(), "no e-mail is ever sent")
                }
                "scopeMappings" | "clientScopeMappings" => self.push(
                    path,
                    "role scope mappings".into(),
                    "not applied: tokens carry all of the service account's roles (as with \"Full scope allowed\")",
                ),
                _ => settings.push(key.clone()),
            }
        }
        if !settings.is_empty() {
            self.push(
                "$".into(),
                format!("realm settings {}", settings.join(", ")),
                "ignored: they govern logins, sessions, events, themes or the admin console, none of which the dev issuer has",
            );
        }
    }

    fn components(&mut self, value: &Value) {
        let Some(obj) = value.as_object() else {
            return;
        };
        for (kind, list) in obj {
            for (i, c) in as_items(list) {
                let path = format!("$.components[\"{kind}\"][{i}]");
                let name = str_at(c, "name");
                let provider = str_at(c, "providerId");
                let (what, instead) = match kind.as_str() {
                    "org.keycloak.keys.KeyProvider" => (
                        format!("key provider \"{name}\" ({provider})"),
                        format!(
                            "not used: the dev issuer signs with its own RS256 key, generated at start (rotate with POST /dev/realms/{}/rotate-keys)",
                            self.realm
                        ),
                    ),
                    "org.keycloak.storage.UserStorageProvider" => (
                        format!("user federation \"{name}\" ({provider})"),
                        "not consulted: only users in the export exist".to_owned(),
                    ),
                    _ => (
                        format!("component \"{name}\" ({provider}) of type {kind}"),
                        "ignored".to_owned(),
                    ),
                };
                self.push(path, what, instead);
            }
        }
    }

    fn client_level(&mut self, raw: Option<&Value>, path: &str, c: &ClientRep) {
        let Some(obj) = raw.and_then(Value::as_object) else {
            return;
        };
        let id = &c.client_id;
        let flows: Vec<&str> = [
            ("standardFlowEnabled", "authorization code"),
            ("implicitFlowEnabled", "implicit"),
            ("directAccessGrantsEnabled", "password"),
        ]
        .into_iter()
        .filter(|(k, _)| obj.get(*k).and_then(Value::as_bool) == Some(true))
        .map(|(_, name)| name)
        .collect();
        if !flows.is_empty() {
            self.push(
                path.to_owned(),
                format!("client \"{id}\": {} grant(s)", flows.join(", ")),
                "not served: the token endpoint answers unsupported_grant_type; only client_credentials and refresh_token are served",
            );
        }
        if obj.get("fullScopeAllowed").and_then(Value::as_bool) == Some(false) {
            self.push(
                format!("{path}.fullScopeAllowed"),
                format!("client \"{id}\": restricted role scope"),
                "not applied: tokens carry all of the service account's roles",
            );
        }
        if obj
            .get("authorizationServicesEnabled")
            .and_then(Value::as_bool)
            == Some(true)
            || obj
                .get("authorizationSettings")
                .is_some_and(|v| !is_empty(v))
        {
            self.push(
                format!("{path}.authorizationSettings"),
                format!("client \"{id}\": authorization services (UMA, policies)"),
                "not served",
            );
        }
        let skip_keys = [
            "standardFlowEnabled",
            "implicitFlowEnabled",
            "directAccessGrantsEnabled",
            "fullScopeAllowed",
            "authorizationServicesEnabled",
            "authorizationSettings",
        ];
        let other: Vec<&str> = obj
            .iter()
            .filter(|(k, v)| {
                !USED_CLIENT_KEYS.contains(&k.as_str())
                    && !skip_keys.contains(&k.as_str())
                    && !is_empty(v)
            })
            .map(|(k, _)| k.as_str())
            .collect();
        let attrs: Vec<&str> = c
            .attributes
            .iter()
            // "false" and "" are switched-off settings: nothing is lost by ignoring them.
            .filter(|(k, v)| {
                !USED_CLIENT_ATTRIBUTES.contains(&k.as_str()) && !v.is_empty() && *v != "false"
            })
            .map(|(k, _)| k.as_str())
            .collect();
        if !other.is_empty() || !attrs.is_empty() {
            let mut names: Vec<String> = other.iter().map(|s| (*s).to_owned()).collect();
            names.extend(attrs.iter().map(|a| format!("attributes.{a}")));
            self.push(
                path.to_owned(),
                format!("client \"{id}\" settings {}", names.join(", ")),
                "ignored: they do not affect client-credentials tokens",
            );
        }
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        Value::Number(_) => false,
    }
}

fn as_items(v: &Value) -> Vec<(usize, &Value)> {
    v.as_array()
        .map(|a| a.iter().enumerate().collect())
        .unwrap_or_default()
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("?")
}
