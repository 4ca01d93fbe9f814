-- tokenwarden token vault: pending consents are capped per owner (vault.limits.max_pending_consents),
-- so they are counted by owner at every new consent.
CREATE INDEX vault_pending_consents_owner ON vault_pending_consents (owner_issuer, owner_subject, expires_at);
