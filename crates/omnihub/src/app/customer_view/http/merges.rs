//! `/v1/customers/{id}/merges` and `/v1/customers/{id}/unmerge`: the merge
//! history and its undoing.

use super::*;

/// One merge, with the link that caused it.
#[derive(Serialize, ToSchema)]
#[schema(as = CustomerMerge)]
pub struct MergeBody {
    pub id: String,
    pub survivor_id: String,
    pub merged_id: String,
    /// `same_event`, `verified_identifier` or `unverified_between_guests`.
    pub reason: String,
    pub created_at: DateTime<Utc>,
    pub undone_at: Option<DateTime<Utc>>,
    pub undone_by: Option<String>,
    /// The ledger link that joined the merged profile to the survivor.
    pub link: Option<LinkBody>,
    /// The identifiers linked by that link (`type:value`).
    pub linked_identifiers: Vec<String>,
    /// The identifiers of the merged profile at the time of the merge.
    pub merged_identifiers: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct MergesBody {
    pub customer_id: String,
    pub items: Vec<MergeBody>,
}

async fn merge_body(state: &AppState, merge: MergeRow) -> Result<MergeBody, ApiError> {
    let db = state.store.reader();
    let link = match &merge.link_id {
        Some(id) => crate::customers::identity::get_link(db, id).await?,
        None => None,
    };
    let mut ids: Vec<String> = merge.merged_side.clone();
    if let Some(l) = &link {
        ids.push(l.from_id.clone());
        ids.push(l.to_id.clone());
    }
    let rows = super::super::identifiers_by_ids(&state.store, &ids).await?;
    let name = |id: &str| {
        rows.iter()
            .find(|r| r.id == id)
            .map(|r| format!("{}:{}", r.kind, r.value))
            .unwrap_or_else(|| id.to_string())
    };
    Ok(MergeBody {
        linked_identifiers: link
            .as_ref()
            .map(|l| vec![name(&l.from_id), name(&l.to_id)])
            .unwrap_or_default(),
        merged_identifiers: merge.merged_side.iter().map(|id| name(id)).collect(),
        link: link.as_ref().map(LinkBody::from),
        id: merge.id,
        survivor_id: merge.survivor_id,
        merged_id: merge.merged_id,
        reason: merge.reason,
        created_at: at(merge.created_at),
        undone_at: merge.undone_at.map(at),
        undone_by: merge.undone_by,
    })
}

/// The merges of a customer: which link, rule and event caused each.
#[utoipa::path(get, operation_id = "list_customer_merges", extensions(("x-required-scopes" = json!(["customers:read"]))), path = "/v1/customers/{id}/merges", tag = "customers",
    params(("id" = String, Path)),
    responses((status = 200, body = MergesBody), (status = 404, body = crate::platform::http::problem::Problem)))]
pub async fn merges(
    State(state): State<AppState>,
    _caller: Authorized<scope::CustomersRead>,
    Path(id): Path<String>,
) -> Result<axum::Json<MergesBody>, ApiError> {
    let db = state.store.reader();
    let current = crate::customers::identity::resolve_customer(db, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("customer"))?;
    let mut ids = vec![current.clone(), id.clone()];
    ids.extend(crate::customers::identity::merged_ids(db, &current).await?);
    ids.sort();
    ids.dedup();
    let rows = crate::customers::identity::merges_involving(db, &ids).await?;
    let mut items = Vec::with_capacity(rows.len());
    for row in rows {
        items.push(merge_body(&state, row).await?);
    }
    Ok(axum::Json(MergesBody {
        customer_id: current,
        items,
    }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct UnmergeRequest {
    /// The merge to undo (from `GET /v1/customers/{id}/merges`).
    pub merge_id: Option<String>,
    /// Or: the merged profile to split off.
    pub customer_id: Option<String>,
    /// Compute and return the outcome without changing anything.
    #[serde(default)]
    pub preview: bool,
}

#[derive(Serialize, ToSchema)]
pub struct UnmergedProfile {
    pub customer_id: String,
    /// `type:value` of each identifier.
    pub identifiers: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UnmergeBody {
    /// True when nothing was changed.
    pub preview: bool,
    pub merge_id: String,
    pub survivor_id: String,
    pub merged_id: String,
    /// Ledger links retracted (kept, marked retracted).
    pub retracted_links: Vec<String>,
    /// The profiles after the unmerge.
    pub profiles: Vec<UnmergedProfile>,
}

/// Undo a merge: retract the links joining the merged profile to the
/// survivor, regroup, and give events and traits back by source. With
/// `preview: true`, only says what would happen.
#[utoipa::path(post, operation_id = "unmerge_customer", extensions(("x-required-scopes" = json!(["customers:write"]))), path = "/v1/customers/{id}/unmerge", tag = "customers",
    params(("id" = String, Path, description = "The survivor, or the merged profile itself")),
    request_body = UnmergeRequest,
    responses(
        (status = 200, body = UnmergeBody),
        (status = 404, body = crate::platform::http::problem::Problem),
        (status = 409, body = crate::platform::http::problem::Problem, description = "not merged, or already undone"),
    ))]
pub async fn unmerge(
    State(state): State<AppState>,
    caller: Authorized<scope::CustomersWrite>,
    Path(id): Path<String>,
    Json(body): Json<UnmergeRequest>,
) -> Result<axum::Json<UnmergeBody>, ApiError> {
    let target = match (body.merge_id, body.customer_id) {
        (Some(m), _) => Some(UnmergeTarget::Merge(m)),
        (None, Some(c)) => Some(UnmergeTarget::MergedCustomer(c)),
        (None, None) => None,
    };
    let report = super::super::unmerge(
        &state.store,
        &id,
        target,
        caller.channel_id,
        body.preview,
        state.customers.follow_ups.separated,
    )
    .await?;
    Ok(axum::Json(UnmergeBody {
        preview: body.preview,
        merge_id: report.merge_id,
        survivor_id: report.survivor_id,
        merged_id: report.merged_id,
        retracted_links: report.retracted_links,
        profiles: report
            .profiles
            .into_iter()
            .map(|(customer_id, identifiers)| UnmergedProfile {
                customer_id,
                identifiers,
            })
            .collect(),
    }))
}
