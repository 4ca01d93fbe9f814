//! What a load produced: counts per realm and every part of the exports that is not supported.

use serde::Serialize;
use std::fmt;

/// The result of loading (or reloading) the realm exports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LoadReport {
    pub realms: Vec<RealmSummary>,
}

/// One realm as loaded.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RealmSummary {
    pub realm: String,
    /// The file (or source name) it came from.
    pub source: String,
    /// `{base_url}/realms/{realm}`.
    pub issuer: String,
    pub enabled: bool,
    pub clients: usize,
    pub service_accounts: usize,
    pub realm_roles: usize,
    pub client_roles: usize,
    pub groups: usize,
    pub client_scopes: usize,
    pub unsupported: Vec<Unsupported>,
}

/// A part of an export the dev issuer does not implement, and what happens instead.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Unsupported {
    pub realm: String,
    /// JSON path in the export, e.g. `$.clients[2].protocolMappers[0]`.
    pub path: String,
    pub what: String,
    pub instead: String,
}

impl LoadReport {
    /// Every unsupported part of every realm.
    pub fn unsupported(&self) -> impl Iterator<Item = &Unsupported> {
        self.realms.iter().flat_map(|r| r.unsupported.iter())
    }

    pub fn realm(&self, name: &str) -> Option<&RealmSummary> {
        self.realms.iter().find(|r| r.realm == name)
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.realms {
            writeln!(
                f,
                "realm \"{}\" from {}{}: {} client(s), {} service account(s), {} realm role(s), {} client role(s), {} group(s), {} client scope(s)",
                r.realm,
                r.source,
                if r.enabled { "" } else { " (disabled)" },
                r.clients,
                r.service_accounts,
                r.realm_roles,
                r.client_roles,
                r.groups,
                r.client_scopes,
            )?;
            if r.unsupported.is_empty() {
                writeln!(f, "  everything in it is supported")?;
            } else {
                writeln!(
                    f,
                    "  {} part(s) not supported (what happens instead):",
                    r.unsupported.len()
                )?;
                for u in &r.unsupported {
                    writeln!(f, "  - {} at {}: {}", u.what, u.path, u.instead)?;
                }
            }
        }
        Ok(())
    }
}
