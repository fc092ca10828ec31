-- Keys the server keeps beside the log and never writes into it: the key
-- block document data is sealed with (see src/db/sealed.rs).
CREATE TABLE IF NOT EXISTS server_secret (
    name    TEXT PRIMARY KEY,
    value   TEXT NOT NULL
);
