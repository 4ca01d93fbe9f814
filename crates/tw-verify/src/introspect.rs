//! RFC 7662 introspection with a per-token cache (positive: `min(cache_ttl, exp - now)`,
//! negative: `negative_cache_ttl`) and single-flight per token.

use crate::error::{Check, VerifyError};
use crate::metrics_names::{METRIC_INTROSPECTION_CACHE, METRIC_INTROSPECTIONS};
use crate::parse::{RegisteredClaims, registered_claims};
use serde_json::{Map, Value};
use std::sync::Arc;
use std::time::Duration;
use tw_core::SecretRef;
use tw_core::{Clock, TokenFingerprint, UnixTime};
use tw_idp::{Call, ClientSecretBasic, DiscoveryCache, IdpHttp, failure_label};
use url::Url;

/// What the IdP said about a token.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    Active {
        claims: Arc<Map<String, Value>>,
        registered: Arc<RegisteredClaims>,
    },
    Inactive,
}

#[derive(Debug, Clone)]
struct Cached {
    answer: Answer,
    valid_until: UnixTime,
    ttl: Duration,
}

struct CachedExpiry;

impl moka::Expiry<TokenFingerprint, Cached> for CachedExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenFingerprint,
        value: &Cached,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

pub(crate) struct Introspector {
    issuer: String,
    configured_url: Option<Url>,
    discovery: Arc<DiscoveryCache>,
    client_id: String,
    secret: SecretRef,
    secret_key: String,
    cache_ttl: Duration,
    negative_ttl: Duration,
    clock: Arc<dyn Clock>,
    http: IdpHttp,
    cache: moka::future::Cache<TokenFingerprint, Cached>,
}

impl std::fmt::Debug for Introspector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Introspector")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Most introspection answers cached per issuer.
pub const INTROSPECTION_CACHE_ENTRIES: u64 = 10_000;

fn unavailable(what: &str) -> VerifyError {
    VerifyError::new(
        Check::IntrospectionUnavailable,
        format!("token introspection is unavailable ({what})"),
    )
    .with_retry_after(Duration::from_secs(1))
}

impl Introspector {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        issuer: String,
        cfg: &crate::IntrospectionConfig,
        secret_key: String,
        discovery: Arc<DiscoveryCache>,
        clock: Arc<dyn Clock>,
        http: IdpHttp,
    ) -> Self {
        Self {
            issuer,
            configured_url: cfg.url.clone(),
            discovery,
            client_id: cfg.client_id.clone(),
            secret: cfg.client_secret.clone(),
            secret_key,
            cache_ttl: cfg.cache_ttl,
            negative_ttl: cfg.negative_cache_ttl,
            clock,
            http,
            cache: moka::future::Cache::builder()
                .max_capacity(INTROSPECTION_CACHE_ENTRIES)
                .expire_after(CachedExpiry)
                .build(),
        }
    }

    /// The IdP's answer for this token, from the cache when still valid by the clock.
    pub(crate) async fn introspect(
        &self,
        token: &str,
        fp: TokenFingerprint,
    ) -> Result<Answer, VerifyError> {
        let now = self.clock.now();
        if let Some(c) = self.cache.get(&fp).await {
            if now < c.valid_until {
                metrics::counter!(METRIC_INTROSPECTION_CACHE, "issuer" => self.issuer.clone(), "result" => "hit")
                    .increment(1);
                return Ok(c.answer);
            }
            self.cache.invalidate(&fp).await;
        }
        metrics::counter!(METRIC_INTROSPECTION_CACHE, "issuer" => self.issuer.clone(), "result" => "miss")
            .increment(1);
        // Single-flight per token: concurrent callers share one request; errors are not cached.
        let entry = self
            .cache
            .try_get_with(fp, self.call(token))
            .await
            .map_err(|e: Arc<VerifyError>| (*e).clone())?;
        Ok(entry.answer)
    }

    async fn url(&self) -> Result<Url, tw_core::Error> {
        if let Some(u) = &self.configured_url {
            return Ok(u.clone());
        }
        let doc = self.discovery.get(self.clock.now()).await?;
        doc.require(
            &doc.introspection_endpoint,
            "introspection_endpoint",
            "introspection",
        )
        .cloned()
    }

    async fn call(&self, token: &str) -> Result<Cached, VerifyError> {
        let secret = self.secret.resolve(&self.secret_key).map_err(|e| {
            tracing::warn!(issuer = %self.issuer, error = %e, "introspection secret unavailable");
            unavailable("client secret unavailable").caused_by(e)
        })?;
        // RFC 7662 with `client_secret_basic`.
        let auth = ClientSecretBasic {
            client_id: self.client_id.clone(),
            secret,
        };
        let result = async {
            let url = self.url().await?;
            let call = Call {
                http: &self.http,
                auth: &auth,
                timeout: None,
                now: self.clock.now(),
            };
            call.introspect(&url, token, Some("access_token")).await
        }
        .await;
        let doc = match result {
            Ok(doc) => doc,
            Err(e) => {
                let label = failure_label(&e);
                metrics::counter!(METRIC_INTROSPECTIONS, "issuer" => self.issuer.clone(), "result" => label)
                    .increment(1);
                tracing::warn!(issuer = %self.issuer, error = %e, "introspection failed");
                return Err(unavailable(label).caused_by(e));
            }
        };
        let now = self.clock.now();
        let (answer, ttl) = match doc.get("active") {
            Some(Value::Bool(true)) => {
                let claims = doc;
                let registered = registered_claims(&claims).map_err(|_| {
                    tracing::warn!(issuer = %self.issuer, "introspection answer has wrongly typed claims");
                    unavailable("garbled")
                })?;
                let ttl = match registered.exp {
                    Some(exp) => self.cache_ttl.min(now.until(exp)),
                    None => self.cache_ttl,
                };
                (
                    Answer::Active {
                        claims: Arc::new(claims),
                        registered: Arc::new(registered),
                    },
                    ttl,
                )
            }
            Some(Value::Bool(false)) => (Answer::Inactive, self.negative_ttl),
            _ => {
                metrics::counter!(METRIC_INTROSPECTIONS, "issuer" => self.issuer.clone(), "result" => "garbled")
                    .increment(1);
                return Err(unavailable("garbled"));
            }
        };
        let label = match answer {
            Answer::Active { .. } => "active",
            Answer::Inactive => "inactive",
        };
        metrics::counter!(METRIC_INTROSPECTIONS, "issuer" => self.issuer.clone(), "result" => label)
            .increment(1);
        Ok(Cached {
            answer,
            valid_until: now.plus(ttl),
            ttl,
        })
    }

    pub(crate) fn cache_ttl(&self) -> Duration {
        self.cache_ttl
    }
}
