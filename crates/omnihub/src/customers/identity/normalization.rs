//! Identifiers and their normalization (emails, phones, the rest trimmed).

use super::*;

/// A normalized identifier.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Identifier {
    pub kind: String,
    pub value: String,
}

impl Identifier {
    pub fn pair(&self) -> (String, String) {
        (self.kind.clone(), self.value.clone())
    }
}

impl std::fmt::Display for Identifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.kind, self.value)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("unknown identifier type {0:?}")]
    UnknownKind(String),
    #[error("{0} is empty")]
    Empty(String),
    #[error("{0} is longer than {MAX_VALUE_CHARS} characters")]
    TooLong(String),
    #[error("{kind} value {value:?} is a blocked value")]
    Blocked { kind: String, value: String },
    #[error("{0:?} is not an email address")]
    InvalidEmail(String),
    #[error("{0:?} is not a valid phone number (use E.164, e.g. +14155550100)")]
    InvalidPhone(String),
}

/// Normalizes `raw` as an identifier of `kind`: emails trimmed and
/// lowercased, phones to E.164, every value trimmed; blocked values refused.
pub fn normalize(
    rules: &IdentityRules,
    kind: &str,
    raw: &str,
) -> Result<Identifier, NormalizeError> {
    if rules.type_rule(kind).is_none() {
        return Err(NormalizeError::UnknownKind(kind.to_string()));
    }
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Err(NormalizeError::Empty(kind.to_string()));
    }
    if trimmed.chars().count() > MAX_VALUE_CHARS {
        return Err(NormalizeError::TooLong(kind.to_string()));
    }
    if rules.is_blocked(trimmed) {
        return Err(NormalizeError::Blocked {
            kind: kind.to_string(),
            value: trimmed.to_string(),
        });
    }
    let value = match kind {
        "email" => normalize_email(trimmed)?,
        "phone" => normalize_phone(trimmed, rules.default_phone_region.as_deref())?,
        _ => trimmed.to_string(),
    };
    if rules.is_blocked(&value) {
        return Err(NormalizeError::Blocked {
            kind: kind.to_string(),
            value,
        });
    }
    Ok(Identifier {
        kind: kind.to_string(),
        value,
    })
}

pub(super) fn normalize_email(raw: &str) -> Result<String, NormalizeError> {
    let email = raw.to_lowercase();
    let valid = match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && !domain.is_empty()
                && !domain.contains('@')
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        }
        None => false,
    };
    if valid {
        Ok(email)
    } else {
        Err(NormalizeError::InvalidEmail(raw.to_string()))
    }
}

pub(super) fn normalize_phone(raw: &str, region: Option<&str>) -> Result<String, NormalizeError> {
    let region = region.and_then(|r| r.parse::<phonenumber::country::Id>().ok());
    let number = phonenumber::parse(region, raw)
        .map_err(|_| NormalizeError::InvalidPhone(raw.to_string()))?;
    if !phonenumber::is_valid(&number) {
        return Err(NormalizeError::InvalidPhone(raw.to_string()));
    }
    Ok(number.format().mode(phonenumber::Mode::E164).to_string())
}
