//! Schema-only types of the OpenAPI document: the closed sets of values some
//! string fields take (channel kinds, scopes, movement reasons, …), so the
//! document lists them as enums and generated clients get real types. The
//! fields stay `String` in the request types (each domain parses them with
//! its own error message); `#[schema(value_type = …)]` points at these. A
//! test (`contract::document_enums_match_the_domain`) checks each list
//! against the domain's own.

use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};

/// Writes the schema-only enums: `Name "description": [Variant = "value", …];`.
macro_rules! enums {
    ($($name:ident $description:literal: [$($variant:ident = $value:literal),* $(,)?];)*) => {$(
        #[doc = $description]
        pub enum $name {
            $($variant,)*
        }

        impl $name {
            /// The values, in the document's order.
            pub const VALUES: &'static [&'static str] = &[$($value),*];
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .description(Some($description))
                    .enum_values(Some(Self::VALUES.iter().copied()))
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    )*};
}

enums! {
    ChannelKindName "What kind of channel this is.": [Web = "web", App = "app", Pos = "pos", Social = "social",
        Marketplace = "marketplace", B2bPortal = "b2b_portal", Backoffice = "backoffice"];
    LocationKindName "What kind of stock location this is.": [Warehouse = "warehouse", Store = "store", Dropshipper = "dropshipper",
        MarketplaceBuffer = "marketplace_buffer"];
    ScopeName "A scope of an API key; `admin` implies every other.": [Admin = "admin", EventsRead = "events:read", EventsWrite = "events:write",
        CustomersRead = "customers:read", CustomersWrite = "customers:write",
        CatalogRead = "catalog:read", CatalogWrite = "catalog:write",
        InventoryRead = "inventory:read", InventoryWrite = "inventory:write",
        CartsRead = "carts:read", CartsWrite = "carts:write",
        OrdersRead = "orders:read", OrdersWrite = "orders:write", CommerceAll = "commerce:all",
        PrivacyRead = "privacy:read", PrivacyWrite = "privacy:write",
        ConsentRead = "consent:read", ConsentWrite = "consent:write"];
    MovementReasonName "Why stock moved.": [Receipt = "receipt", Sale = "sale", Adjustment = "adjustment",
        Count = "count", Damage = "damage", SafetyStock = "safety_stock", Expected = "expected",
        ReturnRestock = "return_restock"];
    FulfilmentTypeName "How an order reaches the customer.": [Ship = "ship", Pickup = "pickup", Sourced = "sourced"];
    SourcingDeliveryTypeName "Where a sourcing plan delivers.": [Ship = "ship", Pickup = "pickup"];
    CartMergePolicyName "What happens to a guest cart when the guest logs in.": [Merge = "merge", KeepLatest = "keep_latest",
        KeepRegistered = "keep_registered"];
    DeliveryStatusName "A webhook delivery's state.": [Succeeded = "succeeded", Retrying = "retrying", Failed = "failed"];
    WebhookStatusName "A webhook subscription's state.": [Active = "active", Disabled = "disabled"];
    OrderStatusName "Where an order is in its life.": [Placed = "placed", Allocated = "allocated",
        ReadyForPickup = "ready_for_pickup", PickedUp = "picked_up",
        PartiallyShipped = "partially_shipped", Shipped = "shipped", Delivered = "delivered",
        Completed = "completed", Cancelled = "cancelled"];
}

/// An event-type pattern: an exact type (`cart.updated`), a prefix
/// (`cart.*`) or `*` (`events::TypeFilter`).
pub struct EventTypePattern;

/// The pattern of [`EventTypePattern`].
pub const EVENT_TYPE_PATTERN: &str = r"^\s*(\*|[a-z0-9_.]*\.\*|[a-z0-9_.]+)\s*$";

impl utoipa::PartialSchema for EventTypePattern {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "An event type (`cart.updated`), a prefix (`cart.*`) or `*`.",
            ))
            .pattern(Some(EVENT_TYPE_PATTERN))
            .into()
    }
}

impl utoipa::ToSchema for EventTypePattern {}

/// An ISO 8601 time as the tracking API reads it (RFC 3339; without an
/// offset, UTC; a space instead of `T` only without an offset). The hub
/// accepts the years 1970–9999 in UTC; the pattern states 1971–9998, which
/// no offset takes out of that range.
pub const TIME_PATTERN: &str = r"^[ \t\n\r]*(197[1-9]|19[89][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])(T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])?| ([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?)[ \t\n\r]*$";
