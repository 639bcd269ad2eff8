//! The values each label may take, as closed enums: a typo cannot make a
//! new time series, and the names are the ones dashboards query.

use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};

/// An enum of label values, each with the text it is exported as.
macro_rules! label_values {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident => $text:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// Every value, in declaration order (`value as usize` indexes it).
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// How many values there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The label value as exported.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl EncodeLabelValue for $name {
            fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
                std::fmt::Write::write_str(encoder, self.as_str())
            }
        }
    };
}

label_values! {
    /// Which listener a connection came in on.
    Listener {
        /// POP3, plaintext with STLS.
        Pop3 => "pop3",
        /// POP3 with implicit TLS.
        Pop3s => "pop3s",
        /// LMTP.
        Lmtp => "lmtp",
        /// SMTP intake.
        Smtp => "smtp",
        /// The HTTP API and metrics.
        Http => "http",
    }
}

label_values! {
    /// How a client tried to log in.
    LoginMechanism {
        /// USER and PASS.
        User => "user",
        /// APOP.
        Apop => "apop",
        /// AUTH PLAIN.
        Plain => "plain",
        /// AUTH LOGIN.
        Login => "login",
    }
}

label_values! {
    /// How a login attempt ended.
    LoginResult {
        /// The maildrop is open.
        Success => "success",
        /// Wrong name or password.
        Failure => "failure",
        /// Refused unchecked: the address is held back after failures.
        Delayed => "delayed",
        /// Right password, but another session holds the maildrop.
        InUse => "in_use",
    }
}

label_values! {
    /// Why a POP3 session ended.
    SessionEnd {
        /// The client sent QUIT.
        Quit => "quit",
        /// The client went away, or the connection failed.
        Dropped => "dropped",
        /// Idle too long.
        Timeout => "timeout",
        /// The server shut down.
        Shutdown => "shutdown",
        /// A limit closed it (connections, line length, lost lease…).
        Limit => "limit",
        /// Too many bad commands in a row.
        BadCommands => "bad_commands",
    }
}

label_values! {
    /// How a message came to be delivered.
    Via {
        /// LMTP from an MTA.
        Lmtp => "lmtp",
        /// SMTP intake.
        Smtp => "smtp",
        /// `POST /api/v1/users/{name}/messages`.
        Api => "api",
    }
}

label_values! {
    /// Why a delivery to one recipient was refused.
    DeliveryRefusal {
        /// No such user.
        UnknownUser => "unknown_user",
        /// Over the size limit.
        TooLarge => "too_large",
        /// Over the user's quota.
        OverQuota => "over_quota",
        /// A temporary failure (database, disk).
        Temporary => "temporary",
    }
}
