//! Users on PostgreSQL: adding, looking up (in any case), passwords,
//! quotas and removal.

use postgres::GenericClient;

use super::store::{pg_error, sql_int, unsigned, PgStore};
use crate::storage::{
    validate_user_name, Credentials, Quota, StorageError, UserId, UserSummary, Users,
    STAGING_PREFIX,
};

impl Users for PgStore {
    /// Adds a user; [`StorageError::UserExists`] if the name is taken in
    /// any case.
    fn add_user_with_quota(
        &self,
        name: &str,
        password_hash: &str,
        apop_secret: Option<&str>,
        quota: Quota,
    ) -> Result<(), StorageError> {
        validate_user_name(name)?;
        let inserted = self
            .conn()?
            .execute(
                "INSERT INTO users (name, password_hash, apop_secret, quota_messages, quota_bytes)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT ((lower(name))) DO NOTHING",
                &[
                    &name,
                    &password_hash,
                    &apop_secret,
                    &quota.messages.map(sql_int),
                    &quota.bytes.map(sql_int),
                ],
            )
            .map_err(self.error())?;
        match inserted {
            0 => Err(StorageError::UserExists(name.to_string())),
            _ => Ok(()),
        }
    }

    /// A user's id and stored name (lookups ignore case).
    fn user(&self, name: &str) -> Result<(UserId, String), StorageError> {
        user_id(&mut *self.conn()?, name, self.database())
    }

    /// The password material of `name`, if there is such a user.
    fn credentials(&self, name: &str) -> Result<Option<Credentials>, StorageError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT id, name, password_hash, apop_secret FROM users
                 WHERE lower(name) = lower($1) AND name NOT LIKE $2 || '%'",
                &[&name, &STAGING_PREFIX],
            )
            .map_err(self.error())?;
        Ok(row.map(|row| Credentials {
            id: UserId::new(row.get(0)),
            name: row.get(1),
            password_hash: row.get(2),
            apop_secret: row.get(3),
        }))
    }

    /// Every user with their message count and octets, by name.
    fn users(&self) -> Result<Vec<UserSummary>, StorageError> {
        let rows = self
            .conn()?
            .query(
                "SELECT u.name, count(m.id), coalesce(sum(m.size), 0)::bigint,
                        u.apop_secret IS NOT NULL, u.quota_messages, u.quota_bytes
                 FROM users u LEFT JOIN messages m ON m.user_id = u.id
                 WHERE u.name NOT LIKE $1 || '%'
                 GROUP BY u.id ORDER BY lower(u.name), u.name",
                &[&STAGING_PREFIX],
            )
            .map_err(self.error())?;
        Ok(rows
            .iter()
            .map(|row| UserSummary {
                name: row.get(0),
                messages: unsigned(row.get(1)),
                bytes: unsigned(row.get(2)),
                apop: row.get(3),
                quota: Quota {
                    messages: row.get::<_, Option<i64>>(4).map(unsigned),
                    bytes: row.get::<_, Option<i64>>(5).map(unsigned),
                },
            })
            .collect())
    }

    /// Replaces a user's password hash and APOP secret.
    fn set_password(
        &self,
        name: &str,
        password_hash: &str,
        apop_secret: Option<&str>,
    ) -> Result<(), StorageError> {
        let updated = self
            .conn()?
            .execute(
                "UPDATE users SET password_hash = $2, apop_secret = $3
                 WHERE lower(name) = lower($1)",
                &[&name, &password_hash, &apop_secret],
            )
            .map_err(self.error())?;
        match updated {
            0 => Err(StorageError::UnknownUser(name.to_string())),
            _ => Ok(()),
        }
    }

    /// Removes a user and all their mail; how many messages went with them.
    fn delete_user(&self, name: &str) -> Result<u64, StorageError> {
        let error = self.error();
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(&error)?;
        // Locked first, so a delivery in flight is counted or not stored.
        let (id, _) = user_id_locked(&mut tx, name, self.database())?;
        let removed: i64 = tx
            .query_one(
                "SELECT count(*) FROM messages WHERE user_id = $1",
                &[&id.get()],
            )
            .map_err(&error)?
            .get(0);
        tx.execute("DELETE FROM users WHERE id = $1", &[&id.get()])
            .map_err(&error)?;
        tx.commit().map_err(&error)?;
        Ok(unsigned(removed))
    }

    /// A user's limits.
    fn quota(&self, name: &str) -> Result<Quota, StorageError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT quota_messages, quota_bytes FROM users WHERE lower(name) = lower($1)",
                &[&name],
            )
            .map_err(self.error())?
            .ok_or_else(|| StorageError::UnknownUser(name.to_string()))?;
        Ok(Quota {
            messages: row.get::<_, Option<i64>>(0).map(unsigned),
            bytes: row.get::<_, Option<i64>>(1).map(unsigned),
        })
    }

    /// Replaces a user's limits.
    fn set_quota(&self, name: &str, quota: Quota) -> Result<(), StorageError> {
        let updated = self
            .conn()?
            .execute(
                "UPDATE users SET quota_messages = $2, quota_bytes = $3
                 WHERE lower(name) = lower($1)",
                &[
                    &name,
                    &quota.messages.map(sql_int),
                    &quota.bytes.map(sql_int),
                ],
            )
            .map_err(self.error())?;
        match updated {
            0 => Err(StorageError::UnknownUser(name.to_string())),
            _ => Ok(()),
        }
    }

    /// The newest user's password hash: the cost a dummy check for an
    /// unknown name must match.
    fn newest_password_hash(&self) -> Result<Option<String>, StorageError> {
        let row = self
            .conn()?
            .query_opt(
                "SELECT password_hash FROM users WHERE name NOT LIKE $1 || '%'
                 ORDER BY id DESC LIMIT 1",
                &[&STAGING_PREFIX],
            )
            .map_err(self.error())?;
        Ok(row.map(|row| row.get(0)))
    }
}

/// The id and stored name of `name` (any case).
pub(super) fn user_id(
    conn: &mut impl GenericClient,
    name: &str,
    database: &str,
) -> Result<(UserId, String), StorageError> {
    let row = conn
        .query_opt(
            "SELECT id, name FROM users WHERE lower(name) = lower($1) AND name NOT LIKE $2 || '%'",
            &[&name, &STAGING_PREFIX],
        )
        .map_err(pg_error(database))?
        .ok_or_else(|| StorageError::UnknownUser(name.to_string()))?;
    Ok((UserId::new(row.get(0)), row.get(1)))
}

/// [`user_id`], with the user's row locked until the transaction ends.
fn user_id_locked(
    tx: &mut postgres::Transaction<'_>,
    name: &str,
    database: &str,
) -> Result<(UserId, String), StorageError> {
    let row = tx
        .query_opt(
            "SELECT id, name FROM users
             WHERE lower(name) = lower($1) AND name NOT LIKE $2 || '%' FOR UPDATE",
            &[&name, &STAGING_PREFIX],
        )
        .map_err(pg_error(database))?
        .ok_or_else(|| StorageError::UnknownUser(name.to_string()))?;
    Ok((UserId::new(row.get(0)), row.get(1)))
}
