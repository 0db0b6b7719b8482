//! What a reader of the feed and the live stream may see of an event.
//!
//! Events are filtered by the reader's key, like every other read:
//!
//! * `key.*` and `webhook.*` events go to `admin` keys only.
//! * Another channel's **commerce** events (`order.*`, `reservation.*`,
//!   `transfer.*`, `inventory.oversold`) go only to keys with a cross-channel
//!   scope (`commerce:all`, implied by `admin`). A commerce event is a
//!   channel's when that channel caused it (`channel_id`) or owns its object
//!   (subject [`OWNER_SUBJECT`]); events the hub made on its own
//!   (neither) and the rest (catalog, locations, availability, carts — which
//!   are shared by the channels serving a customer — customers) go to every
//!   `events:read` key.
//! * **Personal fields** need `customers:read`: without it, the data of
//!   `customer.*`, `identity.*`, `tracking.*`, `consent.*` and
//!   `preferences.*` events is withheld (`{}`; the
//!   subjects stay), and addresses, e-mails, phones, traits, tracking context
//!   and buyer aliases are removed from every other event.
//! * **URLs** lose their credentials, query string and fragment in every event
//!   (`https://user:pass@host/p?token=…` → `https://host/p`), whoever reads.
//!
//! Webhook deliveries are not filtered: subscriptions are made by admins.

use serde_json::Value;

use super::Event;
use super::http::EventBody;
use crate::platform::ids::ChannelId;
use crate::platform::keys::{Principal, Scope};

/// The subject naming the channel that owns a commerce event's object (an
/// order, reservation or transfer); the event's `channel_id` is the channel
/// that acted, which may be another (a store's POS readies a web order).
pub const OWNER_SUBJECT: &str = "owner_channel_id";

/// Event types only admins read.
const ADMIN_FAMILIES: [&str; 2] = ["key.", "webhook."];
/// Event types of one channel's commerce.
const COMMERCE_FAMILIES: [&str; 4] = ["order.", "reservation.", "transfer.", "inventory.oversold"];
/// Event types whose data is about a person.
const PERSONAL_FAMILIES: [&str; 5] = [
    "customer.",
    "identity.",
    "tracking.",
    "consent.",
    "preferences.",
];
/// Payload members that hold personal data, removed at any depth.
const PERSONAL_MEMBERS: [&str; 9] = [
    "address",
    "shipping_address",
    "buyer_alias",
    "email",
    "phone",
    "traits",
    "context",
    "identifiers",
    "ip",
];

/// A reader's rights over events, from its key.
#[derive(Clone, Copy, Debug)]
pub struct Reader {
    channel: ChannelId,
    admin: bool,
    all_channels: bool,
    personal: bool,
}

impl Reader {
    pub fn of(principal: &Principal) -> Reader {
        Reader {
            channel: principal.channel_id,
            admin: principal.scopes.allows(Scope::Admin),
            all_channels: principal.scopes.allows(Scope::CommerceAll),
            personal: principal.scopes.allows(Scope::CustomersRead),
        }
    }

    /// Whether the reader may see `event` at all.
    pub fn sees(&self, event: &Event) -> bool {
        let kind = event.event_type.as_str();
        if ADMIN_FAMILIES.iter().any(|f| kind.starts_with(f)) {
            return self.admin;
        }
        if COMMERCE_FAMILIES.iter().any(|f| kind.starts_with(f)) {
            let owner = event.subjects.get(OWNER_SUBJECT);
            return self.all_channels
                || event.channel_id == Some(self.channel)
                || owner.is_some_and(|o| *o == self.channel.to_string())
                || (event.channel_id.is_none() && owner.is_none());
        }
        true
    }

    /// The event as the reader sees it (`None`: hidden).
    pub fn view(&self, event: &Event) -> Option<EventBody> {
        if !self.sees(event) {
            return None;
        }
        let mut body = EventBody::from(event);
        if !self.personal {
            if PERSONAL_FAMILIES
                .iter()
                .any(|f| event.event_type.starts_with(f))
            {
                body.data = Value::Object(Default::default());
            } else {
                remove_personal(&mut body.data);
            }
        }
        redact_urls(&mut body.data);
        Some(body)
    }
}

fn remove_personal(value: &mut Value) {
    match value {
        Value::Object(members) => {
            members.retain(|name, _| !PERSONAL_MEMBERS.contains(&name.as_str()));
            members.values_mut().for_each(remove_personal);
        }
        Value::Array(items) => items.iter_mut().for_each(remove_personal),
        _ => {}
    }
}

fn redact_urls(value: &mut Value) {
    match value {
        Value::String(text) => {
            if let Some(redacted) = redact_url(text) {
                *text = redacted;
            }
        }
        Value::Object(members) => members.values_mut().for_each(redact_urls),
        Value::Array(items) => items.iter_mut().for_each(redact_urls),
        _ => {}
    }
}

/// `scheme://[user[:pass]@]host/path[?query][#fragment]` → `scheme://host/path`;
/// `None` when `text` is not such a URL or has nothing to hide.
pub fn redact_url(text: &str) -> Option<String> {
    let (scheme, rest) = text.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return None;
    }
    let end_of_authority = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end_of_authority);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    let path = &tail[..tail.find(['?', '#']).unwrap_or(tail.len())];
    let redacted = format!("{scheme}://{host}{path}");
    (redacted != text).then_some(redacted)
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn urls_lose_credentials_queries_and_fragments() {
        assert_eq!(
            redact_url("https://user:pass@hooks.example.com/in?token=abc#x").as_deref(),
            Some("https://hooks.example.com/in")
        );
        assert_eq!(redact_url("https://shop.example.com/p/1"), None);
        assert_eq!(
            redact_url("http://a.example?x=1").as_deref(),
            Some("http://a.example")
        );
        assert_eq!(redact_url("not a url"), None);
    }
}
