//! The service-account registry (implemented over SQLite/PostgreSQL by `tw-store`) and the cache
//! that keeps it off the hot path.

use futures::future::BoxFuture;
use moka::future::Cache;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use tw_core::Error;

use crate::principal::Principal;

/// How a principal's account is looked up: by issuer + subject, else by issuer + client id.
///
/// The client id is part of the key only for service accounts ([`AccountKey::of`]): an account
/// registered by client id is that client's own (its service account), not every user who signs
/// in through the client. A user's token through a registered client finds only an account of its
/// own subject.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccountKey {
    issuer: String,
    subject: Option<String>,
    client_id: Option<String>,
}

impl AccountKey {
    /// The key of `principal`: its issuer and subject, and its client id only when it is a
    /// service account.
    pub fn of(principal: &Principal) -> Self {
        if principal.is_service_account() {
            Self::service_account(
                &principal.issuer,
                principal.subject.as_deref(),
                principal.client_id.as_deref(),
            )
        } else {
            Self::user(&principal.issuer, principal.subject.as_deref())
        }
    }

    /// A user's key: issuer + subject only.
    pub fn user(issuer: &str, subject: Option<&str>) -> Self {
        Self {
            issuer: issuer.to_owned(),
            subject: present(subject),
            client_id: None,
        }
    }

    /// A service account's key: issuer + subject, else its client id.
    pub fn service_account(issuer: &str, subject: Option<&str>, client_id: Option<&str>) -> Self {
        Self {
            issuer: issuer.to_owned(),
            subject: present(subject),
            client_id: present(client_id),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }

    /// `Some` only for a service account.
    pub fn client_id(&self) -> Option<&str> {
        self.client_id.as_deref()
    }
}

/// An empty identifier identifies nothing.
fn present(v: Option<&str>) -> Option<String> {
    v.filter(|s| !s.is_empty()).map(str::to_owned)
}

/// A registered account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAccount {
    /// The store's id (for the audit log and the CLI).
    pub id: String,
    /// A disabled account is denied (`account_disabled`), whatever its roles.
    pub enabled: bool,
    /// Permission codes granted directly (wildcards allowed).
    pub permissions: Vec<String>,
    /// Roles, resolved through `[gateway.authz.roles]`.
    pub roles: Vec<String>,
}

/// A first-sight registration (auto-provisioning).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionRequest {
    pub key: AccountKey,
    pub username: Option<String>,
    pub service_account: bool,
    /// The configured role to give.
    pub role: String,
}

/// The registry of accounts. `tw-store` implements it over the database; `MemoryRegistry` (with
/// the `testing` feature) is an in-memory one for tests.
pub trait RegistrySource: Send + Sync + 'static {
    /// The account matching `key`: by issuer + subject, else (service accounts: see
    /// [`AccountKey`]) by issuer + client id. `Ok(None)`: unknown.
    fn find<'a>(
        &'a self,
        key: &'a AccountKey,
    ) -> BoxFuture<'a, Result<Option<RegistryAccount>, Error>>;

    /// Registers a new account (auto-provisioning). Must be idempotent for the same key.
    fn provision<'a>(
        &'a self,
        request: &'a ProvisionRequest,
    ) -> BoxFuture<'a, Result<RegistryAccount, Error>>;
}

/// An in-memory registry for tests (the `testing` feature). Accounts are matched by issuer +
/// subject, then by client id.
#[cfg(any(test, feature = "testing"))]
#[derive(Debug, Default)]
pub struct MemoryRegistry {
    accounts: parking_lot::Mutex<Vec<(AccountKey, RegistryAccount)>>,
    provisioned: parking_lot::Mutex<Vec<ProvisionRequest>>,
    lookups: AtomicI64,
    version: parking_lot::Mutex<Option<watch::Sender<i64>>>,
}

#[cfg(any(test, feature = "testing"))]
impl MemoryRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the account of a client id (any issuer; its service account) and bumps
    /// the version.
    pub fn put_client(&self, client_id: &str, account: RegistryAccount) {
        self.put(
            AccountKey::service_account("", None, Some(client_id)),
            account,
        );
    }

    /// Adds or replaces an account and bumps the version (see [`Self::version`]). An empty
    /// `issuer` matches any issuer.
    pub fn put(&self, key: AccountKey, account: RegistryAccount) {
        {
            let mut accounts = self.accounts.lock();
            accounts.retain(|(k, _)| k != &key);
            accounts.push((key, account));
        }
        self.bump();
    }

    fn bump(&self) {
        if let Some(tx) = self.version.lock().as_ref() {
            tx.send_modify(|v| *v += 1);
        }
    }

    /// A receiver of the registry version, bumped on every change.
    pub fn version(&self) -> watch::Receiver<i64> {
        let mut guard = self.version.lock();
        guard.get_or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// How many times [`RegistrySource::find`] ran (cache tests).
    pub fn lookups(&self) -> i64 {
        self.lookups.load(Ordering::Relaxed)
    }

    pub fn provisioned(&self) -> Vec<ProvisionRequest> {
        self.provisioned.lock().clone()
    }

    fn lookup(&self, key: &AccountKey) -> Option<RegistryAccount> {
        let accounts = self.accounts.lock();
        let issuer_ok = |k: &AccountKey| k.issuer.is_empty() || k.issuer == key.issuer;
        accounts
            .iter()
            .find(|(k, _)| issuer_ok(k) && k.subject.is_some() && k.subject == key.subject)
            .or_else(|| {
                accounts.iter().find(|(k, _)| {
                    issuer_ok(k) && k.client_id.is_some() && k.client_id == key.client_id
                })
            })
            .map(|(_, a)| a.clone())
    }
}

#[cfg(any(test, feature = "testing"))]
impl RegistrySource for MemoryRegistry {
    fn find<'a>(
        &'a self,
        key: &'a AccountKey,
    ) -> BoxFuture<'a, Result<Option<RegistryAccount>, Error>> {
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let found = self.lookup(key);
        Box::pin(async move { Ok(found) })
    }

    fn provision<'a>(
        &'a self,
        request: &'a ProvisionRequest,
    ) -> BoxFuture<'a, Result<RegistryAccount, Error>> {
        let account = match self.lookup(&request.key) {
            Some(a) => a,
            None => {
                let n = self.provisioned.lock().len();
                let account = RegistryAccount {
                    id: format!("mem-{}", n + 1),
                    enabled: true,
                    permissions: Vec::new(),
                    roles: vec![request.role.clone()],
                };
                self.provisioned.lock().push(request.clone());
                self.put(request.key.clone(), account.clone());
                account
            }
        };
        Box::pin(async move { Ok(account) })
    }
}

#[derive(Debug, Clone)]
struct Cached {
    version: i64,
    account: Option<RegistryAccount>,
}

/// A cache over a [`RegistrySource`]: answers (found or not) are kept for a short TTL and dropped
/// when the registry version (a `watch` channel, bumped by the store on every change) moves.
/// A hit never waits for the database.
pub struct CachedRegistry {
    source: Arc<dyn RegistrySource>,
    cache: Cache<AccountKey, Cached>,
    version: Option<watch::Receiver<i64>>,
    seen_version: AtomicI64,
}

impl CachedRegistry {
    pub fn new(
        source: Arc<dyn RegistrySource>,
        ttl: Duration,
        max_entries: u64,
        version: Option<watch::Receiver<i64>>,
    ) -> Self {
        let start = version.as_ref().map_or(0, |v| *v.borrow());
        Self {
            source,
            cache: Cache::builder()
                .max_capacity(max_entries)
                .time_to_live(ttl)
                .build(),
            version,
            seen_version: AtomicI64::new(start),
        }
    }

    fn current_version(&self) -> i64 {
        let v = self.version.as_ref().map_or(0, |v| *v.borrow());
        if self.seen_version.swap(v, Ordering::AcqRel) != v {
            self.cache.invalidate_all();
        }
        v
    }

    /// The account for `key` (cached, including "not found"). Concurrent misses for one key
    /// share one registry query; errors are not cached.
    pub async fn find(&self, key: &AccountKey) -> Result<Option<RegistryAccount>, Error> {
        let version = self.current_version();
        if let Some(hit) = self.cache.get(key).await {
            if hit.version == version {
                return Ok(hit.account);
            }
            self.cache.invalidate(key).await;
        }
        let source = &self.source;
        let cached = self
            .cache
            .try_get_with(key.clone(), async move {
                source
                    .find(key)
                    .await
                    .map(|account| Cached { version, account })
            })
            .await
            .map_err(|e| (*e).clone())?;
        Ok(cached.account)
    }

    pub async fn provision(&self, request: &ProvisionRequest) -> Result<RegistryAccount, Error> {
        let account = self.source.provision(request).await?;
        let version = self.current_version();
        self.cache
            .insert(
                request.key.clone(),
                Cached {
                    version,
                    account: Some(account.clone()),
                },
            )
            .await;
        Ok(account)
    }
}

/// Role name → permission codes, from `[gateway.authz.roles]`.
pub type RoleMap = HashMap<String, Vec<String>>;

#[cfg(test)]
mod tests {
    use super::*;

    fn account(perms: &[&str]) -> RegistryAccount {
        RegistryAccount {
            id: "1".into(),
            enabled: true,
            permissions: perms.iter().map(|s| s.to_string()).collect(),
            roles: vec![],
        }
    }

    #[tokio::test]
    async fn cache_hits_and_version_invalidation() {
        let reg = Arc::new(MemoryRegistry::new());
        let version = reg.version();
        reg.put_client("svc", account(&["a:read"]));
        let cached = CachedRegistry::new(reg.clone(), Duration::from_secs(60), 100, Some(version));
        let key = AccountKey::service_account("iss", Some("s1"), Some("svc"));
        let unknown = AccountKey::service_account("iss", Some("s1"), Some("nobody"));
        assert_eq!(
            cached.find(&key).await.expect("find"),
            Some(account(&["a:read"]))
        );
        assert_eq!(
            cached.find(&key).await.expect("find"),
            Some(account(&["a:read"]))
        );
        assert_eq!(cached.find(&unknown).await.expect("find"), None);
        assert_eq!(cached.find(&unknown).await.expect("find"), None);
        assert_eq!(reg.lookups(), 2, "hits, found or not, do not query");
        reg.put_client("svc", account(&["a:read", "a:update"]));
        assert_eq!(
            cached.find(&key).await.expect("find"),
            Some(account(&["a:read", "a:update"])),
            "a version bump drops the cache"
        );
        assert_eq!(reg.lookups(), 3);
    }
}
