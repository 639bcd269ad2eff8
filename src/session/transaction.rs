//! The TRANSACTION state (RFC 1939 §5): STAT, LIST, RETR, DELE, NOOP,
//! RSET, TOP, UIDL on the snapshot taken at login, and QUIT, which asks
//! the driver to commit the deletions (the UPDATE state, §6).

use super::*;

impl Session {
    pub(super) fn transaction(&mut self, command: Command) -> Result<Action, BadCommand> {
        let State::Transaction(maildrop) = &mut self.state else {
            return Err(BadCommand::new("not in TRANSACTION state"));
        };
        let reply = match command {
            Command::Stat => {
                let (count, size) = maildrop.stat();
                Reply::ok(format!("{count} {size}"))
            }
            Command::List(None) => {
                let (count, size) = maildrop.stat();
                Reply::multi_line(
                    format!("{} ({size} octets)", messages(count as u64)),
                    maildrop.live().map(|(n, m)| format!("{n} {}", m.size)),
                )
            }
            Command::List(Some(n)) => match maildrop.get(n) {
                Ok(m) => Reply::ok(format!("{n} {}", m.size)),
                Err(reply) => reply,
            },
            Command::Uidl(None) => Reply::multi_line(
                "unique-id listing follows",
                maildrop.live().map(|(n, m)| format!("{n} {}", m.uid)),
            ),
            Command::Uidl(Some(n)) => match maildrop.get(n) {
                Ok(m) => Reply::ok(format!("{n} {}", m.uid)),
                Err(reply) => reply,
            },
            Command::Retr(n) => return Ok(send(maildrop, n, Extent::Whole)),
            Command::Top(n, lines) => return Ok(send(maildrop, n, Extent::Top(lines))),
            Command::Dele(n) => match maildrop.mark_deleted(n) {
                Ok(()) => Reply::ok(format!("message {n} deleted")),
                Err(reply) => reply,
            },
            Command::Noop => Reply::ok(""),
            Command::Rset => {
                maildrop.unmark_all();
                let (count, size) = maildrop.stat();
                Reply::ok(format!(
                    "maildrop has {} ({size} octets)",
                    messages(count as u64)
                ))
            }
            Command::Quit => {
                let message_ids = maildrop.marked_ids();
                let user_id = maildrop.user_id();
                if message_ids.is_empty() {
                    self.state = State::Closed(Closing::Quit);
                    return Ok(Action::Close(Reply::ok("poplite signing off")));
                }
                self.state = State::Update;
                return Ok(Action::Commit {
                    user_id,
                    message_ids,
                });
            }
            Command::User(_) | Command::Pass(_) | Command::Apop { .. } | Command::Auth { .. } => {
                return Err(self.not_valid_here("already authenticated"))
            }
            Command::Stls => {
                return Err(BadCommand::new("STLS is not allowed after authentication"))
            }
            // HELP is answered before the state is looked at (`dispatch`).
            Command::Capa | Command::Help => self.capabilities(),
        };
        Ok(Action::Reply(reply))
    }
}

fn send(maildrop: &Maildrop, n: MessageNumber, extent: Extent) -> Action {
    match maildrop.get(n) {
        Ok(m) => Action::Send {
            status: match extent {
                Extent::Whole => format!("{} octets", m.size),
                Extent::Top(_) => "top of message follows".to_string(),
            },
            number: n,
            message_id: m.id,
            layout: Layout {
                size: m.size,
                header_len: m.header_len,
            },
            extent,
        },
        Err(reply) => Action::Reply(reply),
    }
}
