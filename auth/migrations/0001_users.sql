CREATE TABLE users (
    username      text PRIMARY KEY,
    email         text NOT NULL,
    -- Argon2id PHC string: algorithm, parameters, salt and hash.
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);
