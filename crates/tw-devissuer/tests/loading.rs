//! Loading realm exports: counts, the unsupported listing, masked secrets, service accounts
//! missing from partial exports, and errors that name the file and the JSON path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;
use std::sync::Arc;
use tw_core::{ErrorKind, Secret};
use tw_devissuer::{ClientSecretOverride, DevIssuer, LoadReport};

fn has(report: &LoadReport, realm: &str, path: &str, what: &str) -> bool {
    report
        .unsupported()
        .any(|u| u.realm == realm && u.path == path && u.what.contains(what))
}

#[test]
fn lab_export_counts_and_unsupported_parts() {
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock());
    let report = issuer.report();
    let lab = report.realm("lab").unwrap();
    assert_eq!(
        (
            lab.clients,
            lab.service_accounts,
            lab.realm_roles,
            lab.client_roles,
            lab.groups,
            lab.client_scopes
        ),
        (8, 4, 9, 4, 2, 8)
    );
    assert_eq!(lab.issuer, format!("{BASE}/realms/lab"));
    for (path, what) in [
        ("$.identityProviders[0]", "identity provider \"github\""),
        (
            "$.authenticationFlows[1]",
            "custom authentication flow \"lab browser with webauthn\"",
        ),
        (
            "$.components[\"org.keycloak.keys.KeyProvider\"][0]",
            "key provider \"rsa-generated\"",
        ),
        (
            "$.components[\"org.keycloak.storage.UserStorageProvider\"][0]",
            "user federation \"lab-ldap\"",
        ),
        (
            "$.clients[1].protocolMappers[1]",
            "oidc-script-based-protocol-mapper",
        ),
        (
            "$.clientScopes[7].protocolMappers[1]",
            "oidc-group-membership-mapper",
        ),
        ("$.smtpServer", "SMTP"),
        ("$.requiredActions", "required action"),
        ("$.users", "alice"),
        ("$.scopeMappings", "scope mappings"),
        ("$.clients[4]", "authorization code"),
    ] {
        assert!(
            has(&report, "lab", path, what),
            "missing {path} {what}:\n{report}"
        );
    }
    // Every item says what happens instead.
    assert!(report.unsupported().all(|u| !u.instead.is_empty()));
    let text = report.to_string();
    assert!(text.starts_with("realm \"lab\" from "), "{text}");
    assert!(
        text.contains("8 client(s), 4 service account(s), 9 realm role(s)"),
        "{text}"
    );
    assert!(
        text.contains(
            "- identity provider \"github\" (github) at $.identityProviders[0]: not used"
        ),
        "{text}"
    );
}

#[test]
fn demo_realm_lists_its_custom_flow_and_nothing_else() {
    let issuer = issuer_with(&[demo_realm()], &clock());
    let report = issuer.report();
    let items: Vec<_> = report.unsupported().collect();
    assert_eq!(items.len(), 1, "{report}");
    assert_eq!(items[0].path, "$.authenticationFlows[0]");
}

#[tokio::test]
async fn partial_export_with_masked_secrets_needs_the_secret_given_outside() {
    let clock = clock();
    let issuer = issuer_with(&[fixture("field-partial-export.json")], &clock);
    let report = issuer.report();
    assert!(
        has(&report, "field", "$.clients[0].secret", "masked"),
        "{report}"
    );
    assert!(
        has(&report, "field", "$.clientScopes[1]", "saml"),
        "{report}"
    );
    let field = report.realm("field").unwrap();
    // The service account is not in a partial export; it is created like Keycloak does.
    assert_eq!((field.clients, field.service_accounts), (3, 1));

    // The masked value itself is no secret.
    let r = client_credentials(&issuer, "field", "field-agent", "**********").await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert!(
        r.json["error_description"]
            .as_str()
            .unwrap()
            .contains("masks"),
        "{}",
        r.json
    );

    let report = issuer
        .set_client_secrets(vec![ClientSecretOverride {
            realm: None,
            client_id: "field-agent".into(),
            secret: Secret::new("field-agent-secret"),
        }])
        .unwrap();
    assert!(
        !has(&report, "field", "$.clients[0].secret", "masked"),
        "{report}"
    );
    let r = client_credentials(&issuer, "field", "field-agent", "field-agent-secret").await;
    assert_eq!(r.status, 200, "{}", r.json);
    let claims = payload(&access_token(&r));
    // Default role: realm composites and a client role (so the API is in the audience).
    assert_eq!(
        sorted(&claims["realm_access"]["roles"]),
        [
            "default-roles-field",
            "field-reader",
            "offline_access",
            "uma_authorization"
        ]
    );
    assert_eq!(
        sorted(&claims["resource_access"]["field-api"]["roles"]),
        ["telemetry-read"]
    );
    assert_eq!(claims["aud"], "field-api");
    assert_eq!(claims["preferred_username"], "service-account-field-agent");
    assert_eq!(claims["client_id"], "field-agent");
    // Lifespan from the realm (600 s); refresh tokens on, realm idle timeout 900 s.
    assert_eq!(
        (
            r.json["expires_in"].as_u64(),
            r.json["refresh_expires_in"].as_u64()
        ),
        (Some(600), Some(900))
    );
    // The override survives a reload.
    issuer.reload().unwrap();
    assert_eq!(
        client_credentials(&issuer, "field", "field-agent", "field-agent-secret")
            .await
            .status,
        200
    );
}

#[test]
fn from_exports_loads_embedded_text() {
    let text = std::fs::read_to_string(demo_realm()).unwrap();
    let issuer = DevIssuer::from_exports(
        vec![("embedded demo".into(), text)],
        settings(),
        Arc::new(clock()),
    )
    .unwrap();
    assert_eq!(issuer.report().realms[0].source, "embedded demo");
    assert_eq!(issuer.reload().unwrap().realms.len(), 1);
}

fn load_err(text: &str) -> tw_core::Error {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("broken.json");
    std::fs::write(&file, text).unwrap();
    let err = DevIssuer::from_files(std::slice::from_ref(&file), settings(), Arc::new(clock()))
        .expect_err("must fail");
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(
        err.message().starts_with(&file.display().to_string()),
        "{err}"
    );
    err
}

#[test]
fn bad_files_are_named_with_the_json_path() {
    let err = load_err("{\"realm\": \"x\",\n \"clients\": [}");
    assert!(err.message().contains("not valid JSON at line 2"), "{err}");

    let err = load_err(
        r#"{"realm": "x", "clients": [{"clientId": "a"}, {"clientId": "b", "publicClient": "yes"}]}"#,
    );
    assert!(
        err.message()
            .contains("$.clients[1].publicClient: invalid type"),
        "{err}"
    );
    assert_eq!(err.context_value("key"), Some("$.clients[1].publicClient"));

    let err = load_err(r#"{"clients": []}"#);
    assert!(err.message().contains("missing field `realm`"), "{err}");

    let err = load_err(
        r#"{"realm": "x", "roles": {"realm": [{"name": "r", "composites": {"realm": "oops"}}]}}"#,
    );
    assert!(
        err.message().contains("$.roles.realm[0].composites.realm"),
        "{err}"
    );

    let err = load_err(
        r#"{"realm": "x", "clients": [{"clientId": "a", "attributes": {"access.token.lifespan": "soon"}}]}"#,
    );
    assert!(
        err.message()
            .contains("$.clients[0].attributes[\"access.token.lifespan\"]"),
        "{err}"
    );

    // A mistyped secret is not echoed.
    let err = load_err(r#"{"realm": "x", "clients": [{"clientId": "a", "secret": 31415926}]}"#);
    assert!(err.message().contains("$.clients[0].secret"), "{err}");
    assert!(!err.message().contains("31415926"), "{err}");
}

#[tokio::test]
async fn lifespans_beyond_keycloaks_int_or_below_zero_are_refused_naming_the_key() {
    for (export, key) in [
        (
            r#"{"realm": "x", "accessTokenLifespan": 3000000000}"#,
            "$.accessTokenLifespan",
        ),
        (
            r#"{"realm": "x", "ssoSessionIdleTimeout": -5}"#,
            "$.ssoSessionIdleTimeout",
        ),
        (
            r#"{"realm": "x", "ssoSessionMaxLifespan": 18446744073709551615}"#,
            "$.ssoSessionMaxLifespan",
        ),
        (
            r#"{"realm": "x", "clients": [{"clientId": "a", "attributes": {"access.token.lifespan": "99999999999"}}]}"#,
            "$.clients[0].attributes[\"access.token.lifespan\"]",
        ),
        (
            r#"{"realm": "x", "clients": [{"clientId": "a", "attributes": {"access.token.lifespan": "-1"}}]}"#,
            "$.clients[0].attributes[\"access.token.lifespan\"]",
        ),
    ] {
        let err = load_err(export);
        assert_eq!(err.context_value("key"), Some(key), "{err}");
        assert!(err.message().contains(key), "{err}");
    }

    // The largest lifespan Keycloak can hold is issued as is.
    let export = json!({
        "realm": "long",
        "accessTokenLifespan": i32::MAX,
        "clients": [{"clientId": "job", "secret": "job-secret", "serviceAccountsEnabled": true}]
    });
    let clock = clock();
    let issuer = issuer_from_json(&export, &clock);
    let r = client_credentials(&issuer, "long", "job", "job-secret").await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["expires_in"], i32::MAX);
    assert_eq!(
        payload(&access_token(&r))["exp"],
        now_secs(&clock) + i64::from(i32::MAX)
    );
}

#[test]
fn missing_file_and_duplicate_realm_are_errors() {
    let missing = std::path::PathBuf::from("/nonexistent/realm.json");
    let err =
        DevIssuer::from_files(&[missing], settings(), Arc::new(clock())).expect_err("missing");
    assert!(
        err.message()
            .contains("/nonexistent/realm.json: cannot read"),
        "{err}"
    );
    let err = DevIssuer::from_files(&[demo_realm(), demo_realm()], settings(), Arc::new(clock()))
        .expect_err("dup");
    assert_eq!(err.code(), "duplicate_realm");
}

#[tokio::test]
async fn discovery_and_dev_report_over_http() {
    let issuer = issuer_with(&[demo_realm(), fixture("lab-realm.json")], &clock());
    let d = get(&issuer, "/realms/demo/.well-known/openid-configuration").await;
    assert_eq!(d.status, 200);
    let iss = format!("{BASE}/realms/demo");
    assert_eq!(d.json["issuer"], iss.as_str());
    assert_eq!(
        d.json["token_endpoint"],
        format!("{iss}/protocol/openid-connect/token")
    );
    assert_eq!(
        d.json["jwks_uri"],
        format!("{iss}/protocol/openid-connect/certs")
    );
    assert_eq!(
        d.json["introspection_endpoint"],
        format!("{iss}/protocol/openid-connect/token/introspect")
    );
    assert_eq!(
        d.json["revocation_endpoint"],
        format!("{iss}/protocol/openid-connect/revoke")
    );
    assert_eq!(
        d.json["grant_types_supported"],
        json!(["client_credentials", "refresh_token"])
    );
    assert_eq!(
        get(&issuer, "/realms/nope/.well-known/openid-configuration")
            .await
            .status,
        404
    );

    let info = get(&issuer, "/realms/demo").await;
    assert_eq!(info.json["realm"], "demo");
    assert_eq!(
        info.json["token-service"],
        format!("{iss}/protocol/openid-connect")
    );
    // The published key is the signer of the JWKS.
    let jwk = &get(&issuer, "/realms/demo/protocol/openid-connect/certs")
        .await
        .json["keys"][0];
    let spki = info.json["public_key"].as_str().unwrap();
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{spki}\n-----END PUBLIC KEY-----\n");
    let from_page = jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes()).unwrap();
    let from_jwks = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap(),
        jwk["e"].as_str().unwrap(),
    )
    .unwrap();
    let token =
        access_token(&client_credentials(&issuer, "demo", "demo-agent", "demo-agent-secret").await);
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.validate_exp = false;
    validation.validate_aud = false;
    for key in [&from_page, &from_jwks] {
        jsonwebtoken::decode::<serde_json::Value>(&token, key, &validation).expect("verifies");
    }

    let r = get(&issuer, "/dev/report").await;
    assert_eq!(r.status, 200);
    let names: Vec<&str> = r.json["realms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["realm"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["demo", "lab"]);
    assert_eq!(
        r.json["realms"][0]["unsupported"][0]["path"],
        "$.authenticationFlows[0]"
    );
    // Wrong method: JSON 405, not a bare error.
    assert_eq!(
        get(&issuer, "/realms/demo/protocol/openid-connect/token")
            .await
            .status,
        405
    );
}

#[tokio::test]
async fn a_disabled_realm_is_loaded_but_not_served() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("off.json");
    std::fs::write(
        &file,
        r#"{"realm": "off", "enabled": false, "clients": [{"clientId": "a", "secret": "s", "serviceAccountsEnabled": true}]}"#,
    )
    .unwrap();
    let issuer = issuer_with(std::slice::from_ref(&file), &clock());
    assert!(issuer.report().to_string().contains("(disabled)"));
    assert_eq!(
        client_credentials(&issuer, "off", "a", "s").await.status,
        404
    );
}

#[test]
fn check_export_refuses_what_loading_refuses_and_loads_nothing() {
    let good = std::fs::read_to_string(fixture("lab-realm.json")).unwrap();
    tw_devissuer::check_export("lab-realm.json", &good).unwrap();
    let bad = good.replacen("\"realm\": \"lab\"", "\"realm\": \"a/b\"", 1);
    assert_ne!(bad, good, "the fixture names its realm as expected");
    let err = tw_devissuer::check_export("lab-realm.json", &bad).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Config);
    assert!(err.message().contains("lab-realm.json: $.realm"), "{err}");
    let err = tw_devissuer::check_export("x.json", "{\"realm\": 7}").unwrap_err();
    assert!(err.message().starts_with("x.json: $.realm"), "{err}");
}
