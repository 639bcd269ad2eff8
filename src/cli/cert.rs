//! `poplite cert self-signed`: a certificate and key for STLS and POP3S.

use std::io::Write;
use std::path::PathBuf;

use super::exit::CliError;
use super::say;
use poplite::server::tls;
use poplite::server::ServerConfig;

/// Writes a self-signed certificate and its key (readable by the owner only).
pub fn self_signed(dir: &std::path::Path, names: Vec<String>, force: bool) -> Result<(), CliError> {
    let names = if names.is_empty() {
        let host = ServerConfig::default().hostname;
        let mut names = vec![host, "localhost".into(), "127.0.0.1".into(), "::1".into()];
        names.dedup();
        names
    } else {
        names
    };
    let (cert, key) = tls::self_signed(&names)?;
    let create_error = |path: &std::path::Path| {
        let path = path.display().to_string();
        move |error| CliError::Create { path, error }
    };
    std::fs::create_dir_all(dir).map_err(create_error(dir))?;
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
    let files = [(&key_path, &key, 0o600), (&cert_path, &cert, 0o644)];
    // Both checked before either is written: a refusal changes nothing.
    if !force {
        for (path, _, _) in &files {
            if path.symlink_metadata().is_ok() {
                let exists = std::io::Error::other("it exists (use --force to replace it)");
                return Err(create_error(path)(exists));
            }
        }
    }
    for (path, contents, mode) in files {
        write_replacing(path, contents.as_bytes(), mode).map_err(create_error(path))?;
    }
    say(format_args!(
        "wrote {} and {} for {}",
        cert_path.display(),
        key_path.display(),
        names.join(", ")
    ));
    Ok(())
}

/// Writes `path` whole under a temporary name, then renames it into
/// place: a failure leaves the old file, never half a new one, and the new
/// file gets `mode` whatever the old one had (a loosened key stays private).
fn write_replacing(path: &std::path::Path, contents: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".new");
    let temporary = PathBuf::from(temporary);
    let _ = std::fs::remove_file(&temporary);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)?;
    let written = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(&temporary, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}
