-- poplite schema, version 2: optional per-user quotas.
--
-- NULL means no limit. `deliver` checks them inside its write
-- transaction, so a delivery over quota stores nothing.

ALTER TABLE users ADD COLUMN quota_messages INTEGER;
ALTER TABLE users ADD COLUMN quota_bytes    INTEGER;
