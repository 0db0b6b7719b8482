//! The `omnihub` command line.
//!
//! Results go to standard output (one line per item, tab-separated) and
//! everything for people (where the database is, progress, hints) to standard
//! error, so `export KEY=$(omnihub keys create --scopes admin)` captures only
//! the secret. A closed standard output (`omnihub openapi | head`) ends the
//! command quietly.

use std::io::Write;

use clap::{Parser, Subcommand};

use crate::app::server::Hub;
use crate::platform::channels::{self, BACKOFFICE_CHANNEL_NAME, ChannelKind, ChannelName};
use crate::platform::config::{Settings, SettingsArgs};
use crate::platform::ids::{ChannelId, KeyId};
use crate::platform::keys::{self, Scopes};
use crate::platform::storage::{Store, migrate};

#[derive(Parser)]
#[command(name = "omnihub", version, about = "The omnichannel commerce hub")]
pub struct Cli {
    #[command(flatten)]
    pub settings: SettingsArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the hub (HTTP API, live stream, webhook delivery).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate {
        /// Only say what would run, changing nothing (exit status 1 when
        /// migrations are pending, 0 when the schema is current).
        #[arg(long)]
        check: bool,
    },
    /// Take a consistent snapshot of the SQLite database while the hub
    /// serves (see docs/operations.md; PostgreSQL has its own tools).
    Backup {
        /// An existing directory; the snapshot is a new directory in it
        /// [default: the scheduled backups' `backup_dir`].
        #[arg(long)]
        to: Option<std::path::PathBuf>,
        /// Remove the oldest snapshots in the directory beyond this many.
        #[arg(long)]
        keep: Option<usize>,
    },
    /// Restore a snapshot into an empty data directory, check it, and
    /// verify the ledgers.
    Restore {
        /// The snapshot directory (BACKUP_DIR/omnihub-…).
        #[arg(long)]
        from: std::path::PathBuf,
    },
    /// Manage channels.
    #[command(subcommand)]
    Channels(ChannelsCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Check or repair stock levels against the stock ledger.
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Identity resolution maintenance.
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Privacy requests for operators: a person's access export or erasure
    /// by any identifier, with progress on standard error (docs/privacy.md).
    #[command(subcommand)]
    Privacy(PrivacyCommand),
    /// Print the OpenAPI document.
    Openapi,
    /// Print the AsyncAPI document of the events (`docs/asyncapi.json`).
    Asyncapi,
    /// The configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
}

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Print the reference of every setting (flag, environment variable,
    /// TOML key, default, meaning) as markdown, as in docs/configuration.md.
    Reference,
}

#[derive(Subcommand)]
pub enum InventoryCommand {
    /// Report every level that differs from the sums of its ledger movements
    /// (exit status 1 when any does).
    Verify,
    /// Rewrite drifted levels from the ledger.
    Rebuild,
}

#[derive(Subcommand)]
pub enum IdentityCommand {
    /// Regroup every identifier under the rules in force (as
    /// `POST /v1/identity/rebuild`), printing progress to standard error and
    /// the report to standard output.
    Rebuild,
}

#[derive(Subcommand)]
pub enum PrivacyCommand {
    /// Write everything the hub holds about a person as one JSON document.
    Export {
        #[command(flatten)]
        person: super::privacy::PersonArgs,
        /// Where to write the export [default: standard output].
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Erase a person everywhere (runs to the end here, or follows the hub
    /// that runs it), printing each step's progress.
    Erase {
        #[command(flatten)]
        person: super::privacy::PersonArgs,
    },
}

#[derive(Subcommand)]
pub enum ChannelsCommand {
    /// Create a channel.
    Create {
        /// web, app, pos, social, marketplace, b2b_portal or backoffice.
        #[arg(long)]
        kind: String,
        #[arg(long)]
        name: String,
    },
    /// List channels.
    List,
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Create a key and print its secret (shown only once).
    Create {
        /// Channel id or name [default: the "Back office" channel, created when missing].
        #[arg(long)]
        channel: Option<String>,
        /// Comma-separated scopes, e.g. admin or events:write,customers:read.
        #[arg(long, value_delimiter = ',', required = true)]
        scopes: Vec<String>,
        /// A label for people.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List keys (never their secrets).
    List,
    /// Revoke a key.
    Revoke { id: KeyId },
}

/// Prints a line to standard output; a closed pipe ends the process quietly
/// (status 0) instead of panicking like `println!`.
macro_rules! out {
    ($($arg:tt)*) => {
        write_stdout(&format!($($arg)*))
    };
}

pub(crate) fn write_stdout(line: &str) {
    let mut stdout = std::io::stdout().lock();
    let written = writeln!(stdout, "{line}").and_then(|()| stdout.flush());
    if let Err(error) = written {
        if error.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: cannot write to standard output: {error}");
            std::process::exit(1);
        }
        std::process::exit(0);
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings.resolve()?;
    let telemetry = crate::platform::telemetry::init(&settings)?;
    let result = run_command(settings, cli.command).await;
    telemetry.shutdown().await;
    result
}

async fn run_command(settings: Settings, command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve => serve(settings).await,
        Command::Migrate { check: false } => {
            eprintln!("database: {}", location(&settings));
            let store = Store::connect(&settings.store_options()).await?;
            let applied = migrate::run(&store).await?;
            out!(
                "schema at version {} ({} applied now)",
                migrate::latest_version(),
                applied.len()
            );
            Ok(())
        }
        Command::Migrate { check: true } => super::operations::migrate_check(&settings).await,
        Command::Backup { to, keep } => super::operations::backup(&settings, to, keep).await,
        Command::Restore { from } => super::operations::restore(&settings, &from).await,
        Command::Channels(command) => channels_command(settings, command).await,
        Command::Keys(command) => keys_command(settings, command).await,
        Command::Inventory(command) => inventory_command(settings, command).await,
        Command::Identity(command) => identity_command(settings, command).await,
        Command::Privacy(command) => {
            let store = open(&settings).await?;
            let channel = resolve_channel(&store, None).await?;
            super::privacy::command(&settings, &store, channel, command).await
        }
        Command::Openapi => {
            out!("{}", crate::app::openapi::document_json());
            Ok(())
        }
        Command::Asyncapi => {
            out!("{}", crate::app::event_catalog::asyncapi_json().trim_end());
            Ok(())
        }
        Command::Config(ConfigCommand::Reference) => {
            out!(
                "{}",
                crate::platform::config::reference::markdown().trim_end()
            );
            Ok(())
        }
    }
}

pub(crate) fn location(settings: &Settings) -> String {
    crate::platform::storage::describe_location(&settings.database_url)
}

/// Opens the existing database of a maintenance command (saying where it is
/// on standard error); a missing SQLite file is an error, not a new database,
/// so a command run from another directory cannot create a second, empty hub.
async fn open(settings: &Settings) -> anyhow::Result<Store> {
    eprintln!("database: {}", location(settings));
    if let Some(file) = crate::platform::storage::sqlite_file(&settings.database_url) {
        if !file.exists() {
            anyhow::bail!(
                "no database at {} (the data directory is {}). Start the hub there first \
                 (`omnihub serve` or `omnihub migrate`), or point at the hub's data with \
                 --data-dir / OMNIHUB_DATA_DIR or --database-url / OMNIHUB_DATABASE_URL",
                file.display(),
                std::path::absolute(&settings.data_dir)
                    .unwrap_or_else(|_| settings.data_dir.clone())
                    .display()
            );
        }
    }
    let store = Store::connect(&settings.store_options()).await?;
    migrate::run(&store).await?;
    Ok(store)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let hub = Hub::start(settings.clone()).await?;
    stop_on_signal(hub.shutdown_token())?;
    let base = format!("http://{}", hub.addr);
    // The hub keeps serving when nobody reads its standard output.
    let say = |line: String| {
        let _ = writeln!(std::io::stdout(), "{line}");
    };
    say(format!("omnihub listening on {base}"));
    say(format!("database: {}", location(&settings)));
    if hub.shares_sqlite_database {
        say(
            "note: another omnihub is already serving this database; both serve it (they take \
             turns writing and see each other's events). If you meant a separate hub, stop this \
             one and give it its own --data-dir / OMNIHUB_DATA_DIR."
                .into(),
        );
    }
    if let Some(metrics) = hub.metrics_addr {
        say(format!("metrics on http://{metrics}/metrics"));
    }
    if keys::count_active(hub.state.store.reader()).await? == 0 {
        let data_dir = match crate::platform::storage::sqlite_file(&settings.database_url) {
            Some(file) => file
                .parent()
                .map(|dir| format!(" --data-dir {}", dir.display()))
                .unwrap_or_default(),
            None => String::new(),
        };
        say("No API keys yet. Create an admin key with:".into());
        say(format!(
            "  export KEY=$(omnihub{data_dir} keys create --scopes admin)"
        ));
        say(format!(
            "then call the API with: curl -H \"Authorization: Bearer $KEY\" {base}/v1/channels"
        ));
    }
    hub.shutdown_token().cancelled().await;
    hub.shutdown().await;
    Ok(())
}

/// Cancels `token` on SIGTERM or Ctrl-C. The handlers are registered before
/// this returns, so a signal sent as soon as the hub says it listens is not
/// missed (and does not kill the process before it drains).
fn stop_on_signal(token: tokio_util::sync::CancellationToken) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = interrupt.recv() => {}
            }
            tracing::info!("shutting down: draining requests and deliveries");
            token.cancel();
        });
    }
    #[cfg(not(unix))]
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down: draining requests and deliveries");
        token.cancel();
    });
    Ok(())
}

async fn channels_command(settings: Settings, command: ChannelsCommand) -> anyhow::Result<()> {
    let store = open(&settings).await?;
    match command {
        ChannelsCommand::Create { kind, name } => {
            let kind: ChannelKind = kind.parse().map_err(anyhow::Error::msg)?;
            let name = ChannelName::parse(&name).map_err(|e| anyhow::anyhow!("name {e}"))?;
            let channel = channels::create(&store, kind, name, None, None).await?;
            out!(
                "{}\t{}\t{}",
                channel.id,
                channel.kind,
                channel.name.as_str()
            );
        }
        ChannelsCommand::List => {
            for channel in channels::list(store.reader(), None, i64::MAX).await? {
                out!(
                    "{}\t{}\t{}",
                    channel.id,
                    channel.kind,
                    channel.name.as_str()
                );
            }
        }
    }
    store.close().await;
    Ok(())
}

async fn keys_command(settings: Settings, command: KeysCommand) -> anyhow::Result<()> {
    let store = open(&settings).await?;
    match command {
        KeysCommand::Create {
            channel,
            scopes,
            name,
        } => {
            let channel_id = resolve_channel(&store, channel.as_deref()).await?;
            let scopes =
                Scopes::parse(scopes.iter().map(String::as_str)).map_err(anyhow::Error::msg)?;
            let (key, secret) = keys::create(&store, channel_id, name, scopes, None).await?;
            eprintln!(
                "key {} for channel {channel_id} ({})",
                key.id,
                key.scopes.names().join(",")
            );
            eprintln!("The secret is shown only now; store it safely:");
            out!("{secret}");
        }
        KeysCommand::List => {
            for key in keys::list(store.reader(), None, None, i64::MAX).await? {
                let state = if key.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                out!(
                    "{}\t{}\t{}…\t{}\t{}\t{}",
                    key.id,
                    key.channel_id,
                    key.prefix,
                    key.scopes.names().join(","),
                    state,
                    key.name
                );
            }
        }
        KeysCommand::Revoke { id } => {
            let key = keys::revoke(&store, id, None).await?;
            out!("revoked {}", key.id);
        }
    }
    store.close().await;
    Ok(())
}

async fn inventory_command(settings: Settings, command: InventoryCommand) -> anyhow::Result<()> {
    use crate::commerce::inventory::ledger;
    let store = open(&settings).await?;
    let (drifts, verb) = match command {
        InventoryCommand::Verify => (ledger::verify(&store).await?, "drifts"),
        InventoryCommand::Rebuild => (ledger::rebuild(&store).await?, "repaired"),
    };
    for d in &drifts {
        out!(
            "{}\t{}\tstored on_hand={} reserved={} incoming={} unsellable={} safety_stock={}\tledger on_hand={} reserved={} incoming={} unsellable={} safety_stock={}",
            d.sku,
            d.location_id,
            d.stored.on_hand,
            d.stored.reserved,
            d.stored.incoming,
            d.stored.unsellable,
            d.stored.safety_stock,
            d.ledger.on_hand,
            d.ledger.reserved,
            d.ledger.incoming,
            d.ledger.unsellable,
            d.ledger.safety_stock
        );
    }
    out!("{} {verb}", drifts.len());
    let holds = ledger::verify_holds(&store).await?;
    for h in &holds {
        out!(
            "{}\t{}\treserved={} but open reservations hold {}",
            h.sku,
            h.location_id,
            h.reserved,
            h.held
        );
    }
    out!("{} hold mismatches", holds.len());
    store.close().await;
    if (verb == "drifts" && !drifts.is_empty()) || !holds.is_empty() {
        std::process::exit(1);
    }
    Ok(())
}

async fn identity_command(settings: Settings, command: IdentityCommand) -> anyhow::Result<()> {
    let store = open(&settings).await?;
    match command {
        IdentityCommand::Rebuild => {
            let started = std::time::Instant::now();
            let progress = |phase: crate::customers::identity::rebuild::RebuildPhase,
                            done: usize| {
                eprintln!(
                    "{:>8.1} s  {}: {done}",
                    started.elapsed().as_secs_f64(),
                    phase.as_str()
                );
            };
            // Merges move guest carts as live ones do, on behalf of the
            // back-office channel.
            let channel = resolve_channel(&store, None).await?;
            let follow_up = Some((crate::app::server::follow_ups(), channel));
            let report =
                crate::customers::identity::rebuild(&store, None, &progress, follow_up).await?;
            out!(
                "identifiers={} links={} components={} profiles={} changed_identifiers={} merges={} splits={} status_changes={} blocked={} retracted_links={} rechecked_groups={} batches={} resolve_ms={} duration_ms={}",
                report.identifiers,
                report.links,
                report.components,
                report.profiles,
                report.changed_identifiers,
                report.merges,
                report.splits,
                report.status_changes,
                report.blocked,
                report.retracted_links,
                report.rechecked_groups,
                report.batches,
                report.resolve_ms,
                started.elapsed().as_millis()
            );
        }
    }
    store.close().await;
    Ok(())
}

/// A channel by id or name; none means the back-office channel, created when missing.
async fn resolve_channel(store: &Store, channel: Option<&str>) -> anyhow::Result<ChannelId> {
    let name = channel.unwrap_or(BACKOFFICE_CHANNEL_NAME);
    if let Ok(id) = name.parse::<ChannelId>() {
        return match channels::get(store.reader(), &id.to_string()).await? {
            Some(_) => Ok(id),
            None => anyhow::bail!("no channel with id {id}"),
        };
    }
    if let Some(found) = channels::find_by_name(store.reader(), name).await? {
        return Ok(found.id);
    }
    if channel.is_some() {
        anyhow::bail!("no channel named {name:?}; list them with `omnihub channels list`");
    }
    let name = ChannelName::parse(BACKOFFICE_CHANNEL_NAME).map_err(anyhow::Error::msg)?;
    Ok(
        channels::create(store, ChannelKind::Backoffice, name, None, None)
            .await?
            .id,
    )
}
