//! Database ids as types of their own, so that a user's id can never be
//! passed where a message's is wanted. They are stored as SQLite integers.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Defines an id type: a copyable wrapper around the SQLite rowid.
macro_rules! database_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(i64);

        impl $name {
            /// The id with this rowid (for stores other than SQLite, and tests).
            pub const fn new(rowid: i64) -> $name {
                $name(rowid)
            }

            /// The rowid.
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                self.0.to_sql()
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<$name> {
                i64::column_result(value).map($name)
            }
        }
    };
}

database_id!(
    /// A user's id (staging users, which hold imports in progress, too).
    UserId
);

database_id!(
    /// A stored message's id.
    MessageId
);
