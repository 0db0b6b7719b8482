//! Typed identifiers. Every id is a UUIDv7 (time ordered), stored as text.

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

/// Declares a UUIDv7 newtype with parsing, display and (de)serialization as a
/// plain UUID string.
macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
        #[serde(transparent)]
        #[schema(value_type = String, format = Uuid)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A fresh time-ordered id.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.as_hyphenated().fmt(f)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// A sales or service channel (a web store, an app, a POS, …).
    ChannelId
);
id_type!(
    /// An API key.
    KeyId
);
id_type!(
    /// A domain event.
    EventId
);
id_type!(
    /// A webhook subscription.
    WebhookId
);
id_type!(
    /// One delivery of one event to one webhook subscription.
    DeliveryId
);
id_type!(
    /// A physical or virtual stock location (warehouse, store, drop-shipper).
    LocationId
);
id_type!(
    /// A unified customer profile.
    CustomerId
);
id_type!(
    /// One normalized identifier (email, phone, user id, device id, …).
    IdentifierId
);
id_type!(
    /// One link of the identity ledger.
    LinkId
);
id_type!(
    /// One merge of two customer profiles.
    MergeId
);
id_type!(
    /// One accepted tracking call (identify, track, page, …) on the timeline.
    TrackingEventId
);
id_type!(
    /// A product (a group of variants).
    ProductId
);
id_type!(
    /// A variant: the sellable unit with a SKU.
    VariantId
);
id_type!(
    /// A stock reservation.
    ReservationId
);
id_type!(
    /// A stock transfer between two locations.
    TransferId
);
id_type!(
    /// A ledger movement.
    MovementId
);
id_type!(
    /// An inventory incident (e.g. an oversold offline sale).
    IncidentId
);
id_type!(
    /// A cart (one active per owner and currency, shared by every channel).
    CartId
);
id_type!(
    /// A line of a cart.
    CartLineId
);
id_type!(
    /// An order (from a checkout, a POS sale or a marketplace import).
    OrderId
);
id_type!(
    /// A privacy request (access export or erasure).
    PrivacyRequestId
);
