//! Typed event types: every event the hub emits is a variant of an event
//! enum that its domain declares with [`event_types!`] (in the domain's
//! `events.rs`): the variant names the type (`"cart.created"`, once, in the
//! declaration), its payload version and the Rust type of its payload, whose
//! `Serialize` is the payload on the wire and whose `ToSchema` is its
//! published JSON Schema. Operations emit `NewEvent::of(&event, at)`; no
//! payload is built from `json!`, and a misspelt type does not compile.
//!
//! The platform knows no domain: the catalog of every type (served at
//! `GET /v1/events/types`, committed as `docs/asyncapi.json`) is assembled by
//! the composition root (`crate::app::event_catalog`).
//!
//! Versioning: a payload change that a consumer could trip over (a member
//! removed, renamed or retyped, a new required member) is a new version of
//! the type (bump the variant's version); adding an optional member is not.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

/// An event of a declared type, ready to be emitted (`NewEvent::of`).
/// Implemented by the enums [`event_types!`] declares.
pub trait DomainEvent {
    /// The dotted type, e.g. `cart.created`.
    fn event_type(&self) -> &'static str;
    /// The version of this type's payload schema.
    fn schema_version(&self) -> i64;
    /// The payload, as stored and delivered.
    fn payload(&self) -> Value;
}

/// What the catalog says about one event type.
#[derive(Clone)]
pub struct EventTypeInfo {
    pub event_type: &'static str,
    pub version: i64,
    /// The domain that emits it (`orders`, `identity`, …).
    pub domain: &'static str,
    pub description: String,
    /// The payload's Rust type name (`CartSnapshot`): types that share a
    /// payload type share its schema.
    pub payload_name: String,
    /// The payload's schema, which may refer to `components`.
    pub schema: RefOr<Schema>,
    /// The named schemas `schema` refers to (`#/components/schemas/Name`).
    pub components: Vec<(String, RefOr<Schema>)>,
}

/// Where the payload schemas refer to their named parts.
pub const COMPONENT_PREFIX: &str = "#/components/schemas/";

impl EventTypeInfo {
    /// The payload's schema as a standalone JSON Schema (2020-12): the named
    /// parts it refers to are carried in `$defs`.
    pub fn json_schema(&self) -> Value {
        let mut schema = serde_json::to_value(&self.schema).unwrap_or(Value::Null);
        if let Value::Object(members) = &mut schema {
            members.insert(
                "$schema".into(),
                Value::from("https://json-schema.org/draft/2020-12/schema"),
            );
            let defs: serde_json::Map<String, Value> = self
                .components
                .iter()
                .map(|(name, part)| {
                    (
                        name.clone(),
                        serde_json::to_value(part).unwrap_or(Value::Null),
                    )
                })
                .collect::<BTreeMap<_, _>>()
                .into_iter()
                .collect();
            if !defs.is_empty() {
                members.insert("$defs".into(), Value::Object(defs));
            }
        }
        point_refs_at_defs(&mut schema);
        schema
    }
}

/// `#/components/schemas/X` → `#/$defs/X`, at any depth.
fn point_refs_at_defs(value: &mut Value) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                match member {
                    Value::String(target) if name == "$ref" => {
                        if let Some(part) = target.strip_prefix(COMPONENT_PREFIX) {
                            *target = format!("#/$defs/{part}");
                        }
                    }
                    _ => point_refs_at_defs(member),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(point_refs_at_defs),
        _ => {}
    }
}

/// The payload of an event: its `Serialize` form. A payload type that does
/// not serialize to JSON (a map with non-string keys) is a bug caught by the
/// catalog tests; it would be stored as `null`.
pub fn to_payload<T: Serialize>(payload: &T) -> Value {
    serde_json::to_value(payload).unwrap_or_else(|error| {
        debug_assert!(false, "event payload does not serialize: {error}");
        Value::Null
    })
}

/// A variant's doc comment as one line of text.
pub fn describe(doc: &[&str]) -> String {
    doc.iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Declares a domain's event types: one enum variant per type, with the
/// type's name and version and the payload's Rust type, and implements
/// [`DomainEvent`] and `catalog()` for it.
///
/// ```ignore
/// event_types! {
///     /// What happens to carts.
///     pub enum CartEvent in "carts" {
///         /// A cart was opened.
///         Created(CartSnapshot) = ("cart.created", 1),
///     }
/// }
/// tx.emit(NewEvent::of(&CartEvent::Created(snapshot), now));
/// ```
///
/// The enum may take one lifetime (`enum TrackingEvent<'a>`) for payloads
/// that borrow what they carry. Each variant's doc comment is its
/// description in the catalog.
macro_rules! event_types {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident $(<$lt:lifetime>)? in $domain:literal {
            $(
                $(#[doc = $doc:literal])*
                $variant:ident($payload:ty) = ($event_type:literal, $version:literal)
            ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        $vis enum $name $(<$lt>)? {
            $( $(#[doc = $doc])* $variant($payload), )+
        }

        impl $(<$lt>)? $crate::platform::events::DomainEvent for $name $(<$lt>)? {
            fn event_type(&self) -> &'static str {
                match self { $( Self::$variant(_) => $event_type, )+ }
            }

            fn schema_version(&self) -> i64 {
                match self { $( Self::$variant(_) => $version, )+ }
            }

            fn payload(&self) -> ::serde_json::Value {
                match self {
                    $( Self::$variant(payload) => $crate::platform::events::types::to_payload(payload), )+
                }
            }
        }

        impl $(<$lt>)? $name $(<$lt>)? {
            /// Every event type of this enum, for the catalog.
            pub fn catalog() -> Vec<$crate::platform::events::EventTypeInfo> {
                vec![$(
                    $crate::platform::events::EventTypeInfo {
                        event_type: $event_type,
                        version: $version,
                        domain: $domain,
                        description: $crate::platform::events::types::describe(&[$($doc),*]),
                        payload_name: <$payload as ::utoipa::ToSchema>::name().into_owned(),
                        schema: <$payload as ::utoipa::PartialSchema>::schema(),
                        components: {
                            let mut parts = Vec::new();
                            <$payload as ::utoipa::ToSchema>::schemas(&mut parts);
                            parts
                        },
                    },
                )+]
            }
        }
    };
}
pub(crate) use event_types;
