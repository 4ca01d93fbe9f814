//! Callers' vault permissions come from the gateway's authorization core: token roles count only
//! for issuers whose permission sources include them (`[vault.callers] issuer_sources`). A
//! second trusted issuer (a partner realm) limited to no source gets no `vault:*` permission
//! from its tokens, however they name their roles, while the first issuer's role still works.

mod common;

use common::*;
use serde_json::Value;
use tw_testkit::{ClientSpec, Idp, IdpConfig};

const SCHEDULER: &str = "job-scheduler";
const SCHEDULER_SECRET: &str = "job-scheduler-secret";
const ROLES: &str =
    "[vault.callers.roles]\n\"vault-scheduler\" = [\"vault:mint-any\", \"vault:read-any\"]\n";

/// A scheduler client whose service-account tokens carry the realm role `vault-scheduler` (and,
/// for the partner, look-alikes of it among its client roles).
fn scheduler(hostile: bool) -> ClientSpec {
    let spec = ClientSpec::secret_basic(SCHEDULER, SCHEDULER_SECRET)
        .realm_roles(["vault-scheduler", "vault:mint-any"]);
    if hostile {
        spec.client_roles("vault", ["scheduler", "vault-scheduler"])
    } else {
        spec
    }
}

/// `[[vault.callers.issuers]]` for a second issuer, `extra` after it.
fn partner_caller(partner: &Idp, extra: &str) -> String {
    format!(
        "[[vault.callers.issuers]]\nissuer = \"{}\"\naudiences = [\"api\"]\n\n{ROLES}\n{extra}",
        partner.issuer()
    )
}

async fn call(http: &reqwest::Client, req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = http
        .execute(req.build().expect("request"))
        .await
        .expect("send");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_issuer_without_role_source_grants_no_vault_permission() {
    let main = start_idp_with(vec![scheduler(false)]).await;
    let partner = Idp::start(
        IdpConfig::default()
            .realm("partner")
            .client(scheduler(true)),
    )
    .await;
    let dir = tempfile::tempdir().expect("temp dir");
    let limited = vault_config_with(
        dir.path(),
        &main.issuer(),
        true,
        &partner_caller(
            &partner,
            &format!(
                "[vault.callers.issuer_sources]\n\"{}\" = []\n",
                partner.issuer()
            ),
        ),
    );
    let store = sqlite_store(dir.path()).await;
    let base = serve_vault(&limited, store.clone()).await;
    let http = http_client();
    let alice = user_token(&http, &main, "alice").await;
    let rt = main
        .mint_refresh_token(VAULT_CLIENT, "alice", "openid offline_access")
        .await;
    let entry = store_entry(&http, &base, &alice, &rt).await;

    let ours = main
        .client_credentials_token(SCHEDULER, SCHEDULER_SECRET)
        .await;
    let theirs = partner
        .client_credentials_token(SCHEDULER, SCHEDULER_SECRET)
        .await;
    let list_all = |token: &str| {
        http.get(format!("{base}/v1/entries?all=true"))
            .bearer_auth(token)
    };
    let mint = |token: &str| {
        http.post(format!("{base}/v1/access-token"))
            .bearer_auth(token)
            .json(&serde_json::json!({ "id": entry }))
    };

    // The main issuer's scheduler reads and mints alice's entry.
    let (status, body) = call(&http, list_all(&ours)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(1));
    let (status, body) = call(&http, mint(&ours)).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["access_token"].is_string());

    // The partner's, with the same role (and look-alikes), is a caller like any other: it
    // reaches only its own entries.
    let (status, body) = call(&http, list_all(&theirs)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "vault_forbidden", "{body}");
    for req in [
        mint(&theirs),
        http.get(format!("{base}/v1/entries/{entry}"))
            .bearer_auth(&theirs),
        http.post(format!("{base}/v1/entries/{entry}/duplicate"))
            .bearer_auth(&theirs),
        http.delete(format!("{base}/v1/entries/{entry}"))
            .bearer_auth(&theirs),
    ] {
        let (status, body) = call(&http, req).await;
        assert_eq!(status, 404, "{body}");
        assert_eq!(body["error"]["code"], "vault_entry_not_found", "{body}");
    }
    let (status, body) = call(
        &http,
        http.get(format!("{base}/v1/entries")).bearer_auth(&theirs),
    )
    .await;
    assert_eq!(status, 200, "its own (none): {body}");
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(0));

    // The partner's token does carry the role: by default (no issuer_sources) it counts, which
    // is what the setting turns off.
    let default = vault_config_with(
        dir.path(),
        &main.issuer(),
        true,
        &partner_caller(&partner, ""),
    );
    let open = serve_vault(&default, store).await;
    let (status, body) = call(
        &http,
        http.get(format!("{open}/v1/entries?all=true"))
            .bearer_auth(&theirs),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["entries"].as_array().map(Vec::len), Some(1));
}
