-- Switchboard schema (SQLite), version 4: channels can be disabled.
-- A disabled channel takes no customer input (its webhook and widget
-- answer 404) and sends nothing; its history stays.
ALTER TABLE channels ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;
