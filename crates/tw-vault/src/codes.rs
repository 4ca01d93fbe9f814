//! The vault's own codes for what its IdP answers (the IdP's classified refusals keep
//! `tw_idp::codes`). Compare with these, never with literals.

/// The id_token failed verification, or does not carry the consent's nonce.
pub const IDP_ID_TOKEN_INVALID: &str = "idp_id_token_invalid";
/// The IdP sent no id_token and its introspection does not vouch for the subject.
pub const IDP_TOKEN_UNVERIFIABLE: &str = "idp_token_unverifiable";
/// The IdP issued no refresh token.
pub const IDP_NO_REFRESH_TOKEN: &str = "idp_no_refresh_token";
/// The IdP's discovery document could not be turned into the id_token verifier's settings.
pub const VAULT_IDP_SETUP: &str = "vault_idp_setup";
