-- poplite schema on PostgreSQL, version 3: a change counter for users.
--
-- Every statement that adds, removes or changes users moves
-- meta.users_version on, in the same transaction, so a node that caches
-- what it read about users (is there an APOP user at all?) asks one small
-- question per check and reads the users again only after a change, on
-- whichever node it happened. SQLite's counterpart is PRAGMA data_version.

INSERT INTO meta (key, value) VALUES ('users_version', '0');

CREATE FUNCTION poplite_users_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'users_version';
    RETURN NULL;
END;
$$;

CREATE TRIGGER users_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON users
    FOR EACH STATEMENT EXECUTE FUNCTION poplite_users_changed();
