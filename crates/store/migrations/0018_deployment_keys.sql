-- What the keys of the deployment are, as the first process that opened the catalogue had them:
-- the public key that signs the access log's checkpoints, and a fingerprint of the key whose
-- HMAC names data subjects (never the key). A process with other key files (a node set up
-- without copying them) is refused before it writes anything.
CREATE TABLE deployment_keys (
    id                      BIGINT PRIMARY KEY,
    signing_public_key      TEXT NOT NULL,
    subject_key_fingerprint TEXT NOT NULL,
    recorded_at             TEXT NOT NULL
);
