//! Users: names, password material, APOP secrets and quotas.

use rusqlite::{params, Connection, OptionalExtension};

use super::{sql_int, SqliteStore};
use crate::storage::{
    validate_user_name, Credentials, Quota, StorageError, UserId, UserSummary, Users,
    STAGING_PREFIX,
};

impl Users for SqliteStore {
    /// [`Users::add_user`] with limits, in one statement.
    fn add_user_with_quota(
        &self,
        name: &str,
        password_hash: &str,
        apop_secret: Option<&str>,
        quota: Quota,
    ) -> Result<(), StorageError> {
        validate_user_name(name)?;
        self.with_conn(|conn| {
            let inserted = conn.execute(
                "INSERT INTO users (name, password_hash, apop_secret, quota_messages, quota_bytes)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO NOTHING",
                params![
                    name,
                    password_hash,
                    apop_secret,
                    quota.messages.map(sql_int),
                    quota.bytes.map(sql_int)
                ],
            )?;
            match inserted {
                0 => Err(StorageError::UserExists(name.to_string())),
                _ => Ok(()),
            }
        })
    }

    /// Replaces a user's password hash and APOP secret (`None` removes it).
    fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        apop_secret: Option<&str>,
    ) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            let updated = conn.execute(
                "UPDATE users SET password_hash = ?2, apop_secret = ?3 WHERE name = ?1",
                params![name, password_hash, apop_secret],
            )?;
            match updated {
                0 => Err(StorageError::UnknownUser(name.to_string())),
                _ => Ok(()),
            }
        })
    }

    /// Removes a user and all their mail; returns how many messages went.
    fn delete_user(&self, name: &str) -> Result<u64, StorageError> {
        self.with_conn(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let (id, _) = user_id(&tx, name)?;
            let messages: u64 = tx.query_row(
                "SELECT count(*) FROM messages WHERE user_id = ?1",
                [id],
                |r| r.get(0),
            )?;
            tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(messages)
        })
    }

    /// Every user with their message count and total size, by name.
    fn users(&self) -> Result<Vec<UserSummary>, StorageError> {
        self.with_conn(|conn| {
            let mut stmt = conn.prepare(
                "SELECT u.name, count(m.id), coalesce(sum(m.size), 0),
                        u.apop_secret IS NOT NULL, u.quota_messages, u.quota_bytes
                 FROM users u LEFT JOIN messages m ON m.user_id = u.id
                 WHERE u.name NOT LIKE ?1 || '%'
                 GROUP BY u.id ORDER BY u.name",
            )?;
            let rows = stmt.query_map([STAGING_PREFIX], |r| {
                let limit = |i| {
                    r.get::<_, Option<i64>>(i)
                        .map(|v| v.map(|v| v.max(0) as u64))
                };
                Ok(UserSummary {
                    name: r.get(0)?,
                    messages: r.get(1)?,
                    bytes: r.get(2)?,
                    apop: r.get(3)?,
                    quota: Quota {
                        messages: limit(4)?,
                        bytes: limit(5)?,
                    },
                })
            })?;
            Ok(rows.collect::<Result<_, _>>()?)
        })
    }

    /// A user's password material, or `None` for an unknown name.
    fn credentials(&self, name: &str) -> Result<Option<Credentials>, StorageError> {
        if name.starts_with(STAGING_PREFIX) {
            return Ok(None);
        }
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT id, name, password_hash, apop_secret FROM users WHERE name = ?1",
                    [name],
                    |r| {
                        Ok(Credentials {
                            id: r.get(0)?,
                            name: r.get(1)?,
                            password_hash: r.get(2)?,
                            apop_secret: r.get(3)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    /// The newest user's PHC string, whose cost a dummy hash copies so
    /// that unknown users cost what real ones do.
    fn newest_password_hash(&self) -> Result<Option<String>, StorageError> {
        self.with_conn(|conn| {
            Ok(conn
                .query_row(
                    "SELECT password_hash FROM users WHERE name NOT LIKE ?1 || '%'
                     ORDER BY id DESC LIMIT 1",
                    [STAGING_PREFIX],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }

    /// A user's limits.
    fn quota(&self, name: &str) -> Result<Quota, StorageError> {
        self.with_conn(|conn| {
            let (user_id, _) = user_id(conn, name)?;
            Ok(quota_of(conn, user_id)?)
        })
    }

    /// Replaces a user's limits.
    fn set_quota(&self, name: &str, quota: Quota) -> Result<(), StorageError> {
        self.with_conn(|conn| {
            let (user_id, _) = user_id(conn, name)?;
            conn.execute(
                "UPDATE users SET quota_messages = ?1, quota_bytes = ?2 WHERE id = ?3",
                params![
                    quota.messages.map(sql_int),
                    quota.bytes.map(sql_int),
                    user_id
                ],
            )?;
            Ok(())
        })
    }

    /// Looks up a user's id and stored name.
    fn user(&self, name: &str) -> Result<(UserId, String), StorageError> {
        self.with_conn(|conn| user_id(conn, name))
    }
}

pub(super) fn user_id(conn: &Connection, name: &str) -> Result<(UserId, String), StorageError> {
    if name.starts_with(STAGING_PREFIX) {
        return Err(StorageError::UnknownUser(name.to_string()));
    }
    conn.query_row("SELECT id, name FROM users WHERE name = ?1", [name], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .optional()?
    .ok_or_else(|| StorageError::UnknownUser(name.to_string()))
}

pub(super) fn quota_of(conn: &Connection, user_id: UserId) -> rusqlite::Result<Quota> {
    conn.query_row(
        "SELECT quota_messages, quota_bytes FROM users WHERE id = ?1",
        params![user_id],
        |row| {
            let limit = |i| {
                row.get::<_, Option<i64>>(i)
                    .map(|v| v.map(|v| v.max(0) as u64))
            };
            Ok(Quota {
                messages: limit(0)?,
                bytes: limit(1)?,
            })
        },
    )
}
