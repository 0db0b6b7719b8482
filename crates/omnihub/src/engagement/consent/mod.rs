//! The consent ledger: what each person agreed to, per purpose and contact
//! channel, with the evidence of every change.
//!
//! * Every change is an append-only record ([`Record`]): the state
//!   (`granted`, `denied`, or `pending` until a double opt-in is confirmed),
//!   when it was decided, and the evidence (source channel and key, notice id
//!   and version, language, method, user agent, IP). Records are never updated.
//! * A record is anchored on what the request named: an identifier (a
//!   consent banner's anonymous id, an email given at a till) or a profile id.
//!   The person is resolved when reading, as group membership is, so consent
//!   follows identity: a merge combines the ledgers and an unmerge gives each
//!   person their own records back, with no write.
//! * The current state of a purpose × channel is the person's most recent
//!   decision ([`Decided::key`]: time, then a denial before a grant at the same
//!   instant). `consent_state` keeps the latest record per anchor; it is a
//!   fold of the ledger and [`rebuild_state`] recomputes it.
//! * [`view::ConsentView`] answers `may_contact` from memory.

pub mod changes;
pub mod events;
pub mod http;
pub mod links;
pub mod settings;
pub mod signals;
mod store;
pub mod view;

use serde_json::{Map, Value, json};

use crate::customers::identity::{self, ProfileKeys};
use crate::platform::events::NewEvent;
use crate::platform::ids::{ChannelId, KeyId};
use crate::platform::storage::{StoreError, Tx};
use crate::platform::time::{self, Timestamp};
use events::{ConsentChanged, ConsentErased, ConsentEvent};

crate::engagement::names! {
    /// Why a person may be contacted or their data used.
    Purpose {
        Marketing = "marketing",
        Personalization = "personalization",
        /// Audience sync to ad platforms ("sale/share" under CCPA).
        Advertising = "advertising",
        Analytics = "analytics",
    }
}

crate::engagement::names! {
    /// How a person is reached.
    ContactChannel {
        Email = "email",
        Sms = "sms",
        Push = "push",
        Whatsapp = "whatsapp",
        Ads = "ads",
        Post = "post",
    }
}

crate::engagement::names! {
    /// A recorded decision. `unknown` is the absence of any record.
    ConsentState {
        Granted = "granted",
        Denied = "denied",
        /// Granted but awaiting the double opt-in confirmation: not granted.
        Pending = "pending",
    }
}

crate::engagement::names! {
    /// How the decision was collected.
    Method {
        Checkbox = "checkbox",
        DoubleOptIn = "double_opt_in",
        OneClickUnsubscribe = "one_click_unsubscribe",
        PosSignature = "pos_signature",
        Import = "import",
        Regulation = "regulation",
        PreferenceCenter = "preference_center",
        ConsentBanner = "consent_banner",
        GlobalPrivacyControl = "global_privacy_control",
        Verbal = "verbal",
    }
}

impl ConsentState {
    /// At the same instant a denial beats a grant, and a grant a pending one.
    fn priority(self) -> i64 {
        match self {
            ConsentState::Denied => 2,
            ConsentState::Granted => 1,
            ConsentState::Pending => 0,
        }
    }
}

/// Number of purpose × channel cells.
pub const CELLS: usize = 4 * 6;

/// The cell of a purpose × channel in a `[_; CELLS]`.
pub fn cell(purpose: Purpose, channel: ContactChannel) -> usize {
    purpose.index() * ContactChannel::ALL.len() + channel.index()
}

/// What a record is attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// A profile id, as the request named it.
    Profile(String),
    /// An identifier's id (`identifiers.id`).
    Identifier(String),
}

impl Anchor {
    fn kind(&self) -> &'static str {
        match self {
            Anchor::Profile(_) => "profile",
            Anchor::Identifier(_) => "identifier",
        }
    }

    fn id(&self) -> &str {
        match self {
            Anchor::Profile(id) | Anchor::Identifier(id) => id,
        }
    }
}

/// Where a decision comes from.
#[derive(Clone, Debug)]
pub struct Evidence {
    pub method: Method,
    pub source_channel_id: ChannelId,
    pub source_key_id: Option<KeyId>,
    /// The notice shown: id and version.
    pub notice: Option<(String, i64)>,
    pub language: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    /// What else the source said (the tracking category, `gpc`, the
    /// pending record a confirmation confirms, …).
    pub detail: Map<String, Value>,
}

/// A change to record.
#[derive(Clone, Debug)]
pub struct Change {
    pub anchor: Anchor,
    pub purpose: Purpose,
    pub channel: ContactChannel,
    pub state: ConsentState,
    pub decided_at: Timestamp,
    pub evidence: Evidence,
}

/// A record of the ledger.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: String,
    pub anchor_kind: String,
    pub anchor_id: String,
    pub purpose: Purpose,
    pub channel: ContactChannel,
    pub state: ConsentState,
    pub decided_at: i64,
    pub recorded_at: i64,
    pub method: Method,
    pub source_channel_id: String,
    pub source_key_id: Option<String>,
    pub notice_id: Option<String>,
    pub notice_version: Option<i64>,
    pub language: Option<String>,
    pub user_agent: Option<String>,
    pub ip: Option<String>,
    pub detail: Map<String, Value>,
}

/// A decision as the current state keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decided {
    pub record_id: String,
    pub state: ConsentState,
    pub decided_at: i64,
}

impl Decided {
    /// The order decisions are compared in: the latest wins; at the same
    /// instant a denial wins; the record id (UUIDv7) settles the rest.
    pub fn key(&self) -> (i64, i64, &str) {
        (self.decided_at, self.state.priority(), &self.record_id)
    }
}

impl Record {
    pub fn decided(&self) -> Decided {
        Decided {
            record_id: self.id.clone(),
            state: self.state,
            decided_at: self.decided_at,
        }
    }

    /// The record as the API and the access export show it.
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "anchor": {"kind": self.anchor_kind, "id": self.anchor_id},
            "purpose": self.purpose,
            "channel": self.channel,
            "state": self.state,
            "decided_at": time::from_micros(self.decided_at),
            "recorded_at": time::from_micros(self.recorded_at),
            "evidence": {
                "method": self.method,
                "source_channel_id": self.source_channel_id,
                "source_key_id": self.source_key_id,
                "notice_id": self.notice_id,
                "notice_version": self.notice_version,
                "language": self.language,
                "user_agent": self.user_agent,
                "ip": self.ip,
                "detail": self.detail,
            }
        })
    }
}

/// A person as consent sees them: the profile and every anchor their
/// records may sit on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Person {
    /// The surviving profile id.
    pub customer_id: String,
    /// Every profile id merged into it (and its own).
    pub customer_ids: Vec<String>,
    /// The ids of its member identifiers.
    pub identifier_ids: Vec<String>,
}

impl Person {
    pub fn anchors(&self) -> Vec<String> {
        let mut all = self.customer_ids.clone();
        all.extend(self.identifier_ids.iter().cloned());
        all
    }
}

/// The person `keys` describes (their member identifiers read here).
pub async fn person_of_keys(
    conn: &mut sqlx::AnyConnection,
    keys: &ProfileKeys,
) -> Result<Person, StoreError> {
    let identifier_ids = identity::identifiers_of(&mut *conn, &keys.customer_id)
        .await?
        .into_iter()
        .filter(|row| row.status == identity::resolver::NodeStatus::Member)
        .map(|row| row.id)
        .collect();
    Ok(Person {
        customer_id: keys.customer_id.clone(),
        customer_ids: keys.customer_ids.clone(),
        identifier_ids,
    })
}

/// The person profile id `id` (any id ever issued) belongs to, or `None`.
pub async fn person(
    conn: &mut sqlx::AnyConnection,
    id: &str,
) -> Result<Option<Person>, StoreError> {
    match identity::profile_keys(&mut *conn, id, None).await? {
        Some(keys) => Ok(Some(person_of_keys(conn, &keys).await?)),
        None => Ok(None),
    }
}

/// The current decision per purpose × channel of `person` (`None`: unknown).
pub async fn current(
    conn: &mut sqlx::AnyConnection,
    person: &Person,
) -> Result<Vec<Option<Decided>>, StoreError> {
    let rows = store::states_of(conn, &person.anchors()).await?;
    let mut cells: Vec<Option<Decided>> = vec![None; CELLS];
    for (purpose, channel, decided) in rows {
        let slot = &mut cells[cell(purpose, channel)];
        if slot.as_ref().is_none_or(|held| decided.key() > held.key()) {
            *slot = Some(decided);
        }
    }
    Ok(cells)
}

/// Every record of `person`, newest decision first, at most `limit`.
pub async fn history(
    conn: &mut sqlx::AnyConnection,
    person: &Person,
    limit: i64,
) -> Result<Vec<Record>, StoreError> {
    store::records_of(conn, &person.anchors(), limit).await
}

/// Appends `change` to the ledger for the person `customer_id`, folds it
/// into the current state and emits `consent.changed`.
pub async fn record(tx: &mut Tx, change: &Change, customer_id: &str) -> Result<Record, StoreError> {
    let now = time::to_micros(tx.now());
    let evidence = &change.evidence;
    let record = Record {
        id: uuid::Uuid::now_v7().to_string(),
        anchor_kind: change.anchor.kind().to_string(),
        anchor_id: change.anchor.id().to_string(),
        purpose: change.purpose,
        channel: change.channel,
        state: change.state,
        decided_at: time::to_micros(change.decided_at),
        recorded_at: now,
        method: evidence.method,
        source_channel_id: evidence.source_channel_id.to_string(),
        source_key_id: evidence.source_key_id.map(|k| k.to_string()),
        notice_id: evidence.notice.as_ref().map(|n| n.0.clone()),
        notice_version: evidence.notice.as_ref().map(|n| n.1),
        language: evidence.language.clone(),
        user_agent: evidence.user_agent.clone(),
        ip: evidence.ip.clone(),
        detail: evidence.detail.clone(),
    };
    store::insert_record(tx.conn(), &record).await?;
    store::fold_into_state(tx.conn(), &record).await?;
    let at = tx.now();
    tx.emit(
        NewEvent::of(
            &ConsentEvent::Changed(ConsentChanged {
                customer_id: customer_id.to_string(),
                record_id: record.id.clone(),
                purpose: record.purpose,
                channel: record.channel,
                state: record.state,
                method: record.method,
                decided_at: change.decided_at,
                notice_id: record.notice_id.clone(),
                notice_version: record.notice_version,
            }),
            at,
        )
        .channel(Some(evidence.source_channel_id))
        .subject("customer_id", customer_id),
    );
    Ok(record)
}

/// A record by id.
pub async fn get_record(
    conn: &mut sqlx::AnyConnection,
    id: &str,
) -> Result<Option<Record>, StoreError> {
    store::get_record(conn, id).await
}

/// Recomputes `consent_state` from the ledger (the fold); returns the number
/// of cells. The maintained state must equal what this writes.
pub async fn rebuild_state(tx: &mut Tx) -> Result<u64, StoreError> {
    store::rebuild_state(tx.conn()).await
}

/// The maintained current state, every row as `(anchor, purpose, channel,
/// record id)`, sorted: what a test compares before and after a rebuild.
pub async fn state_rows(
    conn: &mut sqlx::AnyConnection,
) -> Result<Vec<(String, String, String, String)>, StoreError> {
    store::state_rows(conn).await
}

/// Everything consent and preferences hold of the person `keys` describes
/// (every merged profile id, every member identifier): the records with
/// their evidence, the current state, and the preference documents. For the
/// access export of the privacy pipeline.
///
/// The person's identifiers are read from the identity graph: run it (and
/// [`erase_person`]) before identity's own erasure removes them.
pub async fn export_person(
    conn: &mut sqlx::AnyConnection,
    person: &ProfileKeys,
) -> Result<Value, StoreError> {
    let person = person_of_keys(conn, person).await?;
    let records = store::records_of(conn, &person.anchors(), i64::MAX).await?;
    let current = current(conn, &person).await?;
    let mut state = Vec::new();
    for purpose in Purpose::ALL {
        for channel in ContactChannel::ALL {
            if let Some(decided) = &current[cell(*purpose, *channel)] {
                state.push(json!({
                    "purpose": purpose, "channel": channel, "state": decided.state,
                    "record_id": decided.record_id,
                    "decided_at": time::from_micros(decided.decided_at),
                }));
            }
        }
    }
    let preferences =
        crate::engagement::preferences::export_documents(conn, &person.customer_ids).await?;
    Ok(json!({
        "consent": {
            "current": state,
            "records": records.iter().map(Record::to_json).collect::<Vec<_>>(),
        },
        "preferences": preferences,
    }))
}

/// Deletes every consent record, current-state row and preference document
/// of the person `keys` describes; returns the rows deleted. Emits
/// `consent.erased` (profile ids only), which drops the person from every
/// node's `may_contact` memory.
///
/// Records anchored on an identifier are found through the identity graph:
/// run this step before identity's own erasure deletes the identifiers.
/// Idempotent: a second run deletes nothing and answers 0.
pub async fn erase_person(tx: &mut Tx, person: &ProfileKeys) -> Result<u64, StoreError> {
    let person = person_of_keys(tx.conn(), person).await?;
    let anchors = person.anchors();
    let mut deleted = store::delete_anchors(tx.conn(), &anchors).await?;
    deleted +=
        crate::engagement::preferences::erase_documents(tx.conn(), &person.customer_ids).await?;
    let now = tx.now();
    tx.emit(
        NewEvent::of(
            &ConsentEvent::Erased(ConsentErased {
                customer_id: person.customer_id.clone(),
                customer_ids: person.customer_ids.clone(),
                deleted,
            }),
            now,
        )
        .subject("customer_id", &person.customer_id),
    );
    Ok(deleted)
}
