//! `poplite_messages_delivered_total{via}` and
//! `poplite_deliveries_refused_total{via, reason}` from real LMTP and SMTP
//! transactions (the API's are in tests/http/messages.rs), and the store
//! gauges following them.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use poplite::server::LmtpAddress;
use poplite::storage::Quota;

use super::common::{TestServer, IO_TIMEOUT};
use super::{scrape, start, Scrape};

/// A bare LMTP or SMTP client.
struct Lmtp {
    stream: BufReader<TcpStream>,
    /// LMTP: one reply per accepted recipient after the data; SMTP: one.
    reply_per_recipient: bool,
}

impl Lmtp {
    fn connect(server: &TestServer) -> Lmtp {
        Lmtp::connect_to(server.lmtp_tcp(), "LHLO", true)
    }

    fn smtp(server: &TestServer) -> Lmtp {
        Lmtp::connect_to(server.smtp_addr(), "EHLO", false)
    }

    fn connect_to(addr: std::net::SocketAddr, hello: &str, reply_per_recipient: bool) -> Lmtp {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut lmtp = Lmtp {
            stream: BufReader::new(stream),
            reply_per_recipient,
        };
        assert!(lmtp.reply().starts_with("220 "));
        assert!(lmtp.cmd(&format!("{hello} mx.test")).starts_with("250"));
        lmtp
    }

    /// One reply, all its lines.
    fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            assert!(
                self.stream.read_line(&mut line).unwrap() > 0,
                "closed after {reply}"
            );
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    fn cmd(&mut self, command: &str) -> String {
        self.stream
            .get_mut()
            .write_all(format!("{command}\r\n").as_bytes())
            .unwrap();
        self.reply()
    }

    /// A whole transaction: the replies to each RCPT, then to the data
    /// (one per accepted recipient).
    fn send(&mut self, recipients: &[&str], body: &str) -> (Vec<String>, Vec<String>) {
        assert!(self.cmd("MAIL FROM:<s@far.test>").starts_with("250"));
        let rcpts: Vec<String> = recipients
            .iter()
            .map(|r| self.cmd(&format!("RCPT TO:<{r}>")))
            .collect();
        let accepted = rcpts.iter().filter(|r| r.starts_with("250")).count();
        if accepted == 0 {
            self.cmd("RSET");
            return (rcpts, Vec::new());
        }
        assert!(self.cmd("DATA").starts_with("354"));
        self.stream
            .get_mut()
            .write_all(format!("{body}\r\n.\r\n").as_bytes())
            .unwrap();
        let replies = if self.reply_per_recipient {
            accepted
        } else {
            1
        };
        let data = (0..replies).map(|_| self.reply()).collect();
        (rcpts, data)
    }
}

fn lmtp_server(adjust: impl FnOnce(&mut poplite::server::ServerConfig)) -> TestServer {
    start(|config| {
        config.lmtp = vec![LmtpAddress::Tcp("127.0.0.1:0".parse().unwrap())];
        adjust(config);
    })
}

fn refused(scrape: &Scrape, reason: &str) -> f64 {
    refused_via(scrape, "lmtp", reason)
}

fn refused_via(scrape: &Scrape, via: &str, reason: &str) -> f64 {
    scrape.get(&format!(
        "poplite_deliveries_refused_total{{via=\"{via}\",reason=\"{reason}\"}}"
    ))
}

#[test]
fn lmtp_counts_each_stored_and_refused_recipient() {
    let server = lmtp_server(|config| config.max_message_size = 200);
    for user in ["alice", "bob", "carol"] {
        server.add_user(user, "pw");
    }
    server.deliver("carol", b"Subject: old\r\n\r\nx\r\n");
    server
        .store
        .set_quota(
            "carol",
            Quota {
                messages: Some(1),
                bytes: None,
            },
        )
        .unwrap();
    let mut lmtp = Lmtp::connect(&server);
    // Two stored, one unknown at RCPT, one over quota.
    let (rcpts, data) = lmtp.send(
        &["alice", "nobody", "bob", "carol"],
        "Subject: hi\r\n\r\nhello",
    );
    assert!(rcpts[1].starts_with("550"), "{rcpts:?}");
    assert!(
        data[0].starts_with("250") && data[1].starts_with("250"),
        "{data:?}"
    );
    assert!(data[2].starts_with("552 5.2.2"), "{data:?}");
    // Too large, for both recipients.
    let big = format!("Subject: big\r\n\r\n{}", "x".repeat(300));
    let (_, data) = lmtp.send(&["alice", "bob"], &big);
    assert!(data.iter().all(|r| r.starts_with("552 5.3.4")), "{data:?}");
    // Too large by its declared SIZE, refused at MAIL.
    assert!(lmtp
        .cmd("MAIL FROM:<s@far.test> SIZE=1000")
        .starts_with("552"));
    assert!(lmtp.cmd("QUIT").starts_with("221"));
    let scrape = scrape(&server);
    assert_eq!(
        scrape.get("poplite_messages_delivered_total{via=\"lmtp\"}"),
        2.0
    );
    assert_eq!(
        scrape.get("poplite_messages_delivered_total{via=\"smtp\"}"),
        0.0
    );
    assert_eq!(
        scrape.get("poplite_messages_delivered_total{via=\"api\"}"),
        0.0
    );
    assert_eq!(refused(&scrape, "unknown_user"), 1.0);
    assert_eq!(refused(&scrape, "over_quota"), 1.0);
    assert_eq!(refused(&scrape, "too_large"), 3.0);
    assert_eq!(refused(&scrape, "temporary"), 0.0);
    // What the store holds: three users, the old message and two new.
    assert_eq!(scrape.get("poplite_users"), 3.0);
    assert_eq!(scrape.get("poplite_stored_messages"), 3.0);
    assert!(scrape.get("poplite_stored_bytes") > 0.0);
}

#[test]
fn smtp_counts_each_stored_and_refused_recipient_as_smtp() {
    let server = start(|config| {
        config.smtp = Some("127.0.0.1:0".parse().unwrap());
        config.max_message_size = 200;
    });
    server.add_user("alice", "pw");
    server.add_user("bob", "pw");
    let mut smtp = Lmtp::smtp(&server);
    let (rcpts, data) = smtp.send(&["alice", "nobody", "bob"], "Subject: hi\r\n\r\nhello");
    assert!(rcpts[1].starts_with("550 5.1.1"), "{rcpts:?}");
    assert!(data[0].starts_with("250"), "{data:?}");
    assert!(smtp
        .cmd("MAIL FROM:<s@far.test> SIZE=1000")
        .starts_with("552"));
    assert!(smtp.cmd("QUIT").starts_with("221"));
    let scrape = scrape(&server);
    assert_eq!(
        scrape.get("poplite_messages_delivered_total{via=\"smtp\"}"),
        2.0
    );
    assert_eq!(
        scrape.get("poplite_messages_delivered_total{via=\"lmtp\"}"),
        0.0
    );
    assert_eq!(refused_via(&scrape, "smtp", "unknown_user"), 1.0);
    assert_eq!(refused_via(&scrape, "smtp", "too_large"), 1.0);
    assert_eq!(refused(&scrape, "unknown_user"), 0.0);
    assert_eq!(
        scrape.get("poplite_connections_total{listener=\"smtp\"}"),
        1.0
    );
}

#[test]
fn store_gauges_follow_deliveries() {
    let server = lmtp_server(|_| {});
    let empty = scrape(&server);
    assert_eq!(empty.get("poplite_users"), 0.0);
    assert_eq!(empty.get("poplite_stored_messages"), 0.0);
    assert_eq!(empty.get("poplite_stored_bytes"), 0.0);
    server.add_user("alice", "pw");
    let body = "Subject: hi\r\n\r\nhello";
    let (_, data) = Lmtp::connect(&server).send(&["alice"], body);
    assert!(data[0].starts_with("250"), "{data:?}");
    let after = scrape(&server);
    assert_eq!(after.get("poplite_users"), 1.0);
    assert_eq!(after.get("poplite_stored_messages"), 1.0);
    // The stored message is the body with its delivery headers.
    let stored: usize = server.messages("alice").iter().map(Vec::len).sum();
    assert_eq!(after.get("poplite_stored_bytes"), stored as f64);
}

#[test]
fn store_gauges_are_cached_for_the_interval() {
    let server = lmtp_server(|config| config.store_totals_interval = Duration::from_secs(3600));
    assert_eq!(scrape(&server).get("poplite_users"), 0.0);
    server.add_user("alice", "pw");
    // Read at the first scrape, not again within the hour.
    assert_eq!(scrape(&server).get("poplite_users"), 0.0);
}

#[test]
fn a_failing_store_keeps_the_last_totals_and_is_not_ready() {
    let server = lmtp_server(|_| {});
    server.add_user("alice", "pw");
    let before = scrape(&server);
    assert_eq!(before.get("poplite_store_ready"), 1.0);
    assert_eq!(before.get("poplite_users"), 1.0);
    server.execute_sql("ALTER TABLE messages RENAME TO gone");
    let after = scrape(&server);
    assert_eq!(after.get("poplite_store_ready"), 0.0);
    assert_eq!(after.get("poplite_users"), 1.0);
}
