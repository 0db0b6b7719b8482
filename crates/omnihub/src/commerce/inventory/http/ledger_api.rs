//! Ledger checks: verify levels against the movements, rebuild them.

use super::*;

#[derive(Serialize, ToSchema)]
pub struct DriftBody {
    pub sku: String,
    pub location_id: String,
    pub stored: LevelBody,
    pub ledger: LevelBody,
}

#[derive(Serialize, ToSchema)]
pub struct HoldMismatchBody {
    pub sku: String,
    pub location_id: String,
    /// `reserved` of the level.
    pub reserved: i64,
    /// Unfulfilled units of active and allocated reservations.
    pub held: i64,
}

#[derive(Serialize, ToSchema)]
pub struct LedgerReport {
    /// True when every level equals the ledger's sums and the open holds.
    pub consistent: bool,
    pub drifts: Vec<DriftBody>,
    /// Levels whose `reserved` differs from the open reservations.
    pub hold_mismatches: Vec<HoldMismatchBody>,
}

fn report(drifts: Vec<ledger::Drift>, holds: Vec<ledger::HoldMismatch>) -> LedgerReport {
    LedgerReport {
        consistent: drifts.is_empty() && holds.is_empty(),
        hold_mismatches: holds
            .into_iter()
            .map(|h| HoldMismatchBody {
                sku: h.sku,
                location_id: h.location_id,
                reserved: h.reserved,
                held: h.held,
            })
            .collect(),
        drifts: drifts
            .into_iter()
            .map(|d| DriftBody {
                sku: d.sku,
                location_id: d.location_id,
                stored: LevelBody::from(&d.stored),
                ledger: LevelBody::from(&d.ledger),
            })
            .collect(),
    }
}

/// Compare every level with the sums of the ledger (changes nothing).
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/inventory/verify", tag = "inventory",
    responses((status = 200, body = LedgerReport)))]
pub async fn verify_ledger(
    State(state): State<CommerceState>,
    _caller: Authorized<scope::Admin>,
) -> Result<axum::Json<LedgerReport>, ApiError> {
    let drifts = ledger::verify(&state.store).await?;
    Ok(axum::Json(report(
        drifts,
        ledger::verify_holds(&state.store).await?,
    )))
}

/// Rewrite drifted levels from the ledger; reports what it repaired.
#[utoipa::path(post, extensions(("x-required-scopes" = json!(["admin"]))), path = "/v1/inventory/rebuild", tag = "inventory",
    responses((status = 200, body = LedgerReport)))]
pub async fn rebuild_ledger(
    State(state): State<CommerceState>,
    _caller: Authorized<scope::Admin>,
) -> Result<axum::Json<LedgerReport>, ApiError> {
    // Reads after its write: the answer is stored once the write committed.
    crate::platform::idempotency::answer_after_commit();
    let repaired = ledger::rebuild(&state.store).await?;
    Ok(axum::Json(report(
        repaired,
        ledger::verify_holds(&state.store).await?,
    )))
}
