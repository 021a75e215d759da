//! The `ewall` command: parses flags, sets up logging, and calls into the library. Signals
//! become a cancellation; everything else lives in the library where it can be tested.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use ewall::config::Config;
use ewall::decode::{decode_frame_as, FrameInput};
use ewall::store::Role;
use ewall_protocol::Protocol;
use tracing_subscriber::EnvFilter;

/// Real-time GPS electronic-fence monitoring.
#[derive(Debug, Parser)]
#[command(name = "ewall", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: device listeners, fence engine, store and HTTP API.
    Serve(ConfigArg),
    /// Decode one captured frame and print each message as a JSON line.
    Decode {
        /// Protocol: gt06, jt808, h02, watch or osmand.
        #[arg(long)]
        protocol: Protocol,
        /// The frame is hex (binary protocols always take hex).
        #[arg(long)]
        hex: bool,
        /// The device model, for the codes some models read otherwise (e.g. LW4G-4B, AL300).
        #[arg(long)]
        model: Option<String>,
        /// The frame: hex bytes, protocol text, an OsmAnd request target or JSON body.
        frame: String,
    },
    /// Check points against zones in bulk and report the counts and the speed.
    Fence {
        /// A GeoJSON FeatureCollection of zones.
        #[arg(long)]
        zones: PathBuf,
        /// A CSV file with `lon,lat` per line.
        #[arg(long)]
        points: PathBuf,
        /// Worker threads.
        #[arg(long, default_value_t = 1)]
        threads: usize,
    },
    /// Play many devices against a running service and print a JSON summary of what it
    /// acknowledged, how fast, and the alerts raised.
    Simulate(Box<ewall::simulate::SimulateArgs>),
    /// Manage API tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Create or upgrade the database schema.
    Migrate(ConfigArg),
    /// Check or export the audit trail (hash-chained positions, alerts and actions).
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Recompute the hash chains; print a JSON summary and exit non-zero on any altered,
    /// inserted or deleted record.
    Verify {
        /// Only this device's positions and alerts.
        #[arg(long)]
        device: Option<String>,
        /// Only records at or after this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        from: Option<chrono::DateTime<chrono::Utc>>,
        /// Only records at or before this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// Write a person's positions, alerts and actions with their hashes as JSON lines.
    Export {
        /// The person's id.
        #[arg(long)]
        person: uuid::Uuid,
        /// From this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        from: chrono::DateTime<chrono::Utc>,
        /// To this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        to: chrono::DateTime<chrono::Utc>,
        /// Write to this file instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        #[command(flatten)]
        config: ConfigArg,
    },
}

fn parse_time(text: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("{text:?} is not an RFC 3339 time like 2026-01-31T08:00:00Z: {e}"))
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token and print it (it is shown only once).
    Create {
        /// admin, operator or integration.
        #[arg(long)]
        role: String,
        /// Who or what will hold the token.
        #[arg(long)]
        label: Option<String>,
        /// Make the token stop working after this long (`30d`, `12h`); without it, it never
        /// expires.
        #[arg(long, value_parser = parse_expiry)]
        expires_in: Option<std::time::Duration>,
        #[command(flatten)]
        config: ConfigArg,
    },
    /// List every token, one JSON object a line (never the secrets: only hashes are kept).
    List(ConfigArg),
    /// Revoke a token by its id; it is refused from then on.
    Revoke {
        /// The token's id, as `token list` shows it.
        id: String,
        #[command(flatten)]
        config: ConfigArg,
    },
}

fn parse_expiry(text: &str) -> Result<std::time::Duration, String> {
    let duration = humantime::parse_duration(text)
        .map_err(|e| format!("{text:?} is not a duration like 30d or 12h: {e}"))?;
    if duration.is_zero() {
        return Err("the expiry must be longer than zero".into());
    }
    Ok(duration)
}

#[derive(Debug, Args)]
struct ConfigArg {
    /// Configuration file (TOML); without it the embedded defaults apply.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

impl ConfigArg {
    fn load(&self) -> anyhow::Result<Config> {
        Ok(Config::from_env(self.config.as_deref())?)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into());
    // The embedded broker logs every connection and reports a client's ordinary disconnect as an
    // error; ewall logs what matters about MQTT itself. `RUST_LOG=...,rumqttd=info` shows it.
    let filter = if filter.contains("rumqttd") {
        filter
    } else {
        format!("{filter},rumqttd=off")
    };
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_new(&filter).unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => {
            let config = config.load()?;
            runtime()?.block_on(serve(config))
        }
        Command::Decode {
            protocol,
            hex,
            model,
            frame,
        } => decode(protocol, hex, model.as_deref(), &frame),
        Command::Fence {
            zones,
            points,
            threads,
        } => fence(&zones, &points, threads),
        Command::Simulate(args) => {
            let summary = ewall::simulate::runtime(args.threads)
                .context("starting the async runtime")?
                .block_on(ewall::simulate::run(*args))?;
            println!("{summary}");
            Ok(())
        }
        Command::Token { command } => token(command),
        Command::Audit { command } => audit(command),
        Command::Migrate(config) => {
            let config = config.load()?;
            runtime()?.block_on(async {
                let url = config.store_url();
                let shown = ewall::store::redact_url(&url);
                ewall::store::open_with(&url, &config.store)
                    .await
                    .with_context(|| format!("migrating the store at {shown}"))?;
                println!("Schema of {shown} is up to date.");
                Ok(())
            })
        }
    }
}

fn audit(command: AuditCommand) -> anyhow::Result<()> {
    let config = match &command {
        AuditCommand::Verify { config, .. } | AuditCommand::Export { config, .. } => {
            config.load()?
        }
    };
    runtime()?.block_on(async {
        let url = config.store_url();
        let store = ewall::store::open_with(&url, &config.store)
            .await
            .with_context(|| format!("opening the store at {}", ewall::store::redact_url(&url)))?;
        match command {
            AuditCommand::Verify {
                device, from, to, ..
            } => {
                let key = ewall::audit::checkpoint_key(&config.audit, &config.data_dir, false)?;
                let options = ewall::audit::VerifyOptions {
                    device: device.map(|d| ewall::identity::normalise(&d).into_owned()),
                    from,
                    to,
                    key,
                };
                let summary = ewall::audit::verify(store.as_ref(), &options)
                    .await
                    .context("verifying the audit trail")?;
                println!("{}", serde_json::to_string(&summary)?);
                if let Some(broken) = summary.broken {
                    bail!(
                        "the audit trail is broken at {} {} ({}): {}",
                        broken.table,
                        broken.id.as_deref().unwrap_or("-"),
                        broken.chain,
                        broken.reason
                    );
                }
            }
            AuditCommand::Export {
                person,
                from,
                to,
                out,
                ..
            } => {
                if from > to {
                    bail!("--from must not be after --to");
                }
                let summary = match &out {
                    Some(path) => {
                        let file = std::fs::File::create(path)
                            .with_context(|| format!("creating {}", path.display()))?;
                        let mut writer = std::io::BufWriter::new(file);
                        ewall::audit::export(store.as_ref(), person, from, to, &mut writer).await?
                    }
                    None => {
                        let stdout = std::io::stdout();
                        let mut writer = stdout.lock();
                        ewall::audit::export(store.as_ref(), person, from, to, &mut writer).await?
                    }
                };
                eprintln!("{}", serde_json::to_string(&summary)?);
            }
        }
        Ok(())
    })
}

fn token(command: TokenCommand) -> anyhow::Result<()> {
    let config = match &command {
        TokenCommand::Create { config, .. }
        | TokenCommand::List(config)
        | TokenCommand::Revoke { config, .. } => config.load()?,
    };
    // Token changes made here are recorded in the audit trail as the command line's.
    let scope = ewall::store::chain::with_actor(Some("cli".into()), async {
        let url = config.store_url();
        let store = ewall::store::open_with(&url, &config.store)
            .await
            .with_context(|| format!("opening the store at {}", ewall::store::redact_url(&url)))?;
        match command {
            TokenCommand::Create {
                role,
                label,
                expires_in,
                ..
            } => {
                let role: Role = role.parse().map_err(anyhow::Error::msg)?;
                let label = label
                    .as_deref()
                    .map(|l| ewall::api::text::check_name("--label", l))
                    .transpose()
                    .map_err(|p| anyhow::Error::msg(p.detail))?;
                let expires_at = expires_in
                    .map(|d| -> anyhow::Result<_> {
                        let d =
                            chrono::Duration::from_std(d).context("--expires-in is too long")?;
                        chrono::Utc::now()
                            .checked_add_signed(d)
                            .context("--expires-in is too long")
                    })
                    .transpose()?;
                let (record, secret) =
                    ewall::api::auth::create_token_until(store.as_ref(), role, label, expires_at)
                        .await
                        .context("storing the token")?;
                let until = record
                    .expires_at
                    .map_or_else(String::new, |t| format!(", valid until {}", t.to_rfc3339()));
                println!(
                    "Created {} token {}{until}. It is shown only this once:\n{secret}",
                    record.role.as_str(),
                    record.id
                );
            }
            TokenCommand::List(_) => {
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                for record in store.tokens().await.context("listing tokens")? {
                    writeln!(out, "{}", ewall::api::tokens::token_json(&record))?;
                }
            }
            TokenCommand::Revoke { id, .. } => {
                let uuid: uuid::Uuid = id.parse().map_err(|_| {
                    anyhow::anyhow!("{id:?} is not a token id; see `ewall token list`")
                })?;
                let record = store
                    .revoke_token(uuid, chrono::Utc::now())
                    .await
                    .with_context(|| format!("revoking token {id}"))?;
                println!(
                    "Revoked {} token {} (at {}).",
                    record.role.as_str(),
                    record.id,
                    record
                        .revoked_at
                        .map_or_else(String::new, |t| t.to_rfc3339())
                );
            }
        }
        Ok(())
    });
    runtime()?.block_on(scope)
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

async fn serve(config: Config) -> anyhow::Result<()> {
    // Take over SIGINT/SIGTERM before any listener accepts a device: from then on a signal must
    // start the ordered shutdown, never end the process with the default action and lose what
    // was decoded but not yet committed.
    let signal = shutdown_signal()?;
    let running = ewall::server::start(config).await?;
    // One machine-readable line on stdout with the bound addresses (useful with port 0).
    let mut addresses = serde_json::Map::new();
    addresses.insert("http".into(), running.http_addr.to_string().into());
    for (name, addr) in &running.listeners {
        addresses.insert((*name).into(), addr.to_string().into());
    }
    println!(
        "{}",
        serde_json::json!({ "event": "listening", "addresses": addresses })
    );
    std::io::stdout().flush().ok();
    let token = running.token.clone();
    tokio::spawn(async move {
        signal.await;
        token.cancel();
    });
    if !running.stopped().await {
        bail!("the shutdown timeout cut connections short; see the log");
    }
    Ok(())
}

/// Registers the shutdown signals at once and returns a future that resolves on the first one.
/// (`tokio::signal::ctrl_c` registers only when first polled, which leaves a window in which a
/// signal kills the process outright.)
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut interrupt = signal(SignalKind::interrupt()).context("handling SIGINT")?;
        let mut terminate = signal(SignalKind::terminate()).context("handling SIGTERM")?;
        Ok(async move {
            tokio::select! {
                _ = interrupt.recv() => {},
                _ = terminate.recv() => {},
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
        })
    }
}

fn decode(protocol: Protocol, hex: bool, model: Option<&str>, frame: &str) -> anyhow::Result<()> {
    let input = if hex {
        FrameInput::Hex(frame)
    } else {
        FrameInput::Native(frame)
    };
    let output = decode_frame_as(protocol, input, model)?;
    for warning in &output.warnings {
        eprintln!("warning: {warning}");
    }
    if output.lines.is_empty() {
        bail!("the frame decoded to nothing");
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    for line in output.lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn fence(zones: &std::path::Path, points: &std::path::Path, threads: usize) -> anyhow::Result<()> {
    let zones_text = std::fs::read_to_string(zones)
        .with_context(|| format!("reading zones from {}", zones.display()))?;
    let points_text = std::fs::read_to_string(points)
        .with_context(|| format!("reading points from {}", points.display()))?;
    let report = ewall::fence::run_batch(&zones_text, &points_text, threads)
        .with_context(|| format!("checking {} against {}", points.display(), zones.display()))?;
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
