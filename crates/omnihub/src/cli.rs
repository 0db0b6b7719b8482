//! The `omnihub` command line.

use clap::{Parser, Subcommand};

use crate::channels::{self, BACKOFFICE_CHANNEL_NAME, ChannelKind, ChannelName};
use crate::config::{LogFormat, Settings, SettingsArgs};
use crate::ids::{ChannelId, KeyId};
use crate::keys::{self, Scopes};
use crate::server::Hub;
use crate::storage::{Store, migrate};

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
    Migrate,
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
    /// Print the OpenAPI document.
    Openapi,
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

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let settings = cli.settings.resolve()?;
    init_logging(&settings);
    match cli.command {
        Command::Serve => serve(settings).await,
        Command::Migrate => {
            let store = Store::connect(&settings.store_options()).await?;
            let applied = migrate::run(&store).await?;
            println!(
                "schema at version {} ({} applied now)",
                migrate::latest_version(),
                applied.len()
            );
            Ok(())
        }
        Command::Channels(command) => channels_command(settings, command).await,
        Command::Keys(command) => keys_command(settings, command).await,
        Command::Inventory(command) => inventory_command(settings, command).await,
        Command::Identity(command) => identity_command(settings, command).await,
        Command::Openapi => {
            println!("{}", crate::http::openapi::document_json());
            Ok(())
        }
    }
}

fn init_logging(settings: &Settings) {
    let filter = tracing_subscriber::EnvFilter::try_new(&settings.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match settings.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

async fn open(settings: &Settings) -> anyhow::Result<Store> {
    let store = Store::connect(&settings.store_options()).await?;
    migrate::run(&store).await?;
    Ok(store)
}

async fn serve(settings: Settings) -> anyhow::Result<()> {
    let hub = Hub::start(settings.clone()).await?;
    let base = format!("http://{}", hub.addr);
    println!("omnihub listening on {base}");
    if let Some(metrics) = hub.metrics_addr {
        println!("metrics on http://{metrics}/metrics");
    }
    println!(
        "database: {}",
        crate::storage::redact_url(&settings.database_url)
    );
    if keys::store::count_active(hub.state.store.reader()).await? == 0 {
        println!("No API keys yet. Create an admin key with:");
        println!("  omnihub keys create --scopes admin");
        println!(
            "then call the API with: curl -H 'Authorization: Bearer <secret>' {base}/v1/channels"
        );
    }
    let token = hub.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: draining requests and deliveries");
        token.cancel();
    });
    hub.shutdown_token().cancelled().await;
    hub.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn channels_command(settings: Settings, command: ChannelsCommand) -> anyhow::Result<()> {
    let store = open(&settings).await?;
    match command {
        ChannelsCommand::Create { kind, name } => {
            let kind: ChannelKind = kind.parse().map_err(anyhow::Error::msg)?;
            let name = ChannelName::parse(&name).map_err(|e| anyhow::anyhow!("name {e}"))?;
            let channel = channels::create(&store, kind, name, None, None).await?;
            println!(
                "{}\t{}\t{}",
                channel.id,
                channel.kind,
                channel.name.as_str()
            );
        }
        ChannelsCommand::List => {
            for channel in channels::store::list(store.reader(), None, i64::MAX).await? {
                println!(
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
            println!("{secret}");
        }
        KeysCommand::List => {
            for key in keys::store::list(store.reader(), None, None, i64::MAX).await? {
                let state = if key.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
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
            println!("revoked {}", key.id);
        }
    }
    store.close().await;
    Ok(())
}

async fn inventory_command(settings: Settings, command: InventoryCommand) -> anyhow::Result<()> {
    use crate::inventory::ledger;
    let store = open(&settings).await?;
    let (drifts, verb) = match command {
        InventoryCommand::Verify => (ledger::verify(&store).await?, "drifts"),
        InventoryCommand::Rebuild => (ledger::rebuild(&store).await?, "repaired"),
    };
    for d in &drifts {
        println!(
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
    println!("{} {verb}", drifts.len());
    let holds = ledger::verify_holds(&store).await?;
    for h in &holds {
        println!(
            "{}\t{}\treserved={} but open reservations hold {}",
            h.sku, h.location_id, h.reserved, h.held
        );
    }
    println!("{} hold mismatches", holds.len());
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
            let progress = |phase: crate::identity::rebuild::RebuildPhase, done: usize| {
                eprintln!(
                    "{:>8.1} s  {}: {done}",
                    started.elapsed().as_secs_f64(),
                    phase.as_str()
                );
            };
            let report = crate::identity::rebuild(&store, None, &progress).await?;
            println!(
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
        return match channels::store::get(store.reader(), &id.to_string()).await? {
            Some(_) => Ok(id),
            None => anyhow::bail!("no channel with id {id}"),
        };
    }
    if let Some(found) = channels::store::find_by_name(store.reader(), name).await? {
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
