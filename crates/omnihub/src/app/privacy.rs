//! The privacy pipeline's participants: every context's export sections and
//! erasure steps, in the order they run. A capability that keeps personal
//! data registers its section and step here (and nowhere else).
//!
//! Erasure order matters twice: steps that find rows through the person's
//! identifiers (timeline, groups) run before identity deletes them, and the
//! copies (outbox events, stored answers) are redacted last, after every
//! step that emits events about the erasure itself.

use crate::commerce::{carts, orders};
use crate::customers::{groups, identity, tracking};
use futures::future::BoxFuture;
use sqlx::AnyConnection;

use crate::engagement::consent;
use crate::platform::privacy::{Chunk, Page, Participants, Retention, Section, Step, Subject};
use crate::platform::storage::{StoreError, Tx};
use crate::platform::{events, idempotency};

pub fn participants(settings: &crate::platform::config::PrivacySettings) -> Participants {
    let mut sections = Vec::new();
    sections.extend(identity::privacy::SECTIONS);
    sections.extend(tracking::privacy::SECTIONS);
    sections.push(groups::privacy::SECTION);
    sections.push(carts::privacy::SECTION);
    sections.push(orders::privacy::SECTION);
    sections.push(CONSENT_SECTION);
    let steps = vec![
        // Consent finds identifier-anchored records through the identity
        // graph: before identity's step deletes the identifiers.
        CONSENT_STEP,
        carts::privacy::STEP,
        orders::privacy::STEP,
        tracking::privacy::STEPS[0],
        tracking::privacy::STEPS[1],
        groups::privacy::STEP,
        identity::privacy::STEP,
        events::privacy::STEP,
        idempotency::privacy::STEP,
    ];
    let retention = vec![
        Retention {
            kind: "tracking_events",
            keep: settings.tracking_retention,
            prune: tracking::privacy::prune,
        },
        Retention {
            kind: "carts",
            keep: settings.cart_retention,
            prune: carts::privacy::prune,
        },
        Retention {
            kind: "erasure_notices",
            keep: Some(settings.notice_retention),
            prune: events::privacy::prune_erasure_notices,
        },
        Retention {
            kind: "webhook_deliveries",
            keep: Some(settings.webhook_log_retention),
            prune: crate::platform::webhooks::prune_log,
        },
    ];
    Participants {
        sections,
        steps,
        retention,
    }
}

/// Consent and preferences: the ledger with its evidence, the current
/// state and the preference documents, as one record.
const CONSENT_SECTION: Section = Section {
    name: "consent",
    page: consent_page,
};

const CONSENT_STEP: Step = Step {
    name: "consent",
    erase: erase_consent,
};

/// The subject as consent names a person.
fn profile_keys(subject: &Subject) -> identity::ProfileKeys {
    identity::ProfileKeys {
        customer_id: subject.customer_id.clone(),
        customer_ids: subject.customer_ids.clone(),
        anonymous_ids: subject
            .values_of("anonymous_id")
            .map(str::to_string)
            .collect(),
        identified: true,
    }
}

fn consent_page<'c>(
    conn: &'c mut AnyConnection,
    subject: &'c Subject,
    _: Option<String>,
    _: usize,
) -> BoxFuture<'c, Result<Page, StoreError>> {
    Box::pin(async move {
        let record = consent::export_person(conn, &profile_keys(subject)).await?;
        Ok((vec![record], None))
    })
}

fn erase_consent<'t>(
    tx: &'t mut Tx,
    subject: &'t Subject,
    _: Option<String>,
    _: usize,
) -> BoxFuture<'t, Result<Chunk, StoreError>> {
    Box::pin(async move {
        let deleted = consent::erase_person(tx, &profile_keys(subject)).await?;
        Ok(Chunk::done(deleted))
    })
}

/// The person a CLI privacy command names: exactly one identifier.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct PersonArgs {
    #[arg(long)]
    pub email: Option<String>,
    #[arg(long)]
    pub phone: Option<String>,
    #[arg(long)]
    pub user_id: Option<String>,
    #[arg(long)]
    pub anonymous_id: Option<String>,
    /// A profile id.
    #[arg(long)]
    pub customer_id: Option<String>,
    /// `gdpr` or `ccpa` [default: gdpr].
    #[arg(long, default_value = "gdpr")]
    pub regulation: String,
}

impl PersonArgs {
    fn identifier(&self) -> (&'static str, String) {
        let pairs = [
            ("email", &self.email),
            ("phone", &self.phone),
            ("user_id", &self.user_id),
            ("anonymous_id", &self.anonymous_id),
            ("customer_id", &self.customer_id),
        ];
        pairs
            .into_iter()
            .find_map(|(kind, value)| value.clone().map(|v| (kind, v)))
            .unwrap_or(("email", String::new()))
    }
}

/// `omnihub privacy export|erase`: files the request as the back-office
/// channel (audit key `cli`) and carries it out here.
pub async fn command(
    settings: &crate::platform::config::Settings,
    store: &crate::platform::storage::Store,
    channel: crate::platform::ids::ChannelId,
    command: super::cli::PrivacyCommand,
) -> anyhow::Result<()> {
    use super::cli::PrivacyCommand;
    use crate::engagement::privacy::{self, Actor, NewRequest, Regulation, RequestKind};
    let (kind, person) = match &command {
        PrivacyCommand::Export { person, .. } => (RequestKind::Access, person),
        PrivacyCommand::Erase { person } => (RequestKind::Erasure, person),
    };
    let regulation = Regulation::parse(&person.regulation)
        .ok_or_else(|| anyhow::anyhow!("--regulation must be gdpr or ccpa"))?;
    let (identifier_kind, identifier_value) = person.identifier();
    let participants = std::sync::Arc::new(participants(&settings.privacy));
    let actor = Actor {
        key_id: "cli".into(),
        channel_id: channel,
    };
    let new = NewRequest {
        kind,
        regulation,
        identifier_kind: identifier_kind.into(),
        identifier_value,
        due_in_days: None,
    };
    let (request, created) =
        privacy::file(store, &settings.privacy, &participants, actor, new).await?;
    eprintln!(
        "privacy request {} ({}, {})",
        request.id,
        request.kind.as_str(),
        if created {
            "filed now"
        } else {
            "filed earlier"
        }
    );
    match command {
        PrivacyCommand::Export { out, .. } => export(store, &participants, request, out).await,
        PrivacyCommand::Erase { .. } => erase(settings, store, participants, &request.id).await,
    }
}

async fn export(
    store: &crate::platform::storage::Store,
    participants: &Participants,
    request: crate::engagement::privacy::PrivacyRequest,
    out: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    use crate::engagement::privacy::{self, export};
    use tokio::io::AsyncWriteExt;
    let subject = export::subject_for(store, &request).await?;
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<bytes::Bytes>(4);
    let progress: export::Progress = Box::new(|section, records| {
        eprintln!("  {section}: {records} records so far");
    });
    let writer = async {
        let mut sink: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = match &out {
            Some(path) => Box::new(tokio::fs::File::create(path).await?),
            None => Box::new(tokio::io::stdout()),
        };
        while let Some(chunk) = receiver.recv().await {
            sink.write_all(&chunk).await?;
        }
        sink.write_all(b"\n").await?;
        sink.flush().await?;
        Ok::<_, std::io::Error>(())
    };
    let (records, written) = tokio::join!(
        export::stream(
            store,
            participants,
            &request,
            &subject,
            sender,
            Some(progress)
        ),
        writer
    );
    written?;
    let records = records?.ok_or_else(|| anyhow::anyhow!("the export stopped early"))?;
    privacy::delivered(store, &request.id, records, "cli").await?;
    eprintln!("exported {records} records");
    Ok(())
}

async fn erase(
    settings: &crate::platform::config::Settings,
    store: &crate::platform::storage::Store,
    participants: std::sync::Arc<Participants>,
    id: &str,
) -> anyhow::Result<()> {
    use crate::engagement::privacy::{self, Advance, RequestStatus};
    let owner = format!("cli-{}", uuid::Uuid::now_v7());
    let chunk_rows = settings.privacy.erasure_chunk_rows.max(1);
    let mut shown = String::new();
    loop {
        let advance = privacy::advance(
            store,
            participants.clone(),
            id,
            &owner,
            30_000_000,
            chunk_rows,
        )
        .await?;
        let request = privacy::get(store, id).await?;
        let line: Vec<String> = request
            .progress
            .steps
            .iter()
            .map(|s| format!("{} {}{}", s.name, s.changed, if s.done { " ✓" } else { "" }))
            .collect();
        let line = line.join(", ");
        if line != shown {
            eprintln!("  {line}");
            shown = line;
        }
        match advance {
            Advance::More => {}
            Advance::Done if request.status == RequestStatus::Completed => break,
            // A serving hub holds it: follow its progress.
            Advance::NotOurs | Advance::Done => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await
            }
        }
    }
    crate::app::cli::write_stdout(&format!("erasure {id} completed"));
    Ok(())
}
