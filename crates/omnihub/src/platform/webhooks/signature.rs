//! Standard Webhooks signatures: `webhook-signature: v1,<base64 HMAC-SHA256>`
//! over `"{webhook-id}.{webhook-timestamp}.{body}"`, keyed with the base64
//! part of a `whsec_…` secret.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const SECRET_PREFIX: &str = "whsec_";

/// The key bytes of a secret: base64 after `whsec_`, or the raw text of a
/// secret in another form.
pub fn key_bytes(secret: &str) -> Vec<u8> {
    match secret.strip_prefix(SECRET_PREFIX) {
        Some(encoded) => STANDARD
            .decode(encoded)
            .unwrap_or_else(|_| encoded.as_bytes().to_vec()),
        None => secret.as_bytes().to_vec(),
    }
}

/// The `webhook-signature` header value for one message.
pub fn sign(secret: &str, message_id: &str, timestamp_secs: i64, body: &[u8]) -> String {
    let key = key_bytes(secret);
    // HMAC accepts keys of any length; this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(&key) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(message_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}
