//! Identity resolution rules: which identifier types exist, how they link,
//! which values are blocked, and the limits that keep two people apart.
//!
//! The rules are one document stored in `identity_rules` and edited through
//! `GET`/`PUT /v1/identity/rules` (admin). Absent a stored document the
//! [`IdentityRules::default`] rules apply. The document format is
//! [`RulesDocument`], a configuration type (like `config::FileSettings`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::platform::channels::ChannelKind;

/// How an identifier type behaves in resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdentifierClass {
    /// A login identity (`user_id`): a registered account. At most one per
    /// profile by default; two accounts never merge.
    Account,
    /// A browser or device (`anonymous_id`, `device_id`): context. Seen with
    /// two different values of a unique type, it is flagged shared and links
    /// nothing.
    Device,
    /// Something a person types and anyone could type (`email`, `phone`): it
    /// joins a profile that holds an account only once verified.
    Claimable,
    /// Any other identifier (`loyalty_id`, `marketplace_buyer_id`, custom).
    Other,
}

impl IdentifierClass {
    pub fn as_str(self) -> &'static str {
        match self {
            IdentifierClass::Account => "account",
            IdentifierClass::Device => "device",
            IdentifierClass::Claimable => "claimable",
            IdentifierClass::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "account" => Ok(IdentifierClass::Account),
            "device" => Ok(IdentifierClass::Device),
            "claimable" => Ok(IdentifierClass::Claimable),
            "other" => Ok(IdentifierClass::Other),
            _ => Err(format!(
                "unknown identifier class {s:?}; expected account, device, claimable or other"
            )),
        }
    }
}

/// The rule for one identifier type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TypeRule {
    pub kind: String,
    pub class: IdentifierClass,
    /// At most this many identifiers of this type in one profile; 1 makes the
    /// type unique (two different values never merge).
    pub max_per_profile: usize,
    /// Trait names (in `traits` and `context.traits`) this type is read from.
    pub traits: Vec<String>,
}

/// All the rules. The priority order of types is the order of `types`:
/// links between higher-priority types are resolved first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityRules {
    pub types: Vec<TypeRule>,
    /// Normalized values that never identify anyone (`null`, `test@example.com`, …).
    pub blocked_values: BTreeSet<String>,
    /// An identifier (other than an account) linked to more than this many
    /// distinct identifiers is quarantined: it links nothing and is reported.
    pub max_fanout: usize,
    /// Channel kinds whose keys (with `customers:write`) may verify identifiers.
    pub trusted_channel_kinds: Vec<ChannelKind>,
    /// Region (ISO 3166 alpha-2) for phone numbers written without `+` country code.
    pub default_phone_region: Option<String>,
}

/// Largest accepted `max_fanout`.
pub const MAX_FANOUT_LIMIT: usize = 10_000;
/// At most this many identifier types.
pub const MAX_TYPES: usize = 32;
/// At most this many blocked values.
pub const MAX_BLOCKED_VALUES: usize = 1_000;
/// Largest per-profile limit for one type.
pub const MAX_PER_PROFILE_LIMIT: usize = 10_000;

pub const DEFAULT_MAX_FANOUT: usize = 50;

/// The built-in blocked values (compared after normalization).
pub const DEFAULT_BLOCKED_VALUES: &[&str] = &[
    "",
    "0",
    "-1",
    "null",
    "nil",
    "none",
    "undefined",
    "anonymous",
    "unknown",
    "guest",
    "n/a",
    "na",
    "test",
    "[object object]",
    "00000000-0000-0000-0000-000000000000",
    "test@example.com",
    "test@test.com",
    "noemail@example.com",
    "no-reply@example.com",
    "email@example.com",
    "user@example.com",
    "+10000000000",
];

fn rule(kind: &str, class: IdentifierClass, max: usize, traits: &[&str]) -> TypeRule {
    TypeRule {
        kind: kind.to_string(),
        class,
        max_per_profile: max,
        traits: traits.iter().map(|t| t.to_string()).collect(),
    }
}

impl Default for IdentityRules {
    fn default() -> Self {
        use IdentifierClass::*;
        IdentityRules {
            types: vec![
                rule("user_id", Account, 1, &[]),
                rule("loyalty_id", Other, 1, &["loyalty_id", "loyaltyId"]),
                rule("email", Claimable, 5, &["email"]),
                rule("phone", Claimable, 5, &["phone"]),
                rule(
                    "marketplace_buyer_id",
                    Other,
                    10,
                    &["marketplace_buyer_id", "marketplaceBuyerId"],
                ),
                rule("device_id", Device, 50, &[]),
                rule("anonymous_id", Device, 1_000, &[]),
            ],
            blocked_values: DEFAULT_BLOCKED_VALUES
                .iter()
                .map(|v| v.to_string())
                .collect(),
            max_fanout: DEFAULT_MAX_FANOUT,
            trusted_channel_kinds: vec![
                ChannelKind::Web,
                ChannelKind::App,
                ChannelKind::Pos,
                ChannelKind::Backoffice,
            ],
            default_phone_region: None,
        }
    }
}

/// The built-in types every rules document must keep (they are read from
/// Segment's own fields).
pub const BUILT_IN_TYPES: &[&str] = &[
    "user_id",
    "anonymous_id",
    "device_id",
    "email",
    "phone",
    "loyalty_id",
    "marketplace_buyer_id",
];

impl IdentityRules {
    pub fn type_rule(&self, kind: &str) -> Option<&TypeRule> {
        self.types.iter().find(|t| t.kind == kind)
    }

    /// Position in the priority order (0 is highest); unknown types last.
    pub fn priority(&self, kind: &str) -> usize {
        self.types
            .iter()
            .position(|t| t.kind == kind)
            .unwrap_or(self.types.len())
    }

    pub fn class(&self, kind: &str) -> IdentifierClass {
        self.type_rule(kind)
            .map(|t| t.class)
            .unwrap_or(IdentifierClass::Other)
    }

    pub fn max_per_profile(&self, kind: &str) -> usize {
        self.type_rule(kind)
            .map(|t| t.max_per_profile)
            .unwrap_or(usize::MAX)
    }

    /// Blocked values are compared case-insensitively after normalization.
    pub fn is_blocked(&self, normalized: &str) -> bool {
        self.blocked_values
            .contains(&normalized.trim().to_lowercase())
    }

    pub fn is_trusted_kind(&self, kind: ChannelKind) -> bool {
        self.trusted_channel_kinds.contains(&kind)
    }
}

/// The rules as a JSON document (`GET`/`PUT /v1/identity/rules`, and the
/// stored form).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RulesDocument {
    /// Identifier types in priority order (highest first).
    pub types: Vec<TypeRuleDocument>,
    /// Values that never identify anyone; compared after normalization
    /// (lowercase for emails, E.164 for phones).
    pub blocked_values: Vec<String>,
    /// Fan-out above which an identifier is quarantined.
    pub max_fanout: usize,
    /// Channel kinds whose keys holding `customers:write` are trusted to verify.
    pub trusted_channel_kinds: Vec<String>,
    /// Region for phones without a country code, e.g. `US`; none requires `+`.
    #[serde(default)]
    pub default_phone_region: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TypeRuleDocument {
    /// `[a-z][a-z0-9_]*`, at most 40 characters.
    pub kind: String,
    /// `account`, `device`, `claimable` or `other`.
    pub class: String,
    /// At most this many per profile; 1 makes the type unique.
    pub max_per_profile: usize,
    /// Trait names the identifier is read from.
    #[serde(default)]
    pub traits: Vec<String>,
}

/// Longest identifier type name.
pub const MAX_KIND_CHARS: usize = 40;

pub fn valid_kind_name(kind: &str) -> bool {
    let mut chars = kind.chars();
    kind.len() <= MAX_KIND_CHARS
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl TypeRuleDocument {
    /// Checks the `i`-th type of a rules document (`seen`: the kinds before
    /// it) and builds its rule.
    fn into_rule(
        self,
        i: usize,
        seen: &mut BTreeSet<String>,
    ) -> Result<TypeRule, (String, String)> {
        let field = |f: &str| format!("types[{i}].{f}");
        if !valid_kind_name(&self.kind) {
            return Err((field("kind"), "use [a-z][a-z0-9_]*, 40 characters".into()));
        }
        if !seen.insert(self.kind.clone()) {
            return Err((field("kind"), format!("{} is listed twice", self.kind)));
        }
        let class = IdentifierClass::parse(&self.class).map_err(|e| (field("class"), e))?;
        if self.max_per_profile == 0 || self.max_per_profile > MAX_PER_PROFILE_LIMIT {
            return Err((
                field("max_per_profile"),
                format!("must be 1..={MAX_PER_PROFILE_LIMIT}"),
            ));
        }
        let built_in_class = match self.kind.as_str() {
            "user_id" => Some(IdentifierClass::Account),
            "anonymous_id" | "device_id" => Some(IdentifierClass::Device),
            _ => None,
        };
        if built_in_class.is_some_and(|c| c != class) {
            return Err((field("class"), format!("{} has a fixed class", self.kind)));
        }
        Ok(TypeRule {
            kind: self.kind,
            class,
            max_per_profile: self.max_per_profile,
            traits: self.traits,
        })
    }
}

impl RulesDocument {
    /// Checks the document and builds the rules; errors name the field.
    pub fn into_rules(self) -> Result<IdentityRules, (String, String)> {
        if self.types.len() > MAX_TYPES {
            return Err(("types".into(), format!("at most {MAX_TYPES} types")));
        }
        let mut types = Vec::with_capacity(self.types.len());
        let mut seen = BTreeSet::new();
        for (i, t) in self.types.into_iter().enumerate() {
            types.push(t.into_rule(i, &mut seen)?);
        }
        for built_in in BUILT_IN_TYPES {
            if !seen.contains(*built_in) {
                return Err((
                    "types".into(),
                    format!("the built-in type {built_in} is missing"),
                ));
            }
        }
        if self.blocked_values.len() > MAX_BLOCKED_VALUES {
            return Err((
                "blocked_values".into(),
                format!("at most {MAX_BLOCKED_VALUES} values"),
            ));
        }
        if self.max_fanout == 0 || self.max_fanout > MAX_FANOUT_LIMIT {
            return Err((
                "max_fanout".into(),
                format!("must be 1..={MAX_FANOUT_LIMIT}"),
            ));
        }
        let mut trusted = Vec::new();
        for (i, k) in self.trusted_channel_kinds.iter().enumerate() {
            let kind: ChannelKind = k
                .parse()
                .map_err(|e: String| (format!("trusted_channel_kinds[{i}]"), e))?;
            trusted.push(kind);
        }
        if let Some(region) = &self.default_phone_region {
            if region.parse::<phonenumber::country::Id>().is_err() {
                return Err((
                    "default_phone_region".into(),
                    format!("unknown region {region:?}"),
                ));
            }
        }
        Ok(IdentityRules {
            types,
            blocked_values: self
                .blocked_values
                .iter()
                .map(|v| v.trim().to_lowercase())
                .collect(),
            max_fanout: self.max_fanout,
            trusted_channel_kinds: trusted,
            default_phone_region: self.default_phone_region,
        })
    }

    pub fn from_rules(rules: &IdentityRules) -> Self {
        RulesDocument {
            types: rules
                .types
                .iter()
                .map(|t| TypeRuleDocument {
                    kind: t.kind.clone(),
                    class: t.class.as_str().to_string(),
                    max_per_profile: t.max_per_profile,
                    traits: t.traits.clone(),
                })
                .collect(),
            blocked_values: rules.blocked_values.iter().cloned().collect(),
            max_fanout: rules.max_fanout,
            trusted_channel_kinds: rules
                .trusted_channel_kinds
                .iter()
                .map(|k| k.as_str().to_string())
                .collect(),
            default_phone_region: rules.default_phone_region.clone(),
        }
    }
}

/// Per-type counts, used by the resolver's limit checks.
pub type KindCounts = BTreeMap<String, usize>;
