//! [`Vault`]: the service (consent, store, duplicate, list, delete, introspect, rekey; minting
//! is in [`mint`]).

use crate::binding::{EntryBinding, PendingBinding, Seals};
use crate::codes;
use crate::errors::{
    bad_attributes, entry_not_found, forbidden, redirect_not_allowed, token_owner_mismatch,
    user_mismatch,
};
use crate::idp::{Grant, IdpClient, expiry};
use crate::keyring::AadLayout;
use crate::metrics_names::*;
use crate::model::*;
use crate::state::{Pkce, StateSigner, random_token};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tw_core::{Clock, Error, ErrorKind, Secret, UnixTime};
use tw_vault_port::{FencedWrite, InsertFence, PendingConsent, TokenUpdate, VaultRow, VaultStore};
use url::Url;

mod mint;

use mint::{CachedMint, Fence, commit_conflict, lease_lost};

/// Attribute limits (they are stored per row and shown in listings).
const MAX_ATTRIBUTES: usize = 32;
const MAX_ATTRIBUTE_KEY: usize = 64;
const MAX_ATTRIBUTE_VALUE: usize = 1024;
/// Minted access tokens kept in memory at most (entries, not bytes).
const MINT_CACHE_CAPACITY: u64 = 10_000;
/// Outer bound on a cached mint's life: each is served only until its own `exp - margin`, and
/// this evicts the ones nobody asks for again (an access token living a day is not expected).
const MINT_CACHE_TTL: Duration = Duration::from_secs(24 * 3600);
/// Rows per page when the vault walks every entry (rekey, list_all).
const PAGE: u32 = 200;
/// Attempts to commit one rotation or rekey when the row's version moved underneath.
const COMMIT_ATTEMPTS: usize = 3;
/// Prefix of the session ids the vault assigns when the IdP names none.
const LOCAL_SESSION_PREFIX: &str = "vault:";

struct Inner {
    settings: VaultSettings,
    seals: Seals,
    state: StateSigner,
    store: Arc<dyn VaultStore>,
    clock: Arc<dyn Clock>,
    idp: IdpClient,
    minted: moka::sync::Cache<String, CachedMint>,
    /// One lock per token lineage (`mint::lineage_of`): one IdP refresh at a time in this process
    /// (the database lease does the same across instances).
    flights: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// The token vault. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field("issuer", &self.inner.settings.idp.issuer.as_str())
            .field("client_id", &self.inner.settings.idp.client_id)
            .field("keys", &self.inner.settings.keys)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

fn view(row: &VaultRow) -> Result<EntryView, Error> {
    Ok(EntryView {
        id: row.id.parse().map_err(|_| {
            Error::internal(
                crate::codes::VAULT_ENTRY_ID_CORRUPT,
                "a vault entry id in storage is not a UUID",
            )
        })?,
        owner_issuer: row.owner_issuer.clone(),
        owner_subject: row.owner_subject.clone(),
        token_type: row.token_type,
        session_id: row.session_id.clone(),
        created_at: row.created_at,
        last_used_at: row.last_used_at,
        expires_at: row.expires_at,
        attributes: row.attributes.clone(),
        key_id: row.sealed.key_id.clone(),
        status: row.status,
    })
}

fn check_attributes(attributes: &BTreeMap<String, String>) -> Result<(), Error> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(bad_attributes(&format!("at most {MAX_ATTRIBUTES}")));
    }
    for (k, v) in attributes {
        if k.is_empty() || k.len() > MAX_ATTRIBUTE_KEY || k.chars().any(char::is_control) {
            return Err(bad_attributes(&format!(
                "names are 1 to {MAX_ATTRIBUTE_KEY} printable characters"
            )));
        }
        if v.len() > MAX_ATTRIBUTE_VALUE {
            return Err(bad_attributes(&format!(
                "values are at most {MAX_ATTRIBUTE_VALUE} bytes (`{k}` is longer)"
            )));
        }
    }
    Ok(())
}

/// Offline when the IdP granted `offline_access` (or, with no `scope` in its answer, when it was
/// asked for).
fn token_type_of(granted: Option<&str>, requested: &str) -> TokenType {
    let offline = |s: &str| s.split_whitespace().any(|x| x == "offline_access");
    if granted.map_or_else(|| offline(requested), offline) {
        TokenType::Offline
    } else {
        TokenType::Refresh
    }
}

/// The IdP's `error` code as reported: OAuth error codes are `%x20-21 / %x23-5B / %x5D-7E`; we
/// keep a short, plain subset.
fn sanitize_error_code(code: &str) -> String {
    let cleaned: String = code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "unknown_error".into()
    } else {
        cleaned
    }
}

/// OIDC Core 3.1.3.7: the consent sent a `nonce`, so the id_token must carry that very value; a
/// missing one is refused too (an id_token minted for another request would pass otherwise).
fn check_id_token_nonce(claimed: Option<&str>, sent: &str) -> Result<(), Error> {
    if claimed == Some(sent) {
        return Ok(());
    }
    let why = if claimed.is_some() {
        "the id_token's nonce is not this consent's"
    } else {
        "the id_token carries no nonce, though the consent sent one"
    };
    Err(Error::new(
        ErrorKind::IdpRejected,
        codes::IDP_ID_TOKEN_INVALID,
        why,
    ))
}

fn sanitize_description(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

impl Vault {
    /// Checks the settings and builds the vault. No I/O: the IdP is discovered at first use (so
    /// the vault starts while the IdP is down), the database is the caller's `store` (the
    /// vault's storage port, [`VaultStore`]; `tw_store::VaultTables` over SQLite or PostgreSQL).
    pub async fn new(
        settings: VaultSettings,
        store: Arc<dyn VaultStore>,
        clock: Arc<dyn Clock>,
    ) -> Result<Vault, Error> {
        let state = StateSigner::new(settings.state_signing_key.clone())?;
        if settings.state_ttl.is_zero() {
            return Err(Error::config(
                tw_core::CONFIG_INVALID,
                "the vault's state ttl must be positive",
            ));
        }
        if settings.consent_scope.split_whitespace().next().is_none() {
            return Err(Error::config(
                tw_core::CONFIG_INVALID,
                "the vault's consent scope must not be empty",
            ));
        }
        let idp = IdpClient::new(&settings.idp, clock.clone())?;
        let minted = moka::sync::Cache::builder()
            .max_capacity(MINT_CACHE_CAPACITY)
            .time_to_live(MINT_CACHE_TTL)
            .build();
        Ok(Vault {
            inner: Arc::new(Inner {
                seals: Seals::new(&settings),
                settings,
                state,
                store,
                clock,
                idp,
                minted,
                flights: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn now(&self) -> UnixTime {
        self.inner.clock.now()
    }

    fn seals(&self) -> &Seals {
        &self.inner.seals
    }

    /// The entry, if the caller owns it or holds `permission`; otherwise (and when missing)
    /// `vault_entry_not_found`.
    async fn visible_row(
        &self,
        caller: &Caller,
        id: &EntryId,
        permission: &str,
    ) -> Result<VaultRow, Error> {
        match self.inner.store.get(&id.to_string()).await? {
            Some(row)
                if caller.owns(&row.owner_issuer, &row.owner_subject) || caller.may(permission) =>
            {
                Ok(row)
            }
            _ => Err(entry_not_found(id)),
        }
    }

    // ----- consent -----

    /// Starts a consent for the caller: a pending row (nonce, owner, sealed PKCE verifier,
    /// attributes, `redirect_after`) and the IdP's authorization URL with a signed `state`.
    pub async fn begin_consent(
        &self,
        caller: &Caller,
        attributes: BTreeMap<String, String>,
        redirect_after: Option<Url>,
    ) -> Result<ConsentStart, Error> {
        check_attributes(&attributes)?;
        if let Some(url) = &redirect_after
            && !self.inner.settings.redirects.allows(url)
        {
            return Err(redirect_not_allowed(
                "the page to return to after the consent is not under vault.consent.allowed_redirects",
            ));
        }
        let now = self.now();
        // Expired pending consents are cleared as new ones start (best effort).
        if let Err(e) = self.inner.store.pending_purge(now).await {
            tracing::debug!(error = %e, "could not purge expired pending consents");
        }
        let nonce = random_token(32);
        let pkce = Pkce::new();
        let expires_at = now.plus(self.inner.settings.state_ttl);
        let redirect_after = redirect_after.map(String::from);
        let verifier = self.seals().seal_pending(
            PendingBinding {
                nonce: &nonce,
                owner_issuer: &caller.issuer,
                owner_subject: &caller.subject,
                redirect_after: redirect_after.as_deref(),
                attributes: &attributes,
            },
            pkce.verifier.expose(),
        )?;
        let max = self.inner.settings.max_pending_consents;
        let inserted = self
            .inner
            .store
            .pending_insert(
                &PendingConsent {
                    nonce: nonce.clone(),
                    owner_issuer: caller.issuer.clone(),
                    owner_subject: caller.subject.clone(),
                    verifier,
                    attributes,
                    redirect_after,
                    created_at: now,
                    expires_at,
                },
                max,
            )
            .await?;
        if !inserted {
            let (_, first_expiry) = self
                .inner
                .store
                .pending_of_owner(&caller.issuer, &caller.subject, now)
                .await?;
            let wait = first_expiry.map_or(Duration::from_secs(1), |t| now.until(t));
            tracing::info!(owner = %caller.subject, max, "vault consent refused: too many pending");
            return Err(Error::new(
                ErrorKind::RateLimited,
                codes::VAULT_TOO_MANY_PENDING_CONSENTS,
                format!(
                    "{max} consents of this user are already waiting to be completed (vault.limits.max_pending_consents); complete one, or retry once the oldest expires"
                ),
            )
            .with("max_pending_consents", max.to_string())
            .with_retry_after(wait.max(Duration::from_secs(1))));
        }
        let state = self.inner.state.sign(&nonce, expires_at);
        let settings = &self.inner.settings;
        let redirect_uri = settings.redirect_uri.to_string();
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", settings.idp.client_id.as_str()),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", settings.consent_scope.as_str()),
            ("state", state.as_str()),
            ("nonce", nonce.as_str()),
            ("code_challenge", pkce.challenge.as_str()),
            ("code_challenge_method", "S256"),
        ];
        // OIDC Core 11: an `offline_access` request must carry `prompt=consent` (IdPs that follow
        // the letter, oidc-provider among them, drop the scope otherwise).
        if token_type_of(None, &settings.consent_scope) == TokenType::Offline {
            params.push(("prompt", "consent"));
        }
        let consent_url = self.inner.idp.authorization_url(&params).await?;
        tracing::info!(owner = %caller.subject, "vault consent started");
        Ok(ConsentStart {
            consent_url,
            expires_at,
        })
    }

    /// The callback: checks `state` (signature, expiry, single use), opens the pending row (a
    /// row changed in the database does not open: `vault_decrypt_failed`), checks its page to
    /// return to against the redirect policy again, reports an IdP error redirect, exchanges the
    /// code with the PKCE verifier, checks that the user who signed in is the caller who asked,
    /// and stores the token. Every refusal comes before the code is exchanged.
    pub async fn complete_consent(&self, cb: ConsentCallback) -> Result<ConsentDone, Error> {
        let result = self.complete_consent_inner(cb).await;
        let outcome = result.as_ref().map_or_else(|e| e.code(), |_| "stored");
        metrics::counter!(METRIC_CONSENTS, "outcome" => outcome).increment(1);
        result
    }

    async fn complete_consent_inner(&self, cb: ConsentCallback) -> Result<ConsentDone, Error> {
        let now = self.now();
        let nonce = self.inner.state.verify(&cb.state, now)?;
        let pending = self
            .inner
            .store
            .pending_take(&nonce)
            .await?
            .ok_or_else(|| {
                Error::bad_request(
                    codes::VAULT_STATE_USED,
                    "this consent `state` was already used (or its consent was cleared); start the consent again",
                )
            })?;
        if pending.expires_at <= now {
            return Err(Error::bad_request(
                codes::VAULT_STATE_EXPIRED,
                "the consent took too long: its `state` expired; start the consent again",
            ));
        }
        let verifier = self.seals().open_pending(&pending)?;
        if verifier.layout == AadLayout::V1 {
            tracing::debug!("a pending consent sealed in the v1 layout was opened");
        }
        let redirect_to = match pending.redirect_after.as_deref() {
            None => None,
            Some(text) => match Url::parse(text) {
                Ok(url) if self.inner.settings.redirects.allows(&url) => Some(url),
                _ => {
                    tracing::warn!(owner = %pending.owner_subject, "vault consent refused: its page to return to is not allowed (any more)");
                    return Err(redirect_not_allowed(
                        "the page this consent was to return to is not under vault.consent.allowed_redirects (any more); start the consent again",
                    ));
                }
            },
        };
        if let Some(error) = cb.error.as_deref() {
            let code = sanitize_error_code(error);
            let mut message = format!("the IdP ended the consent with `{code}`");
            if let Some(d) = cb.error_description.as_deref().filter(|d| !d.is_empty()) {
                message.push_str(": ");
                message.push_str(&sanitize_description(d));
            }
            return Err(Error::bad_request(codes::CONSENT_DENIED, message).with("idp_error", code));
        }
        let code = cb
            .code
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                Error::bad_request(
                    codes::VAULT_CODE_MISSING,
                    "the callback carries neither `code` nor `error`",
                )
            })?;
        let grant = self
            .inner
            .idp
            .exchange_code(code, &verifier.secret, &self.inner.settings.redirect_uri)
            .await?;
        // From here on the IdP holds a grant (an offline session): any failure must end it,
        // or it would outlive the consent with no entry to find or delete it by.
        let kept = self.keep_consent_grant(&pending, &nonce, &grant).await;
        let entry = match kept {
            Ok(entry) => entry,
            Err(e) => {
                self.revoke_leftover(&grant).await;
                return Err(e);
            }
        };
        tracing::info!(entry = %entry.id, owner = %entry.owner_subject, token_type = entry.token_type.as_str(), "vault consent completed");
        Ok(ConsentDone { entry, redirect_to })
    }

    /// Checks who signed in (verified id_token with this consent's nonce, the owner who asked)
    /// and stores the grant as a new entry.
    async fn keep_consent_grant(
        &self,
        pending: &PendingConsent,
        nonce: &str,
        grant: &Grant,
    ) -> Result<EntryView, Error> {
        let identity = self.inner.idp.identity(grant).await?;
        if grant.id_token.is_some() {
            check_id_token_nonce(identity.nonce.as_deref(), nonce)?;
        }
        let owner_matches = same_issuer(&identity.issuer, &pending.owner_issuer)
            && identity.subject == pending.owner_subject;
        if !owner_matches {
            tracing::warn!(owner = %pending.owner_subject, signed_in = %identity.subject, "vault consent refused: another user signed in");
            return Err(user_mismatch());
        }
        self.insert_grant(
            &pending.owner_issuer,
            &pending.owner_subject,
            grant,
            None,
            identity.session_id,
            pending.attributes.clone(),
            &self.inner.settings.consent_scope,
        )
        .await
    }

    /// Best-effort revocation of a grant the vault will not keep (the refresh token the IdP
    /// issued with it; none issued, nothing to end).
    async fn revoke_leftover(&self, grant: &Grant) {
        if let Some(rt) = &grant.token.refresh_token
            && let Err(e) = self.inner.idp.revoke(rt, "refresh_token").await
        {
            tracing::warn!(error = %e, "could not revoke a grant the vault refused to keep");
        }
    }

    /// Seals the grant's refresh token (else `fallback`, the token the grant was obtained with)
    /// into a new entry.
    #[allow(clippy::too_many_arguments)]
    async fn insert_grant(
        &self,
        owner_issuer: &str,
        owner_subject: &str,
        grant: &Grant,
        fallback: Option<&Secret>,
        session_id: Option<String>,
        attributes: BTreeMap<String, String>,
        requested_scope: &str,
    ) -> Result<EntryView, Error> {
        let refresh_token = grant.token.refresh_token.as_ref().or(fallback).ok_or_else(|| {
            Error::new(
                ErrorKind::IdpRejected,
                codes::IDP_NO_REFRESH_TOKEN,
                "the IdP issued no refresh token (is `offline_access` allowed for the vault's client?)",
            )
        })?;
        let now = self.now();
        let id = EntryId::random().to_string();
        let token_type = token_type_of(grant.token.scope.as_deref(), requested_scope);
        let session_id =
            session_id.unwrap_or_else(|| format!("{LOCAL_SESSION_PREFIX}{}", EntryId::random()));
        let sealed = self.seals().seal_entry(
            EntryBinding {
                id: &id,
                owner_issuer,
                owner_subject,
                token_type,
                session_id: Some(&session_id),
                attributes: &attributes,
            },
            refresh_token.expose(),
        )?;
        let row = VaultRow {
            id,
            owner_issuer: owner_issuer.to_owned(),
            owner_subject: owner_subject.to_owned(),
            token_type,
            sealed,
            session_id: Some(session_id),
            status: EntryStatus::Active,
            attributes,
            created_at: now,
            last_used_at: None,
            expires_at: expiry(now, grant.refresh_expires_in),
            version: 1,
        };
        self.inner.store.insert(&row).await?;
        view(&row)
    }

    // ----- store, duplicate -----

    /// Stores a refresh or offline token the caller already holds. It is checked by one refresh
    /// at the IdP (that proves the vault's client may use it and tells whose it is: it must be
    /// the caller's); when the IdP rotates it, the new token is what gets stored.
    pub async fn store_token(
        &self,
        caller: &Caller,
        refresh_token: Secret,
        attributes: BTreeMap<String, String>,
    ) -> Result<EntryView, Error> {
        check_attributes(&attributes)?;
        if refresh_token.is_empty() {
            return Err(Error::bad_request(
                codes::VAULT_TOKEN_MISSING,
                "no refresh token given",
            ));
        }
        let grant = match self.inner.idp.refresh(&refresh_token).await {
            Ok(g) => g,
            Err(e) if e.code() == tw_idp::codes::IDP_INVALID_GRANT => {
                return Err(Error::bad_request(
                    codes::VAULT_TOKEN_REJECTED,
                    "the IdP does not accept this refresh token from the vault's client (expired, revoked, spent, or issued to another client)",
                ));
            }
            Err(e) => return Err(e),
        };
        // The refresh spent the caller's token when the IdP rotated it: from here on a failure
        // must end the successor, or it would stay live with no entry holding it.
        let kept = self
            .keep_supplied_grant(caller, &grant, &refresh_token, attributes)
            .await;
        match kept {
            Ok(entry) => {
                tracing::info!(entry = %entry.id, owner = %entry.owner_subject, "vault stored a caller's token");
                Ok(entry)
            }
            Err(e) => {
                self.revoke_leftover(&grant).await;
                Err(e)
            }
        }
    }

    /// Checks the grant is the caller's and stores it (the rotated token, else the one given).
    async fn keep_supplied_grant(
        &self,
        caller: &Caller,
        grant: &Grant,
        given: &Secret,
        attributes: BTreeMap<String, String>,
    ) -> Result<EntryView, Error> {
        let identity = self.inner.idp.identity(grant).await?;
        if !(same_issuer(&identity.issuer, &caller.issuer) && identity.subject == caller.subject) {
            tracing::warn!(caller = %caller.subject, token_subject = %identity.subject, "vault refused to store another user's token");
            return Err(token_owner_mismatch());
        }
        self.insert_grant(
            &caller.issuer,
            &caller.subject,
            grant,
            Some(given),
            identity.session_id,
            attributes,
            "",
        )
        .await
    }

    /// A new entry (new id) for the same owner holding the same offline token and session.
    /// Copied under the session's lock and lease, and inserted by a write fenced by that lease
    /// and guarded by the version read (as a rotation's commit): an instance that lost the lease
    /// meanwhile writes no copy (503 `vault_lease_lost`), so a rotation by the new holder cannot
    /// leave the copy holding the spent token.
    pub async fn duplicate(&self, caller: &Caller, id: &EntryId) -> Result<EntryView, Error> {
        let row = self.visible_row(caller, id, PERM_ADMIN).await?;
        if row.token_type != TokenType::Offline {
            return Err(Error::bad_request(
                codes::VAULT_DUPLICATE_UNSUPPORTED,
                "only offline entries can be duplicated",
            ));
        }
        let entry = *id;
        self.under_lineage(mint::lineage_of(&row), move |vault, fence| async move {
            vault.duplicate_entry(&entry, &fence).await
        })
        .await
    }

    async fn duplicate_entry(&self, id: &EntryId, fence: &Fence) -> Result<EntryView, Error> {
        for _ in 0..COMMIT_ATTEMPTS {
            let row = self
                .inner
                .store
                .get(&id.to_string())
                .await?
                .ok_or_else(|| entry_not_found(id))?;
            let token = self.seals().open_entry(&row)?.secret;
            let new_id = EntryId::random().to_string();
            let sealed = self.seals().seal_entry(
                EntryBinding {
                    id: &new_id,
                    ..EntryBinding::from(&row)
                },
                token.expose(),
            )?;
            let copy = VaultRow {
                sealed,
                id: new_id,
                created_at: self.now(),
                last_used_at: None,
                version: 1,
                ..row.clone()
            };
            let written = self
                .inner
                .store
                .insert_fenced(
                    InsertFence {
                        lineage: &fence.lineage,
                        lease_id: &fence.lease_id,
                        source_id: &row.id,
                        source_version: row.version,
                    },
                    &copy,
                )
                .await?;
            match written {
                FencedWrite::Applied => {
                    tracing::info!(entry = %copy.id, from = %id, "vault entry duplicated");
                    return view(&copy);
                }
                FencedWrite::LeaseLost => {
                    tracing::warn!(entry = %id, "no duplicate written: this instance lost the entry's lease");
                    return Err(lease_lost().with("entry", id.to_string()));
                }
                // The source moved on (a rekey): copy what it holds now.
                FencedWrite::Conflict => {}
            }
        }
        Err(commit_conflict(&id.to_string()))
    }

    // ----- read -----

    /// The caller's own entries, oldest first.
    pub async fn list(&self, caller: &Caller) -> Result<Vec<EntryView>, Error> {
        self.inner
            .store
            .list_by_owner(&caller.issuer, &caller.subject)
            .await?
            .iter()
            .map(view)
            .collect()
    }

    /// Every entry (needs `vault:read-any`), by id.
    pub async fn list_all(&self, caller: &Caller) -> Result<Vec<EntryView>, Error> {
        if !caller.may(PERM_READ_ANY) {
            return Err(forbidden("listing every entry", PERM_READ_ANY));
        }
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.inner.store.list_page(after.as_deref(), PAGE).await?;
            for row in &page {
                out.push(view(row)?);
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.id.clone()),
                _ => return Ok(out),
            }
        }
    }

    pub async fn get(&self, caller: &Caller, id: &EntryId) -> Result<EntryView, Error> {
        view(&self.visible_row(caller, id, PERM_READ_ANY).await?)
    }

    // ----- delete -----

    /// Revokes the token at the IdP (RFC 7009) unless another active entry of the same owner
    /// shares its session (a revocation would end that session for them too: Keycloak's
    /// offline-session rule), then deletes the row. Deletes of one session's entries take turns
    /// (the lineage's lock and lease, as mints do), so of two siblings deleted at once the second
    /// sees no sibling left and revokes. When the IdP cannot be reached the row is kept and the
    /// error is retryable. Runs in its own task: a caller that gives up cancels nothing between
    /// the revocation and the row's removal.
    pub async fn delete(&self, caller: &Caller, id: &EntryId) -> Result<DeleteOutcome, Error> {
        let row = self.visible_row(caller, id, PERM_ADMIN).await?;
        let entry = *id;
        self.under_lineage(mint::lineage_of(&row), move |vault, _| async move {
            vault.delete_entry(&entry).await
        })
        .await
    }

    /// Runs `work` under the lineage's in-process lock and database lease (as a mint's refresh;
    /// `work` is given the lease to fence its writes with), in a task of its own so that a caller
    /// giving up cancels nothing half-way.
    async fn under_lineage<T, F, Fut>(&self, lineage: String, work: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(Vault, Fence) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, Error>> + Send,
    {
        let leased = lineage.clone();
        self.in_own_task(lineage, codes::VAULT_TASK_FAILED, move |this| async move {
            let lease = this.take_lease(&leased).await?;
            let result = work(this.clone(), lease.fence()).await;
            lease.release().await;
            result
        })
        .await
    }

    /// Runs `work` under the lineage's in-process lock, in a task of its own (a caller that gives
    /// up must not cancel it between the IdP's answer and the commit). A task that panics is a
    /// 500 with `failure_code`.
    pub(super) async fn in_own_task<T, F, Fut>(
        &self,
        lineage: String,
        failure_code: &'static str,
        work: F,
    ) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(Vault) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<T, Error>> + Send,
    {
        let flight = self.flight(&lineage);
        let this = self.clone();
        let task = tokio::spawn(async move {
            let guard = flight.lock_owned().await;
            let result = work(this.clone()).await;
            drop(guard);
            this.release_flight(&lineage);
            result
        });
        task.await
            .map_err(|e| Error::internal(failure_code, format!("a vault task failed: {e}")))?
    }

    /// Under the lineage's lock and lease: re-read the row and its siblings (same owner, session
    /// and token type: an online entry does not keep an offline session alive, nor the other way
    /// round), revoke unless one is left, delete.
    async fn delete_entry(&self, id: &EntryId) -> Result<DeleteOutcome, Error> {
        let store = &self.inner.store;
        let row = store
            .get(&id.to_string())
            .await?
            .ok_or_else(|| entry_not_found(id))?;
        let shared = !self.siblings_of(&row).await?.is_empty();
        let mut outcome = DeleteOutcome {
            revoked_at_idp: false,
            session_revoked: false,
        };
        if !shared {
            match self.seals().open_entry(&row) {
                Ok(opened) => {
                    self.inner
                        .idp
                        .revoke(&opened.secret, "refresh_token")
                        .await?;
                    let idp_session = row
                        .session_id
                        .as_deref()
                        .is_some_and(|s| !s.starts_with(LOCAL_SESSION_PREFIX));
                    outcome = DeleteOutcome {
                        revoked_at_idp: true,
                        session_revoked: idp_session,
                    };
                }
                // A row that cannot be opened holds nothing usable: deleting it is the fix.
                Err(e) => {
                    tracing::warn!(entry = %row.id, error = %e, "deleting an entry that cannot be opened; nothing revoked at the IdP")
                }
            }
        }
        store.delete(&row.id).await?;
        self.inner.minted.invalidate(&row.id);
        tracing::info!(entry = %row.id, revoked = outcome.revoked_at_idp, shared, "vault entry deleted");
        Ok(outcome)
    }

    // ----- introspection, rekey -----

    /// RFC 7662 at the IdP with the vault's client; the answer is cut to the standard members
    /// (`active`, `sub`, `scope`, `exp`, ...).
    pub async fn introspect(
        &self,
        caller: &Caller,
        token: Secret,
    ) -> Result<serde_json::Value, Error> {
        if token.is_empty() {
            return Err(Error::bad_request(
                codes::VAULT_TOKEN_MISSING,
                "no token given",
            ));
        }
        let answer = self.inner.idp.introspect(&token).await?;
        tracing::debug!(caller = %caller.subject, token = %token.fingerprint().short(), active = ?answer.get("active"), "introspected");
        Ok(serde_json::Value::Object(answer))
    }

    /// Re-seals every entry that is not under the active key or not in the current
    /// associated-data layout (v2), page by page, each guarded by its version (a row that changed
    /// meanwhile is read again). Every row is opened, so one that does not open is reported
    /// whatever its key. Also purges expired pending consents.
    pub async fn rekey(&self) -> Result<RekeyReport, Error> {
        let store = &self.inner.store;
        let active = self.seals().keys().active_key_id().to_owned();
        let mut report = RekeyReport::default();
        let mut after: Option<String> = None;
        loop {
            let page = store.list_page(after.as_deref(), PAGE).await?;
            for row in &page {
                let mut row = row.clone();
                let mut attempts = 0;
                loop {
                    let opened = match self.seals().open_entry(&row) {
                        Ok(o) => o,
                        Err(e) => {
                            tracing::warn!(entry = %row.id, error = %e, "rekey: entry cannot be opened; left as it is");
                            report.failed += 1;
                            break;
                        }
                    };
                    if row.sealed.key_id == active && opened.layout == AadLayout::V2 {
                        report.unchanged += 1;
                        break;
                    }
                    let update = TokenUpdate {
                        id: row.id.clone(),
                        expected_version: Some(row.version),
                        sealed: self
                            .seals()
                            .seal_entry(EntryBinding::from(&row), opened.secret.expose())?,
                        expires_at: row.expires_at,
                        used_at: None,
                    };
                    if store.update_tokens(&[update]).await? {
                        report.rewritten += 1;
                        break;
                    }
                    attempts += 1;
                    match store.get(&row.id).await? {
                        Some(current) if attempts < COMMIT_ATTEMPTS => row = current,
                        // Deleted meanwhile: nothing to rekey.
                        None => break,
                        Some(_) => {
                            tracing::warn!(entry = %row.id, "rekey: entry keeps changing; left for the next run");
                            report.failed += 1;
                            break;
                        }
                    }
                }
            }
            match page.last() {
                Some(last) if page.len() == PAGE as usize => after = Some(last.id.clone()),
                _ => break,
            }
        }
        store.pending_purge(self.now()).await?;
        tracing::info!(
            rewritten = report.rewritten,
            unchanged = report.unchanged,
            failed = report.failed,
            active_key = %active,
            "vault rekey done"
        );
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offline_is_what_the_idp_granted() {
        assert_eq!(
            token_type_of(Some("openid offline_access"), ""),
            TokenType::Offline
        );
        assert_eq!(
            token_type_of(Some("openid"), "openid offline_access"),
            TokenType::Refresh
        );
        assert_eq!(
            token_type_of(None, "openid offline_access"),
            TokenType::Offline
        );
        assert_eq!(token_type_of(None, "openid"), TokenType::Refresh);
    }

    #[test]
    fn idp_error_text_is_tamed() {
        assert_eq!(sanitize_error_code("access_denied"), "access_denied");
        assert_eq!(sanitize_error_code("<script>"), "script");
        assert_eq!(sanitize_error_code(""), "unknown_error");
        assert_eq!(sanitize_description("a\nb\u{7}c").as_str(), "abc");
        assert_eq!(sanitize_description(&"x".repeat(500)).len(), 200);
    }

    #[test]
    fn the_id_token_must_echo_the_consent_nonce() {
        assert!(check_id_token_nonce(Some("n-1"), "n-1").is_ok());
        for claimed in [Some("n-2"), Some(""), None] {
            let e = check_id_token_nonce(claimed, "n-1").unwrap_err();
            assert_eq!(e.code(), "idp_id_token_invalid", "{claimed:?}");
            assert_eq!(e.kind(), ErrorKind::IdpRejected);
        }
    }

    #[test]
    fn attribute_limits() {
        let mut a = BTreeMap::new();
        a.insert("job".to_owned(), "nightly".to_owned());
        assert!(check_attributes(&a).is_ok());
        a.insert(String::new(), "x".into());
        assert_eq!(
            check_attributes(&a).unwrap_err().code(),
            "vault_attributes_invalid"
        );
        let big: BTreeMap<_, _> = (0..40).map(|i| (format!("k{i}"), "v".to_owned())).collect();
        assert!(check_attributes(&big).is_err());
    }
}
