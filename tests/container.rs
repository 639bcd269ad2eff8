//! The container image (Dockerfile, dist/build-image.sh) as a user runs it:
//! a throwaway server fetched with poplib through a published loopback
//! port, mail on a volume surviving a restart, TLS from mounted files, a
//! non-root user, its own HEALTHCHECK, a quick clean `docker stop`, and
//! the Testcontainers, compose and GitHub Actions recipes of docs/packaging.md.
//! The image is built before the tests (`.ci/run`); its name comes from
//! POPLITE_TEST_IMAGE. Everything a test starts is removed by id.

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::Client;

/// The image under test, or `None` (skipped) outside CI.
fn image() -> Option<String> {
    common::built_package("POPLITE_TEST_IMAGE", "dist/build-image.sh")
}

/// `docker ARGS…`, bounded by `timeout`; its output, asserted successful.
fn docker(args: &[&str]) -> String {
    let output = docker_output(args, None);
    assert!(
        output.status.success(),
        "docker {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn docker_output(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new("timeout")
        .arg("120")
        .arg("docker")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("timeout and docker run");
    if let Some(input) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(input).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// A container this test started; removed (by id) when dropped.
struct Container {
    id: String,
}

impl Container {
    /// `docker run -d` with ARGS before the image and CMD after it.
    fn run(image: &str, args: &[&str], cmd: &[&str]) -> Container {
        let mut all = vec!["run", "-d"];
        all.extend_from_slice(args);
        all.push(image);
        all.extend_from_slice(cmd);
        Container { id: docker(&all) }
    }

    /// Where the container's `port`/tcp is published on the host's loopback.
    fn port(&self, port: u16) -> std::net::SocketAddr {
        let published = docker(&["port", &self.id, &format!("{port}/tcp")]);
        published
            .lines()
            .find_map(|line| line.parse().ok())
            .unwrap_or_else(|| panic!("port {port} not published: {published}"))
    }

    /// Waits (bounded) for the POP3 greeting on `addr`.
    fn wait_for_pop3(&self, addr: std::net::SocketAddr) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(stream) = std::net::TcpStream::connect(addr) {
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut line = String::new();
                let mut reader = std::io::BufReader::new(stream);
                if std::io::BufRead::read_line(&mut reader, &mut line).is_ok()
                    && line.starts_with("+OK")
                {
                    return;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("no POP3 greeting on {addr}: {}", self.logs());
    }

    /// `docker exec -i` of `command` with `stdin`, asserted successful.
    fn exec(&self, command: &[&str], stdin: &[u8]) {
        let mut args = vec!["exec", "-i", self.id.as_str()];
        args.extend_from_slice(command);
        let output = docker_output(&args, Some(stdin));
        assert!(
            output.status.success(),
            "{command:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }

    fn logs(&self) -> String {
        let output = docker_output(&["logs", &self.id], None);
        String::from_utf8_lossy(&output.stderr).into_owned()
    }

    fn inspect(&self, format: &str) -> String {
        docker(&["inspect", "--format", format, &self.id])
    }

    /// Waits (bounded) until the image's HEALTHCHECK says healthy.
    fn wait_until_healthy(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut status = String::new();
        while Instant::now() < deadline {
            status = self.inspect("{{.State.Health.Status}}");
            if status == "healthy" {
                return;
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("health {status:?} after 30 s: {}", self.logs());
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = docker_output(&["rm", "-f", "-v", &self.id], None);
    }
}

/// A throwaway server: in memory, alice seeded, POP3 on a loopback port.
fn throwaway(image: &str, extra: &[&str]) -> (Container, std::net::SocketAddr) {
    let mut args = vec![
        "-p",
        "127.0.0.1::1110",
        "-e",
        "POPLITE_MEMORY=true",
        "-e",
        "POPLITE_USERS=alice:secret",
    ];
    args.extend_from_slice(extra);
    let container = Container::run(image, &args, &[]);
    let addr = container.port(1110);
    container.wait_for_pop3(addr);
    (container, addr)
}

#[test]
fn a_throwaway_server_is_fetched_with_poplib_through_a_published_port() {
    let Some(image) = image() else { return };
    let (_container, addr) = throwaway(&image, &[]);
    let script = format!(
        "import poplib\n\
         pop = poplib.POP3('{}', {}, timeout=10)\n\
         pop.user('alice'); pop.pass_('secret')\n\
         print(pop.stat())\n\
         pop.quit()\n",
        addr.ip(),
        addr.port()
    );
    let output = common::run_checked(Command::new("python3").args(["-c", &script]));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "(0, 0)");
}

#[test]
fn it_runs_as_a_numeric_non_root_user_and_reports_healthy() {
    let Some(image) = image() else { return };
    let (container, _) = throwaway(&image, &["--health-interval", "1s"]);
    assert_eq!(container.inspect("{{.Config.User}}"), "10001:10001");
    let users = docker(&["top", &container.id, "-o", "uid,pid,comm"]);
    let server = users
        .lines()
        .find(|line| line.contains("poplite"))
        .unwrap_or_default();
    assert!(server.trim_start().starts_with("10001"), "{users}");
    container.wait_until_healthy();
}

#[test]
fn docker_stop_ends_it_gracefully_and_quickly() {
    let Some(image) = image() else { return };
    let (container, _) = throwaway(&image, &[]);
    let started = Instant::now();
    docker(&["stop", "--time", "10", &container.id]);
    let took = started.elapsed();
    assert_eq!(container.inspect("{{.State.ExitCode}}"), "0");
    // Not the 10 s kill: SIGTERM reached poplite as PID 1.
    assert!(took < Duration::from_secs(5), "docker stop took {took:?}");
}

#[test]
fn mail_on_a_volume_survives_a_restart_and_users_come_from_docker_exec() {
    let Some(image) = image() else { return };
    let volume = docker(&["volume", "create"]);
    let mount = format!("{volume}:/data");
    let result = std::panic::catch_unwind(|| {
        let container = Container::run(&image, &["-p", "127.0.0.1::1110", "-v", &mount], &[]);
        // A fresh volume: serve made the database and waits for users.
        container.exec(
            &["/poplite", "user", "add", "alice", "--password-stdin"],
            b"secret\n",
        );
        container.exec(
            &["/poplite", "deliver", "alice"],
            b"Subject: kept\r\n\r\nstill here\r\n",
        );
        docker(&["restart", "--time", "10", &container.id]);
        let addr = container.port(1110);
        container.wait_for_pop3(addr);
        let mut client = Client::connect(addr);
        client.login("alice", "secret");
        let (_, message) = client.multi("RETR 1");
        assert!(String::from_utf8_lossy(&message).contains("still here"));
        client.cmd("QUIT");
    });
    let _ = docker_output(&["volume", "rm", "-f", &volume], None);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

#[test]
fn tls_comes_from_mounted_certificate_files() {
    let Some(image) = image() else { return };
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates_to_mount(dir.path());
    let mount = format!("{}:/certs:ro", certs.display());
    let (container, _) = throwaway(
        &image,
        &[
            "-v",
            &mount,
            "-p",
            "127.0.0.1::1995",
            "-e",
            "POPLITE_TLS_CERT=/certs/cert.pem",
            "-e",
            "POPLITE_TLS_KEY=/certs/key.pem",
            "-e",
            "POPLITE_LISTEN_TLS=0.0.0.0:1995",
        ],
    );
    let addr = container.port(1995);
    let mut client = Client::connect_tls(addr, &certs.join("cert.pem"));
    assert!(client.greeting.starts_with("+OK"), "{}", client.greeting);
    client.login("alice", "secret");
    client.cmd("QUIT");
}

/// `cert.pem` and `key.pem` for 127.0.0.1 in a new directory under
/// `dir`, readable by the container's user 10001, as a mount wants them.
fn certificates_to_mount(dir: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let certs = dir.join("certs");
    std::fs::create_dir(&certs).unwrap();
    common::write_cert(&certs);
    for (path, mode) in [(certs.join("key.pem"), 0o644), (certs.clone(), 0o755)] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    certs
}

#[test]
fn the_image_is_at_most_20_mb() {
    let Some(image) = image() else { return };
    let size: u64 = docker(&["image", "inspect", "--format", "{{.Size}}", &image])
        .parse()
        .unwrap();
    assert!(size <= 20_000_000, "{size} octets");
}

#[test]
fn the_documented_testcontainers_recipe_passes() {
    let Some(image) = image() else { return };
    let has_module = Command::new("python3")
        .args(["-c", "import testcontainers, pytest"])
        .status()
        .is_ok_and(|status| status.success());
    if !has_module {
        common::skip_unless_ci("testcontainers (PyPI) is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let module = dir.path().join("test_poplite_container.py");
    let recipe = common::doc_block(
        "docs/packaging.md",
        "### Testcontainers, from Python",
        "python",
    );
    std::fs::write(&module, recipe).unwrap();
    let output = Command::new("timeout")
        .args([
            "300",
            "python3",
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
        ])
        .arg(&module)
        .env("POPLITE_IMAGE", &image)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_home_lab_compose_file_serves_pop3_and_pop3s_with_mounted_certificates() {
    let Some(image) = image() else { return };
    if Command::new("docker-compose")
        .arg("version")
        .output()
        .is_err()
    {
        common::skip_unless_ci("docker-compose not installed");
        return;
    }
    assert_eq!(
        image, "poplite:latest",
        "dist/compose.yaml names poplite:latest"
    );
    let dir = tempfile::tempdir().unwrap();
    let certs = certificates_to_mount(dir.path());
    let compose_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/compose.yaml");
    let project = format!("poplite-test-{}", std::process::id());
    let compose = |args: &[&str]| {
        let output = Command::new("timeout")
            .args(["120", "docker-compose", "-p", &project, "-f"])
            .arg(&compose_file)
            .args(args)
            .env("POPLITE_TLS_DIR", &certs)
            // "127.0.0.1:" + ":1110": a free port on the host's loopback.
            .env("POPLITE_POP3_PUBLISH", "127.0.0.1:")
            .env("POPLITE_POP3S_PUBLISH", "127.0.0.1:")
            .output()
            .unwrap();
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    };
    let result = std::panic::catch_unwind(|| {
        let (up, said) = compose(&["up", "-d"]);
        assert!(up, "{said}");
        let port = |port: &str| -> std::net::SocketAddr {
            let (ok, said) = compose(&["port", "poplite", port]);
            assert!(ok, "{said}");
            said.trim().parse().unwrap_or_else(|_| panic!("{said}"))
        };
        let (pop3, pop3s) = (port("1110"), port("1995"));
        let id = compose(&["ps", "-q", "poplite"]).1.trim().to_string();
        let container = Container { id };
        container.exec(
            &["/poplite", "user", "add", "alice", "--password-stdin"],
            b"secret\n",
        );
        container.wait_for_pop3(pop3);
        // From outside the container, with TLS configured: STLS before a
        // password (plaintext passwords are for loopback only).
        let mut client = Client::connect(pop3);
        client.stls(&certs.join("cert.pem")).unwrap();
        client.login("alice", "secret");
        client.cmd("QUIT");
        let mut client = Client::connect_tls(pop3s, &certs.join("cert.pem"));
        client.login("alice", "secret");
        client.cmd("QUIT");
        assert_eq!(
            container.inspect("{{.HostConfig.RestartPolicy.Name}}"),
            "unless-stopped"
        );
    });
    let (down, said) = compose(&["down", "-v", "--timeout", "10"]);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
    assert!(down, "{said}");
}

/// The service's `env:` pairs, container `ports:` and `options:` words, read
/// from the recipe the way the runner reads them (`docker create` arguments).
fn service_arguments(recipe: &str) -> Vec<String> {
    let service = &recipe
        [recipe.find("services:").expect("services:")..recipe.find("steps:").expect("steps:")];
    let mut args = Vec::new();
    let mut section = "";
    for line in service.lines() {
        let item = line.trim();
        if item.is_empty() {
            continue;
        } else if let Some(name) = item.strip_suffix(':') {
            section = name;
        } else if let Some(words) = item.strip_prefix("options:") {
            args.extend(words.split_whitespace().map(String::from));
        } else if section == "env" {
            let (name, value) = item.split_once(": ").expect("NAME: value");
            args.push("-e".into());
            args.push(format!("{name}={}", value.trim_matches('"')));
        } else if section == "ports" {
            let (_, port) = item
                .trim_start_matches("- ")
                .split_once(':')
                .expect("HOST:CONTAINER");
            // On an ephemeral loopback port here: the host's 1110 may be taken.
            args.push("-p".into());
            args.push(format!("127.0.0.1::{port}"));
        }
    }
    args
}

#[test]
fn the_github_actions_services_recipe_turns_healthy_and_serves_its_steps() {
    let Some(image) = image() else { return };
    let args = service_arguments(&common::doc_block(
        "docs/packaging.md",
        "### GitHub Actions",
        "yaml",
    ));
    let token = args
        .iter()
        .find_map(|arg| arg.strip_prefix("POPLITE_HTTP_TOKEN="))
        .expect("the recipe sets a token")
        .to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let container = Container::run(&image, &args, &[]);
    // The runner starts the job's steps once the service is healthy.
    container.wait_until_healthy();

    let mut pop3 = Client::connect(container.port(1110));
    pop3.login("alice", "secret");
    pop3.cmd("QUIT");
    let smtp = std::net::TcpStream::connect(container.port(2525)).unwrap();
    smtp.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut greeting = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(smtp), &mut greeting).unwrap();
    assert!(greeting.starts_with("220 "), "{greeting:?}");
    let api = format!("http://{}/api/v1/users/alice", container.port(8025));
    let status = |extra: &[&str]| {
        let out = Command::new("curl")
            .args([
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "10",
            ])
            .args(extra)
            .arg(&api)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(
        status(&["-H", &format!("Authorization: Bearer {token}")]),
        "200"
    );
    assert_eq!(status(&[]), "401");
}
