//! API keys: random, high-entropy secrets shown once, stored only as a
//! SHA-256 hash, each belonging to one channel and carrying scopes.

pub mod cache;
pub mod events;
pub mod http;
pub mod login_token;
pub mod reach;
pub mod signed;
mod store;
// Key listings for the CLI and the live stream's revocation check.
pub use store::{count_active, get, list};
pub mod stream_token;

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use rand::distributions::Alphanumeric;
use sha2::{Digest, Sha256};

use crate::platform::channels::ChannelKind;
use crate::platform::ids::{ChannelId, KeyId};
use crate::platform::storage::StoreError;
use crate::platform::time::Timestamp;

macro_rules! scopes {
    ($($variant:ident => $name:literal,)*) => {
        /// What a key may do. `admin` implies every other scope.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Scope { $($variant,)* }

        impl Scope {
            pub const ALL: &'static [Scope] = &[$(Scope::$variant,)*];
            pub fn as_str(self) -> &'static str {
                match self { $(Scope::$variant => $name,)* }
            }
        }
    };
}

scopes! {
    Admin => "admin",
    EventsRead => "events:read",
    EventsWrite => "events:write",
    CustomersRead => "customers:read",
    CustomersWrite => "customers:write",
    CatalogRead => "catalog:read",
    CatalogWrite => "catalog:write",
    InventoryRead => "inventory:read",
    InventoryWrite => "inventory:write",
    CartsRead => "carts:read",
    CartsWrite => "carts:write",
    OrdersRead => "orders:read",
    OrdersWrite => "orders:write",
    CommerceAll => "commerce:all",
    PrivacyRead => "privacy:read",
    PrivacyWrite => "privacy:write",
    ConsentRead => "consent:read",
    ConsentWrite => "consent:write",
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::ALL
            .iter()
            .copied()
            .find(|scope| scope.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Scope::ALL.iter().map(|scope| scope.as_str()).collect();
                format!("unknown scope {s:?}; valid scopes: {}", names.join(", "))
            })
    }
}

/// A set of scopes, stored as a space-separated list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parses scope names; rejects unknown names and an empty set.
    pub fn parse<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut scopes = Vec::new();
        for name in names {
            let scope: Scope = name.trim().parse()?;
            if !scopes.contains(&scope) {
                scopes.push(scope);
            }
        }
        if scopes.is_empty() {
            return Err("at least one scope is required".into());
        }
        scopes.sort();
        Ok(Self(scopes))
    }

    pub fn allows(&self, scope: Scope) -> bool {
        self.0.contains(&Scope::Admin) || self.0.contains(&scope)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.0.iter().map(|s| s.as_str()).collect()
    }

    pub fn to_storage(&self) -> String {
        self.names().join(" ")
    }

    pub fn from_storage(stored: &str) -> Result<Self, String> {
        Self::parse(stored.split_whitespace())
    }
}

/// An API key as stored (never the secret itself).
#[derive(Clone, Debug)]
pub struct ApiKey {
    pub id: KeyId,
    pub channel_id: ChannelId,
    pub name: String,
    /// The first characters of the secret, to recognise it in listings.
    pub prefix: String,
    pub scopes: Scopes,
    pub created_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

/// Who is calling: resolved from the key on every request.
#[derive(Clone, Debug)]
pub struct Principal {
    pub key_id: KeyId,
    pub channel_id: ChannelId,
    pub channel_kind: ChannelKind,
    pub scopes: Scopes,
}

/// Secrets look like `ohk_` followed by 43 base62 characters (256 bits).
pub const SECRET_PREFIX: &str = "ohk_";
const SECRET_RANDOM_CHARS: usize = 43;
/// Characters of the secret kept in clear as the key's recognisable prefix.
const DISPLAY_PREFIX_CHARS: usize = 12;

/// A freshly generated secret and its hash.
pub struct NewSecret {
    pub secret: String,
    pub hash: String,
    pub prefix: String,
}

pub fn generate_secret() -> NewSecret {
    let random: String = rand::thread_rng()
        .sample_iter(&Alphanumeric)
        .take(SECRET_RANDOM_CHARS)
        .map(char::from)
        .collect();
    let secret = format!("{SECRET_PREFIX}{random}");
    NewSecret {
        hash: hash_secret(&secret),
        prefix: secret[..DISPLAY_PREFIX_CHARS].to_string(),
        secret,
    }
}

/// True when `secret` has the form of a key the hub issues (`ohk_` and 43
/// letters or digits), so anything else is refused without a lookup.
pub fn is_well_formed(secret: &str) -> bool {
    secret.len() == SECRET_PREFIX.len() + SECRET_RANDOM_CHARS
        && secret.starts_with(SECRET_PREFIX)
        && secret[SECRET_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

/// The stored form of a secret. A plain SHA-256 is enough: the secret has 256
/// bits of entropy, so there is nothing to brute-force.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("channel {0} does not exist")]
    ChannelNotFound(String),
    #[error("key not found")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

crate::platform::storage::impl_op_error!(KeyError);

/// Creates a key for `channel_id`; returns the stored key and the secret,
/// which is never available again.
pub async fn create(
    store: &crate::platform::storage::Store,
    channel_id: ChannelId,
    name: String,
    scopes: Scopes,
    by_channel: Option<ChannelId>,
) -> Result<(ApiKey, String), KeyError> {
    store
        .write(move |tx| {
            let (name, scopes) = (name.clone(), scopes.clone());
            Box::pin(async move {
                let channel_str = channel_id.to_string();
                if crate::platform::channels::get(tx.conn(), &channel_str)
                    .await?
                    .is_none()
                {
                    return Err(KeyError::ChannelNotFound(channel_str));
                }
                let secret = generate_secret();
                let key = ApiKey {
                    id: KeyId::new(),
                    channel_id,
                    name,
                    prefix: secret.prefix.clone(),
                    scopes,
                    created_at: tx.now(),
                    revoked_at: None,
                };
                store::insert(tx.conn(), &key, &secret.hash).await?;
                tx.emit(
                    crate::platform::events::NewEvent::of(
                        &events::KeyEvent::Created(events::KeyCreated {
                            id: key.id,
                            channel_id: key.channel_id,
                            name: key.name.clone(),
                            prefix: key.prefix.clone(),
                            scopes: key.scopes.names(),
                        }),
                        key.created_at,
                    )
                    .channel(by_channel)
                    .subject("key_id", key.id)
                    .subject("channel_id", key.channel_id),
                );
                Ok((key, secret.secret))
            })
        })
        .await
}

/// Revokes a key (idempotent: revoking a revoked key returns it unchanged).
pub async fn revoke(
    store: &crate::platform::storage::Store,
    key_id: KeyId,
    by_channel: Option<ChannelId>,
) -> Result<ApiKey, KeyError> {
    store
        .write(move |tx| {
            Box::pin(async move {
                let Some(mut key) = store::get(tx.conn(), &key_id.to_string()).await? else {
                    return Err(KeyError::NotFound);
                };
                if key.revoked_at.is_some() {
                    return Ok(key);
                }
                let now = tx.now();
                store::revoke(tx.conn(), &key_id.to_string(), now).await?;
                key.revoked_at = Some(now);
                tx.emit(
                    crate::platform::events::NewEvent::of(
                        &events::KeyEvent::Revoked(events::KeyRevoked {
                            id: key.id,
                            channel_id: key.channel_id,
                        }),
                        now,
                    )
                    .channel(by_channel)
                    .subject("key_id", key.id)
                    .subject("channel_id", key.channel_id),
                );
                Ok(key)
            })
        })
        .await
}
