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

use super::{Principal, Scope, Scopes, signed, store};
use crate::platform::ids::KeyId;
use crate::platform::storage::{Store, StoreError};

pub const STREAM_TOKEN_PREFIX: &str = "ost_";
/// Lifetime of a token when the request names none.
pub const STREAM_TOKEN_DEFAULT_TTL_SECS: i64 = 300;
/// Longest lifetime a token may have.
pub const STREAM_TOKEN_MAX_TTL_SECS: i64 = 3600;
/// Tokens longer than this are not parsed.
const MAX_TOKEN_CHARS: usize = 200;

const PURPOSE: &str = "omnihub stream token v1";

/// A token for `key_id` (whose stored hash is `secret_hash`) valid until
/// `expires_unix` (seconds).
pub fn mint(key_id: KeyId, secret_hash: &str, expires_unix: i64) -> String {
    let payload = format!("{key_id}.{expires_unix}");
    let sig = signed::sign(secret_hash, PURPOSE, &payload);
    format!("{STREAM_TOKEN_PREFIX}{payload}.{sig}")
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
    let Some((payload, sig)) = rest.rsplit_once('.') else {
        return Ok(None);
    };
    let Some((key_id, expires)) = payload.split_once('.') else {
        return Ok(None);
    };
    let (Ok(key_id), Ok(expires_unix)) = (key_id.parse::<KeyId>(), expires.parse::<i64>()) else {
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
    let genuine = signed::verify(&secret_hash, PURPOSE, payload, sig);
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
