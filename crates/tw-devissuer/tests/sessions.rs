//! Refresh tokens (rotation with and without revokeRefreshToken), introspection, revocation,
//! lifetimes on a manual clock, key rotation and reload.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
use common::*;

async fn revoke(issuer: &tw_devissuer::DevIssuer, token: &str) -> Reply {
    post_form(
        issuer,
        &revoke_path("lab"),
        &[("token", token)],
        Some(LAB_AGENT),
    )
    .await
}

async fn introspect(issuer: &tw_devissuer::DevIssuer, token: &str) -> Reply {
    post_form(
        issuer,
        &introspect_path("lab"),
        &[("token", token)],
        Some(("lab-api", "lab-api-secret")),
    )
    .await
}

#[tokio::test]
async fn revoke_refresh_token_realm_allows_max_reuse_then_refuses_and_stale_tokens_fail() {
    // lab: revokeRefreshToken = true, refreshTokenMaxReuse = 1.
    let clock = clock();
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock);
    let first = client_credentials(&issuer, "lab", LAB_AGENT.0, LAB_AGENT.1).await;
    assert_eq!(first.json["refresh_expires_in"], 1800, "{}", first.json);
    let rt1 = refresh_token(&first);

    let r = refresh(&issuer, "lab", LAB_AGENT, &rt1).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let rt2 = refresh_token(&r);
    assert_ne!(rt1, rt2);
    // One reuse allowed...
    let r = refresh(&issuer, "lab", LAB_AGENT, &rt1).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let rt3 = refresh_token(&r);
    // ...but not two.
    let r = refresh(&issuer, "lab", LAB_AGENT, &rt1).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(
        r.json["error_description"],
        "Maximum allowed refresh token reuse exceeded"
    );
    // Using the newest token makes every older one stale.
    assert_eq!(refresh(&issuer, "lab", LAB_AGENT, &rt3).await.status, 200);
    let r = refresh(&issuer, "lab", LAB_AGENT, &rt2).await;
    assert_eq!(
        (r.status, r.json["error_description"].as_str()),
        (400, Some("Stale token"))
    );
}

#[tokio::test]
async fn without_revoke_refresh_token_a_refresh_token_can_be_used_again() {
    let clock = clock();
    let issuer = issuer_with(&[demo_realm()], &clock);
    let first = client_credentials(&issuer, "demo", "demo-agent", "demo-agent-secret").await;
    let rt = refresh_token(&first);
    for _ in 0..3 {
        let r = refresh(&issuer, "demo", ("demo-agent", "demo-agent-secret"), &rt).await;
        assert_eq!(r.status, 200, "{}", r.json);
        assert_ne!(refresh_token(&r), rt);
        let claims = payload(&access_token(&r));
        assert_eq!(claims["azp"], "demo-agent");
    }
}

#[tokio::test]
async fn refresh_tokens_expire_by_the_clock_and_belong_to_their_client() {
    let clock = clock();
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock);
    let rt = refresh_token(&client_credentials(&issuer, "lab", LAB_AGENT.0, LAB_AGENT.1).await);
    let r = refresh(&issuer, "lab", ("lab-no-sa", "lab-no-sa-secret"), &rt).await;
    assert_eq!(
        r.json["error_description"],
        "Invalid refresh token. Token client and authorized client don't match"
    );
    let r = refresh(&issuer, "lab", LAB_AGENT, "not-a-refresh-token").await;
    assert_eq!(
        (r.status, r.json["error_description"].as_str()),
        (400, Some("Invalid refresh token"))
    );

    clock.advance(secs(1799));
    let r = refresh(&issuer, "lab", LAB_AGENT, &rt).await;
    assert_eq!(r.status, 200, "{}", r.json);
    let rt2 = refresh_token(&r);
    clock.advance(secs(1800));
    let r = refresh(&issuer, "lab", LAB_AGENT, &rt2).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (400, Some("invalid_grant")),
        "{}",
        r.json
    );
}

#[tokio::test]
async fn settings_refresh_lifetime_overrides_the_realm() {
    let clock = clock();
    let mut s = settings();
    s.refresh_token_lifetime = Some(secs(90));
    let issuer =
        tw_devissuer::DevIssuer::from_files(&[demo_realm()], s, std::sync::Arc::new(clock.clone()))
            .unwrap();
    let first = client_credentials(&issuer, "demo", "demo-agent", "demo-agent-secret").await;
    assert_eq!(first.json["refresh_expires_in"], 90);
    clock.advance(secs(91));
    let r = refresh(
        &issuer,
        "demo",
        ("demo-agent", "demo-agent-secret"),
        &refresh_token(&first),
    )
    .await;
    assert_eq!(r.json["error_description"], "Token is not active");
}

#[tokio::test]
async fn introspection_reports_active_tokens_and_inactive_expired_foreign_and_revoked_ones() {
    let clock = clock();
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock);
    let first = client_credentials(&issuer, "lab", LAB_AGENT.0, LAB_AGENT.1).await;
    let at = access_token(&first);
    let rt = refresh_token(&first);

    let r = introspect(&issuer, &at).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json["active"], true);
    assert_eq!(r.json["client_id"], "lab-agent");
    assert_eq!(r.json["username"], "service-account-lab-agent");
    assert_eq!(r.json["lab_site"], "north");
    let r = introspect(&issuer, &rt).await;
    assert_eq!(
        (r.json["active"].as_bool(), r.json["typ"].as_str()),
        (Some(true), Some("Refresh"))
    );

    // Foreign: same realm, another issuer instance (other keys).
    let other = issuer_with(&[fixture("lab-realm.json")], &clock);
    let foreign = access_token(&client_credentials(&other, "lab", LAB_AGENT.0, LAB_AGENT.1).await);
    assert_eq!(
        introspect(&issuer, &foreign).await.json,
        json!({"active": false})
    );
    assert_eq!(
        introspect(&issuer, "garbage").await.json,
        json!({"active": false})
    );

    // Public clients may not introspect; unauthenticated callers neither.
    let r = post_form(
        &issuer,
        &introspect_path("lab"),
        &[("token", &at), ("client_id", "lab-web")],
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let r = post_form(
        &issuer,
        &introspect_path("lab"),
        &[("token", &at)],
        Some(("lab-api", "wrong")),
    )
    .await;
    assert_eq!(r.status, 401);

    // Expiry by the clock: the access token (120 s) dies, the refresh token (1800 s) lives.
    clock.advance(secs(120));
    assert_eq!(
        introspect(&issuer, &at).await.json,
        json!({"active": false})
    );
    assert_eq!(introspect(&issuer, &rt).await.json["active"], true);
}

#[tokio::test]
async fn revocation_of_refresh_and_access_tokens() {
    let clock = clock();
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock);
    let first = client_credentials(&issuer, "lab", LAB_AGENT.0, LAB_AGENT.1).await;
    let at = access_token(&first);
    let rt = refresh_token(&first);
    let second = refresh(&issuer, "lab", LAB_AGENT, &rt).await;
    let rt2 = refresh_token(&second);

    // Another client may not revoke them.
    let r = post_form(
        &issuer,
        &revoke_path("lab"),
        &[("token", &rt)],
        Some(("lab-no-sa", "lab-no-sa-secret")),
    )
    .await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    assert_eq!(introspect(&issuer, &rt).await.json["active"], true);

    // Revoking a refresh token ends its chain: the newer one is dead too.
    let r = revoke(&issuer, &rt).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        introspect(&issuer, &rt).await.json,
        json!({"active": false})
    );
    assert_eq!(
        introspect(&issuer, &rt2).await.json,
        json!({"active": false})
    );
    let r = refresh(&issuer, "lab", LAB_AGENT, &rt2).await;
    assert_eq!(
        (r.status, r.json["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    // Access tokens by jti.
    assert_eq!(introspect(&issuer, &at).await.json["active"], true);
    assert_eq!(revoke(&issuer, &at).await.status, 200);
    assert_eq!(
        introspect(&issuer, &at).await.json,
        json!({"active": false})
    );
    // Unknown tokens: success, as RFC 7009 says.
    assert_eq!(revoke(&issuer, "nothing").await.status, 200);
}

#[tokio::test]
async fn key_rotation_with_and_without_keeping_the_old_key() {
    let clock = clock();
    let issuer = issuer_with(&[fixture("lab-realm.json")], &clock);
    let certs = "/realms/lab/protocol/openid-connect/certs";
    let before = access_token(&client_credentials(&issuer, "lab", LAB_AGENT.0, LAB_AGENT.1).await);
    let old_kid = header_kid(&before);
    let jwks = get(&issuer, certs).await.json;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], old_kid.as_str());
    assert_eq!(jwks["keys"][0]["alg"], "RS256");

    // keep_old over HTTP: both keys published, the old token still verifies.
    let r = post_form(
        &issuer,
        "/dev/realms/lab/rotate-keys?keep_old=true",
        &[],
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.json);
    let new_kid = r.json["kid"].as_str().unwrap().to_owned();
    assert_ne!(new_kid, old_kid);
    let kids: Vec<String> = get(&issuer, certs).await.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(kids, [new_kid.clone(), old_kid.clone()]);
    let after = access_token(&client_credentials(&issuer, "lab", LAB_AGENT.0, LAB_AGENT.1).await);
    assert_eq!(header_kid(&after), new_kid);
    assert_eq!(introspect(&issuer, &before).await.json["active"], true);

    // Without keep_old: only the newest key remains; tokens of older keys are dead.
    let newest = issuer.rotate_keys("lab", false).unwrap();
    let jwks = get(&issuer, certs).await.json;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], newest.as_str());
    assert_eq!(introspect(&issuer, &before).await.json["active"], false);
    assert_eq!(introspect(&issuer, &after).await.json["active"], false);
    assert!(issuer.rotate_keys("nope", true).is_err());
    assert_eq!(
        post_form(&issuer, "/dev/realms/nope/rotate-keys", &[], None)
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn reload_shows_a_new_role_in_the_next_token_and_keeps_keys_and_old_realms_on_error() {
    let clock = clock();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("demo-realm.json");
    let original = std::fs::read_to_string(demo_realm()).unwrap();
    std::fs::write(&file, &original).unwrap();
    let issuer = issuer_with(std::slice::from_ref(&file), &clock);
    let before =
        access_token(&client_credentials(&issuer, "demo", "demo-agent", "demo-agent-secret").await);
    assert!(
        !sorted(&payload(&before)["realm_access"]["roles"])
            .contains(&"attributes-writer".to_owned())
    );

    let mut realm: serde_json::Value = serde_json::from_str(&original).unwrap();
    realm["users"][0]["realmRoles"] = json!(["lab-agent", "attributes-writer"]);
    std::fs::write(&file, serde_json::to_string_pretty(&realm).unwrap()).unwrap();
    let r = post_form(&issuer, "/dev/reload", &[], None).await;
    assert_eq!(r.status, 200, "{}", r.json);
    assert_eq!(r.json["realms"][0]["realm"], "demo");
    let after =
        access_token(&client_credentials(&issuer, "demo", "demo-agent", "demo-agent-secret").await);
    assert!(
        sorted(&payload(&after)["realm_access"]["roles"]).contains(&"attributes-writer".to_owned())
    );
    assert_eq!(
        header_kid(&after),
        header_kid(&before),
        "reload keeps the signing key"
    );
    assert_eq!(
        payload(&after)["sub"],
        payload(&before)["sub"],
        "sub is stable across reloads"
    );

    // A broken file: the error names file and path, the loaded realm stays.
    realm["clients"][0]["serviceAccountsEnabled"] = json!("yes");
    std::fs::write(&file, serde_json::to_string(&realm).unwrap()).unwrap();
    let err = issuer.reload().expect_err("broken file");
    assert!(err.message().contains(&file.display().to_string()), "{err}");
    assert!(
        err.message()
            .contains("$.clients[0].serviceAccountsEnabled"),
        "{err}"
    );
    let r = post_form(&issuer, "/dev/reload", &[], None).await;
    assert_eq!(r.status, 422, "{}", r.json);
    assert_eq!(r.json["error"]["code"], "bad_realm_export", "{}", r.json);
    let still = client_credentials(&issuer, "demo", "demo-agent", "demo-agent-secret").await;
    assert_eq!(still.status, 200);
    assert!(
        sorted(&payload(&access_token(&still))["realm_access"]["roles"])
            .contains(&"attributes-writer".to_owned())
    );
}
