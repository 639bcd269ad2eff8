//! The AUTHORIZATION state (RFC 1939 §4, RFC 5034): USER and PASS, APOP,
//! AUTH and its SASL exchange, up to the login the driver checks.

use super::sasl::{self, Mechanism, SaslError};
use super::*;

impl Session {
    /// The refusal of USER, PASS and AUTH PLAIN/LOGIN before STLS.
    pub(super) fn plaintext_refused() -> Result<Action, BadCommand> {
        Err(BadCommand::reply(Reply::err_code(
            RespCode::Auth,
            "plaintext authentication needs TLS here: send STLS first",
        )))
    }

    pub(super) fn authorization(
        &mut self,
        command: Command,
        pending_user: Option<String>,
    ) -> Result<Action, BadCommand> {
        let State::Authorization { user, sasl } = &mut self.state else {
            return Err(BadCommand::new("not in AUTHORIZATION state"));
        };
        let action = match command {
            Command::User(_)
            | Command::Pass(_)
            | Command::Auth {
                mechanism: Some(_), ..
            } if !self.config.plaintext_auth => return Self::plaintext_refused(),
            Command::Stls => match self.config.tls {
                TlsState::Offered => Action::StartTls(Reply::ok("begin TLS negotiation")),
                TlsState::Active => return Err(BadCommand::new("TLS is already active")),
                TlsState::Unavailable => {
                    return Err(BadCommand::new("STLS is not available on this server"))
                }
            },
            // USER never says whether the user exists (PASS fails the same way).
            Command::User(name) => {
                *user = Some(name);
                Action::Reply(Reply::ok("send PASS"))
            }
            Command::Pass(password) => match pending_user {
                Some(name) => self.login(name, LoginMethod::UserPass, Proof::Password(password)),
                None => return Err(BadCommand::new("send USER first")),
            },
            Command::Apop { user: name, digest } => match &self.config.apop_timestamp {
                Some(timestamp) => {
                    let timestamp = timestamp.clone();
                    self.login(name, LoginMethod::Apop, Proof::Apop { timestamp, digest })
                }
                None => return Err(BadCommand::new("APOP is not enabled on this server")),
            },
            Command::Auth {
                mechanism: None, ..
            } => Action::Reply(Reply::multi_line(
                "SASL mechanisms follow",
                mechanisms(&self.config).iter().map(|m| m.name()),
            )),
            Command::Auth {
                mechanism: Some(mechanism),
                initial_response,
            } => match (offered(&self.config, &mechanism), initial_response) {
                (Some(Mechanism::Plain), None) => {
                    *sasl = Some(Sasl::PlainResponse);
                    Action::Reply(Reply::Challenge(String::new()))
                }
                (Some(Mechanism::Plain), Some(response)) => {
                    return self.sasl_response(
                        Sasl::PlainResponse,
                        LineEvent::Line(response.expose().to_vec()),
                    )
                }
                (Some(Mechanism::Login), None) => {
                    *sasl = Some(Sasl::LoginUser);
                    Action::Reply(Reply::Challenge(sasl::LOGIN_USERNAME_CHALLENGE.into()))
                }
                (Some(Mechanism::Login), Some(response)) => {
                    return self.sasl_response(
                        Sasl::LoginUser,
                        LineEvent::Line(response.expose().to_vec()),
                    )
                }
                (None, _) => return Err(BadCommand::new("unsupported SASL mechanism")),
            },
            Command::Quit => {
                self.state = State::Closed(Closing::Quit);
                Action::Close(Reply::ok("poplite signing off"))
            }
            _ => return Err(self.not_valid_here("not allowed before authentication")),
        };
        Ok(action)
    }

    pub(super) fn sasl_response(
        &mut self,
        step: Sasl,
        event: LineEvent,
    ) -> Result<Action, BadCommand> {
        let line = match event {
            LineEvent::Line(line) if line == b"*" => {
                return Ok(Action::Reply(Reply::err("authentication cancelled")))
            }
            LineEvent::Line(line) => line,
            LineEvent::TooLong => {
                return Err(BadCommand::over_long(
                    "SASL response",
                    self.config.max_sasl_line,
                ))
            }
        };
        let decoded = match sasl::decode(&line) {
            Ok(decoded) => decoded,
            Err(_) => return Err(BadCommand::new("invalid base64 in SASL response")),
        };
        let mechanism = match step {
            Sasl::PlainResponse => Mechanism::Plain,
            Sasl::LoginUser | Sasl::LoginPassword(_) => Mechanism::Login,
        };
        let result = match step {
            Sasl::PlainResponse => sasl::parse_plain(&decoded),
            Sasl::LoginUser => {
                return match sasl::username(decoded.expose()) {
                    Ok(name) => {
                        if let State::Authorization { sasl, .. } = &mut self.state {
                            *sasl = Some(Sasl::LoginPassword(name));
                        }
                        Ok(Action::Reply(Reply::Challenge(
                            sasl::LOGIN_PASSWORD_CHALLENGE.into(),
                        )))
                    }
                    Err(_) => Err(BadCommand::new("invalid SASL LOGIN user name")),
                };
            }
            Sasl::LoginPassword(name) if !decoded.is_empty() => Ok((name, decoded)),
            Sasl::LoginPassword(_) => Err(SaslError::Malformed),
        };
        match result {
            Ok((name, password)) => Ok(self.login(
                name,
                LoginMethod::Sasl(mechanism),
                Proof::Password(password),
            )),
            Err(SaslError::AuthzidMismatch) => Err(BadCommand::reply(Reply::err_code(
                RespCode::Auth,
                "authorization identity must be empty or the user's own",
            ))),
            Err(_) => Err(BadCommand::new("malformed SASL response")),
        }
    }

    fn login(&mut self, user: String, method: LoginMethod, proof: Proof) -> Action {
        self.state = State::Authenticating;
        Action::Login(LoginRequest {
            user,
            proof,
            method,
        })
    }
}

/// The SASL mechanisms AUTH accepts now: none where plaintext logins
/// wait for TLS, since every one sends the password itself. A function of
/// the config alone, so it can be used while the state is borrowed.
pub(super) fn mechanisms(config: &SessionConfig) -> &[Mechanism] {
    match (config.plaintext_auth, config.tls) {
        (false, _) => &[],
        (true, TlsState::Active) => &config.sasl_with_tls,
        (true, _) => &config.sasl_without_tls,
    }
}

/// The mechanism a client asked for, if it is offered now.
fn offered(config: &SessionConfig, name: &str) -> Option<Mechanism> {
    Mechanism::named(name).filter(|m| mechanisms(config).contains(m))
}
