//! The client side of tokenwarden: obtain service-account tokens and keep them fresh.
//!
//! A [`Broker`] holds one [`Profile`] per configured token profile. Each profile:
//! - fetches through a [`source::TokenSource`] (OAuth2 token endpoint or a custom login endpoint);
//! - caches the token with three states (fresh / stale / expired, see [`timing`]): a stale token is
//!   served while exactly one background refresh runs; an expired token is never handed out;
//! - runs at most one fetch at a time (single-flight) and shares its result with every waiter;
//! - backs off exponentially on transient IdP failures, honours `Retry-After`, and never retries
//!   permanent rejections (invalid_client, invalid_grant, ...) in a loop.
//!
//! Every call to the IdP goes through `tw_idp` (client, discovery, client authentication,
//! classification); this crate decides when to call. Time comes from a [`tw_core::Clock`];
//! nothing here knows the HTTP server side.

mod broker;
mod metrics_names;
mod profile;
mod settings;
pub mod source;
pub mod timing;

pub use broker::Broker;
pub use metrics_names::*;
pub use profile::{
    FORCED_REFRESH_COALESCE, Freshness, IssuedToken, Profile, ProfileStatus, Served, TokenRequest,
};
pub use settings::{CustomLoginConfig, GrantType, ProfileConfig, TimingConfig};
