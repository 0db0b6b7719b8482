//! Login tokens: how a retailer's backend vouches for a login that a
//! browser or app SDK then reports with its public key.
//!
//! A public key's `identify` is only a claim (anybody can read that key from
//! the page). After the person signs in, the shop's backend — holding a
//! trusted key — mints a token for that user (`POST /v1/identity/tokens`) and
//! hands it to the page; the SDK forwards it as `context.identityToken` on its
//! `identify`. The hub then treats that one call as a login asserted by the
//! minting key: its links are verified and join the device to the person.
//!
//! Nothing is stored: the token is
//! `oit_<key id>.<expiry>.<base64url(claims)>.<signature>`, signed with
//! HMAC-SHA256 under the minting key's stored secret hash (as stream tokens
//! are), so revoking the key revokes its tokens and every node checks one
//! with one read. The claims bind the token to one `userId` (and the email
//! and phone the backend knows for it).

use base64::Engine;
use serde_json::{Map, Value, json};

use super::{Principal, Scope, signed, store};
use crate::platform::ids::KeyId;
use crate::platform::storage::{Store, StoreError};

pub const LOGIN_TOKEN_PREFIX: &str = "oit_";
/// Lifetime of a token when the request names none.
pub const LOGIN_TOKEN_DEFAULT_TTL_SECS: i64 = 300;
/// Longest lifetime a token may have.
pub const LOGIN_TOKEN_MAX_TTL_SECS: i64 = 3600;
/// Tokens longer than this are not parsed.
const MAX_TOKEN_CHARS: usize = 2048;

/// Who the backend says signed in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginClaims {
    /// The person's `userId`, normalized as the identity rules do.
    pub user_id: String,
    /// Normalized email and phone the backend knows for the person.
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// A token that checked out: the claims and the key that minted it.
#[derive(Clone, Debug)]
pub struct VouchedLogin {
    pub claims: LoginClaims,
    pub minted_by: Principal,
}

const PURPOSE: &str = "omnihub login token v1";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// A token for `claims`, minted by `key_id` (stored hash `secret_hash`),
/// valid until `expires_unix` (seconds).
pub fn mint(key_id: KeyId, secret_hash: &str, expires_unix: i64, claims: &LoginClaims) -> String {
    let mut object = Map::new();
    object.insert("user_id".into(), json!(claims.user_id));
    if let Some(email) = &claims.email {
        object.insert("email".into(), json!(email));
    }
    if let Some(phone) = &claims.phone {
        object.insert("phone".into(), json!(phone));
    }
    let encoded = b64().encode(Value::Object(object).to_string());
    let payload = format!("{key_id}.{expires_unix}.{encoded}");
    let sig = signed::sign(secret_hash, PURPOSE, &payload);
    format!("{LOGIN_TOKEN_PREFIX}{payload}.{sig}")
}

/// Why a token was not accepted (told to the caller).
pub const INVALID: &str =
    "context.identityToken is not valid: malformed, forged, expired, or its key was revoked";

/// The login a token vouches for, or `Err(INVALID)`.
pub async fn verify(
    store: &Store,
    token: &str,
    now_unix: i64,
) -> Result<Result<VouchedLogin, &'static str>, StoreError> {
    let Some(parsed) = parse(token) else {
        return Ok(Err(INVALID));
    };
    if parsed.expires_unix < now_unix {
        return Ok(Err(INVALID));
    }
    let Some((principal, secret_hash)) =
        store::principal_by_id(store.reader(), &parsed.key_id.to_string()).await?
    else {
        return Ok(Err(INVALID));
    };
    let genuine = signed::verify(&secret_hash, PURPOSE, parsed.payload, parsed.sig);
    if !genuine || !principal.scopes.allows(Scope::CustomersWrite) {
        return Ok(Err(INVALID));
    }
    Ok(Ok(VouchedLogin {
        claims: parsed.claims,
        minted_by: principal,
    }))
}

struct Parsed<'t> {
    key_id: KeyId,
    expires_unix: i64,
    claims: LoginClaims,
    payload: &'t str,
    sig: &'t str,
}

fn parse(token: &str) -> Option<Parsed<'_>> {
    if token.len() > MAX_TOKEN_CHARS {
        return None;
    }
    let rest = token.strip_prefix(LOGIN_TOKEN_PREFIX)?;
    let (payload, sig) = rest.rsplit_once('.')?;
    let mut parts = payload.split('.');
    let (Some(key_id), Some(expires), Some(claims), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let claims: Value = serde_json::from_slice(&b64().decode(claims).ok()?).ok()?;
    let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
    Some(Parsed {
        key_id: key_id.parse().ok()?,
        expires_unix: expires.parse().ok()?,
        claims: LoginClaims {
            user_id: text("user_id")?,
            email: text("email"),
            phone: text("phone"),
        },
        payload,
        sig,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_parse_back_and_tampering_breaks_them() {
        let key = KeyId::new();
        let claims = LoginClaims {
            user_id: "ana".into(),
            email: Some("ana@example.com".into()),
            phone: None,
        };
        let token = mint(key, "hash", 99, &claims);
        let parsed = parse(&token).expect("parses");
        assert_eq!(parsed.claims, claims);
        assert_eq!(parsed.expires_unix, 99);
        assert!(signed::verify("hash", PURPOSE, parsed.payload, parsed.sig));
        assert!(!signed::verify(
            "other",
            PURPOSE,
            parsed.payload,
            parsed.sig
        ));
        let forged = token.replace(".99.", ".100.");
        let parsed = parse(&forged).expect("parses");
        assert!(!signed::verify("hash", PURPOSE, parsed.payload, parsed.sig));
        assert!(parse("oit_nonsense").is_none());
    }
}
