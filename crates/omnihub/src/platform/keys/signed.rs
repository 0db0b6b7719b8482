//! Tokens that a key vouches for (stream tokens, login tokens): signed with
//! HMAC-SHA256 under the minting key's stored secret hash, so nothing is
//! stored, every node checks one with one read, and revoking the key
//! revokes its tokens. One place for the signature and for minting's rules.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::store;
use crate::platform::ids::KeyId;
use crate::platform::storage::{Store, StoreError};

fn mac(secret_hash: &str, purpose: &str, payload: &str) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_hash.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    // The purpose keeps a token of one kind from passing as another.
    mac.update(purpose.as_bytes());
    mac.update(b"|");
    mac.update(payload.as_bytes());
    mac
}

/// The base64url signature of `payload` for `purpose`.
pub fn sign(secret_hash: &str, purpose: &str, payload: &str) -> String {
    let bytes = mac(secret_hash, purpose, payload).finalize().into_bytes();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `signature` (base64url) signs `payload` for `purpose`.
pub fn verify(secret_hash: &str, purpose: &str, payload: &str, signature: &str) -> bool {
    let Ok(bytes) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(signature) else {
        return false;
    };
    mac(secret_hash, purpose, payload)
        .verify_slice(&bytes)
        .is_ok()
}

/// The active key `key_id` (its principal and stored hash), to check a
/// token it minted; `None` when the key is unknown or revoked.
pub async fn signer(
    store: &Store,
    key_id: KeyId,
) -> Result<Option<(super::Principal, String)>, StoreError> {
    store::principal_by_id(store.reader(), &key_id.to_string()).await
}

/// Why a token cannot be minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("must be 1 to {0} seconds")]
    Lifetime(i64),
    #[error("the API key is unknown or revoked")]
    KeyGone,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(MintError);

/// What minting a token for `key_id` needs: the key's stored hash and the
/// expiry (unix seconds) of a token living `ttl_secs` (or `default_secs`),
/// at most `max_secs`.
pub async fn minting(
    store: &Store,
    key_id: KeyId,
    ttl_secs: Option<i64>,
    default_secs: i64,
    max_secs: i64,
) -> Result<(String, chrono::DateTime<chrono::Utc>), MintError> {
    let ttl = ttl_secs.unwrap_or(default_secs);
    if !(1..=max_secs).contains(&ttl) {
        return Err(MintError::Lifetime(max_secs));
    }
    let Some((_, secret_hash)) =
        store::principal_by_id(store.reader(), &key_id.to_string()).await?
    else {
        return Err(MintError::KeyGone);
    };
    Ok((
        secret_hash,
        crate::platform::time::now() + chrono::Duration::seconds(ttl),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_key_purpose_and_payload() {
        let sig = sign("hash", "login", "a.b");
        assert!(verify("hash", "login", "a.b", &sig));
        assert!(!verify("other", "login", "a.b", &sig));
        assert!(!verify("hash", "stream", "a.b", &sig));
        assert!(!verify("hash", "login", "a.c", &sig));
        assert!(!verify("hash", "login", "a.b", "not base64!"));
    }
}
