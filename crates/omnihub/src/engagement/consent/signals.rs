//! Consent from tracking calls, run in the call's transaction through
//! tracking's hook ([`crate::customers::tracking::hooks::Hooks::call`]):
//!
//! * Segment's `context.consent.categoryPreferences` (`{"Advertising":
//!   false, "Analytics": true}`): each category the settings map
//!   ([`super::settings`]) names becomes a grant or a denial of its purposes
//!   and channels, method `consent_banner`.
//! * `Sec-GPC: 1` on the request: a denial of `advertising` on `ads`, method
//!   `global_privacy_control`. It overrides the same call's banner grant.
//!
//! Records are anchored on the call's anchor identifier (a browser's
//! anonymous id), so the banner's choice follows the device into the
//! person's profile at login. A cell whose anchor already holds the same
//! state records nothing: a banner repeats its choice on every call.

use std::collections::BTreeMap;

use futures::future::BoxFuture;
use serde_json::{Map, Value, json};

use super::{Anchor, Change, ConsentState, ContactChannel, Evidence, Method, Purpose, cell};
use crate::customers::tracking::hooks::CallSignals;
use crate::platform::storage::{StoreError, Tx};

/// The hook the composition root registers with tracking.
pub fn follow_call<'t>(
    tx: &'t mut Tx,
    call: &'t CallSignals<'t>,
) -> BoxFuture<'t, Result<(), StoreError>> {
    Box::pin(record_signals(tx, call))
}

type Wanted = (ConsentState, Method, Map<String, Value>);

async fn wanted_changes(
    tx: &mut Tx,
    call: &CallSignals<'_>,
) -> Result<BTreeMap<(Purpose, ContactChannel), Wanted>, StoreError> {
    let mut wanted = BTreeMap::new();
    let preferences = call
        .context
        .get("consent")
        .and_then(|c| c.get("categoryPreferences"))
        .and_then(Value::as_object);
    if let Some(preferences) = preferences {
        let settings = super::settings::load(tx.conn()).await?;
        for (category, value) in preferences {
            let (Some(granted), Some(targets)) = (value.as_bool(), settings.targets(category))
            else {
                continue;
            };
            let state = if granted {
                ConsentState::Granted
            } else {
                ConsentState::Denied
            };
            for target in targets {
                for channel in &target.channels {
                    let detail = Map::from_iter([
                        ("category".to_string(), json!(category)),
                        ("message_id".to_string(), json!(call.message_id)),
                    ]);
                    let entry = wanted.entry((target.purpose, *channel)).or_insert((
                        state,
                        Method::ConsentBanner,
                        detail,
                    ));
                    // Two categories deciding one cell: a denial wins.
                    if state == ConsentState::Denied {
                        entry.0 = state;
                    }
                }
            }
        }
    }
    if call.gpc {
        let detail = Map::from_iter([
            ("gpc".to_string(), json!(true)),
            ("message_id".to_string(), json!(call.message_id)),
        ]);
        wanted.insert(
            (Purpose::Advertising, ContactChannel::Ads),
            (ConsentState::Denied, Method::GlobalPrivacyControl, detail),
        );
    }
    Ok(wanted)
}

async fn record_signals(tx: &mut Tx, call: &CallSignals<'_>) -> Result<(), StoreError> {
    let wanted = wanted_changes(tx, call).await?;
    if wanted.is_empty() {
        return Ok(());
    }
    let held = super::store::states_of(tx.conn(), &[call.anchor_id.to_string()]).await?;
    let mut held_state = [None; super::CELLS];
    for (purpose, channel, decided) in held {
        held_state[cell(purpose, channel)] = Some(decided.state);
    }
    let language = call
        .context
        .get("locale")
        .and_then(Value::as_str)
        .map(|l| l.chars().take(35).collect());
    for ((purpose, channel), (state, method, detail)) in wanted {
        if held_state[cell(purpose, channel)] == Some(state) {
            continue;
        }
        let change = Change {
            anchor: Anchor::Identifier(call.anchor_id.to_string()),
            purpose,
            channel,
            state,
            decided_at: call.observed_at,
            evidence: Evidence {
                method,
                source_channel_id: call.channel_id,
                source_key_id: call.key_id,
                notice: None,
                language: language.clone(),
                user_agent: call.user_agent.map(str::to_string),
                ip: call.ip.map(str::to_string),
                detail,
            },
        };
        super::record(tx, &change, call.customer_id).await?;
    }
    Ok(())
}
