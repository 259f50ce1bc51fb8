-- Runs once, when the compose Postgres volume is first initialised, as the
-- superuser "postgres" in database "switchboard".
--
-- Two roles, so that Row-Level Security is a real wall:
--
--   switchboard      the login in SWITCHBOARD_POSTGRES. Not a superuser, no
--                    BYPASSRLS. Owns the database, so `switchboard migrate`
--                    can create the schema (since Postgres 15 the public
--                    schema belongs to the database owner).
--   switchboard_app  the runtime role every transaction switches to
--                    (store/postgres: DefaultRuntimeRole). It cannot log in,
--                    owns nothing and gets DML on the tables from migrate.
--
-- Creating the runtime role here, and granting it as the superuser, means
-- the login needs no CREATEROLE. It also sidesteps Postgres 16's rule that
-- a role made by a CREATEROLE user is granted back to its creator without
-- the SET option, which would stop the login from switching to it.
CREATE ROLE switchboard LOGIN PASSWORD 'switchboard'
  NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
CREATE ROLE switchboard_app NOLOGIN NOSUPERUSER NOBYPASSRLS;
GRANT switchboard_app TO switchboard;
ALTER DATABASE switchboard OWNER TO switchboard;
