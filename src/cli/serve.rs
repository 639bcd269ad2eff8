//! `poplite serve`: the server in the foreground, with its seed users and
//! messages, signals (TERM and INT stop it, HUP reloads the certificate).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use smol::stream::StreamExt;

use super::args::ServeArgs;
use super::database::{read_first_line, Database};
use super::deliver::{deliver_inputs, Input};
use super::exit::CliError;
use super::values::{flatten, ApopArg, UserAndPassword};
use poplite::auth::{self, Argon2Params};
use poplite::mail::messages;
use poplite::protocol::secret::Secret;
use poplite::server::tls::Tls;
use poplite::server::{self, ApopMode, Server, ServerConfig};
use poplite::storage::Store;

/// `serve`: runs until TERM or INT.
pub fn serve(db: &Database, args: ServeArgs) -> Result<(), CliError> {
    if args.exit_with_parent {
        exit_with_parent()?;
    }
    // Before the database: a bad certificate is a configuration error
    // that should not leave a new, empty database behind.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(Tls::load(cert, key)?)),
        _ => None,
    };
    let http_token = http_token(&args)?;
    let store = Arc::new(match args.memory {
        true => Store::open_in_memory()?,
        false => db.open()?,
    });
    seed(&store, &args.users, args.seed.as_deref(), args.memory)?;
    // A throwaway server's clients are the test suite on this host.
    let mut trusted_networks = args.trusted_networks;
    if args.memory {
        trusted_networks.extend(server::Network::loopback());
    }
    if args.idle_timeout < Duration::from_secs(600) {
        log::warn!("--idle-timeout below RFC 1939's minimum of 10 minutes");
    }
    let config = ServerConfig {
        listen: flatten(args.listen),
        listen_tls: flatten(args.listen_tls),
        tls: tls.clone(),
        allow_plaintext_auth: args.allow_plaintext_auth,
        max_connections_per_ip: args.max_connections_per_ip,
        trusted_networks,
        proxy_protocol_from: args.proxy_protocol_from,
        sasl_without_tls: args.sasl_mechanisms.0,
        sasl_with_tls: args.sasl_mechanisms_tls.0,
        idle_timeout: args.idle_timeout,
        lock_lease: args.lock_lease,
        max_connections: args.max_connections as usize,
        auth_failure_delay: args.auth_failure_delay,
        max_command_line: usize::from(args.max_command_line),
        max_bad_commands: args.max_bad_commands,
        lmtp: args.lmtp,
        max_message_size: args.max_message_size,
        max_lmtp_connections: args.max_lmtp_connections as usize,
        smtp: args.smtp,
        smtp_allow_remote: args.smtp_allow_remote,
        max_smtp_connections: args.max_smtp_connections as usize,
        apop: match args.apop {
            ApopArg::Auto => ApopMode::Auto,
            ApopArg::Always => ApopMode::Always,
            ApopArg::Never => ApopMode::Never,
        },
        http: args.http,
        http_token,
        http_allow_reset: args.http_allow_reset,
        max_http_connections: args.max_http_connections as usize,
        hostname: args
            .hostname
            .unwrap_or_else(|| ServerConfig::default().hostname),
        ..ServerConfig::default()
    };
    use async_signal::Signal;
    let mut signals = async_signal::Signals::new([Signal::Term, Signal::Int, Signal::Hup])
        .map_err(CliError::Signals)?;
    server::run_on_executor(|executor| async move {
        let server = Server::bind(Arc::clone(&store), config).await?;
        let mut stdout = std::io::stdout().lock();
        for addr in server.local_addrs() {
            log::info!("listening on {addr}");
            // One flushed line per address: test harnesses read the port here.
            let _ = writeln!(stdout, "poplite listening on {addr}");
        }
        for addr in server.tls_addrs() {
            log::info!("listening on {addr} (TLS)");
            let _ = writeln!(stdout, "poplite listening on {addr} (TLS)");
        }
        for addr in server.lmtp_addrs() {
            log::info!("listening on {addr} (LMTP)");
            let _ = writeln!(stdout, "poplite listening on {addr} (LMTP)");
        }
        if let Some(addr) = server.smtp_addr() {
            log::info!("listening on {addr} (SMTP)");
            let _ = writeln!(stdout, "poplite listening on {addr} (SMTP)");
        }
        if let Some(addr) = server.http_addr() {
            log::info!("listening on {addr} (HTTP)");
            let _ = writeln!(stdout, "poplite listening on {addr} (HTTP)");
        }
        let _ = stdout.flush();
        drop(stdout);
        log::info!("database: {}", store.describe());
        let no_users = smol::unblock({
            let store = Arc::clone(&store);
            move || store.users().map(|users| users.is_empty())
        })
        .await?;
        if no_users && store.is_in_memory() {
            log::info!("no users: in memory, add them with --user NAME:PASSWORD");
        } else if no_users {
            log::info!(
                "no users yet: add one with `poplite --db {} user add NAME`",
                store.describe()
            );
        }
        server
            .run(&executor, async move {
                while let Some(Ok(signal)) = signals.next().await {
                    if signal != Signal::Hup {
                        log::info!("received {signal:?}");
                        return;
                    }
                    reload_tls(tls.clone()).await;
                }
            })
            .await;
        Ok(())
    })
}

/// The API's bearer token: from `--http-token-file`, else
/// `POPLITE_HTTP_TOKEN`; never empty.
fn http_token(args: &ServeArgs) -> Result<Option<Secret>, CliError> {
    let token = match (&args.http_token_file, &args.http_token) {
        (Some(path), _) => read_first_line(path).map_err(|source| CliError::HttpTokenFile {
            path: path.clone(),
            source,
        })?,
        (None, Some(token)) => Secret::new(token.as_bytes()),
        (None, None) => return Ok(None),
    };
    match token.is_empty() {
        true => Err(CliError::EmptyHttpToken),
        false => Ok(Some(token)),
    }
}

/// `serve --user` and `--seed`: users first (cheap hashes in memory, where
/// nothing outlives the process), then each user's folder of messages.
fn seed(
    store: &Store,
    users: &[UserAndPassword],
    dir: Option<&std::path::Path>,
    memory: bool,
) -> Result<(), CliError> {
    let params = match memory {
        true => Argon2Params::CHEAP,
        false => Argon2Params::default(),
    };
    for user in users {
        let hash = auth::hash_password(user.password.as_bytes(), params)?;
        match store.credentials(&user.name)? {
            Some(existing) => store.set_password(&existing.name, &hash, None)?,
            None => store.add_user(&user.name, &hash, None)?,
        }
    }
    let Some(dir) = dir else {
        return Ok(());
    };
    let open_error = |path: &std::path::Path| {
        let input = path.display().to_string();
        move |error| CliError::Open { input, error }
    };
    // The entries of `dir` that `keep` accepts, in name order.
    let sorted = |dir: &std::path::Path, keep: fn(&std::path::Path) -> bool| {
        let entries: Result<Vec<PathBuf>, _> = std::fs::read_dir(dir)
            .and_then(|entries| entries.map(|entry| entry.map(|e| e.path())).collect());
        let mut entries = entries.map_err(open_error(dir))?;
        entries.retain(|path| keep(path));
        entries.sort();
        Ok::<_, CliError>(entries)
    };
    for folder in sorted(dir, |path| path.is_dir())? {
        let user = folder
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let is_message =
            |path: &std::path::Path| path.is_file() && path.extension().is_some_and(|e| e == "eml");
        let inputs = sorted(&folder, is_message)?
            .into_iter()
            .map(Input::File)
            .collect::<Vec<_>>();
        let delivered = deliver_inputs(store, &user, &inputs, server::DEFAULT_MAX_MESSAGE_SIZE)?;
        log::info!(
            "seeded {user} with {} from {}",
            messages(delivered.len() as u64),
            folder.display()
        );
    }
    Ok(())
}

/// SIGHUP: rereads the certificate and key (certbot renewals). Sessions
/// keep the certificate they started with; new handshakes use the new one.
async fn reload_tls(tls: Option<Arc<Tls>>) {
    let Some(tls) = tls else {
        log::info!("received SIGHUP: no TLS certificate to reload");
        return;
    };
    let reloaded = smol::unblock({
        let tls = Arc::clone(&tls);
        move || tls.reload()
    })
    .await;
    match reloaded {
        Ok(()) => log::info!("received SIGHUP: reloaded {}", tls.cert_path().display()),
        Err(error) => log::error!("received SIGHUP: {error}; keeping the previous certificate"),
    }
}

/// Has the kernel send SIGTERM when the parent dies, so a test harness that
/// is killed (a CI timeout, SIGKILL) leaves no server behind; the usual
/// graceful stop follows. Asked for by the parent, so a parent that died
/// before this call is not detected: that window is the few milliseconds
/// between exec and here.
#[cfg(target_os = "linux")]
fn exit_with_parent() -> Result<(), CliError> {
    use rustix::process::{set_parent_process_death_signal, Signal};
    set_parent_process_death_signal(Some(Signal::TERM))
        .map_err(|e| CliError::ExitWithParent(e.into()))
}

/// Only Linux has a parent-death signal.
#[cfg(not(target_os = "linux"))]
fn exit_with_parent() -> Result<(), CliError> {
    Err(CliError::ExitWithParent(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "there is no parent-death signal on this system (Linux only)",
    )))
}
