//! Stream tokens: short-lived credentials for a browser's `EventSource`,
//! which cannot send an `Authorization` header.
//!
//! A backend holding a key with `events:read` mints one
//! (`POST /v1/stream/tokens`) and hands it to the page, which opens
//! `GET /v1/stream?token=…`. The token grants `events:read` only, on the
//! minting key's channel, until it expires (at most
//! [`STREAM_TOKEN_MAX_TTL_SECS`]); revoking the key invalidates its tokens.
//! Nothing is stored: the token is `ost_<key id>.<expiry>.<signature>`, signed
//! with HMAC-SHA256 under the key's stored secret hash, so every node can
//! check it with one read.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::{Principal, Scope, Scopes, store};
use crate::ids::KeyId;
use crate::storage::{Store, StoreError};

pub const STREAM_TOKEN_PREFIX: &str = "ost_";
/// Lifetime of a token when the request names none.
pub const STREAM_TOKEN_DEFAULT_TTL_SECS: i64 = 300;
/// Longest lifetime a token may have.
pub const STREAM_TOKEN_MAX_TTL_SECS: i64 = 3600;
/// Tokens longer than this are not parsed.
const MAX_TOKEN_CHARS: usize = 200;

/// The MAC of a token's fields, keyed with the key's stored secret hash.
fn mac(secret_hash: &str, key_id: &str, expires_unix: i64) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret_hash.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("omnihub stream token v1|{key_id}|{expires_unix}").as_bytes());
    mac
}

/// A token for `key_id` (whose stored hash is `secret_hash`) valid until
/// `expires_unix` (seconds).
pub fn mint(key_id: KeyId, secret_hash: &str, expires_unix: i64) -> String {
    let key_id = key_id.to_string();
    let sig = mac(secret_hash, &key_id, expires_unix)
        .finalize()
        .into_bytes();
    let sig = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sig);
    format!("{STREAM_TOKEN_PREFIX}{key_id}.{expires_unix}.{sig}")
}

/// The principal a token stands for (scope `events:read` only), or `None`
/// when it is malformed, forged, expired or its key is revoked.
pub async fn verify(
    store: &Store,
    token: &str,
    now_unix: i64,
) -> Result<Option<Principal>, StoreError> {
    if token.len() > MAX_TOKEN_CHARS {
        return Ok(None);
    }
    let Some(rest) = token.strip_prefix(STREAM_TOKEN_PREFIX) else {
        return Ok(None);
    };
    let mut parts = rest.split('.');
    let (Some(key_id), Some(expires), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Ok(None);
    };
    let (Ok(key_id), Ok(expires_unix)) = (key_id.parse::<KeyId>(), expires.parse::<i64>()) else {
        return Ok(None);
    };
    let Ok(sig) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig) else {
        return Ok(None);
    };
    if expires_unix < now_unix {
        return Ok(None);
    }
    let Some((principal, secret_hash)) =
        store::principal_by_id(store.reader(), &key_id.to_string()).await?
    else {
        return Ok(None);
    };
    let genuine = mac(&secret_hash, &key_id.to_string(), expires_unix)
        .verify_slice(&sig)
        .is_ok();
    if !genuine || !principal.scopes.allows(Scope::EventsRead) {
        return Ok(None);
    }
    let scopes = Scopes::parse([Scope::EventsRead.as_str()])
        .unwrap_or_else(|_| unreachable!("events:read is a scope"));
    Ok(Some(Principal {
        scopes,
        ..principal
    }))
}
