//! `GET /v1/groups/{id}`: a group named by `group` calls, with its traits
//! and the profiles that belong to it.

use std::collections::BTreeMap;

use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{Group, Member};
use crate::customers::CustomersState;
use crate::platform::http::auth::{Authorized, scope};
use crate::platform::http::extract::Path;
use crate::platform::http::problem::ApiError;
use crate::platform::time;

fn at(micros: i64) -> DateTime<Utc> {
    time::from_micros(micros)
}

/// A group (company, household, account) and what its `group` calls said.
#[derive(Serialize, ToSchema)]
pub struct GroupBody {
    /// The `groupId` as sent.
    pub id: String,
    /// The group's traits, the newest call's values winning.
    #[schema(value_type = Object)]
    pub traits: BTreeMap<String, Value>,
    pub first_seen_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The profiles that belong to the group (at most 500), first joined first.
    pub members: Vec<GroupMemberBody>,
}

/// A profile in a group.
#[derive(Serialize, ToSchema)]
pub struct GroupMemberBody {
    pub customer_id: String,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

/// A group a customer belongs to (in the 360° view).
#[derive(Serialize, ToSchema)]
pub struct GroupRefBody {
    pub id: String,
    #[schema(value_type = Object)]
    pub traits: BTreeMap<String, Value>,
}

impl From<Group> for GroupRefBody {
    fn from(g: Group) -> Self {
        GroupRefBody {
            id: g.id,
            traits: g.traits.into_iter().collect(),
        }
    }
}

impl From<Member> for GroupMemberBody {
    fn from(m: Member) -> Self {
        GroupMemberBody {
            customer_id: m.customer_id,
            first_seen_at: at(m.first_seen_at),
            last_seen_at: at(m.last_seen_at),
        }
    }
}

/// Read a group named by `group` calls, with its traits and members.
#[utoipa::path(get, path = "/v1/groups/{id}", tag = "customers", operation_id = "get_group",
    extensions(("x-required-scopes" = json!(["customers:read"]))),
    params(("id" = String, Path, description = "The groupId of the group calls")),
    responses((status = 200, body = GroupBody), (status = 404, body = crate::platform::http::problem::Problem)))]
pub async fn get_group(
    State(state): State<CustomersState>,
    _caller: Authorized<scope::CustomersRead>,
    Path(id): Path<String>,
) -> Result<axum::Json<GroupBody>, ApiError> {
    let group = super::store::get(state.store.reader(), &id)
        .await?
        .ok_or_else(|| ApiError::not_found("group"))?;
    let members = super::store::members(state.store.reader(), &id).await?;
    Ok(axum::Json(GroupBody {
        id: group.id,
        traits: group.traits.into_iter().collect(),
        first_seen_at: at(group.first_seen_at),
        updated_at: at(group.updated_at),
        members: members.into_iter().map(GroupMemberBody::from).collect(),
    }))
}
