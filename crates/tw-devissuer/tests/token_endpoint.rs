//! The token endpoint: each client authentication method, the failures Keycloak answers, the
//! claims of the tokens, scopes and lifetimes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use jsonwebtoken::Algorithm;
use std::sync::Arc;
use tw_devissuer::DevIssuer;

const LAB_ISS: &str = "http://127.0.0.1:8780/realms/lab";

fn lab(clock: &tw_core::ManualClock) -> DevIssuer {
    issuer_with(&[fixture("lab-realm.json")], clock)
}

#[tokio::test]
async fn demo_agent_gets_a_keycloak_shaped_token_by_basic_auth() {
    let clock = clock();
    let issuer = issuer_with(&[demo_realm()], &clock);
    let r = client_credentials(&issuer, "demo", "demo-agent", "demo-agent-secret").await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["token_type"], "Bearer");
    assert_eq!(r.json["expires_in"], 60);
    assert_eq!(r.headers["cache-control"], "no-store");
    let claims = payload(&access_token(&r));
    assert_eq!(claims["iss"], format!("{BASE}/realms/demo"));
    assert_eq!(claims["azp"], "demo-agent");
    assert_eq!(claims["client_id"], "demo-agent");
    assert_eq!(claims["typ"], "Bearer");
    assert_eq!(claims["preferred_username"], "service-account-demo-agent");
    assert_eq!(claims["aud"], "demo-api");
    assert_eq!(claims["iat"], 1_800_000_000);
    assert_eq!(claims["exp"], 1_800_000_060);
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
    assert!(
        claims["sub"].as_str().is_some_and(|s| s.len() == 36),
        "{claims}"
    );
    // lab-agent = attributes-reader + offline_access; attributes-writer is not granted.
    assert_eq!(
        sorted(&claims["realm_access"]["roles"]),
        ["attributes-reader", "lab-agent", "offline_access"]
    );
    assert_eq!(claims["scope"], "profile");
}

#[tokio::test]
async fn lab_agent_token_by_client_secret_post_carries_composites_audience_and_mappers() {
    let clock = clock();
    let issuer = lab(&clock);
    let r = post_token(
        &issuer,
        "lab",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "lab-agent"),
            ("client_secret", "lab-agent-secret"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let claims = payload(&access_token(&r));
    assert_eq!(claims["iss"], LAB_ISS);
    assert_eq!(claims["sub"], "7f1d2c3b-0000-4000-8000-00000000a001");
    // lab-admin → lab-operator (→ samples-reader, lab-api:instrument-control → instrument-read)
    // and samples-writer; default-roles-lab → offline_access, uma_authorization, account:view-profile.
    assert_eq!(
        sorted(&claims["realm_access"]["roles"]),
        [
            "default-roles-lab",
            "lab-admin",
            "lab-operator",
            "offline_access",
            "samples-reader",
            "samples-writer",
            "uma_authorization"
        ]
    );
    assert_eq!(
        sorted(&claims["resource_access"]["lab-api"]["roles"]),
        ["instrument-control", "instrument-read"]
    );
    assert_eq!(
        sorted(&claims["resource_access"]["account"]["roles"]),
        ["view-profile"]
    );
    // Audience: clients whose roles it has (audience resolve) plus the audience mapper's lab-api.
    assert_eq!(sorted(&claims["aud"]), ["account", "lab-api"]);
    assert_eq!(claims["lab_site"], "north");
    assert_eq!(claims["acr"], "1");
    assert_eq!(claims["email_verified"], false);
    assert_eq!(claims["scope"], "profile email");
    assert!(claims.get("risk").is_none(), "unsupported mapper applied");
    // Client attribute access.token.lifespan = 120 beats the realm's 300.
    assert_eq!(r.json["expires_in"], 120);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        120
    );
}

#[tokio::test]
async fn settings_lifetime_overrides_realm_and_client() {
    let clock = clock();
    let mut s = settings();
    s.access_token_lifetime = Some(secs(30));
    let issuer =
        DevIssuer::from_files(&[fixture("lab-realm.json")], s, Arc::new(clock.clone())).unwrap();
    let r = client_credentials(&issuer, "lab", "lab-agent", "lab-agent-secret").await;
    assert_eq!(r.json["expires_in"], 30);
    let claims = payload(&access_token(&r));
    assert_eq!(claims["exp"], now_secs(&clock) + 30);
}

#[tokio::test]
async fn optional_scope_is_granted_on_request_and_unknown_scopes_are_refused() {
    let clock = clock();
    let issuer = lab(&clock);
    let r = post_token(
        &issuer,
        "lab",
        &[
            ("grant_type", "client_credentials"),
            ("scope", "openid lab-extra"),
        ],
        Some(LAB_AGENT),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let claims = payload(&access_token(&r));
    assert_eq!(claims["lab_extra"], true);
    assert_eq!(claims["scope"], "openid profile email lab-extra");

    let r = post_token(
        &issuer,
        "lab",
        &[("grant_type", "client_credentials"), ("scope", "admin")],
        Some(LAB_AGENT),
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    assert_eq!(r.json["error_description"], "Invalid scopes: admin");
}

#[tokio::test]
async fn wrong_secret_and_unknown_client_are_invalid_client_with_a_basic_challenge() {
    let clock = clock();
    let issuer = lab(&clock);
    for (id, secret) in [
        ("lab-agent", "wrong"),
        ("nobody", "lab-agent-secret"),
        ("lab-disabled", "lab-disabled-secret"),
    ] {
        let r = client_credentials(&issuer, "lab", id, secret).await;
        assert_eq!(r.status, 401, "{id}: {}", r.json);
        assert_eq!(r.json["error"], "invalid_client", "{id}");
        assert_eq!(
            r.json["error_description"], "Invalid client or Invalid client credentials",
            "{id}"
        );
        assert!(
            r.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic "),
            "{id}"
        );
    }
    // By form post: the same error, no Basic challenge.
    let r = post_token(
        &issuer,
        "lab",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "lab-agent"),
            ("client_secret", "nope"),
        ],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(r.headers.get("www-authenticate").is_none());
    // A confidential client without any credential.
    let r = post_token(
        &issuer,
        "lab",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "lab-agent"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json["error"], "unauthorized_client");
    assert_eq!(
        r.json["error_description"],
        "Client secret not provided in request"
    );
}

#[tokio::test]
async fn clients_that_may_not_use_client_credentials_get_keycloaks_errors() {
    let clock = clock();
    let issuer = lab(&clock);
    let r = post_token(
        &issuer,
        "lab",
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "lab-web"),
        ],
        None,
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.json);
    assert_eq!(r.json["error"], "unauthorized_client");
    assert_eq!(
        r.json["error_description"],
        "Public client not allowed to retrieve service account"
    );

    let r = client_credentials(&issuer, "lab", "lab-no-sa", "lab-no-sa-secret").await;
    assert_eq!(r.status, 401);
    assert_eq!(r.json["error"], "unauthorized_client");
    assert_eq!(
        r.json["error_description"],
        "Client not enabled to retrieve service account"
    );

    let r = client_credentials(&issuer, "lab", "lab-api", "lab-api-secret").await;
    assert_eq!(r.status, 400);
    assert_eq!(r.json["error"], "invalid_client");
    assert_eq!(r.json["error_description"], "Bearer-only not allowed");
}

#[tokio::test]
async fn other_grants_missing_grant_and_unknown_realm() {
    let clock = clock();
    let issuer = lab(&clock);
    let r = post_token(
        &issuer,
        "lab",
        &[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "x"),
        ],
        Some(LAB_AGENT),
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let r = post_token(&issuer, "lab", &[], Some(LAB_AGENT)).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert_eq!(
        r.json["error_description"],
        "Missing form parameter: grant_type"
    );
    let r = post_token(
        &issuer,
        "lab",
        &[
            ("grant_type", "client_credentials"),
            ("grant_type", "client_credentials"),
        ],
        Some(LAB_AGENT),
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let r = client_credentials(&issuer, "nope", "lab-agent", "lab-agent-secret").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.json["error"], "Realm does not exist");
}

#[tokio::test]
async fn private_key_jwt_with_the_clients_certificate() {
    let clock = clock();
    let issuer = lab(&clock);
    let aud = token_url("lab");
    let exp = now_secs(&clock) + 60;
    let a = lab_jwt_assertion(&aud, exp, "jti-1");
    let r = client_credentials_by_assertion(&issuer, "lab", &a).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let claims = payload(&access_token(&r));
    assert_eq!(claims["azp"], "lab-jwt-agent");
    // Roles only through groups: /instruments (samples-reader) and its subgroup
    // /instruments/microscopes (lab-api:instrument-control → instrument-read).
    assert_eq!(sorted(&claims["realm_access"]["roles"]), ["samples-reader"]);
    assert_eq!(
        sorted(&claims["resource_access"]["lab-api"]["roles"]),
        ["instrument-control", "instrument-read"]
    );
    assert_eq!(claims["aud"], "lab-api");
    assert!(
        r.json.get("refresh_token").is_none(),
        "no refresh tokens unless the client asks"
    );

    // The same assertion again: single use.
    let r = client_credentials_by_assertion(&issuer, "lab", &a).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (400, Some("invalid_client"))
    );
    assert_eq!(
        r.json["error_description"],
        "Client authentication with signed JWT failed: Token reuse detected"
    );

    // The issuer URL is an accepted audience too; a foreign one is not.
    let ok = lab_jwt_assertion(LAB_ISS, exp, "jti-2");
    assert_eq!(
        client_credentials_by_assertion(&issuer, "lab", &ok)
            .await
            .status,
        200
    );
    let foreign = lab_jwt_assertion("https://elsewhere/token", exp, "jti-3");
    let r = client_credentials_by_assertion(&issuer, "lab", &foreign).await;
    assert_eq!(r.status, 400);
    assert!(
        r.json["error_description"]
            .as_str()
            .unwrap()
            .contains("audience"),
        "{}",
        r.json
    );
}

#[tokio::test]
async fn expired_untrusted_and_mismatched_assertions_are_refused() {
    let clock = clock();
    let issuer = lab(&clock);
    let aud = token_url("lab");
    let exp = now_secs(&clock) + 30;
    let a = lab_jwt_assertion(&aud, exp, "late");
    clock.advance(secs(31));
    let r = client_credentials_by_assertion(&issuer, "lab", &a).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["error_description"],
        "Client authentication with signed JWT failed: Token is not active"
    );

    let exp = now_secs(&clock) + 30;
    let untrusted = assertion(
        "untrusted-rsa.pem",
        Algorithm::RS256,
        None,
        "lab-jwt-agent",
        &aud,
        exp,
        "u",
    );
    let r = client_credentials_by_assertion(&issuer, "lab", &untrusted).await;
    assert_eq!(r.status, 400);
    assert_eq!(
        r.json["error_description"],
        "Client authentication with signed JWT failed: Signature on JWT token failed validation"
    );
    // The right key but the wrong algorithm for this client (it demands RS256).
    let ps = assertion(
        "agent-rsa.pem",
        Algorithm::PS256,
        None,
        "lab-jwt-agent",
        &aud,
        exp,
        "ps",
    );
    let r = client_credentials_by_assertion(&issuer, "lab", &ps).await;
    assert_eq!(r.status, 400, "{}", r.json);
    // A secret client cannot use an assertion, a JWT client cannot use a secret.
    let r = client_credentials(&issuer, "lab", "lab-jwt-agent", "anything").await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn private_key_jwt_with_an_inline_jwks_and_ec_key_and_composite_cycles() {
    let clock = clock();
    let issuer = lab(&clock);
    let aud = token_url("lab");
    let exp = now_secs(&clock) + 60;
    let a = assertion(
        "agent-ec.pem",
        Algorithm::ES256,
        Some("lab-ec-1"),
        "lab-ec-agent",
        &aud,
        exp,
        "ec-1",
    );
    let r = client_credentials_by_assertion(&issuer, "lab", &a).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let claims = payload(&access_token(&r));
    // cycle-a ↔ cycle-b, and cycle-b → samples-reader: expanded once each.
    assert_eq!(
        sorted(&claims["realm_access"]["roles"]),
        ["cycle-a", "cycle-b", "samples-reader"]
    );
    // An unknown kid finds no key.
    let a = assertion(
        "agent-ec.pem",
        Algorithm::ES256,
        Some("other"),
        "lab-ec-agent",
        &aud,
        exp,
        "ec-2",
    );
    let r = client_credentials_by_assertion(&issuer, "lab", &a).await;
    assert_eq!(r.status, 400);
}

#[tokio::test]
async fn a_disabled_service_account_user_gets_keycloaks_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("small.json");
    std::fs::write(
        &file,
        r#"{"realm": "small",
            "clients": [{"clientId": "job", "secret": "job-secret", "serviceAccountsEnabled": true}],
            "users": [{"username": "service-account-job", "enabled": false, "serviceAccountClientId": "job"}]}"#,
    )
    .unwrap();
    let issuer = issuer_with(std::slice::from_ref(&file), &clock());
    let r = client_credentials(&issuer, "small", "job", "job-secret").await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (401, Some("invalid_request"))
    );
    assert_eq!(
        r.json["error_description"],
        "User 'service-account-job' disabled"
    );
}

#[tokio::test]
async fn private_key_jwt_with_a_public_key_attribute() {
    // Keycloak keeps an imported public key (not a certificate) as base64 DER in this attribute.
    let pem = std::fs::read_to_string(repo_root().join("testing/fixtures/keys/agent-rsa.pub.pem"))
        .unwrap();
    let der_b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let export = json!({
        "realm": "pk",
        "clients": [{
            "clientId": "pk-agent",
            "clientAuthenticatorType": "client-jwt",
            "serviceAccountsEnabled": true,
            "attributes": { "jwt.credential.public.key": der_b64 }
        }]
    });
    let clock = clock();
    let issuer = issuer_from_json(&export, &clock);
    let aud = token_url("pk");
    let a = assertion(
        "agent-rsa.pem",
        Algorithm::PS256,
        None,
        "pk-agent",
        &aud,
        now_secs(&clock) + 60,
        "pk-1",
    );
    let r = client_credentials_by_assertion(&issuer, "pk", &a).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(payload(&access_token(&r))["azp"], "pk-agent");
}
