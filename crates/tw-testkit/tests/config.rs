use tw_testkit::{ClientSpec, IdpConfig, UserSpec, fixture_path, idp_dir};

#[test]
fn client_debug_hides_the_secret() {
    let c = ClientSpec::secret_basic("svc", "very-secret-value");
    let shown = format!("{c:?}");
    assert!(shown.contains("svc"));
    assert!(!shown.contains("very-secret-value"), "{shown}");
}

#[test]
fn config_serialises_to_the_idp_format() {
    let cfg = IdpConfig::default()
        .realm("corp")
        .access_token_ttl(5)
        .client(
            ClientSpec::secret_post("svc", "s")
                .service_account_id("0d0c6c6e-0000-4000-8000-000000000001")
                .realm_roles(["agent"])
                .client_roles("api", ["read"]),
        )
        .user(UserSpec::new("bob").realm_roles(["user"]));
    let v = serde_json::to_value(&cfg).expect("json");
    assert_eq!(v["realm"], "corp");
    assert_eq!(v["access_token_ttl"], 5);
    assert_eq!(v["clients"][0]["auth_method"], "client_secret_post");
    assert_eq!(v["clients"][0]["secret"], "s");
    assert_eq!(v["clients"][0]["client_roles"]["api"][0], "read");
    assert_eq!(v["users"][0]["username"], "bob");
    assert!(v["clients"][0].get("grants").is_none());
    assert!(
        serde_json::to_value(IdpConfig::default())
            .expect("json")
            .get("clients")
            .is_none()
    );
}

#[test]
fn fixtures_and_idp_are_found() {
    assert!(fixture_path("keys/agent-rsa.pem").is_file());
    assert!(fixture_path("keys/agent-ec.pem").is_file());
    assert!(idp_dir().join("server.mjs").is_file());
}
